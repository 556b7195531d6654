"""Numba fallbacks of the attention and layer-norm kernels, with the C++ signatures.

Attention works one query row at a time against all of its keys: a row of Nk scores (per
thread) is the largest temporary, never the (Nq, Nk) matrix. The forward is parallel over
(batch, head) pairs, so is the backward, which makes each pair's dK and dV have one writer.
The backward recomputes each row's probabilities from the saved log-sum-exp (FlashAttention-2).

Arguments are trusted (``fastnn.ops`` checked them): q, k, v, o, do C-contiguous (B, H, N, *);
the mask, when present, an additive mask of the inputs' dtype viewed as (B, H, Nq, Nk) with any
strides (zero on broadcast axes); Nk >= 1.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange, types

from .elementwise import in_array, numba_dtype, out_array, specialize, threads

__all__ = ["attention_forward", "attention_backward", "layer_norm_forward",
           "layer_norm_backward"]

_NO_MASK = {}


@numba.njit(cache=True, inline="always")
def _row_scores(s, q, k, mask, has_mask, bb, hh, i, jmax, scale):
    """s[:jmax] := scale * q[i] . k[j] + mask; returns the row maximum."""
    d = q.shape[3]
    best = -np.inf
    for j in range(jmax):
        acc = 0.0
        for c in range(d):
            acc += q[bb, hh, i, c] * k[bb, hh, j, c]
        t = acc * scale
        if has_mask:
            t += mask[bb, hh, i, j]
        s[j] = t
        if t > best:
            best = t
    return best


def _fwd(o, lse, q, k, v, mask, has_mask, scale, causal):
    b, h, nq, dv = o.shape
    nk = k.shape[2]
    off = nk - nq
    for t in prange(b * h):
        bb = t // h
        hh = t % h
        s = np.empty(nk, np.float64)
        acc = np.empty(dv, np.float64)
        for i in range(nq):
            jmax = min(nk, i + off + 1) if causal else nk
            best = _row_scores(s, q, k, mask, has_mask, bb, hh, i, max(jmax, 0), scale)
            if jmax <= 0 or best == -np.inf:
                for c in range(dv):
                    o[bb, hh, i, c] = 0.0
                lse[bb, hh, i] = -np.inf
                continue
            for c in range(dv):
                acc[c] = 0.0
            total = 0.0
            for j in range(jmax):
                p = math.exp(s[j] - best)
                total += p
                for c in range(dv):
                    acc[c] += p * v[bb, hh, j, c]
            for c in range(dv):
                o[bb, hh, i, c] = acc[c] / total
            lse[bb, hh, i] = best + math.log(total)


def _bwd(dq, dk, dv, o, lse, do, q, k, v, mask, has_mask, scale, causal):
    b, h, nq, d = q.shape
    nk = k.shape[2]
    dvd = v.shape[3]
    off = nk - nq
    for t in prange(b * h):
        bb = t // h
        hh = t % h
        s = np.empty(nk, np.float64)
        gq = np.empty(d, np.float64)
        for j in range(nk):
            for c in range(d):
                dk[bb, hh, j, c] = 0.0
            for c in range(dvd):
                dv[bb, hh, j, c] = 0.0
        for i in range(nq):
            for c in range(d):
                gq[c] = 0.0
            jmax = min(nk, i + off + 1) if causal else nk
            m = lse[bb, hh, i]
            if jmax > 0 and m != -np.inf:
                _row_scores(s, q, k, mask, has_mask, bb, hh, i, jmax, scale)
                di = 0.0
                for c in range(dvd):
                    di += do[bb, hh, i, c] * o[bb, hh, i, c]
                for j in range(jmax):
                    p = math.exp(s[j] - m)
                    dp = 0.0
                    for c in range(dvd):
                        dp += do[bb, hh, i, c] * v[bb, hh, j, c]
                        dv[bb, hh, j, c] += p * do[bb, hh, i, c]
                    ds = p * (dp - di) * scale
                    for c in range(d):
                        gq[c] += ds * k[bb, hh, j, c]
                        dk[bb, hh, j, c] += ds * q[bb, hh, i, c]
            for c in range(d):
                dq[bb, hh, i, c] = gq[c]


def _ln_fwd(y, mean, rstd, x, gamma, beta, eps):
    rows, d = x.shape
    for r in prange(rows):
        mu = 0.0
        for c in range(d):
            mu += x[r, c]
        mu /= d
        var = 0.0
        for c in range(d):
            t = x[r, c] - mu
            var += t * t
        inv = 1.0 / math.sqrt(var / d + eps)
        mean[r] = mu
        rstd[r] = inv
        for c in range(d):
            y[r, c] = (x[r, c] - mu) * inv * gamma[c] + beta[c]


def _ln_bwd_dx(dx, mean, rstd, dy, x, gamma):
    rows, d = x.shape
    for r in prange(rows):
        mu = mean[r]
        inv = rstd[r]
        a = 0.0
        bsum = 0.0
        for c in range(d):
            g = dy[r, c] * gamma[c]
            a += g
            bsum += g * (x[r, c] - mu) * inv
        a /= d
        bsum /= d
        for c in range(d):
            xhat = (x[r, c] - mu) * inv
            dx[r, c] = inv * (dy[r, c] * gamma[c] - a - xhat * bsum)


def _ln_bwd_params(dgamma, dbeta, mean, rstd, dy, x):
    rows, d = x.shape
    for c in prange(d):
        sg = 0.0
        sb = 0.0
        for r in range(rows):
            sg += dy[r, c] * (x[r, c] - mean[r]) * rstd[r]
            sb += dy[r, c]
        dgamma[c] = sg
        dbeta[c] = sb


def _sig(name, t):
    a4, a2, a1 = in_array(t, 4, "C"), in_array(t, 2, "C"), in_array(t, 1, "C")
    m4 = in_array(t, 4)
    f, b = types.float64, types.boolean
    if name == "fwd":
        return types.void(out_array(t, 4), out_array(t, 3), a4, a4, a4, m4, b, f, b)
    if name == "bwd":
        return types.void(out_array(t, 4), out_array(t, 4), out_array(t, 4), a4,
                          in_array(t, 3, "C"), a4, a4, a4, a4, m4, b, f, b)
    if name == "ln_fwd":
        return types.void(out_array(t, 2), out_array(t, 1), out_array(t, 1), a2, a1, a1, f)
    if name == "ln_dx":
        return types.void(out_array(t, 2), a1, a1, a2, a2, a1)
    return types.void(out_array(t, 1), out_array(t, 1), a1, a1, a2, a2)


_FUNCS = {"fwd": _fwd, "bwd": _bwd, "ln_fwd": _ln_fwd, "ln_dx": _ln_bwd_dx,
          "ln_p": _ln_bwd_params}


def _kernel(name, dt):
    """The kernel ``name`` compiled for dtype ``dt`` (each compiles on its first use only)."""
    return specialize(_FUNCS[name], _sig(name, numba_dtype(dt)))


def _mask(mask, dtype):
    if mask is not None:
        return mask, True
    dummy = _NO_MASK.get(np.dtype(dtype))
    if dummy is None:
        dummy = _NO_MASK[np.dtype(dtype)] = np.zeros((1, 1, 1, 1), dtype)
    return dummy, False


def attention_forward(o, lse, q, k, v, mask, scale, causal):
    """o := softmax(q k^T * scale + mask) v per (batch, head), lse := the rows' log-sum-exp
    (-inf and a zero output for a row with no visible key)."""
    m, has = _mask(mask, q.dtype)
    work = q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * (q.shape[3] + v.shape[3])
    with threads(work, q.shape[0] * q.shape[1]):
        _kernel("fwd", q.dtype)(o, lse, q, k, v, m, has, float(scale), bool(causal))


def attention_backward(dq, dk, dv, o, lse, do, q, k, v, mask, scale, causal):
    """dq, dk, dv of sum(o * do), the probabilities recomputed from lse."""
    m, has = _mask(mask, q.dtype)
    work = 2 * q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * (q.shape[3] + v.shape[3])
    with threads(work, q.shape[0] * q.shape[1]):
        _kernel("bwd", q.dtype)(dq, dk, dv, o, lse, do, q, k, v, m, has, float(scale),
                                 bool(causal))


def layer_norm_forward(y, mean, rstd, x, gamma, beta, eps):
    """Rows of x (R, D) normalized, scaled by gamma and shifted by beta; mean and 1/std kept."""
    with threads(4 * x.size, x.shape[0]):
        _kernel("ln_fwd", x.dtype)(y, mean, rstd, x, gamma, beta, float(eps))


def layer_norm_backward(dx, dgamma, dbeta, mean, rstd, dy, x, gamma):
    """dx of every row, and dgamma / dbeta summed over the rows."""
    with threads(6 * x.size, x.shape[0]):
        _kernel("ln_dx", x.dtype)(dx, mean, rstd, dy, x, gamma)
    with threads(3 * x.size, x.shape[1]):
        _kernel("ln_p", x.dtype)(dgamma, dbeta, mean, rstd, dy, x)
