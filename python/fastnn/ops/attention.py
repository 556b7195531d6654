"""Fused scaled dot-product attention and layer normalization.

``attention(q, k, v, *, causal=False, scale=None, mask=None)`` computes
``softmax(q k^T * scale + mask) v`` without ever storing the (Nq, Nk) score matrix:

* q (B, H, Nq, d), k (B, H, Nk, d), v (B, H, Nk, dv), or the same without the head axis
  (B, N, d); Nq and Nk may differ (cross-attention) and v has its own head size dv;
* ``scale`` defaults to 1/sqrt(d);
* ``mask``: a boolean mask (True = attend) or an additive float mask, broadcastable to
  (B, H, Nq, Nk) (to (B, Nq, Nk) for 3-D inputs);
* ``causal``: query i sees key j when ``j <= i + Nk - Nq`` (the lower triangle aligned to the
  bottom-right corner, PyTorch's convention when Nq != Nk);
* a row whose every key is masked gives zeros, and zero gradients, never NaN.

``attention_forward`` returns ``(out, ctx)``; the ctx holds the inputs, the output and the
per-row log-sum-exp of the scores (B, H, Nq) -- nothing of size Nq x Nk beyond the caller's own
mask. ``attention_backward(ctx, do)`` returns ``(dq, dk, dv)``, recomputing the scores from the
saved log-sum-exp.

``layer_norm(x, gamma, beta, eps)`` normalizes over the last axis (biased variance), then scales
and shifts; ``layer_norm_backward(ctx, dy)`` returns ``(dx, dgamma, dbeta)`` (None for a
parameter given as None).
"""
from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import numpy as np

from . import _image as _im
from . import _check
from . import _nncheck as _c

__all__ = ["attention", "attention_forward", "attention_backward", "AttentionCtx",
           "layer_norm", "layer_norm_forward", "layer_norm_backward", "LayerNormCtx"]


class AttentionCtx:
    """The (4-D, contiguous) inputs, the output, the row log-sum-exp (B, H, Nq; -inf for a
    fully masked row), the broadcast additive mask view (or None), scale, causal, and whether
    the caller's arrays had no head axis."""
    __slots__ = ("q", "k", "v", "out", "lse", "mask", "scale", "causal", "squeeze")


class LayerNormCtx:
    """The input rows (R, D), their mean and 1/std (R,), gamma (or None), whether there was a
    beta, and the caller's shape."""
    __slots__ = ("x", "mean", "rstd", "gamma", "has_beta", "shape")


# ---- attention ----------------------------------------------------------------------------------

def _mask_view(mask: Any, op: str, shape4: Tuple[int, int, int, int], dtype: np.dtype,
               three_d: bool) -> Optional[np.ndarray]:
    """The mask as an additive float array of ``dtype`` broadcast (a view, zero strides on the
    broadcast axes) to (B, H, Nq, Nk)."""
    if mask is None:
        return None
    if _check.is_device_array(mask):
        raise TypeError(f"{op}: mask must be a host (NumPy) array")
    try:
        m = np.asarray(mask)
    except Exception as exc:
        raise TypeError(f"{op}: mask could not be converted to an array: {exc}") from None
    b, h, nq, nk = shape4
    target = (b, nq, nk) if three_d else shape4
    if m.dtype == np.bool_:
        # Converted in the mask's own shape: a (Nq, Nk) mask stays (Nq, Nk).
        m = np.where(m, dtype.type(0), dtype.type(-np.inf)).astype(dtype, copy=False)
    elif m.dtype.kind == "f":
        m = m.astype(dtype, copy=False)
    else:
        raise TypeError(f"{op}: mask must be boolean (True = attend) or floating point "
                        f"(added to the scores), got dtype {m.dtype}")
    if m.ndim > len(target):
        raise ValueError(f"{op}: mask of shape {m.shape} has more axes than the scores "
                         f"{target}")
    try:
        if np.broadcast_shapes(m.shape, target) != target:
            raise ValueError
    except ValueError:
        raise ValueError(f"{op}: mask of shape {m.shape} does not broadcast to the scores "
                         f"{target} ((B, H, Nq, Nk) or, without heads, (B, Nq, Nk))") from None
    m = m.reshape((1,) * (len(target) - m.ndim) + m.shape)
    if three_d:
        m = m[:, None]
    return np.broadcast_to(m, shape4)


