"""Transformer layers: LayerNormalization, MultiHeadAttention, TransformerEncoderLayer,
PatchEmbedding, PositionalEmbedding, SinusoidalPositionalEncoding, GlobalAveragePooling1D.

Forwards against float64 NumPy references written here (independent of fastnn.ops), backwards
against central finite differences in float64, a save/load round trip, and bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim

from helpers import check_op, numeric_grad

F64 = "float64"
_erf = np.vectorize(math.erf)


# -- float64 references ---------------------------------------------------------------------------

def ref_layer_norm(x, gamma, beta, eps):
    x = np.asarray(x, np.float64)
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    return y * (1.0 if gamma is None else gamma) + (0.0 if beta is None else beta)


def ref_attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d) + mask) v over (..., N, d); a row with no allowed key gives 0."""
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s + mask
    mx = s.max(-1, keepdims=True)
    e = np.where(np.isfinite(mx), np.exp(s - np.where(np.isfinite(mx), mx, 0.0)), 0.0)
    tot = e.sum(-1, keepdims=True)
    p = np.divide(e, tot, out=np.zeros_like(e), where=tot > 0)
    return p @ v


def _additive(mask, nq, nk, causal):
    m = np.zeros((nq, nk))
    if mask is not None:
        mask = np.asarray(mask)
        m = np.where(mask, 0.0, -np.inf) if mask.dtype == bool else mask.astype(np.float64)
        if m.ndim == 3:
            m = m[:, None]
    if causal:
        m = m + np.where(np.tri(nq, nk, dtype=bool), 0.0, -np.inf)
    return m


def ref_mha(layer, query, value, key=None, mask=None, causal=False):
    key = value if key is None else key
    h, kd, vd = layer.num_heads, layer.key_dim, layer.value_dim
    w = [np.asarray(a, np.float64) for a in (layer.query_kernel, layer.key_kernel,
                                              layer.value_kernel, layer.output_kernel)]
    b = [np.zeros(a.shape[0]) if layer.output_bias is None else np.asarray(c, np.float64)
         for a, c in zip(w, (layer.query_bias, layer.key_bias, layer.value_bias,
                             layer.output_bias))]

    def heads(x, wi, bi, d):
        p = np.asarray(x, np.float64) @ wi.T + bi
        return p.reshape(p.shape[0], p.shape[1], h, d).transpose(0, 2, 1, 3)

    q, k, v = heads(query, w[0], b[0], kd), heads(key, w[1], b[1], kd), heads(value, w[2], b[2],
                                                                           vd)
    o = ref_attention(q, k, v, _additive(mask, q.shape[2], k.shape[2], causal))
    o = o.transpose(0, 2, 1, 3).reshape(o.shape[0], o.shape[2], h * vd)
    return o @ w[3].T + b[3]


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def ref_encoder(layer, x):
    x = np.asarray(x, np.float64)
    ln = [(np.asarray(n.gamma, np.float64), np.asarray(n.beta, np.float64), n.epsilon)
          for n in (layer.norm1, layer.norm2)]
    l1, l2 = layer.linear1, layer.linear2
    act = _gelu if layer.activation == "gelu" else (lambda t: np.maximum(t, 0.0))

    def attend(t):
        return ref_mha(layer.attention, t, t)

    def feed(t):
        hid = act(t @ np.asarray(l1.kernel, np.float64).T + l1.bias)
        return hid @ np.asarray(l2.kernel, np.float64).T + l2.bias

    if layer.norm_first:
        x1 = x + attend(ref_layer_norm(x, *ln[0]))
        return x1 + feed(ref_layer_norm(x1, *ln[1]))
    x1 = ref_layer_norm(x + attend(x), *ln[0])
    return ref_layer_norm(x1 + feed(x1), *ln[1])


def _randomize(layer, rng, scale=0.3):
    """Non-trivial weights (biases and norms included), written in place."""
    for p in layer.params:
        p[...] = scale * rng.standard_normal(p.shape)


def _fd_layer(layer, call, inputs, rng, atol=1e-6):
    """layer.backward against finite differences of sum(call() * dy): inputs, then params."""
    out = call(True)
    dy = rng.standard_normal(out.shape)

    def f():
        return float((call(False) * dy).sum())

    call(True)
    d = layer.backward(dy)
    d = d if isinstance(d, list) else [d]
    grads = [g.copy() for g in layer.grads]
    for x, dx in zip(inputs, d):
        if x is not None:
            np.testing.assert_allclose(dx, numeric_grad(f, x), atol=atol, rtol=1e-5)
    assert len(grads) == len(layer.params)
    for p, g in zip(layer.params, grads):
        np.testing.assert_allclose(g, numeric_grad(f, p), atol=atol, rtol=1e-5)


