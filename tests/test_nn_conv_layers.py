"""The image layers of fastnn.nn: Conv1D, Conv2D, Conv2DTranspose, the pooling layers and
BatchNormalization.

Values are compared with PyTorch (when installed) or with a direct NumPy construction; every
backward is checked against central finite differences in float64 through the public layer API,
and once for a whole small CNN's loss. Shapes are tiny on purpose: the convolution kernels may
still be the Numba fallback, and finite differences run the model twice per parameter.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim

from helpers import numeric_grad


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    # One PyTorch thread: its spinning workers would otherwise compete with fastnn's on a
    # two-core machine (and the comparisons need no speed).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


def _t(torch, a):
    return torch.from_numpy(np.ascontiguousarray(a))


def _randomize(layer, rng, scale=0.5):
    for p in layer.params:
        p[...] = rng.standard_normal(p.shape) * scale


def _check_layer_grads(layer, x, rng, training=False, atol=1e-6):
    """dx and every parameter gradient of ``sum(forward(x) * w)`` against finite
    differences."""
    y = layer.forward(x, training=training)
    w = rng.standard_normal(y.shape)

    def f():
        return float(np.sum(layer.forward(x, training=training) * w))

    f()
    dx = layer.backward(w)
    grads = [g.copy() for g in layer.grads]
    np.testing.assert_allclose(dx, numeric_grad(f, x), rtol=1e-5, atol=atol)
    for p, g in zip(layer.params, grads):
        np.testing.assert_allclose(g, numeric_grad(f, p), rtol=1e-5, atol=atol)


def _to_last(a):
    return np.moveaxis(a, 1, -1)


# -- shapes and summary ------------------------------------------------------------------------

def test_shapes_and_summary(capsys):
    model = nn.Sequential([
        nn.Conv2D(8, 3, padding="same", activation="relu", input_shape=(1, 28, 28)),
        nn.BatchNormalization(),
        nn.MaxPool2D(2),
        nn.Conv2D(16, (3, 5), strides=2, padding="same", groups=2),
        nn.AveragePooling2D(3, strides=2, padding="same"),
        nn.Conv2DTranspose(4, 3, strides=2, padding="same"),
        nn.Conv2D(6, 3, dilation_rate=2),
        nn.GlobalAveragePooling2D(),
        nn.Dense(10, activation="softmax"),
    ])
    shapes = [layer.output_shape for layer in model.layers]
    assert shapes == [(None, 8, 28, 28), (None, 8, 28, 28), (None, 8, 14, 14),
                      (None, 16, 7, 7), (None, 16, 4, 4), (None, 4, 8, 8), (None, 6, 4, 4),
                      (None, 6), (None, 10)]
    assert model.layers[0].kernel.shape == (8, 1, 3, 3)
    assert model.layers[3].kernel.shape == (16, 4, 3, 5)
    assert model.layers[5].kernel.shape == (16, 4, 3, 3)  # (in, out / groups, kh, kw)
    assert [layer.name for layer in model.layers[:3]] == ["conv2d", "batch_normalization",
                                                          "max_pooling2d"]
    model.summary()
    out = capsys.readouterr().out
    bn = 4 * 8
    total = 80 + bn + 16 * 4 * 15 + 16 + 16 * 4 * 9 + 4 + 6 * 4 * 9 + 6 + 6 * 10 + 10
    assert model.count_params() == total
    assert f"Total params: {total:,}" in out
    assert f"Trainable params: {total - 16:,}" in out and "Non-trainable params: 16" in out
    assert "batch_normalization (BatchNormalization)" in out and "(None, 16, 4, 4)" in out
    x = np.random.default_rng(0).random((2, 1, 28, 28), np.float32)
    assert model.predict(x).shape == (2, 10)
    # channels_last and 1-D shapes
    assert nn.Conv2D(5, 3, data_format="channels_last").compute_output_shape(
        (None, 9, 7, 2)) == (None, 7, 5, 5)
    assert nn.Conv1D(4, 3, padding="causal", dilation_rate=2).compute_output_shape(
        (None, 10, 3)) == (None, 10, 4)
    assert nn.Conv1D(4, 3, strides=2, data_format="channels_first").compute_output_shape(
        (None, 3, 10)) == (None, 4, 4)
    assert nn.Conv2DTranspose(3, 4, strides=2).compute_output_shape(
        (None, 2, 5, 5)) == (None, 3, 12, 12)
    assert nn.Conv2DTranspose(3, 1, strides=3, padding="valid").compute_output_shape(
        (None, 2, 5, 5)) == (None, 3, 15, 15)
    assert nn.Conv2DTranspose(3, 3, strides=2, padding="same", output_padding=1
                              ).compute_output_shape((None, 2, 5, 5)) == (None, 3, 10, 10)
    assert nn.MaxPooling2D((2, 3), data_format="channels_last").compute_output_shape(
        (None, 7, 7, 5)) == (None, 3, 2, 5)
    assert nn.GlobalAveragePooling2D(keepdims=True, data_format="channels_last"
                                     ).compute_output_shape((None, 7, 7, 5)) == (None, 1, 1, 5)
    assert nn.MaxPool2D is nn.MaxPooling2D and nn.AvgPool2D is nn.AveragePooling2D


# -- values against PyTorch and NumPy ------------------------------------------------------------

CONV2D_CASES = [
    dict(kernel_size=3),
    dict(kernel_size=(2, 3), strides=(2, 1), padding=(1, 0)),
    dict(kernel_size=3, dilation_rate=2, padding=2, groups=2),
    dict(kernel_size=3, padding="same"),
    dict(kernel_size=4, padding="same"),  # stride 1: the extra padding at the bottom/right
]


@pytest.mark.parametrize("case", CONV2D_CASES)
def test_conv2d_matches_torch(torch, rng, case):
    layer = nn.Conv2D(4, activation="relu", **case)
    x = rng.standard_normal((2, 4, 8, 9)).astype(np.float32)
    y = layer.forward(x)
    xt, pad = _t(torch, x), case.get("padding", 0)
    if pad == "same":  # explicit, as PyTorch warns about its own uneven "same"
        k = case["kernel_size"] - 1
        xt, pad = torch.nn.functional.pad(xt, (k // 2, k - k // 2) * 2), 0
    ref = torch.nn.functional.conv2d(xt, _t(torch, layer.kernel), _t(torch, layer.bias),
                                     stride=case.get("strides", 1), padding=pad,
                                     dilation=case.get("dilation_rate", 1),
                                     groups=case.get("groups", 1)).relu().numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_same_padding_with_strides_is_keras(torch, rng):
    """Keras's "same" with a stride: ceil(size / stride) outputs; an odd total padding puts the
    extra row/column at the bottom/right (TensorFlow's split)."""
    x = rng.standard_normal((2, 3, 8, 7)).astype(np.float32)
    layer = nn.Conv2D(2, 3, strides=2, padding="same")
    y = layer.forward(x)
    assert y.shape == (2, 2, 4, 4)
    # rows: total (4-1)*2 + 3 - 8 = 1 -> (0, 1); columns: (4-1)*2 + 3 - 7 = 2 -> (1, 1)
    padded = torch.nn.functional.pad(_t(torch, x), (1, 1, 0, 1))
    ref = torch.nn.functional.conv2d(padded, _t(torch, layer.kernel), _t(torch, layer.bias),
                                     stride=2).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", [dict(kernel_size=4, strides=2, padding=1),
                                  dict(kernel_size=3, strides=2, padding=(1, 0),
                                       output_padding=1),
                                  dict(kernel_size=3, strides=1, groups=2, dilation_rate=2)])
