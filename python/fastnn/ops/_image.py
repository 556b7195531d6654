"""What the image ops (convolution, pooling, batch norm) share: NCHW argument checks, int-or-pair
parameters, and the lookup of a kernel that a backend may not have yet.
"""
from __future__ import annotations

from typing import Any, Callable, Tuple

import numpy as np

from .. import backend as _backend
from . import _nncheck as _c

Pair = Tuple[int, int]


def kernel(name: str) -> Callable[..., None]:
    """The current backend's kernel ``name``, or the Numba kernel of that name when the backend
    has none.

    The C++ and CUDA modules gain a family's kernels after its Numba fallbacks exist, with the
    same signatures. Until then the cpp backend runs the Numba kernel: that is the design, not a
    fault, so it happens silently. The cuda backend asks ``fastnn.cuda``, which hands kernels it
    lacks to the C++ module for host arrays (as for every other family); when the C++ module
    lacks them too, the Numba kernel runs.
    """
    fn = getattr(_backend._kernels_now or _backend.kernels(), name, None)
    if fn is None:
        try:
            fn = getattr(_backend.kernels("numba"), name)
        except ImportError as exc:
            raise RuntimeError(
                f"the {_backend.get_backend()} backend has no {name} kernel yet, and its Numba "
                f"fallback cannot load ({exc})") from None
    return fn


def image(x: Any, name: str, op: str) -> np.ndarray:
    """``x`` as a C-contiguous float32/float64 NumPy batch of images (N, C, H, W) with
    non-empty planes."""
    x = _c.host_float(x, name, op)
    if x.ndim != 4:
        raise ValueError(f"{op}: {name} must be 4-D (N, C, H, W), got shape {x.shape}")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{op}: {name} must have images of at least 1x1 pixels, got shape "
                         f"{x.shape}")
    return x


def same_dtype(op: str, ref: np.ndarray, ref_name: str, a: np.ndarray, name: str) -> None:
    if a.dtype != ref.dtype:
        raise TypeError(f"{op}: {name} has dtype {a.dtype} but {ref_name} has {ref.dtype}; "
                        f"cast them to one of float32/float64")


def channel_vector(v: Any, name: str, op: str, channels: int, ref: np.ndarray) -> np.ndarray:
    """A per-channel parameter: shape (channels,), the dtype of ``ref``."""
    v = _c.host_float(v, name, op)
    if v.shape != (channels,):
        raise ValueError(f"{op}: {name} must have shape ({channels},), one value per channel, "
                         f"got {v.shape}")
    same_dtype(op, ref, "x", v, name)
    return v


def _int(v: Any, name: str, op: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got "
                        f"{type(v).__name__} {v!r}")
    return int(v)


def pair(v: Any, name: str, op: str, minimum: int) -> Pair:
    """An int or a pair of ints (height, width), each at least ``minimum``."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")
        out = (_int(v[0], name, op), _int(v[1], name, op))
    else:
        n = _int(v, name, op)
        out = (n, n)
    if min(out) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {v!r}")
    return out


def positive_int(v: Any, name: str, op: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{op}: {name} must be an int, got {type(v).__name__}")
    if v < 1:
        raise ValueError(f"{op}: {name} must be >= 1, got {v}")
    return int(v)


def grad_like(dy: Any, name: str, op: str, shape: Tuple[int, ...], dtype: np.dtype
              ) -> np.ndarray:
    """An output gradient: C-contiguous, of the forward output's shape and dtype."""
    dy = _c.host_float(dy, name, op)
    if dy.shape != tuple(shape):
        raise ValueError(f"{op}: {name} must have the output's shape {tuple(shape)}, got "
                         f"{dy.shape}")
    if dy.dtype != dtype:
        raise TypeError(f"{op}: {name} has dtype {dy.dtype} but the forward ran in {dtype}")
    return dy
