"""The CUDA backend: module state everywhere, kernels against float64 NumPy where a GPU exists.

Kernels are checked on NumPy arrays (staged through the device by fastnn.cuda) and on numba.cuda
device arrays (used in place, with their strides: transposed, sliced and misaligned views reach
the kernels' general paths). The expected values are computed here in float64 NumPy.
"""
from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

import fastnn
from fastnn import backend as _backend
from fastnn import cuda as fcuda
from fastnn import ops
from helpers import check_op


def gpu(fn):
    """Marks a test as needing a CUDA device, and skips it (saying why) where there is none."""
    fn = pytest.mark.skipif(not fcuda.is_available(),
                            reason="no CUDA device: " + fcuda.unavailable_reason())(fn)
    return pytest.mark.gpu(fn)


ACTS = ["linear", "relu", "leaky_relu", "sigmoid", "tanh", "elu", "selu", "gelu"]
CODES = {"linear": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4, "elu": 5, "selu": 6,
         "gelu": 7}
PARAM = {"leaky_relu": 0.01, "elu": 1.0}
SELU_A, SELU_S = 1.6732632423543772848, 1.0507009873554804934
_erf = np.vectorize(math.erf, otypes=[np.float64])


# ---------------------------------------------------------------------------------------------
# Everywhere: the module reports its state truthfully and never breaks import fastnn


def test_state_is_reported_consistently():
    assert isinstance(fcuda.is_available(), bool)
    assert isinstance(fcuda.is_compiled(), bool)
    assert isinstance(fcuda.device_count(), int) and fcuda.device_count() >= 0
    try:
        importlib.import_module("fastnn._cuda")
        imports = True
    except ImportError:
        imports = False
    assert fcuda.is_compiled() == imports
    assert fcuda.is_available() == (fcuda.device_count() > 0)
    if not fcuda.is_compiled():
        assert not fcuda.is_available()
    reason = fcuda.unavailable_reason()
    assert isinstance(reason, str)
    assert (reason == "") == fcuda.is_available()
    info = fastnn.build_info()
    assert info["cuda_compiled"] == fcuda.is_compiled()
    assert info["cuda_available"] == fcuda.is_available()
    assert ("cuda" in fastnn.available_backends()) == fcuda.is_available()


def test_cuda_backend_refused_without_device():
    if fcuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError, match="CUDA"):
        fastnn.set_backend("cuda")
    assert fastnn.get_backend() != "cuda"
    with pytest.raises(RuntimeError, match="cannot run here"):
        fcuda.gemm(np.zeros((2, 2), np.float32), np.ones((2, 2), np.float32),
                   np.ones((2, 2), np.float32), None, 1.0, 0.0)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError):
        fcuda.no_such_kernel  # noqa: B018
    assert not hasattr(fcuda, "_no_such_private")
    assert not hasattr(fcuda, "__path__")  # a module, not a package: imports must not be fooled


class _FakeDeviceArray:
    """Anything exposing __cuda_array_interface__ counts as a device array."""
    __cuda_array_interface__ = {"shape": (2,), "typestr": "<f4", "data": (0, False),
                                "version": 3, "strides": None}


def test_missing_kernels_fall_back_to_the_host_backend(monkeypatch):
    """A kernel fastnn.cuda lacks runs on the C++ backend for NumPy arrays, never on device ones."""
    calls = []

    def later_kernel(out, x, param):
        calls.append(param)
        out[...] = x * param

    host = type("HostKernels", (), {"later_kernel": staticmethod(later_kernel)})
    monkeypatch.setattr(_backend, "_C", host)
    try:
        out = np.zeros(3)
        fcuda.later_kernel(out, np.ones(3), 2.0)
        assert calls == [2.0] and (out == 2.0).all()
        with pytest.raises(TypeError, match="no CUDA kernel for 'later_kernel'"):
            fcuda.later_kernel(out, _FakeDeviceArray(), 3.0)
        with pytest.raises(TypeError, match="device arrays"):
            fcuda.later_kernel(out=_FakeDeviceArray(), x=np.ones(3), param=3.0)
        assert calls == [2.0]
        with pytest.raises(AttributeError):
            fcuda.not_a_host_kernel_either  # noqa: B018
    finally:
        vars(fcuda).pop("later_kernel", None)


