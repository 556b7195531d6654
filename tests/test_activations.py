"""Activation ops (elementwise activations, softmax, log_softmax, threshold, maxout) against the
float64 reference on every backend, their backwards against finite differences, and bad input."""
from __future__ import annotations

import numpy as np
import pytest

from fastnn import backend as _backend
from fastnn import ops
from fastnn import reference as ref
from helpers import check_op, numeric_grad

DTYPES = [np.float32, np.float64]
SHAPES = [(1,), (7,), (3, 17), (33, 9), (2, 3, 5)]
ELEMENTWISE = ["linear", "relu", "leaky_relu", "sigmoid", "tanh", "elu", "selu", "gelu"]


@pytest.fixture
def act_backend(backend):
    # The elementwise kernels belong to the elementwise family; a backend without them yet skips.
    if not hasattr(_backend.kernels(), "activation"):
        pytest.skip(f"the {backend} backend has no elementwise activation kernel")
    return backend


def _away_from_kinks(x):
    """Move inputs off the points where relu-like derivatives jump (finite differences)."""
    return np.where(np.abs(x) < 0.05, x + 0.1 * np.sign(x + 1e-12), x)


# ---- elementwise ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("shape", SHAPES)
def test_activation_matches_reference(act_backend, rng, dtype, name, shape):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    y = ops.activation(x, name)
    check_op(y, ref.activation_fn(x, name), dtype)
    y2, ctx = ops.activation_forward(x, name)
    np.testing.assert_array_equal(y2, y)
    dy = rng.standard_normal(shape).astype(dtype)
    (dx,) = ops.activation_backward(ctx, dy)
    check_op(dx, ref.activation_grad(x, dy, name), dtype)


@pytest.mark.parametrize("name,alpha", [("leaky_relu", 0.2), ("elu", 0.5)])
def test_activation_alpha(act_backend, rng, name, alpha):
    x = rng.standard_normal((5, 6))
    _, ctx = ops.activation_forward(x, name, alpha=alpha)
    check_op(ops.activation(x, name, alpha=alpha), ref.activation_fn(x, name, alpha))
    dy = rng.standard_normal(x.shape)
    check_op(ops.activation_backward(ctx, dy)[0], ref.activation_grad(x, dy, name, alpha))


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activation_backward_finite_differences(act_backend, rng, name):
    x = _away_from_kinks(rng.standard_normal((4, 5)) * 2)
    w = rng.standard_normal(x.shape)
    _, ctx = ops.activation_forward(x, name)
    (dx,) = ops.activation_backward(ctx, w)
    num = numeric_grad(lambda: float(np.sum(ops.activation(x, name) * w)), x)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-7)


def test_activation_zero_size(act_backend):
    x = np.zeros((0, 4), np.float32)
    y, ctx = ops.activation_forward(x, "relu")
    assert y.shape == (0, 4) and y.dtype == np.float32
    assert ops.activation_backward(ctx, np.zeros((0, 4), np.float32))[0].shape == (0, 4)


def test_activation_dispatches_softmax_and_threshold(backend, rng):
    x = rng.standard_normal((3, 4))
    check_op(ops.activation(x, "softmax"), ref.softmax(x))
    check_op(ops.activation(x, "threshold"), ref.threshold(x))
    y, ctx = ops.activation_forward(x, "softmax")
    dy = rng.standard_normal(x.shape)
    check_op(ops.activation_backward(ctx, dy)[0], ref.softmax_grad(y, dy))
    _, tctx = ops.activation_forward(x, "threshold")
    with pytest.raises(ValueError, match="no useful gradient"):
        ops.activation_backward(tctx, dy)


def test_activation_bad_input(act_backend):
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="unknown activation"):
        ops.activation(x, "swishy")
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.activation(np.ones((2, 3), np.int32), "relu")
    _, ctx = ops.activation_forward(x, "relu")
    with pytest.raises(ValueError, match="shape"):
        ops.activation_backward(ctx, np.ones((3, 2), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        ops.activation_backward(ctx, np.ones((2, 3), np.float64))
    with pytest.raises(TypeError, match="ctx"):
        ops.activation_backward(object(), x)


def test_activation_non_contiguous_input(act_backend, rng):
    x = rng.standard_normal((6, 8)).astype(np.float32)[:, ::2]
    check_op(ops.activation(x, "tanh"), ref.activation_fn(x, "tanh"))


# ---- softmax / log_softmax -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [((1, 1), -1), ((7, 17), -1), ((33, 10), 1),
                                        ((7, 17), 0), ((2, 3, 5), 1), ((1,), 0), ((4, 1), -1)])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_matches_reference(backend, rng, dtype, shape, axis, log):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    fwd = ops.log_softmax_forward if log else ops.softmax_forward
    bwd = ops.log_softmax_backward if log else ops.softmax_backward
    want = ref.log_softmax(x, axis) if log else ref.softmax(x, axis)
    y, ctx = fwd(x, axis)
    check_op(y, want, dtype, reduction=shape[axis], scale=4.0)
    np.testing.assert_array_equal((ops.log_softmax if log else ops.softmax)(x, axis), y)
    dy = rng.standard_normal(shape).astype(dtype)
    (dx,) = bwd(ctx, dy)
    wg = (ref.log_softmax_grad if log else ref.softmax_grad)(want, dy, axis)
    check_op(dx, wg, dtype, reduction=shape[axis], scale=4.0)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_backward_finite_differences(backend, rng, log, axis):
    x = rng.standard_normal((4, 6))
    w = rng.standard_normal(x.shape)
    f = ops.log_softmax if log else ops.softmax
    _, ctx = (ops.log_softmax_forward if log else ops.softmax_forward)(x, axis)
    (dx,) = (ops.log_softmax_backward if log else ops.softmax_backward)(ctx, w)
    num = numeric_grad(lambda: float(np.sum(f(x, axis) * w)), x)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_extreme_logits(backend, dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype)
    y = ops.softmax(x)
    ly = ops.log_softmax(x)
    assert np.isfinite(y).all() and np.isfinite(ly).all()
    check_op(y, ref.softmax(x), dtype)
    check_op(ly, ref.log_softmax(x), dtype, scale=1e4)


