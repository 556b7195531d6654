"""The recurrent family (LSTM, GRU, Elman RNN and their cells) against the float64 references,
on every backend, plus finite differences and bad input."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import ops
from fastnn import reference as ref
from fastnn import backend as _backend

from helpers import check_op, numeric_grad

GATES = {"lstm": 4, "gru": 3, "tanh": 1, "relu": 1}
KINDS = list(GATES)
DTYPES = [np.float32, np.float64]
# (B, T, I, H): T = 1, B = 1, H = 1, H = 7 / 33 (not a vector width), I != H
SHAPES = [(1, 1, 1, 1), (2, 3, 5, 7), (3, 4, 6, 33), (5, 2, 17, 9)]


def _params(rng, kind, b, i, h, dtype, bias=True):
    g = GATES[kind] * h
    s = 1.0 / np.sqrt(h)
    p = {"x": rng.standard_normal((b, 0, i)),  # placeholder, replaced by the caller
         "h0": rng.standard_normal((b, h)) * 0.5,
         "w_ih": rng.uniform(-s, s, (g, i)), "w_hh": rng.uniform(-s, s, (g, h)) * 2,
         "b_ih": rng.uniform(-s, s, g) if bias else None,
         "b_hh": rng.uniform(-s, s, g) if bias else None}
    if kind == "lstm":
        p["c0"] = rng.standard_normal((b, h)) * 0.5
    return {k: None if v is None else v.astype(dtype) for k, v in p.items()}


def _mixed_lengths(rng, b, t):
    lengths = rng.integers(1, t + 1, b)
    lengths[0] = t
    return lengths


def _forward(kind, p, lengths, save=True):
    args = (p["x"], p["h0"]) + ((p["c0"],) if kind == "lstm" else ()) + (
        p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    if kind == "lstm":
        return ops.lstm_forward(*args, lengths=lengths) if save else (
            ops.lstm(*args, lengths=lengths), None)
    if kind == "gru":
        return ops.gru_forward(*args, lengths=lengths) if save else (
            ops.gru(*args, lengths=lengths), None)
    if save:
        return ops.rnn_forward(*args, nonlinearity=kind, lengths=lengths)
    return ops.rnn(*args, nonlinearity=kind, lengths=lengths), None


def _backward(kind, ctx, dy, dh, dc):
    if kind == "lstm":
        return ops.lstm_backward(ctx, dy, dh, dc)
    if kind == "gru":
        return ops.gru_backward(ctx, dy, dh)
    return ops.rnn_backward(ctx, dy, dh)


def _ref_forward(kind, p, lengths):
    if kind == "lstm":
        return ref.lstm(p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                        lengths)
    if kind == "gru":
        return ref.gru(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], lengths)
    return ref.rnn(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], kind, lengths)


def _ref_backward(kind, p, lengths, dy, dh, dc):
    if kind == "lstm":
        return ref.lstm_backward(p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"],
                                 p["b_hh"], lengths, dy, dh, dc)
    if kind == "gru":
        return ref.gru_backward(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                                lengths, dy, dh)
    return ref.rnn_backward(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], kind,
                            lengths, dy, dh)


def _setup(rng, kind, shape, dtype, bias=True, mixed=True):
    b, t, i, h = shape
    p = _params(rng, kind, b, i, h, dtype, bias)
    p["x"] = rng.standard_normal((b, t, i)).astype(dtype)
    lengths = _mixed_lengths(rng, b, t) if mixed else None
    return p, lengths


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
def test_forward_and_backward_match_reference(backend, rng, kind, shape, dtype):
    p, lengths = _setup(rng, kind, shape, dtype)
    b, t, i, h = shape
    out, ctx = _forward(kind, p, lengths)
    want = _ref_forward(kind, p, lengths)
    red = i + h
    for got, r in zip(out, want):
        check_op(got, r, dtype, reduction=red)
    # inference gives the same outputs
    out2, _ = _forward(kind, p, lengths, save=False)
    for got, r in zip(out2, want):
        check_op(got, r, dtype, reduction=red)
    dy = rng.standard_normal((b, t, h)).astype(dtype)
    dh = rng.standard_normal((b, h)).astype(dtype)
    dc = rng.standard_normal((b, h)).astype(dtype) if kind == "lstm" else None
    grads = _backward(kind, ctx, dy, dh, dc)
    want = _ref_backward(kind, p, lengths, dy, dh, dc)
    assert len(grads) == len(want)
    for got, r in zip(grads, want):
        check_op(got, r, dtype, reduction=b * t * (i + h), scale=4.0)


@pytest.mark.parametrize("kind", KINDS)
def test_no_bias_no_lengths_no_state(backend, rng, kind):
    p, _ = _setup(rng, kind, (3, 4, 5, 6), np.float64, bias=False)
    p["h0"] = None
    if kind == "lstm":
        p["c0"] = None
    out, ctx = _forward(kind, p, None)
    want = _ref_forward(kind, p, None)
    for got, r in zip(out, want):
        check_op(got, r, np.float64, reduction=11)
    grads = _backward(kind, ctx, None, None, None)
    assert grads[-1] is None and grads[-2] is None
    dy = np.zeros((3, 4, 6))
    want = _ref_backward(kind, p, None, dy, None, None)
    for got, r in zip(grads[:-2], want[:-2]):
        check_op(got, r, np.float64, reduction=11)
        assert np.all(got == 0)  # no output gradient: nothing flows back


@pytest.mark.parametrize("kind", KINDS)
def test_lengths_semantics(backend, rng, kind):
    """Outputs past a sequence's end are zero and its final state is the state at its end: the
    same as running the sequence alone, truncated."""
    p, _ = _setup(rng, kind, (3, 6, 4, 5), np.float64)
    lengths = np.array([2, 6, 1])
    out, _ = _forward(kind, p, lengths, save=False)
    y, h_n = out[0], out[1]
    for b, n in enumerate(lengths):
        q = {k: (v[b:b + 1] if k in ("x", "h0", "c0") else v) for k, v in p.items()}
        q["x"] = q["x"][:, :n]
        alone, _ = _forward(kind, q, None, save=False)
        np.testing.assert_allclose(y[b, :n], alone[0][0], rtol=1e-12, atol=1e-13)
        assert np.all(y[b, n:] == 0)
        np.testing.assert_allclose(h_n[b], alone[1][0], rtol=1e-12, atol=1e-13)
        if kind == "lstm":
            np.testing.assert_allclose(out[2][b], alone[2][0], rtol=1e-12, atol=1e-13)


def _loss_fn(kind, p, lengths, wy, wh, wc):
    def f():
        out = _forward(kind, p, lengths, save=False)[0]
        s = np.sum(out[0] * wy) + np.sum(out[1] * wh)
        if kind == "lstm":
            s += np.sum(out[2] * wc)
        return float(s)
    return f


@pytest.mark.parametrize("kind", KINDS)
def test_backward_finite_differences(backend, rng, kind):
    shape = (3, 3, 2, 2)
    p, _ = _setup(rng, kind, shape, np.float64)
    lengths = np.array([3, 1, 2])
    b, t, i, h = shape
    if kind == "relu":  # keep pre-activations away from the kink at 0
        p["b_ih"] = p["b_ih"] + 0.5
    wy = rng.standard_normal((b, t, h))
    wh = rng.standard_normal((b, h))
    wc = rng.standard_normal((b, h))
    _, ctx = _forward(kind, p, lengths)
    grads = _backward(kind, ctx, wy, wh, wc if kind == "lstm" else None)
    names = ["x", "h0"] + (["c0"] if kind == "lstm" else []) + ["w_ih", "w_hh", "b_ih", "b_hh"]
    f = _loss_fn(kind, p, lengths, wy, wh, wc)
    for name, g in zip(names, grads):
        num = numeric_grad(f, p[name])
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8, err_msg=name)
    # the reference backward agrees with the finite differences too
    want = _ref_backward(kind, p, lengths, wy, wh, wc)
    for name, g in zip(names, want):
        np.testing.assert_allclose(g, numeric_grad(f, p[name]), rtol=1e-6, atol=1e-8,
                                   err_msg=name)


# ---- cells --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_cells_match_one_step(backend, rng, kind, dtype):
    b, i, h = 4, 5, 7
    p = _params(rng, kind, b, i, h, dtype)
    x = rng.standard_normal((b, i)).astype(dtype)
    p["x"] = x[:, None, :]
    want = _ref_forward(kind, p, None)
    dh = rng.standard_normal((b, h)).astype(dtype)
    w = (p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    if kind == "lstm":
        dc = rng.standard_normal((b, h)).astype(dtype)
        h2, c2 = ops.lstm_cell(x, p["h0"], p["c0"], *w)
        (h3, c3), ctx = ops.lstm_cell_forward(x, p["h0"], p["c0"], *w)
        for got in ((h2, c2), (h3, c3)):
            check_op(got[0], want[1], dtype, reduction=i + h)
            check_op(got[1], want[2], dtype, reduction=i + h)
        grads = ops.lstm_cell_backward(ctx, dh, dc)
        rg = ref.lstm_backward(p["x"], p["h0"], p["c0"], *w, None, None, dh, dc)
    else:
        nl = {"nonlinearity": kind} if kind != "gru" else {}
        cell = ops.gru_cell if kind == "gru" else ops.rnn_cell
        cell_fwd = ops.gru_cell_forward if kind == "gru" else ops.rnn_cell_forward
        cell_bwd = ops.gru_cell_backward if kind == "gru" else ops.rnn_cell_backward
        h2 = cell(x, p["h0"], *w, **nl)
        h3, ctx = cell_fwd(x, p["h0"], *w, **nl)
        check_op(h2, want[1], dtype, reduction=i + h)
        check_op(h3, want[1], dtype, reduction=i + h)
        grads = cell_bwd(ctx, dh)
        rg = _ref_backward(kind, p, None, None, dh, None)
    assert grads[0].shape == x.shape
    check_op(grads[0], rg[0][:, 0], dtype, reduction=b * (i + h), scale=4.0)
    for got, r in zip(grads[1:], rg[1:]):
        check_op(got, r, dtype, reduction=b * (i + h), scale=4.0)


@pytest.mark.parametrize("kind", ["lstm", "gru", "tanh"])
def test_matches_pytorch(rng, kind):
    torch = pytest.importorskip("torch")
    b, t, i, h = 3, 5, 4, 6
    p, _ = _setup(rng, kind, (b, t, i, h), np.float64, mixed=False)
    mod = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "tanh": torch.nn.RNN}[kind]
    m = mod(i, h, batch_first=True).double()
    with torch.no_grad():
        for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
            getattr(m, name.replace("w_", "weight_").replace("b_", "bias_") + "_l0").copy_(
                torch.from_numpy(p[name]))
    h0 = torch.from_numpy(p["h0"])[None]
    state = (h0, torch.from_numpy(p["c0"])[None]) if kind == "lstm" else h0
    ty, tstate = m(torch.from_numpy(p["x"]), state)
    out, _ = _forward(kind, p, None, save=False)
    np.testing.assert_allclose(out[0], ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    hn = tstate[0] if kind == "lstm" else tstate
    np.testing.assert_allclose(out[1], hn[0].detach().numpy(), rtol=1e-10, atol=1e-12)


def test_zero_batch(rng):
    p, _ = _setup(rng, "lstm", (0, 3, 2, 4), np.float32, mixed=False)
    (y, h_n, c_n), ctx = _forward("lstm", p, None)
    assert y.shape == (0, 3, 4) and h_n.shape == (0, 4) and c_n.shape == (0, 4)
    grads = ops.lstm_backward(ctx, np.zeros((0, 3, 4), np.float32))
    assert grads[0].shape == (0, 3, 2) and np.all(grads[3] == 0)


# ---- bad input ----------------------------------------------------------------------------------

def _good(rng):
    b, t, i, h = 2, 3, 4, 5
    return dict(x=rng.standard_normal((b, t, i)), h0=np.zeros((b, h)), c0=np.zeros((b, h)),
                w_ih=np.zeros((4 * h, i)), w_hh=np.zeros((4 * h, h)), b_ih=np.zeros(4 * h),
                b_hh=np.zeros(4 * h))


@pytest.mark.parametrize("change, match", [
    (dict(x=np.zeros((2, 4))), "x must be 3-D"),
    (dict(x=np.zeros((2, 0, 4))), "at least one step"),
    (dict(w_hh=np.zeros((20, 4))), "w_hh must have shape"),
    (dict(w_hh=np.zeros((15, 5))), "w_hh must have shape"),
    (dict(w_ih=np.zeros((20, 3))), "w_ih must have shape"),
    (dict(w_ih=np.zeros((16, 4))), "w_ih must have shape"),
    (dict(h0=np.zeros((2, 4))), "h0 must have shape"),
    (dict(c0=np.zeros((3, 5))), "c0 must have shape"),
    (dict(b_ih=np.zeros(19)), "b_ih must have shape"),
    (dict(b_hh=np.zeros((4, 5))), "b_hh must have shape"),
    (dict(lengths=np.array([0, 3])), r"lengths must lie in \[1, 3\]"),
    (dict(lengths=np.array([4, 3])), r"lengths must lie in \[1, 3\]"),
    (dict(lengths=np.array([3, 3, 3])), r"lengths must have shape \(2,\)"),
    (dict(lengths=np.array([[3, 3]])), r"lengths must have shape \(2,\)"),
])
def test_bad_input_raises_value_error(rng, change, match):
    a = _good(rng)
    lengths = change.pop("lengths", None)
    a.update(change)
    with pytest.raises(ValueError, match=match):
        ops.lstm(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"],
                 lengths=lengths)


def test_bad_types(rng):
    a = _good(rng)
    with pytest.raises(TypeError, match="w_hh has dtype float32"):
        ops.lstm(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"].astype(np.float32))
    with pytest.raises(TypeError, match="lengths must hold integers"):
        ops.lstm(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], lengths=[1.5, 2.0])
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        ops.gru(np.zeros((2, 3, 4), np.int32), None, np.zeros((15, 4)), np.zeros((15, 5)))
    with pytest.raises(ValueError, match="nonlinearity"):
        ops.rnn(a["x"], None, np.zeros((5, 4)), np.zeros((5, 5)), nonlinearity="sigmoid")


def test_bad_backward_arguments(rng):
    a = _good(rng)
    _, ctx = ops.lstm_forward(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"])
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 3, 5\)"):
        ops.lstm_backward(ctx, np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"dc_n must have shape \(2, 5\)"):
        ops.lstm_backward(ctx, None, None, np.zeros((2, 4)))
    with pytest.raises(TypeError, match="dy has dtype float32"):
        ops.lstm_backward(ctx, np.zeros((2, 3, 5), np.float32))
    with pytest.raises(TypeError, match="ctx must come from gru_forward"):
        ops.gru_backward(ctx, None)
    with pytest.raises(ValueError, match="x must be 2-D"):
        ops.gru_cell(np.zeros((2, 3, 4)), None, np.zeros((15, 4)), np.zeros((15, 5)))


def test_default_backend_runs_rnn(rng):
    """The default backend provides (or falls back for) every recurrent kernel."""
    for name in ("lstm_forward", "lstm_backward", "gru_forward", "gru_backward",
                 "rnn_forward", "rnn_backward"):
        assert callable(fastnn.ops._image.kernel(name))
    assert _backend.get_backend() in _backend.BACKENDS


@pytest.mark.parametrize("name", ["lstm_forward", "lstm_backward", "gru_forward", "gru_backward",
                                  "rnn_forward", "rnn_backward"])
def test_cuda_functions_take_the_numba_signatures(name):
    import inspect
    nk = _backend.kernels("numba")
    want = list(inspect.signature(getattr(nk, name)).parameters)
    assert list(inspect.signature(getattr(fastnn.cuda, name)).parameters) == want


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_strided_and_fortran_inputs(backend, rng, kind):
    """Views and Fortran-ordered weights give the results of their contiguous copies."""
    p, lengths = _setup(rng, kind, (3, 4, 5, 7), np.float64)
    q = dict(p)
    q["x"] = np.repeat(p["x"], 2, axis=1)[:, ::2]           # a strided view
    q["w_ih"] = np.asfortranarray(p["w_ih"])
    q["w_hh"] = np.asfortranarray(p["w_hh"])
    q["h0"] = np.asfortranarray(p["h0"])
    assert not q["x"].flags.c_contiguous
    want = _ref_forward(kind, p, lengths)
    got, _ = _forward(kind, q, lengths, save=False)
    for g, r in zip(got, want):
        check_op(g, r, np.float64, reduction=12)


def test_outputs_start_on_a_cache_line(rng):
    """The kernels stream y and the saved gates out in whole cache lines when they are aligned:
    ops allocates them so, for every shape and dtype."""
    from fastnn.ops import _check
    for shape, dt in [((3, 5, 7), np.float32), ((1,), np.float64), ((0, 4), np.float32),
                      ((64, 100, 256), np.float32)]:
        a = _check.aligned_empty(shape, dt)
        assert a.shape == shape and a.dtype == dt and a.flags.c_contiguous
        assert a.flags.writeable and (a.size == 0 or a.ctypes.data % 64 == 0)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    h0 = np.zeros((2, 16), np.float32)
    w_ih = rng.standard_normal((64, 4)).astype(np.float32)
    w_hh = rng.standard_normal((64, 16)).astype(np.float32)
    (y, _, _), ctx = ops.lstm_forward(x, h0, h0, w_ih, w_hh)
    assert y.ctypes.data % 64 == 0