# ---------------------------------------------------------------------------------------------
# Float64 references


def act_ref(name, z, param=None):
    z = np.asarray(z, np.float64)
    p = PARAM.get(name, 0.0) if param is None else param
    with np.errstate(over="ignore", invalid="ignore"):
        if name == "relu":
            out = np.where(z > 0, z, 0.0)
        elif name == "leaky_relu":
            out = np.where(z > 0, z, p * z)
        elif name == "sigmoid":
            out = 1.0 / (1.0 + np.exp(-z))
        elif name == "tanh":
            out = np.tanh(z)
        elif name == "elu":
            out = np.where(z > 0, z, p * np.expm1(np.minimum(z, 0)))
        elif name == "selu":
            out = SELU_S * np.where(z > 0, z, SELU_A * np.expm1(np.minimum(z, 0)))
        elif name == "gelu":
            out = 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0)))
        else:
            out = z
    return np.where(np.isnan(z), np.nan, out)  # NaN propagates through every activation


def act_grad_ref(name, z, param=None):
    z = np.asarray(z, np.float64)
    p = PARAM.get(name, 0.0) if param is None else param
    if name == "relu":
        return (z > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, p)
    if name == "sigmoid":
        s = act_ref("sigmoid", z)
        return s * (1 - s)
    if name == "tanh":
        return 1 - np.tanh(z) ** 2
    if name == "elu":
        return np.where(z > 0, 1.0, p * np.exp(np.minimum(z, 0)))
    if name == "selu":
        return np.where(z > 0, SELU_S, SELU_S * SELU_A * np.exp(np.minimum(z, 0)))
    if name == "gelu":
        return 0.5 * (1 + _erf(z / math.sqrt(2.0))) + z * np.exp(-0.5 * z * z) / math.sqrt(
            2 * math.pi)
    return np.ones_like(z)


def rand(rng, shape, dtype, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(dtype)


@pytest.fixture
def nbcuda():
    """numba.cuda, for device arrays (skips where numba cannot reach the GPU)."""
    from numba import cuda as nb
    if not nb.is_available():
        pytest.skip("numba.cuda cannot use the device")
    return nb


@pytest.fixture
def on_cuda():
    with _backend.use_backend("cuda"):
        yield


# ---------------------------------------------------------------------------------------------
# GEMM


SHAPES = [(1, 1, 1), (7, 17, 33), (33, 65, 9), (65, 127, 129), (129, 64, 256), (1000, 7, 17)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,n,k", SHAPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True),
                                             (True, True)])
@gpu
def test_gemm_host_arrays(rng, on_cuda, dtype, m, n, k, trans_a, trans_b):
    a = rand(rng, (k, m) if trans_a else (m, k), dtype)
    b = rand(rng, (n, k) if trans_b else (k, n), dtype)
    got = ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    ref = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    check_op(got, ref, dtype, reduction=k)


@gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_alpha_beta_c_and_direct_call(rng, dtype):
    m, n, k = 37, 45, 70
    a, b, c = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype), rand(rng, (m, n), dtype)
    ref = 0.5 * (a.astype(np.float64) @ b) - 2.0 * c
    with _backend.use_backend("cuda"):
        check_op(ops.gemm(a, b, c, alpha=0.5, beta=-2.0), ref, dtype, reduction=k)
    out = np.full((m, n), np.nan, dtype)  # the kernel module fills a given output
    fcuda.gemm(out, a, b, c, 0.5, -2.0)
    check_op(out, ref, dtype, reduction=k)
    # beta == 0: c is not read, so NaN in it does not leak (BLAS semantics)
    fcuda.gemm(out, a, b, np.full_like(c, np.nan), 1.0, 0.0)
    check_op(out, a.astype(np.float64) @ b, dtype, reduction=k)


