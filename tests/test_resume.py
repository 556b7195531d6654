"""Resuming training: ``fit(epochs=2)``, ``save``, ``load_model``, then
``fit(epochs=5, initial_epoch=2)`` gives the weights of one ``fit(epochs=5)`` bit for bit, and each
piece of saved state is needed for that.

The model shuffles, has a Dropout drawing from the global generator and one with its own seed, and
validates (split or explicit data). Every comparison is exact (``np.array_equal``).
"""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim

SEED = 11
EPOCHS, SAVED_AT = 5, 2
FIT = {"batch_size": 8, "verbose": 0}

OPTIMIZERS = {
    "adam": lambda: optim.Adam(learning_rate=optim.ExponentialDecay(0.01, 7, 0.8)),
    "sgd_nesterov": lambda: optim.SGD(optim.StepDecay(0.05, 10, 0.5), momentum=0.9,
                                      nesterov=True, weight_decay=1e-4),
    "adamw": lambda: optim.AdamW(optim.CosineDecay(0.01, 40), weight_decay=1e-3, clipnorm=1.0),
    "rmsprop": lambda: optim.RMSprop(0.005, momentum=0.5),
    "sgd": lambda: optim.SGD(0.05),
    # the averages are saved too (with a frequency, fit's end does not overwrite the weights)
    "adam_ema": lambda: optim.Adam(0.01, use_ema=True, ema_momentum=0.9,
                                   ema_overwrite_frequency=4),
}


def _data(n=60, seed=5):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 0.5)
    return x, y


X, Y = _data()
VALIDATION = {"split": {"validation_split": 0.2}, "data": {"validation_data": _data(20, 6)}}


def _model(make_optimizer):
    fastnn.random.seed(SEED)  # the initializers draw from it, and then the shuffles and masks
    model = nn.Sequential([
        nn.Dense(16, activation="relu", input_shape=(6,)),
        nn.Dropout(0.25),
        nn.Dense(16, activation="tanh"),
        nn.Dropout(0.2, seed=3),
        nn.Dense(3, activation="softmax"),
    ])
    model.compile(make_optimizer(), "sparse_categorical_crossentropy", ["accuracy"])
    return model


def _full_run(make_optimizer, fit_kw):
    model = _model(make_optimizer)
    history = model.fit(X, Y, epochs=EPOCHS, **fit_kw, **FIT)
    return model, history


def _resumed_run(make_optimizer, fit_kw, path, after_load=None):
    model = _model(make_optimizer)
    model.fit(X, Y, epochs=SAVED_AT, **fit_kw, **FIT)
    model.save(path)
    del model
    # Whatever happens between saving and loading must not matter: the file brings the state.
    fastnn.random.seed(12345)
    fastnn.random.get_generator().standard_normal(100)
    loaded = nn.load_model(path)
    if after_load is not None:
        after_load(loaded)
    history = loaded.fit(X, Y, epochs=EPOCHS, initial_epoch=SAVED_AT, **fit_kw, **FIT)
    return loaded, history


def _assert_same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb) > 0
    for i, (u, v) in enumerate(zip(wa, wb)):
        assert u.dtype == v.dtype and np.array_equal(u, v), f"weight {i} differs"