# -- LayerNormalization --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (2, 5, 33), (2, 3, 4, 65)])
def test_layer_norm_forward(backend, rng, dtype, shape):
    layer = nn.LayerNormalization(dtype=dtype)
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    layer.build((None,) + shape[1:])
    _randomize(layer, rng)
    check_op(layer(x), ref_layer_norm(x, layer.gamma, layer.beta, 1e-3), reduction=shape[-1])


@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False)])
def test_layer_norm_backward(rng, center, scale):
    layer = nn.LayerNormalization(center=center, scale=scale, dtype=F64)
    x = rng.standard_normal((3, 4, 6))
    layer.build((None, 4, 6))
    _randomize(layer, rng)
    assert len(layer.params) == center + scale
    _fd_layer(layer, lambda t: layer.forward(x, t), [x], rng)


# -- MultiHeadAttention ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("b,n,d,heads,kd", [(1, 1, 4, 1, 4), (2, 7, 12, 3, 4),
                                            (2, 17, 16, 2, 5), (1, 77, 32, 4, 16)])
def test_mha_self_attention_forward(backend, rng, dtype, b, n, d, heads, kd):
    layer = nn.MultiHeadAttention(heads, kd, dtype=dtype)
    x = rng.standard_normal((b, n, d)).astype(dtype)
    out = layer(x, x)
    assert layer._ctx.fused and out.shape == (b, n, d) and out.dtype == np.dtype(dtype)
    check_op(out, ref_mha(layer, x, x), reduction=max(n, d), scale=2.0)


@pytest.mark.parametrize("causal", [False, True])
def test_mha_cross_attention_forward(backend, rng, causal):
    # query, key and value of different lengths and feature sizes; value heads of their own size
    layer = nn.MultiHeadAttention(2, 3, value_dim=5, dtype="float32")
    q = rng.standard_normal((2, 9, 6)).astype(np.float32)
    v = rng.standard_normal((2, 13, 4)).astype(np.float32)
    k = rng.standard_normal((2, 13, 7)).astype(np.float32)
    out = layer(q, v, k, use_causal_mask=causal)
    assert not layer._ctx.fused and out.shape == (2, 9, 6)
    check_op(out, ref_mha(layer, q, v, k, causal=causal), reduction=13, scale=2.0)


@pytest.mark.parametrize("kind", ["bool3d", "bool2d", "additive", "causal_and_mask"])
def test_mha_masks(backend, rng, kind):
    layer = nn.MultiHeadAttention(2, 4, dtype="float64")
    x = rng.standard_normal((3, 6, 8))
    mask = rng.random((3, 6, 6)) > 0.4
    mask[1, 2] = False                                   # a query that sees no key
    causal = kind == "causal_and_mask"
    if kind == "bool2d":
        mask = mask[0]
    elif kind == "additive":
        mask = np.where(mask, 0.0, -np.inf) + 0.1 * rng.standard_normal((3, 6, 6))
    out = layer(x, x, attention_mask=mask, use_causal_mask=causal)
    ref = ref_mha(layer, x, x, mask=mask, causal=causal)
    check_op(out, ref)
    if kind != "bool2d":
        # no key to attend to: the attention gives zeros, so the output is the output bias
        np.testing.assert_allclose(out[1, 2], layer.output_bias, atol=1e-12)


def test_mha_fused_and_separate_projections_agree(rng):
    layer = nn.MultiHeadAttention(2, 3, dtype=F64)
    x = rng.standard_normal((2, 5, 6))
    dy = rng.standard_normal((2, 5, 6))
    fused = layer(x, x)
    assert layer._ctx.fused
    dx = layer.backward(dy)
    g_fused = [g.copy() for g in layer.grads]
    y = x.copy()
    separate = layer(y, y.copy(), y.copy())             # same values, three arrays
    assert not layer._ctx.fused
    dq, dv, dk, dm = layer.backward(dy)
    assert dm is None
    np.testing.assert_allclose(fused, separate, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx[0], dq + dv + dk, rtol=1e-10, atol=1e-12)
    assert dx[1] is None and dx[2] is None
    for a, b in zip(g_fused, layer.grads):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", ["self", "self_causal", "cross_masked", "value_as_key"])
