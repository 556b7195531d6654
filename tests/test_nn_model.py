"""Sequential: fit/evaluate/predict, fusion of softmax/sigmoid heads, custom loops, callbacks,
and clear errors for bad input."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim
from fastnn.nn import losses

from helpers import numeric_grad


def _blobs(rng, n=240, classes=3, dim=2, spread=0.3):
    """Well separated Gaussian blobs: a problem an MLP must solve exactly."""
    centers = np.array([[np.cos(a), np.sin(a)] for a in
                        np.linspace(0, 2 * np.pi, classes, endpoint=False)]) * 3
    y = rng.integers(0, classes, n)
    x = centers[y] + spread * rng.standard_normal((n, dim))
    return x.astype(np.float32), y


def _xor(rng, n=200):
    x = rng.uniform(-1, 1, (n, 2))
    x += 0.2 * np.sign(x)  # a margin around both axes
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int64)
    return x.astype(np.float32), y


def _mlp(classes=3, inputs=2, hidden=16, head="softmax"):
    return nn.Sequential([nn.Dense(hidden, activation="tanh", input_shape=(inputs,)),
                          nn.Dense(classes, activation=head)])


def test_mlp_reaches_100_percent_on_separable_problem(backend, rng):
    fastnn.random.seed(0)
    x, y = _xor(rng)
    model = _mlp(classes=2)
    model.compile(optim.Adam(0.05), "sparse_categorical_crossentropy", ["accuracy"])
    history = model.fit(x, y, epochs=60, batch_size=16, verbose=0)
    assert history.history["accuracy"][-1] == 1.0
    loss, acc = model.evaluate(x, y)
    assert acc == 1.0 and loss < 0.1
    np.testing.assert_array_equal(model.predict(x).argmax(1), y)


def test_fit_history_validation_and_verbosity(rng, capsys):
    fastnn.random.seed(1)
    x, y = _blobs(rng)
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    h = model.fit(x, y, epochs=3, batch_size=32, validation_split=0.25, verbose=2)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in h.history.values()) and h.epoch == [0, 1, 2]
    out = capsys.readouterr().out
    assert out.count("Epoch ") == 3 and "val_accuracy" in out
    h = model.fit(x, y, epochs=1, validation_data=(x[:10], y[:10]), verbose=1)
    out = capsys.readouterr()
    assert "Epoch 1/1" in out.out + out.err and "loss" in out.out + out.err
    model.fit(x, y, epochs=1, verbose=0)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    h = model.fit(x, y, epochs=3, initial_epoch=2, verbose=0)
    assert h.epoch == [2]


def test_evaluate_return_forms(rng):
    x, y = _blobs(rng, n=50)
    model = _mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert isinstance(model.evaluate(x, y), float)
    model.compile("sgd", "categorical_crossentropy", ["accuracy", "mse"])
    y = np.eye(3)[y]
    loss, acc, mse = model.evaluate(x, y, batch_size=7)
    assert 0 <= acc <= 1 and mse > 0
    assert model.evaluate(x, y, return_dict=True)["accuracy"] == acc
    # the loss of evaluate is the mean over samples, whatever the batching
    assert model.evaluate(x, y, batch_size=50)[0] == pytest.approx(loss, rel=1e-5)


def test_predict_batches_and_shape_inference(rng):
    model = nn.Sequential([nn.Dense(4, activation="relu"), nn.Dense(2)])
    x = rng.standard_normal((23, 3)).astype(np.float32)
    out = model.predict(x, batch_size=5)  # builds from the data
    assert model.input_shape == (None, 3) and out.shape == (23, 2)
    np.testing.assert_allclose(out, model.predict(x, batch_size=100), rtol=1e-6)
    assert model.predict(x[:0]).shape == (0, 2)


def test_accuracy_resolves_by_loss(rng):
    x, y = _blobs(rng, n=60)
    for loss, target, name in [
            ("sparse_categorical_crossentropy", y, "SparseCategoricalAccuracy"),
            ("categorical_crossentropy", np.eye(3)[y], "CategoricalAccuracy")]:
        model = _mlp()
        model.compile("adam", loss, ["accuracy"])
        assert type(model.metrics[0]).__name__ == name
        model.fit(x, target, epochs=2, verbose=0)
    model = _mlp(classes=1, head="sigmoid")
    model.compile("adam", "binary_crossentropy", ["accuracy"])
    assert type(model.metrics[0]).__name__ == "BinaryAccuracy"
    yb = (y == 0).astype(np.float32)
    model.fit(x, yb, epochs=30, verbose=0)
    assert model.evaluate(x, yb)[1] > 0.95


def _sgd_gradient(model, x, y):
    """The gradient the training step used, read back from one plain SGD step."""
    before = [w.astype(np.float64) for w in model.get_weights()]
    model.train_on_batch(x, y)
    return [(b - a) / 0.5 for b, a in zip(before, model.get_weights())]


@pytest.mark.parametrize("loss,head", [("sparse_categorical_crossentropy", "softmax"),
                                       ("categorical_crossentropy", "softmax"),
                                       ("binary_crossentropy", "sigmoid")])
def test_fused_head_gradient_matches_unfused_loss(backend, rng, loss, head):
    classes = 3 if head == "softmax" else 1
    model = nn.Sequential([nn.Dense(4, activation="tanh", input_shape=(2,), dtype="float64"),
                           nn.Dense(classes, activation=head, dtype="float64")])
    model.compile(optim.SGD(0.5), loss)
    x, y = _blobs(rng, n=8)
    x = x.astype(np.float64)
    if loss == "categorical_crossentropy":
        y = np.eye(3)[y]
    elif head == "sigmoid":
        y = (y == 1).astype(np.float64)
    lossfn = losses.get(loss)
    assert model._get_plan().fused
    weights = model.get_weights()
    params = [w.copy() for w in weights]

    def f():
        model.set_weights(params)
        return lossfn(y, model.forward(x))

    numeric = [numeric_grad(f, p) for p in params]
    model.set_weights(weights)
    got = _sgd_gradient(model, x, y)
    for g, n in zip(got, numeric):
        np.testing.assert_allclose(g, n, rtol=1e-5, atol=1e-8)


def test_fused_softmax_is_stable_for_huge_logits(rng):
    model = nn.Sequential([nn.Dense(3, activation="softmax", input_shape=(2,))])
    model.compile(optim.SGD(0.01), "sparse_categorical_crossentropy", ["accuracy"])
    model.layers[0].kernel[...] = [[1e4, 0], [-1e4, 0], [0, 1e4]]
    x = np.array([[1, 0], [1, 0], [0, 1]], np.float32)  # logits of +-1e4
    y = np.array([0, 1, 0])
    loss, acc = model.train_on_batch(x, y)
    assert np.isfinite(loss) and loss > 1e3
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert np.isfinite(model.evaluate(x, y)[0])


def test_regularization_is_added_to_the_loss(rng):
    x, y = _blobs(rng, n=40)
    plain = _mlp()
    reg = nn.Sequential([nn.Dense(16, activation="tanh", input_shape=(2,),
                                  kernel_regularizer=nn.regularizers.L2(0.1)),
                         nn.Dense(3, activation="softmax")])
    plain.build()
    reg.build()
    reg.set_weights(plain.get_weights())
    for m in (plain, reg):
        m.compile("sgd", "sparse_categorical_crossentropy")
    penalty = 0.1 * float(np.sum(plain.layers[0].kernel.astype(np.float64) ** 2))
    assert reg.evaluate(x, y) == pytest.approx(plain.evaluate(x, y) + penalty, rel=1e-5)


def test_regression_with_mse(rng):
    fastnn.random.seed(3)
    x = rng.standard_normal((256, 3)).astype(np.float32)
    y = x @ np.array([1.5, -2.0, 0.5], np.float32) + 0.3
    model = nn.Sequential([nn.Dense(1, input_shape=(3,))])
    model.compile(optim.SGD(0.1), "mse", ["mae"])
    model.fit(x, y, epochs=20, batch_size=32, verbose=0)  # (N,) targets for (N, 1) outputs
    loss, mae = model.evaluate(x, y)
    assert loss < 1e-4 and mae < 1e-2


def test_custom_loop_two_models(backend, rng):
    """A generator trained through a discriminator's backward, as a GAN does."""
    gen = nn.Sequential([nn.Dense(4, activation="tanh", input_shape=(2,), dtype="float64"),
                         nn.Dense(3, dtype="float64")])
    disc = nn.Sequential([nn.Dense(5, activation="relu", input_shape=(3,), dtype="float64"),
                          nn.Dense(1, activation="sigmoid", dtype="float64")])
    bce = losses.BinaryCrossentropy()
    z = rng.standard_normal((6, 2))
    ones = np.ones((6, 1))

    def total():
        return bce(ones, disc.forward(gen.forward(z)))

    value, dp = bce.value_and_grad(ones, disc.forward(gen.forward(z, True), True))
    dfake = disc.backward(dp)
    dz = gen.backward(dfake)
    assert value == pytest.approx(total())
    np.testing.assert_allclose(dz, numeric_grad(total, z), rtol=1e-5, atol=1e-9)
    for p, g in zip(gen.params, gen.grads):
        np.testing.assert_allclose(g, numeric_grad(total, p), rtol=1e-5, atol=1e-9)
    opt = optim.Adam(0.01)
    before = total()
    for _ in range(30):
        _, dp = bce.value_and_grad(ones, disc.forward(gen.forward(z, True), True))
        gen.backward(disc.backward(dp))
        opt.step(gen.params, gen.grads)
    assert total() < before