@gpu
def test_gemm_large_tiles_and_non_contiguous_host(rng, on_cuda):
    # Big enough for the 128x128 tile configuration on any current GPU.
    m, n, k = 1536, 1600, 200
    a, b = rand(rng, (m, 2 * k), np.float32)[:, ::2], rand(rng, (k, n), np.float32)
    check_op(ops.gemm(a, b), a.astype(np.float64) @ b, np.float32, reduction=k)


@gpu
def test_gemm_nan_and_inf_propagate(rng, on_cuda):
    a, b = rand(rng, (9, 20), np.float32), rand(rng, (20, 11), np.float32)
    a[2, 3] = np.nan
    a[5, 0] = np.inf
    b[:, 4] = np.abs(b[:, 4]) + 0.1
    got = ops.gemm(a, b)
    assert np.isnan(got[2]).all()
    assert np.isinf(got[5, 4])
    ok = [i for i in range(9) if i not in (2, 5)]
    check_op(got[ok], a[ok].astype(np.float64) @ b, np.float32, reduction=20)


@gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (17, 33, 65), (130, 70, 129), (300, 260, 64)])
def test_gemm_device_arrays(rng, nbcuda, dtype, m, n, k):
    a, b, c = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype), rand(rng, (m, n), dtype)
    ref = a.astype(np.float64) @ b
    da, db, dc = nbcuda.to_device(a), nbcuda.to_device(b), nbcuda.to_device(c)
    got = ops.gemm(da, db)  # device arrays select the CUDA backend by themselves
    assert hasattr(got, "__cuda_array_interface__")
    check_op(got.copy_to_host(), ref, dtype, reduction=k)
    got = ops.gemm(da, db, dc, alpha=2.0, beta=0.5)
    check_op(got.copy_to_host(), 2 * ref + 0.5 * c, dtype, reduction=k)
    # Fortran-ordered operands reach the loaders that run along M and N
    fa, fb = nbcuda.to_device(np.asfortranarray(a)), nbcuda.to_device(np.asfortranarray(b))
    out = nbcuda.device_array((m, n), dtype=dtype, order="F")
    fcuda.gemm(out, fa, fb, None, 1.0, 0.0)
    check_op(out.copy_to_host(), ref, dtype, reduction=k)


@gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_device_views_strided_and_misaligned(rng, nbcuda, dtype):
    m, n, k = 70, 50, 90
    big_a, big_b = rand(rng, (2 * m, k + 3), dtype), rand(rng, (k + 1, 3 * n), dtype)
    a = big_a[::2, 1:k + 1]  # every other row, and one element past an aligned start
    b = big_b[1:, ::3]       # no unit stride at all: the element-wise load path
    da, db = nbcuda.to_device(big_a)[::2, 1:k + 1], nbcuda.to_device(big_b)[1:, ::3]
    big_out = nbcuda.device_array((m, 2 * n), dtype=dtype)
    out = big_out[:, ::2]
    fcuda.gemm(out, da, db, None, 1.0, 0.0)
    check_op(out.copy_to_host(), a.astype(np.float64) @ b, dtype, reduction=k)


# ---------------------------------------------------------------------------------------------
# linear and its backward


@gpu
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_backward_host(rng, on_cuda, act, dtype, bias):
    m, k, n = 33, 65, 17
    x, w = rand(rng, (m, k), dtype), rand(rng, (n, k), dtype, -0.3, 0.3)
    b = rand(rng, (n,), dtype) if bias else None
    z = x.astype(np.float64) @ w.T.astype(np.float64) + (0 if b is None else b)
    y, ctx = ops.linear_forward(x, w, b, act)
    check_op(y, act_ref(act, z), dtype, reduction=k)
    check_op(ops.linear(x, w, b, act), act_ref(act, z), dtype, reduction=k)
    dy = rand(rng, (m, n), dtype)
    dx, dw, db = ops.linear_backward(ctx, dy)
    # The derivative is taken where the kernel's own output says it is (relu at 0, etc.).
    dz = dy * act_grad_ref(act, z)
    check_op(dx, dz @ w.astype(np.float64), dtype, reduction=n)
    check_op(dw, dz.T @ x.astype(np.float64), dtype, reduction=m)
    if bias:
        check_op(db, dz.sum(axis=0), dtype, reduction=m)
    else:
        assert db is None