def test_mha_backward_matches_finite_differences(rng, case):
    layer = nn.MultiHeadAttention(2, 3, value_dim=2 if case == "cross_masked" else None,
                                  dtype=F64)
    q = rng.standard_normal((2, 4, 5))
    if case.startswith("self"):
        causal = case == "self_causal"
        _fd_layer(layer, lambda t: layer(q, q, use_causal_mask=causal, training=t), [q], rng)
        assert layer._ctx.fused
    elif case == "cross_masked":
        v, k = rng.standard_normal((2, 6, 3)), rng.standard_normal((2, 6, 4))
        mask = rng.random((2, 4, 6)) > 0.3
        mask[0, 0] = False
        _fd_layer(layer, lambda t: layer(q, v, k, attention_mask=mask, training=t), [q, v, k],
                  rng)
    else:
        v = rng.standard_normal((2, 6, 5))
        _fd_layer(layer, lambda t: layer(q, v, training=t), [q, v], rng)
        assert layer.backward(np.ones((2, 4, 5)))[2] is None   # key = value: one gradient


def test_mha_dropout_and_sequential_use(rng):
    layer = nn.MultiHeadAttention(2, 4, dropout=0.5, seed=3)
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    a, b = layer(x, x, training=True), layer(x, x, training=True)
    assert not np.allclose(a, b)                         # fresh masks each step
    np.testing.assert_array_equal(layer(x, x), layer(x, x))   # inference: no dropout
    model = nn.Sequential([nn.MultiHeadAttention(2, 4, input_shape=(5, 8))])
    out = model.forward(x, training=True)                # one array: self-attention
    assert model.backward(np.ones_like(out)).shape == x.shape


# -- TransformerEncoderLayer ----------------------------------------------------------------------

@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_encoder_forward(backend, rng, norm_first, activation):
    layer = nn.TransformerEncoderLayer(16, 4, 24, dropout=0.0, activation=activation,
                                       norm_first=norm_first)
    x = rng.standard_normal((3, 7, 16)).astype(np.float32)
    layer.build((None, 7, 16))
    _randomize(layer, rng, 0.2)
    check_op(layer(x), ref_encoder(layer, x), reduction=24, scale=2.0)


@pytest.mark.parametrize("norm_first", [True, False])
def test_encoder_backward_matches_finite_differences(rng, norm_first):
    layer = nn.TransformerEncoderLayer(6, 2, 5, dropout=0.0, norm_first=norm_first, dtype=F64)
    x = rng.standard_normal((2, 3, 6))
    layer.build((None, 3, 6))
    _randomize(layer, rng)
    assert len(layer.params) == 16
    _fd_layer(layer, lambda t: layer.forward(x, t), [x], rng)


def test_encoder_matches_pytorch(rng):
    torch = pytest.importorskip("torch")
    layer = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, norm_first=True, dtype=F64)
    layer.build((None, 5, 8))
    _randomize(layer, rng)
    ref = torch.nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True,
                                           dtype=torch.float64)
    a = layer.attention
    state = {
        "self_attn.in_proj_weight": np.concatenate([a.query_kernel, a.key_kernel,
                                                    a.value_kernel]),
        "self_attn.in_proj_bias": np.concatenate([a.query_bias, a.key_bias, a.value_bias]),
        "self_attn.out_proj.weight": a.output_kernel, "self_attn.out_proj.bias": a.output_bias,
        "linear1.weight": layer.linear1.kernel, "linear1.bias": layer.linear1.bias,
        "linear2.weight": layer.linear2.kernel, "linear2.bias": layer.linear2.bias,
        "norm1.weight": layer.norm1.gamma, "norm1.bias": layer.norm1.beta,
        "norm2.weight": layer.norm2.gamma, "norm2.bias": layer.norm2.beta,
    }
    ref.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    ref.eval()
    x = rng.standard_normal((2, 5, 8))
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(layer(x), want, rtol=1e-10, atol=1e-12)


# -- embeddings and pooling -----------------------------------------------------------------------

def test_patch_embedding_is_a_strided_convolution(backend, rng):
    layer = nn.PatchEmbedding(7, 5)
    x = rng.standard_normal((2, 3, 14, 21)).astype(np.float32)
    out = layer(x)
    assert out.shape == (2, 6, 5) and layer.output_shape == (None, 6, 5)
    w = np.asarray(layer.kernel, np.float64).reshape(5, 3, 7, 7)
    ref = np.empty((2, 6, 5))
    for i in range(2):
        for j in range(3):
            patch = x[:, :, 7 * i:7 * i + 7, 7 * j:7 * j + 7].astype(np.float64)
            ref[:, 3 * i + j] = np.einsum("bchw,dchw->bd", patch, w) + layer.bias
    check_op(out, ref, reduction=147)
    last = nn.PatchEmbedding(7, 5, data_format="channels_last")
    last.build((None, 14, 21, 3))
    last.set_weights(layer.get_weights())
    check_op(last(x.transpose(0, 2, 3, 1)), ref, reduction=147)


