"""Fused attention and layer norm: every backend (and, for C++, every ISA) against the float64
references, backward against the reference gradients and central finite differences, the
fully-masked-row contract, and bad input."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import backend as _backend
from fastnn import ops
from fastnn import reference as R
from helpers import check_op, numeric_grad

DTYPES = [np.float32, np.float64]
ISAS = [i for i in ("generic", "avx2", "avx512")
        if _backend._C is not None and _backend._C.cpu_supports(i)]


def _qkv(rng, b, h, nq, nk, d, dv, dtype, three_d=False):
    lead = (b,) if three_d else (b, h)
    q = rng.standard_normal(lead + (nq, d)).astype(dtype)
    k = rng.standard_normal(lead + (nk, d)).astype(dtype)
    v = rng.standard_normal(lead + (nk, dv)).astype(dtype)
    return q, k, v


def _close(got, ref, dtype, n, what=""):
    """Attention outputs and gradients are sums over about n terms of unit size."""
    ref = np.asarray(ref)
    scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
    try:
        check_op(got, ref, dtype, reduction=n, scale=scale)
    except AssertionError as exc:
        raise AssertionError(f"{what}: {exc}") from None


def _mask(kind, rng, b, h, nq, nk):
    if kind is None:
        return None
    if kind == "bool":
        m = rng.random((b, h, nq, nk)) > 0.3
        m[..., 0, :] = False  # one fully masked row per (batch, head)
        return m
    if kind == "bool_keys":  # a key-padding mask, (B, 1, 1, Nk)
        m = np.ones((b, 1, 1, nk), bool)
        m[:, :, :, nk - max(1, nk // 3):] = False
        m[0] = True
        return m
    if kind == "additive_2d":  # (Nq, Nk)
        return rng.standard_normal((nq, nk)).astype(np.float64)
    raise AssertionError(kind)


# (b, h, nq, nk, d, dv)
SHAPES = [(1, 1, 1, 1, 16, 16), (2, 3, 7, 7, 16, 16), (1, 2, 77, 77, 32, 32),
          (2, 1, 129, 33, 64, 80), (1, 1, 17, 129, 80, 64), (1, 2, 33, 65, 128, 8)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_reference(backend, dtype, shape, causal, rng):
    b, h, nq, nk, d, dv = shape
    q, k, v = _qkv(rng, b, h, nq, nk, d, dv, dtype)
    out, ctx = ops.attention_forward(q, k, v, causal=causal)
    assert out.shape == (b, h, nq, dv) and out.dtype == dtype
    _close(out, R.attention(q, k, v, causal), dtype, nk, "out")
    _close(ctx.lse, R.attention_lse(q, k, causal), dtype, d, "lse")
    do = rng.standard_normal(out.shape).astype(dtype)
    got = ops.attention_backward(ctx, do)
    ref = R.attention_backward(q, k, v, do, causal)
    for name, g, r in zip(("dq", "dk", "dv"), got, ref):
        assert g.dtype == dtype
        _close(g, r, dtype, max(nq, nk) * 4, name)


@pytest.mark.parametrize("kind", ["bool", "bool_keys", "additive_2d"])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_masks(backend, kind, causal, rng):
    b, h, nq, nk, d, dv = 2, 3, 19, 37, 32, 24
    dtype = np.float32
    q, k, v = _qkv(rng, b, h, nq, nk, d, dv, dtype)
    mask = _mask(kind, rng, b, h, nq, nk)
    out, ctx = ops.attention_forward(q, k, v, causal=causal, mask=mask, scale=0.3)
    _close(out, R.attention(q, k, v, causal, 0.3, mask), dtype, nk, "out")
    assert np.isfinite(out).all()
    do = rng.standard_normal(out.shape).astype(dtype)
    got = ops.attention_backward(ctx, do)
    ref = R.attention_backward(q, k, v, do, causal, 0.3, mask)
    for name, g, r in zip(("dq", "dk", "dv"), got, ref):
        assert np.isfinite(g).all(), name
        _close(g, r, dtype, max(nq, nk) * 4, name)


def test_attention_long_sequence(backend, rng):
    """Many key tiles and query tiles, causal and not (N = 1000)."""
    if backend == "numba":
        pytest.skip("row-at-a-time fallback: covered by the smaller shapes")
    q, k, v = _qkv(rng, 1, 1, 1000, 1000, 64, 64, np.float32)
    for causal in (False, True):
        out, ctx = ops.attention_forward(q, k, v, causal=causal)
        _close(out, R.attention(q, k, v, causal), np.float32, 1000, "out")
        do = rng.standard_normal(out.shape).astype(np.float32)
        for name, g, r in zip("qkv", ops.attention_backward(ctx, do),
                              R.attention_backward(q, k, v, do, causal)):
            _close(g, r, np.float32, 4000, "d" + name)


needs_isa = pytest.mark.skipif(not ISAS, reason="fastnn._C is not built")


@needs_isa
@pytest.mark.parametrize("causal", [False, True])
def test_attention_isas(isa, causal, rng):
    for dtype in DTYPES:
        for nq, nk, d, dv in ((67, 45, 80, 40), (130, 300, 64, 64), (5, 3, 16, 128)):
            q, k, v = _qkv(rng, 2, 2, nq, nk, d, dv, dtype)
            mask = _mask("bool", rng, 2, 2, nq, nk)
            out, ctx = ops.attention_forward(q, k, v, causal=causal, mask=mask)
            _close(out, R.attention(q, k, v, causal, None, mask), dtype, nk, "out")
            do = rng.standard_normal(out.shape).astype(dtype)
            for name, g, r in zip("qkv", ops.attention_backward(ctx, do),
                                  R.attention_backward(q, k, v, do, causal, None, mask)):
                _close(g, r, dtype, 4 * max(nq, nk), "d" + name)
            # the same through strided views (heads interleaved, rows padded) and out= buffers
            views = [np.zeros((2, a.shape[2], 2, a.shape[3] + 3), dtype) for a in (q, k, v)]
            for buf, a in zip(views, (q, k, v)):
                buf[..., :a.shape[3]] = a.transpose(0, 2, 1, 3)
            qs, ks, vs = (buf[..., :a.shape[3]].transpose(0, 2, 1, 3)
                          for buf, a in zip(views, (q, k, v)))
            ob = np.empty((2, nq, 2, dv + 5), dtype)[..., 2:2 + dv].transpose(0, 2, 1, 3)
            _, ctx_s = ops.attention_forward(qs, ks, vs, causal=causal, mask=mask, out=ob)
            np.testing.assert_array_equal(ob, out)
            np.testing.assert_array_equal(ops.attention_backward(ctx_s, do)[1],
                                          ops.attention_backward(ctx, do)[1])


@needs_isa
@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_isas(isa, dtype, rng):
    for shape in ((5, 1), (7, 33), (65, 256)):
        x = (rng.standard_normal(shape) * 2 - 1).astype(dtype)
        g = rng.standard_normal(shape[-1]).astype(dtype)
        b = rng.standard_normal(shape[-1]).astype(dtype)
        y, ctx = ops.layer_norm_forward(x, g, b)
        _close(y, R.layer_norm(x, g, b), dtype, shape[-1], "y")
        dy = rng.standard_normal(shape).astype(dtype)
        for name, got, ref in zip(("dx", "dgamma", "dbeta"), ops.layer_norm_backward(ctx, dy),
                                  R.layer_norm_backward(x, dy, g)):
            _close(got, ref, dtype, 4 * max(shape), name)


def test_attention_three_d_and_views(backend, rng):
    """(B, N, d) inputs without heads, a (B, Nq, Nk) mask, and non-contiguous views."""
    q, k, v = _qkv(rng, 3, 1, 9, 11, 16, 7, np.float64, three_d=True)
    mask = rng.random((3, 9, 11)) > 0.2
    kt = np.ascontiguousarray(np.swapaxes(k, 1, 2)).swapaxes(1, 2)  # a strided view
    assert not kt.flags.c_contiguous
    out, ctx = ops.attention_forward(q, kt, v, mask=mask)
    assert out.shape == (3, 9, 7)
    _close(out, R.attention(q, k, v, False, None, mask), np.float64, 11, "out")
    do = rng.standard_normal(out.shape)
    got = ops.attention_backward(ctx, do)
    ref = R.attention_backward(q, k, v, do, False, None, mask)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        _close(g, r, np.float64, 40)
    np.testing.assert_array_equal(ops.attention(q, k, v, mask=mask), out)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("b, h, n, d", [(1, 1, 1, 16), (3, 4, 16, 16), (9, 2, 77, 32),
                                        (2, 3, 7, 1)])
def test_attention_strided_heads_and_out(backend, dtype, causal, b, h, n, d, rng):
    """Heads read in place from a fused (B, N, 3, H, d) projection, the output written through
    out= into a (B, N, H, d) buffer and the gradients into a fused (B, N, 3, H, d) one: the
    values of the contiguous path, and the buffers hold them with no join copy."""
    y = rng.standard_normal((b, n, 3 * h * d)).astype(dtype)
    qkv = y.reshape(b, n, 3, h, d).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    qc, kc, vc = (np.ascontiguousarray(a) for a in (q, k, v))
    obuf = np.full((b, n, h * d), np.nan, dtype)
    oview = obuf.reshape(b, n, h, d).transpose(0, 2, 1, 3)
    out, ctx = ops.attention_forward(q, k, v, causal=causal, out=oview)
    assert np.shares_memory(out, obuf)
    ref_out = R.attention(qc, kc, vc, causal, None, None)
    _close(out, ref_out, dtype, n, "out")
    _close(obuf.reshape(b, n, h, d).transpose(0, 2, 1, 3), ref_out, dtype, n, "buffer")
    do_buf = rng.standard_normal((b, n, h * d)).astype(dtype)
    do = do_buf.reshape(b, n, h, d).transpose(0, 2, 1, 3)
    gbuf = np.full((b, n, 3 * h * d), np.nan, dtype)
    dst = tuple(gbuf.reshape(b, n, 3, h, d).transpose(2, 0, 3, 1, 4))
    got = ops.attention_backward(ctx, do, out=dst)
    ref = R.attention_backward(qc, kc, vc, np.ascontiguousarray(do), causal, None, None)
    for g, t, r, name in zip(got, dst, ref, ("dq", "dk", "dv")):
        assert g.shape == r.shape and np.shares_memory(g, gbuf)
        _close(t, r, dtype, 3 * n, name)
    assert not np.isnan(gbuf).any()
    # the contiguous path gives the same bits on the C++ kernels (the same sums in the same order)
    out_c, ctx_c = ops.attention_forward(qc, kc, vc, causal=causal)
    if backend == "cpp":
        np.testing.assert_array_equal(out, out_c)
        for g, gc in zip(got, ops.attention_backward(ctx_c, np.ascontiguousarray(do))):
            np.testing.assert_array_equal(g, gc)


def test_attention_out_overlapping_an_input_still_correct(backend, rng):
    """An out= that aliases an input is computed aside and copied in, as NumPy's ufuncs do."""
    q, k, v = _qkv(rng, 2, 2, 6, 6, 8, 8, np.float64)
    ref = R.attention(q, k, v, False, None, None)
    qq = q.copy()
    got = ops.attention(qq, k, v, out=qq)
    assert np.shares_memory(got, qq)
    _close(qq, ref, np.float64, 6, "aliased out")
    out, ctx = ops.attention_forward(q, k, v)
    do = rng.standard_normal(out.shape)
    ref_g = R.attention_backward(q, k, v, do, False, None, None)
    g = np.empty((3,) + q.shape)
    got = ops.attention_backward(ctx, do, out=(g[0], g[0], g[2]))  # dq and dk share one array
    _close(g[2], ref_g[2], np.float64, 18, "dv")
    _close(got[1], ref_g[1], np.float64, 18, "dk (written last)")


