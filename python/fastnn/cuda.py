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

The image kernels (convolution and pooling) are the exception to the name lookup: the ops run
host arrays on the host kernels on every backend, so ``fastnn.cuda.conv2d_forward`` and the like
stay the host kernels (reached through the CPU backend), and the CUDA versions, with the same
signatures, are :func:`device_kernel` ``(name)``. Given a device array, the host name hands the
call to the CUDA version.

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
           "activation_backward", "device_kernel", "DEVICE_KERNELS", "lstm_forward",
           "lstm_backward", "gru_forward", "gru_backward", "rnn_forward", "rnn_backward",
           "attention_forward", "attention_backward"]
__all__ += ["rbm_hidden", "rbm_visible", "rbm_cd_step", "rbm_free_energy",
            "rbm_pseudo_likelihood"]

_probe: Optional[Tuple[int, str]] = None
_host_provider: Optional[Callable[[], Any]] = None
_FLOATS = {np.dtype(np.float32): False, np.dtype(np.float64): True}  # dtype -> "is double"
_INDEX = np.dtype(np.int64)  # max pooling's argmax


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

    def _device(self, x: Any, index: bool = False) -> _View:
        cai = x.__cuda_array_interface__
        if cai.get("mask") is not None:
            raise TypeError("masked device arrays are not supported by the CUDA kernels")
        dt = np.dtype(cai["typestr"])
        if index:
            if dt != _INDEX:
                raise TypeError(f"this CUDA kernel takes an int64 index array, got {dt}")
        elif dt not in _FLOATS:
            raise TypeError(f"CUDA kernels take float32/float64 device arrays, got {dt}")
        shape = tuple(int(s) for s in cai["shape"])
        strides = _elem_strides(shape, cai.get("strides"), dt.itemsize)
        stream = cai.get("stream")
        if stream is not None and int(stream) != 1:  # the producer's stream must finish first
            self._cuda.stream_synchronize(int(stream))
        self._keep.append(x)
        return _View(int(cai["data"][0]), shape, strides, dt)

    def input(self, x: Any, index: bool = False) -> Optional[_View]:
        if x is None:
            return None
        if _is_device(x):
            return self._device(x, index)
        a = np.asarray(x)
        if not (a.flags.c_contiguous or a.flags.f_contiguous):
            a = np.ascontiguousarray(a)
        buf = self._cuda.DeviceBuffer(a.nbytes)
        buf.upload(a)
        self._keep.append(buf)
        return _View(buf.ptr, a.shape, _elem_strides(a.shape, a.strides, a.itemsize), a.dtype)

    def output(self, x: Any, index: bool = False, read: bool = False) -> Optional[_View]:
        """``read``: the kernel also reads x (its current values are uploaded first)."""
        if x is None:
            return None
        if _is_device(x):
            return self._device(x, index)
        dense = x.flags.c_contiguous or x.flags.f_contiguous
        target = x if dense else np.empty(x.shape, x.dtype)
        buf = self._cuda.DeviceBuffer(target.nbytes)
        if read:
            buf.upload(x if dense else np.ascontiguousarray(x))  # target's (C) layout
        self._keep.append(buf)
        self._back.append((buf, target, None if dense else x))
        strides = _elem_strides(target.shape, target.strides, target.itemsize)
        return _View(buf.ptr, target.shape, strides, target.dtype)

    def finish(self) -> None:
        for buf, target, final in self._back:
            buf.download(target)
            if final is not None:
                final[...] = target


def _run(args: Sequence[Any], n_out: int, launch: Callable[..., None],
         index: Sequence[int] = (), updated: Sequence[int] = ()) -> None:
    """Stage ``args`` (the first ``n_out`` are outputs), launch, copy host outputs back.
    ``index``: the positions of int64 index arrays (the others are float32/float64);
    ``updated``: outputs the kernel also reads (a host one is uploaded first)."""
    call = _Call(args)
    views = [call.output(a, i in index, i in updated) if i < n_out
             else call.input(a, i in index) for i, a in enumerate(args)]
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
# Image kernels (convolution, pooling): the signatures of numba_kernels.conv and .pool. Each
# array is passed to fastnn._cuda as (ptr, type, shape, strides), so any strides work.


# RBM kernels (csrc/cuda/rbm.cu): C-contiguous matrices, the signatures of fastnn._C.


