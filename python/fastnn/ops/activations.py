"""Activation ops: the elementwise activations, softmax and log_softmax, the step function
(threshold) and maxout.

Op contract: ``op(x, ...)`` computes the output; ``op_forward(x, ...)`` returns ``(y, ctx)``;
``op_backward(ctx, dy)`` returns ``(dx,)``. ``activation``/``activation_forward`` also accept
"softmax" and "threshold" by name, and ``activation_backward`` takes the ctx of any of them.
float32 is the fast path, float64 works everywhere; inputs of any shape (softmax works along
``axis``, maxout along the last axis).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from .. import backend as _backend
from . import _nncheck as _c
from ._activations import GELU, resolve

__all__ = ["activation", "activation_forward", "activation_backward", "softmax",
           "softmax_forward", "softmax_backward", "log_softmax", "log_softmax_forward",
           "log_softmax_backward", "threshold", "threshold_forward", "threshold_backward",
           "maxout", "maxout_forward", "maxout_backward"]

_EXTRA = ("softmax", "threshold")


# ---- elementwise activations ---------------------------------------------------------------------

class ActivationCtx:
    __slots__ = ("y", "z", "code", "param")


def _elementwise(x: Any, name: Optional[str], alpha: Optional[float], keep: bool):
    code, param = resolve(name, alpha)
    x = _c.host_float(x, "x", "activation")
    y = np.empty_like(x)
    if x.size:
        _backend.kernels().activation(y, x, code, param)
    if not keep:
        return y, None
    ctx = ActivationCtx()
    ctx.y, ctx.z, ctx.code, ctx.param = y, (x if code == GELU else None), code, param
    return y, ctx


def _extra(name: Any) -> Optional[str]:
    if isinstance(name, str) and name.lower() in _EXTRA:
        return name.lower()
    return None


def activation(x: Any, name: Optional[str], *, alpha: Optional[float] = None) -> np.ndarray:
    """``f(x)`` elementwise for ``name`` in relu, leaky_relu (``alpha``: negative slope, 0.01),
    sigmoid, tanh, elu (``alpha``, 1.0), selu, gelu (erf form), linear/None; "softmax" (last
    axis) and "threshold" (step at 0) are accepted too."""
    extra = _extra(name)
    if extra == "softmax":
        return softmax(x)
    if extra == "threshold":
        return threshold(x)
    return _elementwise(x, name, alpha, keep=False)[0]


def activation_forward(x: Any, name: Optional[str], *,
                       alpha: Optional[float] = None) -> Tuple[np.ndarray, Any]:
    """``activation`` plus the ctx for ``activation_backward``."""
    extra = _extra(name)
    if extra == "softmax":
        return softmax_forward(x)
    if extra == "threshold":
        return threshold_forward(x)
    return _elementwise(x, name, alpha, keep=True)


def activation_backward(ctx: Any, dy: Any) -> Tuple[np.ndarray]:
    """``(dx,)`` with ``dx = dy * f'(x)`` (any ctx from ``activation_forward``)."""
    if isinstance(ctx, SoftmaxCtx):
        return softmax_backward(ctx, dy) if not ctx.log else log_softmax_backward(ctx, dy)
    if isinstance(ctx, ThresholdCtx):
        return threshold_backward(ctx, dy)
    if not isinstance(ctx, ActivationCtx):
        raise TypeError(f"ctx must come from activation_forward, got {type(ctx).__name__}")
    y = ctx.y
    dy = _c.like(dy, "dy", y, "activation_backward")
    dx = np.empty_like(y)
    if y.size:
        _backend.kernels().activation_backward(dx, dy, ctx.z, y, ctx.code, ctx.param)
    return (dx,)


# ---- softmax / log_softmax -----------------------------------------------------------------------

class SoftmaxCtx:
    __slots__ = ("y2", "axis", "shape", "log")


def _axis(axis: Any, ndim: int) -> int:
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an int, got {type(axis).__name__}")
    a = int(axis)
    if not -ndim <= a < ndim:
        raise ValueError(f"axis {a} is out of range for an input of {ndim} dimension(s)")
    return a % ndim


