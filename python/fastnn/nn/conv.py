"""Convolution layers: ``Conv2D``, ``Conv2DTranspose`` and ``Conv1D``, on ``ops.conv2d`` and
``ops.conv_transpose2d``.

Keras's names, arguments and output sizes; PyTorch's weight layouts, so weights move between the
two libraries without transposes:

* ``Conv2D`` kernel ``(filters, channels / groups, kh, kw)`` (``torch.nn.Conv2d.weight``);
* ``Conv1D`` kernel ``(filters, channels / groups, k)`` (``torch.nn.Conv1d.weight``), run as a
  2-D convolution of height-1 images;
* ``Conv2DTranspose`` kernel ``(channels, filters / groups, kh, kw)``
  (``torch.nn.ConvTranspose2d.weight``).

``data_format="channels_first"`` takes and returns NCHW (NCL) batches, the ops' own layout;
``"channels_last"`` takes and returns NHWC (NLC), Keras's default, by transposing around the
kernels. The output is then a transposed view of the NCHW result: the next ``channels_last``
layer transposes it back into the contiguous array it was, so a chain of them copies nothing.
Conv2D defaults to channels_first (the ops' layout, and what PyTorch weights assume), Conv1D to
channels_last (as Keras, where sequences are ``(batch, steps, features)``).

``padding``: ``"valid"`` (none), ``"same"`` (Keras's: ``ceil(size / stride)`` outputs, an odd
total padding puts its extra row/column at the bottom/right, as TensorFlow does), an int or a
tuple (PyTorch's symmetric padding), and for Conv1D ``"causal"`` (all padding on the left, so
output ``t`` sees inputs up to ``t`` only). Uneven padding, which the ops do not take, is done by
padding a copy of the input.

An elementwise activation of Conv2D/Conv1D runs inside the conv kernel (the op's fused
epilogue, its derivative applied in the backward); in a Sequential, a relu convolution followed
by MaxPooling2D leaves that derivative to the pooling's backward (``backward_preactivation``,
see ``nn/_fusion.py``). Conv2DTranspose applies its activation as its own op.
Glorot and He initializers get Keras's fans for conv kernels: receptive field times the input
(output) channels of one group. A layer with ``trainable=False`` skips its weight gradient.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from .. import ops
from . import _spatial as sp
from . import initializers, regularizers
from ._activation_spec import resolve_activation
from .core import _as_array, _KernelBiasLayer

__all__ = ["Conv1D", "Conv2D", "Conv2DTranspose"]


def _positive(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class _Conv(_KernelBiasLayer, ABC):
    """The shared machinery; subclasses fix the rank (1 or 2) and whether it is transposed."""

    _RANK = 2
    _TRANSPOSED = False
    _PADDINGS: Tuple[str, ...] = ("valid", "same")
    _TORCH_KEYS = (("weight", "kernel"), ("bias", "bias"))

    def __init__(self, filters: int, kernel_size: Any, strides: Any, padding: Any,
                 output_padding: Any, dilation_rate: Any, groups: int,
                 activation: Optional[str], use_bias: bool, kernel_initializer: Any,
                 bias_initializer: Any, kernel_regularizer: Any, bias_regularizer: Any,
                 data_format: str, input_shape: Optional[Sequence[int]], dtype: Any,
                 alpha: Optional[float], name: Optional[str], trainable: bool) -> None:
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        n = self._RANK
        self.filters = _positive(filters, "filters")
        self.kernel_size = sp.int_tuple(kernel_size, n, "kernel_size", 1)
        self.strides = sp.int_tuple(strides, n, "strides", 1)
        self.padding = sp.padding_arg(padding, n, self._PADDINGS)
        self.dilation_rate = sp.int_tuple(dilation_rate, n, "dilation_rate", 1)
        self.groups = _positive(groups, "groups")
        if self.filters % self.groups:
            raise ValueError(f"filters ({self.filters}) must be divisible by groups "
                             f"({self.groups})")
        self.output_padding = None
        if output_padding is not None:
            self.output_padding = sp.int_tuple(output_padding, n, "output_padding", 0)
            for op_pad, s, d in zip(self.output_padding, self.strides, self.dilation_rate):
                if op_pad >= max(s, d):
                    raise ValueError(f"output_padding {self.output_padding} must be smaller "
                                     f"than the stride {self.strides} (or the dilation "
                                     f"{self.dilation_rate})")
        self.activation = resolve_activation(activation, alpha)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.data_format = sp.data_format(data_format)
        self._last = self.data_format == "channels_last"
        # The 2-D geometry the ops take: a 1-D layer is an image of height 1.
        lead = (1,) * (2 - n)
        self._k2 = lead + self.kernel_size
        self._s2 = lead + self.strides
        self._d2 = lead + self.dilation_rate
        self._spans = tuple(d * (k - 1) + 1 for k, d in zip(self._k2, self._d2))
        self._pad2 = (self.padding if isinstance(self.padding, str)
                      else (0,) * (2 - n) + self.padding)
        self._op_pad2 = (None if self.output_padding is None
                         else (0,) * (2 - n) + self.output_padding)
        self.kernel: Optional[np.ndarray] = None
        self.bias: Optional[np.ndarray] = None
        self._ctx = None
        self._act_ctx = None
        self._post_ctx = None
        self._geom = None

    # -- shapes ---------------------------------------------------------------------------------

    @abstractmethod
    def _axis_geometry(self, a: int, size: int):
        """What axis ``a`` (0: height, 1: width) of the 2-D geometry needs for an input of
        ``size``: ``(pads, out)`` for a convolution (pads ``(before, after)``), ``(padding,
        output_padding, crop, out)`` for a transposed one."""

    def compute_output_shape(self, input_shape):
        n = self._RANK
        if len(input_shape) != n + 2:
            layout = ("(batch, steps, channels)" if self._last else
                      "(batch, channels, steps)") if n == 1 else (
                "(batch, height, width, channels)" if self._last else
                "(batch, channels, height, width)")
            raise ValueError(f"{self.name}: {type(self).__name__} with data_format="
                             f"{self.data_format!r} takes inputs {layout}, got shape "
                             f"{tuple(input_shape)}")
        channels, spatial = sp.split_shape(input_shape[1:], n, self._last)
        if channels is None:
            raise ValueError(f"{self.name}: the number of input channels must be known, got "
                             f"input shape {tuple(input_shape)}")
        if channels % self.groups:
            raise ValueError(f"{self.name}: the input has {channels} channels, not divisible by "
                             f"groups={self.groups}")
        lead = (1,) * (2 - n)
        out = []
        for a, size in enumerate(lead + tuple(spatial)):
            out.append(None if size is None else self._axis_geometry(a, size)[-1])
        return (input_shape[0],) + sp.join_shape(self.filters, out[2 - n:], self._last)

    def _kernel_shape(self, channels: int) -> Tuple[int, ...]:
        if self._TRANSPOSED:
            return (channels, self.filters // self.groups) + self.kernel_size
        return (self.filters, channels // self.groups) + self.kernel_size

    def _build(self, input_shape):
        channels = sp.split_shape(input_shape[1:], self._RANK, self._last)[0]
        dt = self.dtype
        # The initializers take fans from the (out, in, *receptive) layout, which this is for a
        # convolution; for a transposed one (in, out/groups, ...) gives fan_in = filters *
        # receptive field, Keras's fans for its (kh, kw, filters, channels) kernel.
        self.kernel = np.ascontiguousarray(
            self.kernel_initializer(self._kernel_shape(int(channels)), dt))
        self.params = [self.kernel]
        self.grads = [np.zeros_like(self.kernel)]
        if self.use_bias:
            self.bias = np.ascontiguousarray(self.bias_initializer((self.filters,), dt))
            self.params.append(self.bias)
            self.grads.append(np.zeros_like(self.bias))

    # -- computing ------------------------------------------------------------------------------

    def _input(self, x: Any) -> np.ndarray:
        x = _as_array(x)
        if not self.built:
            self._ensure_built(x)
        if x.ndim != self._RANK + 2:
            raise ValueError(f"{self.name}: expected inputs of shape {self.input_shape}, got "
                             f"{x.shape}")
        if x.dtype != self.dtype and isinstance(x, np.ndarray):
            x = x.astype(self.dtype)
        return x

    @property
    def _kernel4(self) -> np.ndarray:
        # (filters, c/g, k) -> (filters, c/g, 1, k): a view, contiguous like the kernel.
        return self.kernel if self._RANK == 2 else self.kernel[:, :, None, :]

    # Whether _run applies an elementwise activation inside the kernel (conv2d's fused epilogue;
    # its backward then includes the activation's derivative).
    _FUSES_ACTIVATION = False

    @abstractmethod
    def _run(self, xi: np.ndarray, act: Any = None) -> np.ndarray:
        """The convolution of an NCHW batch, with the fused activation ``act`` (a spec, or None)
        where the class fuses one; keeps the op's ctx and the padding it used."""

    @abstractmethod
    def _run_backward(self, dy: np.ndarray, need_dx: bool, through_activation: bool = True):
        """``(dx, dkernel, dbias)`` of the last ``_run``; None for those not computed.
        ``through_activation=False``: ``dy`` already is the gradient of the pre-activation."""

    def forward(self, x, training=False):
        x = self._input(x)
        act = self.activation
        fuse = self._FUSES_ACTIVATION and act.fused is not None
        y = self._run(sp.to_nchw(x, self._RANK, self._last), act if fuse else None)
        self._act_ctx = self._post_ctx = None
        if act.fused is not None and not fuse:  # elementwise: on the contiguous NCHW result
            y, self._act_ctx = ops.activation_forward(y, act.fused, alpha=act.fused_alpha)
        y = sp.from_nchw(y, self._RANK, self._last)
        if act.post_forward is not None:  # softmax: along the caller's last axis, as Keras
            y, self._post_ctx = act.post_forward(y)
        return y

    def backward(self, dy, need_dx=True):
        return self._backward(dy, need_dx, True)

    def _backward(self, dy, need_dx, through_activation):
        if self._ctx is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        if self._post_ctx is not None:
            dy = self.activation.post_backward(self._post_ctx, dy)
        dy = sp.to_nchw(_as_array(dy), self._RANK, self._last)
        if self._act_ctx is not None:
            dy = ops.activation_backward(self._act_ctx, dy)[0]
        need_dw = self.trainable
        dx, dw, db = self._run_backward(dy, need_dx, through_activation)
        if need_dw:
            self._store_grads(dw.reshape(self.kernel.shape), db)
        return None if dx is None else sp.from_nchw(dx, self._RANK, self._last)

    def get_config(self):
        cfg = super().get_config()
        cfg.update({
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
            "dilation_rate": list(self.dilation_rate),
            "groups": self.groups,
            "activation": self.activation.name,
            "alpha": self.activation.alpha,
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "data_format": self.data_format,
        })
        return cfg