def _ptr(v: Optional[_View]) -> int:
    return 0 if v is None else v.ptr


def rbm_hidden(h: Any, v: Any, w: Any, b_hid: Any, sample: bool, seed: int) -> None:
    """h := sigmoid(v @ w.T + b_hid), Bernoulli-sampled when ``sample``."""

    def launch(hv: _View, vv: _View, wv: _View, bv: Optional[_View]) -> None:
        _cuda.rbm_hidden(_FLOATS[hv.dtype], vv.shape[0], wv.shape[1], wv.shape[0], hv.ptr,
                         vv.ptr, wv.ptr, _ptr(bv), bool(sample), int(seed))

    _run((h, v, w, b_hid), 1, launch)


def rbm_visible(v: Any, h: Any, w: Any, b_vis: Any, gaussian: bool, sample: bool,
                seed: int) -> None:
    """v := visible means given h (sigmoid, or identity for Gaussian units), or samples."""

    def launch(vv: _View, hv: _View, wv: _View, bv: Optional[_View]) -> None:
        _cuda.rbm_visible(_FLOATS[vv.dtype], hv.shape[0], wv.shape[1], wv.shape[0], vv.ptr,
                          hv.ptr, wv.ptr, _ptr(bv), bool(gaussian), bool(sample), int(seed))

    _run((v, h, w, b_vis), 1, launch)


def rbm_cd_step(w: Any, b_vis: Any, b_hid: Any, chain: Any, vel_w: Any, vel_b_vis: Any,
                vel_b_hid: Any, v0: Any, k: int, lr: float, momentum: float,
                weight_decay: float, gaussian: bool, compute_error: bool, seed: int,
                rows: Any = None) -> float:
    """One CD-k / PCD update in place; returns the reconstruction error (NaN if not asked).
    ``rows``: the batch is ``v0[rows]``, gathered on the host."""
    if rows is not None:
        v0 = np.take(v0, rows, axis=0)
    result = [float("nan")]

    def launch(wv: _View, bvv: _View, bhv: _View, cv: Optional[_View], vw: Optional[_View],
               vbv: Optional[_View], vbh: Optional[_View], v0v: _View) -> None:
        result[0] = _cuda.rbm_cd_step(
            _FLOATS[wv.dtype], v0v.shape[0], wv.shape[1], wv.shape[0],
            0 if cv is None else cv.shape[0], wv.ptr, bvv.ptr, bhv.ptr, _ptr(cv), _ptr(vw),
            _ptr(vbv), _ptr(vbh), v0v.ptr, int(k), float(lr), float(momentum),
            float(weight_decay), bool(gaussian), bool(compute_error), int(seed))

    _run((w, b_vis, b_hid, chain, vel_w, vel_b_vis, vel_b_hid, v0), 7, launch,
         updated=range(7))
    return result[0]


def rbm_free_energy(out: Any, v: Any, w: Any, b_vis: Any, b_hid: Any, gaussian: bool) -> None:
    """out (float64) := the free energy of each row of v."""

    def launch(ov: _View, vv: _View, wv: _View, bvv: _View, bhv: _View) -> None:
        _cuda.rbm_free_energy(_FLOATS[vv.dtype], vv.shape[0], wv.shape[1], wv.shape[0], ov.ptr,
                              vv.ptr, wv.ptr, bvv.ptr, bhv.ptr, bool(gaussian))

    _run((out, v, w, b_vis, b_hid), 1, launch)


def rbm_pseudo_likelihood(out: Any, v: Any, w: Any, b_vis: Any, b_hid: Any, seed: int) -> None:
    """out (float64) := the pseudo-likelihood of each row of v, as scikit-learn's."""

    def launch(ov: _View, vv: _View, wv: _View, bvv: _View, bhv: _View) -> None:
        _cuda.rbm_pseudo_likelihood(_FLOATS[vv.dtype], vv.shape[0], wv.shape[1], wv.shape[0],
                                    ov.ptr, vv.ptr, wv.ptr, bvv.ptr, bhv.ptr, int(seed))

    _run((out, v, w, b_vis, b_hid), 1, launch)


def _img(v: Optional[_View]) -> Optional[Tuple[int, str, Tuple[int, ...], Tuple[int, ...]]]:
    return None if v is None else (v.ptr, v.dtype.str[1:], v.shape, v.strides)


