"""Model files: save -> load predicts bit-identically; writes are atomic; foreign or damaged files
give a clear ValueError; nothing is unpickled."""
from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

from fastnn import nn, optim
from fastnn.nn import saving


def _model():
    return nn.Sequential([
        nn.Reshape((4, 4), input_shape=(16,)),
        nn.Flatten(),
        nn.Dense(12, activation="leaky_relu", alpha=0.2,
                 kernel_regularizer=nn.regularizers.L1L2(l1=1e-4, l2=1e-3)),
        nn.Maxout(4, pieces=3),
        nn.Dropout(0.1, seed=4),
        nn.Dense(5, use_bias=False, kernel_initializer="he_normal"),
        nn.Activation("softmax"),
    ])


def _trained(rng):
    model = _model()
    model.compile(optim.AdamW(learning_rate=optim.CosineDecay(0.01, 50), weight_decay=1e-3),
                  "sparse_categorical_crossentropy", ["accuracy"])
    x = rng.standard_normal((40, 16)).astype(np.float32)
    y = rng.integers(0, 5, 40)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    return model, x, y


def test_save_load_predicts_bit_identically(rng, tmp_path):
    model, x, y = _trained(rng)
    path = tmp_path / "model.fnn"
    model.save(path)
    loaded = nn.load_model(path)
    assert [type(a).__name__ for a in loaded.layers] == [type(a).__name__ for a in model.layers]
    assert [a.name for a in loaded.layers] == [a.name for a in model.layers]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    # compile settings come back: it evaluates the same and can keep training
    assert loaded.evaluate(x, y) == model.evaluate(x, y)
    assert isinstance(loaded.optimizer, optim.AdamW)
    assert isinstance(loaded.optimizer.learning_rate, optim.CosineDecay)
    loaded.fit(x, y, epochs=1, verbose=0)
    assert sorted(os.listdir(tmp_path)) == ["model.fnn"]  # no temporary files left


def test_saved_file_is_a_plain_zip_of_json_and_npz(rng, tmp_path):
    model, _, _ = _trained(rng)
    path = tmp_path / "m.fnn"
    model.save(path)
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["fastnn.json", "optimizer.npz", "weights.npz"]
        config = json.loads(z.read("fastnn.json"))
        weights = np.load(io.BytesIO(z.read("weights.npz")), allow_pickle=False)
        assert len(weights.files) == len(model.get_weights())
        state = np.load(io.BytesIO(z.read("optimizer.npz")), allow_pickle=False)
        assert len(state.files) == 2 * len(model.params)  # AdamW: two moments per parameter
    assert config["format"] == "fastnn.model" and config["format_version"] == 1
    assert config["model"]["layers"][2]["config"]["activation"] == "leaky_relu"
    assert config["training"]["optimizer"]["iterations"] == model.optimizer.iterations == 10
    assert list(config["training"]["random"]["layers"]) == [model.layers[4].name]  # Dropout
    uncompiled = tmp_path / "bare.fnn"
    _model().save(uncompiled)  # nothing to resume: no training state
    with zipfile.ZipFile(uncompiled) as z:
        assert sorted(z.namelist()) == ["fastnn.json", "weights.npz"]
        assert "training" not in json.loads(z.read("fastnn.json"))


def test_unbuilt_and_uncompiled_models(tmp_path):
    path = tmp_path / "m.fnn"
    nn.Sequential([nn.Dense(3), nn.Dense(2)]).save(path)
    loaded = nn.load_model(path)
    assert not loaded.built and loaded.loss is None
    x = np.ones((2, 7), np.float32)
    assert loaded.predict(x).shape == (2, 2)


def test_overwrite_is_atomic(rng, tmp_path, monkeypatch):
    model, x, _ = _trained(rng)
    path = tmp_path / "m.fnn"
    model.save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", boom)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old file is intact
    assert sorted(os.listdir(tmp_path)) == ["m.fnn"]  # and no partial file is left
    np.testing.assert_array_equal(nn.load_model(path).predict(x), model.predict(x))


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04garbage" * 10])
def test_garbage_files_raise_value_error(tmp_path, content):
    path = tmp_path / "bad.fnn"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a fastnn model file"):
        nn.load_model(path)


