"""2-D batch normalization over the channels of an NCHW batch, PyTorch's semantics.

``batch_norm2d(x, gamma, beta, running_mean, running_var, training=...)``:

* training: normalize with the batch mean and the biased batch variance over (N, H, W), and
  move the running statistics in place towards the batch mean and the *unbiased* variance:
  ``running = (1 - momentum) * running + momentum * batch``;
* inference: normalize with the running statistics (left unchanged).

``gamma``/``beta`` None mean no scale / no shift (affine=False); the running statistics may be
None in training (track_running_stats=False) and are required in inference.

Unlike the other families this op has no kernels on any backend: it is a handful of vectorized
NumPy passes per call (channel statistics, one normalize pass, two channel sums in backward),
memory-bound, which NumPy already runs at memory speed. The channel statistics and sums
accumulate in float64 whatever the input dtype; the per-element passes run in the input's dtype.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from . import _image as _im
from . import _nncheck as _c

__all__ = ["batch_norm2d", "batch_norm2d_forward", "batch_norm2d_backward", "BatchNorm2dCtx"]

_AXES = (0, 2, 3)
_OP = "batch_norm2d"


class BatchNorm2dCtx:
    """The normalized input, the per-channel 1/std it was scaled by, gamma (or None), whether
    there was a beta, the mode, and the count of values per channel."""
    __slots__ = ("xhat", "inv_std", "gamma", "has_beta", "training", "count")


def _chan(v: np.ndarray) -> np.ndarray:
    return v[:, None, None]


def _running(v: Any, name: str, x: np.ndarray) -> Optional[np.ndarray]:
    """A running statistic: updated in place, so it must be the caller's own writable array."""
    if v is None:
        return None
    if type(v) is not np.ndarray:
        raise TypeError(f"{_OP}: {name} must be a NumPy array (it is updated in place), got "
                        f"{type(v).__name__}")
    if v.shape != (x.shape[1],):
        raise ValueError(f"{_OP}: {name} must have shape ({x.shape[1]},), one value per "
                         f"channel, got {v.shape}")
    _im.same_dtype(_OP, x, "x", v, name)
    if not v.flags.writeable:
        raise ValueError(f"{_OP}: {name} is read-only, but training updates it in place")
    return v


def _bn(x: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any, training: Any,
        momentum: Any, eps: Any, keep: bool):
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"{_OP}: training must be a bool, got {type(training).__name__}")
    training = bool(training)
    momentum = _c.in_range(_c.real(momentum, "momentum"), "momentum", 0.0, 1.0, hi_open=False)
    eps = _c.in_range(_c.real(eps, "eps"), "eps", 0.0, np.inf, lo_open=True)
    x = _im.image(x, "x", _OP)
    c = x.shape[1]
    g = None if gamma is None else _im.channel_vector(gamma, "gamma", _OP, c, x)
    b = None if beta is None else _im.channel_vector(beta, "beta", _OP, c, x)
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{_OP}: give both running_mean and running_var, or neither")
    rm = _running(running_mean, "running_mean", x)
    rv = _running(running_var, "running_var", x)
    count = x.shape[0] * x.shape[2] * x.shape[3]
    if training:
        if count < 2:
            raise ValueError(f"{_OP}: training needs more than 1 value per channel to estimate "
                             f"a variance, got x of shape {x.shape}")
        mean = x.mean(axis=_AXES, dtype=np.float64)
        xc = x - _chan(mean).astype(x.dtype)
        var = np.einsum("nchw,nchw->c", xc, xc, dtype=np.float64) / count
        if rm is not None:
            rm *= 1.0 - momentum
            rm += momentum * mean
            rv *= 1.0 - momentum
            rv += momentum * var * (count / (count - 1))
    else:
        if rm is None:
            raise ValueError(f"{_OP}: inference (training=False) needs running_mean and "
                             f"running_var")
        xc = x - _chan(rm)
        var = rv.astype(np.float64)
    inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    xhat = xc
    xhat *= _chan(inv_std)
    if g is None and b is None:
        y = xhat.copy() if keep else xhat
    else:
        y = xhat * _chan(g) if g is not None else xhat.copy()
        if b is not None:
            y += _chan(b)
    ctx = None
    if keep:
        ctx = BatchNorm2dCtx()
        ctx.xhat, ctx.inv_std, ctx.gamma, ctx.has_beta = xhat, inv_std, g, b is not None
        ctx.training, ctx.count = training, count
    return y, ctx


def batch_norm2d(x: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any, *,
                 training: bool, momentum: float = 0.1, eps: float = 1e-5) -> np.ndarray:
    """``gamma * (x - mean) / sqrt(var + eps) + beta`` per channel of x (N, C, H, W); see the
    module docstring for the two modes. ``gamma``, ``beta``, ``running_mean``, ``running_var``:
    (C,) arrays of x's dtype, or None."""
    return _bn(x, gamma, beta, running_mean, running_var, training, momentum, eps, False)[0]


def batch_norm2d_forward(x: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any, *,
                         training: bool, momentum: float = 0.1, eps: float = 1e-5
                         ) -> Tuple[np.ndarray, BatchNorm2dCtx]:
    """``batch_norm2d`` plus the context for ``batch_norm2d_backward``."""
    return _bn(x, gamma, beta, running_mean, running_var, training, momentum, eps, True)


def batch_norm2d_backward(ctx: BatchNorm2dCtx, dy: Any
                          ) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """Gradients ``(dx, dgamma, dbeta)`` (dgamma / dbeta None without gamma / beta).

    Training mode differentiates through the batch statistics as well:
    ``dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat))``; inference mode treats
    the running statistics as constants: ``dx = gamma * inv_std * dy``.
    """
    op = "batch_norm2d_backward"
    if not isinstance(ctx, BatchNorm2dCtx):
        raise TypeError(f"{op}: ctx must come from batch_norm2d_forward, got "
                        f"{type(ctx).__name__}")
    xhat = ctx.xhat
    dy = _im.grad_like(dy, "dy", op, xhat.shape, xhat.dtype)
    scale = ctx.inv_std if ctx.gamma is None else ctx.inv_std * ctx.gamma
    need_sums = ctx.training or ctx.gamma is not None or ctx.has_beta
    if need_sums:
        sum_dy = dy.sum(axis=_AXES, dtype=np.float64)
        sum_dy_xhat = np.einsum("nchw,nchw->c", dy, xhat, dtype=np.float64)
    if ctx.training:
        mean_dy = (sum_dy / ctx.count).astype(xhat.dtype)
        mean_dy_xhat = (sum_dy_xhat / ctx.count).astype(xhat.dtype)
        dx = xhat * _chan(mean_dy_xhat)
        np.subtract(dy, dx, out=dx)
        dx -= _chan(mean_dy)
        dx *= _chan(scale)
    else:
        dx = dy * _chan(scale)
    dgamma = None if ctx.gamma is None else sum_dy_xhat.astype(xhat.dtype)
    dbeta = sum_dy.astype(xhat.dtype) if ctx.has_beta else None
    return dx, dgamma, dbeta
