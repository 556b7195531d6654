"""Dropout: the mask is the documented counter-based hash of (seed, index), identical on every
backend; inverted scaling; the backward; statistics of the mask; bad input."""
from __future__ import annotations

import numpy as np
import pytest

from fastnn import backend as _backend
from fastnn import ops
from fastnn import reference as ref
from helpers import check_op, numeric_grad

DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7,), (17, 33), (3, 5, 7), (70000,)])
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5, 0.9])
def test_dropout_matches_reference(backend, rng, dtype, shape, rate):
    x = rng.standard_normal(shape).astype(dtype)
    seed = int(rng.integers(0, 2**63))
    y, ctx = ops.dropout_forward(x, rate, seed=seed)
    keep = ref.dropout_keep_mask(shape, rate, seed)
    np.testing.assert_array_equal(ctx.mask.astype(bool), keep)  # the exact mask, not just stats
    check_op(y, ref.dropout(x, rate, seed), dtype)
    np.testing.assert_array_equal(ops.dropout(x, rate, seed=seed), y)
    dy = rng.standard_normal(shape).astype(dtype)
    (dx,) = ops.dropout_backward(ctx, dy)
    check_op(dx, dy.astype(np.float64) * keep / (1.0 - rate), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_same_on_every_backend(rng, dtype):
    names = [b for b in _backend.available_backends() if b != "cuda"]
    x = rng.standard_normal((33, 129)).astype(dtype)
    outs = []
    for name in names:
        with _backend.use_backend(name):
            outs.append(ops.dropout_forward(x, 0.3, seed=2024))
    for y, ctx in outs[1:]:
        np.testing.assert_array_equal(ctx.mask, outs[0][1].mask)
        np.testing.assert_array_equal(y, outs[0][0])  # bit-identical values too


def test_dropout_finite_differences(backend, rng):
    x = rng.standard_normal((6, 7))
    w = rng.standard_normal(x.shape)
    _, ctx = ops.dropout_forward(x, 0.4, seed=11)
    (dx,) = ops.dropout_backward(ctx, w)
    num = numeric_grad(lambda: float(np.sum(ops.dropout(x, 0.4, seed=11) * w)), x)
    np.testing.assert_allclose(dx, num, rtol=1e-7, atol=1e-9)


def test_dropout_mask_statistics(backend):
    n = 200_000
    x = np.ones(n, np.float32)
    masks = [ops.dropout_forward(x, 0.3, seed=s)[1].mask.astype(np.float64) for s in (0, 1)]
    for m in masks:
        # kept fraction within 5 standard deviations of 0.7
        assert abs(m.mean() - 0.7) < 5 * np.sqrt(0.21 / n)
        # neighbours are independent: correlation of m[i], m[i+1] near 0
        c = np.corrcoef(m[:-1], m[1:])[0, 1]
        assert abs(c) < 5 / np.sqrt(n)
    # consecutive seeds give unrelated masks
    assert abs(np.corrcoef(masks[0], masks[1])[0, 1]) < 5 / np.sqrt(n)
    y = ops.dropout(x, 0.3, seed=0)
    assert set(np.unique(y)) == {np.float32(0.0), np.float32(1 / 0.7)}


def test_dropout_rate_zero_is_identity_and_nan_propagates(backend, rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(ops.dropout(x, 0.0, seed=1), x)
    x[0, 0] = np.nan
    x[1, 1] = np.nan
    y = ops.dropout(x, 0.99, seed=5)
    assert np.isnan(y[0, 0]) and np.isnan(y[1, 1])  # dropped NaN stays NaN (x * 0)


def test_dropout_zero_size(backend):
    y, ctx = ops.dropout_forward(np.zeros((0, 3), np.float32), 0.5, seed=0)
    assert y.shape == (0, 3)
    assert ops.dropout_backward(ctx, np.zeros((0, 3), np.float32))[0].shape == (0, 3)


def test_dropout_bad_input(backend):
    x = np.ones((2, 3), np.float32)
    for rate in (1.0, -0.1, float("nan"), 1.5):
        with pytest.raises(ValueError, match="rate"):
            ops.dropout(x, rate, seed=0)
    with pytest.raises(TypeError, match="rate"):
        ops.dropout(x, "0.5", seed=0)
    with pytest.raises(ValueError, match="seed"):
        ops.dropout(x, 0.5, seed=-1)
    with pytest.raises(ValueError, match="seed"):
        ops.dropout(x, 0.5, seed=2**64)
    with pytest.raises(TypeError, match="seed"):
        ops.dropout(x, 0.5, seed=1.0)
    assert ops.dropout(x, 0.5, seed=np.uint64(2**64 - 1)).shape == (2, 3)
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.dropout(np.ones(3, np.int32), 0.5, seed=0)
    _, ctx = ops.dropout_forward(x, 0.5, seed=0)
    with pytest.raises(ValueError, match="shape"):
        ops.dropout_backward(ctx, np.ones((3, 2), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        ops.dropout_backward(ctx, np.ones((2, 3)))
