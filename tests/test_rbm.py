"""RBM ops against the float64 references (fastnn.reference.rbm), every backend and dtype."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from fastnn import ops
from fastnn import reference as ref
from fastnn.reference import rbm as rref

from helpers import check_fused_rbm_step, check_op

DTYPES = [np.float32, np.float64]
# (batch, n_visible, n_hidden): nothing tiles evenly on purpose.


SHAPES = [(1, 1, 1), (7, 9, 17), (33, 65, 17), (5, 130, 33), (0, 4, 3), (150, 5, 2)]
# Big enough for the blocked GEMM, whose epilogue runs on the last k block only; the last two
# run as one part a thread: by columns (visible 600 x 700, k = 300) and by rows (hidden
# 600 x 100, k = 1100).
BIG = [(200, 300, 700), (96, 700, 260), (600, 700, 300), (600, 1100, 100)]


def _params(rng, nv, nh, dtype, scale=0.5):
    w = (rng.standard_normal((nh, nv)) * scale).astype(dtype)
    bv = (rng.standard_normal(nv) * 0.3).astype(dtype)
    bh = (rng.standard_normal(nh) * 0.3).astype(dtype)
    return w, bv, bh


def _check_samples(got, p_ref, seed, stage, dtype):
    """got must be the draw ``u < p`` of the reference uniforms, except where p (computed in
    lower precision) lies within rounding of u."""
    assert got.dtype == np.dtype(dtype)
    assert set(np.unique(got)) <= {0.0, 1.0}
    u = rref.rbm_uniform(p_ref.shape, seed, stage)
    want = (u < p_ref).astype(np.float64)
    margin = 1e-5 if np.dtype(dtype) == np.float32 else 1e-12
    off = got != want
    assert np.all(np.abs(u - p_ref)[off] < margin), f"{off.sum()} samples differ"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_rbm_hidden_probabilities_and_samples(backend, rng, dtype, shape):
    b, nv, nh = shape
    w, _, bh = _params(rng, nv, nh, dtype)
    v = rng.random((b, nv)).astype(dtype)
    p = ops.rbm_hidden(v, w, bh)
    want = ref.rbm_hidden(v, w, bh)
    check_op(p, want, dtype, reduction=nv, scale=2.0)
    for seed in (0, 12345):
        s = ops.rbm_hidden(v, w, bh, sample=True, seed=seed)
        _check_samples(s, want, seed, 0, dtype)
        np.testing.assert_array_equal(s, ops.rbm_hidden(v, w, bh, sample=True, seed=seed))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_rbm_visible_bernoulli_and_gaussian(backend, rng, dtype, shape):
    b, nv, nh = shape
    w, bv, _ = _params(rng, nv, nh, dtype)
    h = (rng.random((b, nh)) < 0.5).astype(dtype)
    p = ops.rbm_visible(h, w, bv)
    want = ref.rbm_visible(h, w, bv)
    check_op(p, want, dtype, reduction=nh, scale=2.0)
    s = ops.rbm_visible(h, w, bv, sample=True, seed=7)
    _check_samples(s, want, 7, 0, dtype)
    mean = ops.rbm_visible(h, w, bv, visible="gaussian")
    check_op(mean, ref.rbm_visible(h, w, bv, visible="gaussian"), dtype, reduction=nh, scale=2.0)
    g = ops.rbm_visible(h, w, bv, visible="gaussian", sample=True, seed=3)
    check_op(g, ref.rbm_visible(h, w, bv, visible="gaussian", sample=True, seed=3), dtype,
             reduction=nh, scale=8.0)


@pytest.mark.parametrize("shape", BIG)
def test_sampling_on_the_blocked_gemm(rng, shape):
    b, nv, nh = shape
    w, bv, bh = _params(rng, nv, nh, np.float32, scale=0.1)
    v = rng.random((b, nv)).astype(np.float32)
    _check_samples(ops.rbm_hidden(v, w, bh, sample=True, seed=5), ref.rbm_hidden(v, w, bh), 5, 0,
                   np.float32)
    h = (rng.random((b, nh)) < 0.5).astype(np.float32)
    _check_samples(ops.rbm_visible(h, w, bv, sample=True, seed=6), ref.rbm_visible(h, w, bv), 6,
                   0, np.float32)


def test_samples_are_bernoulli_with_the_right_mean(backend):
    # One unit with a known probability, many rows: the draw is unbiased (a 6-sigma band).
    w = np.zeros((1, 1)), np.full(1, np.log(0.3 / 0.7))
    v = np.zeros((20000, 1))
    s = ops.rbm_hidden(v, w[0], w[1], sample=True, seed=99)
    assert abs(s.mean() - 0.3) < 6 * np.sqrt(0.3 * 0.7 / 20000)
    g = ops.rbm_visible(np.zeros((20000, 1)), np.zeros((1, 1)), np.zeros(1), visible="gaussian",
                        sample=True, seed=5)
    assert abs(g.mean()) < 0.05 and abs(g.std() - 1.0) < 0.05


CD_CASES = [  # (k, persistent, momentum, weight_decay, visible)
    (1, False, 0.0, 0.0, "bernoulli"),
    (3, False, 0.5, 1e-3, "bernoulli"),
    (1, True, 0.0, 0.0, "bernoulli"),
    (2, True, 0.9, 1e-2, "bernoulli"),
    (1, False, 0.0, 0.0, "gaussian"),
    (2, True, 0.5, 1e-3, "gaussian"),
]


@pytest.mark.parametrize("case", CD_CASES)
@pytest.mark.parametrize("shape", [(1, 3, 2), (7, 9, 17), (33, 65, 17)])
def test_cd_step_equals_the_reference_update(backend, rng, case, shape):
    k, persistent, mu, wd, visible = case
    b, nv, nh = shape
    dt = np.float64
    w, bv, bh = _params(rng, nv, nh, dt)
    if visible == "gaussian":
        v0 = rng.standard_normal((b, nv))
    else:
        v0 = rng.random((b, nv))
        v0[:, ::2] = v0[:, ::2] > 0.5
    chain = (rng.random((b + 2, nh)) < 0.5).astype(dt) if persistent else None
    vel = tuple(rng.standard_normal(a.shape) * 0.01 for a in (w, bv, bh)) if mu else None
    want = ref.rbm_cd_step(v0, w, bv, bh, k=k, persistent_chain=chain, lr=0.1, momentum=mu,
                           weight_decay=wd, seed=42, visible=visible, velocity=vel)
    ch = None if chain is None else chain.copy()
    vl = None if vel is None else tuple(a.copy() for a in vel)
    err = ops.rbm_cd_step(v0, w, bv, bh, k=k, persistent_chain=ch, lr=0.1, momentum=mu,
                          weight_decay=wd, seed=42, visible=visible, velocity=vl)
    for got, exp in zip((w, bv, bh), want[:3]):
        check_op(got, exp, dt, reduction=2 * b + 2, scale=2.0)
    if persistent:
        np.testing.assert_array_equal(ch, want[3])
    if mu:
        for got, exp in zip(vl, want[4]):
            check_op(got, exp, dt, reduction=2 * b + 2, scale=2.0)
    assert err == pytest.approx(want[5], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("persistent", [False, True])
def test_cd_step_float32_tracks_the_reference(backend, rng, persistent):
    # float32 probabilities differ from float64 ones in the last bits, so an occasional sample
    # may flip; the update still agrees closely with the float64 one from the same seed.
    b, nv, nh = 16, 40, 12
    w, bv, bh = _params(rng, nv, nh, np.float32, scale=0.1)
    v0 = (rng.random((b, nv)) < 0.4).astype(np.float32)
    chain = (rng.random((b, nh)) < 0.5).astype(np.float32) if persistent else None
    want = ref.rbm_cd_step(v0, w, bv, bh, k=2, persistent_chain=chain, lr=0.05, seed=3)
    ch = None if chain is None else chain.copy()
    err = ops.rbm_cd_step(v0, w, bv, bh, k=2, persistent_chain=ch, lr=0.05, seed=3)
    assert w.dtype == np.float32
    assert np.mean(np.abs(w - want[0]) < 1e-5) > 0.95
    assert err == pytest.approx(want[5], rel=1e-4)


def test_cd_step_without_error_returns_none(backend, rng):
    w, bv, bh = _params(rng, 5, 3, np.float64)
    v0 = (rng.random((4, 5)) < 0.5).astype(np.float64)
    want = ref.rbm_cd_step(v0, w, bv, bh, lr=0.1, seed=1)
    assert ops.rbm_cd_step(v0, w, bv, bh, lr=0.1, seed=1, compute_error=False) is None
    check_op(w, want[0], np.float64, reduction=10)


def test_cd_step_without_value_scans_gives_the_same_update(backend, rng):
    w, bv, bh = _params(rng, 9, 5, np.float64)
    v0 = (rng.random((6, 9)) < 0.5).astype(np.float64)
    chain = (rng.random((4, 5)) < 0.5).astype(np.float64)
    want = ref.rbm_cd_step(v0, w, bv, bh, persistent_chain=chain, lr=0.1, seed=8)
    err = ops.rbm_cd_step(v0, w, bv, bh, persistent_chain=chain, lr=0.1, seed=8,
                          check_values=False)
    check_op(w, want[0], np.float64, reduction=20)
    np.testing.assert_array_equal(chain, want[3])
    assert err == pytest.approx(want[5], rel=1e-9)


def _brute_free_energy(v, w, bv, bh):
    # F(v) = -log sum_h exp(-E(v, h)), E = -v.bv - h.bh - h.W.v, by enumerating every h.
    nh = w.shape[0]
    out = []
    for row in v:
        terms = [row @ bv + np.array(h) @ bh + np.array(h) @ (w @ row)
                 for h in itertools.product((0.0, 1.0), repeat=nh)]
        out.append(-np.logaddexp.reduce(terms))
    return np.array(out)


@pytest.mark.parametrize("dtype", DTYPES)
def test_free_energy_matches_direct_sum(backend, rng, dtype):
    w, bv, bh = _params(rng, 6, 4, dtype)
    v = (rng.random((9, 6)) < 0.5).astype(dtype)
    fe = ops.rbm_free_energy(v, w, bv, bh)
    assert fe.dtype == np.float64
    brute = _brute_free_energy(v.astype(np.float64), *(a.astype(np.float64) for a in (w, bv, bh)))
    np.testing.assert_allclose(fe, brute, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)
    check_op(fe.astype(dtype), ref.rbm_free_energy(v, w, bv, bh), dtype, reduction=24, scale=4.0)
    g = ops.rbm_free_energy(v, w, bv, bh, visible="gaussian")
    np.testing.assert_allclose(g, ref.rbm_free_energy(v, w, bv, bh, visible="gaussian"),
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (13, 33, 17), (40, 7, 65)])
def test_pseudo_likelihood_matches_reference(backend, rng, dtype, shape):
    b, nv, nh = shape
    w, bv, bh = _params(rng, nv, nh, dtype)
    v = rng.random((b, nv)).astype(dtype)
    v[::2] = v[::2] > 0.5
    pl = ops.rbm_pseudo_likelihood(v, w, bv, bh, seed=11)
    want = ref.rbm_pseudo_likelihood(v, w, bv, bh, seed=11)
    assert pl.dtype == np.float64 and np.all(pl <= 0)
    np.testing.assert_allclose(pl, want, rtol=2e-5 if dtype == np.float32 else 1e-10,
                               atol=1e-4 if dtype == np.float32 else 1e-10)


def test_pseudo_likelihood_reference_is_the_flip_formula(rng):
    w, bv, bh = _params(rng, 8, 5, np.float64)
    v = (rng.random((6, 8)) < 0.5).astype(np.float64)
    idx = rref.rbm_flip_index(6, 8, 4)
    assert idx.min() >= 0 and idx.max() < 8
    pl = ref.rbm_pseudo_likelihood(v, w, bv, bh, seed=4)
    for i in range(6):
        vf = v[i].copy()
        vf[idx[i]] = 1 - vf[idx[i]]
        f, ff = _brute_free_energy(np.stack([v[i], vf]), w, bv, bh)
        assert pl[i] == pytest.approx(8 * np.log(1 / (1 + np.exp(-(ff - f)))), rel=1e-10)


def test_bad_arguments_raise_clear_errors(rng):
    w, bv, bh = _params(rng, 6, 4, np.float64)
    v = (rng.random((3, 6)) < 0.5).astype(np.float64)
    with pytest.raises(ValueError, match="6 columns"):
        ops.rbm_hidden(v[:, :5], w, bh)
    with pytest.raises(ValueError, match=r"b_hid must have shape \(4,\)"):
        ops.rbm_hidden(v, w, bv)
    with pytest.raises(ValueError, match=r"h must have 4 columns"):
        ops.rbm_visible(v, w, bv)
    with pytest.raises(TypeError, match="seed"):
        ops.rbm_hidden(v, w, bh, sample=True)
    with pytest.raises(TypeError, match="dtype"):
        ops.rbm_hidden(v.astype(np.float32), w, bh)
    with pytest.raises(ValueError, match="k must be >= 1"):
        ops.rbm_cd_step(v, w, bv, bh, k=0, lr=0.1, seed=0)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        ops.rbm_cd_step(v * 3, w, bv, bh, lr=0.1, seed=0)
    bad = v.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ops.rbm_cd_step(bad, w, bv, bh, lr=0.1, seed=0)
    with pytest.raises(ValueError, match="NaN"):
        ops.rbm_hidden(bad, w, bh)
    with pytest.raises(ValueError, match="NaN"):
        ops.rbm_cd_step(v, w * np.nan, bv, bh, lr=0.1, seed=0)
    with pytest.raises(ValueError, match="visible"):
        ops.rbm_cd_step(v, w, bv, bh, lr=0.1, seed=0, visible="binary")
    with pytest.raises(ValueError, match="velocity"):
        ops.rbm_cd_step(v, w, bv, bh, lr=0.1, seed=0, momentum=0.5)
    with pytest.raises(ValueError, match="persistent_chain must have shape"):
        ops.rbm_cd_step(v, w, bv, bh, lr=0.1, seed=0, persistent_chain=np.zeros((3, 5)))
    with pytest.raises(ValueError, match="0/1"):
        ops.rbm_cd_step(v, w, bv, bh, lr=0.1, seed=0, persistent_chain=np.full((3, 4), 0.5))
    with pytest.raises(TypeError, match="in place"):
        ops.rbm_cd_step(v, w.T.copy().T, bv, bh, lr=0.1, seed=0)
    with pytest.raises(TypeError, match="in place"):
        ops.rbm_cd_step(v, w.tolist(), bv, bh, lr=0.1, seed=0)
    with pytest.raises(ValueError, match="lr"):
        ops.rbm_cd_step(v, w, bv, bh, lr=-1.0, seed=0)
    with pytest.raises(ValueError, match="at least one row"):
        ops.rbm_cd_step(v[:0], w, bv, bh, lr=0.1, seed=0)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        ops.rbm_pseudo_likelihood(v - 1, w, bv, bh)
    # The parameters are untouched by a rejected call.
    w0 = w.copy()
    with pytest.raises(ValueError):
        ops.rbm_cd_step(v * 3, w, bv, bh, lr=0.1, seed=0)
    np.testing.assert_array_equal(w, w0)


@pytest.mark.parametrize("persistent", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cd_step_on_rows_of_a_larger_array(backend, rng, persistent, dtype):
    # rows=idx: the batch is data[idx], gathered by the step; the same update as passing it.
    nv, nh = 23, 9
    data = (rng.random((50, nv)) < 0.4).astype(dtype)
    idx = rng.permutation(50)[:12]
    results = []
    for given in ("copy", "rows"):
        w, bv, bh = _params(np.random.default_rng(5), nv, nh, dtype, scale=0.1)
        chain = (np.random.default_rng(6).random((8, nh)) < 0.5).astype(dtype) if persistent \
            else None
        errs = []
        for s in range(3):
            if given == "copy":
                errs.append(ops.rbm_cd_step(data[idx], w, bv, bh, persistent_chain=chain,
                                            lr=0.1, seed=s))
            else:
                errs.append(ops.rbm_cd_step(data, w, bv, bh, persistent_chain=chain, lr=0.1,
                                            seed=s, rows=idx))
        results.append((w, bv, bh, chain, errs))
    for a, b in zip(*results):
        if a is not None:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("ordered", [False, True])
def test_cd_steps_equal_separate_cd_steps(backend, rng, ordered):
    # rbm_cd_steps checks once and then runs the same updates as rbm_cd_step batch by batch.
    nv, nh, n, bs = 19, 7, 40, 12
    data = (rng.random((n, nv)) < 0.4).astype(np.float64)
    order = rng.permutation(n) if ordered else None
    results = []
    for how in ("steps", "step"):
        w, bv, bh = _params(np.random.default_rng(2), nv, nh, np.float64, scale=0.1)
        chain = (np.random.default_rng(3).random((5, nh)) < 0.5).astype(np.float64)
        kw = dict(persistent_chain=chain, lr=0.1)
        steps = ops.rbm_cd_steps(data, w, bv, bh, order=order, **kw) if how == "steps" else None
        errs = []
        for s, lo in enumerate(range(0, n, bs)):
            hi = min(lo + bs, n)
            if steps is not None:
                errs.append(steps(lo, hi, 100 + s, compute_error=s % 2 == 0))
            else:
                batch = data[order[lo:hi]] if ordered else data[lo:hi]
                errs.append(ops.rbm_cd_step(batch, w, bv, bh, seed=100 + s,
                                            compute_error=s % 2 == 0, **kw))
        results.append((w, bv, bh, chain, errs))
    (w0, bv0, bh0, c0, e0), (w1, bv1, bh1, c1, e1) = results
    for a, b in ((w0, w1), (bv0, bv1), (bh0, bh1), (c0, c1)):
        np.testing.assert_array_equal(a, b)
    assert [e is None for e in e0] == [e is None for e in e1]
    assert [e for e in e0 if e is not None] == pytest.approx([e for e in e1 if e is not None])


def test_cd_steps_arguments_are_checked(rng):
    w, bv, bh = _params(rng, 6, 4, np.float64)
    data = (rng.random((10, 6)) < 0.5).astype(np.float64)
    steps = ops.rbm_cd_steps(data, w, bv, bh, lr=0.1, order=rng.permutation(10))
    for start, stop in ((0, 11), (5, 5), (-1, 3), (0.0, 2)):
        with pytest.raises(ValueError, match="start < stop"):
            steps(start, stop, 0)
    with pytest.raises(ValueError, match="order must index the 10 rows"):
        ops.rbm_cd_steps(data, w, bv, bh, lr=0.1, order=[0, 10])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        ops.rbm_cd_steps(data * 3, w, bv, bh, lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        ops.rbm_cd_steps(data, w, bv, bh, lr=-0.1)
    with pytest.raises(TypeError, match="seed"):
        steps(0, 2, None)


@pytest.mark.parametrize("nh,nv,batch,particles", [(256, 784, 64, 64), (33, 70, 32, 50),
                                                   (100, 33, 3, 7), (7, 5, 3, 4)])
@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_fused_float32_pcd_step_gives_the_general_paths_bits(nh, nv, batch, particles, visible):
    # The PCD-1 step runs as one phased job (cpu/rbm_fused.cpp) on float32 products too.
    from fastnn import backend as _b
    if _b._C is None:
        pytest.skip("needs the C++ backend")
    check_fused_rbm_step(nh, nv, batch, particles, visible)


def test_cd_step_rows_are_checked(rng):
    w, bv, bh = _params(rng, 6, 4, np.float64)
    data = (rng.random((10, 6)) < 0.5).astype(np.float64)
    with pytest.raises(ValueError, match=r"rows must index the 10 rows"):
        ops.rbm_cd_step(data, w, bv, bh, lr=0.1, seed=0, rows=[0, 10])
    with pytest.raises(ValueError, match=r"rows must index"):
        ops.rbm_cd_step(data, w, bv, bh, lr=0.1, seed=0, rows=np.array([-1, 2]))
    with pytest.raises(TypeError, match="integer"):
        ops.rbm_cd_step(data, w, bv, bh, lr=0.1, seed=0, rows=np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="1-D"):
        ops.rbm_cd_step(data, w, bv, bh, lr=0.1, seed=0, rows=np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="non-empty"):
        ops.rbm_cd_step(data, w, bv, bh, lr=0.1, seed=0, rows=np.zeros(0, np.int64))
    bad = data.copy()
    bad[3, 1] = 2.0
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):  # the rows used are scanned
        ops.rbm_cd_step(bad, w, bv, bh, lr=0.1, seed=0, rows=[3, 4])
    ops.rbm_cd_step(bad, w, bv, bh, lr=0.1, seed=0, rows=[4, 5])  # row 3 not in the batch


@pytest.mark.parametrize("name", ["rbm_hidden", "rbm_visible", "rbm_cd_step",
                                  "rbm_free_energy", "rbm_pseudo_likelihood"])
def test_cuda_kernels_have_the_host_signatures(name):
    # fastnn.cuda defines its own RBM kernels (not host fallbacks), with the Numba signatures
    # (which tests/test_backend.py matches against the C++ ones); no GPU needed.
    import inspect

    import fastnn
    from fastnn import backend as _b
    assert name in vars(fastnn.cuda)
    got = list(inspect.signature(getattr(fastnn.cuda, name)).parameters)
    assert got == list(inspect.signature(getattr(_b.kernels("numba"), name)).parameters)