class _Forward(_Conv):
    """A convolution (not transposed): Conv1D and Conv2D."""

    def _axis_geometry(self, a, size):
        k_span, s = self._spans[a], self._s2[a]
        p = self._pad2
        if p == "valid":
            pads = (0, 0)
        elif p == "same":
            pads = sp.same_pads(size, k_span, s)
        elif p == "causal":  # Conv1D only; the height axis has span 1, so no padding there
            pads = (k_span - 1, 0)
        else:
            pads = (p[a], p[a])
        padded = size + pads[0] + pads[1]
        if k_span > padded:
            raise ValueError(f"{self.name}: the kernel {self.kernel_size} with dilation "
                             f"{self.dilation_rate} spans {k_span}, more than the input size "
                             f"{size}" + (f" padded to {padded}" if padded != size else "") +
                             f" (padding={self.padding!r})")
        return pads, (padded - k_span) // s + 1

    _FUSES_ACTIVATION = True

    @property
    def relu_in_kernel(self) -> bool:
        """Whether the layer's activation is a plain relu applied inside the conv kernel: a
        following max pooling can then apply its derivative (see ``backward_preactivation``)."""
        return self.activation.fused == "relu" and self.activation.fused_alpha is None

    def backward_preactivation(self, dz, need_dx=True):
        """``backward`` for a ``dz`` that already is the gradient of the pre-activation (relu's
        derivative applied by the caller, as ``MaxPooling2D.backward_relu`` does)."""
        if not self.relu_in_kernel:
            raise ValueError(f"{self.name}: backward_preactivation needs a relu activation "
                             f"fused into the convolution, got {self.activation.name!r}")
        return self._backward(dz, need_dx, False)

    def _op_padding(self, xi):
        """``(xi, padding for the op, crop or None)``: the input padded here when the op's
        symmetric padding cannot express the layer's."""
        pads = tuple(self._axis_geometry(a, xi.shape[2 + a])[0] for a in range(2))
        if pads[0][0] == pads[0][1] and pads[1][0] == pads[1][1]:
            return xi, (pads[0][0], pads[1][0]), None
        if self._s2 == (1, 1) and self.padding == "same":
            return xi, "same", None  # the op's stride-1 "same" splits the padding as TensorFlow
        return sp.pad_images(xi, pads), 0, pads

    def forward_pooled(self, x, pool, training=False):
        """``pool.forward(self.forward(x))`` for a following MaxPooling2D of 2x2 windows at
        stride 2 ("valid"), both layers channels_first, in one fused op
        (``ops.conv2d_max_pool2d_forward``: where a kernel serves the shape, the convolution's
        output is pooled while in cache, never written out). Both layers keep their contexts
        for the pair's backward, ``pool.backward_relu`` then ``backward_preactivation``."""
        xi = self._input(x)
        act = self.activation
        if (self._RANK != 2 or self._last or pool._last or not self.relu_in_kernel
                or not pool.built or pool.pool_size != (2, 2) or pool.strides != (2, 2) or pool.padding != "valid"):
            return pool.forward(self.forward(xi, training), training)
        xi, padding, crop = self._op_padding(xi)
        if crop is not None:
            return pool.forward(self.forward(x, training), training)
        y, self._ctx, pool._ctx = ops.conv2d_max_pool2d_forward(
            xi, self._kernel4, self.bias, stride=self._s2, padding=padding, dilation=self._d2,
            groups=self.groups, activation=act.fused, alpha=act.fused_alpha)
        self._geom = None
        self._act_ctx = self._post_ctx = None
        pool._pads = None
        return y

    def backward_pooled(self, dy, pool, need_dx=True):
        """``backward_preactivation(pool.backward_relu(dy))`` after ``forward_pooled`` in one
        fused op (``ops.conv2d_max_pool2d_backward``): without ``need_dx`` (a first layer), the
        pre-pool gradient is unpooled block by block into cache where a kernel serves the
        shape. Returns the input gradient, or None."""
        if (need_dx or not self.trainable or self._geom is not None or pool._pads is not None
                or self._last or pool._last or self._act_ctx is not None
                or self._post_ctx is not None or not self.relu_in_kernel):
            return self.backward_preactivation(pool.backward_relu(dy), need_dx)
        if self._ctx is None or pool._ctx is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        _, dw, db = ops.conv2d_max_pool2d_backward(self._ctx, pool._ctx, _as_array(dy),
                                                   relu=True, need_dx=False)
        self._store_grads(dw.reshape(self.kernel.shape), db)
        return None

    def _run(self, xi, act=None):
        xi, padding, crop = self._op_padding(xi)
        y, self._ctx = ops.conv2d_forward(xi, self._kernel4, self.bias, stride=self._s2,
                                          padding=padding, dilation=self._d2,
                                          groups=self.groups,
                                          activation=None if act is None else act.fused,
                                          alpha=None if act is None else act.fused_alpha)
        self._geom = crop
        return y

    def _run_backward(self, dy, need_dx, through_activation=True):
        need_dw = self.trainable
        dx, dw, db = ops.conv2d_backward(self._ctx, dy, need_dx=need_dx, need_dw=need_dw,
                                         need_db=need_dw, through_activation=through_activation)
        if dx is not None and self._geom is not None:
            dx = sp.crop_images(dx, self._geom)
        return dx, dw, db


