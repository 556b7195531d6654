"""float64 references of scaled dot-product attention and layer normalization.

Attention is the naive formula, the whole (Nq, Nk) score matrix at once:
``softmax(Q K^T * scale + mask) V``, with a boolean mask (True = attend) or an additive mask
broadcast to (..., Nq, Nk), and the causal mask aligned to the bottom-right corner (query i sees
key j when ``j <= i + Nk - Nq``). A row whose every key is masked has no softmax: its output
and its gradients are zero and its log-sum-exp is -inf.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

__all__ = ["attention", "attention_lse", "attention_backward", "layer_norm",
           "layer_norm_backward"]


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _scores(q, k, causal: bool, scale: Optional[float], mask) -> np.ndarray:
    q, k = _f64(q), _f64(k)
    if scale is None:
        scale = 1.0 / np.sqrt(q.shape[-1])
    s = np.einsum("...id,...jd->...ij", q, k) * scale
    nq, nk = s.shape[-2], s.shape[-1]
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype == np.bool_:
            s = np.where(m, s, -np.inf)
        else:
            s = s + m.astype(np.float64)
    if causal:
        allowed = np.arange(nk)[None, :] <= np.arange(nq)[:, None] + (nk - nq)
        s = np.where(allowed, s, -np.inf)
    return s


def _probs(s: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Row softmax and row log-sum-exp; all-masked rows give zeros and -inf."""
    m = s.max(axis=-1, keepdims=True) if s.shape[-1] else np.full(s.shape[:-1] + (1,), -np.inf)
    empty = ~np.isfinite(m)
    m_safe = np.where(empty, 0.0, m)
    e = np.exp(s - m_safe)
    l = e.sum(axis=-1, keepdims=True)
    p = np.where(empty, 0.0, e / np.where(empty, 1.0, l))
    with np.errstate(divide="ignore"):
        lse = np.where(empty, -np.inf, m_safe + np.log(np.where(empty, 1.0, l)))
    return p, lse[..., 0]


def attention(q, k, v, causal: bool = False, scale: Optional[float] = None,
              mask=None) -> np.ndarray:
    """``softmax(q k^T * scale + mask) v`` in float64; q (..., Nq, d), k (..., Nk, d),
    v (..., Nk, dv)."""
    p, _ = _probs(_scores(q, k, causal, scale, mask))
    return p @ _f64(v)


def attention_lse(q, k, causal: bool = False, scale: Optional[float] = None,
                  mask=None) -> np.ndarray:
    """The per-row log-sum-exp of the scaled, masked scores (..., Nq); -inf for empty rows."""
    return _probs(_scores(q, k, causal, scale, mask))[1]


def attention_backward(q, k, v, do, causal: bool = False, scale: Optional[float] = None,
                       mask=None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dq, dk, dv)`` of ``sum(attention(q, k, v) * do)``."""
    q, k, v, do = _f64(q), _f64(k), _f64(v), _f64(do)
    if scale is None:
        scale = 1.0 / np.sqrt(q.shape[-1])
    p, _ = _probs(_scores(q, k, causal, scale, mask))
    dv = np.swapaxes(p, -1, -2) @ do
    dp = do @ np.swapaxes(v, -1, -2)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    dq = ds @ k * scale
    dk = np.swapaxes(ds, -1, -2) @ q * scale
    return dq, dk, dv


def layer_norm(x, gamma=None, beta=None, eps: float = 1e-5) -> np.ndarray:
    """``(x - mean) / sqrt(var + eps) * gamma + beta`` over the last axis (biased variance)."""
    x = _f64(x)
    mean = x.mean(axis=-1, keepdims=True)
    xhat = (x - mean) / np.sqrt(x.var(axis=-1, keepdims=True) + eps)
    y = xhat * (1.0 if gamma is None else _f64(gamma))
    return y + (0.0 if beta is None else _f64(beta))


def layer_norm_backward(x, dy, gamma=None, eps: float = 1e-5
                        ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dgamma, dbeta)`` of ``sum(layer_norm(x, gamma, beta) * dy)``."""
    x, dy = _f64(x), _f64(dy)
    mean = x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(x.var(axis=-1, keepdims=True) + eps)
    xhat = (x - mean) * rstd
    axes = tuple(range(x.ndim - 1))
    dgamma = (dy * xhat).sum(axis=axes)
    dbeta = dy.sum(axis=axes)
    g = dy * (1.0 if gamma is None else _f64(gamma))
    dx = rstd * (g - g.mean(axis=-1, keepdims=True)
                 - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, dgamma, dbeta
