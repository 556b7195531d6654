"""The convolution family: ``conv2d`` and ``conv_transpose2d`` on NCHW images.

Every function follows the op contract: ``op`` (inference), ``op_forward`` -> ``(out, ctx)``,
``op_backward(ctx, d_out)`` -> gradients of the inputs and parameters in argument order.
Weights are laid out as PyTorch's: conv2d (C_out, C_in/groups, kh, kw), conv_transpose2d
(C_in, C_out/groups, kh, kw); ``stride``, ``padding``, ``dilation`` and ``output_padding`` take
an int or a pair (height, width), with PyTorch's semantics.

Three kernels serve both ops, since a transposed convolution is the adjoint of a convolution:
conv_transpose2d's forward is conv2d's backward-data kernel, its input gradient is conv2d's
forward kernel, and its weight gradient is conv2d's weight-gradient kernel with the roles of
input and output gradient swapped. The kernels know only the top/left padding; the bottom/right
padding follows from the output size they are handed, so "same" padding that needs one more
row at the bottom (an even kernel) costs nothing extra.

Bias terms that no kernel covers (conv_transpose2d's, and conv2d's bias gradient when the
weight gradient is not wanted) are a NumPy broadcast add and a NumPy sum over (N, H, W).

CUDA device arrays (any argument) run the CUDA kernels, whatever the backend, with the outputs
allocated on the device (see ``_image``); there the two bias terms are the CUDA helpers
``add_channel_bias`` and ``channel_sums``, and the CUDA kernels handle the empty reductions
(no input channels, an empty batch) themselves.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import numpy as np

from .. import backend as _backend
from . import _check
from . import _image as _im
from ._activations import GELU, resolve

__all__ = ["conv2d", "conv2d_forward", "conv2d_backward", "conv_transpose2d",
           "conv_transpose2d_forward", "conv_transpose2d_backward", "ConvCtx"]

PairArg = Union[int, Tuple[int, int]]
_SUMS = (0, 2, 3)
_NO_ACT = (0, 0.0)


class ConvCtx:
    """What the backward needs: the (C-contiguous) input and weight, whether there was a bias,
    the geometry the kernels take (stride, top/left padding, dilation, groups) and the output
    shape; with a fused activation its (code, parameter), the output y and, for activations
    whose derivative needs it (gelu), the pre-activation z."""
    __slots__ = ("x", "w", "has_bias", "geom", "y_shape", "transposed", "act", "y", "z")


def _weights(x: Any, w: Any, b: Any, groups: Any, op: str, transposed: bool):
    """w (4-D, x's dtype), groups and b checked against x; returns (w, b, groups, c_out)."""
    w = _im.float_arg(w, "w", op, device=True)
    layout = "(C_in, C_out/groups, kh, kw)" if transposed else "(C_out, C_in/groups, kh, kw)"
    if w.ndim != 4:
        raise ValueError(f"{op}: w must be 4-D {layout}, got shape {w.shape}")
    _im.same_dtype(op, x, "x", w, "w")
    groups = _im.positive_int(groups, "groups", op)
    if w.shape[2] < 1 or w.shape[3] < 1:
        raise ValueError(f"{op}: w must have a kernel of at least 1x1, got shape {w.shape}")
    c_in = x.shape[1]
    if c_in % groups:
        raise ValueError(f"{op}: x has {c_in} channels (shape {x.shape}), not divisible by "
                         f"groups={groups}")
    if transposed:
        if w.shape[0] != c_in:
            raise ValueError(f"{op}: x has {c_in} channels (shape {x.shape}) but w of shape "
                             f"{w.shape} {layout} expects {w.shape[0]}")
        c_out = w.shape[1] * groups
    else:
        c_out = w.shape[0]
        if c_out % groups:
            raise ValueError(f"{op}: w has {c_out} output channels (shape {w.shape}), not "
                             f"divisible by groups={groups}")
        if w.shape[1] * groups != c_in:
            raise ValueError(f"{op}: x has {c_in} channels (shape {x.shape}) but w of shape "
                             f"{w.shape} {layout} expects {w.shape[1]} per group, "
                             f"{w.shape[1] * groups} with groups={groups}")
    if b is not None:
        b = _im.channel_vector(b, "b", op, c_out, x, device=True)
    return w, b, groups, c_out


def _padding(padding: Any, k: Tuple[int, int], dil: Tuple[int, int], stride: Tuple[int, int],
             op: str) -> Tuple[int, int, int, int]:
    """(top, bottom, left, right) from an int, a pair, "same" or "valid"."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{op}: padding='same' needs stride 1, got stride={stride}")
            # PyTorch's split: the odd row/column of the total goes to the bottom/right.
            th, tw = dil[0] * (k[0] - 1), dil[1] * (k[1] - 1)
            return th // 2, th - th // 2, tw // 2, tw - tw // 2
        raise ValueError(f"{op}: padding must be an int, a pair, 'same' or 'valid', got "
                         f"{padding!r}")
    ph, pw = _im.pair(padding, "padding", op, 0)
    return ph, ph, pw, pw


def _conv_args(x: Any, w: Any, b: Any, stride: Any, padding: Any, dilation: Any, groups: Any):
    op = "conv2d"
    x = _im.image(x, "x", op, device=True)
    w, b, groups, c_out = _weights(x, w, b, groups, op, transposed=False)
    sh, sw = _im.pair(stride, "stride", op, 1)
    dil = _im.pair(dilation, "dilation", op, 1)
    k = (w.shape[2], w.shape[3])
    pt, pb, pl, pr = _padding(padding, k, dil, (sh, sw), op)
    span_h, span_w = dil[0] * (k[0] - 1) + 1, dil[1] * (k[1] - 1) + 1
    h, wd = x.shape[2] + pt + pb, x.shape[3] + pl + pr
    if span_h > h or span_w > wd:
        raise ValueError(f"{op}: the kernel {k} with dilation {dil} spans {span_h}x{span_w}, "
                         f"larger than the padded input {h}x{wd} (x shape {x.shape}, padding "
                         f"{padding!r})")
    y_shape = (x.shape[0], c_out, (h - span_h) // sh + 1, (wd - span_w) // sw + 1)
    return x, w, b, (sh, sw, pt, pl, dil[0], dil[1], groups), y_shape


def _fill_bias(y: np.ndarray, b: Optional[np.ndarray]) -> None:
    """The output of a convolution over zero input channels."""
    y[...] = 0 if b is None else b[:, None, None]


def _conv2d(x: Any, w: Any, b: Any, stride: Any, padding: Any, dilation: Any, groups: Any,
            act: Tuple[int, float] = _NO_ACT):
    """(y, x, w, b, geom, z): y = act(conv + b); z the pre-activation where the derivative needs
    it (gelu: not fused into the kernel, applied after it), else None."""
    x, w, b, geom, y_shape = _conv_args(x, w, b, stride, padding, dilation, groups)
    code, param = act
    fused = act if code not in (0, GELU) else ()  # the kernels' trailing (act, act_param)
    if _im.any_device(x, w, b):
        y = _im.device_empty(y_shape, x.dtype)
        if y.size:
            _im.device_kernel("conv2d_forward")(y, x, w, b, *geom, *fused)
    else:
        y = _check.host_empty(y_shape, x.dtype)
        if y.size:
            if x.size:
                _im.kernel("conv2d_forward")(y, x, w, b, *geom, *fused)
            else:
                _fill_bias(y, b)
                if code not in (0, GELU):
                    _backend.kernels_for(y).activation(y, y, code, param)
    z = None
    if code == GELU:
        z, y = y, _empty_like(y)
        if y.size:
            _backend.kernels_for(z).activation(y, z, code, param)
    return y, x, w, b, geom, z


def _empty_like(a: Any) -> Any:
    return np.empty_like(a) if isinstance(a, np.ndarray) else _im.device_empty(a.shape, a.dtype)


def _activation(activation: Optional[str], alpha: Optional[float]) -> Tuple[int, float]:
    if activation is None and alpha is None:
        return _NO_ACT
    return resolve(activation, alpha)


def conv2d(x: Any, w: Any, b: Any = None, *, stride: PairArg = 1,
           padding: Union[PairArg, str] = 0, dilation: PairArg = 1, groups: int = 1,
           activation: Optional[str] = None, alpha: Optional[float] = None) -> np.ndarray:
    """2-D cross-correlation, as PyTorch's ``conv2d``: x (N, C_in, H, W), w (C_out,
    C_in/groups, kh, kw), b (C_out,) or None -> (N, C_out, OH, OW).

    ``padding`` is an int, a pair, "valid" (none) or "same" (output size = input size, stride 1
    only; when the total padding is odd, the extra row/column goes to the bottom/right).
    ``activation`` (relu, leaky_relu with slope ``alpha``, sigmoid, tanh, elu, selu, gelu or
    None) is applied to the result inside the kernel, while each block of it is still in cache,
    as the fused epilogue of ``linear``.
    """
    return _conv2d(x, w, b, stride, padding, dilation, groups, _activation(activation, alpha))[0]


def _ctx(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray], geom: tuple,
         y_shape: Tuple[int, ...], transposed: bool) -> ConvCtx:
    ctx = ConvCtx()
    ctx.x, ctx.w, ctx.has_bias, ctx.geom = x, w, b is not None, geom
    ctx.y_shape, ctx.transposed = y_shape, transposed
    ctx.act, ctx.y, ctx.z = None, None, None
    return ctx


def conv2d_forward(x: Any, w: Any, b: Any = None, *, stride: PairArg = 1,
                   padding: Union[PairArg, str] = 0, dilation: PairArg = 1, groups: int = 1,
                   activation: Optional[str] = None, alpha: Optional[float] = None
                   ) -> Tuple[np.ndarray, ConvCtx]:
    """``conv2d`` plus the context for ``conv2d_backward``."""
    act = _activation(activation, alpha)
    y, x, w, b, geom, z = _conv2d(x, w, b, stride, padding, dilation, groups, act)
    ctx = _ctx(x, w, b, geom, y.shape, transposed=False)
    if act[0]:
        ctx.act, ctx.y, ctx.z = act, y, z
    return y, ctx


def _check_ctx(ctx: Any, transposed: bool, op: str) -> None:
    if not isinstance(ctx, ConvCtx) or ctx.transposed != transposed:
        fwd = "conv_transpose2d_forward" if transposed else "conv2d_forward"
        raise TypeError(f"{op}: ctx must come from {fwd}, got {type(ctx).__name__}")


def conv2d_backward(ctx: ConvCtx, dy: Any, *, need_dx: bool = True, need_dw: bool = True,
                    need_db: bool = True, through_activation: bool = True
                    ) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
    """Gradients ``(dx, dw, db)`` of ``conv2d``.

    Each is None when not asked for (``need_dx=False`` for a first layer, ``need_dw=False`` for
    frozen weights); ``db`` is also None without a bias. ``through_activation=False`` takes
    ``dy`` as the gradient of the pre-activation, the fused activation's derivative already
    applied by the caller (``max_pool2d_backward(..., relu=True)`` does, for a relu).
    """
    op = "conv2d_backward"
    _check_ctx(ctx, False, op)
    x, w = ctx.x, ctx.w
    dy = _im.grad_like(dy, "dy", op, ctx.y_shape, x.dtype, device=True)
    if ctx.act is not None and dy.size and through_activation:  # through the activation first
        if ctx.y is None:
            raise ValueError(f"{op}: this ctx comes from conv2d_max_pool2d_forward, which keeps "
                             "no convolution output to take the activation's derivative at: "
                             "pass through_activation=False with the gradient that "
                             "max_pool2d_backward(..., relu=True) returns")
        dz = _empty_like(dy)
        _backend.kernels_for(dy).activation_backward(dz, dy, ctx.z, ctx.y, *ctx.act)
        dy = dz
    if _im.any_device(x, w, dy):
        return _device_backward(ctx, dy, need_dx, need_dw, need_db, transposed=False)
    dx = _check.host_empty(x.shape, x.dtype) if need_dx else None
    dw = np.empty(w.shape, x.dtype) if need_dw else None
    db = np.empty((w.shape[0],), x.dtype) if need_db and ctx.has_bias else None
    if dx is not None and dx.size:
        if dy.size:
            _im.kernel("conv2d_backward_data")(dx, dy, w, *ctx.geom)
        else:  # no output channels: nothing depends on x
            dx[...] = 0
    if dw is not None and dw.size:
        if dy.size:
            _im.kernel("conv2d_backward_weight")(dw, db, dy, x, *ctx.geom)
        else:  # an empty batch
            dw[...] = 0
            if db is not None:
                db[...] = 0
    elif db is not None:  # weights frozen or no input channels: only the bias sum is wanted
        db[...] = dy.sum(axis=_SUMS)
    return dx, dw, db


def _device_backward(ctx: ConvCtx, dy: Any, need_dx: bool, need_dw: bool, need_db: bool,
                     transposed: bool) -> Tuple[Any, Any, Any]:
    """conv2d_backward and conv_transpose2d_backward on the device: the kernels of the host
    path, with the roles of dy and x swapped for the transposed op (see the module docstring);
    the CUDA kernels write zeros for empty reductions, so no case needs a fill."""
    x, w = ctx.x, ctx.w
    dt = x.dtype
    n_bias = ctx.y_shape[1]
    dx = _im.device_empty(x.shape, dt) if need_dx else None
    dw = _im.device_empty(w.shape, dt) if need_dw else None
    db = _im.device_empty((n_bias,), dt) if need_db and ctx.has_bias else None
    if dx is not None and dx.size:
        if transposed:
            _im.device_kernel("conv2d_forward")(dx, dy, w, None, *ctx.geom)
        else:
            _im.device_kernel("conv2d_backward_data")(dx, dy, w, *ctx.geom)
    if transposed:
        if dw is not None and dw.size:
            _im.device_kernel("conv2d_backward_weight")(dw, None, x, dy, *ctx.geom)
        if db is not None:
            _im.device_kernel("channel_sums")(db, dy)
    elif dw is not None and dw.size:
        _im.device_kernel("conv2d_backward_weight")(dw, db, dy, x, *ctx.geom)
    elif db is not None:
        _im.device_kernel("channel_sums")(db, dy)
    return dx, dw, db


# ---------------------------------------------------------------------------------------------
# conv_transpose2d: the adjoint of conv2d, run on conv2d's kernels


def _transpose_args(x: Any, w: Any, b: Any, stride: Any, padding: Any, output_padding: Any,
                    dilation: Any, groups: Any):
    op = "conv_transpose2d"
    x = _im.image(x, "x", op, device=True)
    w, b, groups, c_out = _weights(x, w, b, groups, op, transposed=True)
    s = _im.pair(stride, "stride", op, 1)
    p = _im.pair(padding, "padding", op, 0)
    dil = _im.pair(dilation, "dilation", op, 1)
    op_pad = _im.pair(output_padding, "output_padding", op, 0)
    for a in range(2):
        if op_pad[a] >= max(s[a], dil[a]):
            raise ValueError(f"{op}: output_padding {op_pad} must be smaller than either the "
                             f"stride {s} or the dilation {dil}")
    k = (w.shape[2], w.shape[3])
    out = tuple((x.shape[2 + a] - 1) * s[a] - 2 * p[a] + dil[a] * (k[a] - 1) + op_pad[a] + 1
                for a in range(2))
    if min(out) < 1:
        raise ValueError(f"{op}: the output would be {out[0]}x{out[1]} (x shape {x.shape}, "
                         f"kernel {k}, stride {s}, padding {p}, output_padding {op_pad}, "
                         f"dilation {dil}): padding crops more than the input spans")
    geom = (s[0], s[1], p[0], p[1], dil[0], dil[1], groups)
    return x, w, b, geom, (x.shape[0], c_out) + out


def _conv_transpose2d(x: Any, w: Any, b: Any, stride: Any, padding: Any, output_padding: Any,
                      dilation: Any, groups: Any):
    x, w, b, geom, y_shape = _transpose_args(x, w, b, stride, padding, output_padding,
                                             dilation, groups)
    if _im.any_device(x, w, b):
        y = _im.device_empty(y_shape, x.dtype)
        if y.size:
            _im.device_kernel("conv2d_backward_data")(y, x, w, *geom)
            if b is not None:
                _im.device_kernel("add_channel_bias")(y, b)
        return y, x, w, b, geom
    y = _check.host_empty(y_shape, x.dtype)
    if y.size:
        if x.size:
            # y is the input gradient of the conv2d that maps y-shaped images to x-shaped ones.
            _im.kernel("conv2d_backward_data")(y, x, w, *geom)
            if b is not None:
                y += b[:, None, None]
        else:
            _fill_bias(y, b)
    return y, x, w, b, geom


def conv_transpose2d(x: Any, w: Any, b: Any = None, *, stride: PairArg = 1,
                     padding: PairArg = 0, output_padding: PairArg = 0,
                     dilation: PairArg = 1, groups: int = 1) -> np.ndarray:
    """Transposed convolution, as PyTorch's ``conv_transpose2d``: x (N, C_in, H, W), w (C_in,
    C_out/groups, kh, kw), b (C_out,) or None -> (N, C_out, OH, OW) with
    ``OH = (H - 1)*stride - 2*padding + dilation*(kh - 1) + output_padding + 1``.

    ``output_padding`` (smaller than the stride or the dilation) adds rows/columns at the
    bottom/right, to pick among the input sizes a strided conv2d maps to the same output size.
    """
    return _conv_transpose2d(x, w, b, stride, padding, output_padding, dilation, groups)[0]


def conv_transpose2d_forward(x: Any, w: Any, b: Any = None, *, stride: PairArg = 1,
                             padding: PairArg = 0, output_padding: PairArg = 0,
                             dilation: PairArg = 1, groups: int = 1
                             ) -> Tuple[np.ndarray, ConvCtx]:
    """``conv_transpose2d`` plus the context for ``conv_transpose2d_backward``."""
    y, x, w, b, geom = _conv_transpose2d(x, w, b, stride, padding, output_padding, dilation,
                                         groups)
    return y, _ctx(x, w, b, geom, y.shape, transposed=True)


def conv_transpose2d_backward(ctx: ConvCtx, dy: Any, *, need_dx: bool = True,
                              need_dw: bool = True, need_db: bool = True
                              ) -> Tuple[Optional[np.ndarray], Optional[np.ndarray],
                                         Optional[np.ndarray]]:
    """Gradients ``(dx, dw, db)`` of ``conv_transpose2d`` (None where not asked for; ``db``
    also without a bias)."""
    op = "conv_transpose2d_backward"
    _check_ctx(ctx, True, op)
    x, w = ctx.x, ctx.w
    dy = _im.grad_like(dy, "dy", op, ctx.y_shape, x.dtype, device=True)
    if _im.any_device(x, w, dy):
        return _device_backward(ctx, dy, need_dx, need_dw, need_db, transposed=True)
    dx = _check.host_empty(x.shape, x.dtype) if need_dx else None
    dw = np.empty(w.shape, x.dtype) if need_dw else None
    db = np.empty((ctx.y_shape[1],), x.dtype) if need_db and ctx.has_bias else None
    if dx is not None and dx.size:
        if dy.size:
            # dx is conv2d of dy with the same weights (the adjoint of the adjoint).
            _im.kernel("conv2d_forward")(dx, dy, w, None, *ctx.geom)
        else:
            dx[...] = 0
    if dw is not None and dw.size:
        if dy.size:
            # conv2d's weight gradient with x in the role of its output gradient.
            _im.kernel("conv2d_backward_weight")(dw, None, x, dy, *ctx.geom)
        else:
            dw[...] = 0
    if db is not None:
        db[...] = dy.sum(axis=_SUMS)
    return dx, dw, db
