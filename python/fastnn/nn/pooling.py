"""Pooling layers: ``MaxPooling2D`` (``MaxPool2D``), ``AveragePooling2D`` (``AvgPool2D``) and
``GlobalAveragePooling2D``, on ``ops.max_pool2d``, ``ops.avg_pool2d`` and
``ops.global_avg_pool2d``.

Keras's arguments and output sizes: ``pool_size`` (int or pair, default 2), ``strides``
(default: ``pool_size``), ``padding`` "valid" (windows inside the input only) or "same"
(``ceil(size / stride)`` windows; the padding is ignored: a max never picks it and an average
divides by the window's elements inside the input, as Keras does), ``data_format`` as the
convolution layers ("channels_first" by default, the ops' NCHW; "channels_last" transposes).

When "same" needs an odd total padding on an axis (its extra row goes at the bottom/right),
which the ops' symmetric padding cannot express, the layer pads a copy of the input itself: with
-inf for a max, with zeros for an average, whose window sums it then divides by their counts.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np

from .. import ops
from . import _spatial as sp
from .core import _REGISTRY, Layer, _as_array

__all__ = ["MaxPooling2D", "MaxPool2D", "AveragePooling2D", "AvgPool2D",
           "GlobalAveragePooling2D"]


class _Pool2D(Layer):
    """The shared window arithmetic; subclasses run the op."""

    def __init__(self, pool_size: Any = 2, strides: Any = None, padding: str = "valid",
                 data_format: str = "channels_first", *, name: Optional[str] = None,
                 trainable: bool = True, input_shape: Optional[Sequence[int]] = None,
                 dtype: Any = None) -> None:
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        self.pool_size = sp.int_tuple(pool_size, 2, "pool_size", 1)
        self.strides = (self.pool_size if strides is None
                        else sp.int_tuple(strides, 2, "strides", 1))
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        self.padding = padding.lower()
        self.data_format = sp.data_format(data_format)
        self._last = self.data_format == "channels_last"
        self._ctx = None
        self._pads = None
        self._scale = None

    def _axis(self, a: int, size: int) -> Tuple[Tuple[int, int], int]:
        """``((pad before, pad after), output size)`` of axis ``a`` for an input of ``size``."""
        k, s = self.pool_size[a], self.strides[a]
        if self.padding == "same":
            return sp.same_pads(size, k, s), -(-size // s)
        if k > size:
            raise ValueError(f"{self.name}: pool_size {self.pool_size} is larger than the input "
                             f"({size} along axis {a}) with padding='valid'")
        return (0, 0), (size - k) // s + 1

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{self.name}: {type(self).__name__} takes 4-D inputs (batch and "
                             f"3 dimensions, data_format={self.data_format!r}), got shape "
                             f"{tuple(input_shape)}")
        channels, spatial = sp.split_shape(input_shape[1:], 2, self._last)
        out = [None if n is None else self._axis(a, n)[1] for a, n in enumerate(spatial)]
        return (input_shape[0],) + sp.join_shape(channels, out, self._last)

    def _images(self, x: Any) -> np.ndarray:
        x = _as_array(x)
        self._ensure_built(x)
        if x.ndim != 4:
            raise ValueError(f"{self.name}: expected inputs of shape {self.input_shape}, got "
                             f"{x.shape}")
        if self.dtype is not None and isinstance(x, np.ndarray) and x.dtype != self.dtype:
            x = x.astype(self.dtype)
        return sp.to_nchw(x, 2, self._last)

    def _pad_plan(self, xi: np.ndarray):
        """``(symmetric padding for the op or None, uneven pads to apply here or None)``."""
        pads = tuple(self._axis(a, xi.shape[2 + a])[0] for a in range(2))
        if pads[0][0] == pads[0][1] and pads[1][0] == pads[1][1]:
            return (pads[0][0], pads[1][0]), None
        return None, pads

    def forward(self, x, training=False):
        xi = self._images(x)
        padding, self._pads = self._pad_plan(xi)
        y = self._pool(xi, padding)
        return sp.from_nchw(y, 2, self._last)

    def backward(self, dy, need_dx=True):
        return self._backward(dy, need_dx, self._unpool)

    def _backward(self, dy, need_dx, unpool):
        if self._ctx is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        if not need_dx:
            return None
        dx = unpool(sp.to_nchw(_as_array(dy), 2, self._last))
        if self._pads is not None:
            dx = sp.crop_images(dx, self._pads)
        return sp.from_nchw(dx, 2, self._last)

    def get_config(self):
        cfg = super().get_config()
        cfg.update({"pool_size": list(self.pool_size), "strides": list(self.strides),
                    "padding": self.padding, "data_format": self.data_format})
        return cfg


class MaxPooling2D(_Pool2D):
    """The maximum of each ``pool_size`` window (see the module docstring for the arguments)."""

    def _pool(self, xi, padding):
        if self._pads is not None:
            xi, padding = sp.pad_images(xi, self._pads, -np.inf), 0
        y, self._ctx = ops.max_pool2d_forward(xi, self.pool_size, self.strides, padding)
        return y

    def _unpool(self, dy):
        return ops.max_pool2d_backward(self._ctx, dy)[0]

    def backward_relu(self, dy, need_dx=True):
        """``backward`` for an input that a relu produced: the gradient with respect to the
        relu's input, its derivative applied on the pooled gradient (``max_pool2d_backward``
        with ``relu=True``); the layer before then takes it through
        ``Conv2D.backward_preactivation``."""
        return self._backward(dy, need_dx, self._unpool_relu)

    def _unpool_relu(self, dy):
        return ops.max_pool2d_backward(self._ctx, dy, relu=True)[0]


class AveragePooling2D(_Pool2D):
    """The mean of each ``pool_size`` window (see the module docstring for the arguments)."""

    def _pool(self, xi, padding):
        self._scale = None
        if self._pads is None:
            y, self._ctx = ops.avg_pool2d_forward(xi, self.pool_size, self.strides, padding,
                                                  count_include_pad=False)
            return y
        xi = sp.pad_images(xi, self._pads)
        y, self._ctx = ops.avg_pool2d_forward(xi, self.pool_size, self.strides, 0)
        # The op divided every window by its full size; rescale to the count of input elements.
        self._scale = self._window_scale(xi.shape[2:], y.shape[2:], y.dtype)
        y *= self._scale
        return y

    def _window_scale(self, padded, out, dtype) -> np.ndarray:
        counts = []
        for a in range(2):
            k, s = self.pool_size[a], self.strides[a]
            lo, hi = self._pads[a][0], padded[a] - self._pads[a][1]
            start = np.arange(out[a]) * s
            counts.append(np.minimum(start + k, hi) - np.maximum(start, lo))
        area = self.pool_size[0] * self.pool_size[1]
        return (area / np.outer(counts[0], counts[1])).astype(dtype)

    def _unpool(self, dy):
        if self._scale is not None:
            dy = dy * self._scale
        return ops.avg_pool2d_backward(self._ctx, dy)[0]


class GlobalAveragePooling2D(Layer):
    """The mean of every channel's plane: ``(batch, channels)`` out, or with ``keepdims=True``
    ``(batch, channels, 1, 1)`` (channels_first) / ``(batch, 1, 1, channels)``
    (channels_last)."""

    def __init__(self, data_format: str = "channels_first", keepdims: bool = False, *,
                 name: Optional[str] = None, trainable: bool = True,
                 input_shape: Optional[Sequence[int]] = None, dtype: Any = None) -> None:
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        self.data_format = sp.data_format(data_format)
        self._last = self.data_format == "channels_last"
        self.keepdims = bool(keepdims)
        self._ctx = None

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{self.name}: GlobalAveragePooling2D takes 4-D inputs, got shape "
                             f"{tuple(input_shape)}")
        channels = sp.split_shape(input_shape[1:], 2, self._last)[0]
        if self.keepdims:
            return (input_shape[0],) + sp.join_shape(channels, (1, 1), self._last)
        return (input_shape[0], channels)

    def forward(self, x, training=False):
        x = _as_array(x)
        self._ensure_built(x)
        if x.ndim != 4:
            raise ValueError(f"{self.name}: expected inputs of shape {self.input_shape}, got "
                             f"{x.shape}")
        if self.dtype is not None and isinstance(x, np.ndarray) and x.dtype != self.dtype:
            x = x.astype(self.dtype)
        y, self._ctx = ops.global_avg_pool2d_forward(sp.to_nchw(x, 2, self._last))
        if self.keepdims:
            return sp.from_nchw(y, 2, self._last)
        return y.reshape(y.shape[0], y.shape[1])

    def backward(self, dy, need_dx=True):
        if self._ctx is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        if not need_dx:
            return None
        dy = _as_array(dy)
        dy = (sp.to_nchw(dy, 2, self._last) if self.keepdims
              else dy.reshape(dy.shape[0], dy.shape[1], 1, 1))
        return sp.from_nchw(ops.global_avg_pool2d_backward(self._ctx, dy)[0], 2, self._last)

    def get_config(self):
        cfg = super().get_config()
        cfg.update({"data_format": self.data_format, "keepdims": self.keepdims})
        return cfg


# Keras's short names: the same classes (a model saves the long name), loadable by either.
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
_REGISTRY["MaxPool2D"] = MaxPooling2D
_REGISTRY["AvgPool2D"] = AveragePooling2D