def _attention_args(q: Any, k: Any, v: Any, causal: Any, scale: Any, mask: Any, op: str):
    q = _c.host_float(q, "q", op)
    k = _c.host_float(k, "k", op)
    v = _c.host_float(v, "v", op)
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"{op}: q, k and v must share one dtype, got {q.dtype}, {k.dtype}, "
                        f"{v.dtype}")
    if q.ndim not in (3, 4) or k.ndim != q.ndim or v.ndim != q.ndim:
        raise ValueError(f"{op}: q, k, v must all be 4-D (B, H, N, d) or all 3-D (B, N, d), "
                         f"got shapes {q.shape}, {k.shape}, {v.shape}")
    if q.shape[:-2] != k.shape[:-2] or q.shape[:-2] != v.shape[:-2]:
        what = "(B, H)" if q.ndim == 4 else "B"
        raise ValueError(f"{op}: q, k, v must share their leading axes {what}, got shapes "
                         f"{q.shape}, {k.shape}, {v.shape}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{op}: k and v must have the same number of keys, got shapes "
                         f"{k.shape} and {v.shape}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"{op}: q and k must have the same head size d, got shapes {q.shape} "
                         f"and {k.shape}")
    if q.shape[-1] < 1 or v.shape[-1] < 1:
        raise ValueError(f"{op}: head sizes must be >= 1, got q {q.shape} and v {v.shape}")
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"{op}: causal must be a bool, got {type(causal).__name__}")
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    else:
        scale = _c.real(scale, "scale")
        if not math.isfinite(scale):
            raise ValueError(f"{op}: scale must be finite, got {scale}")
    three_d = q.ndim == 3
    if three_d:
        q, k, v = q[:, None], k[:, None], v[:, None]
    shape4 = q.shape[:3] + (k.shape[2],)
    m = _mask_view(mask, op, shape4, q.dtype, three_d)
    return q, k, v, bool(causal), float(scale), m, three_d


def _attention(q, k, v, causal, scale, mask, keep: bool):
    op = "attention_forward" if keep else "attention"
    q, k, v, causal, scale, m, three_d = _attention_args(q, k, v, causal, scale, mask, op)
    b, h, nq, _ = q.shape
    out = np.empty((b, h, nq, v.shape[3]), q.dtype)
    lse = np.empty((b, h, nq), q.dtype)
    if out.size and k.shape[2]:
        _im.kernel("attention_forward")(out, lse, q, k, v, m, scale, causal)
    else:  # no keys: every row is fully masked
        out.fill(0)
        lse.fill(-np.inf)
    ctx = None
    if keep:
        ctx = AttentionCtx()
        ctx.q, ctx.k, ctx.v, ctx.out, ctx.lse, ctx.mask = q, k, v, out, lse, m
        ctx.scale, ctx.causal, ctx.squeeze = scale, causal, three_d
    return (out[:, 0] if three_d else out), ctx


def attention(q: Any, k: Any, v: Any, *, causal: bool = False, scale: Optional[float] = None,
              mask: Any = None) -> np.ndarray:
    """``softmax(q k^T * scale + mask) v``, fused: q (B, H, Nq, d), k (B, H, Nk, d),
    v (B, H, Nk, dv) -> (B, H, Nq, dv) (or 3-D without heads); see the module docstring."""
    return _attention(q, k, v, causal, scale, mask, False)[0]


def attention_forward(q: Any, k: Any, v: Any, *, causal: bool = False,
                      scale: Optional[float] = None, mask: Any = None
                      ) -> Tuple[np.ndarray, AttentionCtx]:
    """``attention`` plus the ctx (inputs, output, row log-sum-exp) for the backward."""
    return _attention(q, k, v, causal, scale, mask, True)


