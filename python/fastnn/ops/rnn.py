"""The recurrent family: LSTM, GRU and the Elman RNN (tanh or relu), over whole sequences and as
single cells.

Sequences are batch-first: x (B, T, I), states (B, H), outputs y (B, T, H). Weights use PyTorch's
layout and gate order, so they interoperate: LSTM w_ih (4H, I), w_hh (4H, H), gates i, f, g, o;
GRU w_ih (3H, I), w_hh (3H, H), gates r, z, n; RNN w_ih (H, I), w_hh (H, H). Both biases are
optional (None means zero, and the backward then returns None for them).

    LSTM   i = σ(W_i x + b_ii + U_i h + b_hi), f, o likewise, g = tanh(...),
           c' = f·c + i·g,  h' = o·tanh(c')
    GRU    r = σ(W_r x + b_ir + U_r h + b_hr), z likewise,
           n = tanh(W_n x + b_in + r·(U_n h + b_hn)),  h' = (1 − z)·n + z·h
    RNN    h' = act(W x + b_ih + U h + b_hh), act = tanh or relu

``lengths`` (one int per sequence, any order, 1 <= lengths[b] <= T) runs sequence b for its first
``lengths[b]`` steps: its outputs after that are zero and its final state is the state at its end;
no packing is needed. Initial states may be None (zeros).

Op contract: ``lstm`` -> ``(y, h_n, c_n)``; ``lstm_forward`` -> ``((y, h_n, c_n), ctx)``;
``lstm_backward(ctx, dy, dh_n=None, dc_n=None)`` -> ``(dx, dh0, dc0, dw_ih, dw_hh, db_ih,
db_hh)``. GRU and RNN are the same without the cell state. Any of the output gradients may be
None (zero). The cells (``lstm_cell`` and so on) are the one-step case with 2-D x and states.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from . import _check
from . import _image as _im
from . import _nncheck as _c

__all__ = ["lstm", "lstm_forward", "lstm_backward", "gru", "gru_forward", "gru_backward",
           "rnn", "rnn_forward", "rnn_backward", "lstm_cell", "lstm_cell_forward",
           "lstm_cell_backward", "gru_cell", "gru_cell_forward", "gru_cell_backward",
           "rnn_cell", "rnn_cell_forward", "rnn_cell_backward", "RNNCtx"]

_GATES = {"lstm": 4, "gru": 3, "rnn": 1}
_SAVED = {"lstm": 5, "gru": 4, "rnn": 0}   # gate values kept per step and unit for backward
_NONLINEARITIES = ("tanh", "relu")


class RNNCtx:
    """What a recurrent backward needs: the saved gates, the output, the inputs and weights, the
    lengths, and which optional arguments were given."""
    __slots__ = ("kind", "cell", "relu", "gates", "y", "x", "h0", "c0", "w_ih", "w_hh", "lengths",
                 "has_b_ih", "has_b_hh")


# ---- argument checks ----------------------------------------------------------------------------

def _same(op: str, ref: np.ndarray, a: np.ndarray, name: str) -> None:
    if a.dtype != ref.dtype:
        raise TypeError(f"{op}: {name} has dtype {a.dtype} but x has {ref.dtype}; cast them to "
                        f"one of float32/float64")


def _state(v: Any, name: str, op: str, shape: Tuple[int, int], x: np.ndarray) -> np.ndarray:
    if v is None:
        return np.zeros(shape, x.dtype)
    v = _c.host_float(v, name, op)
    if v.shape != shape:
        raise ValueError(f"{op}: {name} must have shape {shape} (batch, hidden size), got "
                         f"{v.shape}")
    _same(op, x, v, name)
    return v


def _lengths(lengths: Any, op: str, b: int, t: int) -> np.ndarray:
    if lengths is None:
        return np.full(b, t, np.int64)
    arr = np.asarray(lengths)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{op}: lengths must hold integers, got dtype {arr.dtype}")
    if arr.shape != (b,):
        raise ValueError(f"{op}: lengths must have shape ({b},), one length per sequence, got "
                         f"{arr.shape}")
    if b and (arr.min() < 1 or arr.max() > t):
        raise ValueError(f"{op}: lengths must lie in [1, {t}] (the sequence length T), got "
                         f"values from {arr.min()} to {arr.max()}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _args(op: str, kind: str, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths):
    x = _c.host_float(x, "x", op)
    if x.ndim != 3:
        raise ValueError(f"{op}: x must be 3-D (batch, time, features), got shape {x.shape}")
    b, t, i = x.shape
    if t < 1 or i < 1:
        raise ValueError(f"{op}: x must have at least one step and one feature, got shape "
                         f"{x.shape}")
    g = _GATES[kind]
    w_ih = _c.host_float(w_ih, "w_ih", op)
    w_hh = _c.host_float(w_hh, "w_hh", op)
    if w_hh.ndim != 2 or w_hh.shape[1] < 1 or w_hh.shape[0] != g * w_hh.shape[1]:
        raise ValueError(f"{op}: w_hh must have shape ({g}*H, H) for hidden size H, got "
                         f"{w_hh.shape}")
    h = w_hh.shape[1]
    if w_ih.shape != (g * h, i):
        raise ValueError(f"{op}: w_ih must have shape ({g * h}, {i}) ({g}*H with H = {h} from "
                         f"w_hh {w_hh.shape}, and x's {i} features), got {w_ih.shape}")
    _same(op, x, w_ih, "w_ih")
    _same(op, x, w_hh, "w_hh")
    biases = []
    for name, v in (("b_ih", b_ih), ("b_hh", b_hh)):
        if v is None:
            biases.append(None)
            continue
        v = _c.host_float(v, name, op)
        if v.shape != (g * h,):
            raise ValueError(f"{op}: {name} must have shape ({g * h},) ({g}*H, H = {h}), got "
                             f"{v.shape}")
        _same(op, x, v, name)
        biases.append(v)
    h0 = _state(h0, "h0", op, (b, h), x)
    if kind == "lstm":
        c0 = _state(c0, "c0", op, (b, h), x)
    return x, h0, c0, w_ih, w_hh, biases[0], biases[1], _lengths(lengths, op, b, t)


def _nonlinearity(v: Any, op: str) -> bool:
    if v not in _NONLINEARITIES:
        raise ValueError(f"{op}: nonlinearity must be one of {_NONLINEARITIES}, got {v!r}")
    return v == "relu"


def _grad(v: Any, name: str, op: str, shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if v is None:
        return np.zeros(shape, dtype)
    v = _c.host_float(v, name, op)
    if v.shape != shape:
        raise ValueError(f"{op}: {name} must have shape {shape}, got {v.shape}")
    if v.dtype != dtype:
        raise TypeError(f"{op}: {name} has dtype {v.dtype} but the forward ran in {dtype}")
    return v


# ---- the sequence ops ---------------------------------------------------------------------------

def _run(op: str, kind: str, save: bool, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths,
         relu: bool = False, cell: bool = False):
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths = _args(op, kind, x, h0, c0, w_ih, w_hh, b_ih,
                                                       b_hh, lengths)
    b, t, _ = x.shape
    h = w_hh.shape[1]
    dt = x.dtype
    y = _check.aligned_empty((b, t, h), dt)
    h_n = np.empty((b, h), dt)
    c_n = np.empty((b, h), dt) if kind == "lstm" else None
    gates = _check.aligned_empty((t, b, _SAVED[kind] * h), dt) if save and _SAVED[kind] else None
    zero = np.zeros(_GATES[kind] * h, dt)
    bi = zero if b_ih is None else b_ih
    bh = zero if b_hh is None else b_hh
    if b:
        if kind == "lstm":
            _im.kernel("lstm_forward")(y, h_n, c_n, gates, x, h0, c0, w_ih, w_hh, bi, bh, lengths)
        elif kind == "gru":
            _im.kernel("gru_forward")(y, h_n, gates, x, h0, w_ih, w_hh, bi, bh, lengths)
        else:
            _im.kernel("rnn_forward")(y, h_n, x, h0, w_ih, w_hh, bi, bh, lengths, relu)
    ctx = None
    if save:
        ctx = RNNCtx()
        ctx.kind, ctx.cell, ctx.relu = kind, cell, relu
        ctx.gates, ctx.y, ctx.x, ctx.h0, ctx.c0 = gates, y, x, h0, c0
        ctx.w_ih, ctx.w_hh, ctx.lengths = w_ih, w_hh, lengths
        ctx.has_b_ih, ctx.has_b_hh = b_ih is not None, b_hh is not None
    return y, h_n, c_n, ctx


def _ctx(ctx: Any, op: str, kind: str, cell: bool) -> RNNCtx:
    fwd = op.replace("_backward", "_forward")
    if not isinstance(ctx, RNNCtx) or ctx.kind != kind or ctx.cell != cell:
        raise TypeError(f"{op}: ctx must come from {fwd}, got {type(ctx).__name__}")
    return ctx


def _backward(op: str, ctx: RNNCtx, dy, dh_n, dc_n=None):
    x, kind = ctx.x, ctx.kind
    b, t, _ = x.shape
    h = ctx.w_hh.shape[1]
    dt = x.dtype
    dy = _grad(dy, "dy", op, (b, t, h), dt)
    dh_n = _grad(dh_n, "dh_n", op, (b, h), dt)
    dx = _check.host_empty(x.shape, x.dtype)
    dh0 = np.empty((b, h), dt)
    dw_ih = np.empty_like(ctx.w_ih)
    dw_hh = np.empty_like(ctx.w_hh)
    db_ih = np.empty(ctx.w_hh.shape[0], dt)
    db_hh = np.empty(ctx.w_hh.shape[0], dt)
    dc0 = None
    if b == 0:
        dw_ih[...] = 0
        dw_hh[...] = 0
        db_ih[...] = 0
        db_hh[...] = 0
        if kind == "lstm":
            dc0 = np.empty((0, h), dt)
    elif kind == "lstm":
        dc_n = _grad(dc_n, "dc_n", op, (b, h), dt)
        dc0 = np.empty((b, h), dt)
        _im.kernel("lstm_backward")(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, ctx.gates, ctx.y,
                                    dy, dh_n, dc_n, x, ctx.h0, ctx.c0, ctx.w_ih, ctx.w_hh,
                                    ctx.lengths)
    elif kind == "gru":
        _im.kernel("gru_backward")(dx, dh0, dw_ih, dw_hh, db_ih, db_hh, ctx.gates, ctx.y, dy,
                                   dh_n, x, ctx.h0, ctx.w_ih, ctx.w_hh, ctx.lengths)
    else:
        _im.kernel("rnn_backward")(dx, dh0, dw_ih, dw_hh, db_ih, db_hh, ctx.y, dy, dh_n, x,
                                   ctx.h0, ctx.w_ih, ctx.w_hh, ctx.lengths, ctx.relu)
    db_ih = db_ih if ctx.has_b_ih else None
    db_hh = db_hh if ctx.has_b_hh else None
    if kind == "lstm":
        return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


def lstm(x: Any, h0: Any, c0: Any, w_ih: Any, w_hh: Any, b_ih: Any = None, b_hh: Any = None, *,
         lengths: Any = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A one-layer LSTM over x (B, T, I): ``(y (B, T, H), h_n (B, H), c_n (B, H))``."""
    y, h_n, c_n, _ = _run("lstm", "lstm", False, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths)
    return y, h_n, c_n