def test_truncated_file(rng, tmp_path):
    model, _, _ = _trained(rng)
    path = tmp_path / "m.fnn"
    model.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError):
        nn.load_model(path)


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def test_foreign_and_damaged_archives(rng, tmp_path):
    model, _, _ = _trained(rng)
    good = tmp_path / "good.fnn"
    model.save(good)
    with zipfile.ZipFile(good) as z:
        config, weights = z.read("fastnn.json"), z.read("weights.npz")
    cases = {
        "other.zip": ({"readme.txt": b"hello"}, "not a fastnn model file"),
        "weights_only.npz": ({"w0000.npy": b"x"}, "not a fastnn model file"),
        "badjson.fnn": ({"fastnn.json": b"{nope", "weights.npz": weights}, "not valid JSON"),
        "format.fnn": ({"fastnn.json": json.dumps({"format": "keras"}),
                        "weights.npz": weights}, "not a fastnn model file"),
        "future.fnn": ({"fastnn.json": config.replace(b'"format_version": 1',
                                                       b'"format_version": 99'),
                        "weights.npz": weights}, "format version 99"),
        "badweights.fnn": ({"fastnn.json": config, "weights.npz": b"junk"}, "corrupt"),
    }
    for name, (members, match) in cases.items():
        _zip(tmp_path / name, members)
        with pytest.raises(ValueError, match=match):
            nn.load_model(tmp_path / name)
    # weights that do not fit the architecture
    buf = io.BytesIO()
    np.savez(buf, w0000=np.zeros((2, 2), np.float32))
    _zip(tmp_path / "mismatch.fnn", {"fastnn.json": config, "weights.npz": buf.getvalue()})
    with pytest.raises(ValueError, match="do not fit"):
        nn.load_model(tmp_path / "mismatch.fnn")


def test_pickled_arrays_are_refused(rng, tmp_path):
    model, _, _ = _trained(rng)
    good = tmp_path / "good.fnn"
    model.save(good)
    with zipfile.ZipFile(good) as z:
        config = z.read("fastnn.json")
    buf = io.BytesIO()
    np.savez(buf, w0000=np.array([{"evil": 1}], dtype=object))
    _zip(tmp_path / "pickle.fnn", {"fastnn.json": config, "weights.npz": buf.getvalue()})
    with pytest.raises(ValueError, match="corrupt"):
        nn.load_model(tmp_path / "pickle.fnn")


def test_missing_file_and_custom_layers(tmp_path):
    with pytest.raises(FileNotFoundError):
        nn.load_model(tmp_path / "nothing.fnn")
    with pytest.raises(ValueError, match="directory"):
        nn.load_model(tmp_path)

    class Twice(nn.Layer):
        def forward(self, x, training=False):
            self._ensure_built(x)
            return x * 2

        def backward(self, dy, need_dx=True):
            return dy * 2

    model = nn.Sequential([nn.Dense(2, input_shape=(3,)), Twice()])
    path = tmp_path / "custom.fnn"
    model.save(path)
    loaded = nn.load_model(path, custom_objects={"Twice": Twice})
    x = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    # a layer class this process does not know (Layer subclasses register themselves by name)
    with zipfile.ZipFile(path) as z:
        config, weights = z.read("fastnn.json"), z.read("weights.npz")
    _zip(tmp_path / "unknown.fnn", {"fastnn.json": config.replace(b'"Twice"', b'"Thrice"'),
                                    "weights.npz": weights})
    with pytest.raises(ValueError, match="custom_objects"):
        nn.load_model(tmp_path / "unknown.fnn")


def test_save_and_load_weights(rng, tmp_path):
    model, x, _ = _trained(rng)
    path = tmp_path / "w.npz"
    model.save_weights(path)
    other = _model()
    other.load_weights(path)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    with pytest.raises(ValueError):
        nn.Sequential([nn.Dense(3, input_shape=(16,))]).load_weights(path)
    assert saving.FORMAT_VERSION == 1


def test_model_class_comes_from_the_registry(tmp_path):
    class Wide(nn.Sequential):
        pass

    path = tmp_path / "wide.fnn"
    Wide([nn.Dense(2, input_shape=(3,))]).save(path)
    assert type(nn.load_model(path)) is Wide  # subclasses register themselves
    with zipfile.ZipFile(path) as z:
        config, weights = json.loads(z.read("fastnn.json")), z.read("weights.npz")
    assert config["class_name"] == "Wide"
    config["class_name"] = "Narrow"
    _zip(tmp_path / "narrow.fnn", {"fastnn.json": json.dumps(config), "weights.npz": weights})
    with pytest.raises(ValueError, match="custom_objects"):
        nn.load_model(tmp_path / "narrow.fnn")
    assert type(nn.load_model(tmp_path / "narrow.fnn", custom_objects={"Narrow": Wide})) is Wide
    del config["class_name"]  # files from before the class name was stored hold a Sequential
    _zip(tmp_path / "old.fnn", {"fastnn.json": json.dumps(config), "weights.npz": weights})
    assert type(nn.load_model(tmp_path / "old.fnn")) is nn.Sequential
