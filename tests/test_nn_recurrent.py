"""The sequence layers of fastnn.nn: SimpleRNN, LSTM, GRU, Bidirectional, TimeDistributed,
Embedding (and its op), the padding mask that runs through them, PyTorch weight interop and
saving.

Values are compared with the float64 references of fastnn.reference (the recurrent ops', and a
loop-based embedding), with PyTorch's nn.LSTM / nn.GRU / nn.RNN when installed, and every
backward with central finite differences in float64 through the public layer API. Shapes are
tiny and awkward (B = 1, T = 1, H = 1, I != H, mixed lengths) on purpose.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import nn, ops, optim, reference

from helpers import check_op, numeric_grad


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # no spinning PyTorch workers beside fastnn's on a small machine
    yield torch
    torch.set_num_threads(threads)


def _t(torch, a):
    return torch.from_numpy(np.ascontiguousarray(a))


RNN_KINDS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


def _make(kind, units, **kw):
    if kind == "lstm":
        return nn.LSTM(units, **kw)
    if kind == "gru":
        return nn.GRU(units, **kw)
    return nn.SimpleRNN(units, activation=kind[4:], **kw)


def _built(layer):
    layer.build(layer.batch_input_shape)
    return layer


def _randomize(layer, rng, scale=0.5):
    for p in layer.params:
        p[...] = rng.standard_normal(p.shape) * scale


def _reference(kind, layer, x, lengths=None, states=None):
    """(y, final states) of the float64 reference for this layer's weights."""
    w = (layer.kernel, layer.recurrent_kernel, layer.bias_ih, layer.bias_hh)
    b = x.shape[0]
    states = states or [np.zeros((b, layer.units))] * (2 if kind == "lstm" else 1)
    if kind == "lstm":
        y, h, c = reference.lstm(x, states[0], states[1], *w, lengths=lengths)
        return y, [h, c]
    if kind == "gru":
        y, h = reference.gru(x, states[0], *w, lengths=lengths)
    else:
        y, h = reference.rnn(x, states[0], *w, nonlinearity=kind[4:], lengths=lengths)
    return y, [h]


def _check_layer_grads(layer, x, rng, mask=None, atol=1e-7):
    """dx and every parameter gradient of ``sum(forward(x) * w)`` against finite
    differences (float64)."""
    y = layer.forward(x, mask=mask) if mask is not None else layer.forward(x)
    w = rng.standard_normal(y.shape)

    def f():
        out = layer.forward(x, mask=mask) if mask is not None else layer.forward(x)
        return float(np.sum(out * w))

    f()
    dx = layer.backward(w)
    grads = [g.copy() for g in layer.grads]
    np.testing.assert_allclose(dx, numeric_grad(f, x), rtol=1e-6, atol=atol)
    for p, g in zip(layer.params, grads):
        np.testing.assert_allclose(g, numeric_grad(f, p), rtol=1e-6, atol=atol)


# -- layer forward against the references ---------------------------------------------------------

SHAPES = [(1, 1, 1, 1), (2, 5, 3, 7), (3, 4, 7, 1), (1, 6, 2, 33)]  # (B, T, I, H)


