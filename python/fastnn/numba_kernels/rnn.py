"""Numba fallbacks of the recurrent kernels (LSTM, GRU, Elman RNN), with the C++ signatures.

The structure is the C++ one: the input projections of every step in one product before the
loop; per step one recurrent product and one compiled pass that applies the gate nonlinearities
and updates the state; backward through time the same way, and the weight gradients as big
products after the loop. The products go to NumPy's BLAS (the fallback's job is to be correct
and not slow; the per-step elementwise work is what Numba compiles).

Layouts (batch-first, C-contiguous, checked by ``fastnn.ops``): x (B, T, I), y (B, T, H),
states (B, H), lengths int64 (B,) with 1 <= lengths[b] <= T. Saved gates, time-major
(T, B, S*H): LSTM [i, f, g, o, c] (5H), GRU [r, z, n, U_n h + b_hn] (4H); the Elman RNN saves
nothing (y holds its states). ``gates`` may be None (inference). Past a sequence's end y is 0, the state
carries over, and backward passes the state gradient through untouched.
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "rnn_forward",
           "rnn_backward"]


@numba.njit(cache=True, inline="always")
def _sig(v):
    # exp of a non-positive argument only: nothing overflows.
    if v >= 0:
        return 1.0 / (1.0 + np.exp(-v))
    e = np.exp(v)
    return e / (1.0 + e)


def _proj(x, w_ih, bias):
    """x @ w_ih.T + bias for every step at once: (B, T, G*H)."""
    b, t, i = x.shape
    out = x.reshape(b * t, i) @ w_ih.T
    out += bias
    return out.reshape(b, t, -1)


def _hprev(h0, y):
    """(B, T, H): the state each step started from (the product with dG ignores the rows past a
    sequence's end, where dG is 0)."""
    return np.concatenate([h0[:, None, :], y[:, :-1, :]], axis=1)


def _weight_grads(dx, dw_ih, dw_hh, dgx, dgh, x, hprev, w_ih):
    b, t, i = x.shape
    gx = dgx.reshape(b * t, -1)
    gh = dgh.reshape(b * t, -1)
    dx[...] = (gx @ w_ih).reshape(dx.shape)
    dw_ih[...] = gx.T @ x.reshape(b * t, i)
    dw_hh[...] = gh.T @ hprev.reshape(b * t, -1)


# ---- LSTM ---------------------------------------------------------------------------------------

@numba.njit(cache=True)
def _lstm_step(y, h, c, gates, save, xp, rec, lengths, t):
    nb, nh = h.shape
    for b in range(nb):
        if t >= lengths[b]:
            y[b, t, :] = 0
            continue
        for j in range(nh):
            ig = _sig(xp[b, t, j] + rec[b, j])
            fg = _sig(xp[b, t, nh + j] + rec[b, nh + j])
            gg = np.tanh(xp[b, t, 2 * nh + j] + rec[b, 2 * nh + j])
            og = _sig(xp[b, t, 3 * nh + j] + rec[b, 3 * nh + j])
            cn = fg * c[b, j] + ig * gg
            hn = og * np.tanh(cn)
            c[b, j] = cn
            h[b, j] = hn
            y[b, t, j] = hn
            if save:
                gates[t, b, j] = ig
                gates[t, b, nh + j] = fg
                gates[t, b, 2 * nh + j] = gg
                gates[t, b, 3 * nh + j] = og
                gates[t, b, 4 * nh + j] = cn


@numba.njit(cache=True)
def _lstm_back_step(dg, dh, dc, gates, dy, c0, lengths, t):
    nb, nh = dh.shape
    for b in range(nb):
        if t >= lengths[b]:
            dg[b, t, :] = 0
            continue
        for j in range(nh):
            ig = gates[t, b, j]
            fg = gates[t, b, nh + j]
            gg = gates[t, b, 2 * nh + j]
            og = gates[t, b, 3 * nh + j]
            tc = np.tanh(gates[t, b, 4 * nh + j])
            cp = c0[b, j] if t == 0 else gates[t - 1, b, 4 * nh + j]
            dht = dh[b, j] + dy[b, t, j]
            dct = dc[b, j] + dht * og * (1 - tc * tc)
            dg[b, t, j] = dct * gg * ig * (1 - ig)
            dg[b, t, nh + j] = dct * cp * fg * (1 - fg)
            dg[b, t, 2 * nh + j] = dct * ig * (1 - gg * gg)
            dg[b, t, 3 * nh + j] = dht * tc * og * (1 - og)
            dc[b, j] = dct * fg
            dh[b, j] = 0


def lstm_forward(y, h_n, c_n, gates, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths):
    xp = _proj(x, w_ih, b_ih + b_hh)
    h_n[...] = h0
    c_n[...] = c0
    save = gates is not None
    g = gates if save else np.empty((1, 1, 1), x.dtype)
    rec = np.empty((x.shape[0], w_hh.shape[0]), x.dtype)
    wt = w_hh.T
    for t in range(x.shape[1]):
        np.matmul(h_n, wt, out=rec)
        _lstm_step(y, h_n, c_n, g, save, xp, rec, lengths, t)


def lstm_backward(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, gates, y, dy, dh_n, dc_n, x, h0,
                  c0, w_ih, w_hh, lengths):
    b, t_n = x.shape[:2]
    dg = np.empty((b, t_n, w_hh.shape[0]), x.dtype)
    dh = dh_n.copy()
    dc = dc_n.copy()
    for t in range(t_n - 1, -1, -1):
        _lstm_back_step(dg, dh, dc, gates, dy, c0, lengths, t)
        dh += dg[:, t] @ w_hh
    _weight_grads(dx, dw_ih, dw_hh, dg, dg, x, _hprev(h0, y), w_ih)
    db_ih[...] = dg.sum(axis=(0, 1))
    db_hh[...] = db_ih
    dh0[...] = dh
    dc0[...] = dc


# ---- GRU ----------------------------------------------------------------------------------------

@numba.njit(cache=True)
def _gru_step(y, h, gates, save, xp, rec, lengths, t):
    nb, nh = h.shape
    for b in range(nb):
        if t >= lengths[b]:
            y[b, t, :] = 0
            continue
        for j in range(nh):
            r = _sig(xp[b, t, j] + rec[b, j])
            z = _sig(xp[b, t, nh + j] + rec[b, nh + j])
            hn = rec[b, 2 * nh + j]
            n = np.tanh(xp[b, t, 2 * nh + j] + r * hn)
            v = (1 - z) * n + z * h[b, j]
            h[b, j] = v
            y[b, t, j] = v
            if save:
                gates[t, b, j] = r
                gates[t, b, nh + j] = z
                gates[t, b, 2 * nh + j] = n
                gates[t, b, 3 * nh + j] = hn


@numba.njit(cache=True)
def _gru_back_step(dgx, dgh, dh, gates, y, dy, h0, lengths, t):
    nb, nh = dh.shape
    for b in range(nb):
        if t >= lengths[b]:
            dgx[b, t, :] = 0
            dgh[b, t, :] = 0
            continue
        for j in range(nh):
            r = gates[t, b, j]
            z = gates[t, b, nh + j]
            n = gates[t, b, 2 * nh + j]
            hn = gates[t, b, 3 * nh + j]
            hp = h0[b, j] if t == 0 else y[b, t - 1, j]
            dht = dh[b, j] + dy[b, t, j]
            dn = dht * (1 - z) * (1 - n * n)
            dz = dht * (hp - n) * z * (1 - z)
            dr = dn * hn * r * (1 - r)
            dgx[b, t, j] = dr
            dgx[b, t, nh + j] = dz
            dgx[b, t, 2 * nh + j] = dn
            dgh[b, t, j] = dr
            dgh[b, t, nh + j] = dz
            dgh[b, t, 2 * nh + j] = dn * r
            dh[b, j] = dht * z


def gru_forward(y, h_n, gates, x, h0, w_ih, w_hh, b_ih, b_hh, lengths):
    xp = _proj(x, w_ih, b_ih)
    h_n[...] = h0
    save = gates is not None
    g = gates if save else np.empty((1, 1, 1), x.dtype)
    rec = np.empty((x.shape[0], w_hh.shape[0]), x.dtype)
    wt = w_hh.T
    for t in range(x.shape[1]):
        np.matmul(h_n, wt, out=rec)
        rec += b_hh
        _gru_step(y, h_n, g, save, xp, rec, lengths, t)


def gru_backward(dx, dh0, dw_ih, dw_hh, db_ih, db_hh, gates, y, dy, dh_n, x, h0, w_ih, w_hh,
                 lengths):
    b, t_n = x.shape[:2]
    dgx = np.empty((b, t_n, w_hh.shape[0]), x.dtype)
    dgh = np.empty_like(dgx)
    dh = dh_n.copy()
    for t in range(t_n - 1, -1, -1):
        _gru_back_step(dgx, dgh, dh, gates, y, dy, h0, lengths, t)
        dh += dgh[:, t] @ w_hh
    _weight_grads(dx, dw_ih, dw_hh, dgx, dgh, x, _hprev(h0, y), w_ih)
    db_ih[...] = dgx.sum(axis=(0, 1))
    db_hh[...] = dgh.sum(axis=(0, 1))
    dh0[...] = dh


# ---- Elman RNN ----------------------------------------------------------------------------------

@numba.njit(cache=True)
def _rnn_step(y, h, xp, rec, lengths, t, relu):
    nb, nh = h.shape
    for b in range(nb):
        if t >= lengths[b]:
            y[b, t, :] = 0
            continue
        for j in range(nh):
            a = xp[b, t, j] + rec[b, j]
            v = (a if a > 0 else 0.0) if relu else np.tanh(a)
            h[b, j] = v
            y[b, t, j] = v


@numba.njit(cache=True)
def _rnn_back_step(dg, dh, y, dy, lengths, t, relu):
    nb, nh = dh.shape
    for b in range(nb):
        if t >= lengths[b]:
            dg[b, t, :] = 0
            continue
        for j in range(nh):
            v = y[b, t, j]
            d = (1.0 if v > 0 else 0.0) if relu else 1 - v * v
            dg[b, t, j] = (dh[b, j] + dy[b, t, j]) * d
            dh[b, j] = 0


def rnn_forward(y, h_n, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, relu):
    xp = _proj(x, w_ih, b_ih + b_hh)
    h_n[...] = h0
    rec = np.empty((x.shape[0], w_hh.shape[0]), x.dtype)
    wt = w_hh.T
    for t in range(x.shape[1]):
        np.matmul(h_n, wt, out=rec)
        _rnn_step(y, h_n, xp, rec, lengths, t, bool(relu))


def rnn_backward(dx, dh0, dw_ih, dw_hh, db_ih, db_hh, y, dy, dh_n, x, h0, w_ih, w_hh, lengths,
                 relu):
    b, t_n = x.shape[:2]
    dg = np.empty((b, t_n, w_hh.shape[0]), x.dtype)
    dh = dh_n.copy()
    for t in range(t_n - 1, -1, -1):
        _rnn_back_step(dg, dh, y, dy, lengths, t, bool(relu))
        dh += dg[:, t] @ w_hh
    _weight_grads(dx, dw_ih, dw_hh, dg, dg, x, _hprev(h0, y), w_ih)
    db_ih[...] = dg.sum(axis=(0, 1))
    db_hh[...] = db_ih
    dh0[...] = dh
