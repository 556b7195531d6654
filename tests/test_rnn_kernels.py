"""The C++ recurrent kernels under every ISA this CPU can run: the vector sigmoid/tanh against
float64, and the LSTM/GRU/RNN forward and backward against the references on shapes that hit
whole vectors, vector tails, partial unit blocks and several unit chunks."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import backend as _backend

from helpers import check_op
import test_rnn as tr

_C = _backend._C
pytestmark = pytest.mark.skipif(_C is None, reason="no C++ module")


def _inputs(rng):
    f = np.finfo(np.float32)
    special = np.array([0.0, -0.0, 1e-30, -1e-30, 1e-40, -1e-40, f.tiny, -f.tiny, 0.5499, 0.55,
                        0.5501, -0.55, 8.99, 9.0, 9.01, 20.0, -20.0, 86.9, 87.0, 87.1, 88.0,
                        88.5, 89.0, 100.0, -86.9, -87.0, -87.1, -88.0, -88.5, -89.0, -100.0,
                        -103.0, -104.0, f.max, -f.max, np.inf, -np.inf, np.nan], np.float32)
    dense = np.linspace(-30, 30, 100001, dtype=np.float32)
    wide = (np.sign(rng.standard_normal(20000)) *
            np.exp(rng.uniform(np.log(1e-12), np.log(200.0), 20000))).astype(np.float32)
    # 37 is not a multiple of any vector width: the tail path runs too
    return np.concatenate([special, dense, wide, special[:37]])


def _ulps(got, ref):
    """|got - ref| in units of the float32 spacing at ref (NaN where both are NaN)."""
    ref32 = ref.astype(np.float32)
    spacing = np.spacing(np.abs(ref32)).astype(np.float64)
    with np.errstate(invalid="ignore"):
        return np.abs(got.astype(np.float64) - ref) / spacing


@pytest.mark.parametrize("fn", ["sigmoid", "tanh"])
def test_vector_nonlinearities_within_few_ulp(isa, rng, fn):
    x = _inputs(rng)
    y = np.empty_like(x)
    getattr(_C, "vmath_" + fn)(y, x)
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore"):
        ref = 1.0 / (1.0 + np.exp(-x64)) if fn == "sigmoid" else np.tanh(x64)
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(y), nan), "NaN must propagate, and only from NaN"
    normal = ~nan & (np.abs(ref) >= np.finfo(np.float32).tiny)
    err = _ulps(y[normal], ref[normal])
    worst = int(np.argmax(err))
    assert err.max() <= 4, (f"{fn}({x[normal][worst]!r}) = {y[normal][worst]!r}, float64 "
                            f"{ref[normal][worst]!r}: {err.max():.1f} ulp")
    # below the normal range (sigmoid of x < -87): a result of that size, not garbage
    tiny = ~nan & ~normal
    assert np.all(np.abs(y[tiny]) <= np.finfo(np.float32).tiny)
    assert np.all(y[~nan] >= -1) and np.all(y[~nan] <= 1)


# (B, T, I, H): H = 33 (two vector blocks and a one-unit block), 20 (a 4-unit block), 1;
# B = 17, H = 80 runs several unit chunks on two threads (column mode); B = 37, H = 64 splits
# the batch between two threads (row mode: groups of 18 and 19 rows, partial row tiles); B = 33,
# H = 520 has weights too large for row mode, so it runs column mode on a batch that row mode
# would otherwise take.
ISA_SHAPES = [(2, 3, 5, 33), (3, 2, 4, 20), (1, 2, 3, 1), (17, 3, 6, 80), (37, 4, 6, 64),
              (33, 2, 7, 520)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", ISA_SHAPES)
@pytest.mark.parametrize("kind", tr.KINDS)
def test_kernels_match_reference_under_every_isa(isa, rng, kind, shape, dtype):
    prev = fastnn.get_num_threads()
    fastnn.set_num_threads(2)
    try:
        with _backend.use_backend("cpp"):
            p, lengths = tr._setup(rng, kind, shape, dtype)
            b, t, i, h = shape
            out, ctx = tr._forward(kind, p, lengths)
            for got, r in zip(out, tr._ref_forward(kind, p, lengths)):
                check_op(got, r, dtype, reduction=i + h)
            dy = rng.standard_normal((b, t, h)).astype(dtype)
            dh = rng.standard_normal((b, h)).astype(dtype)
            dc = rng.standard_normal((b, h)).astype(dtype) if kind == "lstm" else None
            grads = tr._backward(kind, ctx, dy, dh, dc)
            for got, r in zip(grads, tr._ref_backward(kind, p, lengths, dy, dh, dc)):
                check_op(got, r, dtype, reduction=b * t * (i + h), scale=4.0)
    finally:
        fastnn.set_num_threads(prev)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_saved_gates_streamed_past_the_caches(isa, rng, kind):
    """B=64, T=80, H=256: 26 MB of saved LSTM gates, over the 16 MiB from which the LSTM
    forward streams them instead of storing them (rnn.cpp, stream_saved; every smaller shape
    here stores them). The GRU streams its saved gates at every size."""
    prev = fastnn.get_num_threads()
    fastnn.set_num_threads(2)
    try:
        with _backend.use_backend("cpp"):
            shape = (64, 80, 8, 256)
            p, lengths = tr._setup(rng, kind, shape, np.float32)
            b, t, i, h = shape
            out, ctx = tr._forward(kind, p, lengths)
            assert ctx.gates.nbytes > 16 * 2**20
            for got, r in zip(out, tr._ref_forward(kind, p, lengths)):
                check_op(got, r, np.float32, reduction=i + h)
            dy = rng.standard_normal((b, t, h)).astype(np.float32)
            grads = tr._backward(kind, ctx, dy, None, None)
            for got, r in zip(grads, tr._ref_backward(kind, p, lengths, dy, None, None)):
                check_op(got, r, np.float32, reduction=b * t * (i + h), scale=4.0)
    finally:
        fastnn.set_num_threads(prev)


def test_nan_input_propagates():
    rng = np.random.default_rng(0)
    p, _ = tr._setup(rng, "lstm", (2, 3, 4, 5), np.float32, mixed=False)
    p["x"][1, 1, 2] = np.nan
    with _backend.use_backend("cpp"):
        (y, h_n, c_n), _ = tr._forward("lstm", p, None)
    assert np.isnan(y[1, 1:]).all() and not np.isnan(y[0]).any() and not np.isnan(y[1, 0]).any()
    assert np.isnan(h_n[1]).all() and np.isnan(c_n[1]).all()
