"""Argument checks for the training-layer ops (activations, losses, dropout, optimizers).

These run on every training step, so the common case (a C-contiguous float32/float64 NumPy array,
a Python float) is recognised with a few attribute reads; anything else takes the general path in
``_check``, which converts or raises a clear error.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from . import _check

_FLOAT_CHARS = "fd"


def host_float(x: Any, name: str, op: str) -> np.ndarray:
    """``x`` as a C-contiguous float32/float64 NumPy array (no copy when it already is one)."""
    if type(x) is np.ndarray and x.dtype.char in _FLOAT_CHARS and x.flags.c_contiguous:
        return x
    if _check.is_device_array(x):
        raise TypeError(f"{op} runs on host (NumPy) arrays; {name} is a CUDA device array")
    return np.ascontiguousarray(_check.float_array(x, name))


def like(a: Any, name: str, ref: np.ndarray, op: str) -> np.ndarray:
    """``a`` as an array of ``ref``'s shape and dtype (a gradient or an upstream derivative)."""
    a = host_float(a, name, op)
    if a.shape != ref.shape:
        raise ValueError(f"{op}: {name} must have shape {ref.shape}, got {a.shape}")
    if a.dtype != ref.dtype:
        raise TypeError(f"{op}: {name} has dtype {a.dtype} but the forward ran in {ref.dtype}")
    return a


def real(v: Any, name: str) -> float:
    """A Python float from a real number (bools and non-numbers raise TypeError)."""
    if type(v) is float:
        return v
    if type(v) is int or (isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))):
        return float(v)
    raise TypeError(f"{name} must be a real number, got {type(v).__name__}")


def in_range(v: float, name: str, lo: float, hi: float, *, hi_open: bool = True,
             lo_open: bool = False) -> float:
    """Raise ValueError unless lo <= v < hi (bounds as asked; NaN always fails)."""
    ok_lo = v > lo if lo_open else v >= lo
    ok_hi = v < hi if hi_open else v <= hi
    if not (ok_lo and ok_hi):
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        raise ValueError(f"{name} must be in {lb}{lo}, {hi}{rb}, got {v}")
    return v


def int_arg(v: Any, name: str, *, minimum: int = 0) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    v = int(v)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v