def lstm_forward(x: Any, h0: Any, c0: Any, w_ih: Any, w_hh: Any, b_ih: Any = None,
                 b_hh: Any = None, *, lengths: Any = None
                 ) -> Tuple[Tuple[np.ndarray, np.ndarray, np.ndarray], RNNCtx]:
    """``lstm`` plus the context (the gates of every step) for ``lstm_backward``."""
    y, h_n, c_n, ctx = _run("lstm_forward", "lstm", True, x, h0, c0, w_ih, w_hh, b_ih, b_hh,
                            lengths)
    return (y, h_n, c_n), ctx


def lstm_backward(ctx: RNNCtx, dy: Any, dh_n: Any = None, dc_n: Any = None) -> Tuple[Any, ...]:
    """``(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)``: back through time from the gradients of
    y, h_n and c_n (None: zero). db_ih/db_hh are None where the forward had no such bias."""
    op = "lstm_backward"
    return _backward(op, _ctx(ctx, op, "lstm", False), dy, dh_n, dc_n)


def gru(x: Any, h0: Any, w_ih: Any, w_hh: Any, b_ih: Any = None, b_hh: Any = None, *,
        lengths: Any = None) -> Tuple[np.ndarray, np.ndarray]:
    """A one-layer GRU over x (B, T, I): ``(y (B, T, H), h_n (B, H))``."""
    y, h_n, _, _ = _run("gru", "gru", False, x, h0, None, w_ih, w_hh, b_ih, b_hh, lengths)
    return y, h_n


