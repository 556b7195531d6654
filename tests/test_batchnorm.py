"""batch_norm2d (training and inference, running-statistic updates) and its backward on every
backend, against fastnn.reference, finite differences and (when installed) PyTorch; bad
arguments."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from fastnn import ops
from fastnn import reference as R
from helpers import check_op, numeric_grad

DTYPES = [np.float32, np.float64]
FD = dict(rtol=1e-6, atol=1e-8)
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="PyTorch is not installed")
SHAPES = [(2, 3, 4, 5), (1, 4, 3, 3), (5, 2, 1, 1), (3, 1, 7, 2), (4, 3, 1, 9)]


def randn(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def bn_case(rng, shape, dtype, affine=True):
    c = shape[1]
    x = (randn(rng, shape) * 2 + 0.5).astype(dtype)
    gamma = randn(rng, c, dtype) if affine else None
    beta = randn(rng, c, dtype) if affine else None
    rm = randn(rng, c, dtype)
    rv = (rng.random(c) + 0.5).astype(dtype)
    return x, gamma, beta, rm, rv


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm2d_matches_reference(backend, rng, dtype, training, affine, shape):
    x, gamma, beta, rm, rv = bn_case(rng, shape, dtype, affine)
    rm0, rv0 = rm.copy(), rv.copy()
    y, ctx = ops.batch_norm2d_forward(x, gamma, beta, rm, rv, training=training, momentum=0.3,
                                      eps=1e-3)
    ry, rrm, rrv = R.batch_norm2d(x, gamma, beta, rm0, rv0, training, 0.3, 1e-3)
    count = shape[0] * shape[2] * shape[3]
    check_op(y, ry, dtype, reduction=count, scale=4)
    check_op(rm, rrm, dtype, reduction=count, scale=2)   # updated in place (or left alone)
    check_op(rv, rrv, dtype, reduction=count, scale=4)
    dy = randn(rng, shape, dtype)
    dx, dgamma, dbeta = ops.batch_norm2d_backward(ctx, dy)
    rdx, rdg, rdb = R.batch_norm2d_backward(x, gamma, beta, rm0, rv0, dy, training, 1e-3)
    check_op(dx, rdx, dtype, reduction=count, scale=4)
    if affine:
        check_op(dgamma, rdg, dtype, reduction=count, scale=2)
        check_op(dbeta, rdb, dtype, reduction=count)
    else:
        assert dgamma is None and dbeta is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm2d_inference_op_and_running_updates(backend, rng, dtype):
    x, gamma, beta, rm, rv = bn_case(rng, (3, 2, 4, 4), dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    # inference leaves the running statistics alone and equals the forward's output
    y = ops.batch_norm2d(x, gamma, beta, rm, rv, training=False)
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)
    np.testing.assert_array_equal(y, ops.batch_norm2d_forward(x, gamma, beta, rm, rv,
                                                              training=False)[0])
    # repeated training steps keep moving them, in the caller's arrays
    ref_m, ref_v = rm0, rv0
    for _ in range(3):
        out = ops.batch_norm2d(x, gamma, beta, rm, rv, training=True)
        ry, ref_m, ref_v = R.batch_norm2d(x, gamma, beta, ref_m, ref_v, True)
        check_op(out, ry, dtype, reduction=48, scale=4)
    check_op(rm, ref_m, dtype, reduction=48, scale=2)
    check_op(rv, ref_v, dtype, reduction=48, scale=4)
    # momentum 0 freezes them, momentum 1 replaces them
    m1, v1 = rm.copy(), rv.copy()
    ops.batch_norm2d(x, None, None, m1, v1, training=True, momentum=0.0)
    np.testing.assert_array_equal(m1, rm)
    ops.batch_norm2d(x, None, None, m1, v1, training=True, momentum=1.0)
    _, bm, bv = R.batch_norm2d(x, None, None, rm, rv, True, 1.0)
    check_op(m1, bm, dtype, reduction=48, scale=2)
    check_op(v1, bv, dtype, reduction=48, scale=4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm2d_without_running_statistics(backend, rng, dtype):
    x, gamma, beta, _, _ = bn_case(rng, (2, 3, 3, 3), dtype)
    y, ctx = ops.batch_norm2d_forward(x, gamma, beta, None, None, training=True)
    check_op(y, R.batch_norm2d(x, gamma, beta, None, None, True)[0], dtype, reduction=18,
             scale=4)
    dy = randn(rng, x.shape, dtype)
    for got, ref in zip(ops.batch_norm2d_backward(ctx, dy),
                        R.batch_norm2d_backward(x, gamma, beta, None, None, dy, True)):
        check_op(got, ref, dtype, reduction=18, scale=4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm2d_noncontiguous_and_partly_affine(backend, rng, dtype):
    x, gamma, beta, rm, rv = bn_case(rng, (2, 3, 4, 5), dtype)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    m = np.zeros(6, dtype)[::2]  # a strided running mean, updated in place all the same
    dy = randn(rng, x.shape, dtype)
    for g, b in [(gamma[::-1], None), (None, beta[::-1])]:
        m[...] = rm
        v = rv.copy()
        y, ctx = ops.batch_norm2d_forward(nhwc, g, b, m, v, training=True)
        ry, rrm, rrv = R.batch_norm2d(x, g, b, rm, rv, True)
        check_op(y, ry, dtype, reduction=40, scale=4)
        check_op(m, rrm, dtype, reduction=40, scale=2)
        check_op(v, rrv, dtype, reduction=40, scale=4)
        dx, dg, db = ops.batch_norm2d_backward(ctx, np.asfortranarray(dy))
        rdx, rdg, rdb = R.batch_norm2d_backward(x, g, b, rm, rv, dy, True)
        check_op(dx, rdx, dtype, reduction=40, scale=4)
        assert (dg is None) == (g is None) and (db is None) == (b is None)
        if g is not None:
            check_op(dg, rdg, dtype, reduction=40, scale=2)
        if b is not None:
            check_op(db, rdb, dtype, reduction=40)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm2d_backward_finite_differences(backend, rng, training):
    x, gamma, beta, rm, rv = bn_case(rng, (2, 3, 2, 3), np.float64)
    # no running statistics in training: each f() call would otherwise move them
    stats = (None, None) if training else (rm, rv)
    y, ctx = ops.batch_norm2d_forward(x, gamma, beta, *stats, training=training, eps=1e-3)
    dy = randn(rng, x.shape)
    dx, dgamma, dbeta = ops.batch_norm2d_backward(ctx, dy)

    def f():
        return float((ops.batch_norm2d(x, gamma, beta, *stats, training=training, eps=1e-3)
                      * dy).sum())

    np.testing.assert_allclose(dx, numeric_grad(f, x), **FD)
    np.testing.assert_allclose(dgamma, numeric_grad(f, gamma), **FD)
    np.testing.assert_allclose(dbeta, numeric_grad(f, beta), **FD)


@pytest.mark.parametrize("training", [True, False])
def test_reference_batch_norm2d_backward_finite_differences(rng, training):
    x, gamma, beta, rm, rv = bn_case(rng, (3, 2, 2, 2), np.float64)
    dy = randn(rng, x.shape)
    rdx, rdg, rdb = R.batch_norm2d_backward(x, gamma, beta, rm, rv, dy, training, 1e-3)

    def f():
        return float((R.batch_norm2d(x, gamma, beta, rm, rv, training, 0.1, 1e-3)[0]
                      * dy).sum())

    np.testing.assert_allclose(rdx, numeric_grad(f, x), **FD)
    np.testing.assert_allclose(rdg, numeric_grad(f, gamma), **FD)
    np.testing.assert_allclose(rdb, numeric_grad(f, beta), **FD)


def test_reference_batch_norm2d_normalizes(rng):
    # Independent of the formula: in training, each channel of (y - beta) / gamma has mean 0
    # and (biased) variance var / (var + eps).
    x, gamma, beta, rm, rv = bn_case(rng, (4, 3, 5, 2), np.float64)
    y, _, _ = R.batch_norm2d(x, gamma, beta, rm, rv, True, 0.1, 1e-3)
    z = (y - beta[None, :, None, None]) / gamma[None, :, None, None]
    var = x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(z.var(axis=(0, 2, 3)), var / (var + 1e-3), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# PyTorch, when installed

@needs_torch
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm2d_matches_torch(backend, rng, training, affine):
    import torch
    torch.set_num_threads(1)  # its spinning OpenMP team would fight the kernels for the cores
    x, gamma, beta, rm, rv = bn_case(rng, (3, 4, 5, 2), np.float64, affine)
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    tx = torch.tensor(x, requires_grad=True)
    tg = None if gamma is None else torch.tensor(gamma, requires_grad=True)
    tb = None if beta is None else torch.tensor(beta, requires_grad=True)
    ty = torch.nn.functional.batch_norm(tx, trm, trv, tg, tb, training, 0.2, 1e-4)
    dy = randn(rng, x.shape)
    ty.backward(torch.tensor(dy))
    y, ctx = ops.batch_norm2d_forward(x, gamma, beta, rm, rv, training=training, momentum=0.2,
                                      eps=1e-4)
    tol = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(rm, trm.numpy(), **tol)
    np.testing.assert_allclose(rv, trv.numpy(), **tol)
    dx, dg, db = ops.batch_norm2d_backward(ctx, dy)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tol)
    if affine:
        np.testing.assert_allclose(dg, tg.grad.numpy(), **tol)
        np.testing.assert_allclose(db, tb.grad.numpy(), **tol)


# ---------------------------------------------------------------------------------------------
# bad arguments

X = np.zeros((2, 3, 4, 4))
C3 = np.ones(3)
BN_ERRORS = [
    (dict(training=1), TypeError, r"training must be a bool, got int"),
    (dict(training=None), TypeError, r"training must be a bool, got NoneType"),
    (dict(momentum=1.5), ValueError, r"momentum must be in \[0.0, 1.0\], got 1.5"),
    (dict(momentum=-0.1), ValueError, r"momentum must be in"),
    (dict(momentum="0.1"), TypeError, r"momentum must be a real number"),
    (dict(eps=0.0), ValueError, r"eps must be in \(0.0, inf\), got 0.0"),
    (dict(eps=-1e-5), ValueError, r"eps must be in"),
    (dict(x=X[0]), ValueError, r"x must be 4-D \(N, C, H, W\), got shape \(3, 4, 4\)"),
    (dict(x=X.astype(np.int32)), TypeError, r"x must be float32 or float64, got dtype int32"),
    (dict(gamma=np.ones(4)), ValueError, r"gamma must have shape \(3,\).*got \(4,\)"),
    (dict(beta=np.ones((3, 1))), ValueError, r"beta must have shape \(3,\)"),
    (dict(gamma=np.ones(3, np.float32)), TypeError, r"gamma has dtype float32 but x has "
                                                    r"float64"),
    (dict(running_mean=np.zeros(2)), ValueError, r"running_mean must have shape \(3,\).*"
                                                 r"got \(2,\)"),
    (dict(running_var=np.ones(3, np.float32)), TypeError, r"running_var has dtype float32"),
    (dict(running_mean=[0.0, 0.0, 0.0]), TypeError, r"running_mean must be a NumPy array "
                                                    r"\(it is updated in place\), got list"),
    (dict(running_var=None), ValueError, r"give both running_mean and running_var, or "
                                         r"neither"),
    (dict(running_mean=None, running_var=None, training=False), ValueError,
     r"inference \(training=False\) needs running_mean and running_var"),
    (dict(x=np.zeros((1, 3, 1, 1))), ValueError, r"training needs more than 1 value per "
                                                 r"channel.*shape \(1, 3, 1, 1\)"),
]


@pytest.mark.parametrize("bad,exc,match", BN_ERRORS)
def test_batch_norm2d_rejects_bad_arguments(backend, bad, exc, match):
    rm, rv = np.zeros(3), np.ones(3)
    a = dict(x=X, gamma=C3, beta=C3, running_mean=rm, running_var=rv, training=True)
    a.update(bad)
    x, g, b = a.pop("x"), a.pop("gamma"), a.pop("beta")
    m, v = a.pop("running_mean"), a.pop("running_var")
    for fn in (ops.batch_norm2d, ops.batch_norm2d_forward):
        with pytest.raises(exc, match=match):
            fn(x, g, b, m, v, **a)
    # nothing was updated on the way to the error
    np.testing.assert_array_equal(rm, 0)
    np.testing.assert_array_equal(rv, 1)


def test_batch_norm2d_rejects_read_only_running_statistics(backend):
    rm = np.zeros(3)
    rm.flags.writeable = False
    with pytest.raises(ValueError, match=r"running_mean is read-only"):
        ops.batch_norm2d(X, None, None, rm, np.ones(3), training=True)


def test_batch_norm2d_backward_rejects_bad_gradients(backend, rng):
    x, gamma, beta, rm, rv = bn_case(rng, (2, 3, 4, 4), np.float64)
    _, ctx = ops.batch_norm2d_forward(x, gamma, beta, rm, rv, training=True)
    with pytest.raises(ValueError, match=r"dy must have the output's shape \(2, 3, 4, 4\)"):
        ops.batch_norm2d_backward(ctx, np.zeros((2, 3, 4)))
    with pytest.raises(TypeError, match=r"dy has dtype float32 but the forward ran in float64"):
        ops.batch_norm2d_backward(ctx, x.astype(np.float32))
    _, pctx = ops.max_pool2d_forward(x, 2)
    with pytest.raises(TypeError, match=r"ctx must come from batch_norm2d_forward"):
        ops.batch_norm2d_backward(pctx, x)