def _any_weight_differs(a, b):
    return any(not np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


def _assert_same_optimizer_state(a, b):
    sa, sb = a.optimizer.get_state(a.params), b.optimizer.get_state(b.params)
    assert sa["iterations"] == sb["iterations"]
    for ea, eb in zip(sa["slots"], sb["slots"]):
        assert (ea is None) == (eb is None)
        for u, v in zip(ea or (), eb or ()):
            assert (u is None and v is None) or np.array_equal(u, v)


# ---------------------------------------------------------------------------------------------
# The requirement


@pytest.mark.parametrize("validation", sorted(VALIDATION))
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_resume_is_bit_identical(name, validation, tmp_path):
    make, fit_kw = OPTIMIZERS[name], VALIDATION[validation]
    full, full_history = _full_run(make, fit_kw)
    full_random = fastnn.random.get_state()
    resumed, history = _resumed_run(make, fit_kw, tmp_path / "m.fnn")
    _assert_same_weights(resumed, full)
    _assert_same_optimizer_state(resumed, full)
    assert fastnn.random.get_state() == full_random
    assert history.epoch == [2, 3, 4]
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    for key, values in history.history.items():
        assert values == full_history.history[key][SAVED_AT:], key


def _drop_optimizer_moments(model):
    opt = model.optimizer
    opt.set_state(model.params, {"iterations": opt.iterations, "slots": [None] * len(model.params)})


def _restart_step_count(model):
    state = model.optimizer.get_state(model.params)
    model.optimizer.set_state(model.params, dict(state, iterations=0))


def _reseed_global_generator(model):
    fastnn.random.seed(SEED)


def _restart_seeded_dropout(model):
    layer = model.layers[3]
    layer.set_random_state(fastnn.random.get_state(fastnn.random.generator(layer.seed)))


@pytest.mark.parametrize("spoil", [_drop_optimizer_moments, _restart_step_count,
                                   _reseed_global_generator, _restart_seeded_dropout],
                         ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("name", ["adam", "sgd_nesterov"])
def test_each_piece_of_saved_state_matters(name, spoil, tmp_path):
    """Without any one restored piece the resumed weights differ: the test above is not
    passing by accident."""
    make, fit_kw = OPTIMIZERS[name], VALIDATION["split"]
    full, _ = _full_run(make, fit_kw)
    resumed, _ = _resumed_run(make, fit_kw, tmp_path / "m.fnn", after_load=spoil)
    assert _any_weight_differs(resumed, full)


def test_a_fresh_optimizer_after_loading_trains_as_before(tmp_path):
    full, _ = _full_run(OPTIMIZERS["adam"], VALIDATION["split"])
    path = tmp_path / "m.fnn"
    full.save(path)
    runs = []
    dropout_state = nn.load_model(path).layers[3].get_random_state()
    for compile_on_load in (True, False):
        model = nn.load_model(path, compile=compile_on_load)
        # compile=False leaves out the training state, the seeded Dropout's position included
        model.layers[3].set_random_state(dropout_state)
        model.compile(optim.SGD(0.1, momentum=0.5), "sparse_categorical_crossentropy")
        assert model.optimizer.iterations == 0
        assert model.optimizer.get_state(model.params)["slots"] == [None] * len(model.params)
        fastnn.random.seed(3)
        model.fit(X, Y, epochs=2, **FIT)
        assert model.optimizer.iterations == 2 * 8
        runs.append(model)
    _assert_same_weights(runs[0], runs[1])
    assert _any_weight_differs(runs[0], full)


def test_resume_from_model_checkpoint_files(tmp_path, capsys):
    make, fit_kw = OPTIMIZERS["sgd_nesterov"], VALIDATION["data"]
    plain, plain_history = _full_run(make, fit_kw)
    model = _model(make)
    ckpt = nn.ModelCheckpoint(str(tmp_path / "ckpt-{epoch}.fnn"), monitor="val_loss")
    model.fit(X, Y, epochs=EPOCHS, callbacks=[ckpt], **fit_kw, **FIT)
    _assert_same_weights(model, plain)  # saving along the way disturbs nothing
    for done in (1, 3):
        loaded = nn.load_model(tmp_path / f"ckpt-{done}.fnn")
        seen = []
        spy = nn.LambdaCallback(
            on_epoch_begin=lambda epoch, logs: seen.append(("begin", epoch)),
            on_epoch_end=lambda epoch, logs: seen.append(("end", epoch, logs["val_loss"])))
        again = nn.ModelCheckpoint(str(tmp_path / f"again{done}-{{epoch}}.fnn"),
                                   monitor="val_loss")
        fit_kw_verbose = dict(FIT, verbose=2)
        history = loaded.fit(X, Y, epochs=EPOCHS, initial_epoch=done, callbacks=[spy, again],
                             **fit_kw, **fit_kw_verbose)
        _assert_same_weights(loaded, plain)
        epochs = list(range(done, EPOCHS))
        assert history.epoch == epochs and spy.params["epochs"] == EPOCHS
        assert [s[1] for s in seen if s[0] == "begin"] == epochs
        assert [s[2] for s in seen if s[0] == "end"] == plain_history.history["val_loss"][done:]
        out = capsys.readouterr().out
        assert [line.split(" - ")[0] for line in out.splitlines()] == [
            f"Epoch {e + 1}/{EPOCHS}" for e in epochs]
        assert sorted(p.name for p in tmp_path.glob(f"again{done}-*")) == [
            f"again{done}-{e + 1}.fnn" for e in epochs]


# ---------------------------------------------------------------------------------------------
# What the file keeps


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_loading_restores_hyperparameters_schedule_and_state(name, tmp_path):
    model = _model(OPTIMIZERS[name])
    model.fit(X, Y, epochs=2, **FIT)
    path = tmp_path / "m.fnn"
    model.save(path)
    loaded = nn.load_model(path)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert type(loaded.optimizer.learning_rate) is type(model.optimizer.learning_rate)
    assert loaded.optimizer.iterations == model.optimizer.iterations == 2 * 8
    assert loaded.optimizer.current_learning_rate() == model.optimizer.current_learning_rate()
    _assert_same_optimizer_state(loaded, model)


def test_optimizer_settings_are_saved_as_they_are_at_saving(tmp_path):
    model = _model(OPTIMIZERS["sgd_nesterov"])
    model.fit(X, Y, epochs=1, **FIT)
    model.optimizer.learning_rate = optim.CosineDecay(0.02, 30, alpha=0.1)
    model.optimizer.weight_decay = 0.0
    path = tmp_path / "m.fnn"
    model.save(path)
    loaded = nn.load_model(path)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.learning_rate.alpha == 0.1 and loaded.optimizer.weight_decay == 0.0


def _rewrite(src, dst, drop=(), config_edit=None, replace=None):
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist() if n not in drop}
    if config_edit is not None:
        config = json.loads(members["fastnn.json"])
        config_edit(config)
        members["fastnn.json"] = json.dumps(config).encode()
    members.update(replace or {})
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)