def gru_forward(x: Any, h0: Any, w_ih: Any, w_hh: Any, b_ih: Any = None, b_hh: Any = None, *,
                lengths: Any = None) -> Tuple[Tuple[np.ndarray, np.ndarray], RNNCtx]:
    """``gru`` plus the context for ``gru_backward``."""
    y, h_n, _, ctx = _run("gru_forward", "gru", True, x, h0, None, w_ih, w_hh, b_ih, b_hh,
                          lengths)
    return (y, h_n), ctx


def gru_backward(ctx: RNNCtx, dy: Any, dh_n: Any = None) -> Tuple[Any, ...]:
    """``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)`` from the gradients of y and h_n."""
    op = "gru_backward"
    return _backward(op, _ctx(ctx, op, "gru", False), dy, dh_n)


def rnn(x: Any, h0: Any, w_ih: Any, w_hh: Any, b_ih: Any = None, b_hh: Any = None, *,
        nonlinearity: str = "tanh", lengths: Any = None) -> Tuple[np.ndarray, np.ndarray]:
    """A one-layer Elman RNN (``nonlinearity`` "tanh" or "relu") over x (B, T, I):
    ``(y (B, T, H), h_n (B, H))``."""
    relu = _nonlinearity(nonlinearity, "rnn")
    y, h_n, _, _ = _run("rnn", "rnn", False, x, h0, None, w_ih, w_hh, b_ih, b_hh, lengths, relu)
    return y, h_n


