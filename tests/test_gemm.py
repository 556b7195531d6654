"""The GEMM family (gemm, linear and their backward) on every backend, against fastnn.reference.

Sizes that do not tile (1, 7, 17, 33, 65, 127, 129, 1000) are used on purpose; the total work of
each case stays small. The C++ backend is also run under every instruction set the CPU has, on
both its direct and its blocked (packed) path.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import backend as _backend
from fastnn import ops
from fastnn import reference as R
from fastnn.ops._activations import resolve as resolve_activation
from helpers import check_grads_fd, check_op

DTYPES = [np.float32, np.float64]
ACTS = list(ops.ACTIVATION_NAMES)  # "linear" and every nonlinearity
FD_SETTINGS = dict(rtol=1e-6, atol=1e-7)
HYP = settings(max_examples=30, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture,
                                      HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------
# data helpers

def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def dyadic(rng, shape, dtype):
    """Multiples of 1/8 in [-1, 1]: their products and sums are exact in float32 and float64, so
    every precision sees the same sign of every pre-activation (no relu kink flips)."""
    return (rng.integers(-8, 9, size=shape) / 8.0).astype(dtype)


def dyadic_bias(rng, n, dtype):
    # The odd 1/128 offset keeps every pre-activation at least 1/128 away from 0 (the kinks),
    # far beyond the finite-difference step.
    return (rng.integers(-8, 9, size=n) / 8.0 + 1.0 / 128).astype(dtype)


def with_layout(x, kind):
    """An array equal to ``x`` whose memory layout is ``kind``."""
    x = np.asarray(x)
    if kind == "C":
        return np.ascontiguousarray(x)
    if kind == "F":
        return np.asfortranarray(x)
    if kind == "step":  # non-unit strides along both axes
        buf = np.zeros((2 * x.shape[0] + 1, 3 * x.shape[1] + 1), x.dtype)
        v = buf[1::2, 1::3]
        v[...] = x
        return v
    if kind == "neg":  # negative strides along both axes
        return np.ascontiguousarray(x[::-1, ::-1])[::-1, ::-1]
    if kind == "negT":  # column-major storage walked backwards
        return np.ascontiguousarray(x.T[::-1])[::-1].T
    if kind == "readonly":
        v = x.copy()
        v.flags.writeable = False
        return v
    if kind == "unaligned":  # data pointer not a multiple of the item size
        raw = np.zeros(x.size * x.itemsize + 1, np.uint8)
        v = raw[1:].view(x.dtype).reshape(x.shape)
        v[...] = x
        return v
    raise AssertionError(kind)


def check_nonfinite(got, ref, dtype=None, **kw):
    """check_op for results holding inf: inf - inf inside its error measure would warn."""
    with np.errstate(invalid="ignore"):
        check_op(got, ref, dtype, **kw)


LAYOUTS = ["C", "F", "step", "neg", "negT", "readonly", "unaligned"]


# ---------------------------------------------------------------------------------------------
# gemm: values

SHAPES = [  # (m, n, k)
    (1, 1, 1), (7, 17, 33), (33, 7, 1), (65, 129, 17), (127, 1, 65), (1, 1000, 7),
    (1000, 1, 3), (17, 33, 1000), (129, 65, 127),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_gemm_matches_reference(backend, rng, dtype, m, n, k):
    for trans_a, trans_b in itertools.product([False, True], repeat=2):
        a = randn(rng, (k, m) if trans_a else (m, k), dtype)
        b = randn(rng, (n, k) if trans_b else (k, n), dtype)
        got = ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
        check_op(got, R.gemm(a, b, trans_a=trans_a, trans_b=trans_b), dtype, reduction=k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha,beta", [(1.0, None), (2.5, -1.5), (-0.5, 0.0), (0.0, 1.0),
                                        (1, 2)])
def test_gemm_alpha_beta_c(backend, rng, dtype, alpha, beta):
    m, n, k = 33, 65, 17
    a, b, c = randn(rng, (m, k), dtype), randn(rng, (k, n), dtype), randn(rng, (m, n), dtype)
    c_before = c.copy()
    got = ops.gemm(a, b, c, alpha=alpha, beta=beta)
    check_op(got, R.gemm(a, b, c, alpha=alpha, beta=beta), dtype, reduction=k, scale=2.5)
    np.testing.assert_array_equal(c, c_before)  # c is an input, never written


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_beta_zero_ignores_nan_in_c(backend, rng, dtype):
    a, b = randn(rng, (7, 5), dtype), randn(rng, (5, 9), dtype)
    c = np.full((7, 9), np.nan, dtype)
    got = ops.gemm(a, b, c, beta=0.0)
    assert not np.isnan(got).any()
    check_op(got, R.gemm(a, b), dtype, reduction=5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_gemm_strided_inputs(backend, rng, dtype, layout):
    m, n, k = 17, 33, 65
    a, b, c = randn(rng, (m, k), dtype), randn(rng, (k, n), dtype), randn(rng, (m, n), dtype)
    ref = R.gemm(a, b, c, alpha=0.5, beta=2.0)
    got = ops.gemm(with_layout(a, layout), with_layout(b, layout), with_layout(c, layout),
                   alpha=0.5, beta=2.0)
    check_op(got, ref, dtype, reduction=k, scale=2.0)
    # the same views, transposed back through trans_a / trans_b
    got_t = ops.gemm(with_layout(a.T, layout), with_layout(b.T, layout), trans_a=True,
                     trans_b=True)
    check_op(got_t, R.gemm(a, b), dtype, reduction=k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_broadcast_and_sliced_views(backend, rng, dtype):
    # stride-0 rows, every other column, a transposed view of a slice
    row = randn(rng, (1, 40), dtype)
    a = np.broadcast_to(row, (9, 40))
    big = randn(rng, (80, 30), dtype)
    b = big[::2, 3:27:2]
    check_op(ops.gemm(a, b), R.gemm(a, b), dtype, reduction=40)
    check_op(ops.gemm(b, a, trans_a=True, trans_b=True),
             R.gemm(b, a, trans_a=True, trans_b=True), dtype, reduction=40)


def test_gemm_accepts_array_likes(backend):
    got = ops.gemm([[1.0, 2.0], [3.0, 4.0]], [[1.0], [1.0]])
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, [[3.0], [7.0]])


# ---------------------------------------------------------------------------------------------
# gemm: zero-size dimensions, NaN and inf

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,k", [(0, 5, 3), (4, 0, 3), (4, 5, 0), (0, 0, 0), (0, 5, 0)])
def test_gemm_zero_size(backend, rng, dtype, m, n, k):
    a, b, c = randn(rng, (m, k), dtype), randn(rng, (k, n), dtype), randn(rng, (m, n), dtype)
    got = ops.gemm(a, b)
    assert got.shape == (m, n) and got.dtype == dtype
    np.testing.assert_array_equal(got, np.zeros((m, n)))
    got_c = ops.gemm(a, b, c, alpha=3.0, beta=2.0)
    check_op(got_c, R.gemm(a, b, c, alpha=3.0, beta=2.0), dtype)
    got_t = ops.gemm(a.T, b.T, trans_a=True, trans_b=True)
    assert got_t.shape == (m, n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,k", [(7, 9, 5), (33, 129, 65), (200, 190, 170)])
def test_gemm_nan_inf_propagate(backend, rng, dtype, m, n, k):
    a, b, c = randn(rng, (m, k), dtype), randn(rng, (k, n), dtype), randn(rng, (m, n), dtype)
    a[1, 2] = np.nan            # row 1 of the result: NaN
    a[3, 0] = np.inf            # row 3: +-inf by the sign of b[0, j]
    b[0, 4] = 0.0               # ... but inf * 0 = NaN at (3, 4)
    b[k - 1, n - 1] = -np.inf   # last column: -+inf, NaN where it meets row 3's inf
    c[m - 1, 0] = np.nan        # reaches the output only through beta != 0
    for beta in (0.0, 1.0):
        got = ops.gemm(a, b, c, beta=beta)
        ref = R.gemm(a, b, c, beta=beta)
        assert np.isnan(ref).any() and np.isinf(ref).any()
        check_nonfinite(got, ref, dtype, reduction=k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 300])  # m = 300: the blocked path, on every thread
def test_kernels_restore_the_callers_fp_mode(backend, dtype, m):
    # The C++ kernels flush subnormals to zero while they run; afterwards the caller's own
    # arithmetic must keep its subnormals.
    tiny = np.finfo(dtype).tiny
    a = np.full((m, 300), tiny / 4, dtype)
    got = ops.gemm(a, np.eye(300, dtype=dtype))
    check_op(got, R.gemm(a, np.eye(300)), dtype)
    assert (np.full(3, tiny, dtype) / dtype(4))[0] > 0
    assert np.nextafter(dtype(0), dtype(1)) * dtype(2) > 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_inf_times_zero_is_nan(backend, dtype):
    a = np.array([[np.inf, 1.0]], dtype)
    b = np.array([[0.0], [1.0]], dtype)
    got = ops.gemm(a, b)
    assert np.isnan(got[0, 0])


# ---------------------------------------------------------------------------------------------
# gemm: forward/backward contract and finite differences

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("with_c", [False, True])
def test_gemm_backward_matches_reference(backend, rng, dtype, trans_a, trans_b, with_c):
    m, n, k = 17, 7, 33
    a = randn(rng, (k, m) if trans_a else (m, k), dtype)
    b = randn(rng, (n, k) if trans_b else (k, n), dtype)
    c = randn(rng, (m, n), dtype) if with_c else None
    kw = dict(alpha=1.5, beta=-0.5 if with_c else None, trans_a=trans_a, trans_b=trans_b)
    out, ctx = ops.gemm_forward(a, b, c, **kw)
    check_op(out, R.gemm(a, b, c, **kw), dtype, reduction=k, scale=1.5)
    g = randn(rng, (m, n), dtype)
    da, db, dc = ops.gemm_backward(ctx, g)
    ra, rb, rc = R.gemm_backward(a, b, c, g, **kw)
    assert da.shape == a.shape and db.shape == b.shape
    check_op(da, ra, dtype, reduction=n, scale=1.5)
    check_op(db, rb, dtype, reduction=m, scale=1.5)
    if with_c:
        check_op(dc, rc, dtype)
    else:
        assert dc is None


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, True), (False, True)])
def test_gemm_backward_finite_differences(backend, rng, trans_a, trans_b):
    m, n, k = 4, 3, 5
    a = randn(rng, (k, m) if trans_a else (m, k), np.float64)
    b = randn(rng, (n, k) if trans_b else (k, n), np.float64)
    c = randn(rng, (m, n), np.float64)
    g = randn(rng, (m, n), np.float64)
    kw = dict(alpha=0.7, beta=1.3, trans_a=trans_a, trans_b=trans_b)
    _, ctx = ops.gemm_forward(a, b, c, **kw)
    da, db, dc = ops.gemm_backward(ctx, g)

    check_grads_fd(lambda: ops.gemm(a, b, c, **kw), g, (da, db, dc), (a, b, c), **FD_SETTINGS)


def test_gemm_backward_bad_d_out(backend, rng):
    _, ctx = ops.gemm_forward(randn(rng, (3, 4), np.float64), randn(rng, (4, 5), np.float64))
    with pytest.raises(ValueError, match="d_out"):
        ops.gemm_backward(ctx, np.zeros((5, 3)))
    with pytest.raises(TypeError, match="d_out"):
        ops.gemm_backward(ctx, np.zeros((3, 5), np.int32))


# ---------------------------------------------------------------------------------------------
# linear: forward values

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("m,n,k", [(1, 7, 17), (33, 65, 7), (129, 1, 33), (7, 129, 1000)])
def test_linear_matches_reference(backend, rng, dtype, act, m, n, k):
    x, w, b = randn(rng, (m, k), dtype), randn(rng, (n, k), dtype), randn(rng, n, dtype)
    check_op(ops.linear(x, w, b, act), R.linear(x, w, b, act), dtype, reduction=k, scale=2)
    check_op(ops.linear(x, w, None, act), R.linear(x, w, None, act), dtype, reduction=k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act,alpha", [("leaky_relu", 0.2), ("leaky_relu", 0.0),
                                       ("leaky_relu", 1.0), ("elu", 0.5), ("elu", 2.0)])
def test_linear_activation_parameter(backend, rng, dtype, act, alpha):
    x, w, b = randn(rng, (17, 33), dtype), randn(rng, (65, 33), dtype), randn(rng, 65, dtype)
    got = ops.linear(x, w, b, act, alpha=alpha)
    check_op(got, R.linear(x, w, b, act, alpha), dtype, reduction=33, scale=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["F", "step", "neg", "negT", "readonly", "unaligned"])
def test_linear_strided_inputs(backend, rng, dtype, layout):
    x, w, b = randn(rng, (33, 17), dtype), randn(rng, (65, 17), dtype), randn(rng, 65, dtype)
    bv = with_layout(b[None, :], layout)[0]
    got = ops.linear(with_layout(x, layout), with_layout(w, layout), bv, "tanh")
    check_op(got, R.linear(x, w, b, "tanh"), dtype, reduction=17)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_batch_shapes(backend, rng, dtype):
    w, b = randn(rng, (9, 7), dtype), randn(rng, 9, dtype)
    x1 = randn(rng, 7, dtype)                       # one sample
    y1 = ops.linear(x1, w, b, "gelu")
    assert y1.shape == (9,)
    check_op(y1, R.linear(x1, w, b, "gelu"), dtype, reduction=7)
    x3 = randn(rng, (2, 5, 3, 7), dtype)[:, ::2]    # (2, 3, 3, 7), not contiguous
    y3 = ops.linear(x3, w, b, "selu")
    assert y3.shape == (2, 3, 3, 9)
    check_op(y3, R.linear(x3, w, b, "selu"), dtype, reduction=7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,k,cpp_path", [(2, 2, 2, "in_register"),
                                            (13, 2, 64, "strided_c")])
def test_linear_leaky_relu_zero_slope_at_minus_inf(backend, request, dtype, m, n, k, cpp_path):
    # slope * z at z = -inf is NaN for slope 0: act::forward, the activation kernels, the
    # reference and the Numba backend all say so; the result must not depend on the GEMM path.
    # In C++, (2, 2, 2) stores through the vector (in-register) epilogue; (13, 2, 64) is run
    # transposed, and its strided C goes through the scalar act::forward.
    x = np.ones((m, k), dtype)
    x[0, 0] = -np.inf
    w = np.zeros((n, k), dtype)
    w[:, 0] = 1.0
    z = np.array([-np.inf], dtype)
    y = np.empty_like(z)
    _backend.kernels().activation(y, z, 2, 0.0)
    assert np.isnan(y[0])
    got = ops.linear(x, w, None, "leaky_relu", alpha=0.0)
    assert np.isnan(got[0]).all(), f"linear gave {got[0]}, the activation kernel {y[0]}"
    check_nonfinite(got, R.linear(x, w, None, "leaky_relu", 0.0), dtype)


# ---------------------------------------------------------------------------------------------
# linear: backward

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("need_dx", [True, False])
@pytest.mark.parametrize("m,n,k,bias", [(33, 17, 65, True), (1, 129, 7, True),
                                        (127, 9, 33, False)])
def test_linear_backward_matches_reference(backend, rng, dtype, act, need_dx, m, n, k, bias):
    x, w = dyadic(rng, (m, k), dtype), dyadic(rng, (n, k), dtype)
    b = dyadic_bias(rng, n, dtype) if bias else None
    y, ctx = ops.linear_forward(x, w, b, act)
    check_op(y, R.linear(x, w, b, act), dtype, reduction=k, scale=2)
    dy = randn(rng, (m, n), dtype)
    dx, dw, db = ops.linear_backward(ctx, dy, need_dx=need_dx)
    rx, rw, rb = R.linear_backward(x, w, b, act, None, dy)
    if need_dx:
        check_op(dx, rx, dtype, reduction=n, scale=2)
    else:
        assert dx is None
    check_op(dw, rw, dtype, reduction=m, scale=2)
    if bias:
        check_op(db, rb, dtype, reduction=m, scale=2)
    else:
        assert db is None


@pytest.mark.parametrize("act,alpha", [("leaky_relu", 0.3), ("elu", 0.5), ("elu", 2.0)])
def test_linear_backward_activation_parameter(backend, rng, act, alpha):
    x, w, b = dyadic(rng, (9, 17), np.float64), dyadic(rng, (5, 17), np.float64), \
        dyadic_bias(rng, 5, np.float64)
    _, ctx = ops.linear_forward(x, w, b, act, alpha=alpha)
    dy = randn(rng, (9, 5), np.float64)
    for got, ref in zip(ops.linear_backward(ctx, dy), R.linear_backward(x, w, b, act, alpha, dy)):
        check_op(got, ref, np.float64, reduction=17, scale=2)


@pytest.mark.parametrize("act", ACTS)
def test_linear_backward_finite_differences(backend, rng, act):
    x, w, b = dyadic(rng, (5, 4), np.float64), dyadic(rng, (3, 4), np.float64), \
        dyadic_bias(rng, 3, np.float64)
    dy = randn(rng, (5, 3), np.float64)
    _, ctx = ops.linear_forward(x, w, b, act)
    dx, dw, db = ops.linear_backward(ctx, dy)

    check_grads_fd(lambda: ops.linear(x, w, b, act), dy, (dx, dw, db), (x, w, b),
                   **FD_SETTINGS)


def test_linear_backward_batch_shapes(backend, rng):
    x = dyadic(rng, (2, 3, 7), np.float64)
    w, b = dyadic(rng, (4, 7), np.float64), dyadic_bias(rng, 4, np.float64)
    y, ctx = ops.linear_forward(x, w, b, "sigmoid")
    assert y.shape == (2, 3, 4)
    dy = randn(rng, (2, 3, 4), np.float64)
    dx, dw, db = ops.linear_backward(ctx, dy)
    assert dx.shape == x.shape
    for got, ref in zip((dx, dw, db), R.linear_backward(x, w, b, "sigmoid", None, dy)):
        check_op(got, ref, np.float64, reduction=6)
    with pytest.raises(ValueError, match="dy"):
        ops.linear_backward(ctx, dy.reshape(6, 4))
    with pytest.raises(TypeError, match="dy"):
        ops.linear_backward(ctx, dy.astype(np.float32))


# ---------------------------------------------------------------------------------------------
# linear: zero-size dimensions, NaN and inf

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["linear", "relu", "gelu", "sigmoid"])
@pytest.mark.parametrize("m,n,k", [(0, 5, 3), (4, 0, 3), (4, 5, 0), (0, 0, 0)])
def test_linear_zero_size(backend, rng, dtype, act, m, n, k):
    x, w, b = randn(rng, (m, k), dtype), randn(rng, (n, k), dtype), randn(rng, n, dtype)
    y, ctx = ops.linear_forward(x, w, b, act)
    assert y.shape == (m, n) and y.dtype == dtype
    check_op(y, R.linear(x, w, b, act), dtype)
    dy = randn(rng, (m, n), dtype)
    dx, dw, db = ops.linear_backward(ctx, dy)
    assert dx.shape == (m, k) and dw.shape == (n, k) and db.shape == (n,)
    for got, ref in zip((dx, dw, db), R.linear_backward(x, w, b, act, None, dy)):
        check_op(got, ref, dtype, reduction=max(m, 1))
    y0 = ops.linear(x, w, None, act)
    check_op(y0, R.linear(x, w, None, act), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("m,n,k", [(7, 9, 5), (200, 190, 170)])
def test_linear_nan_inf_propagate(backend, rng, dtype, act, m, n, k):
    x, w, b = randn(rng, (m, k), dtype), randn(rng, (n, k), dtype), randn(rng, n, dtype)
    x[1, 0] = np.nan    # a NaN row
    x[2, 3] = np.inf    # a row of +-inf pre-activations
    x[4, 1] = -np.inf
    b[n - 1] = np.nan   # a NaN column
    got = ops.linear(x, w, b, act)
    ref = R.linear(x, w, b, act)
    assert np.isnan(ref[1]).all()
    check_nonfinite(got, ref, dtype, reduction=k, scale=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_linear_backward_nan_propagates(backend, rng, dtype, act):
    x, w, b = dyadic(rng, (9, 7), dtype), dyadic(rng, (5, 7), dtype), dyadic_bias(rng, 5, dtype)
    _, ctx = ops.linear_forward(x, w, b, act)
    dy = randn(rng, (9, 5), dtype)
    dy[3, 2] = np.nan
    dx, dw, db = ops.linear_backward(ctx, dy)
    rx, rw, rb = R.linear_backward(x, w, b, act, None, dy)
    assert np.isnan(dx[3]).all() and np.isnan(dw[2]).all() and np.isnan(db[2])
    check_op(dx, rx, dtype, reduction=5, scale=2)
    check_op(dw, rw, dtype, reduction=9, scale=2)
    check_op(db, rb, dtype, reduction=9, scale=2)


def test_concurrent_calls_from_threads(backend):
    # Kernels release the GIL and keep per-thread scratch buffers: callers on several threads
    # must each get their own, correct, results.
    if backend == "numba":
        import numba

        ops.gemm(np.ones((2, 2)), np.ones((2, 2)))  # start the pool, so the layer is known
        if numba.threading_layer() == "workqueue":
            pytest.skip("Numba's workqueue layer does not support concurrent callers")
    from concurrent.futures import ThreadPoolExecutor

    def work(seed):
        rng = np.random.default_rng(seed)
        m, n, k = 60 + seed, 50 + 2 * seed, 170
        x, w = dyadic(rng, (m, k), np.float32), dyadic(rng, (n, k), np.float32)
        b = dyadic_bias(rng, n, np.float32)
        dy = randn(rng, (m, n), np.float32)
        for _ in range(5):
            y, ctx = ops.linear_forward(x, w, b, "gelu")
            grads = ops.linear_backward(ctx, dy)
            c = ops.gemm(x, w, y, trans_b=True, beta=0.5)
        check_op(y, R.linear(x, w, b, "gelu"), np.float32, reduction=k, scale=2)
        for got, ref in zip(grads, R.linear_backward(x, w, b, "gelu", None, dy)):
            check_op(got, ref, np.float32, reduction=max(m, n), scale=2)
        check_op(c, R.gemm(x, w, y, trans_b=True, beta=0.5), np.float32,
                 reduction=k, scale=2)
        return seed

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(work, range(8))) == list(range(8))


# ---------------------------------------------------------------------------------------------
# the activation kernels behind the epilogue (also what linear runs when in_features == 0)

SPECIAL = [0.0, -0.0, 1e-30, -1e-30, 0.5, -0.5, 3.0, -3.0, 20.0, -20.0, 40.0, -40.0, 100.0,
           -100.0, 800.0, -800.0, np.inf, -np.inf, np.nan]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", [(0,), (19,), (3, 5, 7), (70000,)])
def test_activation_kernels(backend, rng, dtype, act, shape):
    kern = _backend.kernels()
    code, param = resolve_activation(act)
    x = (4 * rng.standard_normal(shape)).astype(dtype)
    if x.size:
        x.reshape(-1)[:len(SPECIAL)] = np.array(SPECIAL[:x.size], dtype)
    y = np.empty_like(x)
    kern.activation(y, x, code, param)
    check_nonfinite(y, R.activation(x, act), dtype)
    dy = randn(rng, shape, dtype)
    dx = np.empty_like(x)
    kern.activation_backward(dx, dy, x, y, code, param)
    not_inf = ~np.isinf(x)  # the derivative at +-inf is a convention, checked below
    check_nonfinite(np.where(not_inf, dx, 0).astype(dtype),
                    np.where(not_inf, R.activation_backward(x, act, None, dy), 0), dtype,
                    scale=2)


@pytest.mark.parametrize("act", ACTS)
def test_activation_derivative_at_infinity(backend, act):
    # What every backend and the reference agree on at +-inf (gelu' is NaN there, as PyTorch).
    kern = _backend.kernels()
    code, param = resolve_activation(act)
    x = np.array([np.inf, -np.inf])
    y = np.empty_like(x)
    kern.activation(y, x, code, param)
    dx = np.empty_like(x)
    kern.activation_backward(dx, np.ones(2), x, y, code, param)
    ref = R.activation_backward(x, act, None, np.ones(2))
    np.testing.assert_array_equal(dx, ref)


# ---------------------------------------------------------------------------------------------
# Hypothesis: shapes, strides, transposes, dtypes

dims = st.sampled_from([0, 1, 2, 3, 7, 9, 16, 17, 33])


@HYP
@given(m=dims, n=dims, k=dims, trans_a=st.booleans(), trans_b=st.booleans(),
       dtype=st.sampled_from(DTYPES), la=st.sampled_from(LAYOUTS),
       lb=st.sampled_from(LAYOUTS), with_c=st.booleans(),
       alpha=st.sampled_from([1.0, -2.0, 0.5]), beta=st.sampled_from([0.0, 1.0, -0.25]),
       seed=st.integers(0, 2**31 - 1))
def test_gemm_hypothesis(backend, m, n, k, trans_a, trans_b, dtype, la, lb, with_c, alpha,
                         beta, seed):
    rng = np.random.default_rng(seed)
    a = randn(rng, (k, m) if trans_a else (m, k), dtype)
    b = randn(rng, (n, k) if trans_b else (k, n), dtype)
    c = randn(rng, (m, n), dtype) if with_c else None
    beta = beta if with_c else None
    got = ops.gemm(with_layout(a, la), with_layout(b, lb), c, alpha=alpha, beta=beta,
                   trans_a=trans_a, trans_b=trans_b)
    ref = R.gemm(a, b, c, alpha=alpha, beta=beta, trans_a=trans_a, trans_b=trans_b)
    check_op(got, ref, dtype, reduction=k, scale=2)


@HYP
@given(m=dims, n=dims, k=dims, dtype=st.sampled_from(DTYPES), act=st.sampled_from(ACTS),
       lx=st.sampled_from(LAYOUTS), lw=st.sampled_from(LAYOUTS), bias=st.booleans(),
       need_dx=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_linear_hypothesis(backend, m, n, k, dtype, act, lx, lw, bias, need_dx, seed):
    rng = np.random.default_rng(seed)
    x, w = dyadic(rng, (m, k), dtype), dyadic(rng, (n, k), dtype)
    b = dyadic_bias(rng, n, dtype) if bias else None
    y, ctx = ops.linear_forward(with_layout(x, lx), with_layout(w, lw), b, act)
    check_op(y, R.linear(x, w, b, act), dtype, reduction=k, scale=2)
    dy = randn(rng, (m, n), dtype)
    dx, dw, db = ops.linear_backward(ctx, dy, need_dx=need_dx)
    rx, rw, rb = R.linear_backward(x, w, b, act, None, dy)
    if need_dx:
        check_op(dx, rx, dtype, reduction=n, scale=2)
    check_op(dw, rw, dtype, reduction=m, scale=2)
    if bias:
        check_op(db, rb, dtype, reduction=m, scale=2)


BAD_DTYPES = [np.int32, np.int64, np.bool_, np.complex64, np.complex128, np.float16, object,
              np.uint8]


@HYP
@given(a_dt=st.sampled_from(DTYPES + BAD_DTYPES), b_dt=st.sampled_from(DTYPES + BAD_DTYPES),
       a_nd=st.integers(0, 3), b_nd=st.integers(0, 3), ka=st.integers(0, 4),
       kb=st.integers(0, 4), trans_a=st.booleans())
def test_gemm_bad_input_never_crashes(backend, a_dt, b_dt, a_nd, b_nd, ka, kb, trans_a):
    a = np.ones((3,) * (a_nd - 1) + (ka,) if a_nd else (), dtype=a_dt)
    b = np.ones((kb,) + (2,) * (b_nd - 1) if b_nd else (), dtype=b_dt)
    ok_dtypes = a_dt in DTYPES and b_dt in DTYPES
    try:
        got = ops.gemm(a, b, trans_a=trans_a)
    except (ValueError, TypeError):
        assert not (ok_dtypes and a_dt == b_dt and a_nd == b_nd == 2
                    and (a.shape[0] if trans_a else ka) == kb)
    else:
        assert a_dt == b_dt and a_nd == b_nd == 2
        check_op(got, R.gemm(a, b, trans_a=trans_a), a_dt)


# ---------------------------------------------------------------------------------------------
# bad input: clear errors that name the argument

@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, object, np.complex128,
                                   np.float16])
def test_gemm_rejects_bad_dtypes(backend, dtype):
    good = np.ones((3, 3))
    bad = np.ones((3, 3), dtype)
    with pytest.raises(TypeError, match=r"\ba\b"):
        ops.gemm(bad, good)
    with pytest.raises(TypeError, match=r"\bb\b"):
        ops.gemm(good, bad)
    with pytest.raises(TypeError, match=r"\bc\b"):
        ops.gemm(good, good, bad)
    with pytest.raises(TypeError, match=r"\bx\b"):
        ops.linear(bad, good)
    with pytest.raises(TypeError, match=r"\bw\b"):
        ops.linear(good, bad)
    with pytest.raises(TypeError, match=r"\bb\b"):
        ops.linear(good, good, bad[0])


def test_gemm_rejects_bad_shapes(backend):
    a, b = np.ones((3, 4)), np.ones((4, 5))
    with pytest.raises(ValueError, match=r"a must be 2-D.*\(4,\)"):
        ops.gemm(np.ones(4), b)
    with pytest.raises(ValueError, match=r"b must be 2-D.*\(2, 4, 5\)"):
        ops.gemm(a, np.ones((2, 4, 5)))
    with pytest.raises(ValueError, match=r"inner dimensions.*\(3, 4\).*\(5, 5\)"):
        ops.gemm(a, np.ones((5, 5)))
    with pytest.raises(ValueError, match="inner dimensions"):
        ops.gemm(a, b, trans_a=True)
    with pytest.raises(ValueError, match=r"c must have shape \(3, 5\).*\(5, 3\)"):
        ops.gemm(a, b, np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"c must have shape"):
        ops.gemm(a, b, np.ones(5))
    with pytest.raises(ValueError, match="beta"):
        ops.gemm(a, b, beta=2.0)


def test_gemm_rejects_mixed_dtypes(backend):
    a32, b64 = np.ones((3, 4), np.float32), np.ones((4, 5))
    with pytest.raises(TypeError, match="mixed dtypes.*a: float32.*b: float64"):
        ops.gemm(a32, b64)
    with pytest.raises(TypeError, match="mixed dtypes.*c: float32"):
        ops.gemm(b64.T, b64, np.ones((5, 5), np.float32))
    with pytest.raises(TypeError, match="mixed dtypes"):
        ops.linear(a32, np.ones((2, 4)))
    with pytest.raises(TypeError, match="mixed dtypes"):
        ops.linear(a32, np.ones((2, 4), np.float32), np.ones(2))


@pytest.mark.parametrize("name", ["alpha", "beta"])
@pytest.mark.parametrize("value", ["1", None, [1.0], np.ones(1), True, 1j])
def test_gemm_rejects_bad_scalars(backend, name, value):
    a, b, c = np.ones((3, 4)), np.ones((4, 5)), np.ones((3, 5))
    if name == "beta" and value is None:
        return  # beta=None is the documented default
    with pytest.raises(TypeError, match=name):
        ops.gemm(a, b, c, **{name: value})


def test_linear_rejects_bad_shapes(backend):
    x, w = np.ones((3, 4)), np.ones((5, 4))
    with pytest.raises(ValueError, match=r"x has 3 features.*\(5, 3\).*w expects 4"):
        ops.linear(np.ones((5, 3)), w)
    with pytest.raises(ValueError, match=r"w must be 2-D"):
        ops.linear(x, np.ones(4))
    with pytest.raises(ValueError, match=r"x must have at least 1 dimension"):
        ops.linear(np.float64(1.0), w)
    with pytest.raises(ValueError, match=r"b must have shape \(5,\).*\(4,\)"):
        ops.linear(x, w, np.ones(4))
    with pytest.raises(ValueError, match=r"b must have shape"):
        ops.linear(x, w, np.ones((1, 5)))


@pytest.mark.parametrize("act", ["softmax", "ReLU6", "", "swish"])
def test_linear_rejects_unknown_activation(backend, act):
    with pytest.raises(ValueError, match="activation"):
        ops.linear(np.ones((2, 3)), np.ones((4, 3)), None, act)
    with pytest.raises(ValueError, match="activation"):
        ops.linear_forward(np.ones((2, 3)), np.ones((4, 3)), None, act)


def test_linear_rejects_bad_activation_types(backend):
    with pytest.raises(TypeError, match="activation"):
        ops.linear(np.ones((2, 3)), np.ones((4, 3)), None, 3)
    with pytest.raises(ValueError, match="slope"):
        ops.linear(np.ones((2, 3)), np.ones((4, 3)), None, "leaky_relu", alpha=-0.1)
    with pytest.raises(ValueError, match="alpha"):
        ops.linear(np.ones((2, 3)), np.ones((4, 3)), None, "elu", alpha=0.0)


def test_linear_activation_names_are_case_insensitive(backend, rng):
    x, w = randn(rng, (3, 4), np.float64), randn(rng, (2, 4), np.float64)
    np.testing.assert_array_equal(ops.linear(x, w, None, "ReLU"), ops.linear(x, w, None, "relu"))


@pytest.mark.parametrize("value", ["0.1", [0.1], 1j, True])
def test_linear_rejects_bad_alpha_type(backend, value):
    with pytest.raises((TypeError, ValueError), match="alpha"):
        ops.linear(np.ones((2, 3)), np.ones((4, 3)), None, "leaky_relu", alpha=value)


# ---------------------------------------------------------------------------------------------
# the C++ kernels under every instruction set this CPU has

@pytest.fixture
def isa(isa):
    """conftest.py's ``isa``, with the ops dispatching to the C++ backend."""
    with _backend.use_backend("cpp"):
        assert fastnn.get_isa() == isa
        yield isa