def _conv2d_forward(y: Any, x: Any, w: Any, b: Any, sh: int, sw: int, ph: int, pw: int,
                    dil_h: int, dil_w: int, groups: int, act: int = 0,
                    act_param: float = 0.0) -> None:
    """y := act(conv2d(x, w) + b) (b may be None; act an activation code, 0: none); ph/pw are
    the top/left padding, OH/OW come from y. Empty reductions are fine (C_in == 0 gives y = b)."""
    geom = (int(sh), int(sw), int(ph), int(pw), int(dil_h), int(dil_w), int(groups), int(act),
            float(act_param))
    _run((y, x, w, b), 1, lambda *v: _cuda.conv2d_forward(*map(_img, v), *geom))


def _conv2d_backward_data(dx: Any, dy: Any, w: Any, sh: int, sw: int, ph: int, pw: int,
                          dil_h: int, dil_w: int, groups: int) -> None:
    """dx := the gradient of conv2d with respect to its input (every element written)."""
    geom = (int(sh), int(sw), int(ph), int(pw), int(dil_h), int(dil_w), int(groups))
    _run((dx, dy, w), 1, lambda *v: _cuda.conv2d_backward_data(*map(_img, v), *geom))


def _conv2d_backward_weight(dw: Any, db: Any, dy: Any, x: Any, sh: int, sw: int, ph: int,
                            pw: int, dil_h: int, dil_w: int, groups: int) -> None:
    """dw := the gradient of conv2d with respect to w; db (or None) := dy summed over
    (N, OH, OW). Deterministic: no atomics, a fixed order of summation."""
    geom = (int(sh), int(sw), int(ph), int(pw), int(dil_h), int(dil_w), int(groups))
    _run((dw, db, dy, x), 2, lambda *v: _cuda.conv2d_backward_weight(*map(_img, v), *geom))


def _add_channel_bias(y: Any, b: Any) -> None:
    """y[n, c, h, w] += b[c] (y is read and written: a host y is uploaded and copied back)."""
    _run((y, b), 1, lambda *v: _cuda.add_channel_bias(*map(_img, v)), updated=(0,))


def _channel_sums(out: Any, x: Any) -> None:
    """out[c] := x[:, c].sum(), in a fixed order."""
    _run((out, x), 1, lambda *v: _cuda.channel_sums(*map(_img, v)))


def _max_pool2d_forward(y: Any, argmax: Any, x: Any, kh: int, kw: int, sh: int, sw: int,
                        ph: int, pw: int) -> None:
    """y := window maxima of x, argmax (int64) := their flat index into the input plane."""
    win = (int(kh), int(kw), int(sh), int(sw), int(ph), int(pw))
    _run((y, argmax, x), 2, lambda *v: _cuda.max_pool2d_forward(*map(_img, v), *win),
         index=(1,))


def _max_pool2d_backward(dx: Any, argmax: Any, dy: Any, gate: Any = None) -> None:
    """dx := 0, then each dy element added at its argmax, in a fixed order; with a gate (the
    pooled output), only the dy elements whose gate is positive (relu's derivative)."""
    arrays = (dx, argmax, dy) if gate is None else (dx, argmax, dy, gate)
    _run(arrays, 1, lambda *v: _cuda.max_pool2d_backward(*map(_img, v)), index=(1,))


def _avg_pool2d_forward(y: Any, x: Any, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
                        count_include_pad: bool) -> None:
    """y := window means of x, the zero padding counted in the divisor or not."""
    win = (int(kh), int(kw), int(sh), int(sw), int(ph), int(pw))
    _run((y, x), 1,
         lambda *v: _cuda.avg_pool2d_forward(*map(_img, v), *win, bool(count_include_pad)))


def _avg_pool2d_backward(dx: Any, dy: Any, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
                         count_include_pad: bool) -> None:
    """dx := each dy element divided by its window's divisor, spread over the window."""
    win = (int(kh), int(kw), int(sh), int(sw), int(ph), int(pw))
    _run((dx, dy), 1,
         lambda *v: _cuda.avg_pool2d_backward(*map(_img, v), *win, bool(count_include_pad)))


# ---------------------------------------------------------------------------------------------
# The recurrent family (rnn.cu): the signatures of the C++ kernels; arrays are C-contiguous
# (NumPy arrays from fastnn.ops, staged through the device).

_LSTM_FWD = ("y", "h_n", "c_n", "gates", "x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh",
             "lengths")