def test_files_without_training_state_still_load(tmp_path):
    model = _model(OPTIMIZERS["adam"])
    model.fit(X, Y, epochs=1, **FIT)
    path, old = tmp_path / "m.fnn", tmp_path / "old.fnn"
    model.save(path)
    # a file as written before the optimizer and random state were saved
    _rewrite(path, old, drop=("optimizer.npz",),
             config_edit=lambda c: [c.pop("training"), c.pop("class_name")])
    fastnn.random.seed(4)
    before = fastnn.random.get_state()
    loaded = nn.load_model(old)
    assert fastnn.random.get_state() == before  # nothing to restore: the generator is left alone
    assert isinstance(loaded.optimizer, optim.Adam) and loaded.optimizer.iterations == 0
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    loaded.fit(X, Y, epochs=1, **FIT)
    assert loaded.optimizer.iterations == 8


def test_uncompiled_models_and_compile_false_leave_the_generator_alone(tmp_path):
    bare = tmp_path / "bare.fnn"
    nn.Sequential([nn.Dense(3, input_shape=(6,)), nn.Dropout(0.5, seed=1)]).save(bare)
    model = _model(OPTIMIZERS["rmsprop"])
    model.fit(X, Y, epochs=1, **FIT)
    trained = tmp_path / "trained.fnn"
    model.save(trained)
    fastnn.random.seed(4)
    before = fastnn.random.get_state()
    assert nn.load_model(bare).optimizer is None
    plain = nn.load_model(trained, compile=False)
    assert plain.optimizer is None and plain.loss is None
    assert fastnn.random.get_state() == before
    nn.load_model(trained)
    assert fastnn.random.get_state() != before


