"""float64 references of the recurrent family (LSTM, GRU, Elman RNN), written step by step from
the equations, batch-first: x (B, T, I), states (B, H).

Gate orders are PyTorch's: LSTM i, f, g, o (w_ih (4H, I), w_hh (4H, H)); GRU r, z, n.
With ``lengths``, sequence b runs its first ``lengths[b]`` steps: its outputs after that are zero
and its final state is the state after its last step. The backward references run back through
time with the same masking, so they double as a readable statement of the gradients.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

__all__ = ["lstm", "lstm_backward", "gru", "gru_backward", "rnn", "rnn_backward"]


def _f64(a) -> Optional[np.ndarray]:
    return None if a is None else np.asarray(a, dtype=np.float64)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * v))


def _setup(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, gates: int):
    x, w_ih, w_hh = _f64(x), _f64(w_ih), _f64(w_hh)
    b, t = x.shape[:2]
    h = w_hh.shape[1]
    h0 = np.zeros((b, h)) if h0 is None else _f64(h0)
    b_ih = np.zeros(gates * h) if b_ih is None else _f64(b_ih)
    b_hh = np.zeros(gates * h) if b_hh is None else _f64(b_hh)
    lengths = np.full(b, t) if lengths is None else np.asarray(lengths, dtype=np.int64)
    return x, h0, w_ih, w_hh, b_ih, b_hh, lengths


def _lstm_step(xt, h, c, w_ih, w_hh, b_ih, b_hh):
    a = xt @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i, f, g, o = np.split(a, 4, axis=1)
    i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
    c2 = f * c + i * g
    return o * np.tanh(c2), c2, (i, f, g, o)


def lstm(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, lengths=None
         ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(y, h_n, c_n)`` of a one-layer LSTM."""
    x, h, w_ih, w_hh, b_ih, b_hh, lengths = _setup(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, 4)
    c = np.zeros_like(h) if c0 is None else _f64(c0)
    y = np.zeros(x.shape[:2] + (h.shape[1],))
    for t in range(x.shape[1]):
        live = (t < lengths)[:, None]
        h2, c2, _ = _lstm_step(x[:, t], h, c, w_ih, w_hh, b_ih, b_hh)
        h, c = np.where(live, h2, h), np.where(live, c2, c)
        y[:, t] = np.where(live, h, 0.0)
    return y, h, c


def lstm_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, dy, dh_n=None, dc_n=None):
    """``(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)`` of ``lstm`` (biases may be None: their
    gradients are returned all the same)."""
    x, h, w_ih, w_hh, b_ih, b_hh, lengths = _setup(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, 4)
    c = np.zeros_like(h) if c0 is None else _f64(c0)
    steps = []
    for t in range(x.shape[1]):
        live = (t < lengths)[:, None]
        h2, c2, gates = _lstm_step(x[:, t], h, c, w_ih, w_hh, b_ih, b_hh)
        steps.append((h, c, c2, gates, live))
        h, c = np.where(live, h2, h), np.where(live, c2, c)
    dy = np.zeros(x.shape[:2] + (h.shape[1],)) if dy is None else _f64(dy)
    dh = np.zeros_like(h) if dh_n is None else _f64(dh_n).copy()
    dc = np.zeros_like(h) if dc_n is None else _f64(dc_n).copy()
    dx = np.zeros_like(x)
    dw_ih, dw_hh, db = np.zeros_like(w_ih), np.zeros_like(w_hh), np.zeros_like(b_ih)
    for t in reversed(range(x.shape[1])):
        hp, cp, c2, (i, f, g, o), live = steps[t]
        dht = dh + dy[:, t]
        tc = np.tanh(c2)
        dct = dc + dht * o * (1 - tc * tc)
        da = np.concatenate([dct * g * i * (1 - i), dct * cp * f * (1 - f),
                             dct * i * (1 - g * g), dht * tc * o * (1 - o)], axis=1)
        da = np.where(live, da, 0.0)
        dx[:, t] = da @ w_ih
        dw_ih += da.T @ x[:, t]
        dw_hh += da.T @ hp
        db += da.sum(0)
        dh = np.where(live, da @ w_hh, dh)
        dc = np.where(live, dct * f, dc)
    return dx, dh, dc, dw_ih, dw_hh, db, db.copy()


def _gru_step(xt, h, w_ih, w_hh, b_ih, b_hh):
    gx = xt @ w_ih.T + b_ih
    gh = h @ w_hh.T + b_hh
    xr, xz, xn = np.split(gx, 3, axis=1)
    hr, hz, hn = np.split(gh, 3, axis=1)
    r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
    n = np.tanh(xn + r * hn)
    return (1 - z) * n + z * h, (r, z, n, hn)