def rnn_forward(x: Any, h0: Any, w_ih: Any, w_hh: Any, b_ih: Any = None, b_hh: Any = None, *,
                nonlinearity: str = "tanh", lengths: Any = None
                ) -> Tuple[Tuple[np.ndarray, np.ndarray], RNNCtx]:
    """``rnn`` plus the context for ``rnn_backward``."""
    relu = _nonlinearity(nonlinearity, "rnn_forward")
    y, h_n, _, ctx = _run("rnn_forward", "rnn", True, x, h0, None, w_ih, w_hh, b_ih, b_hh,
                          lengths, relu)
    return (y, h_n), ctx


def rnn_backward(ctx: RNNCtx, dy: Any, dh_n: Any = None) -> Tuple[Any, ...]:
    """``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)`` from the gradients of y and h_n."""
    op = "rnn_backward"
    return _backward(op, _ctx(ctx, op, "rnn", False), dy, dh_n)


# ---- cells: one step, x (B, I), states (B, H) ----------------------------------------------------

def _step_input(x: Any, op: str) -> np.ndarray:
    x = _c.host_float(x, "x", op)
    if x.ndim != 2:
        raise ValueError(f"{op}: x must be 2-D (batch, features), got shape {x.shape}")
    return x[:, None, :]


def _cell_state(v: Any, name: str, op: str) -> Optional[np.ndarray]:
    if v is None:
        return None
    v = _c.host_float(v, name, op)
    if v.ndim != 2:
        raise ValueError(f"{op}: {name} must be 2-D (batch, hidden size), got shape {v.shape}")
    return v


def _cell_grad(v: Any, name: str, op: str, ctx: RNNCtx) -> Optional[np.ndarray]:
    if v is None:
        return None
    v = _c.host_float(v, name, op)
    want = (ctx.x.shape[0], ctx.w_hh.shape[1])
    if v.shape != want:
        raise ValueError(f"{op}: {name} must have shape {want}, got {v.shape}")
    return v[:, None, :]


def _cell_dx(grads: Tuple[Any, ...]) -> Tuple[Any, ...]:
    return (grads[0][:, 0, :],) + tuple(grads[1:])


def lstm_cell(x: Any, h: Any, c: Any, w_ih: Any, w_hh: Any, b_ih: Any = None,
              b_hh: Any = None) -> Tuple[np.ndarray, np.ndarray]:
    """One LSTM step: ``(h_new, c_new)`` from x (B, I) and the states h, c (B, H)."""
    return _lstm_cell("lstm_cell", False, x, h, c, w_ih, w_hh, b_ih, b_hh)[0]


