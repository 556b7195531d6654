"""The CUDA backend: fastnn._cuda behind the kernel-module functions of fastnn._C.

The functions here have the signatures of ``fastnn._C`` (outputs first, then saved state, then
inputs, then parameters) and trust their arguments, as every kernel module does: ``fastnn.ops``
validates. Each array argument may be

* an object exposing ``__cuda_array_interface__`` (a numba.cuda device array, a CuPy or PyTorch
  CUDA tensor): the kernel reads and writes it in place, with its strides, no copies; or
* a NumPy array: it is copied to the device, the kernel runs, and outputs are copied back into it.

Kernels run asynchronously on the legacy default stream (where numba's default stream puts its
work too); copying a result to the host waits for them. Kernel functions the CUDA module does
not have yet run on the CPU backend for NumPy arrays and raise TypeError for device arrays.

``is_available()`` is cheap after its first call and never raises; ``import fastnn.cuda`` never
touches the driver, and numba is imported only by :func:`device_empty`.

This is a kernel module, below :mod:`fastnn.backend` in the layering, so it never imports it: the
backend hands it the host kernel module for the fallbacks through :func:`_set_host_kernels`.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

try:
    from . import _cuda  # type: ignore[attr-defined]
except ImportError as _exc:  # built without CUDA, or the module cannot load here
    _cuda = None
    _IMPORT_ERROR: Optional[str] = str(_exc)
else:
    _IMPORT_ERROR = None

__all__ = ["is_compiled", "is_available", "unavailable_reason", "device_count", "device_empty",
           "synchronize", "gemm", "linear", "linear_backward", "activation",
           "activation_backward"]

_probe: Optional[Tuple[int, str]] = None
_host_provider: Optional[Callable[[], Any]] = None
_FLOATS = {np.dtype(np.float32): False, np.dtype(np.float64): True}  # dtype -> "is double"


def is_compiled() -> bool:
    """True when the build produced fastnn._cuda and it imports."""
    return _cuda is not None


def device_count() -> int:
    """CUDA devices usable here (0 without the module, a driver or a device); never raises."""
    global _probe
    if _probe is None:
        if _cuda is None:
            _probe = (0, "")
        else:
            try:
                n, why = _cuda.probe()
                _probe = (int(n), str(why))
            except Exception as exc:  # defensive: a broken runtime must not break import paths
                _probe = (0, f"{type(exc).__name__}: {exc}")
    return _probe[0]


def is_available() -> bool:
    """True when fastnn._cuda imports and at least one CUDA device can be used."""
    return device_count() > 0


def unavailable_reason() -> str:
    """Why :func:`is_available` is False (an empty string when it is True)."""
    if _cuda is None:
        if _IMPORT_ERROR and "_cuda" not in _IMPORT_ERROR:
            return f"fastnn._cuda failed to import ({_IMPORT_ERROR})"
        return "fastnn was built without CUDA (no fastnn._cuda module)"
    if device_count() > 0:
        return ""
    detail = _probe[1] if _probe and _probe[1] else "unknown cause"
    return f"no usable CUDA driver and device ({detail})"


def _require() -> Any:
    if not is_available():
        raise RuntimeError("the CUDA backend cannot run here: " + unavailable_reason())
    return _cuda


def device_empty(shape: Sequence[int], dtype: Any) -> Any:
    """An uninitialised numba.cuda device array (numba is imported on first use)."""
    _require()
    from numba import cuda as nb_cuda
    return nb_cuda.device_array(tuple(int(s) for s in shape), dtype=np.dtype(dtype))


def synchronize() -> None:
    """Wait until every kernel launched on the current device has finished."""
    _require().synchronize()


# ---------------------------------------------------------------------------------------------
# Turning arguments into device views


def _is_device(x: Any) -> bool:
    return x is not None and not isinstance(x, np.ndarray) and hasattr(
        x, "__cuda_array_interface__")


def _c_strides(shape: Tuple[int, ...]) -> Tuple[int, ...]:
    out, step = [], 1
    for n in reversed(shape):
        out.append(step)
        step *= max(int(n), 1)
    return tuple(reversed(out))


def _elem_strides(shape: Tuple[int, ...], byte_strides: Optional[Sequence[int]],
                  itemsize: int) -> Tuple[int, ...]:
    """Strides in elements; None means C-contiguous. Length-1 dimensions get stride 0 (their
    stride is arbitrary and never used to step), so the kernels' layout tests see through them."""
    if byte_strides is None:
        st = _c_strides(shape)
    else:
        if any(int(s) % itemsize for n, s in zip(shape, byte_strides) if n != 1):
            raise TypeError(f"array strides {tuple(byte_strides)} are not whole elements")
        st = tuple(int(s) // itemsize for s in byte_strides)
    return tuple(0 if n == 1 else s for n, s in zip(shape, st))


class _View:
    """A device address with its shape and strides (in elements)."""
    __slots__ = ("ptr", "shape", "strides", "dtype")

    def __init__(self, ptr: int, shape: Tuple[int, ...], strides: Tuple[int, ...],
                 dtype: np.dtype) -> None:
        self.ptr, self.shape, self.strides, self.dtype = ptr, shape, strides, dtype

    def mat(self) -> Tuple[int, int, int]:
        return (self.ptr, self.strides[0], self.strides[1])

    def vec(self) -> Tuple[int, int]:
        return (self.ptr, self.strides[0])

    def nd(self) -> Tuple[int, Tuple[int, ...]]:
        return (self.ptr, self.strides)


class _Call:
    """Device views for the arguments of one kernel call.

    Host inputs are uploaded; host outputs get a device buffer that :meth:`finish` copies back.
    Every staging buffer is freed when the call object goes away.
    """

    def __init__(self, args: Sequence[Any]) -> None:
        self._cuda = _require()
        self._keep: List[Any] = []
        self._back: List[Tuple[Any, np.ndarray, Optional[np.ndarray]]] = []
        for a in args:  # run on the device that holds the caller's device arrays
            if _is_device(a):
                self._cuda.use_device_of(int(a.__cuda_array_interface__["data"][0]))
                break

    def _device(self, x: Any) -> _View:
        cai = x.__cuda_array_interface__
        if cai.get("mask") is not None:
            raise TypeError("masked device arrays are not supported by the CUDA kernels")
        dt = np.dtype(cai["typestr"])
        if dt not in _FLOATS:
            raise TypeError(f"CUDA kernels take float32/float64 device arrays, got {dt}")
        shape = tuple(int(s) for s in cai["shape"])
        strides = _elem_strides(shape, cai.get("strides"), dt.itemsize)
        stream = cai.get("stream")
        if stream is not None and int(stream) != 1:  # the producer's stream must finish first
            self._cuda.stream_synchronize(int(stream))
        self._keep.append(x)
        return _View(int(cai["data"][0]), shape, strides, dt)

    def input(self, x: Any) -> Optional[_View]:
        if x is None:
            return None
        if _is_device(x):
            return self._device(x)
        a = np.asarray(x)
        if not (a.flags.c_contiguous or a.flags.f_contiguous):
            a = np.ascontiguousarray(a)
        buf = self._cuda.DeviceBuffer(a.nbytes)
        buf.upload(a)
        self._keep.append(buf)
        return _View(buf.ptr, a.shape, _elem_strides(a.shape, a.strides, a.itemsize), a.dtype)

    def output(self, x: Any) -> Optional[_View]:
        if x is None:
            return None
        if _is_device(x):
            return self._device(x)
        dense = x.flags.c_contiguous or x.flags.f_contiguous
        target = x if dense else np.empty(x.shape, x.dtype)
        buf = self._cuda.DeviceBuffer(target.nbytes)
        self._keep.append(buf)
        self._back.append((buf, target, None if dense else x))
        strides = _elem_strides(target.shape, target.strides, target.itemsize)
        return _View(buf.ptr, target.shape, strides, target.dtype)

    def finish(self) -> None:
        for buf, target, final in self._back:
            buf.download(target)
            if final is not None:
                final[...] = target


def _run(args: Sequence[Any], n_out: int, launch: Callable[..., None]) -> None:
    """Stage ``args`` (the first ``n_out`` are outputs), launch, copy host outputs back."""
    call = _Call(args)
    views = [call.output(a) for a in args[:n_out]] + [call.input(a) for a in args[n_out:]]
    launch(*views)
    call.finish()


def _mat(v: Optional[_View]) -> Optional[Tuple[int, int, int]]:
    return None if v is None else v.mat()


def _vec(v: Optional[_View]) -> Optional[Tuple[int, int]]:
    return None if v is None else v.vec()


def _nd(v: Optional[_View]) -> Optional[Tuple[int, Tuple[int, ...]]]:
    return None if v is None else v.nd()


# ---------------------------------------------------------------------------------------------
# Kernel-module functions (the signatures of fastnn._C)


def gemm(out: Any, a: Any, b: Any, c: Any, alpha: float, beta: float) -> None:
    """out := alpha * a @ b + beta * c (c may be None; with beta == 0 it is not read)."""
    if c is not None and beta == 0.0:
        c = None

    def launch(o: _View, av: _View, bv: _View, cv: Optional[_View]) -> None:
        m, n = o.shape
        _cuda.gemm(_FLOATS[o.dtype], m, n, av.shape[1], o.mat(), av.mat(), bv.mat(), _mat(cv),
                   float(alpha), float(beta))

    _run((out, a, b, c), 1, launch)


def linear(y: Any, z: Any, x: Any, w: Any, b: Any, act: int, param: float) -> None:
    """y := act(x @ w.T + b); z (or None) receives x @ w.T + b."""

    def launch(yv: _View, zv: Optional[_View], xv: _View, wv: _View,
               bv: Optional[_View]) -> None:
        m, n = yv.shape
        _cuda.linear(_FLOATS[yv.dtype], m, n, xv.shape[1], yv.mat(), _mat(zv), xv.mat(),
                     wv.mat(), _vec(bv), int(act), float(param))

    _run((y, z, x, w, b), 2, launch)


def linear_backward(dx: Any, dw: Any, db: Any, dy: Any, x: Any, w: Any, y: Any, z: Any,
                    act: int, param: float) -> None:
    """Gradients of linear: dw, db (or None), dx (or None) from dy, with act' fused."""

    def launch(dxv: Optional[_View], dwv: _View, dbv: Optional[_View], dyv: _View, xv: _View,
               wv: _View, yv: Optional[_View], zv: Optional[_View]) -> None:
        m, n = dyv.shape
        _cuda.linear_backward(_FLOATS[dwv.dtype], m, n, xv.shape[1], _mat(dxv), dwv.mat(),
                              _vec(dbv), dyv.mat(), xv.mat(), wv.mat(), _mat(yv), _mat(zv),
                              int(act), float(param))

    _run((dx, dw, db, dy, x, w, y, z), 3, launch)


def activation(y: Any, x: Any, kind: int, param: float) -> None:
    """y := act(x), elementwise (any shape with at most 8 dimensions)."""

    def launch(yv: _View, xv: _View) -> None:
        _cuda.activation(_FLOATS[yv.dtype], list(yv.shape), yv.nd(), xv.nd(), int(kind),
                         float(param))

    _run((y, x), 1, launch)


def activation_backward(dx: Any, dy: Any, z: Any, y: Any, kind: int, param: float) -> None:
    """dx := dy * act'(z, y); z may be None (only GELU needs it)."""

    def launch(dxv: _View, dyv: _View, zv: Optional[_View], yv: _View) -> None:
        _cuda.activation_backward(_FLOATS[dxv.dtype], list(dxv.shape), dxv.nd(), dyv.nd(),
                                  _nd(zv), yv.nd(), int(kind), float(param))

    _run((dx, dy, z, y), 1, launch)


# ---------------------------------------------------------------------------------------------
# Kernels of other families: the CPU backend runs them on host arrays until CUDA versions exist.


def _host_fallback(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        for a in list(args) + list(kwargs.values()):
            if _is_device(a):
                raise TypeError(f"fastnn.cuda has no CUDA kernel for {name!r} yet, so it cannot "
                                f"take device arrays; pass NumPy arrays or use the cpp backend")
        return fn(*args, **kwargs)
    return call


def _set_host_kernels(provider: Callable[[], Any]) -> None:
    """Install ``provider() -> kernel module``, which runs the kernels this module lacks.

    :mod:`fastnn.backend` calls this once, when it loads: it knows which CPU backend exists here,
    and asking it directly would make this module import the layer above it.
    """
    global _host_provider
    _host_provider = provider


def __getattr__(name: str) -> Any:
    if name.startswith("_") or _host_provider is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    host = _host_provider()
    fn = getattr(host, name, None)
    if fn is None or not callable(fn):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    wrapped = _host_fallback(name, fn)
    globals()[name] = wrapped  # resolve once
    return wrapped
