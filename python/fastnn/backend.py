"""Which backend runs a call: ``cpp`` (default), ``cuda`` or ``numba``.

* ``cpp``: the compiled extension ``fastnn._C`` (default whenever it imports).
* ``cuda``: ``fastnn._cuda``; chosen with :func:`set_backend`, or automatically for inputs that
  expose ``__cuda_array_interface__``.
* ``numba``: JIT fallbacks in :mod:`fastnn.numba_kernels`; used when ``_C`` is missing, or with
  ``FASTNN_BACKEND=numba`` / ``set_backend("numba")``. Numba is imported on first use only.

Every backend module offers the same kernel functions with the same signatures (outputs first,
then inputs, then parameters); ``ops`` validates arguments and then calls ``kernels()``.

Imports run downwards only: this module imports the kernel modules (``_C``, :mod:`fastnn.cuda`,
and :mod:`fastnn.numba_kernels` on first use) and none of them imports it. ``fastnn.cuda`` runs the
kernels it lacks on the host backend; this module tells it which one that is
(``cuda._set_host_kernels``) instead of letting it look upwards.
"""
from __future__ import annotations

import importlib
import os
import warnings

import numpy as np
from typing import Any, Optional

from . import cuda
from ._version import __version__

BACKENDS = ("cpp", "cuda", "numba")

try:  # the compiled extension is optional: without it, Numba runs everything
    from . import _C  # type: ignore[attr-defined]
except ImportError as _exc:  # pragma: no cover - exercised only on broken installs
    _C = None
    _C_ERROR: Optional[BaseException] = _exc
else:
    _C_ERROR = None

_current: Optional[str] = None
_kernels_now: Any = None  # the current backend's kernel module, once resolved (hot-path cache)
_ndarray = np.ndarray
_modules: dict = {}


def _default() -> str:
    env = os.environ.get("FASTNN_BACKEND", "").strip().lower()
    if env:
        if env not in BACKENDS:
            warnings.warn(f"FASTNN_BACKEND={env!r} is not one of {BACKENDS}; using the default",
                          RuntimeWarning, stacklevel=3)
        elif env == "cpp" and _C is None:
            warnings.warn("FASTNN_BACKEND=cpp but fastnn._C failed to import; using numba",
                          RuntimeWarning, stacklevel=3)
            return "numba"
        else:
            return env
    return "cpp" if _C is not None else "numba"


def get_backend() -> str:
    """The name of the backend that runs ops by default."""
    global _current
    if _current is None:
        _current = _default()
    return _current


def set_backend(name: str) -> None:
    """Make ``name`` ("cpp", "cuda" or "numba") the default backend.

    Raises ValueError for an unknown name and RuntimeError when that backend cannot run here.
    """
    global _current
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    name = name.lower()
    if name == "cpp" and _C is None:
        raise RuntimeError(f"the C++ backend is not available: fastnn._C failed to import "
                           f"({_C_ERROR})")
    if name == "cuda":
        if not cuda.is_available():
            raise RuntimeError("the CUDA backend needs fastnn._cuda and a CUDA device: "
                               + cuda.unavailable_reason())
    global _kernels_now
    _kernels_now = kernels(name)  # import now, so errors surface here, not on the first op
    _current = name