def test_conv2d_transpose_matches_torch(torch, rng, case):
    layer = nn.Conv2DTranspose(4, **case)
    x = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    y = layer.forward(x)
    ref = torch.nn.functional.conv_transpose2d(
        _t(torch, x), _t(torch, layer.kernel), _t(torch, layer.bias), stride=case["strides"],
        padding=case["padding"] if "padding" in case else 0,
        output_padding=case.get("output_padding", 0), groups=case.get("groups", 1),
        dilation=case.get("dilation_rate", 1)).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel_size,strides", [(3, 2), (4, 2), (5, 3), (1, 2), (2, 1)])
def test_conv2d_transpose_same_is_the_adjoint_of_conv2d_same(rng, kernel_size, strides):
    """Keras's (TensorFlow's) "same" transposed convolution is the adjoint of the "same"
    convolution with that stride: <conv(u), v> == <conv_transpose(v), u>, which pins its
    alignment, and its output is size * stride."""
    t = nn.Conv2DTranspose(3, kernel_size, strides=strides, padding="same", use_bias=False,
                           dtype="float64")
    v = rng.standard_normal((2, 2, 4, 5))
    tv = t.forward(v)
    assert tv.shape == (2, 3, 4 * strides, 5 * strides)
    c = nn.Conv2D(2, kernel_size, strides=strides, padding="same", use_bias=False,
                  dtype="float64")
    u = rng.standard_normal(tv.shape)
    c.build((None,) + u.shape[1:])
    c.set_weights([t.kernel])  # (2, 3, k, k): conv (out 2, in 3) and transposed (in 2, out 3)
    cu = c.forward(u)
    assert cu.shape == v.shape
    np.testing.assert_allclose(np.sum(cu * v), np.sum(tv * u), rtol=1e-12)