def gru(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, lengths=None) -> Tuple[np.ndarray, np.ndarray]:
    """``(y, h_n)`` of a one-layer GRU."""
    x, h, w_ih, w_hh, b_ih, b_hh, lengths = _setup(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, 3)
    y = np.zeros(x.shape[:2] + (h.shape[1],))
    for t in range(x.shape[1]):
        live = (t < lengths)[:, None]
        h = np.where(live, _gru_step(x[:, t], h, w_ih, w_hh, b_ih, b_hh)[0], h)
        y[:, t] = np.where(live, h, 0.0)
    return y, h


def gru_backward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, dy, dh_n=None):
    """``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)`` of ``gru``."""
    x, h, w_ih, w_hh, b_ih, b_hh, lengths = _setup(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, 3)
    steps = []
    for t in range(x.shape[1]):
        live = (t < lengths)[:, None]
        h2, gates = _gru_step(x[:, t], h, w_ih, w_hh, b_ih, b_hh)
        steps.append((h, gates, live))
        h = np.where(live, h2, h)
    dy = np.zeros(x.shape[:2] + (h.shape[1],)) if dy is None else _f64(dy)
    dh = np.zeros_like(h) if dh_n is None else _f64(dh_n).copy()
    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    db_ih, db_hh = np.zeros_like(b_ih), np.zeros_like(b_hh)
    for t in reversed(range(x.shape[1])):
        hp, (r, z, n, hn), live = steps[t]
        dht = dh + dy[:, t]
        dn = dht * (1 - z) * (1 - n * n)          # d(pre-activation of n)
        dz = dht * (hp - n) * z * (1 - z)
        dr = dn * hn * r * (1 - r)
        dgx = np.where(live, np.concatenate([dr, dz, dn], axis=1), 0.0)
        dgh = np.where(live, np.concatenate([dr, dz, dn * r], axis=1), 0.0)
        dx[:, t] = dgx @ w_ih
        dw_ih += dgx.T @ x[:, t]
        dw_hh += dgh.T @ hp
        db_ih += dgx.sum(0)
        db_hh += dgh.sum(0)
        dh = np.where(live, dgh @ w_hh + dht * z, dh)
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh


def _act(v: np.ndarray, nonlinearity: str) -> np.ndarray:
    return np.tanh(v) if nonlinearity == "tanh" else np.maximum(v, 0.0)


def rnn(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity: str = "tanh", lengths=None
        ) -> Tuple[np.ndarray, np.ndarray]:
    """``(y, h_n)`` of a one-layer Elman RNN: h' = act(W x + b_ih + U h + b_hh)."""
    x, h, w_ih, w_hh, b_ih, b_hh, lengths = _setup(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, 1)
    y = np.zeros(x.shape[:2] + (h.shape[1],))
    for t in range(x.shape[1]):
        live = (t < lengths)[:, None]
        h2 = _act(x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh, nonlinearity)
        h = np.where(live, h2, h)
        y[:, t] = np.where(live, h, 0.0)
    return y, h


def rnn_backward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, lengths, dy, dh_n=None):
    """``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)`` of ``rnn``."""
    x, h, w_ih, w_hh, b_ih, b_hh, lengths = _setup(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, 1)
    steps = []
    for t in range(x.shape[1]):
        live = (t < lengths)[:, None]
        a = x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh
        steps.append((h, a, live))
        h = np.where(live, _act(a, nonlinearity), h)
    dy = np.zeros(x.shape[:2] + (h.shape[1],)) if dy is None else _f64(dy)
    dh = np.zeros_like(h) if dh_n is None else _f64(dh_n).copy()
    dx = np.zeros_like(x)
    dw_ih, dw_hh, db = np.zeros_like(w_ih), np.zeros_like(w_hh), np.zeros_like(b_ih)
    for t in reversed(range(x.shape[1])):
        hp, a, live = steps[t]
        deriv = 1 - np.tanh(a) ** 2 if nonlinearity == "tanh" else (a > 0).astype(np.float64)
        da = np.where(live, (dh + dy[:, t]) * deriv, 0.0)
        dx[:, t] = da @ w_ih
        dw_ih += da.T @ x[:, t]
        dw_hh += da.T @ hp
        db += da.sum(0)
        dh = np.where(live, da @ w_hh, dh)
    return dx, dh, dw_ih, dw_hh, db, db.copy()