def test_attention_out_three_d(backend, rng):
    q, k, v = _qkv(rng, 2, 1, 5, 7, 8, 3, np.float32, three_d=True)
    out = np.empty((2, 5, 3), np.float32)
    got = ops.attention(q, k, v, out=out)
    assert np.shares_memory(got, out) and got.shape == (2, 5, 3)
    _close(out, R.attention(q, k, v, False, None, None), np.float32, 7, "3-D out")


def test_attention_out_bad_input(rng):
    q, k, v = _qkv(rng, 2, 3, 5, 6, 8, 4, np.float32)
    for out, exc, words in [(np.empty((2, 3, 5, 5), np.float32), ValueError, "shape"),
                            (np.empty((2, 3, 5, 4), np.float64), TypeError, "dtype"),
                            ([[0.0]], TypeError, "NumPy array")]:
        with pytest.raises(exc, match=words):
            ops.attention(q, k, v, out=out)
    ro = np.empty((2, 3, 5, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        ops.attention(q, k, v, out=ro)
    out, ctx = ops.attention_forward(q, k, v)
    with pytest.raises(TypeError, match="tuple"):
        ops.attention_backward(ctx, out, out=np.empty_like(q))
    with pytest.raises(ValueError, match="dk must have shape"):
        ops.attention_backward(ctx, out, out=(np.empty_like(q), np.empty_like(v),
                                              np.empty_like(v)))


def test_attention_kernel_rejects_bad_strides():
    """A direct caller of _C gets an error, not wrong strides."""
    C = _backend._C
    if C is None:
        pytest.skip("no C++ module")
    q = np.zeros((1, 1, 4, 8), np.float32)
    lse = np.zeros((1, 1, 4), np.float32)
    col = np.zeros((1, 1, 8, 4), np.float32).transpose(0, 1, 3, 2)  # not unit-stride along d
    with pytest.raises(ValueError, match="unit-stride"):
        C.attention_forward(np.zeros_like(q), lse, q, col, q, None, 1.0, False)


def test_attention_fully_masked_rows_are_zero(backend, rng):
    """Causal with Nq > Nk masks the first rows entirely; a boolean mask masks others."""
    q, k, v = _qkv(rng, 1, 2, 9, 4, 16, 8, np.float32)
    mask = np.ones((9, 4), bool)
    mask[7] = False
    out, ctx = ops.attention_forward(q, k, v, causal=True, mask=mask)
    empty = [0, 1, 2, 3, 4, 7]  # rows i with i + (4 - 9) < 0, and row 7
    assert np.isfinite(out).all()
    assert np.all(out[:, :, empty] == 0)
    assert np.all(np.isneginf(ctx.lse[:, :, empty]))
    assert np.all(out[:, :, [5, 6, 8]] != 0)
    do = rng.standard_normal(out.shape).astype(np.float32)
    dq, dk, dv = ops.attention_backward(ctx, do)
    assert np.isfinite(dq).all() and np.isfinite(dk).all() and np.isfinite(dv).all()
    assert np.all(dq[:, :, empty] == 0)
    ref = R.attention_backward(q, k, v, do, True, None, mask)
    for g, r in zip((dq, dk, dv), ref):
        _close(g, r, np.float32, 40)
    # An additive mask of -inf everywhere: every row empty.
    out = ops.attention(q, k, v, mask=np.full((9, 4), -np.inf, np.float32))
    assert np.all(out == 0)


def test_attention_no_keys_and_empty_batch(backend, rng):
    q, k, v = _qkv(rng, 2, 1, 3, 0, 8, 5, np.float64)
    out, ctx = ops.attention_forward(q, k, v)
    assert out.shape == (2, 1, 3, 5) and np.all(out == 0)
    dq, dk, dv = ops.attention_backward(ctx, np.ones_like(out))
    assert np.all(dq == 0) and dk.shape == (2, 1, 0, 8) and dv.shape == (2, 1, 0, 5)
    q, k, v = _qkv(rng, 0, 2, 3, 4, 8, 5, np.float32)
    assert ops.attention(q, k, v).shape == (0, 2, 3, 5)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_backward_finite_differences(backend, causal, rng):
    b, h, nq, nk, d, dv = 1, 2, 5, 6, 4, 3
    q, k, v = _qkv(rng, b, h, nq, nk, d, dv, np.float64)
    mask = rng.standard_normal((nq, nk))
    mask[1, :] = -np.inf  # a fully masked row
    w = rng.standard_normal((b, h, nq, dv))
    out, ctx = ops.attention_forward(q, k, v, causal=causal, mask=mask, scale=0.7)
    got = ops.attention_backward(ctx, w)

    def loss():
        return float((ops.attention(q, k, v, causal=causal, mask=mask, scale=0.7) * w).sum())

    for name, x, g in zip("qkv", (q, k, v), got):
        num = numeric_grad(loss, x)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8, err_msg="d" + name)


def test_attention_matches_torch_sdpa(rng):
    torch = pytest.importorskip("torch")
    q, k, v = _qkv(rng, 2, 2, 6, 10, 8, 8, np.float64)
    for causal in (False, True):
        want = torch.nn.functional.scaled_dot_product_attention(
            torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v),
            is_causal=False,
            attn_mask=(torch.ones(6, 10, dtype=torch.bool).tril(4) if causal else None))
        np.testing.assert_allclose(ops.attention(q, k, v, causal=causal), want.numpy(),
                                   rtol=1e-10, atol=1e-12)