@pytest.mark.parametrize("fmt", ["channels_first", "channels_last"])
def test_patch_embedding_backward(rng, fmt):
    layer = nn.PatchEmbedding((2, 3), 4, data_format=fmt, dtype=F64)
    x = rng.standard_normal((2, 3, 4, 6) if fmt == "channels_first" else (2, 4, 6, 3))
    _fd_layer(layer, lambda t: layer.forward(x, t), [x], rng)


def test_positional_encodings(rng):
    learned = nn.PositionalEmbedding(9, dtype=F64)
    x = rng.standard_normal((2, 5, 4))
    out = learned(x)
    np.testing.assert_array_equal(out, x + learned.embeddings[:5])
    _fd_layer(learned, lambda t: learned.forward(x, t), [x], rng)
    assert not learned.grads[0][5:].any()               # unused positions get no gradient
    sine = nn.SinusoidalPositionalEncoding()
    xs = rng.standard_normal((2, 6, 8)).astype(np.float32)
    pe = np.zeros((6, 8))
    for p in range(6):
        for i in range(4):
            pe[p, 2 * i] = math.sin(p / 10000 ** (2 * i / 8))
            pe[p, 2 * i + 1] = math.cos(p / 10000 ** (2 * i / 8))
    check_op(sine(xs), xs + pe)
    np.testing.assert_array_equal(sine.backward(xs), xs)


def test_global_average_pooling_1d(rng):
    layer = nn.GlobalAveragePooling1D()
    x = rng.standard_normal((3, 5, 4))
    check_op(layer(x), x.mean(1))
    _fd_layer(layer, lambda t: layer.forward(x, t), [x], rng)
    first = nn.GlobalAveragePooling1D(data_format="channels_first")
    check_op(first(x), x.mean(2))


# -- models ---------------------------------------------------------------------------------------

def _tiny_vit(dtype="float32", seed=None):
    images = nn.Input((1, 8, 8), dtype=dtype)
    x = nn.PatchEmbedding(4, 8, dtype=dtype)(images)
    x = nn.PositionalEmbedding(4, dtype=dtype)(x)
    x = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.1 if seed else 0.0, seed=seed,
                                   dtype=dtype)(x)
    x = nn.GlobalAveragePooling1D()(x)
    return nn.Model(images, nn.Dense(3, activation="softmax", dtype=dtype)(x))


def test_functional_transformer_with_shared_attention_matches_finite_differences(rng):
    seq = nn.Input((4, 6), dtype=F64)
    mha = nn.MultiHeadAttention(2, 3, dtype=F64)
    norm = nn.LayerNormalization(dtype=F64)
    h = nn.Add()([seq, mha(norm(seq), norm(seq))])          # residual
    h = nn.Add()([h, mha(h, h, use_causal_mask=True)])      # the same attention again
    out = nn.Dense(2, dtype=F64)(nn.GlobalAveragePooling1D()(h))
    model = nn.Model(seq, out)
    for layer in (mha, norm):
        _randomize(layer, rng)
    from test_nn_functional import _fd_check
    _fd_check(model, rng.standard_normal((2, 4, 6)), rng)


def test_mask_as_a_model_input(rng):
    seq, mask = nn.Input((5, 4)), nn.Input((5, 5), dtype="bool")
    out = nn.MultiHeadAttention(2, 2)(seq, seq, attention_mask=mask)
    model = nn.Model([seq, mask], out)
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    m = rng.random((2, 5, 5)) > 0.5
    m[:, :, 0] = True
    check_op(model.predict([x, m]), ref_mha(model.layers[2], x, x, mask=m), reduction=5)
    model.forward([x, m], training=True)
    dx, dm = model.backward(np.ones((2, 5, 4), np.float32))
    assert dx.shape == x.shape and not dm.any()


def test_vit_trains_saves_and_loads(rng, tmp_path):
    fastnn.random.seed(0)
    model = _tiny_vit(seed=7)
    model.compile(optim.Adam(3e-3), "sparse_categorical_crossentropy", ["accuracy"])
    y = rng.integers(0, 3, 96)
    x = (rng.standard_normal((96, 1, 8, 8)) * 0.3 + y[:, None, None, None]).astype(np.float32)
    hist = model.fit(x, y, epochs=6, batch_size=16, verbose=0)
    assert hist.history["accuracy"][-1] > 0.9
    model.save(tmp_path / "vit.fnn")
    loaded = nn.load_model(tmp_path / "vit.fnn")
    np.testing.assert_array_equal(model.predict(x), loaded.predict(x))
    lines = []
    loaded.summary(print_fn=lines.append)
    assert any("TransformerEncoderLayer" in line for line in lines)
    # resuming continues bit for bit (the encoder's dropout generators are saved too)
    state = fastnn.random.get_state()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    fastnn.random.set_state(state)
    loaded2 = nn.load_model(tmp_path / "vit.fnn")
    fastnn.random.set_state(state)
    loaded2.fit(x, y, epochs=1, batch_size=16, verbose=0)
    for a, b in zip(model.get_weights(), loaded2.get_weights()):
        np.testing.assert_array_equal(a, b)


