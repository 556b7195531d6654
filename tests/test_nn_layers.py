"""Layers, activations, losses, regularizers and initializers of fastnn.nn.

Every backward is checked against central finite differences in float64 through the public layer
API (``Dense(dtype="float64")`` etc.), once per backend.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn.nn import initializers, losses, regularizers

from helpers import numeric_grad

ELEMENTWISE = ["linear", "relu", "leaky_relu", "sigmoid", "tanh", "elu", "selu", "gelu"]


def _away_from_kinks(x, name):
    """Move inputs of kinked activations off the kink so finite differences are exact."""
    if name in ("relu", "leaky_relu", "elu", "selu", "threshold"):
        x[np.abs(x) < 0.05] += 0.2
    return x


def _check_layer_grads(layer, x, rng, atol=1e-6):
    """dx and every parameter gradient of ``sum(forward(x) * w)`` against finite differences."""
    y = layer.forward(x, training=False)
    w = rng.standard_normal(y.shape)

    def f():
        return float(np.sum(layer.forward(x, training=False) * w))

    f()
    dx = layer.backward(w)
    grads = [g.copy() for g in layer.grads]
    np.testing.assert_allclose(dx, numeric_grad(f, x), rtol=1e-5, atol=atol)
    for p, g in zip(layer.params, grads):
        np.testing.assert_allclose(g, numeric_grad(f, p), rtol=1e-5, atol=atol)


@pytest.mark.parametrize("activation", ELEMENTWISE + ["softmax"])
def test_dense_gradients(backend, rng, activation):
    layer = nn.Dense(5, activation=activation, dtype="float64")
    layer.build((None, 3))
    layer.kernel[...] = rng.standard_normal(layer.kernel.shape)
    layer.bias[...] = rng.standard_normal(5)
    while True:  # pre-activations away from 0, where relu-like derivatives jump
        x = rng.standard_normal((4, 3))
        if np.all(np.abs(x @ layer.kernel.T + layer.bias) > 0.05):
            break
    _check_layer_grads(layer, x, rng)


def test_dense_without_bias_and_nd_input(backend, rng):
    layer = nn.Dense(4, use_bias=False, activation="tanh", dtype="float64")
    x = rng.standard_normal((2, 3, 5))
    _check_layer_grads(layer, x, rng)
    assert len(layer.params) == 1 and layer.output_shape == (None, 3, 4)


def test_dense_need_dx_false_skips_input_gradient(backend, rng):
    layer = nn.Dense(3, dtype="float64")
    x = rng.standard_normal((4, 2))
    layer.forward(x, True)
    assert layer.backward(np.ones((4, 3)), need_dx=False) is None
    np.testing.assert_allclose(layer.grads[0], np.ones((3, 4)) @ x)


def test_dense_kernel_layout_and_alpha(rng):
    layer = nn.Dense(3, activation="leaky_relu", alpha=0.2, input_shape=(2,))
    layer.build((None, 2))
    kernel, bias = layer.get_weights()
    assert kernel.shape == (3, 2) and bias.shape == (3,)
    x = np.array([[1.0, -2.0]], np.float32)
    z = x @ kernel.T + bias
    np.testing.assert_allclose(layer.forward(x), np.where(z > 0, z, 0.2 * z), rtol=1e-6)


@pytest.mark.parametrize("activation", ELEMENTWISE + ["softmax"])
def test_activation_layer_gradients(backend, rng, activation):
    layer = nn.Activation(activation)
    x = _away_from_kinks(rng.standard_normal((3, 6)), activation)
    _check_layer_grads(layer, x, rng)


def test_activation_values(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(nn.Activation("relu").forward(x), np.maximum(x, 0))
    np.testing.assert_allclose(nn.Activation("sigmoid").forward(x), 1 / (1 + np.exp(-x)),
                               rtol=1e-5)
    s = nn.Activation("softmax").forward(x)
    np.testing.assert_allclose(s.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(nn.activations.softmax(x), s, rtol=1e-6)
    np.testing.assert_allclose(nn.activations.tanh(x), np.tanh(x), rtol=1e-5, atol=1e-6)


def test_threshold_is_forward_only(rng):
    x = np.array([[-1.0, 0.5, 2.0, -0.1]], np.float32)
    layer = nn.Activation("threshold")
    np.testing.assert_array_equal(layer.forward(x), [[0, 1, 1, 0]])
    np.testing.assert_array_equal(nn.Activation("threshold", alpha=1.0).forward(x),
                                  [[0, 0, 1, 0]])
    with pytest.raises(ValueError, match="gradient"):
        layer.backward(np.ones_like(x))
    model = nn.Sequential([nn.Dense(2, activation="threshold", input_shape=(4,))])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="threshold"):
        model.fit(x, np.ones((1, 2), np.float32), verbose=0)


def test_unknown_activation_and_bad_alpha():
    with pytest.raises(ValueError, match="unknown activation"):
        nn.Dense(3, activation="swishy")
    with pytest.raises(ValueError, match="takes no alpha"):
        nn.Activation("relu", alpha=0.1)
    with pytest.raises(ValueError, match="slope"):
        nn.Activation("leaky_relu", alpha=-1.0)
    with pytest.raises(TypeError):
        nn.Dense(3, activation=3)


def test_maxout_gradients_and_values(backend, rng):
    layer = nn.Maxout(3, pieces=4, dtype="float64")
    x = rng.standard_normal((5, 2))
    y = layer.forward(x)
    assert y.shape == (5, 3) and layer.kernel.shape == (12, 2)
    z = x @ layer.kernel.T + layer.bias
    np.testing.assert_allclose(y, fastnn.ops.maxout(z, 4))
    _check_layer_grads(layer, x, rng)


def test_dropout(backend, rng):
    layer = nn.Dropout(0.25, seed=3)
    x = rng.standard_normal((64, 50)) + 3.0
    np.testing.assert_array_equal(layer.forward(x, training=False), x)
    y = layer.forward(x, training=True)
    kept = y != 0
    assert 0.6 < kept.mean() < 0.9
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=1e-12)
    dy = rng.standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(dy), np.where(kept, dy / 0.75, 0.0), rtol=1e-12)
    y2 = layer.forward(x, training=True)
    assert not np.array_equal(y2 != 0, kept)  # a fresh mask every step
    again = nn.Dropout(0.25, seed=3)
    np.testing.assert_array_equal(again.forward(x, training=True), y)  # seeded: reproducible
    with pytest.raises(ValueError, match="rate"):
        nn.Dropout(1.0)


def test_dropout_global_seed(rng):
    x = np.ones((8, 32), np.float32)
    fastnn.random.seed(7)
    a = nn.Dropout(0.5).forward(x, training=True)
    fastnn.random.seed(7)
    b = nn.Dropout(0.5).forward(x, training=True)
    np.testing.assert_array_equal(a, b)


def test_flatten_and_reshape(rng):
    x = rng.standard_normal((2, 3, 4))
    flat = nn.Flatten()
    y = flat.forward(x)
    assert y.shape == (2, 12) and flat.output_shape == (None, 12)
    np.testing.assert_array_equal(flat.backward(y), x)
    r = nn.Reshape((4, -1))
    z = r.forward(x)
    assert z.shape == (2, 4, 3) and r.output_shape == (None, 4, 3)
    assert r.backward(z).shape == x.shape
    with pytest.raises(ValueError, match="reshape"):
        nn.Reshape((5,)).build((None, 3, 4))


# -- losses ------------------------------------------------------------------------------------

def _loss_cases(rng):
    n, c = 6, 4
    logits = rng.standard_normal((n, c)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ids = rng.integers(0, c, n)
    onehot = np.eye(c)[ids]
    sig = 1 / (1 + np.exp(-logits))
    targets01 = rng.random((n, c))
    regress = rng.standard_normal((n, c))
    return [
        ("mse", losses.MeanSquaredError(), logits, regress),
        ("mae", losses.MeanAbsoluteError(), logits, regress),
        ("bce", losses.BinaryCrossentropy(), sig, targets01),
        ("bce_logits", losses.BinaryCrossentropy(from_logits=True), logits, targets01),
        ("cce", losses.CategoricalCrossentropy(), probs, onehot),
        ("cce_logits", losses.CategoricalCrossentropy(from_logits=True), logits, onehot),
        ("scce", losses.SparseCategoricalCrossentropy(), probs, ids),
        ("scce_logits", losses.SparseCategoricalCrossentropy(from_logits=True), logits, ids),
    ]


@pytest.mark.parametrize("case", range(8))
def test_loss_gradients(backend, rng, case):
    name, loss, pred, target = _loss_cases(rng)[case]
    value, grad = loss.value_and_grad(target, pred)
    assert isinstance(value, float) and np.isfinite(value)
    assert grad.shape == pred.shape and grad.dtype == np.float64
    num = numeric_grad(lambda: loss(target, pred), pred)
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-7, err_msg=name)


def test_loss_values(rng):
    _, _, logits, _ = _loss_cases(rng)[0]
    ids = np.array([0, 1, 2, 3, 0, 1])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ref = -np.mean(np.log(p[np.arange(6), ids]))
    assert losses.get("sparse_categorical_crossentropy")(ids, p) == pytest.approx(ref, rel=1e-6)
    assert losses.SparseCategoricalCrossentropy(from_logits=True)(ids, logits) == \
        pytest.approx(ref, rel=1e-9)
    t = np.zeros_like(logits)
    assert losses.get("mse")(t, logits) == pytest.approx(np.mean(logits ** 2), rel=1e-12)
    assert losses.get("mae")(t, logits) == pytest.approx(np.mean(np.abs(logits)), rel=1e-12)


def test_loss_targets_are_checked():
    pred = np.full((3, 4), 0.25)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        losses.get("sparse_categorical_crossentropy")(np.array([0, 4, 1]), pred)
    with pytest.raises(ValueError, match="whole numbers"):
        losses.get("sparse_categorical_crossentropy")(np.array([0.5, 1, 1]), pred)
    with pytest.raises(ValueError, match="sparse_categorical"):
        losses.get("categorical_crossentropy")(np.array([0, 1, 1]), pred)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        losses.get("binary_crossentropy")(np.full((3, 4), 2.0), pred)
    with pytest.raises(ValueError, match="do not match"):
        losses.get("mse")(np.zeros((3, 5)), pred)
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get("hinge-ish")


# -- regularizers ------------------------------------------------------------------------------

@pytest.mark.parametrize("reg", [regularizers.L1(0.03), regularizers.L2(0.05),
                                 regularizers.L1L2(l1=0.02, l2=0.04), "l2"])
def test_regularized_dense_gradient(backend, rng, reg):
    layer = nn.Dense(3, activation="tanh", kernel_regularizer=reg, dtype="float64")
    x = rng.standard_normal((4, 5))
    y = layer.forward(x)
    w = rng.standard_normal(y.shape)

    def f():
        return float(np.sum(layer.forward(x) * w)) + layer.regularization_loss()

    f()
    layer.backward(w)
    np.testing.assert_allclose(layer.grads[0], numeric_grad(f, layer.kernel), rtol=1e-5,
                               atol=1e-7)


def test_regularizer_values(rng):
    w = rng.standard_normal((3, 4))
    assert regularizers.L1(0.1)(w) == pytest.approx(0.1 * np.abs(w).sum(), rel=1e-12)
    assert regularizers.L2(0.1)(w) == pytest.approx(0.1 * (w ** 2).sum(), rel=1e-12)
    assert regularizers.get("l1").l1 == 0.01 and regularizers.get(None) is None
    with pytest.raises(ValueError):
        regularizers.get("l3")
    with pytest.raises(ValueError):
        regularizers.L2(-1.0)


# -- initializers ------------------------------------------------------------------------------

@pytest.mark.parametrize("name,check", [
    ("glorot_uniform", lambda w: np.abs(w).max() <= np.sqrt(6 / (200 + 300))),
    ("glorot_normal", lambda w: abs(w.std() - np.sqrt(2 / 500)) < 0.1 * np.sqrt(2 / 500)),
    ("he_uniform", lambda w: np.abs(w).max() <= np.sqrt(6 / 300)),
    ("he_normal", lambda w: abs(w.std() - np.sqrt(2 / 300)) < 0.1 * np.sqrt(2 / 300)),
    ("lecun_normal", lambda w: abs(w.std() - np.sqrt(1 / 300)) < 0.1 * np.sqrt(1 / 300)),
    ("random_normal", lambda w: abs(w.std() - 0.01) < 0.001),
])
def test_random_initializers(name, check):
    init = initializers.get(name)
    w = init((200, 300), "float32")  # (out, in): fan_in 300, fan_out 200
    assert w.dtype == np.float32 and w.shape == (200, 300)
    assert check(w)
    assert abs(w.mean()) < 0.1 * w.std()
    assert np.unique(w).size > w.size // 2  # never all equal


def test_constant_initializers():
    assert np.all(initializers.get("zeros")((3, 2)) == 0)
    assert np.all(initializers.get("ones")((3,), "float64") == 1)
    assert np.all(initializers.Constant(0.5)((2, 2)) == 0.5)
    with pytest.raises(ValueError, match="unknown initializer"):
        initializers.get("glorot_uniformish")


def test_initializers_are_seeded():
    a = initializers.GlorotUniform(seed=5)((4, 4))
    b = initializers.GlorotUniform(seed=5)((4, 4))
    np.testing.assert_array_equal(a, b)
    fastnn.random.seed(11)
    d1 = nn.Dense(4)
    d1.build((None, 3))
    fastnn.random.seed(11)
    d2 = nn.Dense(4)
    d2.build((None, 3))
    np.testing.assert_array_equal(d1.kernel, d2.kernel)
    assert np.all(d1.bias == 0)  # biases start at zero


def test_layer_weights_roundtrip(rng):
    layer = nn.Dense(3, input_shape=(2,))
    layer.build((None, 2))
    w = [rng.standard_normal((3, 2)), rng.standard_normal(3)]
    layer.set_weights(w)
    for got, want in zip(layer.get_weights(), w):
        np.testing.assert_allclose(got, want.astype(np.float32))
    assert layer.count_params() == 9
    with pytest.raises(ValueError, match="shape"):
        layer.set_weights([np.zeros((2, 3)), np.zeros(3)])
    with pytest.raises(ValueError, match="2 weight arrays"):
        layer.set_weights([np.zeros((3, 2))])