# ---- bad input ----------------------------------------------------------------------------------

def test_attention_bad_input(rng):
    q, k, v = _qkv(rng, 2, 3, 5, 6, 8, 4, np.float32)
    cases = [
        ((q, k[..., :7], v), {}, ValueError, "head size d"),
        ((q, k, v[:, :, :5]), {}, ValueError, "number of keys"),
        ((q, k[:, :2], v[:, :2]), {}, ValueError, "leading axes"),
        ((q[0], k, v), {}, ValueError, "4-D"),
        ((q[..., :0], k[..., :0], v), {}, ValueError, "head sizes"),
        ((q, k, v.astype(np.float64)), {}, TypeError, "dtype"),
        ((q.astype(np.int32), k, v), {}, TypeError, "float32 or float64"),
        ((q, k, v), {"mask": np.ones((5, 7), bool)}, ValueError, "does not broadcast"),
        ((q, k, v), {"mask": np.ones((2, 3, 5, 6, 1), bool)}, ValueError, "more axes"),
        ((q, k, v), {"mask": np.ones((5, 6), np.int64)}, TypeError, "boolean"),
        ((q, k, v), {"causal": 1}, TypeError, "causal"),
        ((q, k, v), {"scale": float("nan")}, ValueError, "scale"),
        ((q, k, v), {"scale": "big"}, TypeError, "scale"),
    ]
    for args, kw, exc, words in cases:
        with pytest.raises(exc, match=words):
            ops.attention(*args, **kw)
    out, ctx = ops.attention_forward(q, k, v)
    with pytest.raises(ValueError, match="shape"):
        ops.attention_backward(ctx, out[:, :, :4])
    with pytest.raises(TypeError, match="dtype"):
        ops.attention_backward(ctx, out.astype(np.float64))
    with pytest.raises(TypeError, match="attention_forward"):
        ops.attention_backward(object(), out)