@gpu
@pytest.mark.parametrize("act", ["linear", "relu", "gelu", "sigmoid"])
def test_linear_device_arrays(rng, nbcuda, act):
    dtype = np.float32
    m, k, n = 256, 784, 128
    x, w = rand(rng, (m, k), dtype), rand(rng, (n, k), dtype, -0.05, 0.05)
    b = rand(rng, (n,), dtype)
    dx_, dw_, db_ = nbcuda.to_device(x), nbcuda.to_device(w), nbcuda.to_device(b)
    z = x.astype(np.float64) @ w.T.astype(np.float64) + b
    y, ctx = ops.linear_forward(dx_, dw_, db_, act)
    assert hasattr(y, "__cuda_array_interface__")
    check_op(y.copy_to_host(), act_ref(act, z), dtype, reduction=k)
    dy = rand(rng, (m, n), dtype)
    gx, gw, gb = ops.linear_backward(ctx, nbcuda.to_device(dy))
    dz = dy * act_grad_ref(act, z)
    check_op(gx.copy_to_host(), dz @ w.astype(np.float64), dtype, reduction=n)
    check_op(gw.copy_to_host(), dz.T @ x.astype(np.float64), dtype, reduction=m)
    check_op(gb.copy_to_host(), dz.sum(axis=0), dtype, reduction=m)


@gpu
def test_linear_backward_direct_without_dx_and_bias(rng, nbcuda):
    dtype = np.float64
    m, k, n = 9, 7, 5
    x, w, dy = rand(rng, (m, k), dtype), rand(rng, (n, k), dtype), rand(rng, (m, n), dtype)
    y = np.tanh(x @ w.T)
    dw = nbcuda.device_array((n, k), dtype=dtype)
    fcuda.linear_backward(None, dw, None, nbcuda.to_device(dy), nbcuda.to_device(x),
                          nbcuda.to_device(w), nbcuda.to_device(y), None, CODES["tanh"], 0.0)
    check_op(dw.copy_to_host(), (dy * (1 - y * y)).T @ x, dtype, reduction=m)


# ---------------------------------------------------------------------------------------------
# activations


@gpu
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_host(rng, act, dtype):
    x = rand(rng, (3, 5, 7), dtype, -4, 4)
    x[0, 0, 0] = np.nan
    y = np.empty_like(x)
    fcuda.activation(y, x, CODES[act], PARAM.get(act, 0.0))
    check_op(y, act_ref(act, x), dtype)
    dy = rand(rng, x.shape, dtype)
    dx = np.empty_like(x)
    fcuda.activation_backward(dx, dy, x if act == "gelu" else None, y, CODES[act],
                              PARAM.get(act, 0.0))
    ref = dy * act_grad_ref(act, x)
    check_op(dx.reshape(-1)[1:], ref.reshape(-1)[1:], dtype)  # the derivative at NaN is moot


@gpu
@pytest.mark.parametrize("act", ["relu", "elu", "gelu"])
def test_activation_device_strided_views(rng, nbcuda, act):
    dtype = np.float32
    big = rand(rng, (6, 10, 8), dtype, -3, 3)
    x = big[::2, 1:, ::3]
    dx_ = nbcuda.to_device(big)[::2, 1:, ::3]
    big_y = nbcuda.device_array((3, 9, 6), dtype=dtype)
    y = big_y[:, :, ::2]
    fcuda.activation(y, dx_, CODES[act], PARAM.get(act, 0.0))
    check_op(y.copy_to_host(), act_ref(act, x), dtype)
    dy = rand(rng, x.shape, dtype)
    g = nbcuda.device_array(x.shape, dtype=dtype)
    fcuda.activation_backward(g, nbcuda.to_device(dy), dx_, y, CODES[act], PARAM.get(act, 0.0))
    check_op(g.copy_to_host(), dy * act_grad_ref(act, x), dtype)