def attention_backward(ctx: AttentionCtx, do: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dq, dk, dv)`` given the output gradient ``do`` (the output's shape)."""
    op = "attention_backward"
    if not isinstance(ctx, AttentionCtx):
        raise TypeError(f"{op}: ctx must come from attention_forward, got {type(ctx).__name__}")
    q, k, v, out = ctx.q, ctx.k, ctx.v, ctx.out
    shape = out.shape[:1] + out.shape[2:] if ctx.squeeze else out.shape
    do = _im.grad_like(do, "do", op, shape, out.dtype)
    if ctx.squeeze:
        do = do[:, None]
    do = np.ascontiguousarray(do)
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    if out.size and k.shape[2]:
        _im.kernel("attention_backward")(dq, dk, dv, out, ctx.lse, do, q, k, v, ctx.mask,
                                         ctx.scale, ctx.causal)
    else:
        dq.fill(0)
        dk.fill(0)
        dv.fill(0)
    if ctx.squeeze:
        return dq[:, 0], dk[:, 0], dv[:, 0]
    return dq, dk, dv


# ---- layer normalization ------------------------------------------------------------------------

def _layer_norm(x: Any, gamma: Any, beta: Any, eps: Any, keep: bool):
    op = "layer_norm_forward" if keep else "layer_norm"
    x = _c.host_float(x, "x", op)
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"{op}: x must have a non-empty last axis to normalize over, got "
                         f"shape {x.shape}")
    eps = _c.in_range(_c.real(eps, "eps"), "eps", 0.0, np.inf, lo_open=True)
    d = x.shape[-1]
    params = []
    for name, p in (("gamma", gamma), ("beta", beta)):
        if p is not None:
            p = _c.host_float(p, name, op)
            if p.shape != (d,):
                raise ValueError(f"{op}: {name} must have shape ({d},), the last axis of x "
                                 f"{x.shape}, got {p.shape}")
            _im.same_dtype(op, x, "x", p, name)
        params.append(p)
    g, b = params
    rows = x.reshape(-1, d)
    y = np.empty_like(rows)
    mean = np.empty(rows.shape[0], x.dtype)
    rstd = np.empty(rows.shape[0], x.dtype)
    if rows.shape[0]:
        g_k = g if g is not None else np.ones(d, x.dtype)
        b_k = b if b is not None else np.zeros(d, x.dtype)
        _im.kernel("layer_norm_forward")(y, mean, rstd, rows, g_k, b_k, float(eps))
    ctx = None
    if keep:
        ctx = LayerNormCtx()
        ctx.x, ctx.mean, ctx.rstd, ctx.gamma = rows, mean, rstd, g
        ctx.has_beta, ctx.shape = b is not None, x.shape
    return y.reshape(x.shape), ctx


def layer_norm(x: Any, gamma: Any = None, beta: Any = None, eps: float = 1e-5) -> np.ndarray:
    """``(x - mean) / sqrt(var + eps) * gamma + beta`` over the last axis of x; gamma and beta
    are (D,) arrays of x's dtype, or None (no scale / no shift)."""
    return _layer_norm(x, gamma, beta, eps, False)[0]


def layer_norm_forward(x: Any, gamma: Any = None, beta: Any = None, eps: float = 1e-5
                       ) -> Tuple[np.ndarray, LayerNormCtx]:
    """``layer_norm`` plus the ctx (input, row mean and 1/std) for the backward."""
    return _layer_norm(x, gamma, beta, eps, True)


def layer_norm_backward(ctx: LayerNormCtx, dy: Any
                        ) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """``(dx, dgamma, dbeta)``; dgamma / dbeta are None when gamma / beta were None."""
    op = "layer_norm_backward"
    if not isinstance(ctx, LayerNormCtx):
        raise TypeError(f"{op}: ctx must come from layer_norm_forward, got {type(ctx).__name__}")
    x = ctx.x
    dy = _im.grad_like(dy, "dy", op, ctx.shape, x.dtype)
    dy = np.ascontiguousarray(dy).reshape(x.shape)
    d = x.shape[1]
    dx = np.empty_like(x)
    dgamma = np.empty(d, x.dtype)
    dbeta = np.empty(d, x.dtype)
    if x.shape[0]:
        g_k = ctx.gamma if ctx.gamma is not None else np.ones(d, x.dtype)
        _im.kernel("layer_norm_backward")(dx, dgamma, dbeta, ctx.mean, ctx.rstd, dy, x, g_k)
    else:
        dgamma.fill(0)
        dbeta.fill(0)
    return (dx.reshape(ctx.shape), dgamma if ctx.gamma is not None else None,
            dbeta if ctx.has_beta else None)