class Conv2D(_Forward):
    """2-D convolution (cross-correlation, as Keras and PyTorch): ``activation(conv(x, kernel)
    + bias)``.

    Inputs ``(batch, channels, height, width)`` with ``data_format="channels_first"`` (the
    default), ``(batch, height, width, channels)`` with ``"channels_last"``. ``kernel_size``,
    ``strides``, ``dilation_rate``: an int or a pair; ``padding``: "valid", "same" (Keras's),
    an int or a pair; ``groups`` splits the channels into groups convolved separately. The kernel
    has shape ``(filters, channels / groups, kh, kw)``, PyTorch's ``Conv2d.weight``
    (``torch_weights()`` / ``set_torch_weights()`` exchange ``weight`` and ``bias``).
    ``activation`` and ``alpha`` as for Dense.
    """

    def __init__(self, filters: int, kernel_size: Any, strides: Any = 1,
                 padding: Any = "valid", dilation_rate: Any = 1, groups: int = 1,
                 activation: Optional[str] = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, bias_regularizer: Any = None,
                 data_format: str = "channels_first",
                 input_shape: Optional[Sequence[int]] = None, dtype: Any = "float32", *,
                 alpha: Optional[float] = None, name: Optional[str] = None,
                 trainable: bool = True) -> None:
        super().__init__(filters, kernel_size, strides, padding, None, dilation_rate, groups,
                         activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, data_format, input_shape, dtype,
                         alpha, name, trainable)


