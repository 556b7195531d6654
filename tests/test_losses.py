"""Loss ops against the float64 reference on every backend, their gradients against finite
differences, stability at extreme logits, and bad input (labels out of range, wrong types)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fastnn import ops
from fastnn import reference as ref
from helpers import check_op, numeric_grad

DTYPES = [np.float32, np.float64]
CLASS_SHAPES = [(1, 1), (1, 7), (7, 3), (17, 10), (33, 17)]


def _check_loss(loss, want, dtype, mag=1.0):
    """A mean loss against the float64 reference; ``mag``: the size of the inputs (the rounding
    of terms like lse - x grows with it)."""
    assert isinstance(loss, float)
    f32 = np.dtype(dtype) == np.float32
    tol = (2e-6 if f32 else 1e-13) * max(mag, 1.0) + (2e-5 if f32 else 1e-11) * abs(want)
    assert abs(loss - want) <= tol, f"loss {loss!r}, reference {want!r}, tolerance {tol:.2e}"


def _onehot(labels, c, dtype):
    t = np.zeros((len(labels), c), dtype)
    t[np.arange(len(labels)), labels] = 1
    return t


# ---- softmax cross-entropy -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CLASS_SHAPES)
@pytest.mark.parametrize("target", ["int", "onehot", "probs"])
def test_softmax_cross_entropy_matches_reference(backend, rng, dtype, shape, target):
    n, c = shape
    logits = (rng.standard_normal(shape) * 3).astype(dtype)
    labels = rng.integers(0, c, n)
    if target == "onehot":
        labels = _onehot(labels, c, dtype)
    elif target == "probs":
        labels = ref.softmax(rng.standard_normal(shape)).astype(dtype)
    want, want_grad = ref.softmax_cross_entropy(logits, labels)
    loss, ctx = ops.softmax_cross_entropy_forward(logits, labels)
    _check_loss(loss, want, dtype, 3.0)
    assert ops.softmax_cross_entropy(logits, labels) == loss
    grad, none = ops.softmax_cross_entropy_backward(ctx)
    assert none is None
    check_op(grad, want_grad, dtype, reduction=c)


@pytest.mark.parametrize("target", ["int", "probs"])
def test_softmax_cross_entropy_finite_differences(backend, rng, target):
    logits = rng.standard_normal((5, 4)) * 2
    labels = rng.integers(0, 4, 5)
    if target == "probs":  # a target that does not sum to one exercises the sum(t) term
        labels = rng.random((5, 4))
    _, ctx = ops.softmax_cross_entropy_forward(logits, labels)
    grad = ops.softmax_cross_entropy_backward(ctx)[0]
    num = numeric_grad(lambda: ops.softmax_cross_entropy(logits, labels), logits)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_extreme_logits(backend, dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4], [1e4, 1e4, 1e4],
                       [-1e4, -1e4, -1e4]], dtype)
    labels = np.array([1, 1, 2, 0])
    loss, ctx = ops.softmax_cross_entropy_forward(logits, labels)
    grad = ops.softmax_cross_entropy_backward(ctx)[0]
    assert math.isfinite(loss) and np.isfinite(grad).all()
    want, want_grad = ref.softmax_cross_entropy(logits, labels)
    _check_loss(loss, want, dtype, 1e4)
    check_op(grad, want_grad, dtype)
    onehot = _onehot(labels, 3, dtype)
    loss2, ctx2 = ops.softmax_cross_entropy_forward(logits, onehot)
    assert math.isfinite(loss2) and np.isfinite(ops.softmax_cross_entropy_backward(ctx2)[0]).all()
    _check_loss(loss2, want, dtype, 1e4)


def test_softmax_cross_entropy_label_dtypes_and_leading_dims(backend, rng):
    logits = rng.standard_normal((2, 3, 5)).astype(np.float32)
    labels = rng.integers(0, 5, (2, 3))
    want, want_grad = ref.softmax_cross_entropy(logits.reshape(6, 5), labels.reshape(6))
    for dt in (np.uint8, np.int16, np.int32, np.int64):
        loss, ctx = ops.softmax_cross_entropy_forward(logits, labels.astype(dt))
        _check_loss(loss, want, np.float32)
        grad = ops.softmax_cross_entropy_backward(ctx)[0]
        assert grad.shape == logits.shape
        check_op(grad.reshape(6, 5), want_grad, np.float32)
    assert ops.softmax_cross_entropy(logits[0, 0], labels[0, 0]) == pytest.approx(
        ref.softmax_cross_entropy(logits[0, :1, :], labels[0, :1])[0], rel=1e-5)


def test_softmax_cross_entropy_unusual_label_and_logit_dtypes(backend, rng):
    logits = rng.standard_normal((6, 4))
    labels = rng.integers(0, 4, 6)
    want = ref.softmax_cross_entropy(logits, labels)[0]
    for lab in (labels.astype(np.int8), labels.astype(np.uint64), labels.astype(">i8"),
                labels.astype(np.uint16)[::1], np.repeat(labels, 2)[::2]):
        assert ops.softmax_cross_entropy(logits, lab) == pytest.approx(want, rel=1e-13)
    # byte-swapped floats are read as what they are, not as native bytes
    assert ops.softmax_cross_entropy(logits.astype(">f8"), labels) == pytest.approx(want,
                                                                                   rel=1e-13)
    with pytest.raises(ValueError, match="got 255 at position 3"):
        bad = labels.astype(np.uint8)
        bad[3] = 255
        ops.softmax_cross_entropy(logits, bad)
    with pytest.raises(ValueError, match="got -2 at position 5"):
        bad = labels.astype(np.int8)
        bad[5] = -2
        ops.softmax_cross_entropy(logits, bad)
    with pytest.raises(ValueError, match=f"got {2**64 - 1} at position 0"):
        bad = labels.astype(np.uint64)
        bad[0] = 2**64 - 1
        ops.softmax_cross_entropy(logits, bad)


def test_softmax_cross_entropy_dloss_scales(backend, rng):
    logits = rng.standard_normal((4, 3))
    labels = np.array([0, 2, 1, 1])
    _, ctx = ops.softmax_cross_entropy_forward(logits, labels)
    g1 = ops.softmax_cross_entropy_backward(ctx)[0].copy()
    g3 = ops.softmax_cross_entropy_backward(ctx, 3.0)[0]
    np.testing.assert_allclose(g3, 3.0 * g1, rtol=1e-15)


def test_softmax_cross_entropy_nan_is_returned(backend):
    logits = np.array([[np.nan, 0.0], [1.0, 2.0]], np.float32)
    loss, ctx = ops.softmax_cross_entropy_forward(logits, np.array([0, 1]))
    assert math.isnan(loss)
    assert np.isnan(ops.softmax_cross_entropy_backward(ctx)[0][0]).all()


def test_softmax_cross_entropy_bad_labels(backend):
    logits = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"\[0, 4\).*got 4 at position 1"):
        ops.softmax_cross_entropy(logits, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="got -1 at position 2"):
        ops.softmax_cross_entropy(logits, np.array([0, 3, -1]))
    with pytest.raises(TypeError, match="must be integers.*float"):
        ops.softmax_cross_entropy(logits, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="integers"):
        ops.softmax_cross_entropy(logits, np.array([True, False, True]))
    with pytest.raises(ValueError, match=r"\(3,\).*\(3, 4\).*\(4,\)"):
        ops.softmax_cross_entropy(logits, np.array([0, 1, 2, 3]))
    with pytest.raises(TypeError, match="None"):
        ops.softmax_cross_entropy(logits, None)
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.softmax_cross_entropy(np.zeros((3, 4), np.int64), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="no samples"):
        ops.softmax_cross_entropy(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="C >= 1"):
        ops.softmax_cross_entropy(np.zeros((3, 0), np.float32), np.zeros(3, np.int64))
    _, ctx = ops.mse_forward(np.zeros(3), np.zeros(3))
    with pytest.raises(TypeError, match="softmax_cross_entropy_forward"):
        ops.softmax_cross_entropy_backward(ctx)


# ---- categorical cross-entropy from probabilities ------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CLASS_SHAPES)
@pytest.mark.parametrize("target", ["int", "probs"])
def test_categorical_cross_entropy_matches_reference(backend, rng, dtype, shape, target):
    n, c = shape
    probs = ref.softmax(rng.standard_normal(shape) * 2).astype(dtype)
    if c > 1:
        probs[0, 0] = 0.0  # a clipped entry (a row of zeros alone would have no distribution)
    labels = rng.integers(0, c, n)
    if target == "probs":
        labels = ref.softmax(rng.standard_normal(shape)).astype(dtype)
    want, want_grad = ref.categorical_cross_entropy(probs, labels)
    loss, ctx = ops.categorical_cross_entropy_forward(probs, labels)
    _check_loss(loss, want, dtype)
    assert ops.categorical_cross_entropy(probs, labels) == loss
    grad = ops.categorical_cross_entropy_backward(ctx)[0]
    scale = float(np.abs(want_grad).max())
    check_op(grad, want_grad, dtype, reduction=c, scale=scale)


@pytest.mark.parametrize("target", ["int", "probs"])
def test_categorical_cross_entropy_finite_differences(backend, rng, target):
    probs = rng.random((5, 4)) + 0.1  # unnormalized on purpose: Keras divides by the row sum
    labels = rng.integers(0, 4, 5) if target == "int" else rng.random((5, 4))
    _, ctx = ops.categorical_cross_entropy_forward(probs, labels)
    grad = ops.categorical_cross_entropy_backward(ctx)[0]
    num = numeric_grad(lambda: ops.categorical_cross_entropy(probs, labels), probs)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)


def test_categorical_cross_entropy_clips(backend):
    probs = np.array([[0.0, 1.0], [1.0, 0.0]])
    loss = ops.categorical_cross_entropy(probs, np.array([0, 0]), eps=1e-7)
    assert loss == pytest.approx(-math.log(1e-7) / 2 - math.log(1 - 1e-7) / 2)
    with pytest.raises(ValueError, match="eps"):
        ops.categorical_cross_entropy(probs, np.array([0, 0]), eps=0.7)
    with pytest.raises(ValueError, match="got 2 at position 1"):
        ops.categorical_cross_entropy(probs, np.array([0, 2]))


# ---- binary cross-entropy ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7, 1), (17, 3), (33,)])
@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_cross_entropy_matches_reference(backend, rng, dtype, shape, from_logits):
    z = rng.standard_normal(shape) * 3
    pred = (z if from_logits else ref.activation_fn(z, "sigmoid")).astype(dtype)
    target = rng.integers(0, 2, shape).astype(dtype)
    if not from_logits:
        pred.flat[0] = 1.0  # clipped
    want, want_grad = ref.binary_cross_entropy(pred, target, from_logits)
    loss, ctx = ops.binary_cross_entropy_forward(pred, target, from_logits=from_logits)
    _check_loss(loss, want, dtype, 3.0)
    assert ops.binary_cross_entropy(pred, target, from_logits=from_logits) == loss
    grad = ops.binary_cross_entropy_backward(ctx)[0]
    check_op(grad, want_grad, dtype, scale=float(np.abs(want_grad).max()))


@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_cross_entropy_finite_differences(backend, rng, from_logits):
    z = rng.standard_normal((4, 3)) * 2
    pred = z if from_logits else 0.05 + 0.9 * rng.random((4, 3))
    target = rng.random((4, 3))  # soft targets
    _, ctx = ops.binary_cross_entropy_forward(pred, target, from_logits=from_logits)
    grad = ops.binary_cross_entropy_backward(ctx)[0]
    num = numeric_grad(lambda: ops.binary_cross_entropy(pred, target, from_logits=from_logits),
                       pred)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_cross_entropy_extreme_logits(backend, dtype):
    z = np.array([1e4, -1e4, 1e4, -1e4, 0.0], dtype)
    t = np.array([1.0, 0.0, 0.0, 1.0, 1.0], dtype)
    loss, ctx = ops.binary_cross_entropy_forward(z, t, from_logits=True)
    grad = ops.binary_cross_entropy_backward(ctx)[0]
    assert math.isfinite(loss) and np.isfinite(grad).all()
    want, want_grad = ref.binary_cross_entropy(z, t, True)
    _check_loss(loss, want, dtype, 1e4)
    check_op(grad, want_grad, dtype)


def test_binary_cross_entropy_target_shapes(backend):
    pred = np.array([[0.2], [0.7]], np.float32)
    a = ops.binary_cross_entropy(pred, np.array([0, 1]))  # (N,) ints against (N, 1)
    b = ops.binary_cross_entropy(pred, np.array([[0.0], [1.0]], np.float32))
    assert a == b == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="shape"):
        ops.binary_cross_entropy(pred, np.zeros(3))
    with pytest.raises(TypeError, match="numeric"):
        ops.binary_cross_entropy(pred, np.array(["a", "b"]))
    with pytest.raises(ValueError, match="empty"):
        ops.binary_cross_entropy(np.zeros(0), np.zeros(0))


# ---- mse / mae -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7,), (17, 3), (33, 2, 2), (5000,)])
@pytest.mark.parametrize("name", ["mse", "mae"])
def test_regression_losses_match_reference(backend, rng, dtype, shape, name):
    pred = rng.standard_normal(shape).astype(dtype)
    target = rng.standard_normal(shape).astype(dtype)
    target.flat[0] = pred.flat[0]  # mae's subgradient at 0 is 0
    want, want_grad = getattr(ref, name)(pred, target)
    loss, ctx = getattr(ops, name + "_forward")(pred, target)
    _check_loss(loss, want, dtype, 4.0)
    assert getattr(ops, name)(pred, target) == loss
    grad, none = getattr(ops, name + "_backward")(ctx)
    assert none is None
    check_op(grad, want_grad, dtype)


@pytest.mark.parametrize("name", ["mse", "mae"])
def test_regression_losses_finite_differences(backend, rng, name):
    pred = rng.standard_normal((3, 4))
    target = pred + np.where(rng.random((3, 4)) < 0.5, -1, 1) * (0.1 + rng.random((3, 4)))
    _, ctx = getattr(ops, name + "_forward")(pred, target)
    grad = getattr(ops, name + "_backward")(ctx)[0]
    num = numeric_grad(lambda: getattr(ops, name)(pred, target), pred)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)


def test_regression_loss_nan_and_casts(backend):
    assert math.isnan(ops.mse(np.array([np.nan, 1.0]), np.array([0.0, 1.0])))
    pred = np.array([[1.0], [2.0]], np.float32)
    assert ops.mae(pred, [1, 4]) == pytest.approx(1.0)
    assert ops.mse(pred, np.array([1.0, 4.0])) == pytest.approx(2.0)


# ---- property tests over shapes ------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 40), c=st.integers(1, 40), f32=st.booleans(), scale=st.sampled_from(
    [1e-3, 1.0, 30.0, 1e4]), seed=st.integers(0, 2**32 - 1), strided=st.booleans())
def test_softmax_cross_entropy_property(backend, n, c, f32, scale, seed, strided):
    r = np.random.default_rng(seed)
    dtype = np.float32 if f32 else np.float64
    logits = (r.standard_normal((n, 2 * c if strided else c)) * scale).astype(dtype)
    if strided:
        logits = logits[:, ::2]  # non-contiguous input
    labels = r.integers(0, c, n).astype(r.choice([np.int64, np.int32, np.uint8]) if c < 256
                                        else np.int64)
    loss, ctx = ops.softmax_cross_entropy_forward(logits, labels)
    grad = ops.softmax_cross_entropy_backward(ctx)[0]
    want, want_grad = ref.softmax_cross_entropy(logits, labels)
    assert np.isfinite(loss) and np.isfinite(grad).all()
    _check_loss(loss, want, dtype, scale)
    check_op(grad, want_grad, dtype, reduction=c)


def test_losses_do_not_depend_on_thread_count(rng):
    import fastnn
    if fastnn.backend._C is None:
        pytest.skip("thread count only applies to the C++ backend")
    logits = rng.standard_normal((3000, 40)).astype(np.float32)
    labels = rng.integers(0, 40, 3000)
    pred = rng.standard_normal(400_000).astype(np.float32)
    target = rng.standard_normal(400_000).astype(np.float32)
    prev = fastnn.get_num_threads()
    out = []
    try:
        with fastnn.backend.use_backend("cpp"):
            for nt in (1, 2, 3):
                fastnn.set_num_threads(nt)
                out.append((ops.softmax_cross_entropy(logits, labels), ops.mse(pred, target),
                            ops.binary_cross_entropy(pred, target > 0, from_logits=True)))
    finally:
        fastnn.set_num_threads(prev)
    assert out[0] == out[1] == out[2]