# (m, n, k): the direct path (m*n*k < 160**3, or the packed B within 512 KiB), with edges in m
# and n and the 12/8/4-row edge kernels; the blocked path (larger B) crossing the MC (96 rows for
# AVX-512) and KC (256) blocks with threads sharing the A block (150, 700, 300), with threads
# splitting the rows (401, 161, 900), and the NC block (4096 f32 / 2048 f64 columns) with few
# rows.
ISA_SHAPES = [(1, 1, 1), (13, 31, 7), (127, 129, 65), (1000, 3, 17), (3, 1000, 17),
              (200, 190, 170), (257, 129, 513), (150, 700, 300), (401, 161, 900),
              (4, 4200, 300)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,k", ISA_SHAPES)
def test_isa_gemm(isa, rng, dtype, m, n, k):
    a, b, c = randn(rng, (m, k), dtype), randn(rng, (k, n), dtype), randn(rng, (m, n), dtype)
    check_op(ops.gemm(a, b), R.gemm(a, b), dtype, reduction=k)
    got = ops.gemm(a, b, c, alpha=-0.75, beta=1.5)
    check_op(got, R.gemm(a, b, c, alpha=-0.75, beta=1.5), dtype, reduction=k, scale=1.5)
    at, bt = with_layout(a.T, "F").T, with_layout(b, "negT")  # column-major a, reversed b
    check_op(ops.gemm(at, bt), R.gemm(a, b), dtype, reduction=k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("m,n,k", [(13, 31, 7), (1000, 3, 17), (200, 190, 170)])
def test_isa_linear(isa, rng, dtype, act, m, n, k):
    x, w = dyadic(rng, (m, k), dtype), dyadic(rng, (n, k), dtype)
    b = dyadic_bias(rng, n, dtype)
    y, ctx = ops.linear_forward(x, w, b, act)
    check_op(y, R.linear(x, w, b, act), dtype, reduction=k, scale=2)
    check_op(ops.linear(x, w, None, act), R.linear(x, w, None, act), dtype, reduction=k)
    dy = randn(rng, (m, n), dtype)
    for got, ref in zip(ops.linear_backward(ctx, dy), R.linear_backward(x, w, b, act, None, dy)):
        check_op(got, ref, dtype, reduction=max(m, n), scale=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,k", [(7, 9, 5), (200, 190, 170)])
def test_isa_nan_inf(isa, rng, dtype, m, n, k):
    a, b, c = randn(rng, (m, k), dtype), randn(rng, (k, n), dtype), randn(rng, (m, n), dtype)
    a[0, 0], a[m - 1, k - 1], b[1, n - 1] = np.nan, np.inf, -np.inf
    c[2, 2] = np.nan
    for beta in (0.0, 2.0):
        check_nonfinite(ops.gemm(a, b, c, beta=beta), R.gemm(a, b, c, beta=beta), dtype,
                        reduction=k)
    for act in ("relu", "leaky_relu", "sigmoid"):
        check_nonfinite(ops.linear(a, b.T, c[0], act), R.linear(a, b.T, c[0], act), dtype,
                        reduction=k, scale=2)
