"""Argument checks shared by every op: one place that turns bad input into a clear error.

Kernels trust their arguments; everything they rely on (dtype, ndim, shapes, strides that are whole
multiples of the item size) is established here, before any kernel runs.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Tuple

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def is_device_array(x: Any) -> bool:
    return hasattr(x, "__cuda_array_interface__") and not isinstance(x, np.ndarray)


_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_ndarray = np.ndarray


def float_array(x: Any, name: str) -> Any:
    """``x`` as a float32/float64 array (NumPy, or a CUDA device array left as is).

    Array-likes are converted with ``np.asarray``; anything that is not floating point raises a
    TypeError that names the argument (we never silently change precision). Non-native byte order
    and misaligned views are copied into a native, aligned array.
    """
    if type(x) is _ndarray:  # the hot path: a few attribute reads, no allocation
        dt = x.dtype
        if (dt is _F32 or dt is _F64) and x.flags.aligned:
            return x
    elif is_device_array(x):
        if np.dtype(x.dtype) not in FLOAT_DTYPES:
            raise TypeError(f"{name} must be float32 or float64, got dtype {np.dtype(x.dtype)}")
        return x
    elif x is None:
        raise TypeError(f"{name} must be an array, got None")
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} could not be converted to an array: {exc}") from None
    dt = x.dtype
    if dt.kind != "f" or dt.itemsize not in (4, 8):
        hint = f" (convert with {name}.astype(np.float32))" if dt.kind in "iub" else ""
        raise TypeError(f"{name} must be float32 or float64, got dtype {dt}{hint}")
    if not dt.isnative:
        x = x.astype(dt.newbyteorder("="))
    if not x.flags.aligned:  # e.g. a view into a packed structured array
        x = np.ascontiguousarray(x)
    return x


def same_dtype(*pairs: Tuple[str, Any]) -> np.dtype:
    """All named arrays share one dtype, or a TypeError lists them."""
    dt = pairs[0][1].dtype
    for _, a in pairs[1:]:
        if a.dtype is not dt and np.dtype(a.dtype) != np.dtype(dt):
            desc = ", ".join(f"{n}: {np.dtype(a.dtype)}" for n, a in pairs)
            raise TypeError(f"mixed dtypes ({desc}); cast them to one of float32/float64")
    return dt


def ndim(x: Any, name: str, *allowed: int) -> None:
    if len(x.shape) not in allowed:
        want = " or ".join(str(a) for a in allowed)
        raise ValueError(f"{name} must be {want}-D, got shape {tuple(x.shape)}")


def real(value: Any, name: str) -> float:
    if type(value) is float:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def contiguous(x: Any) -> Any:
    """C-contiguous version of a host array (no copy when it already is)."""
    if isinstance(x, np.ndarray) and not x.flags.c_contiguous:
        return np.ascontiguousarray(x)
    return x


# Host outputs of at least this many bytes come from the C++ host cache (fastnn.empty_cache).
HOST_CACHE_MIN_BYTES = 1 << 20


def _host_c() -> Any:
    from .. import backend
    return backend._C


def _cached(shape: Tuple[int, ...], dt: np.dtype, n: int) -> Optional[np.ndarray]:
    """An array of n bytes from the host cache (2 MiB aligned), or None when n is below
    HOST_CACHE_MIN_BYTES or there is no C++ module."""
    c = _host_c() if n >= HOST_CACHE_MIN_BYTES else None
    return None if c is None else c.host_empty(n).view(dt).reshape(shape)


def host_empty(shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised C-contiguous host array, like ``np.empty``; from 1 MiB on its memory
    comes from fastnn's host cache, to which it returns when the array is gone."""
    dt = np.dtype(dtype)
    n = math.prod(shape) * dt.itemsize  # math.prod: this runs for every output, small ones too
    a = _cached(shape, dt, n)
    return np.empty(shape, dt) if a is None else a


def aligned_empty(shape: Tuple[int, ...], dtype: Any, align: int = 64) -> np.ndarray:
    """An uninitialised C-contiguous host array whose data starts on an ``align``-byte boundary
    (a cache line): kernels write such outputs with streaming stores, whole lines at a time."""
    dt = np.dtype(dtype)
    n = math.prod(shape) * dt.itemsize
    if n == 0:
        return np.empty(shape, dt)
    a = _cached(shape, dt, n) if align <= 1 << 21 else None  # its blocks: 2 MiB aligned
    if a is not None:
        return a
    raw = np.empty(n + align, np.uint8)
    off = (-raw.ctypes.data) % align
    return raw[off:off + n].view(dt).reshape(shape)


def empty(shape: Tuple[int, ...], dtype: np.dtype, like: Optional[Any] = None) -> Any:
    """An uninitialised output on the same device as ``like``."""
    if like is not None and type(like) is not _ndarray and is_device_array(like):
        from .. import cuda
        return cuda.device_empty(shape, dtype)
    return host_empty(shape, dtype)