# ---- layer norm ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (2, 5, 64), (129, 80), (4, 3, 2, 257)])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_matches_reference(backend, dtype, shape, affine, rng):
    d = shape[-1]
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    g = rng.standard_normal(d).astype(dtype) if affine else None
    b = rng.standard_normal(d).astype(dtype) if affine else None
    y, ctx = ops.layer_norm_forward(x, g, b, 1e-5)
    assert y.shape == x.shape and y.dtype == dtype
    _close(y, R.layer_norm(x, g, b, 1e-5), dtype, d, "y")
    dy = rng.standard_normal(shape).astype(dtype)
    dx, dg, db = ops.layer_norm_backward(ctx, dy)
    rdx, rdg, rdb = R.layer_norm_backward(x, dy, g, 1e-5)
    _close(dx, rdx, dtype, d * 4, "dx")
    if affine:
        rows = x.size // d
        _close(dg, rdg, dtype, rows * 4, "dgamma")
        _close(db, rdb, dtype, rows * 4, "dbeta")
    else:
        assert dg is None and db is None
    np.testing.assert_array_equal(ops.layer_norm(x, g, b, 1e-5), y)


def test_layer_norm_finite_differences(backend, rng):
    x = rng.standard_normal((3, 2, 6))
    g, b = rng.standard_normal(6), rng.standard_normal(6)
    w = rng.standard_normal(x.shape)
    _, ctx = ops.layer_norm_forward(x, g, b, 1e-3)
    got = ops.layer_norm_backward(ctx, w)

    def loss():
        return float((ops.layer_norm(x, g, b, 1e-3) * w).sum())

    for name, p, grad in zip(("x", "gamma", "beta"), (x, g, b), got):
        np.testing.assert_allclose(grad, numeric_grad(loss, p), rtol=1e-6, atol=1e-8,
                                   err_msg="d" + name)


