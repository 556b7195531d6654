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

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
ND = np.ndarray


def host_float(x: Any, name: str, op: str) -> np.ndarray:
    """``x`` as a C-contiguous, native-endian float32/float64 NumPy array (no copy when it
    already is one)."""
    # Identity with the canonical dtypes: cheaper than ==, and a byte-swapped '>f4' (whose .char
    # is also 'f') is not mistaken for a native one.
    if type(x) is ND:
        dt = x.dtype
        if (dt is F32 or dt is F64) and x.flags.c_contiguous:
            return x
    return _host_float_slow(x, name, op)


def _host_float_slow(x: Any, name: str, op: str) -> np.ndarray:
    if _check.is_device_array(x):
        raise TypeError(f"{op} runs on host (NumPy) arrays; {name} is a CUDA device array")
    if isinstance(x, np.ndarray) and x.dtype.kind == "f" and not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    # order="C" rather than ascontiguousarray, which would turn a 0-d array into shape (1,)
    return np.asarray(_check.float_array(x, name), order="C")


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
