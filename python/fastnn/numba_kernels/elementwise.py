"""Numba fallbacks of the elementwise kernels: activations and their derivatives.

The math mirrors csrc/common/activations.h line for line (stable sigmoid, exact-erf GELU, the
derivative taken from the output y where that is cheaper, from the pre-activation z for GELU) so
that the Numba backend agrees with the C++ one to rounding. No fastmath here: it would let LLVM
assume away NaN and inf, and the activations must propagate both.

The span helpers are shared with the GEMM epilogue in :mod:`.gemm`.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange, types

__all__ = ["activation", "activation_backward"]

# Keep in sync with csrc/common/activations.h (act::Kind) and fastnn/ops/_activations.py.
NONE, RELU, LEAKY_RELU, SIGMOID, TANH, ELU, SELU, GELU = range(8)

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
SELU_SA = SELU_SCALE * SELU_ALPHA
INV_SQRT2 = 0.70710678118654752440084436210485
INV_SQRT2PI = 0.39894228040143267793994605993438

# Below this many elements one thread does the whole array: waking the pool costs more.
_PAR_CHUNK = 1 << 14
# Below this many flops per thread, extra threads cost more than they save.
_WORK_PER_THREAD = 1 << 17


# ---------------------------------------------------------------------------------------------
# Explicit signatures, compiled on first use.
#
# Without a signature Numba compiles one specialization per combination of layouts, alignment
# and writability of the arguments, and a parallel kernel takes seconds to compile. Inputs are
# declared as read-only, possibly unaligned, any-layout arrays (every NumPy array converts to
# that type), outputs as the C-contiguous arrays the ops layer allocates; then each kernel
# compiles exactly once per dtype, and cache=True makes later processes load it from disk.

_DISPATCHERS: dict = {}


def in_array(dtype, ndim, layout="A"):
    return types.Array(dtype, ndim, layout, readonly=True, aligned=False)


def out_array(dtype, ndim):
    return types.Array(dtype, ndim, "C")


def numba_dtype(dt):
    return types.float32 if np.dtype(dt) == np.float32 else types.float64


def specialize(pyfunc, sig, *, parallel=True, fastmath=False):
    """A dispatcher of ``pyfunc`` compiled for ``sig`` only (memoized per signature)."""
    key = (pyfunc, sig)
    disp = _DISPATCHERS.get(key)
    if disp is None:
        disp = numba.njit(sig, parallel=parallel, fastmath=fastmath, nogil=True,
                          cache=True)(pyfunc)
        _DISPATCHERS[key] = disp
    return disp


class threads:
    """``with threads(work, chunks) as n:`` runs the parallel kernels inside on the n threads
    that ``work`` flops split into ``chunks`` pieces deserve, then restores the caller's setting.

    Small calls run on one thread: waking the pool costs more than they do (and far more on a
    busy machine, where a spinning OpenMP team fights other processes for the cores). This is
    set from Python because a kernel that calls numba.set_num_threads cannot be cached.
    """

    __slots__ = ("want", "saved")

    def __init__(self, work, chunks):
        self.want = max(1, min(int(chunks), int(work) // _WORK_PER_THREAD))

    def __enter__(self):
        self.saved = numba.get_num_threads()
        n = max(1, min(self.saved, self.want))
        numba.set_num_threads(n)
        return n

    def __exit__(self, *exc):
        numba.set_num_threads(self.saved)


# ---------------------------------------------------------------------------------------------
# Scalar math (activations.h: act::sigmoid, act::forward, act::derivative)

@numba.njit(cache=True)
def sigmoid(x):
    # exp is only ever taken of a non-positive number, so nothing overflows.
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@numba.njit(cache=True)
def gelu(z):
    return 0.5 * z * math.erfc(-z * INV_SQRT2)


@numba.njit(cache=True)
def gelu_derivative(z):
    cdf = 0.5 * math.erfc(-z * INV_SQRT2)
    return cdf + z * INV_SQRT2PI * math.exp(-0.5 * z * z)


# One tight loop per kind, the kind tested once outside it, so LLVM sees branch-free bodies.

@numba.njit(cache=True)
def forward_span(y, x, kind, param):
    """y = act(x) over 1-D arrays (callers pass slices); y and x may be the same array.

    Loops start at a literal 0 so Numba knows the index is non-negative and drops the
    negative-index wraparound, which would otherwise stop LLVM from vectorizing.
    """
    n = x.shape[0]
    if kind == RELU:
        for i in range(n):
            v = x[i]
            # v != v keeps NaN: a bare max(v, 0) would turn it into 0.
            y[i] = v if v > 0.0 or v != v else 0.0
    elif kind == LEAKY_RELU:
        for i in range(n):
            v = x[i]
            y[i] = v if v > 0.0 else v * param
    elif kind == SIGMOID:
        for i in range(n):
            y[i] = sigmoid(x[i])
    elif kind == TANH:
        for i in range(n):
            y[i] = math.tanh(x[i])
    elif kind == ELU:
        for i in range(n):
            v = x[i]
            y[i] = v if v > 0.0 else param * math.expm1(v)
    elif kind == SELU:
        for i in range(n):
            v = x[i]
            y[i] = SELU_SCALE * v if v > 0.0 else SELU_SA * math.expm1(v)
    elif kind == GELU:
        for i in range(n):
            y[i] = gelu(x[i])
    else:
        for i in range(n):
            y[i] = x[i]


@numba.njit(cache=True)
def backward_span(dx, dy, z, y, kind, param):
    """dx = dy * act'(z, y) over 1-D arrays; only GELU reads z (the others may get z = y)."""
    n = dy.shape[0]
    if kind == RELU:
        for i in range(n):
            dx[i] = dy[i] * (1.0 if y[i] > 0.0 else 0.0)
    elif kind == LEAKY_RELU:
        for i in range(n):
            dx[i] = dy[i] * (1.0 if y[i] > 0.0 else param)
    elif kind == SIGMOID:
        for i in range(n):
            v = y[i]
            dx[i] = dy[i] * (v * (1.0 - v))
    elif kind == TANH:
        for i in range(n):
            v = y[i]
            dx[i] = dy[i] * (1.0 - v * v)
    elif kind == ELU:
        for i in range(n):
            v = y[i]
            dx[i] = dy[i] * (1.0 if v > 0.0 else v + param)
    elif kind == SELU:
        for i in range(n):
            v = y[i]
            dx[i] = dy[i] * (SELU_SCALE if v > 0.0 else v + SELU_SA)
    elif kind == GELU:
        for i in range(n):
            dx[i] = dy[i] * gelu_derivative(z[i])
    else:
        for i in range(n):
            dx[i] = dy[i]