def test_conv1d_matches_torch(torch, rng):
    x = rng.standard_normal((2, 9, 4)).astype(np.float32)  # (batch, steps, channels)
    for case in [dict(kernel_size=3, strides=2), dict(kernel_size=3, padding="same"),
                 dict(kernel_size=2, padding=1, groups=2, dilation_rate=2)]:
        layer = nn.Conv1D(6, activation="tanh", **case)
        y = layer.forward(x)
        assert layer.kernel.shape == (6, 4 // case.get("groups", 1), case["kernel_size"])
        pad = case.get("padding", 0)
        ref = torch.tanh(torch.nn.functional.conv1d(
            _t(torch, x.transpose(0, 2, 1)), _t(torch, layer.kernel), _t(torch, layer.bias),
            stride=case.get("strides", 1), padding=pad, dilation=case.get("dilation_rate", 1),
            groups=case.get("groups", 1))).numpy().transpose(0, 2, 1)
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    causal = nn.Conv1D(3, 3, padding="causal", dilation_rate=2)
    y = causal.forward(x)
    ref = torch.nn.functional.conv1d(
        torch.nn.functional.pad(_t(torch, x.transpose(0, 2, 1)), (4, 0)),
        _t(torch, causal.kernel), _t(torch, causal.bias), dilation=2).numpy()
    np.testing.assert_allclose(y, ref.transpose(0, 2, 1), rtol=1e-5, atol=1e-5)
    x2 = x.copy()
    x2[:, 5:] += 1.0  # a causal output never sees later steps
    np.testing.assert_array_equal(causal.forward(x2)[:, :5], y[:, :5])


def _pool_reference(x, k, s, pads, op):
    """Windows over the padded planes, the padding ignored (Keras's semantics)."""
    n, c, h, w = x.shape
    (t, b), (l, r) = pads
    oh, ow = (h + t + b - k[0]) // s[0] + 1, (w + l + r - k[1]) // s[1] + 1
    out = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s[0] - t, j * s[1] - l
            win = x[:, :, max(r0, 0):min(r0 + k[0], h), max(c0, 0):min(c0 + k[1], w)]
            out[:, :, i, j] = op(win, axis=(2, 3))
    return out


@pytest.mark.parametrize("layer_cls,op", [(nn.MaxPooling2D, np.max),
                                          (nn.AveragePooling2D, np.mean)])
@pytest.mark.parametrize("case", [
    dict(pool_size=2, pads=((0, 0), (0, 0))),                       # valid, 7x8 -> 3x4
    dict(pool_size=3, strides=2, pads=((0, 0), (0, 0))),
    dict(pool_size=2, padding="same", pads=((0, 1), (0, 0))),        # odd height: uneven
    dict(pool_size=3, strides=1, padding="same", pads=((1, 1), (1, 1))),
    dict(pool_size=(3, 2), strides=(2, 3), padding="same", pads=((1, 1), (0, 1))),
])
def test_pooling_values(rng, layer_cls, op, case):
    case = dict(case)
    pads = case.pop("pads")
    layer = layer_cls(**case)
    x = rng.standard_normal((2, 3, 7, 8))
    k = layer.pool_size
    ref = _pool_reference(x, k, layer.strides, pads, op)
    np.testing.assert_allclose(layer.forward(x), ref, rtol=1e-12, atol=1e-12)
    _check_layer_grads(layer, x, rng)


def test_global_average_pooling(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    layer = nn.GlobalAveragePooling2D()
    np.testing.assert_allclose(layer.forward(x), x.mean(axis=(2, 3)), rtol=1e-12)
    _check_layer_grads(layer, x, rng)
    last = nn.GlobalAveragePooling2D(data_format="channels_last", keepdims=True)
    np.testing.assert_allclose(last.forward(_to_last(x)), x.mean(axis=(2, 3))[:, None, None, :],
                               rtol=1e-12)
    _check_layer_grads(last, _to_last(x).copy(), rng)


# -- gradients ------------------------------------------------------------------------------------

GRAD_CASES = [
    (nn.Conv2D, dict(filters=3, kernel_size=3, padding="same", activation="tanh"), (2, 2, 5, 4)),
    (nn.Conv2D, dict(filters=4, kernel_size=3, strides=2, padding="same", groups=2,
                     data_format="channels_last"), (2, 5, 6, 2)),
    (nn.Conv2D, dict(filters=2, kernel_size=2, dilation_rate=2, use_bias=False,
                     activation="softmax"), (2, 1, 5, 5)),
    (nn.Conv2DTranspose, dict(filters=2, kernel_size=3, strides=2, padding="same",
                              activation="sigmoid"), (2, 3, 3, 2)),
    (nn.Conv2DTranspose, dict(filters=4, kernel_size=2, strides=3, groups=2,
                              data_format="channels_last"), (1, 2, 3, 2)),
    (nn.Conv1D, dict(filters=3, kernel_size=3, padding="causal", dilation_rate=2), (2, 6, 2)),
    (nn.Conv1D, dict(filters=2, kernel_size=2, strides=2, data_format="channels_first"),
     (2, 3, 5)),
]


@pytest.mark.parametrize("cls,kwargs,shape", GRAD_CASES)
def test_conv_layer_gradients(backend, rng, cls, kwargs, shape):
    layer = cls(dtype="float64", **kwargs)
    layer.build((None,) + shape[1:])
    _randomize(layer, rng)
    x = rng.standard_normal(shape)
    _check_layer_grads(layer, x, rng)


def test_need_dx_false_and_frozen_layers(rng):
    layer = nn.Conv2D(2, 3, dtype="float64")
    x = rng.standard_normal((2, 1, 4, 4))
    y = layer.forward(x, True)
    assert layer.backward(np.ones_like(y), need_dx=False) is None
    np.testing.assert_allclose(layer.grads[1], [y[:, 0].size, y[:, 1].size])
    frozen = nn.Conv2D(2, 3, trainable=False, dtype="float64")
    y = frozen.forward(x, True)
    stale = [g.copy() for g in frozen.grads]
    assert frozen.backward(np.ones_like(y)).shape == x.shape  # no weight gradient computed
    for g, s in zip(frozen.grads, stale):
        np.testing.assert_array_equal(g, s)


def test_small_cnn_loss_gradients(backend, rng):
    """The gradient of a whole model's loss with respect to every parameter (float64)."""
    f64 = "float64"
    model = nn.Sequential([
        nn.Conv2D(3, 3, padding="same", activation="tanh", input_shape=(2, 6, 6), dtype=f64),
        nn.BatchNormalization(dtype=f64),
        nn.MaxPool2D(2),
        nn.Conv2D(4, 2, strides=2, padding="same", activation="elu", dtype=f64),
        nn.Conv2DTranspose(2, 2, strides=2, padding="same", dtype=f64),
        nn.AveragePooling2D(3, strides=2, padding="same"),
        nn.Flatten(),
        nn.Dense(3, dtype=f64),
    ])
    for layer in model.layers:
        _randomize(layer, rng)
    x = rng.standard_normal((4, 2, 6, 6))
    y = rng.integers(0, 3, 4)
    loss = nn.losses.SparseCategoricalCrossentropy(from_logits=True)

    def f():
        return loss(y, model.forward(x, training=True))

    _, d = loss.value_and_grad(y, model.forward(x, training=True))
    model.backward(d, need_dx=False)
    grads = [g.copy() for g in model.grads]
    assert len(grads) == len(model.params) == 10
    for p, g in zip(model.params, grads):
        np.testing.assert_allclose(g, numeric_grad(f, p), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("fmt", ["channels_first", "channels_last"])
def test_relu_pool_fusion_gives_the_layerwise_gradients(backend, rng, fmt):
    """Sequential's training step runs a relu conv + max pool pair as one backward (the pool
    applies relu's derivative); the gradients are those of the layer-by-layer backward."""
    last = fmt == "channels_last"
    shape = (7, 9, 2) if last else (2, 7, 9)

    def build():
        model = nn.Sequential([
            nn.Conv2D(4, 3, padding="same", activation="relu", input_shape=shape,
                      data_format=fmt, dtype="float64"),
            nn.MaxPool2D(2, padding="same", data_format=fmt),
            nn.Conv2D(5, 3, padding="same", activation="relu", data_format=fmt,
                      dtype="float64"),
            nn.MaxPool2D(2, data_format=fmt),
            nn.Flatten(),
            nn.Dense(3, activation="softmax", dtype="float64"),
        ])
        for layer in model.layers:
            _randomize(layer, np.random.default_rng(3))
        model.compile(optimizer=optim.SGD(0.1), loss="sparse_categorical_crossentropy")
        return model

    x = rng.standard_normal((5,) + shape)
    y = rng.integers(0, 3, 5)
    fused, plain = build(), build()
    plan = fused._get_plan()
    names = [b.__name__ for b in plan.backward] + [plan.backward_first.__name__]
    assert names == ["backward", "backward", "backward_relu", "backward_preactivation",
                     "pool_step", "first_step"]  # the first pair: Conv2D.backward_pooled
    fused.train_on_batch(x, y)
    pp = plain._get_plan()  # its loss, run layer by layer
    h = x
    for layer in plain.layers[:-1]:
        h = layer.forward(h, True)
    h = pp.forward[-1](h, True)  # the head's logits
    plain.backward(pp.loss.backward(pp.loss.forward(h, y)[1]), need_dx=False)
    for gf, gp in zip(fused.grads, plain.grads):
        np.testing.assert_allclose(gf, gp, rtol=1e-12, atol=1e-14)


def test_conv_pool_forward_fusion_gives_the_layerwise_step(rng):
    """The training step runs a relu conv + 2x2 max pool pair as one forward
    (Conv2D.forward_pooled: the fused kernels take the first layer and the Winograd layer of
    this CNN), and the first pair as one backward (Conv2D.backward_pooled); outputs, loss and
    gradients are those of the layer-by-layer step, bit for bit."""
    def build():
        model = nn.Sequential([
            nn.Conv2D(16, 3, padding="same", activation="relu", input_shape=(1, 14, 14)),
            nn.MaxPool2D(2),
            nn.Conv2D(32, 3, padding="same", activation="relu"),
            nn.MaxPool2D(2),
            nn.Flatten(),
            nn.Dense(10, activation="softmax"),
        ])
        for layer in model.layers:
            _randomize(layer, np.random.default_rng(5))
        model.compile(optimizer=optim.SGD(0.1), loss="sparse_categorical_crossentropy")
        return model

    x = rng.standard_normal((20, 1, 14, 14)).astype(np.float32)
    y = rng.integers(0, 10, 20)
    fused, plain = build(), build()
    # inference (predict) runs layer by layer
    np.testing.assert_array_equal(fused.predict(x), plain.predict(x))
    plan = fused._get_plan()
    assert [f.__name__ for f in plan.forward[:4]] == ["step", "_passed_on", "step",
                                                      "_passed_on"]
    h = x
    for f in plan.forward:
        h = f(h, True)
    if fastnn.get_backend() == "cpp" and fastnn.get_isa() != "generic":  # the kernel ran
        assert fused.layers[0]._ctx.y is None
    assert [b.__name__ for b in plan.backward[-2:]] == ["backward_preactivation", "pool_step"]
    pp = plain._get_plan()
    hp = x
    for layer in plain.layers[:-1]:
        hp = layer.forward(hp, True)
    hp = pp.forward[-1](hp, True)
    np.testing.assert_array_equal(h, hp)
    loss_f = fused.train_on_batch(x, y)
    plain.backward(pp.loss.backward(pp.loss.forward(hp, y)[1]), need_dx=False)
    for gf, gp in zip(fused.grads, plain.grads):
        np.testing.assert_array_equal(gf, gp)
    assert np.isfinite(loss_f)


def test_backward_preactivation_needs_a_fused_relu():
    layer = nn.Conv2D(2, 3, activation="tanh", input_shape=(1, 4, 4))
    layer.forward(np.zeros((1, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="relu"):
        layer.backward_preactivation(np.zeros((1, 2, 2, 2), np.float32))


# -- channels_last == channels_first -------------------------------------------------------------

def test_channels_last_matches_channels_first(rng):
    def build(fmt):
        axis = -1 if fmt == "channels_last" else None
        return nn.Sequential([
            nn.Conv2D(4, 3, strides=2, padding="same", activation="relu", data_format=fmt,
                      dtype="float64"),
            nn.BatchNormalization(axis=axis, dtype="float64"),
            nn.MaxPooling2D(2, padding="same", data_format=fmt),
            nn.Conv2DTranspose(3, 3, strides=2, padding="same", data_format=fmt,
                               dtype="float64"),
            nn.AveragePooling2D(2, data_format=fmt),
            nn.Conv2D(2, 2, data_format=fmt, dtype="float64"),
        ])

    first, last = build("channels_first"), build("channels_last")
    x = rng.standard_normal((3, 2, 9, 7))
    first.build((None, 2, 9, 7))
    last.build((None, 9, 7, 2))
    for layer in first.layers:
        _randomize(layer, rng)
    last.set_weights(first.get_weights())
    for training in (True, False):
        y_first = first.forward(x, training)
        y_last = last.forward(_to_last(x).copy(), training)
        np.testing.assert_allclose(y_last, _to_last(y_first), rtol=1e-12, atol=1e-12)
        dy = rng.standard_normal(y_first.shape)
        dx_first = first.backward(dy)
        dx_last = last.backward(_to_last(dy).copy())
        np.testing.assert_allclose(dx_last, _to_last(dx_first), rtol=1e-12, atol=1e-12)
        for a, b in zip(first.grads, last.grads):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)
    # Conv1D: (batch, steps, channels) against (batch, channels, steps)
    c_last, c_first = nn.Conv1D(3, 3, padding="same"), nn.Conv1D(3, 3, padding="same",
                                                                  data_format="channels_first")
    s = rng.standard_normal((2, 7, 4)).astype(np.float32)
    c_last.build((None, 7, 4))
    c_first.build((None, 4, 7))
    c_first.set_weights(c_last.get_weights())
    np.testing.assert_allclose(c_last.forward(s), c_first.forward(s.transpose(0, 2, 1))
                               .transpose(0, 2, 1), rtol=1e-6)


# -- batch normalization --------------------------------------------------------------------------

def test_batch_norm_train_and_inference(torch, rng):
    bn = nn.BatchNormalization(momentum=0.9)
    x = (rng.standard_normal((4, 3, 5, 5)) * 2 + 1).astype(np.float32)
    bn.build((None, 3, 5, 5))
    _randomize(bn, rng)
    ref = torch.nn.BatchNorm2d(3, eps=1e-3, momentum=0.1)  # PyTorch's momentum is 1 - Keras's
    ref.load_state_dict({k: _t(torch, v) for k, v in bn.torch_weights().items()})
    y = bn.forward(x, training=True)
    y_ref = ref.train()(_t(torch, x)).detach().numpy()
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_mean, ref.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance, ref.running_var.numpy(), rtol=1e-5)
    batch_mean = x.mean(axis=(0, 2, 3))
    np.testing.assert_allclose(bn.moving_mean, 0.1 * batch_mean, rtol=1e-5, atol=1e-6)
    # inference: the running statistics, left unchanged
    before = [bn.moving_mean.copy(), bn.moving_variance.copy()]
    y = bn.forward(x, training=False)
    np.testing.assert_allclose(y, ref.eval()(_t(torch, x)).detach().numpy(), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_array_equal(bn.moving_mean, before[0])
    np.testing.assert_array_equal(bn.moving_variance, before[1])
    # a frozen layer runs in inference mode even in training (Keras's rule)
    bn.trainable = False
    np.testing.assert_array_equal(bn.forward(x, training=True), y)
    np.testing.assert_array_equal(bn.moving_mean, before[0])


@pytest.mark.parametrize("shape,axis,center,scale", [
    ((5, 3), None, True, True),                 # after Dense: (N, C) as N x C x 1 x 1
    ((4, 3, 2, 3), None, True, False),          # channels_first images
    ((3, 2, 3, 2), -1, False, True),            # channels_last images
    ((4, 5, 3), None, False, False),            # (batch, steps, channels)
])
def test_batch_norm_gradients(backend, rng, shape, axis, center, scale):
    bn = nn.BatchNormalization(axis=axis, center=center, scale=scale, dtype="float64")
    bn.build((None,) + shape[1:])
    _randomize(bn, rng)
    assert len(bn.params) == center + scale and len(bn.buffers) == 2
    x = rng.standard_normal(shape) * 2 + 0.5
    _check_layer_grads(bn, x, rng, training=True)
    _check_layer_grads(bn, x, rng, training=False)
    # training normalizes each channel to mean beta, std gamma
    c_axis = bn._axis
    y = bn.forward(x, training=True)
    other = tuple(a for a in range(len(shape)) if a != c_axis)
    beta = bn.beta if center else 0.0
    gamma = np.abs(bn.gamma) if scale else 1.0
    np.testing.assert_allclose(y.mean(axis=other), np.broadcast_to(beta, (shape[c_axis],)),
                               atol=1e-10)
    var = x.var(axis=other)
    np.testing.assert_allclose(y.std(axis=other),
                               np.broadcast_to(gamma, var.shape) * np.sqrt(var / (var + 1e-3)),
                               rtol=1e-8)


def test_batch_norm_follows_fit_and_predict(rng):
    # The first Dense is frozen, so the statistics can be recomputed from its output.
    model = nn.Sequential([nn.Dense(4, input_shape=(3,), trainable=False),
                           nn.BatchNormalization(momentum=0.5), nn.Dense(2)])
    model.compile(optim.SGD(0.1), "mse")
    x = rng.standard_normal((16, 3)).astype(np.float32) * 3
    bn = model.layers[1]
    model.predict(x)
    model.evaluate(x, np.zeros((16, 2), np.float32))
    np.testing.assert_array_equal(bn.moving_mean, 0)  # inference leaves them alone
    np.testing.assert_array_equal(bn.moving_variance, 1)
    model.fit(x, np.zeros((16, 2), np.float32), batch_size=16, epochs=1, verbose=0,
              shuffle=False)
    h = model.layers[0].forward(x)
    np.testing.assert_allclose(bn.moving_mean, 0.5 * h.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance, 0.5 + 0.5 * h.var(axis=0, ddof=1),
                               rtol=1e-5)
    assert len(model.params) == 4 and len(model.get_weights()) == 8  # stats are not params


# -- saving ---------------------------------------------------------------------------------------

def _all_layers_model():
    return nn.Sequential([
        nn.Reshape((12, 2), input_shape=(24,)),
        nn.Conv1D(4, 3, padding="causal", activation="leaky_relu", alpha=0.2,
                  kernel_regularizer="l2"),
        nn.BatchNormalization(momentum=0.8, epsilon=1e-4),
        nn.Reshape((4, 3, 4)),
        nn.Conv2D(6, (2, 3), strides=(1, 2), padding="same", groups=2,
                  data_format="channels_last", kernel_initializer="he_normal"),
        nn.BatchNormalization(axis=-1, center=False),
        nn.MaxPool2D(2, padding="same", data_format="channels_last"),
        nn.Conv2DTranspose(4, 3, strides=2, padding="same", output_padding=1,
                           data_format="channels_last", use_bias=False),
        nn.AvgPool2D((2, 1), data_format="channels_last"),
        nn.GlobalAveragePooling2D(data_format="channels_last"),
        nn.Dense(3, activation="softmax"),
    ])


def test_save_load_roundtrip_is_bit_exact(rng, tmp_path):
    model = _all_layers_model()
    model.compile(optim.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    x = rng.standard_normal((20, 24)).astype(np.float32)
    y = rng.integers(0, 3, 20)
    model.fit(x, y, epochs=2, batch_size=5, verbose=0)
    assert not np.all(model.layers[2].moving_mean == 0)
    path = tmp_path / "cnn.fnn"
    model.save(path)
    loaded = nn.load_model(path)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # and training resumes identically (the running statistics are part of the state)
    model.fit(x, y, epochs=1, batch_size=5, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=1, batch_size=5, verbose=0, shuffle=False)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    # layers rebuilt from their configs alone are equal too
    for layer in model.layers:
        again = type(layer).from_config(layer.get_config())
        assert again.get_config() == layer.get_config()


# -- PyTorch interop ------------------------------------------------------------------------------

def _torch_cnn(tnn):
    return tnn.Sequential(
        tnn.Conv2d(1, 4, 3, padding=1), tnn.BatchNorm2d(4, eps=1e-3), tnn.ReLU(),
        tnn.MaxPool2d(2),
        tnn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), tnn.ReLU(),
        tnn.ConvTranspose2d(6, 3, 4, stride=2, padding=1), tnn.BatchNorm2d(3, eps=1e-3),
        tnn.AvgPool2d(2),
        tnn.Flatten(), tnn.Linear(3 * 4 * 4, 5))  # for 16 x 16 inputs


def test_small_cnn_from_torch(torch, rng):
    tnn = torch.nn
    torch.manual_seed(0)
    ref = _torch_cnn(tnn)
    with torch.no_grad():  # non-trivial batch-norm weights and running statistics
        for m in ref:
            if isinstance(m, tnn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    model = nn.Sequential([
        nn.Conv2D(4, 3, padding=1, input_shape=(1, 16, 16)), nn.BatchNormalization(),
        nn.Activation("relu"), nn.MaxPool2D(2),
        nn.Conv2D(6, 3, strides=2, padding=1, groups=2, activation="relu"),
        nn.Conv2DTranspose(3, 4, strides=2, padding=1), nn.BatchNormalization(),
        nn.AvgPool2D(2), nn.Flatten(), nn.Dense(5),
    ])
    nn.load_torch_state_dict(model, ref.state_dict())
    x = rng.standard_normal((3, 1, 16, 16)).astype(np.float32)
    with torch.no_grad():
        expect = ref.eval()(_t(torch, x)).numpy()
    np.testing.assert_allclose(model.predict(x), expect, rtol=1e-4, atol=1e-5)
    # training mode too: batch statistics, and the same running-statistic updates
    for layer in (model.layers[1], model.layers[6]):
        layer.momentum = 1.0 - ref[1].momentum  # Keras's momentum is 1 - PyTorch's
    got = model.forward(x, training=True)
    with torch.no_grad():
        expect_train = ref.train()(_t(torch, x)).numpy()
    np.testing.assert_allclose(got, expect_train, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.layers[1].moving_variance, ref[1].running_var.numpy(),
                               rtol=1e-5)
    # back to a fresh PyTorch model: the same outputs, buffers included
    other = _torch_cnn(tnn)
    sd = nn.torch_state_dict(model, like=other.state_dict())
    other.load_state_dict({k: _t(torch, v) for k, v in sd.items()})
    with torch.no_grad():
        np.testing.assert_allclose(other.eval()(_t(torch, x)).numpy(),
                                   ref.eval()(_t(torch, x)).numpy(), rtol=1e-6, atol=1e-6)
    names = set(nn.torch_state_dict(model))  # keyed by layer name without a template
    assert {f"{model.layers[0].name}.weight", f"{model.layers[1].name}.running_var"} <= names
    with pytest.raises(ValueError, match="modules with weights"):
        nn.load_torch_state_dict(model, {k: v for k, v in ref.state_dict().items()
                                         if not k.startswith("10.")})


def test_layer_torch_weights(torch, rng):
    tnn = torch.nn
    cases = [
        (nn.Dense(3), (None, 4), tnn.Linear(4, 3)),
        (nn.Conv1D(4, 3, groups=2), (None, 7, 2), tnn.Conv1d(2, 4, 3, groups=2)),
        (nn.Conv2D(2, (3, 2), use_bias=False), (None, 3, 5, 5),
         tnn.Conv2d(3, 2, (3, 2), bias=False)),
        (nn.Conv2DTranspose(4, 3, groups=2), (None, 2, 5, 5),
         tnn.ConvTranspose2d(2, 4, 3, groups=2)),
        (nn.BatchNormalization(), (None, 3), tnn.BatchNorm1d(3)),
        (nn.BatchNormalization(center=False, scale=False), (None, 3, 2, 2),
         tnn.BatchNorm2d(3, affine=False)),
    ]
    for layer, shape, module in cases:
        layer.build(shape)
        sd = module.state_dict()
        layer.set_torch_weights(sd)
        for key, value in layer.torch_weights().items():
            np.testing.assert_array_equal(value, sd[key].numpy())
        module.load_state_dict({k: _t(torch, v) for k, v in layer.torch_weights().items()})
    dense = cases[0][0]
    with pytest.raises(ValueError, match="shape"):
        dense.set_torch_weights({"weight": np.zeros((4, 3)), "bias": np.zeros(3)})
    with pytest.raises(ValueError, match="expected PyTorch weights"):
        dense.set_torch_weights({"weight": np.zeros((3, 4))})
    dense.set_torch_weights([np.ones((3, 4)), np.arange(3.0)])  # a sequence in torch's order
    np.testing.assert_array_equal(dense.bias, [0, 1, 2])
    with pytest.raises(ValueError, match="not built"):
        nn.Conv2D(2, 3).torch_weights()
    pool = nn.MaxPool2D(2)
    pool.build((None, 1, 4, 4))
    assert pool.torch_weights() == {}


# -- bad arguments --------------------------------------------------------------------------------

@pytest.mark.parametrize("make,match", [
    (lambda: nn.Conv2D(0, 3), "filters"),
    (lambda: nn.Conv2D(4, (3, 3, 3)), "kernel_size"),
    (lambda: nn.Conv2D(4, 3, strides=0), "strides"),
    (lambda: nn.Conv2D(4, 3, padding="full"), "padding"),
    (lambda: nn.Conv2D(4, 3, padding="causal"), "padding"),
    (lambda: nn.Conv2D(4, 3, padding=-1), "padding"),
    (lambda: nn.Conv2D(4, 3, data_format="NHWC"), "data_format"),
    (lambda: nn.Conv2D(4, 3, groups=3), "divisible by groups"),
    (lambda: nn.Conv2D(4, 3, dilation_rate=(1, 0)), "dilation_rate"),
    (lambda: nn.Conv2D(4, 3, activation="swishy"), "unknown activation"),
    (lambda: nn.Conv2D(4, 3.0), "kernel_size"),
    (lambda: nn.Conv2DTranspose(4, 3, strides=2, output_padding=2), "output_padding"),
    (lambda: nn.Conv1D(4, (3, 3)), "kernel_size"),
    (lambda: nn.MaxPooling2D(0), "pool_size"),
    (lambda: nn.AveragePooling2D(2, padding=1), "padding"),
    (lambda: nn.GlobalAveragePooling2D(data_format="nchw"), "data_format"),
    (lambda: nn.BatchNormalization(momentum=1.5), "momentum"),
    (lambda: nn.BatchNormalization(epsilon=0), "epsilon"),
    (lambda: nn.BatchNormalization(axis=1.0), "axis"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("layer,shape,match", [
    (lambda: nn.Conv2D(4, 3, groups=2), (None, 3, 8, 8), "divisible by groups"),
    (lambda: nn.Conv2D(4, 5), (None, 1, 4, 8), "spans 5"),
    (lambda: nn.Conv2D(4, 3), (None, 8, 8), "takes inputs"),
    (lambda: nn.Conv2D(4, 3), (None, None, 8, 8), "channels must be known"),
    (lambda: nn.Conv1D(4, 3), (None, 8, 8, 8), "takes inputs"),
    (lambda: nn.MaxPool2D(3), (None, 1, 2, 8), "larger than the input"),
    (lambda: nn.Conv2DTranspose(2, 1, padding=3), (None, 1, 2, 2), "crops more"),
    (lambda: nn.BatchNormalization(axis=0), (None, 3), "batch axis"),
    (lambda: nn.BatchNormalization(axis=4), (None, 3, 2, 2), "out of range"),
])
def test_bad_input_shapes(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        layer().build(shape)


def test_bad_inputs_at_run_time(rng):
    model = nn.Sequential([nn.Conv2D(2, 3, input_shape=(1, 5, 5))])
    with pytest.raises(ValueError, match="expects inputs"):
        model.predict(np.zeros((2, 5, 5, 1), np.float32))
    conv = nn.Conv2D(2, 3)
    conv.forward(np.zeros((1, 1, 5, 5), np.float32))
    with pytest.raises(ValueError, match="expected inputs"):
        conv.forward(np.zeros((1, 5, 5), np.float32))
    with pytest.raises(ValueError, match="1 value per channel"):
        nn.BatchNormalization().forward(np.zeros((1, 3), np.float32), training=True)
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Conv2D(2, 3).backward(np.zeros((1, 2, 3, 3)))
    assert fastnn.nn.Conv2D is nn.Conv2D