def _lstm_cell(op: str, save: bool, x, h, c, w_ih, w_hh, b_ih, b_hh):
    xs = _step_input(x, op)
    h, c = _cell_state(h, "h", op), _cell_state(c, "c", op)
    _, h_n, c_n, ctx = _run(op, "lstm", save, xs, h, c, w_ih, w_hh, b_ih, b_hh, None, cell=True)
    return (h_n, c_n), ctx


def lstm_cell_forward(x: Any, h: Any, c: Any, w_ih: Any, w_hh: Any, b_ih: Any = None,
                      b_hh: Any = None) -> Tuple[Tuple[np.ndarray, np.ndarray], RNNCtx]:
    """``lstm_cell`` plus the context for ``lstm_cell_backward``."""
    return _lstm_cell("lstm_cell_forward", True, x, h, c, w_ih, w_hh, b_ih, b_hh)


def lstm_cell_backward(ctx: RNNCtx, dh_new: Any, dc_new: Any = None) -> Tuple[Any, ...]:
    """``(dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh)`` from the gradients of h_new and c_new."""
    op = "lstm_cell_backward"
    ctx = _ctx(ctx, op, "lstm", True)
    dc = _cell_grad(dc_new, "dc_new", op, ctx)
    grads = _backward(op, ctx, _cell_grad(dh_new, "dh_new", op, ctx), None,
                      None if dc is None else dc[:, 0, :])
    return _cell_dx(grads)


def gru_cell(x: Any, h: Any, w_ih: Any, w_hh: Any, b_ih: Any = None,
             b_hh: Any = None) -> np.ndarray:
    """One GRU step: ``h_new`` from x (B, I) and h (B, H)."""
    return _h_cell("gru_cell", "gru", False, x, h, w_ih, w_hh, b_ih, b_hh, False)[0]


def _h_cell(op: str, kind: str, save: bool, x, h, w_ih, w_hh, b_ih, b_hh, relu: bool):
    xs = _step_input(x, op)
    _, h_n, _, ctx = _run(op, kind, save, xs, _cell_state(h, "h", op), None, w_ih, w_hh, b_ih,
                          b_hh, None, relu, cell=True)
    return h_n, ctx


def gru_cell_forward(x: Any, h: Any, w_ih: Any, w_hh: Any, b_ih: Any = None,
                     b_hh: Any = None) -> Tuple[np.ndarray, RNNCtx]:
    """``gru_cell`` plus the context for ``gru_cell_backward``."""
    return _h_cell("gru_cell_forward", "gru", True, x, h, w_ih, w_hh, b_ih, b_hh, False)


def gru_cell_backward(ctx: RNNCtx, dh_new: Any) -> Tuple[Any, ...]:
    """``(dx, dh, dw_ih, dw_hh, db_ih, db_hh)`` from the gradient of h_new."""
    op = "gru_cell_backward"
    ctx = _ctx(ctx, op, "gru", True)
    return _cell_dx(_backward(op, ctx, _cell_grad(dh_new, "dh_new", op, ctx), None))


def rnn_cell(x: Any, h: Any, w_ih: Any, w_hh: Any, b_ih: Any = None, b_hh: Any = None,
             nonlinearity: str = "tanh") -> np.ndarray:
    """One Elman RNN step: ``h_new = act(W x + b_ih + U h + b_hh)``."""
    relu = _nonlinearity(nonlinearity, "rnn_cell")
    return _h_cell("rnn_cell", "rnn", False, x, h, w_ih, w_hh, b_ih, b_hh, relu)[0]


def rnn_cell_forward(x: Any, h: Any, w_ih: Any, w_hh: Any, b_ih: Any = None, b_hh: Any = None,
                     nonlinearity: str = "tanh") -> Tuple[np.ndarray, RNNCtx]:
    """``rnn_cell`` plus the context for ``rnn_cell_backward``."""
    relu = _nonlinearity(nonlinearity, "rnn_cell_forward")
    return _h_cell("rnn_cell_forward", "rnn", True, x, h, w_ih, w_hh, b_ih, b_hh, relu)


def rnn_cell_backward(ctx: RNNCtx, dh_new: Any) -> Tuple[Any, ...]:
    """``(dx, dh, dw_ih, dw_hh, db_ih, db_hh)`` from the gradient of h_new."""
    op = "rnn_cell_backward"
    ctx = _ctx(ctx, op, "rnn", True)
    return _cell_dx(_backward(op, ctx, _cell_grad(dh_new, "dh_new", op, ctx), None))