_LSTM_BWD = ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh", "gates", "y", "dy", "dh_n",
             "dc_n", "x", "h0", "c0", "w_ih", "w_hh", "lengths")
_GRU_FWD = ("y", "h_n", "gates", "x", "h0", "w_ih", "w_hh", "b_ih", "b_hh", "lengths")
_GRU_BWD = ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh", "gates", "y", "dy", "dh_n", "x",
            "h0", "w_ih", "w_hh", "lengths")
_RNN_FWD = ("y", "h_n", "x", "h0", "w_ih", "w_hh", "b_ih", "b_hh", "lengths")
_RNN_BWD = ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh", "y", "dy", "dh_n", "x", "h0",
            "w_ih", "w_hh", "lengths")


def _recurrent(kind: int, backward: bool, names: Sequence[str], args: Sequence[Any],
               n_out: int) -> None:
    x, w_hh = args[names.index("x")], args[names.index("w_hh")]
    b, t, i = (int(n) for n in x.shape)
    dims = (b, t, i, int(w_hh.shape[1]))

    def launch(*views: Optional[_View]) -> None:
        ptrs = {n: v.ptr for n, v in zip(names, views) if v is not None}
        _cuda.rnn_call(_FLOATS[views[names.index("x")].dtype], backward, kind, *dims, ptrs)

    _run(args, n_out, launch, index=(names.index("lengths"),))


def lstm_forward(y: Any, h_n: Any, c_n: Any, gates: Any, x: Any, h0: Any, c0: Any, w_ih: Any,
                 w_hh: Any, b_ih: Any, b_hh: Any, lengths: Any) -> None:
    """LSTM over batch-first sequences: y, h_n, c_n and (unless None) the gates [i f g o c]."""
    _recurrent(0, False, _LSTM_FWD, (y, h_n, c_n, gates, x, h0, c0, w_ih, w_hh, b_ih, b_hh,
                                     lengths), 4)


def lstm_backward(dx: Any, dh0: Any, dc0: Any, dw_ih: Any, dw_hh: Any, db_ih: Any, db_hh: Any,
                  gates: Any, y: Any, dy: Any, dh_n: Any, dc_n: Any, x: Any, h0: Any, c0: Any,
                  w_ih: Any, w_hh: Any, lengths: Any) -> None:
    """LSTM backward through time from the saved gates and y."""
    _recurrent(0, True, _LSTM_BWD, (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, gates, y, dy, dh_n,
                                    dc_n, x, h0, c0, w_ih, w_hh, lengths), 7)


def gru_forward(y: Any, h_n: Any, gates: Any, x: Any, h0: Any, w_ih: Any, w_hh: Any, b_ih: Any,
                b_hh: Any, lengths: Any) -> None:
    """GRU over batch-first sequences: y, h_n and (unless None) the gates [r z n U_n h + b_hn]."""
    _recurrent(1, False, _GRU_FWD, (y, h_n, gates, x, h0, w_ih, w_hh, b_ih, b_hh, lengths), 3)


def gru_backward(dx: Any, dh0: Any, dw_ih: Any, dw_hh: Any, db_ih: Any, db_hh: Any, gates: Any,
                 y: Any, dy: Any, dh_n: Any, x: Any, h0: Any, w_ih: Any, w_hh: Any,
                 lengths: Any) -> None:
    """GRU backward through time from the saved gates and y."""
    _recurrent(1, True, _GRU_BWD, (dx, dh0, dw_ih, dw_hh, db_ih, db_hh, gates, y, dy, dh_n, x,
                                   h0, w_ih, w_hh, lengths), 6)


def rnn_forward(y: Any, h_n: Any, x: Any, h0: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any,
                lengths: Any, relu: bool) -> None:
    """Elman RNN (tanh, or relu) over batch-first sequences: y, h_n."""
    _recurrent(3 if relu else 2, False, _RNN_FWD, (y, h_n, x, h0, w_ih, w_hh, b_ih, b_hh,
                                                   lengths), 2)


def rnn_backward(dx: Any, dh0: Any, dw_ih: Any, dw_hh: Any, db_ih: Any, db_hh: Any, y: Any,
                 dy: Any, dh_n: Any, x: Any, h0: Any, w_ih: Any, w_hh: Any, lengths: Any,
                 relu: bool) -> None:
    """Elman RNN backward through time from y."""
    _recurrent(3 if relu else 2, True, _RNN_BWD, (dx, dh0, dw_ih, dw_hh, db_ih, db_hh, y, dy,
                                                  dh_n, x, h0, w_ih, w_hh, lengths), 6)