def test_softmax_rows_sum_to_one(backend, rng):
    x = (rng.standard_normal((33, 65)) * 10).astype(np.float32)
    np.testing.assert_allclose(ops.softmax(x).sum(axis=1), 1.0, rtol=1e-5)


def test_softmax_nan_propagates(backend):
    x = np.array([[0.0, np.nan, 1.0], [0.0, 1.0, 2.0]])
    y = ops.softmax(x)
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()


@pytest.mark.parametrize("shape", [(0, 5), (3, 0)])
def test_softmax_zero_size(backend, shape):
    x = np.zeros(shape, np.float32)
    y, ctx = ops.softmax_forward(x)
    assert y.shape == shape
    assert ops.softmax_backward(ctx, np.zeros(shape, np.float32))[0].shape == shape


def test_softmax_bad_input(backend):
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="axis"):
        ops.softmax(x, axis=2)
    with pytest.raises(TypeError, match="axis"):
        ops.softmax(x, axis=1.0)
    with pytest.raises(ValueError, match="scalar"):
        ops.softmax(np.float64(1.0))
    _, ctx = ops.softmax_forward(x, axis=0)
    with pytest.raises(ValueError, match="shape"):
        ops.softmax_backward(ctx, np.ones((3, 2)))
    with pytest.raises(TypeError, match="log_softmax_forward"):
        ops.log_softmax_backward(ctx, x)


# ---- threshold -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [0.0, 0.5, -1.0])
def test_threshold(backend, rng, dtype, value):
    x = rng.standard_normal((7, 17)).astype(dtype)
    x[0, :3] = [value, np.nan, np.inf]
    y = ops.threshold(x, value)
    assert y.dtype == dtype
    check_op(y, ref.threshold(x, value), dtype)
    assert y[0, 0] == 0.0 and y[0, 1] == 0.0 and y[0, 2] == 1.0


def test_threshold_backward_refuses(backend):
    y, ctx = ops.threshold_forward(np.array([-1.0, 1.0]))
    np.testing.assert_array_equal(y, [0.0, 1.0])
    with pytest.raises(ValueError, match="no useful gradient.*zero everywhere.*undefined"):
        ops.threshold_backward(ctx, np.ones(2))


# ---- maxout --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,pieces", [((1, 2), 2), ((7, 12), 3), ((33, 17), 1),
                                          ((5, 20), 4), ((2, 3, 10), 5), ((3, 7), 7)])
def test_maxout_matches_reference(backend, rng, dtype, shape, pieces):
    x = rng.standard_normal(shape).astype(dtype)
    y, ctx = ops.maxout_forward(x, pieces)
    want, _ = ref.maxout(x, pieces)
    check_op(y, want, dtype)
    np.testing.assert_array_equal(ops.maxout(x, pieces), y)
    dy = rng.standard_normal(y.shape).astype(dtype)
    (dx,) = ops.maxout_backward(ctx, dy)
    check_op(dx, ref.maxout_grad(x, dy, pieces), dtype)


def test_maxout_finite_differences(backend, rng):
    x = rng.standard_normal((4, 12))
    w = rng.standard_normal((4, 4))
    _, ctx = ops.maxout_forward(x, 3)
    (dx,) = ops.maxout_backward(ctx, w)
    num = numeric_grad(lambda: float(np.sum(ops.maxout(x, 3) * w)), x)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-8)


def test_maxout_ties_and_nan(backend):
    x = np.array([[1.0, 1.0, 0.0, 2.0, np.nan, 3.0]])
    y, ctx = ops.maxout_forward(x, 3)
    assert y[0, 0] == 1.0 and np.isnan(y[0, 1])
    (dx,) = ops.maxout_backward(ctx, np.array([[5.0, 7.0]]))
    np.testing.assert_array_equal(dx, [[5.0, 0.0, 0.0, 0.0, 7.0, 0.0]])  # first of a tie wins


def test_maxout_zero_size(backend):
    y, ctx = ops.maxout_forward(np.zeros((0, 6), np.float32), 2)
    assert y.shape == (0, 3)
    assert ops.maxout_backward(ctx, np.zeros((0, 3), np.float32))[0].shape == (0, 6)


def test_maxout_bad_input(backend):
    x = np.ones((2, 6))
    with pytest.raises(ValueError, match="multiple of pieces=4"):
        ops.maxout(x, 4)
    with pytest.raises(ValueError, match="pieces"):
        ops.maxout(x, 0)
    with pytest.raises(TypeError, match="pieces"):
        ops.maxout(x, 2.0)
    _, ctx = ops.maxout_forward(x, 2)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        ops.maxout_backward(ctx, np.ones((2, 6)))