def _softmax(x: Any, axis: Any, log: bool, keep: bool):
    op = "log_softmax" if log else "softmax"
    x = _c.host_float(x, "x", op)
    if x.ndim == 0:
        raise ValueError(f"{op} needs at least 1 dimension, got a scalar")
    ax = _axis(axis, x.ndim)
    moved = ax != x.ndim - 1
    xm = np.ascontiguousarray(np.moveaxis(x, ax, -1)) if moved else x
    y = np.empty_like(xm)
    cols = xm.shape[-1]
    y2 = y.reshape(-1, cols) if y.size else y.reshape(0, cols)
    if y.size:
        k = _backend.kernels()
        (k.log_softmax if log else k.softmax)(y2, xm.reshape(-1, cols))
    out = np.moveaxis(y, -1, ax) if moved else y
    if not keep:
        return out, None
    ctx = SoftmaxCtx()
    ctx.y2, ctx.axis, ctx.shape, ctx.log = y2, ax, y.shape, log
    return out, ctx


def _softmax_backward(ctx: Any, dy: Any, log: bool) -> Tuple[np.ndarray]:
    op = "log_softmax_backward" if log else "softmax_backward"
    if not isinstance(ctx, SoftmaxCtx) or ctx.log != log:
        raise TypeError(f"ctx must come from {op[:-9]}_forward, got {type(ctx).__name__}")
    y2 = ctx.y2
    ndim = len(ctx.shape)
    moved = ctx.axis != ndim - 1
    # The ctx keeps y with the softmax axis last; dy arrives in the caller's layout.
    want = ctx.shape
    if moved:
        want = want[:ctx.axis] + want[-1:] + want[ctx.axis:-1]
    dy = _c.host_float(dy, "dy", op)
    if dy.shape != want:
        raise ValueError(f"{op}: dy must have shape {want}, got {dy.shape}")
    if dy.dtype != y2.dtype:
        raise TypeError(f"{op}: dy has dtype {dy.dtype} but the forward ran in {y2.dtype}")
    if moved:
        dy = np.ascontiguousarray(np.moveaxis(dy, ctx.axis, -1))
    dx = np.empty(ctx.shape, y2.dtype)
    if dx.size:
        k = _backend.kernels()
        (k.log_softmax_backward if log else k.softmax_backward)(
            dx.reshape(y2.shape), y2, dy.reshape(y2.shape))
    return (np.moveaxis(dx, -1, ctx.axis) if moved else dx,)


def softmax(x: Any, axis: int = -1) -> np.ndarray:
    """``exp(x) / sum(exp(x))`` along ``axis`` (stable: the maximum is subtracted first)."""
    return _softmax(x, axis, False, False)[0]


def softmax_forward(x: Any, axis: int = -1) -> Tuple[np.ndarray, SoftmaxCtx]:
    return _softmax(x, axis, False, True)


def softmax_backward(ctx: SoftmaxCtx, dy: Any) -> Tuple[np.ndarray]:
    """``(dx,)`` with ``dx = y * (dy - sum(dy * y))`` along the axis."""
    return _softmax_backward(ctx, dy, False)


def log_softmax(x: Any, axis: int = -1) -> np.ndarray:
    """``x - logsumexp(x)`` along ``axis``, finite for any finite input."""
    return _softmax(x, axis, True, False)[0]


def log_softmax_forward(x: Any, axis: int = -1) -> Tuple[np.ndarray, SoftmaxCtx]:
    return _softmax(x, axis, True, True)


def log_softmax_backward(ctx: SoftmaxCtx, dy: Any) -> Tuple[np.ndarray]:
    """``(dx,)`` with ``dx = dy - exp(y) * sum(dy)`` along the axis."""
    return _softmax_backward(ctx, dy, True)


# ---- threshold (step function) -------------------------------------------------------------------

class ThresholdCtx:
    __slots__ = ("value",)


