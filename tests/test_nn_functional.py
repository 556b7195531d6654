"""The functional API: Input, layers called on symbolic tensors, Model (several inputs and
outputs, shared layers, residuals), merge layers, training, saving, and clear errors for bad
graphs."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim

from helpers import check_op, numeric_grad

F64 = "float64"


def _fd_check(model, xs, rng, atol=1e-6):
    """Model.backward against central finite differences of sum(out * dy), for every input and
    every parameter."""
    outs = model.forward(xs, training=True)
    single_out = not isinstance(outs, list)
    outs = [outs] if single_out else outs
    dys = [rng.standard_normal(o.shape) for o in outs]

    def f():
        got = model.forward(xs)
        got = [got] if single_out else got
        return float(sum((o * d).sum() for o, d in zip(got, dys)))

    model.forward(xs, training=True)
    dx = model.backward(dys[0] if single_out else dys)
    grads = [g.copy() for g in model.grads]
    xs_list = xs if isinstance(xs, list) else [xs]
    dx_list = dx if isinstance(dx, list) else [dx]
    for x, d in zip(xs_list, dx_list):
        np.testing.assert_allclose(d, numeric_grad(f, x), atol=atol, rtol=1e-5)
    assert len(grads) == len(model.params) and grads
    for p, g in zip(model.params, grads):
        np.testing.assert_allclose(g, numeric_grad(f, p), atol=atol, rtol=1e-5)


def test_shared_layer_and_residual_match_finite_differences(rng):
    fastnn.random.seed(3)
    x = nn.Input((5,), dtype=F64)
    shared = nn.Dense(5, activation="tanh", dtype=F64)
    h1 = shared(x)
    h2 = shared(h1)                          # the same weights, called on its own output
    r = nn.Add()([x, h2])                    # a residual around both calls
    g = nn.Dense(5, activation="sigmoid", dtype=F64)(x)
    m = nn.Multiply()([r, g])                # a gate
    c = nn.Concatenate()([m, h1])            # h1 feeds two layers: gradients add up
    y = nn.Dense(3, dtype=F64)(c)
    model = nn.Model(x, y)
    assert [layer.name for layer in model.layers].count(shared.name) == 1
    assert len(model.params) == 6            # the shared layer's weights once
    _fd_check(model, rng.standard_normal((4, 5)), rng)


def test_several_inputs_and_outputs_match_finite_differences(rng):
    a, b = nn.Input((3,), dtype=F64, name="a"), nn.Input((2, 4), dtype=F64, name="b")
    ha = nn.Dense(4, activation="elu", dtype=F64)(a)
    hb = nn.Flatten()(nn.Dense(4, activation="tanh", dtype=F64)(b))
    joined = nn.Concatenate(axis=1)([ha, hb])
    out1 = nn.Dense(2, dtype=F64)(joined)
    out2 = nn.Add()([ha, nn.Dense(4, dtype=F64)(hb)])
    model = nn.Model([a, b], [out1, out2])
    _fd_check(model, [rng.standard_normal((3, 3)), rng.standard_normal((3, 2, 4))], rng)


def test_model_output_equals_manual_composition(rng):
    x = nn.Input((6,))
    d1, d2 = nn.Dense(4, activation="relu"), nn.Dense(4)
    y = nn.Add()([d1(x), d2(x)])
    model = nn.Model(x, y)
    xv = rng.standard_normal((7, 6)).astype(np.float32)
    ref = d1.forward(xv) + d2.forward(xv)
    np.testing.assert_array_equal(model.predict(xv), ref)
    np.testing.assert_array_equal(model(xv), ref)
    assert model.output_shape == (None, 4) and model.input_shape == (None, 6)


def test_merge_layers_against_numpy(rng):
    xs = [rng.standard_normal((3, 4, 5)) for _ in range(3)]
    add, mul, cat = nn.Add(), nn.Multiply(), nn.Concatenate(axis=1)
    check_op(add.forward(xs), xs[0] + xs[1] + xs[2])
    check_op(mul.forward(xs), xs[0] * xs[1] * xs[2])
    check_op(cat.forward(xs), np.concatenate(xs, axis=1))
    dy = rng.standard_normal((3, 4, 5))
    for g in add.backward(dy):
        np.testing.assert_array_equal(g, dy)
    for i, g in enumerate(mul.backward(dy)):
        others = np.prod([x for j, x in enumerate(xs) if j != i], axis=0)
        check_op(g, dy * others)
    dc = rng.standard_normal((3, 12, 5))
    parts = cat.backward(dc)
    assert [p.shape for p in parts] == [(3, 4, 5)] * 3
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), dc)
    assert add.backward(dy, need_dx=False) is None


def test_functional_trains_exactly_like_sequential(rng):
    x = rng.standard_normal((90, 4)).astype(np.float32)
    y = rng.integers(0, 3, 90)
    fastnn.random.seed(11)
    seq = nn.Sequential([nn.Dense(8, activation="relu", input_shape=(4,)), nn.Dropout(0.2),
                         nn.Dense(3, activation="softmax")])
    inp = nn.Input((4,))
    out = nn.Dense(3, activation="softmax")(nn.Dropout(0.2)(nn.Dense(8, activation="relu")(inp)))
    fun = nn.Model(inp, out)
    fun.set_weights(seq.get_weights())
    for model in (seq, fun):
        model.compile(optim.Adam(0.01), "sparse_categorical_crossentropy", ["accuracy"])
    fastnn.random.seed(5)
    h1 = seq.fit(x, y, epochs=3, batch_size=16, verbose=0, validation_split=0.2)
    fastnn.random.seed(5)
    h2 = fun.fit(x, y, epochs=3, batch_size=16, verbose=0, validation_split=0.2)
    assert fun._get_plan().fused == [True]       # softmax head fused into the loss, as Sequential
    assert h1.history == h2.history
    for a, b in zip(seq.get_weights(), fun.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert seq.evaluate(x, y) == fun.evaluate(x, y)
    np.testing.assert_array_equal(seq.predict(x), fun.predict(x))


def test_two_tower_model_learns_with_dicts_and_loss_weights(rng):
    fastnn.random.seed(0)
    n = 400
    xa = rng.standard_normal((n, 3)).astype(np.float32)
    xb = rng.standard_normal((n, 2)).astype(np.float32)
    yc = (xa[:, 0] + xb[:, 1] > 0).astype(np.int64)
    yr = (xa.sum(1) - xb.sum(1))[:, None].astype(np.float32)
    a, b = nn.Input((3,), name="a"), nn.Input((2,), name="b")
    h = nn.Concatenate()([nn.Dense(16, activation="tanh")(a), nn.Dense(16, activation="tanh")(b)])
    cls = nn.Dense(2, activation="softmax", name="cls")(h)
    reg = nn.Dense(1, name="reg")(h)
    model = nn.Model([a, b], [cls, reg])
    model.compile(optim.Adam(0.01), {"cls": "sparse_categorical_crossentropy", "reg": "mse"},
                  metrics=["accuracy"], loss_weights={"cls": 1.0, "reg": 0.5})
    hist = model.fit({"a": xa, "b": xb}, [yc, yr], epochs=15, batch_size=32, verbose=0,
                     validation_data=([xa, xb], {"cls": yc, "reg": yr}))
    assert set(hist.history) == {"loss", "cls_accuracy", "reg_accuracy", "val_loss",
                                 "val_cls_accuracy", "val_reg_accuracy"}
    logs = model.evaluate([xa, xb], [yc, yr], return_dict=True)
    assert logs["cls_accuracy"] > 0.95
    p_cls, p_reg = model.predict([xa, xb], batch_size=64)
    assert p_cls.shape == (n, 2) and p_reg.shape == (n, 1)
    np.testing.assert_allclose(p_cls.sum(1), 1.0, rtol=1e-5)
    # the reported loss is the weighted sum of the two losses
    ce = -np.log(p_cls[np.arange(n), yc]).mean()
    mse = ((p_reg - yr) ** 2).mean()
    assert logs["loss"] == pytest.approx(ce + 0.5 * mse, rel=1e-4)


def test_custom_loop_with_forward_backward(rng):
    fastnn.random.seed(2)
    inp = nn.Input((3,))
    out = nn.Dense(1)(nn.Dense(8, activation="tanh")(inp))
    model = nn.Model(inp, out)
    opt = optim.SGD(0.1)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    t = (x @ np.array([1.0, -2.0, 0.5], np.float32))[:, None]
    loss = nn.losses.MeanSquaredError()
    first = None
    for _ in range(60):
        y = model.forward(x, training=True)
        value, dy = loss.value_and_grad(t, y)
        first = value if first is None else first
        assert model.backward(dy, need_dx=False) is None
        opt.step(model.params, model.grads)
    assert value < 0.1 * first


def test_save_and_load_round_trip_resumes_exactly(rng, tmp_path):
    fastnn.random.seed(4)
    x = rng.standard_normal((64, 6)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    inp = nn.Input((6,), name="features")
    shared = nn.Dense(6, activation="relu", name="shared")
    h = nn.Add()([shared(inp), shared(shared(inp))])
    h = nn.Dropout(0.3, seed=1)(h)
    out = nn.Dense(3, activation="softmax")(nn.Concatenate()([h, inp]))
    model = nn.Model(inp, out, name="round_trip")
    model.compile(optim.Adam(0.01), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "model.fnn"
    model.save(path)
    model.fit(x, y, epochs=4, initial_epoch=2, batch_size=16, verbose=0)
    loaded = nn.load_model(path)
    assert isinstance(loaded, nn.Model) and loaded.name == "round_trip"
    assert [la.name for la in loaded.layers] == [la.name for la in model.layers]
    assert len(loaded._steps) == len(model._steps) == 7   # three calls of the shared layer
    loaded.fit(x, y, epochs=4, initial_epoch=2, batch_size=16, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.predict(x), loaded.predict(x))
    bare = nn.load_model(path, compile=False)
    assert bare.optimizer is None


def test_save_and_load_several_outputs(rng, tmp_path):
    a, b = nn.Input((2,), name="a"), nn.Input((3,), name="b")
    h = nn.Concatenate()([a, b])
    o1, o2 = nn.Dense(2, activation="softmax", name="o1")(h), nn.Dense(1, name="o2")(h)
    model = nn.Model([a, b], [o1, o2])
    model.compile("adam", ["sparse_categorical_crossentropy", "mse"], ["accuracy"],
                  loss_weights=[0.3, 0.7])
    xa, xb = rng.standard_normal((8, 2)), rng.standard_normal((8, 3))
    ys = [rng.integers(0, 2, 8), rng.standard_normal((8, 1))]
    model.fit([xa, xb], ys, epochs=1, verbose=0)
    model.save(tmp_path / "two.fnn")
    loaded = nn.load_model(tmp_path / "two.fnn")
    assert loaded._loss_weights == [0.3, 0.7]
    assert [m.name for m in loaded.metrics] == ["o1_accuracy", "o2_accuracy"]
    assert loaded.evaluate([xa, xb], ys) == model.evaluate([xa, xb], ys)
    for p, q in zip(model.predict([xa, xb]), loaded.predict([xa, xb])):
        np.testing.assert_array_equal(p, q)


def test_summary_lists_layers_and_connections():
    x = nn.Input((4,), name="x_in")
    d = nn.Dense(4, name="twice")
    y = nn.Add(name="res")([x, d(d(x))])
    model = nn.Model(x, y, name="tiny")
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert 'Model: "tiny"' in text and "Connected to" in text
    assert "x_in[0], twice[0]" in text          # the shared layer's two calls
    assert "x_in[0], twice[1]" in text
    assert "Total params: 20" in text and "Trainable params: 20" in text


def test_softmax_head_feeding_another_layer_is_not_fused(rng):
    x = nn.Input((3,))
    p = nn.Dense(3, activation="softmax")(x)
    out = nn.Add()([p, nn.Dense(3)(p)])
    model = nn.Model([x], [p, out])
    model.compile("sgd", ["categorical_crossentropy", "mse"])
    assert model._get_plan().fused == [False, False]
    xv = rng.standard_normal((5, 3)).astype(np.float32)
    t = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 5)]
    loss = model.train_on_batch(xv, [t, t])
    assert np.isfinite(loss)


# -- bad graphs and bad input ---------------------------------------------------------------------

def test_outputs_that_do_not_depend_on_the_inputs_are_refused():
    a, b = nn.Input((3,), name="in_a"), nn.Input((3,), name="in_b")
    yb = nn.Dense(2)(b)
    with pytest.raises(ValueError, match="graph disconnected.*in_b"):
        nn.Model(a, yb)
    with pytest.raises(ValueError, match="do not depend on the input.*in_a"):
        nn.Model([a, b], yb)
    with pytest.raises(TypeError, match="symbolic tensors"):
        nn.Model(a, np.zeros((1, 3)))
    with pytest.raises(ValueError, match="returned by Input"):
        nn.Model(yb, nn.Dense(2)(yb))
    with pytest.raises(ValueError, match="twice"):
        nn.Model([a, a], nn.Dense(2)(a))


def test_incompatible_shapes_are_refused():
    a, b = nn.Input((3,)), nn.Input((4,))
    with pytest.raises(ValueError, match="same shape"):
        nn.Add()([a, b])
    with pytest.raises(ValueError, match="equal sizes"):
        nn.Concatenate(axis=1)([nn.Input((2, 3)), nn.Input((4, 5))])
    d = nn.Dense(2)
    d(a)
    with pytest.raises(ValueError, match=r"built for inputs \(None, 3\).*\(None, 4\)"):
        d(b)
    with pytest.raises(ValueError, match="at least two"):
        nn.Add()([a])
    with pytest.raises(TypeError, match="symbolic tensors only"):
        nn.Add()([a, np.zeros((1, 3))])
    with pytest.raises(ValueError, match="batch axis"):
        nn.Concatenate(axis=0)([a, a])
    with pytest.raises(TypeError, match="no values"):
        np.asarray(a)


def test_bad_data_and_calls_give_clear_errors(rng):
    a, b = nn.Input((3,), name="a"), nn.Input((2,), name="b")
    out = nn.Dense(1)(nn.Concatenate()([a, b]))
    model = nn.Model([a, b], out)
    with pytest.raises(RuntimeError, match="before forward"):
        model.backward(np.zeros((1, 1)))
    with pytest.raises(ValueError, match="2 of them"):
        model.predict(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="has shape .*expects"):
        model.predict([np.zeros((4, 3)), np.zeros((4, 5))])
    with pytest.raises(ValueError, match="same number of samples"):
        model.predict([np.zeros((4, 3)), np.zeros((5, 2))])
    with pytest.raises(ValueError, match="expected the keys"):
        model.predict({"a": np.zeros((4, 3)), "c": np.zeros((4, 2))})
    with pytest.raises(TypeError, match="nesting"):
        model(nn.Input((3,)))
    with pytest.raises(RuntimeError, match="compile"):
        model.fit([np.zeros((4, 3)), np.zeros((4, 2))], np.zeros((4, 1)))
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="same number of samples"):
        model.fit([np.zeros((4, 3)), np.zeros((4, 2))], np.zeros((3, 1)), verbose=0)
    with pytest.raises(ValueError, match="1 output"):
        model.compile("sgd", ["mse", "mse"])
    model.forward([np.zeros((4, 3)), np.zeros((4, 2))])
    with pytest.raises(ValueError, match="output gradient has shape"):
        model.backward(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="unique"):
        x = nn.Input((2,))
        nn.Model(x, nn.Add()([nn.Dense(2, name="same")(x), nn.Dense(2, name="same")(x)]))
    with pytest.raises(TypeError, match="float32, float64 or bool"):
        nn.Input((2,), dtype="int32")


def test_shared_regularized_layer_adds_its_penalty_gradient_once(rng):
    x = nn.Input((4,), dtype=F64)
    plain = nn.Dense(4, activation="tanh", dtype=F64)
    reg = nn.Dense(4, activation="tanh", dtype=F64, kernel_regularizer=nn.regularizers.L2(0.5))
    models = [nn.Model(x, layer(layer(x))) for layer in (plain, reg)]
    reg.set_weights(plain.get_weights())
    xv = rng.standard_normal((3, 4))
    dy = rng.standard_normal((3, 4))
    grads = []
    for model in models:
        model.forward(xv, training=True)
        model.backward(dy, need_dx=False)
        grads.append([g.copy() for g in model.grads])
    # L2(0.5) adds 2 * 0.5 * kernel once, though the layer ran twice
    np.testing.assert_allclose(grads[1][0] - grads[0][0], reg.kernel, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(grads[1][1], grads[0][1])
    assert reg.kernel_regularizer is not None



def test_embedding_on_an_input_takes_int64_ids_and_trains_like_sequential(rng):
    ids = rng.integers(0, 20, size=(48, 6))
    y = (ids[:, 0] % 3).astype(np.int64)
    fastnn.random.seed(4)
    seq = nn.Sequential([nn.Embedding(20, 5, input_shape=(6,)), nn.GlobalAveragePooling1D(),
                         nn.Dense(3, "softmax")])
    inp = nn.Input((6,))
    model = nn.Model(inp, nn.Dense(3, "softmax")(nn.GlobalAveragePooling1D()(
        nn.Embedding(20, 5)(inp))))
    model.set_weights(seq.get_weights())
    start = seq.get_weights()
    assert model._prepare_x(ids).dtype == np.int64   # the ids, not float32 copies
    for m in (model, seq):
        m.compile(optim.SGD(0.5), "sparse_categorical_crossentropy")
        m.fit(ids, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    for a, b, w0 in zip(model.get_weights(), seq.get_weights(), start):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        assert not np.allclose(a, w0)   # it trained
    with pytest.raises(ValueError, match="out of range"):
        model.predict(np.full((2, 6), 20))
