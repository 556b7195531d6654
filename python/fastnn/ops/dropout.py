"""Inverted dropout: kept values are scaled by ``1 / (1 - rate)``, so inference is the identity.

The mask is a pure function of ``(seed, flat element index)`` (a counter-based hash, see
csrc/common/rng.h): the same seed gives the same mask on every backend and any thread count, and
no generator state is carried between calls. The training layer passes a fresh seed every step.
"""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from .. import backend as _backend
from . import _nncheck as _c

__all__ = ["dropout", "dropout_forward", "dropout_backward", "DropoutCtx"]

_SEED_LIMIT = 1 << 64


class DropoutCtx:
    """The keep mask (uint8, the input's shape) and the rate."""
    __slots__ = ("mask", "rate", "dtype")


def _args(x: Any, rate: Any, seed: Any):
    if not (type(rate) is float and 0.0 <= rate < 1.0):
        rate = _c.in_range(_c.real(rate, "rate"), "rate", 0.0, 1.0)
    if not (type(seed) is int and 0 <= seed < _SEED_LIMIT):
        seed = _c.int_arg(seed, "seed")
        if seed >= _SEED_LIMIT:
            raise ValueError(f"seed must be a non-negative int below 2**64, got {seed}")
    return _c.host_float(x, "x", "dropout"), rate, seed


def dropout(x: Any, rate: float, *, seed: int) -> np.ndarray:
    """``x * keep / (1 - rate)`` with P(keep) = 1 - rate; ``rate`` in [0, 1), ``seed`` a
    non-negative int."""
    x, rate, seed = _args(x, rate, seed)
    y = np.empty_like(x)
    if x.size:
        _backend.kernels().dropout(y, None, x, rate, seed)
    return y


def dropout_forward(x: Any, rate: float, *, seed: int) -> Tuple[np.ndarray, DropoutCtx]:
    """``dropout`` plus a ctx holding the mask."""
    x, rate, seed = _args(x, rate, seed)
    y = np.empty_like(x)
    mask = np.empty(x.shape, np.uint8)
    if x.size:
        _backend.kernels().dropout(y, mask, x, rate, seed)
    ctx = DropoutCtx()
    ctx.mask, ctx.rate, ctx.dtype = mask, rate, x.dtype
    return y, ctx


def dropout_backward(ctx: DropoutCtx, dy: Any) -> Tuple[np.ndarray]:
    """``(dx,)`` with ``dx = dy * keep / (1 - rate)``."""
    if not isinstance(ctx, DropoutCtx):
        raise TypeError(f"ctx must come from dropout_forward, got {type(ctx).__name__}")
    dy = _c.host_float(dy, "dy", "dropout_backward")
    if dy.shape != ctx.mask.shape:
        raise ValueError(f"dropout_backward: dy must have shape {ctx.mask.shape}, got {dy.shape}")
    if dy.dtype != ctx.dtype:
        raise TypeError(f"dropout_backward: dy has dtype {dy.dtype} but the forward ran in "
                        f"{ctx.dtype}")
    dx = np.empty_like(dy)
    if dy.size:
        _backend.kernels().dropout_backward(dx, ctx.mask, dy, ctx.rate)
    return (dx,)