def test_train_and_test_on_batch(rng):
    x, y = _blobs(rng, n=64)
    model = _mlp()
    model.compile(optim.Adam(0.05), "sparse_categorical_crossentropy", ["accuracy"])
    first = model.test_on_batch(x, y)
    for _ in range(50):
        loss, acc = model.train_on_batch(x, y)
    assert loss < first[0] and acc == 1.0
    assert model.test_on_batch(x, y)[1] == 1.0


def test_reproducible_with_global_seed(rng):
    x, y = _blobs(rng, n=100)
    runs = []
    for _ in range(2):
        fastnn.random.seed(42)
        model = nn.Sequential([nn.Dense(8, activation="relu", input_shape=(2,)),
                               nn.Dropout(0.3), nn.Dense(3, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=2, batch_size=10, verbose=0)
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_float64_model(rng):
    x, y = _blobs(rng, n=50)
    model = nn.Sequential([nn.Dense(8, activation="relu", dtype="float64"),
                           nn.Dense(3, activation="softmax", dtype="float64")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)  # float32 data is cast to the model's dtype
    assert model.predict(x).dtype == np.float64


# -- bad input ---------------------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors(rng):
    x, y = _blobs(rng, n=30)
    model = _mlp()
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(x, y, verbose=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"expects inputs of shape \(None, 2\)"):
        model.fit(np.zeros((30, 3), np.float32), y, verbose=0)
    with pytest.raises(ValueError, match=r"expects inputs"):
        model.predict(np.zeros((4, 2, 1)))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        model.fit(x, np.full(30, 3), verbose=0)
    with pytest.raises(ValueError, match="same number of samples"):
        model.fit(x, y[:-1], verbose=0)
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(x, y, validation_split=1.5, verbose=0)
    with pytest.raises(TypeError, match="numeric"):
        model.predict(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="unique"):
        nn.Sequential([nn.Dense(2, name="d"), nn.Dense(2, name="d")])


def test_nan_loss_warns_and_stops(rng):
    x, y = _blobs(rng, n=64)
    x[5, 0] = np.nan
    model = _mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.warns(RuntimeWarning, match="training stopped"):
        h = model.fit(x, y, epochs=5, batch_size=8, shuffle=False, verbose=0)
    assert len(h.history["loss"]) == 1 and model.stop_training


# -- callbacks ---------------------------------------------------------------------------------

def test_early_stopping_restores_best_weights(rng):
    x, y = _blobs(rng, n=60)
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    seen = []
    record = nn.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(model.get_weights()))
    # min_delta so large that nothing after the first epoch counts as an improvement
    stop = nn.EarlyStopping(monitor="val_loss", min_delta=1e9, patience=1,
                            restore_best_weights=True)
    h = model.fit(x, y, epochs=10, validation_split=0.2, callbacks=[record, stop], verbose=0)
    assert len(h.epoch) == 2 and stop.stopped_epoch == 1 and stop.best_epoch == 0
    for got, want in zip(model.get_weights(), seen[0]):
        np.testing.assert_array_equal(got, want)


def test_early_stopping_logic():
    class Fake:
        stop_training = False

        def get_weights(self):
            return []

    stop = nn.EarlyStopping(monitor="val_accuracy", patience=2)
    stop.set_model(Fake())
    assert stop.mode == "max"
    for epoch, acc in enumerate([0.5, 0.6, 0.6, 0.55]):
        stop.on_epoch_end(epoch, {"val_accuracy": acc})
    assert stop.model.stop_training and stop.stopped_epoch == 3 and stop.best == 0.6
    missing = nn.EarlyStopping(monitor="val_nope")
    missing.set_model(Fake())
    with pytest.warns(RuntimeWarning, match="val_nope"):
        missing.on_epoch_end(0, {"loss": 1.0})


def test_model_checkpoint_and_lambda_batches(rng, tmp_path):
    x, y = _blobs(rng, n=40)
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    batches = []
    ckpt = nn.ModelCheckpoint(str(tmp_path / "best-{epoch:02d}.fnn"), monitor="loss",
                              save_best_only=True)
    every = nn.ModelCheckpoint(str(tmp_path / "last.fnn"), monitor="loss")
    cb = nn.LambdaCallback(on_batch_end=lambda b, logs: batches.append((b, logs["loss"])))
    model.fit(x, y, epochs=3, batch_size=10, callbacks=[ckpt, every, cb], verbose=0)
    assert [b for b, _ in batches] == [0, 1, 2, 3] * 3
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert "last.fnn" in saved and "best-01.fnn" in saved
    loaded = nn.load_model(tmp_path / "last.fnn")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_summary_and_weights(capsys):
    model = nn.Sequential([nn.Dense(128, activation="relu", input_shape=(784,)),
                           nn.Dropout(0.2), nn.Dense(10, activation="softmax")])
    model.summary()
    out = capsys.readouterr().out
    assert "Total params: 101,770" in out and "(None, 128)" in out and "Dropout" in out
    assert model.count_params() == 101770
    w = model.get_weights()
    assert [a.shape for a in w] == [(128, 784), (128,), (10, 128), (10,)]
    model.set_weights([a * 0 for a in w])
    assert all(np.all(a == 0) for a in model.get_weights())
    with pytest.raises(ValueError, match="4 weight arrays"):
        model.set_weights(w[:3])
    with pytest.raises(ValueError, match="not built"):
        nn.Sequential([nn.Dense(3)]).summary()


def test_fastnn_exports():
    assert fastnn.Sequential is nn.Sequential
    m = fastnn.Sequential()
    m.add(nn.Dense(3, input_shape=(2,)))
    m.add(nn.Activation("softmax"))
    m.build()
    assert m.output_shape == (None, 3)