# ---------------------------------------------------------------------------------------------
# Parallel drivers

def _forward_par(y, x, kind, param):
    n = x.shape[0]
    nch = max(1, n // _PAR_CHUNK)
    for c in prange(nch):
        lo = c * n // nch
        hi = (c + 1) * n // nch
        forward_span(y[lo:hi], x[lo:hi], kind, param)


def _backward_par(dx, dy, z, y, kind, param):
    n = dy.shape[0]
    nch = max(1, n // _PAR_CHUNK)
    for c in prange(nch):
        lo = c * n // nch
        hi = (c + 1) * n // nch
        backward_span(dx[lo:hi], dy[lo:hi], z[lo:hi], y[lo:hi], kind, param)


def _fwd_kernel(dt):
    t = numba_dtype(dt)
    sig = types.void(out_array(t, 1), in_array(t, 1, "C"), types.int64, types.float64)
    return specialize(_forward_par, sig)


def _bwd_kernel(dt):
    t = numba_dtype(dt)
    sig = types.void(out_array(t, 1), in_array(t, 1, "C"), in_array(t, 1, "C"),
                     in_array(t, 1, "C"), types.int64, types.float64)
    return specialize(_backward_par, sig)


def _flat_in(a):
    return np.ascontiguousarray(a).reshape(-1)


def _run_into(out, fn):
    """Call ``fn(flat_out)`` writing into ``out`` even if it is not contiguous."""
    if out.flags.c_contiguous:
        fn(out.reshape(-1))
    else:
        tmp = np.empty(out.shape, out.dtype)
        fn(tmp.reshape(-1))
        out[...] = tmp


def activation(y, x, kind, param):
    """y := act(x), elementwise, any shape (``kind`` as in activations.h)."""
    if x.size == 0:
        return
    k = _fwd_kernel(y.dtype)
    xf = _flat_in(x)
    with threads(x.size * 16, x.size // _PAR_CHUNK):
        _run_into(y, lambda yf: k(yf, xf, int(kind), float(param)))


def activation_backward(dx, dy, z, y, kind, param):
    """dx := dy * act'(z, y), elementwise; ``z`` (pre-activation) may be None except for GELU."""
    if dy.size == 0:
        return
    k = _bwd_kernel(dx.dtype)
    yf = _flat_in(y)
    zf = yf if z is None else _flat_in(z)
    dyf = _flat_in(dy)
    with threads(dy.size * 16, dy.size // _PAR_CHUNK):
        _run_into(dx, lambda dxf: k(dxf, dyf, zf, yf, int(kind), float(param)))