@pytest.mark.parametrize("kind", RNN_KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_matches_reference(backend, rng, kind, dtype):
    for b, t, i, h in SHAPES:
        layer = _make(kind, h, return_sequences=True, return_state=True, dtype=dtype)
        x = rng.standard_normal((b, t, i)).astype(dtype)
        layer.build((None, t, i))
        _randomize(layer, rng)
        out = layer.forward(x)
        ref_y, ref_states = _reference(kind, layer, x)
        check_op(out[0], ref_y, dtype, reduction=i + h)
        for got, ref in zip(out[1:], ref_states):
            check_op(got, ref, dtype, reduction=i + h)
        last = _make(kind, h, dtype=dtype)  # return_sequences=False: the final h
        last.build((None, t, i))
        last.set_weights(layer.get_weights())
        check_op(last.forward(x), ref_states[0], dtype, reduction=i + h)


@pytest.mark.parametrize("kind", RNN_KINDS)
def test_masked_forward_matches_reference_with_lengths(rng, kind):
    b, t, i, h = 4, 6, 3, 5
    layer = _make(kind, h, return_sequences=True, dtype="float64")
    x = rng.standard_normal((b, t, i))
    lengths = np.array([6, 1, 3, 0])
    mask = np.arange(t) < lengths[:, None]
    layer.build((None, t, i))
    _randomize(layer, rng)
    y = layer.forward(x, mask=mask)
    ref_y, _ = _reference(kind, layer, x[:3], lengths=lengths[:3])
    check_op(y[:3], ref_y, reduction=i + h)
    assert not y[3].any()  # a sequence without steps: zero outputs
    last = _make(kind, h, return_state=True, dtype="float64")
    last.build((None, t, i))
    last.set_weights(layer.get_weights())
    out = last.forward(x, mask=mask)
    for s in out[1:]:
        assert not s[3].any()  # ... and its (zero) initial state
    np.testing.assert_array_equal(out[0][:3], y[[0, 1, 2], lengths[:3] - 1])


def test_unit_forget_bias_and_initializers(rng):
    layer = nn.LSTM(8, dtype="float64")
    layer.build((None, 3, 5))
    assert layer.kernel.shape == (32, 5) and layer.recurrent_kernel.shape == (32, 8)
    np.testing.assert_array_equal(layer.bias_ih, np.repeat([0.0, 1.0, 0.0, 0.0], 8))
    assert not layer.bias_hh.any()
    u = layer.recurrent_kernel  # one orthogonal (32, 8) matrix: orthonormal columns
    np.testing.assert_allclose(u.T @ u, np.eye(8), atol=1e-12)
    limit = np.sqrt(6.0 / (5 + 32))
    assert np.abs(layer.kernel).max() <= limit
    assert not _built(nn.LSTM(8, unit_forget_bias=False, input_shape=(3, 5))).bias_ih.any()
    no_bias = _built(nn.GRU(4, use_bias=False, input_shape=(3, 5)))
    assert len(no_bias.params) == 2 and no_bias.count_params() == 3 * 4 * (5 + 4)


def test_regularizers(rng):
    plain = nn.GRU(3, dtype="float64")
    reg = nn.GRU(3, dtype="float64", kernel_regularizer=nn.regularizers.L2(0.1),
                 recurrent_regularizer=nn.regularizers.L1(0.2), bias_regularizer="l2")
    x = rng.standard_normal((2, 4, 2))
    plain.build((None, 4, 2))
    reg.build((None, 4, 2))
    _randomize(plain, rng)
    reg.set_weights(plain.get_weights())
    dy = rng.standard_normal((2, 3))
    for layer in (plain, reg):
        layer.forward(x)
        layer.backward(dy)
    k, u, bi, bh = plain.params
    want = (0.1 * np.sum(k * k) + 0.2 * np.sum(np.abs(u))
            + 0.01 * (np.sum(bi * bi) + np.sum(bh * bh)))
    assert reg.has_regularizer and not plain.has_regularizer
    np.testing.assert_allclose(reg.regularization_loss(), want, rtol=1e-12)
    extra = [0.2 * k, 0.2 * np.sign(u), 0.02 * bi, 0.02 * bh]
    for g, g0, e in zip(reg.grads, plain.grads, extra):
        np.testing.assert_allclose(g - g0, e, rtol=1e-10, atol=1e-14)


# -- backward against finite differences -----------------------------------------------------------

@pytest.mark.parametrize("kind", RNN_KINDS)
@pytest.mark.parametrize("case", ["sequences", "last", "masked", "backwards"])
def test_backward_matches_finite_differences(rng, kind, case):
    b, t, i, h = 3, 4, 3, 2
    layer = _make(kind, h, return_sequences=case != "last", go_backwards=case == "backwards",
                  dtype="float64")
    layer.build((None, t, i))
    _randomize(layer, rng)
    x = rng.standard_normal((b, t, i))
    if kind == "rnn_relu":
        x += 0.3  # keep pre-activations off the kink, where differences are not derivatives
    mask = None
    if case in ("masked", "backwards"):
        mask = np.arange(t) < np.array([4, 2, 0])[:, None]
    _check_layer_grads(layer, x, rng, mask=mask)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_return_state_backward(rng, kind):
    """Gradients flowing into the final states (an encoder feeding a decoder), and into the
    initial states."""
    b, t, i, h = 2, 3, 2, 3
    layer = _make(kind, h, return_sequences=True, return_state=True, dtype="float64")
    layer.build((None, t, i))
    _randomize(layer, rng)
    x = rng.standard_normal((b, t, i))
    n_states = 2 if kind == "lstm" else 1
    init = [rng.standard_normal((b, h)) for _ in range(n_states)]
    outs = layer.forward(x, initial_state=init)
    ws = [rng.standard_normal(o.shape) for o in outs]

    def f():
        return float(sum(np.sum(o * w) for o, w in
                         zip(layer.forward(x, initial_state=init), ws)))

    f()
    dx = layer.backward(ws)
    d_init = [d.copy() for d in layer.initial_state_grads]
    np.testing.assert_allclose(dx, numeric_grad(f, x), rtol=1e-6, atol=1e-8)
    for s, d in zip(init, d_init):
        np.testing.assert_allclose(d, numeric_grad(f, s), rtol=1e-6, atol=1e-8)
    layer.forward(x, initial_state=init)
    layer.backward([None] + ws[1:])  # None: no gradient for that output
    with pytest.raises(ValueError, match="return_state"):
        layer.backward(ws[0])


def test_bidirectional_and_time_distributed_backward(rng):
    model = nn.Sequential([
        nn.Bidirectional(nn.GRU(2, return_sequences=True, dtype="float64"), merge_mode="mul",
                         input_shape=(4, 3)),
        nn.TimeDistributed(nn.Dense(3, activation="tanh", dtype="float64")),
        nn.Bidirectional(nn.LSTM(2, dtype="float64"), merge_mode="concat"),
    ])
    for layer in model.layers:
        _randomize(layer, rng)
    x = rng.standard_normal((2, 4, 3))
    w = rng.standard_normal((2, 4))

    def f():
        return float(np.sum(model.forward(x) * w))

    f()
    dx = model.backward(w)
    grads = [g.copy() for g in model.grads]
    np.testing.assert_allclose(dx, numeric_grad(f, x), rtol=1e-6, atol=1e-8)
    for p, g in zip(model.params, grads):
        np.testing.assert_allclose(g, numeric_grad(f, p), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave"])
def test_bidirectional_masked_backward(rng, merge_mode):
    layer = nn.Bidirectional(nn.SimpleRNN(2, return_sequences=True, dtype="float64"),
                             merge_mode=merge_mode)
    x = rng.standard_normal((3, 4, 2))
    layer.build((None, 4, 2))
    _randomize(layer, rng)
    mask = np.arange(4) < np.array([3, 4, 1])[:, None]
    _check_layer_grads(layer, x, rng, mask=mask)


# -- Bidirectional, TimeDistributed values ---------------------------------------------------------

def test_bidirectional_matches_torch_with_lengths(torch, rng):
    """PyTorch's packed bidirectional LSTM: the backward direction starts at each sequence's
    own last step."""
    b, t, i, h = 3, 5, 4, 3
    ref = torch.nn.LSTM(i, h, batch_first=True, bidirectional=True).double()
    layer = nn.Bidirectional(nn.LSTM(h, return_sequences=True, dtype="float64"))
    layer.build((None, t, i))
    layer.set_torch_weights(ref.state_dict())
    x = rng.standard_normal((b, t, i))
    lengths = np.array([5, 2, 4])
    mask = np.arange(t) < lengths[:, None]
    y = layer.forward(x, mask=mask)
    packed = torch.nn.utils.rnn.pack_padded_sequence(_t(torch, x), _t(torch, lengths),
                                                     batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        out, _ = ref(packed)
    want, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=t)
    np.testing.assert_allclose(y, want.numpy(), rtol=1e-10, atol=1e-12)
    assert y.shape == (b, t, 2 * h) and layer.output_shape == (None, t, 2 * h)
    sd = layer.torch_weights()
    assert set(sd) == set(ref.state_dict())
    for k, v in ref.state_dict().items():
        np.testing.assert_array_equal(sd[k], v.numpy())


def test_bidirectional_merge_modes(rng):
    x = rng.standard_normal((2, 3, 4))
    base = nn.Bidirectional(nn.GRU(5, return_sequences=True, dtype="float64"))
    y = base.forward(x)
    fw = base.forward_layer.forward(x)
    bw = base.backward_layer.forward(x)[:, ::-1]
    np.testing.assert_allclose(y, np.concatenate([fw, bw], -1), rtol=1e-12)
    for mode, want in [("sum", fw + bw), ("mul", fw * bw), ("ave", (fw + bw) / 2)]:
        layer = nn.Bidirectional(nn.GRU(5, return_sequences=True, dtype="float64"), mode)
        layer.build((None, 3, 4))
        layer.set_weights(base.get_weights())
        np.testing.assert_allclose(layer.forward(x), want, rtol=1e-12, atol=1e-15)
    last = nn.Bidirectional(nn.GRU(5, dtype="float64"))
    last.build((None, 3, 4))
    last.set_weights(base.get_weights())
    np.testing.assert_allclose(last.forward(x), np.concatenate([fw[:, -1], bw[:, 0]], -1),
                               rtol=1e-12)


def test_time_distributed_dense(rng):
    td = nn.TimeDistributed(nn.Dense(3, activation="relu"))
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    y = td.forward(x)
    assert y.shape == (2, 5, 3) and td.compute_output_shape((None, 5, 4)) == (None, 5, 3)
    d = td.layer
    np.testing.assert_allclose(y, np.maximum(x @ d.kernel.T + d.bias, 0), rtol=1e-5,
                               atol=1e-6)
    assert td.params[0] is d.kernel and td.count_params() == 15


# -- masks through a Sequential model -------------------------------------------------------------

def test_masked_batch_equals_each_sequence_alone(rng):
    """Embedding(mask_zero=True) -> LSTM(return_sequences) -> GRU: a right-padded batch gives
    each sequence the output it has alone, and padding changes no gradient."""
    fastnn.random.seed(3)
    model = nn.Sequential([nn.Embedding(10, 4, mask_zero=True, dtype="float64",
                                        input_shape=(None,)),
                           nn.LSTM(3, return_sequences=True, dtype="float64"),
                           nn.Dropout(0.5),
                           nn.GRU(2, dtype="float64")])
    seqs = [[3, 1, 4, 1, 5], [9, 2], [6]]
    batch = np.zeros((3, 5), np.int64)
    for r, s in enumerate(seqs):
        batch[r, :len(s)] = s
    y = model.predict(batch)
    for r, s in enumerate(seqs):
        np.testing.assert_allclose(y[r], model.predict(np.array([s]))[0], rtol=1e-12)
    # Gradients: the padded batch's equal the sum over sequences run alone.
    model.compile("sgd", "mse")
    w = rng.standard_normal(y.shape)
    model.forward(batch, training=False)
    model.backward(w)
    got = [g.copy() for g in model.grads]
    want = [np.zeros_like(g) for g in got]
    for r, s in enumerate(seqs):
        model.forward(np.array([s]), training=False)
        model.backward(w[r:r + 1])
        for acc, g in zip(want, model.grads):
            acc += g
    for g, ref in zip(got, want):
        np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-14)


def test_mask_rules(rng):
    emb = nn.Embedding(5, 2, mask_zero=True)
    model = nn.Sequential([emb, nn.SimpleRNN(3)])
    with pytest.raises(ValueError, match="right-padded"):
        model.predict(np.array([[0, 1, 2]]))  # left padding has no length
    y = model.predict(np.array([[0, 0, 0], [1, 2, 0]]))
    assert not y[0].any()  # no steps at all: the zero initial state
    # A layer without mask support between them stops the mask.
    stopped = nn.Sequential([nn.Embedding(5, 2, mask_zero=True),
                             nn.TimeDistributed(nn.Dense(2)),
                             nn.Reshape((3, 2)), nn.LSTM(2)])
    stopped.build((None, 3))
    assert stopped.layers[3]._mask_source is None
    assert model.layers[1]._mask_source is emb
    with pytest.raises(ValueError, match="mask must have shape"):
        nn.LSTM(2).forward(rng.standard_normal((2, 3, 1)), mask=np.ones((2, 4), bool))


# -- training in Sequential ------------------------------------------------------------------------

def test_stacked_recurrent_model_learns(rng):
    """Sign of the sum of a sequence: a stacked LSTM -> GRU model fits it in a few epochs."""
    fastnn.random.seed(0)
    x = rng.standard_normal((256, 6, 2)).astype(np.float32)
    y = (x.sum(axis=(1, 2)) > 0).astype(np.int64)
    model = nn.Sequential([nn.LSTM(8, return_sequences=True, input_shape=(6, 2)),
                           nn.GRU(8), nn.Dense(2, activation="softmax")])
    model.compile(optim.Adam(0.01), "sparse_categorical_crossentropy", ["accuracy"])
    hist = model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    assert hist.history["loss"][-1] < 0.6 * hist.history["loss"][0]
    assert hist.history["accuracy"][-1] > 0.85


def test_summary_and_parameter_counts(capsys):
    model = nn.Sequential([nn.Embedding(100, 16, input_shape=(None,)),
                           nn.Bidirectional(nn.LSTM(8, return_sequences=True)),
                           nn.GRU(4, return_sequences=True),
                           nn.TimeDistributed(nn.Dense(5)),
                           nn.SimpleRNN(3)])
    model.summary()
    out = capsys.readouterr().out
    counts = [100 * 16, 2 * 4 * 8 * (16 + 8 + 2), 3 * 4 * (16 + 4 + 2), 4 * 5 + 5,
              3 * (5 + 3 + 2)]
    assert [layer.count_params() for layer in model.layers] == counts
    assert f"Total params: {sum(counts):,}" in out
    assert [layer.output_shape for layer in model.layers] == [
        (None, None, 16), (None, None, 16), (None, None, 4), (None, None, 5), (None, 3)]
    assert model.predict(np.ones((2, 7), np.int64)).shape == (2, 3)


# -- PyTorch interop -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", RNN_KINDS)
def test_torch_round_trip(torch, rng, kind):
    b, t, i, h = 3, 5, 4, 6
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(kind)
    ref = (module(i, h, batch_first=True) if module else
           torch.nn.RNN(i, h, batch_first=True, nonlinearity=kind[4:]))
    layer = _built(_make(kind, h, return_sequences=True, return_state=True, input_shape=(t, i)))
    layer.set_torch_weights(ref.state_dict())
    x = rng.standard_normal((b, t, i)).astype(np.float32)
    out = layer.forward(x)
    with torch.no_grad():
        want, state = ref(_t(torch, x))
    states = state if kind == "lstm" else (state,)
    np.testing.assert_allclose(out[0], want.numpy(), rtol=1e-5, atol=1e-6)
    for got, s in zip(out[1:], states):
        np.testing.assert_allclose(got, s[0].numpy(), rtol=1e-5, atol=1e-6)
    # fastnn -> PyTorch: fresh fastnn weights exported, loaded by a fresh module.
    mine = _built(_make(kind, h, return_sequences=True, input_shape=(t, i)))
    ref.load_state_dict({k: _t(torch, v) for k, v in mine.torch_weights().items()})
    with torch.no_grad():
        np.testing.assert_allclose(mine.forward(x), ref(_t(torch, x))[0].numpy(), rtol=1e-5,
                                   atol=1e-6)


def test_torch_state_dict_of_a_model(torch, rng):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(12, 4)
            self.rnn = torch.nn.GRU(4, 5, batch_first=True)
            self.head = torch.nn.Linear(5, 3)

        def forward(self, ids):
            return self.head(self.rnn(self.emb(ids))[1][0])

    ref = Net()
    model = nn.Sequential([nn.Embedding(12, 4, input_shape=(6,)), nn.GRU(5), nn.Dense(3)])
    nn.load_torch_state_dict(model, ref.state_dict())
    ids = rng.integers(0, 12, (4, 6))
    with torch.no_grad():
        want = ref(_t(torch, ids)).numpy()
    np.testing.assert_allclose(model.predict(ids), want, rtol=1e-5, atol=1e-6)
    sd = nn.torch_state_dict(model, like=ref.state_dict())
    assert set(sd) == set(ref.state_dict())
    with pytest.raises(ValueError, match="shape"):
        _built(nn.LSTM(5, input_shape=(6, 4))).set_torch_weights(torch.nn.LSTM(4, 6).state_dict())


# -- saving ----------------------------------------------------------------------------------------

def test_save_and_load(rng, tmp_path):
    model = nn.Sequential([
        nn.Embedding(20, 6, mask_zero=True, input_shape=(7,)),
        nn.Bidirectional(nn.LSTM(5, return_sequences=True, kernel_regularizer="l2"),
                         merge_mode="sum"),
        nn.TimeDistributed(nn.Dense(4, activation="relu")),
        nn.GRU(3, go_backwards=True),
        nn.Dense(2, activation="softmax"),
    ])
    ids = rng.integers(1, 20, (5, 7))
    ids[1, 4:] = 0
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(ids, rng.integers(0, 2, 5), epochs=1, batch_size=5, verbose=0)
    path = tmp_path / "seq.fnn"
    model.save(path)
    loaded = nn.load_model(path)
    np.testing.assert_array_equal(loaded.predict(ids), model.predict(ids))
    assert [type(layer).__name__ for layer in loaded.layers] == [
        "Embedding", "Bidirectional", "TimeDistributed", "GRU", "Dense"]
    assert loaded.layers[1].merge_mode == "sum" and loaded.layers[3].go_backwards
    assert loaded.layers[0].mask_zero and loaded.layers[3]._mask_source is loaded.layers[2]
    # Training resumes identically.
    x2, y2 = rng.integers(1, 20, (5, 7)), rng.integers(0, 2, 5)
    a = model.train_on_batch(x2, y2)
    b = loaded.train_on_batch(x2, y2)
    assert a == b


# -- the embedding op ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (3, 7), (2, 1, 5), (0, 4)])
def test_embedding_op_matches_reference(backend, rng, dtype, shape):
    if backend == "cuda":
        pytest.skip("the embedding op runs on host arrays")
    v, d = 9, 5
    w = rng.standard_normal((v, d)).astype(dtype)
    ids = rng.integers(0, v, shape)
    y, ctx = ops.embedding_forward(ids, w)
    check_op(y, reference.embedding(ids, w), dtype)
    np.testing.assert_array_equal(ops.embedding(ids, w), y)
    dy = rng.standard_normal(y.shape).astype(dtype)
    (dw,) = ops.embedding_backward(ctx, dy)
    check_op(dw, reference.embedding_backward(ids, dy, v), dtype, reduction=max(ids.size, 1))


def test_embedding_layer_gradient(rng):
    layer = nn.Embedding(6, 3, dtype="float64")
    ids = np.array([[1, 5, 1], [0, 1, 2]])
    y = layer.forward(ids)
    w = rng.standard_normal(y.shape)

    def f():
        return float(np.sum(layer.forward(ids) * w))

    f()
    assert layer.backward(w) is None  # ids have no gradient
    np.testing.assert_allclose(layer.grads[0], numeric_grad(f, layer.embeddings), rtol=1e-7,
                               atol=1e-9)


# -- bad input -------------------------------------------------------------------------------------

def test_embedding_bad_input(rng):
    w = rng.standard_normal((4, 2))
    with pytest.raises(ValueError, match="token id 4 .* out of range"):
        ops.embedding(np.array([[0, 4]]), w)
    with pytest.raises(ValueError, match="token id -1"):
        ops.embedding(np.array([-1, 2]), w)
    with pytest.raises(TypeError, match="integer"):
        ops.embedding(np.array([0.0, 1.0]), w)
    with pytest.raises(ValueError, match="weight must be 2-D"):
        ops.embedding(np.array([0, 1]), w[0])
    _, ctx = ops.embedding_forward(np.array([0, 1]), w)
    with pytest.raises(ValueError, match="dy must have"):
        ops.embedding_backward(ctx, np.ones((3, 2)))
    layer = nn.Embedding(4, 2)
    with pytest.raises(ValueError, match="out of range"):
        layer.forward(np.array([[1, 7]]))
    with pytest.raises(ValueError, match="whole numbers"):
        layer.forward(np.array([[1.5, 2.0]]))
    model = nn.Sequential([nn.Embedding(4, 2, input_shape=(3,)), nn.LSTM(2)])
    with pytest.raises(ValueError, match="out of range"):
        model.predict(np.array([[1, 2, 4]]))
    with pytest.raises(ValueError, match="input_dim"):
        nn.Embedding(0, 3)


@pytest.mark.parametrize("kind", RNN_KINDS)
def test_recurrent_bad_input(rng, kind):
    layer = _make(kind, 3, input_shape=(4, 2))
    with pytest.raises(ValueError, match="batch, steps, features"):
        layer.forward(rng.standard_normal((4, 2)).astype(np.float32))  # wrong ndim
    with pytest.raises(ValueError, match="expected inputs of shape"):
        layer.forward(rng.standard_normal((1, 4, 3)).astype(np.float32))  # wrong features
    with pytest.raises(ValueError, match="expected inputs of shape"):
        layer.forward(rng.standard_normal((1, 5, 2)).astype(np.float32))  # wrong steps
    with pytest.raises(ValueError, match="initial_state"):
        layer.forward(np.zeros((2, 4, 2), np.float32), initial_state=[np.zeros((2, 4))] * 2)
    with pytest.raises(ValueError, match="shape"):
        layer.set_weights([np.zeros((1, 1))] * 4)
    with pytest.raises(RuntimeError, match="before forward"):
        _make(kind, 3).backward(np.zeros((1, 3)))
    layer.forward(np.zeros((2, 4, 2), np.float32))
    with pytest.raises(ValueError, match="dy must have shape"):
        layer.backward(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="units"):
        _make(kind, 0)
    with pytest.raises(ValueError, match="input_shape"):
        _make(kind, 2, input_shape=(3,))


def test_wrapper_bad_input():
    with pytest.raises(ValueError, match="merge_mode"):
        nn.Bidirectional(nn.LSTM(2), merge_mode="max")
    with pytest.raises(TypeError, match="recurrent layer"):
        nn.Bidirectional(nn.Dense(2))
    with pytest.raises(ValueError, match="return_state"):
        nn.Bidirectional(nn.LSTM(2, return_state=True))
    with pytest.raises(ValueError, match="activation"):
        nn.SimpleRNN(2, activation="sigmoid")
    with pytest.raises(ValueError, match="batch, steps"):
        nn.TimeDistributed(nn.Dense(2)).forward(np.zeros((2, 3), np.float32))


def test_orthogonal_initializer():
    init = nn.initializers.get("orthogonal")
    for shape in [(12, 4), (4, 12), (5, 5), (6, 2, 3)]:
        w = init(shape, "float64").reshape(shape[0], -1)
        small = min(w.shape)
        gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
        np.testing.assert_allclose(gram, np.eye(small), atol=1e-12)
    w = nn.initializers.Orthogonal(gain=2.0, seed=1)((3, 3), "float64")
    np.testing.assert_allclose(w @ w.T, 4 * np.eye(3), atol=1e-12)
    with pytest.raises(ValueError, match="2 or more"):
        init((5,))