def test_damaged_training_state_raises_value_error(tmp_path):
    model = _model(OPTIMIZERS["adam"])
    model.fit(X, Y, epochs=1, **FIT)
    path = tmp_path / "m.fnn"
    model.save(path)
    with zipfile.ZipFile(path) as z:
        state = np.load(io.BytesIO(z.read("optimizer.npz")), allow_pickle=False)
        arrays = {k: state[k] for k in state.files}

    def npz(**changed):
        buf = io.BytesIO()
        np.savez(buf, **dict(arrays, **changed))
        return buf.getvalue()

    buf = io.BytesIO()
    np.savez(buf, s0000_0=np.array([{"evil": 1}], dtype=object))
    cases = {
        "no_npz": ({"drop": ("optimizer.npz",)}, "no optimizer.npz"),
        "junk_npz": ({"replace": {"optimizer.npz": b"junk"}}, "corrupt"),
        "pickle": ({"replace": {"optimizer.npz": buf.getvalue()}}, "corrupt"),
        "shape": ({"replace": {"optimizer.npz": npz(s0000_0=np.zeros((2, 2), np.float32))}},
                  "does not fit"),
        "extra": ({"replace": {"optimizer.npz": npz(s9999_0=np.zeros(1))}}, "unexpected"),
        "missing": ({"config_edit": lambda c: c["training"]["optimizer"]["slots"].__setitem__(
            0, [True, True, True])}, "damaged"),
        "count": ({"config_edit": lambda c: c["training"]["optimizer"]["slots"].append(None)},
                  "does not fit"),
        "layer": ({"config_edit": lambda c: c["training"]["random"]["layers"].__setitem__(
            "nope", {})}, "random state"),
        "generator": ({"config_edit": lambda c: c["training"]["random"]["global"].__setitem__(
            "bit_generator", "Evil")}, "random state"),
        "no_random": ({"config_edit": lambda c: c["training"].pop("random")}, "damaged"),
    }
    fastnn.random.seed(4)
    before = fastnn.random.get_state()
    for name, (edit, match) in cases.items():
        bad = tmp_path / f"{name}.fnn"
        _rewrite(path, bad, **edit)
        with pytest.raises(ValueError, match=match):
            nn.load_model(bad)
        assert fastnn.random.get_state() == before, name  # a failed load moves nothing


# ---------------------------------------------------------------------------------------------
# The pieces: optimizer state, generator state, Dropout, initial_epoch


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_state_moves_between_optimizers_and_parameters(name):
    rng = np.random.default_rng(0)
    params = [rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(3)]
    grads = [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(6)]
    first = OPTIMIZERS[name]()
    for g in grads[:3]:
        first.step(params, [a.copy() for a in g])  # clipnorm scales gradients in place
    state = first.get_state(params)
    copies = [p.copy() for p in params]  # other arrays: the state follows the order, not ids
    second = OPTIMIZERS[name]()
    second.set_state(copies, state)
    for g in grads[3:]:
        first.step(params, [a.copy() for a in g])
        second.step(copies, [a.copy() for a in g])
    for a, b in zip(params, copies):
        assert np.array_equal(a, b)
    # get_state hands out copies
    for entry in state["slots"]:
        for a in entry:
            if a is not None:
                a[...] = 7
    assert not any(np.array_equal(a, np.full_like(a, 7)) for entry in
                   first.get_state(params)["slots"] for a in entry if a is not None)


