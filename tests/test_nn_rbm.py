"""nn.RBM and nn.DBN: training on tiny data, inference, sampling, saving, the DBN's model."""
from __future__ import annotations

import numpy as np
import pytest

from fastnn import nn, ops
from fastnn import reference as ref

PATTERNS = np.array([[1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0],
                     [0, 0, 0, 1, 1, 1, 0, 0, 1, 0, 0, 1],
                     [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0],
                     [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0]], dtype=np.float32)


def _tiny_data(rng, copies=64):
    return np.repeat(PATTERNS, copies, axis=0)[rng.permutation(len(PATTERNS) * copies)]


@pytest.mark.parametrize("persistent", [True, False])
def test_rbm_learns_to_reconstruct_a_few_patterns(backend, rng, persistent):
    x = _tiny_data(rng)
    rbm = nn.RBM(16, k=1, persistent=persistent, learning_rate=0.1, batch_size=16,
                 momentum=0.5, seed=1)
    hist = rbm.fit(x, epochs=40, verbose=0)
    errs = hist.history["reconstruction_error"]
    assert len(errs) == 40 and errs[-1] < 0.5 * errs[0]
    rec = rbm.reconstruct(PATTERNS)
    np.testing.assert_array_equal(rec > 0.5, PATTERNS > 0.5)
    # The patterns are far likelier (lower free energy) than random states.
    noise = (rng.random((32, 12)) < 0.5).astype(np.float32)
    assert rbm.free_energy(PATTERNS).max() < np.median(rbm.free_energy(noise))
    pl = hist.history["pseudo_likelihood"]
    assert pl[-1] > pl[0]


def test_rbm_inference_matches_the_reference(rng):
    x = _tiny_data(rng, 4)
    rbm = nn.RBM(5, seed=0, dtype="float64")
    rbm.fit(x, epochs=2, verbose=0)
    np.testing.assert_allclose(rbm.transform(x), ref.rbm_hidden(x, rbm.w, rbm.b_hid), rtol=1e-12)
    np.testing.assert_allclose(rbm.reconstruct(x), ref.rbm_visible(
        ref.rbm_hidden(x, rbm.w, rbm.b_hid), rbm.w, rbm.b_vis), rtol=1e-12)
    np.testing.assert_allclose(rbm.score_samples(x, seed=3),
                               ref.rbm_pseudo_likelihood(x, rbm.w, rbm.b_vis, rbm.b_hid, seed=3),
                               rtol=1e-10)


def test_rbm_fit_is_reproducible_with_a_seed(rng):
    x = _tiny_data(rng, 8)
    a = nn.RBM(6, seed=3)
    a.fit(x, epochs=2, verbose=0)
    b = nn.RBM(6, seed=3)
    b.fit(x, epochs=2, verbose=0)
    np.testing.assert_array_equal(a.w, b.w)


def test_sample_and_gibbs_give_the_learned_patterns(rng):
    x = _tiny_data(rng)
    rbm = nn.RBM(16, learning_rate=0.1, batch_size=16, momentum=0.5, seed=2)
    rbm.fit(x, epochs=40, verbose=0)
    s = rbm.sample(20, gibbs_steps=50, seed=0)
    assert s.shape == (20, 12) and np.all((s >= 0) & (s <= 1))
    # Each sample is close to one of the patterns.
    d = np.abs((s > 0.5)[:, None, :] ^ (PATTERNS > 0.5)[None]).sum(-1).min(1)
    assert np.mean(d <= 1) >= 0.8


def test_gaussian_rbm_trains_on_standardized_data(rng):
    z = rng.standard_normal((256, 2))
    x = np.concatenate([z, z @ np.array([[1.0, 0.5], [0.5, -1.0]])], axis=1)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    rbm = nn.RBM(8, visible="gaussian", learning_rate=0.01, batch_size=32, seed=0)
    hist = rbm.fit(x, epochs=30, verbose=0)
    errs = hist.history["reconstruction_error"]
    assert errs[-1] < errs[0]
    with pytest.raises(ValueError, match="Bernoulli"):
        rbm.score_samples(x)


def test_rbm_save_load_round_trip(tmp_path, rng):
    x = _tiny_data(rng, 8)
    rbm = nn.RBM(7, momentum=0.5, seed=0)
    rbm.fit(x, epochs=1, verbose=0)
    path = tmp_path / "rbm.npz"
    rbm.save(path)
    back = nn.RBM.load(path)
    for name in ("w", "b_vis", "b_hid", "chain"):
        np.testing.assert_array_equal(getattr(back, name), getattr(rbm, name))
    for a, b in zip(back.velocity, rbm.velocity):
        np.testing.assert_array_equal(a, b)
    assert back.get_config() == rbm.get_config()
    np.testing.assert_array_equal(back.transform(x), rbm.transform(x))
    back.fit(x, epochs=1, verbose=0)  # training continues from the saved state


def test_rbm_fit_progress_and_errors(capsys, rng):
    x = _tiny_data(rng, 4)
    rbm = nn.RBM(3, seed=0)
    rbm.fit(x, epochs=1, verbose=2)
    assert "reconstruction_error" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        nn.RBM(3).fit(x * 2, verbose=0)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        nn.RBM(3).fit(bad, verbose=0)
    with pytest.raises(ValueError, match="features"):
        rbm.transform(x[:, :5])
    rbm.w[0, 0] = np.inf
    with pytest.raises(ValueError, match="w contains NaN or inf"):
        rbm.fit(x, verbose=0)
    with pytest.raises(ValueError, match="k must be"):
        nn.RBM(3, k=0)
    with pytest.raises(RuntimeError, match="fit"):
        nn.RBM(3).transform(x)


def test_dbn_pretrain_and_to_model(rng):
    x = _tiny_data(rng, 16)
    dbn = nn.DBN([12, 8, 5], learning_rate=0.1, batch_size=16, seed=0)
    hists = dbn.pretrain(x, epochs=[3, 2], verbose=0)
    assert [len(h.history["reconstruction_error"]) for h in hists] == [3, 2]
    top = dbn.transform(x)
    assert top.shape == (len(x), 5)
    model = dbn.to_model(head=4)
    assert [layer.units for layer in model.layers] == [8, 5, 4]
    np.testing.assert_array_equal(model.layers[0].kernel, dbn.rbms[0].w)
    np.testing.assert_array_equal(model.layers[1].bias, dbn.rbms[1].b_hid)
    # Without the head, the model computes exactly the DBN's features.
    np.testing.assert_allclose(dbn.to_model().predict(x), top, rtol=1e-5, atol=1e-6)
    labels = np.argmax(x @ rng.standard_normal((12, 4)), axis=1)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, labels, epochs=2, batch_size=16, verbose=0)
    with pytest.raises(ValueError, match="features"):
        dbn.pretrain(x[:, :5], verbose=0)
    with pytest.raises(RuntimeError, match="pretrain"):
        nn.DBN([12, 4]).to_model()