def test_layer_norm_constant_rows_and_empty(backend):
    x = np.full((2, 5), 3.0, np.float32)
    y = ops.layer_norm(x)
    assert np.all(y == 0)
    y, ctx = ops.layer_norm_forward(np.zeros((0, 4)), np.ones(4), np.zeros(4))
    dx, dg, db = ops.layer_norm_backward(ctx, np.zeros((0, 4)))
    assert dx.shape == (0, 4) and np.all(dg == 0) and np.all(db == 0)


def test_layer_norm_bad_input():
    x = np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match=r"gamma must have shape \(5,\)"):
        ops.layer_norm(x, np.ones(4, np.float32))
    with pytest.raises(TypeError, match="dtype"):
        ops.layer_norm(x, np.ones(5, np.float64))
    with pytest.raises(ValueError, match="last axis"):
        ops.layer_norm(np.zeros((3, 0)))
    with pytest.raises(ValueError, match="eps"):
        ops.layer_norm(x, eps=0.0)
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.layer_norm(np.zeros((2, 5), np.int64))
    _, ctx = ops.layer_norm_forward(x)
    with pytest.raises(ValueError, match="shape"):
        ops.layer_norm_backward(ctx, np.zeros((2, 4), np.float32))
    with pytest.raises(TypeError, match="layer_norm_forward"):
        ops.layer_norm_backward(None, x)