# -- bad input ------------------------------------------------------------------------------------

def test_bad_arguments_and_shapes():
    with pytest.raises(ValueError, match="key_dim"):
        nn.MultiHeadAttention(2, 0)
    with pytest.raises(ValueError, match="num_heads"):
        nn.MultiHeadAttention(0, 4)
    with pytest.raises(ValueError, match="dropout"):
        nn.MultiHeadAttention(2, 4, dropout=1.0)
    with pytest.raises(ValueError, match="must divide d_model"):
        nn.TransformerEncoderLayer(10, 3, 16)
    with pytest.raises(ValueError, match="only the last axis"):
        nn.LayerNormalization(axis=1).build((None, 3, 4))
    seq = nn.Input((5, 8))
    with pytest.raises(ValueError, match="same number of steps"):
        nn.MultiHeadAttention(2, 4)(seq, nn.Input((6, 8)), nn.Input((5, 8)))
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        nn.MultiHeadAttention(2, 4)(seq, seq, attention_mask=nn.Input((5, 4), dtype="bool"))
    with pytest.raises(ValueError, match="batch, steps, features"):
        nn.MultiHeadAttention(2, 4)(nn.Input((8,)), nn.Input((8,)))
    with pytest.raises(ValueError, match=r"expected inputs \(batch, steps, 8\)"):
        nn.TransformerEncoderLayer(8, 2, 16)(nn.Input((5, 6)))
    with pytest.raises(ValueError, match="multiples of the patch size"):
        nn.PatchEmbedding(7, 4)(nn.Input((1, 28, 27)))
    with pytest.raises(ValueError, match="exceed sequence_length"):
        nn.PositionalEmbedding(4)(nn.Input((5, 8)))
    mha = nn.MultiHeadAttention(2, 4)
    mha(seq, seq)
    with pytest.raises(ValueError, match="cannot be called on inputs"):
        mha(nn.Input((5, 6)), nn.Input((5, 6)))
    with pytest.raises(TypeError, match="value is required"):
        mha(seq)


def test_bad_arrays_give_clear_errors(rng):
    mha = nn.MultiHeadAttention(2, 4)
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    mha(x, x)
    with pytest.raises(ValueError, match="query has 6 features but the layer was built for 8"):
        mha(np.zeros((2, 5, 6), np.float32), np.zeros((2, 5, 6), np.float32))
    with pytest.raises(ValueError, match=r"attention_mask must have shape \(2, 5, 5\)"):
        mha(x, x, attention_mask=np.ones((2, 5, 4), bool))
    with pytest.raises(ValueError, match=r"attention_mask must have shape \(2, 5, 5\)"):
        mha(x, x, attention_mask=np.ones((3, 5, 5), bool))
    with pytest.raises(TypeError, match="boolean .* or float"):
        mha(x, x, attention_mask=np.ones((2, 5, 5), np.int32))
    with pytest.raises(ValueError, match="share the batch size"):
        mha(x, x[:1])
    with pytest.raises(RuntimeError, match="before forward"):
        nn.MultiHeadAttention(2, 4).backward(x)
    norm = nn.LayerNormalization()
    norm(x)
    with pytest.raises(ValueError, match=r"expected inputs \(batch, ..., 8\)"):
        norm(np.zeros((2, 5, 7), np.float32))


def test_transformer_layers_in_a_sequential(rng, tmp_path):
    fastnn.random.seed(1)
    model = nn.Sequential([
        nn.SinusoidalPositionalEncoding(input_shape=(5, 8)),
        nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, norm_first=False),
        nn.LayerNormalization(),
        nn.GlobalAveragePooling1D(),
        nn.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    x = rng.standard_normal((32, 5, 8)).astype(np.float32)
    y = rng.integers(0, 2, 32)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "seq.fnn")
    loaded = nn.load_model(tmp_path / "seq.fnn")
    np.testing.assert_array_equal(model.predict(x), loaded.predict(x))
    assert loaded.layers[1].params[0].shape == (8,)     # norm1's gamma comes first