class Conv1D(_Forward):
    """1-D convolution over the steps of a sequence, run as a 2-D convolution of height-1
    images.

    Inputs ``(batch, steps, channels)`` with ``data_format="channels_last"`` (the default, as
    Keras), ``(batch, channels, steps)`` with ``"channels_first"``. ``padding``: "valid",
    "same", "causal" (output step t sees input steps up to t only) or an int. The kernel has
    shape ``(filters, channels / groups, kernel_size)``, PyTorch's ``Conv1d.weight``.
    """

    _RANK = 1
    _PADDINGS = ("valid", "same", "causal")

    def __init__(self, filters: int, kernel_size: Any, strides: Any = 1,
                 padding: Any = "valid", dilation_rate: Any = 1, groups: int = 1,
                 activation: Optional[str] = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, bias_regularizer: Any = None,
                 data_format: str = "channels_last",
                 input_shape: Optional[Sequence[int]] = None, dtype: Any = "float32", *,
                 alpha: Optional[float] = None, name: Optional[str] = None,
                 trainable: bool = True) -> None:
        super().__init__(filters, kernel_size, strides, padding, None, dilation_rate, groups,
                         activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, data_format, input_shape, dtype,
                         alpha, name, trainable)


class Conv2DTranspose(_Conv):
    """Transposed 2-D convolution (Conv2D's gradient with respect to its input), for
    upsampling: ``activation(conv_transpose(x, kernel) + bias)``.

    Output size per axis, as Keras (``span = dilation * (k - 1) + 1``):

    * ``padding="same"``: ``size * stride``; aligned as TensorFlow's (the adjoint of a
      Conv2D with ``padding="same"`` and this stride): when the cropped total is odd, the
      extra row/column comes off the bottom/right;
    * ``"valid"``: ``size * stride + max(span - stride, 0)``;
    * with ``output_padding`` given: ``(size - 1) * stride + span - 2 * pad + output_padding``
      with ``pad`` 0 ("valid") or ``span // 2`` ("same");
    * an int or pair ``padding``: PyTorch's ``ConvTranspose2d`` (``output_padding`` default 0).

    The kernel has shape ``(channels, filters / groups, kh, kw)``, PyTorch's
    ``ConvTranspose2d.weight``.
    """

    _TRANSPOSED = True

    def __init__(self, filters: int, kernel_size: Any, strides: Any = 1,
                 padding: Any = "valid", output_padding: Any = None, dilation_rate: Any = 1,
                 groups: int = 1, activation: Optional[str] = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, bias_regularizer: Any = None,
                 data_format: str = "channels_first",
                 input_shape: Optional[Sequence[int]] = None, dtype: Any = "float32", *,
                 alpha: Optional[float] = None, name: Optional[str] = None,
                 trainable: bool = True) -> None:
        super().__init__(filters, kernel_size, strides, padding, output_padding, dilation_rate,
                         groups, activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, data_format, input_shape, dtype,
                         alpha, name, trainable)

    def _axis_geometry(self, a, size):
        span, s = self._spans[a], self._s2[a]
        p, given = self._pad2, self._op_pad2
        crop = 0
        if isinstance(p, tuple):
            pad, op_pad = p[a], 0 if given is None else given[a]
        elif given is not None:
            pad, op_pad = (0 if p == "valid" else span // 2), given[a]
        elif p == "valid":
            pad, op_pad = 0, max(s - span, 0)
        else:
            # "same": TensorFlow crops total = span - stride, floor(total / 2) at the top. The op
            # crops its padding from both ends, so an odd total leaves one extra row at the
            # bottom, which is sliced off here; a negative total (stride > span) means rows of
            # bias alone at the bottom, the op's output_padding.
            total = span - s
            if total >= 0:
                pad, op_pad, crop = total // 2, 0, total % 2
            else:
                pad, op_pad = 0, -total
        out = (size - 1) * s - 2 * pad + span + op_pad - crop
        if out < 1:
            raise ValueError(f"{self.name}: padding {p!r} crops more than the transposed "
                             f"convolution of an input of size {size} produces (kernel "
                             f"{self.kernel_size}, strides {self.strides})")
        return pad, op_pad, crop, out

    def _run(self, xi, act=None):
        geo = [self._axis_geometry(a, xi.shape[2 + a]) for a in range(2)]
        y, self._ctx = ops.conv_transpose2d_forward(
            xi, self.kernel, self.bias, stride=self._s2, padding=(geo[0][0], geo[1][0]),
            output_padding=(geo[0][1], geo[1][1]), dilation=self._d2, groups=self.groups)
        crops = (geo[0][2], geo[1][2])
        self._geom = crops if any(crops) else None
        if self._geom is not None:
            y = y[:, :, :y.shape[2] - crops[0], :y.shape[3] - crops[1]]
        return y

    def _run_backward(self, dy, need_dx, through_activation=True):
        if self._geom is not None:  # the cropped rows got no gradient
            full = np.zeros(self._ctx.y_shape, dy.dtype)
            full[:, :, :dy.shape[2], :dy.shape[3]] = dy
            dy = full
        need_dw = self.trainable
        return ops.conv_transpose2d_backward(self._ctx, dy, need_dx=need_dx, need_dw=need_dw,
                                             need_db=need_dw)

    def get_config(self):
        cfg = super().get_config()
        cfg["output_padding"] = (None if self.output_padding is None
                                 else list(self.output_padding))
        return cfg