def threshold(x: Any, value: float = 0.0) -> np.ndarray:
    """The step function: 1.0 where ``x > value``, else 0.0 (NaN gives 0), in ``x``'s dtype."""
    value = _c.real(value, "value")
    x = _c.host_float(x, "x", "threshold")
    y = np.empty_like(x)
    if x.size:
        _backend.kernels().threshold(y, x, value)
    return y


def threshold_forward(x: Any, value: float = 0.0) -> Tuple[np.ndarray, ThresholdCtx]:
    """``threshold`` plus a ctx; note that ``threshold_backward`` always raises."""
    y = threshold(x, value)
    ctx = ThresholdCtx()
    ctx.value = float(value)
    return y, ctx


def threshold_backward(ctx: Any, dy: Any) -> Tuple[np.ndarray]:
    """Always raises ValueError: the step function has no useful gradient."""
    raise ValueError(
        "threshold (the step function) has no useful gradient: its derivative is zero everywhere "
        "except at the step, where it is undefined, so no training signal can pass through it. "
        "Use sigmoid (or a straight-through estimator written for the purpose) in a layer that "
        "must be trained through.")


# ---- maxout --------------------------------------------------------------------------------------

class MaxoutCtx:
    __slots__ = ("arg", "pieces", "x_shape", "dtype")


def _maxout(x: Any, pieces: Any, keep: bool):
    pieces = _c.int_arg(pieces, "pieces", minimum=1)
    x = _c.host_float(x, "x", "maxout")
    if x.ndim == 0:
        raise ValueError("maxout needs at least 1 dimension (..., units*pieces), got a scalar")
    feat = x.shape[-1]
    if feat % pieces:
        raise ValueError(f"maxout: the last dimension of x ({feat}, shape {x.shape}) must be a "
                         f"multiple of pieces={pieces}")
    units = feat // pieces
    out_shape = x.shape[:-1] + (units,)
    y = np.empty(out_shape, x.dtype)
    rows = int(np.prod(x.shape[:-1], dtype=np.int64))
    arg = np.empty((rows, units), np.int32) if keep else None
    if y.size:
        _backend.kernels().maxout(y.reshape(rows, units), arg, x.reshape(rows, feat), pieces)
    if not keep:
        return y, None
    ctx = MaxoutCtx()
    ctx.arg, ctx.pieces, ctx.x_shape, ctx.dtype = arg, pieces, x.shape, x.dtype
    return y, ctx


def maxout(x: Any, pieces: int) -> np.ndarray:
    """Maxout over groups of ``pieces`` consecutive features: ``x`` (..., units*pieces) gives
    (..., units), unit u = max(x[..., u*pieces:(u+1)*pieces]) (NaN propagates)."""
    return _maxout(x, pieces, False)[0]


def maxout_forward(x: Any, pieces: int) -> Tuple[np.ndarray, MaxoutCtx]:
    """``maxout`` plus a ctx holding the winning piece of every unit."""
    return _maxout(x, pieces, True)


def maxout_backward(ctx: MaxoutCtx, dy: Any) -> Tuple[np.ndarray]:
    """``(dx,)``: dy routed to the winning piece of each unit (the first one on ties)."""
    if not isinstance(ctx, MaxoutCtx):
        raise TypeError(f"ctx must come from maxout_forward, got {type(ctx).__name__}")
    rows, units = ctx.arg.shape
    want = ctx.x_shape[:-1] + (units,)
    dy = _c.host_float(dy, "dy", "maxout_backward")
    if dy.shape != want:
        raise ValueError(f"maxout_backward: dy must have shape {want}, got {dy.shape}")
    if dy.dtype != ctx.dtype:
        raise TypeError(f"maxout_backward: dy has dtype {dy.dtype} but the forward ran in "
                        f"{ctx.dtype}")
    dx = np.empty(ctx.x_shape, ctx.dtype)
    if dx.size:
        _backend.kernels().maxout_backward(dx.reshape(rows, units * ctx.pieces), ctx.arg,
                                           dy.reshape(rows, units), ctx.pieces)
    return (dx,)