# Attention: the signatures of numba_kernels.attention. The mask is a broadcast view (zero
# strides): only its distinct elements are staged, and the zero strides go to the kernel.


def _compact_mask(mask: Any) -> Any:
    if mask is None or _is_device(mask):
        return mask
    idx = tuple(slice(0, 1) if st == 0 else slice(None) for st in mask.strides)
    return np.ascontiguousarray(mask[idx])


def _mask_img(v: Optional[_View], full_shape: Tuple[int, ...]) -> Any:
    if v is None:
        return None
    strides = tuple(0 if n == 1 and full != 1 else st
                    for n, full, st in zip(v.shape, full_shape, v.strides))
    return (v.ptr, v.dtype.str[1:], tuple(full_shape), strides)


def attention_forward(o: Any, lse: Any, q: Any, k: Any, v: Any, mask: Any, scale: float,
                      causal: bool) -> None:
    """o := softmax(q k^T * scale + mask) v, lse := the rows' log-sum-exp."""
    full = tuple(mask.shape) if mask is not None else ()
    m = _compact_mask(mask)

    def launch(ov: _View, lv: _View, qv: _View, kv: _View, vv: _View,
               mv: Optional[_View]) -> None:
        _cuda.attention_forward(_img(ov), _img(lv), _img(qv), _img(kv), _img(vv),
                                _mask_img(mv, full), float(scale), bool(causal))
    _run((o, lse, q, k, v, m), 2, launch)


def attention_backward(dq: Any, dk: Any, dv: Any, o: Any, lse: Any, do: Any, q: Any, k: Any,
                       v: Any, mask: Any, scale: float, causal: bool) -> None:
    """dq, dk, dv of sum(o * do), the probabilities recomputed from lse."""
    full = tuple(mask.shape) if mask is not None else ()
    m = _compact_mask(mask)

    def launch(dqv: _View, dkv: _View, dvv: _View, ov: _View, lv: _View, dov: _View,
               qv: _View, kv: _View, vv: _View, mv: Optional[_View]) -> None:
        _cuda.attention_backward(_img(dqv), _img(dkv), _img(dvv), _img(ov), _img(lv),
                                 _img(dov), _img(qv), _img(kv), _img(vv), _mask_img(mv, full),
                                 float(scale), bool(causal))
    _run((dq, dk, dv, o, lse, do, q, k, v, m), 3, launch)


_DEVICE: dict = {
    "conv2d_forward": _conv2d_forward,
    "conv2d_backward_data": _conv2d_backward_data,
    "conv2d_backward_weight": _conv2d_backward_weight,
    "max_pool2d_forward": _max_pool2d_forward,
    "max_pool2d_backward": _max_pool2d_backward,
    "avg_pool2d_forward": _avg_pool2d_forward,
    "avg_pool2d_backward": _avg_pool2d_backward,
    # helpers of the transposed convolution's bias, which no kernel above covers
    "add_channel_bias": _add_channel_bias,
    "channel_sums": _channel_sums,
}
#: The CUDA image kernels :func:`device_kernel` returns.
DEVICE_KERNELS = tuple(_DEVICE)


def device_kernel(name: str) -> Callable[..., None]:
    """The CUDA image kernel ``name`` (one of :data:`DEVICE_KERNELS`), with the signature of the
    host kernel of that name. Arrays may be device arrays (used in place, any strides) or NumPy
    arrays (staged through the device); a call raises RuntimeError where no device can run it.
    """
    try:
        return _DEVICE[name]
    except KeyError:
        raise KeyError(f"fastnn.cuda has no device kernel {name!r}; it has "
                       f"{', '.join(DEVICE_KERNELS)}") from None


# ---------------------------------------------------------------------------------------------
# Kernels of other families: the CPU backend runs them on host arrays until CUDA versions exist.


def _host_fallback(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    device_fn = _DEVICE.get(name)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        for a in list(args) + list(kwargs.values()):
            if _is_device(a):
                if device_fn is not None:  # an image kernel: its CUDA version takes them
                    return device_fn(*args, **kwargs)
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
