"""What the image ops (convolution, pooling, batch norm) share: NCHW argument checks, int-or-pair
parameters, and the lookup of a kernel that a backend may not have yet.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Tuple, Union

import numpy as np

from .. import backend as _backend
from .. import cuda as _cuda
from . import _check
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


def image(x: Any, name: str, op: str, device: bool = False) -> Any:
    """``x`` as a C-contiguous float32/float64 NumPy batch of images (N, C, H, W) with
    non-empty planes; with ``device=True``, a CUDA device array passes too (as a
    :class:`Device`)."""
    x = float_arg(x, name, op, device)
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


def channel_vector(v: Any, name: str, op: str, channels: int, ref: Any,
                   device: bool = False) -> Any:
    """A per-channel parameter: shape (channels,), the dtype of ``ref``."""
    v = float_arg(v, name, op, device)
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


def grad_like(dy: Any, name: str, op: str, shape: Tuple[int, ...], dtype: np.dtype,
              device: bool = False) -> Any:
    """An output gradient: C-contiguous, of the forward output's shape and dtype (or, with
    ``device=True``, a CUDA device array of that shape and dtype)."""
    return grad_of(float_arg(dy, name, op, device), name, op, shape, dtype)


def grad_of(dy: Any, name: str, op: str, shape: Tuple[int, ...], dtype: np.dtype) -> Any:
    """``dy`` (already an array, in any layout) checked against the forward output's shape and
    dtype."""
    if dy.shape != tuple(shape):
        raise ValueError(f"{op}: {name} must have the output's shape {tuple(shape)}, got "
                         f"{dy.shape}")
    if dy.dtype != dtype:
        raise TypeError(f"{op}: {name} has dtype {dy.dtype} but the forward ran in {dtype}")
    return dy


# ---- CUDA device arrays -------------------------------------------------------------------------
#
# The convolution and pooling ops take CUDA device arrays (anything exposing
# __cuda_array_interface__: numba.cuda, CuPy, PyTorch): they check them as they check NumPy
# arrays, allocate the outputs on the device (fastnn.cuda.device_empty) and run the CUDA kernels
# (fastnn.cuda.device_kernel), whichever backend is current, as gemm and linear do. Device arrays
# keep their strides (the CUDA kernels take any). Host arrays take the host kernels as before.


class Device:
    """A CUDA device array as the checks see it: its shape and NumPy dtype read from
    ``__cuda_array_interface__`` (PyTorch tensors have no NumPy dtype), the interface passed
    through, so that the kernels take the wrapper as they would the array."""
    __slots__ = ("array", "shape", "dtype")

    def __init__(self, array: Any) -> None:
        cai = array.__cuda_array_interface__
        self.array = array
        self.shape = tuple(int(n) for n in cai["shape"])
        self.dtype = np.dtype(cai["typestr"])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def __cuda_array_interface__(self) -> dict:
        return self.array.__cuda_array_interface__


def is_device(x: Any) -> bool:
    return x is not None and (type(x) is Device or _check.is_device_array(x))


def any_device(*arrays: Any) -> bool:
    """Whether the call runs on the device: any of its arrays is a device array."""
    return any(is_device(a) for a in arrays)


def float_arg(x: Any, name: str, op: str, device: bool = False) -> Union[np.ndarray, Device]:
    """``_nncheck.host_float``, or, with ``device=True`` and a device array, that array as a
    :class:`Device` of dtype float32/float64 (any strides; never copied)."""
    if not (device and is_device(x)):
        return _c.host_float(x, name, op)
    d = x if type(x) is Device else Device(x)
    if d.dtype not in _check.FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float32 or float64, got dtype {d.dtype} "
                        f"(a device array)")
    return d


def device_empty(shape: Tuple[int, ...], dtype: np.dtype) -> Any:
    """An uninitialised output on the device; RuntimeError (saying why) where no device can be
    used."""
    return _cuda.device_empty(shape, dtype)


def device_kernel(name: str) -> Callable[..., None]:
    """The CUDA kernel ``name`` (the signature of the host kernel of that name)."""
    return _cuda.device_kernel(name)