def test_optimizer_set_state_rejects_what_does_not_fit():
    p = [np.zeros((2, 3), np.float32)]
    g = [np.ones((2, 3), np.float32)]
    momentum = optim.SGD(0.1, momentum=0.9)
    momentum.step(p, g)
    state = momentum.get_state(p)
    assert state["iterations"] == 1 and state["slots"][0][0].shape == (2, 3)
    with pytest.raises(ValueError, match="other settings"):
        optim.SGD(0.1).set_state(p, state)
    with pytest.raises(ValueError, match="other settings"):
        optim.Adam().set_state(p, state)
    with pytest.raises(ValueError, match="2 were given"):
        momentum.set_state(p * 2, state)
    with pytest.raises(ValueError, match="state is float64"):
        momentum.set_state(p, {"iterations": 1, "slots": [(np.zeros((2, 3)),)]})
    with pytest.raises(ValueError, match="state is float32"):
        momentum.set_state(p, {"iterations": 1, "slots": [(np.zeros(6, np.float32),)]})
    for bad in (-1, 1.5, True, None):
        with pytest.raises(ValueError, match="iterations"):
            momentum.set_state(p, {"iterations": bad, "slots": [None]})
    momentum.set_state(p, {"iterations": 5, "slots": [None]})  # forgets the momentum
    assert momentum.get_state(p) == {"iterations": 5, "slots": [None]}


def test_generator_state_round_trips_through_json():
    fastnn.random.seed(8)
    fastnn.random.get_generator().random(3)
    state = json.loads(json.dumps(fastnn.random.get_state()))
    expected = fastnn.random.get_generator().random(5)
    fastnn.random.seed(9)
    fastnn.random.set_state(state)
    assert np.array_equal(fastnn.random.get_generator().random(5), expected)
    private = np.random.default_rng(2)
    copy = fastnn.random.generator_from_state(fastnn.random.get_state(private))
    assert fastnn.random.draw_seed(copy) == fastnn.random.draw_seed(private)
    for bad in (None, {}, {"bit_generator": "MT19937"}, {"bit_generator": "PCG64"},
                {"bit_generator": "PCG64", "state": {"state": "x", "inc": 1}}):
        with pytest.raises(ValueError):
            fastnn.random.generator_from_state(bad)
    with pytest.raises(TypeError, match="MT19937"):
        fastnn.random.get_state(np.random.Generator(np.random.MT19937(1)))


def test_dropout_random_state():
    seeded, unseeded = nn.Dropout(0.5, seed=2), nn.Dropout(0.5)
    assert unseeded.get_random_state() is None
    unseeded.set_random_state(None)
    with pytest.raises(ValueError, match="no seed"):
        unseeded.set_random_state(seeded.get_random_state())
    with pytest.raises(ValueError, match="seed=2"):
        seeded.set_random_state(None)
    x = np.ones((4, 8), np.float32)
    state = seeded.get_random_state()
    first = seeded.forward(x, training=True)
    seeded.set_random_state(state)
    assert np.array_equal(seeded.forward(x, training=True), first)
    assert not np.array_equal(seeded.forward(x, training=True), first)


def test_initial_epoch_checks_and_bounds():
    model = _model(OPTIMIZERS["sgd"])
    for bad in (-1, 1.5, "2", True):
        with pytest.raises(ValueError, match="initial_epoch"):
            model.fit(X, Y, epochs=3, initial_epoch=bad, **FIT)
    before = model.get_weights()
    history = model.fit(X, Y, epochs=2, initial_epoch=2, **FIT)  # nothing left to run
    assert history.epoch == [] and history.history == {}
    assert model.optimizer.iterations == 0
    for a, b in zip(before, model.get_weights()):
        assert np.array_equal(a, b)
    history = model.fit(X, Y, epochs=3, initial_epoch=np.int64(1), **FIT)
    assert history.epoch == [1, 2] and model.optimizer.iterations == 2 * 8


@pytest.mark.parametrize("threads", [1, 2])
def test_resume_at_a_fixed_thread_count(threads, tmp_path):
    before = fastnn.get_num_threads()
    fastnn.set_num_threads(threads)
    try:
        full, _ = _full_run(OPTIMIZERS["adam"], VALIDATION["split"])
        resumed, _ = _resumed_run(OPTIMIZERS["adam"], VALIDATION["split"], tmp_path / "m.fnn")
    finally:
        fastnn.set_num_threads(before)
    _assert_same_weights(resumed, full)