class use_backend:
    """Context manager: ``with fastnn.backend.use_backend("numba"): ...``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.prev: Optional[str] = None

    def __enter__(self) -> "use_backend":
        self.prev = get_backend()
        set_backend(self.name)
        return self

    def __exit__(self, *exc: Any) -> None:
        global _current, _kernels_now
        _current = self.prev
        _kernels_now = kernels(self.prev) if self.prev else None


def available_backends() -> list:
    """Backends that can run on this machine, default first."""
    out = []
    if _C is not None:
        out.append("cpp")
    out.append("numba")
    if cuda.is_available():
        out.append("cuda")
    return out


def kernels(name: Optional[str] = None) -> Any:
    """The kernel module of a backend (default: the current one)."""
    global _kernels_now
    if name is None:
        name = get_backend()
        if _kernels_now is not None:
            return _kernels_now
        _kernels_now = kernels(name)
        return _kernels_now
    mod = _modules.get(name)
    if mod is None:
        if name == "cpp":
            if _C is None:
                raise RuntimeError(f"fastnn._C failed to import ({_C_ERROR})")
            mod = _C
        elif name == "numba":
            mod = importlib.import_module("fastnn.numba_kernels")
        elif name == "cuda":
            mod = cuda
        else:
            raise ValueError(f"unknown backend {name!r}")
        _modules[name] = mod
    return mod


def kernels_for(*arrays: Any) -> Any:
    """The kernel module for these inputs: CUDA for device arrays, else the current backend."""
    for a in arrays:
        if a is not None and type(a) is not _ndarray and hasattr(a, "__cuda_array_interface__"):
            return kernels("cuda")
    return _kernels_now or kernels()


def set_num_threads(n: int) -> None:
    """Threads the C++ kernels may use (default: all cores, or OMP_NUM_THREADS)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"num_threads must be a positive int, got {n!r}")
    if _C is not None:
        _C.set_num_threads(n)
    if "numba" in _modules:  # only once the Numba backend is in use: keep import fastnn fast
        import numba
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def empty_cache() -> None:
    """Free the host memory fastnn keeps for reuse.

    Large op outputs (1 MiB and more) come from a cache of 2 MiB-aligned blocks, and a block goes
    back to the cache, not to the OS, when its array is gone: the next call then skips the page
    faults and zeroing of fresh memory. The cache holds at most ``FASTNN_HOST_CACHE_MB`` MiB
    (default 512; 0 turns it off). This frees what it holds now, as ``torch.cuda.empty_cache``
    does for PyTorch's device memory.
    """
    if _C is not None:
        _C.host_cache_release()


def get_num_threads() -> int:
    """Threads the C++ kernels use."""
    if _C is not None:
        return int(_C.num_threads())
    return os.cpu_count() or 1


def set_isa(name: str) -> None:
    """Force the CPU kernels onto one instruction set: "generic", "avx2" or "avx512".

    Raises ValueError for an unknown name or one this CPU cannot run.
    """
    if _C is None:
        raise RuntimeError("set_isa needs the C++ backend (fastnn._C)")
    if name not in ("generic", "avx2", "avx512"):
        raise ValueError(f"isa must be 'generic', 'avx2' or 'avx512', got {name!r}")
    if not _C.set_isa(name):
        raise ValueError(f"this CPU cannot run the {name} kernels")


def get_isa() -> Optional[str]:
    """The instruction set the C++ kernels use (None without the C++ backend)."""
    return None if _C is None else str(_C.isa())


def _host_kernels() -> Any:
    """The kernel module that runs host (NumPy) arrays when the current backend cannot: C++, or
    Numba without it. ``_C`` is read at each call, not captured, so a swapped ``_C`` is seen."""
    return _C if _C is not None else kernels("numba")


cuda._set_host_kernels(_host_kernels)


def _check_isa_env() -> None:
    want = os.environ.get("FASTNN_ISA", "").strip()
    if want and _C is not None and want != _C.isa():
        warnings.warn(f"FASTNN_ISA={want!r} cannot run here (or is unknown); using {_C.isa()}",
                      RuntimeWarning, stacklevel=3)


def build_info() -> dict:
    """Version, ISA, threads, and what the build and this machine support."""
    info = {
        "version": __version__,
        "backend": get_backend(),
        "cpp": _C is not None,
        "isa": get_isa(),
        "best_isa": None if _C is None else str(_C.best_isa()),
        "num_threads": get_num_threads(),
        # The C++ kernels' thread runtime: fastnn's own pool (no OpenMP), None without _C.
        "threading": None if _C is None else str(getattr(_C, "threading", "unknown")),
        "cuda_compiled": cuda.is_compiled(),
        "cuda_available": cuda.is_available(),
        # free host memory held for reuse by large outputs (see empty_cache), and its limit
        "host_cache_bytes": None if _C is None else int(_C.host_cache_bytes()),
        "host_cache_limit": None if _C is None else int(_C.host_cache_limit()),
    }
    return info
