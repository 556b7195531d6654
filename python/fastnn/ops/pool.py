"""The pooling family: ``max_pool2d``, ``avg_pool2d`` and ``global_avg_pool2d`` on NCHW images.

Every function follows the op contract: ``op`` (inference), ``op_forward`` -> ``(out, ctx)``,
``op_backward(ctx, d_out)`` -> ``(dx,)``. ``kernel_size``, ``stride`` and ``padding`` take an
int or a pair (height, width); ``stride`` defaults to ``kernel_size``. As in PyTorch, padding
is at most half the kernel size, so that every window overlaps the image (a window of padding
alone would have no maximum, and nothing to average without the padding).

max_pool2d pads with -inf and keeps, in its ctx, where each maximum came from (the flat index
``row * W + col`` into its input plane); the first maximum of a window wins, and a NaN wins over
any number (so NaN propagates). global_avg_pool2d is avg_pool2d with one window per plane.

CUDA device arrays run the CUDA kernels, whatever the backend, with the outputs (and the argmax)
allocated on the device (see ``_image``).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import numpy as np

from .. import backend as _backend
from . import _image as _im
from ._activations import resolve as _resolve_activation

__all__ = ["max_pool2d", "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d",
           "avg_pool2d_forward", "avg_pool2d_backward", "global_avg_pool2d",
           "global_avg_pool2d_forward", "global_avg_pool2d_backward", "MaxPool2dCtx",
           "AvgPool2dCtx"]

PairArg = Union[int, Tuple[int, int]]
_RELU = _resolve_activation("relu")[0]


class MaxPool2dCtx:
    """The argmax (int64, the output's shape), the output y, and the input's shape and
    dtype."""
    __slots__ = ("argmax", "y", "x_shape", "dtype")


class AvgPool2dCtx:
    """The window geometry and the input's shape and dtype."""
    __slots__ = ("geom", "count_include_pad", "x_shape", "y_shape", "dtype", "op")


def _pool_args(x: Any, kernel_size: Any, stride: Any, padding: Any, op: str):
    x = _im.image(x, "x", op, device=True)
    k = _im.pair(kernel_size, "kernel_size", op, 1)
    s = k if stride is None else _im.pair(stride, "stride", op, 1)
    p = _im.pair(padding, "padding", op, 0)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{op}: padding {p} must be at most half the kernel size {k}")
    h, w = x.shape[2] + 2 * p[0], x.shape[3] + 2 * p[1]
    if k[0] > h or k[1] > w:
        raise ValueError(f"{op}: kernel_size {k} is larger than the padded input {h}x{w} "
                         f"(x shape {x.shape}, padding {p})")
    y_shape = x.shape[:2] + ((h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1)
    return x, (k[0], k[1], s[0], s[1], p[0], p[1]), y_shape


def _empty(shape: Tuple[int, ...], dtype: np.dtype, device: bool) -> Any:
    return _im.device_empty(shape, dtype) if device else np.empty(shape, dtype)


def _kernel(name: str, device: bool):
    return _im.device_kernel(name) if device else _im.kernel(name)


# ---- max pooling ------------------------------------------------------------------------------

def _max_pool2d(x: Any, kernel_size: Any, stride: Any, padding: Any):
    x, geom, y_shape = _pool_args(x, kernel_size, stride, padding, "max_pool2d")
    dev = _im.is_device(x)
    y = _empty(y_shape, x.dtype, dev)
    argmax = _empty(y_shape, np.dtype(np.int64), dev)
    if y.size:
        _kernel("max_pool2d_forward", dev)(y, argmax, x, *geom)
    return y, argmax, x


def max_pool2d(x: Any, kernel_size: PairArg, stride: Optional[PairArg] = None,
               padding: PairArg = 0) -> np.ndarray:
    """Window maxima: x (N, C, H, W) -> (N, C, OH, OW), ``OH = (H + 2*padding - kh)//stride +
    1``; the padding is -inf."""
    return _max_pool2d(x, kernel_size, stride, padding)[0]


def max_pool2d_forward(x: Any, kernel_size: PairArg, stride: Optional[PairArg] = None,
                       padding: PairArg = 0) -> Tuple[np.ndarray, MaxPool2dCtx]:
    """``max_pool2d`` plus a ctx holding the argmax."""
    y, argmax, x = _max_pool2d(x, kernel_size, stride, padding)
    ctx = MaxPool2dCtx()
    ctx.argmax, ctx.y, ctx.x_shape, ctx.dtype = argmax, y, x.shape, x.dtype
    return y, ctx


def max_pool2d_backward(ctx: MaxPool2dCtx, dy: Any, *, relu: bool = False
                        ) -> Tuple[np.ndarray]:
    """``(dx,)``: each output gradient added to the input element its maximum came from.

    ``relu=True`` for an input that is ``relu(z)``: returns the gradient with respect to ``z``
    instead, ``relu'(z) * dx``. The maximum of a window is the input element it came from, so
    relu's derivative there is ``y > 0`` (0 at 0, as ``activation_backward``): the gate is
    applied to ``dy`` inside the kernel (on the device: on ``dy`` first, a quarter of the
    input's size for 2x2 windows), and the pass over the whole input that
    ``activation_backward`` would make is saved.
    """
    op = "max_pool2d_backward"
    if not isinstance(ctx, MaxPool2dCtx):
        raise TypeError(f"{op}: ctx must come from max_pool2d_forward, got "
                        f"{type(ctx).__name__}")
    dy = _im.grad_like(dy, "dy", op, tuple(ctx.argmax.shape), ctx.dtype, device=True)
    dev = _im.any_device(ctx.argmax, dy)
    gate = None
    if relu and dy.size:
        if dev:  # the device kernel takes no gate: the derivative on dy first
            gated = _empty(dy.shape, ctx.dtype, dev)
            _backend.kernels_for(dy, ctx.y).activation_backward(gated, dy, None, ctx.y, _RELU,
                                                                0.0)
            dy = gated
        else:
            gate = ctx.y
    dx = _empty(ctx.x_shape, ctx.dtype, dev)
    if dx.size:
        if gate is None:
            _kernel("max_pool2d_backward", dev)(dx, ctx.argmax, dy)
        else:
            _kernel("max_pool2d_backward", dev)(dx, ctx.argmax, dy, gate)
    return (dx,)


# ---- average pooling ----------------------------------------------------------------------------

def _avg_ctx(x: np.ndarray, geom: tuple, count_include_pad: bool, y: np.ndarray,
             op: str) -> AvgPool2dCtx:
    ctx = AvgPool2dCtx()
    ctx.geom, ctx.count_include_pad = geom, count_include_pad
    ctx.x_shape, ctx.y_shape, ctx.dtype, ctx.op = x.shape, y.shape, x.dtype, op
    return ctx


def _avg_pool2d(x: Any, kernel_size: Any, stride: Any, padding: Any, count_include_pad: Any):
    op = "avg_pool2d"
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"{op}: count_include_pad must be a bool, got "
                        f"{type(count_include_pad).__name__}")
    x, geom, y_shape = _pool_args(x, kernel_size, stride, padding, op)
    dev = _im.is_device(x)
    y = _empty(y_shape, x.dtype, dev)
    if y.size:
        _kernel("avg_pool2d_forward", dev)(y, x, *geom, bool(count_include_pad))
    return y, x, geom, bool(count_include_pad)


def avg_pool2d(x: Any, kernel_size: PairArg, stride: Optional[PairArg] = None,
               padding: PairArg = 0, count_include_pad: bool = True) -> np.ndarray:
    """Window means over the zero-padded input: x (N, C, H, W) -> (N, C, OH, OW). With
    ``count_include_pad=False`` a window is divided by its elements inside the image only."""
    return _avg_pool2d(x, kernel_size, stride, padding, count_include_pad)[0]


def avg_pool2d_forward(x: Any, kernel_size: PairArg, stride: Optional[PairArg] = None,
                       padding: PairArg = 0, count_include_pad: bool = True
                       ) -> Tuple[np.ndarray, AvgPool2dCtx]:
    """``avg_pool2d`` plus the context for ``avg_pool2d_backward``."""
    y, x, geom, cip = _avg_pool2d(x, kernel_size, stride, padding, count_include_pad)
    return y, _avg_ctx(x, geom, cip, y, "avg_pool2d")


def _avg_backward(ctx: Any, dy: Any, op: str) -> Tuple[np.ndarray]:
    fwd = op.replace("_backward", "")
    if not isinstance(ctx, AvgPool2dCtx) or ctx.op != fwd:
        raise TypeError(f"{op}: ctx must come from {fwd}_forward, got {type(ctx).__name__}")
    dy = _im.grad_like(dy, "dy", op, ctx.y_shape, ctx.dtype, device=True)
    dev = _im.is_device(dy)
    dx = _empty(ctx.x_shape, ctx.dtype, dev)
    if dx.size:
        _kernel("avg_pool2d_backward", dev)(dx, dy, *ctx.geom, ctx.count_include_pad)
    return (dx,)


def avg_pool2d_backward(ctx: AvgPool2dCtx, dy: Any) -> Tuple[np.ndarray]:
    """``(dx,)``: each output gradient divided by its window's divisor and spread over the
    window's elements inside the image."""
    return _avg_backward(ctx, dy, "avg_pool2d_backward")


# ---- global average pooling ---------------------------------------------------------------------

def _global_avg_pool2d(x: Any):
    op = "global_avg_pool2d"
    x = _im.image(x, "x", op, device=True)
    h, w = x.shape[2], x.shape[3]
    geom = (h, w, h, w, 0, 0)
    dev = _im.is_device(x)
    y = _empty(tuple(x.shape[:2]) + (1, 1), x.dtype, dev)
    if y.size:
        _kernel("avg_pool2d_forward", dev)(y, x, *geom, True)
    return y, x, geom


def global_avg_pool2d(x: Any) -> np.ndarray:
    """The mean of every plane: x (N, C, H, W) -> (N, C, 1, 1)."""
    return _global_avg_pool2d(x)[0]


def global_avg_pool2d_forward(x: Any) -> Tuple[np.ndarray, AvgPool2dCtx]:
    """``global_avg_pool2d`` plus the context for ``global_avg_pool2d_backward``."""
    y, x, geom = _global_avg_pool2d(x)
    return y, _avg_ctx(x, geom, True, y, "global_avg_pool2d")


def global_avg_pool2d_backward(ctx: AvgPool2dCtx, dy: Any) -> Tuple[np.ndarray]:
    """``(dx,)``: ``dy / (H * W)`` spread over each plane."""
    return _avg_backward(ctx, dy, "global_avg_pool2d_backward")