@needs_isa
@pytest.mark.parametrize("dtype", DTYPES)
def test_vector_exp_matches_float64(isa, dtype):
    """The ISA's exp (the softmax's): a few ulp of float64 exp, exactly 0 for -inf, NaN for
    NaN."""
    if np.dtype(dtype) == np.float32:
        x = np.concatenate([np.linspace(-87.3, 80.0, 200_003), [-87.4, -1e4, -np.inf, 0.0]])
        rtol, tiny = 4 * 2.0 ** -23, 1e-37
    else:
        x = np.concatenate([np.linspace(-708.3, 700.0, 200_003), [-708.5, -1e6, -np.inf, 0.0]])
        rtol, tiny = 4 * 2.0 ** -52, 1e-306
    x = x.astype(dtype)
    y = np.empty_like(x)
    _backend._C._attention_exp(y, x)
    ref = np.exp(x.astype(np.float64))
    big = ref > tiny
    rel = np.abs(y[big] - ref[big]) / ref[big]
    assert rel.max() <= rtol, (rel.max(), x[big][np.argmax(rel)])
    assert np.all(y[~big] <= tiny)
    assert y[-2] == 0 and y[-1] == 1
    nan = np.array([np.nan] * 17, dtype)
    _backend._C._attention_exp(y[:17], nan)
    assert np.isnan(y[:17]).all()


def test_cuda_mask_staging_keeps_broadcast_axes_unmaterialized():
    """The CUDA wrapper stages only a mask's distinct elements and passes zero strides for the
    broadcast axes (pure Python: runs without a GPU)."""
    from fastnn import cuda
    base = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    view = np.broadcast_to(base, (4, 5, 2, 3))
    compact = cuda._compact_mask(view)
    assert compact.shape == (1, 1, 2, 3) and compact.flags.c_contiguous
    v = cuda._View(1234, compact.shape, (6, 6, 3, 1), compact.dtype)
    ptr, typ, shape, strides = cuda._mask_img(v, view.shape)
    assert (ptr, typ, shape, strides) == (1234, "f4", (4, 5, 2, 3), (0, 0, 3, 1))
    assert cuda._compact_mask(None) is None
