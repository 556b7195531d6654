"""A convolution fused with the 2x2 max pooling that follows it: one forward, two contexts.

``conv2d_max_pool2d_forward(x, w, b, ..., activation=...)`` returns what
``max_pool2d_forward(conv2d_forward(x, w, b, ...)[0], 2)`` returns, with both contexts, so the
backward runs the two ops' own backwards: ``max_pool2d_backward(pool_ctx, dy, relu=True)`` then
``conv2d_backward(conv_ctx, dz, through_activation=False)`` for a relu (without activation, the
plain pair). Where a fused kernel serves the shape (the C++ backend, a single input channel at
stride 1 with no activation or relu: a CNN's first layer), the convolution's output is pooled
block by block while it is still in cache and never written out: at 1 -> 32 channels, 28x28,
batch 64, writing those 6.4 MB and reading them back had cost as much as the convolution.
Elsewhere it runs the two ops, with the same results.

``conv2d_max_pool2d_backward(conv_ctx, pool_ctx, dy, relu=...)`` is that pair of backwards as one
call; when only the weight gradients are wanted (a first layer) and a kernel serves the shape,
the pre-pool gradient is unpooled block by block into cache and never written out (another
6.4 MB each way for that first layer).

The conv context of a fused call keeps no convolution output: its backward needs
``through_activation=False`` (the pooling's relu gate applies the derivative) and says so.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import numpy as np

from .. import backend as _backend
from . import _image as _im
from .conv import (ConvCtx, PairArg, _activation, _conv_args, _ctx, conv2d_backward,
                   conv2d_forward)
from .pool import MaxPool2dCtx, max_pool2d_backward, max_pool2d_forward

__all__ = ["conv2d_max_pool2d_forward", "conv2d_max_pool2d_backward"]


def conv2d_max_pool2d_forward(x: Any, w: Any, b: Any = None, *, stride: PairArg = 1,
                              padding: Union[PairArg, str] = 0, dilation: PairArg = 1,
                              groups: int = 1, activation: Optional[str] = None,
                              alpha: Optional[float] = None
                              ) -> Tuple[Any, ConvCtx, MaxPool2dCtx]:
    """``(pooled, conv_ctx, pool_ctx)``: ``max_pool2d(conv2d(x, w, b, ...), 2)`` (2x2 windows,
    stride 2, no padding; the arguments as ``conv2d_forward``'s) and the contexts of
    ``conv2d_backward`` and ``max_pool2d_backward``."""
    act = _activation(activation, alpha)
    fused = _fused_kernel(x, w, b, act)
    if fused is not None:
        xc, wc, bc, geom, y_shape = _conv_args(x, w, b, stride, padding, dilation, groups)
        n, co, oh, ow = y_shape
        if oh >= 2 and ow >= 2 and xc.size:
            pooled = np.empty((n, co, oh // 2, ow // 2), xc.dtype)
            argmax = np.empty(pooled.shape, np.int64)
            if fused(pooled, argmax, xc, wc, bc, *geom, *act, oh, ow):
                conv_ctx = _ctx(xc, wc, bc, geom, y_shape, transposed=False)
                if act[0]:
                    conv_ctx.act = act  # y stays None: only the pooling's gate can apply it
                pool_ctx = MaxPool2dCtx()
                pool_ctx.argmax, pool_ctx.y = argmax, pooled
                pool_ctx.x_shape, pool_ctx.dtype = y_shape, xc.dtype
                return pooled, conv_ctx, pool_ctx
    y, conv_ctx = conv2d_forward(x, w, b, stride=stride, padding=padding, dilation=dilation,
                                 groups=groups, activation=activation, alpha=alpha)
    pooled, pool_ctx = max_pool2d_forward(y, 2)
    return pooled, conv_ctx, pool_ctx


def conv2d_max_pool2d_backward(conv_ctx: ConvCtx, pool_ctx: MaxPool2dCtx, dy: Any, *,
                               relu: bool = False, need_dx: bool = True, need_dw: bool = True,
                               need_db: bool = True
                               ) -> Tuple[Optional[Any], Optional[Any], Optional[Any]]:
    """``(dx, dw, db)`` of ``max_pool2d(conv2d(...), 2)`` given ``dy`` of the pooled output:
    ``conv2d_backward(conv_ctx, max_pool2d_backward(pool_ctx, dy, relu=relu)[0],
    through_activation=not relu, ...)``. ``relu=True`` for a convolution with a fused relu:
    its derivative comes from the pooled output (see ``max_pool2d_backward``)."""
    op = "conv2d_max_pool2d_backward"
    if not isinstance(conv_ctx, ConvCtx) or conv_ctx.transposed:
        raise TypeError(f"{op}: conv_ctx must come from conv2d_forward or "
                        f"conv2d_max_pool2d_forward, got {type(conv_ctx).__name__}")
    if not isinstance(pool_ctx, MaxPool2dCtx):
        raise TypeError(f"{op}: pool_ctx must come from max_pool2d_forward or "
                        f"conv2d_max_pool2d_forward, got {type(pool_ctx).__name__}")
    if tuple(pool_ctx.x_shape) != tuple(conv_ctx.y_shape):
        raise ValueError(f"{op}: the pooling's input shape {tuple(pool_ctx.x_shape)} is not the "
                         f"convolution's output shape {tuple(conv_ctx.y_shape)}")
    n, co, oh, ow = conv_ctx.y_shape
    x, w = conv_ctx.x, conv_ctx.w
    fused = None
    if (not need_dx and need_dw and (relu or conv_ctx.act is None)
            and tuple(pool_ctx.argmax.shape) == (n, co, oh // 2, ow // 2)
            and pool_ctx.dtype == x.dtype and x.size and pool_ctx.argmax.size
            and not _im.any_device(x, w, pool_ctx.argmax, dy)):
        fused = getattr(_backend.kernels_for(), "conv2d_backward_weight_unpool2", None)
    if fused is not None:
        dyc = _im.grad_like(dy, "dy", op, tuple(pool_ctx.argmax.shape), x.dtype)
        dw = np.empty(w.shape, x.dtype)
        db = np.empty((co,), x.dtype) if need_db and conv_ctx.has_bias else None
        if fused(dw, db, pool_ctx.argmax, dyc, pool_ctx.y if relu else None, x,
                 *conv_ctx.geom, oh, ow):
            return None, dw, db
    dz = max_pool2d_backward(pool_ctx, dy, relu=relu)[0]
    return conv2d_backward(conv_ctx, dz, need_dx=need_dx, need_dw=need_dw, need_db=need_db,
                           through_activation=not relu)


def _fused_kernel(x: Any, w: Any, b: Any, act: Tuple[int, float]) -> Any:
    """The backend's fused kernel for these host arrays, or None (device arrays, a backend
    without one)."""
    if _im.any_device(x, w, b):
        return None
    return getattr(_backend.kernels_for(), "conv2d_forward_maxpool2", None)
