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

Strided heads: q, k, v and ``do`` may be views whose last axis is unit-stride (the heads of a
fused (B, N, 3, H, d) projection, ``y.reshape(B, N, 3, H, d).transpose(2, 0, 3, 1, 4)``), and
``out=`` (forward) and ``out=(dq, dk, dv)`` (backward) take preallocated arrays of the result's
shape and dtype, such as ``buf.transpose(0, 2, 1, 3)`` of a (B, N, H, dv) buffer: the C++
kernels read and write them in place, so a multi-head layer needs no split or join copies. Other
backends, and views of other layouts, get contiguous copies.

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


def _rows(x: Any, name: str, op: str) -> np.ndarray:
    """``x`` as a native float32/float64 NumPy array whose last axis is unit-stride and whose
    other strides are non-negative whole items (no copy when it already is one: a head view of
    a fused projection passes as it is), else a C-contiguous copy."""
    if type(x) is np.ndarray and x.dtype.isnative and x.dtype.char in "fd":
        if x.flags.c_contiguous or _row_strided(x):
            return x
        return np.ascontiguousarray(x)
    return _c.host_float(x, name, op)


def _row_strided(x: np.ndarray) -> bool:
    item = x.itemsize
    if x.ndim == 0 or (x.shape[-1] > 1 and x.strides[-1] != item):
        return False
    return all(n <= 1 or (st >= 0 and st % item == 0) for n, st in zip(x.shape, x.strides))


def _in_place(fn: Any) -> bool:
    """Whether the kernel reads and writes strided heads in place (the C++ module's do)."""
    return getattr(fn, "__module__", None) == "fastnn._C"


def _out_arg(out: Any, name: str, op: str, shape: Tuple[int, ...], dtype: np.dtype
             ) -> np.ndarray:
    """A caller's output array: a writeable NumPy array of exactly the result's shape and
    dtype."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{op}: {name} must be a NumPy array, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {tuple(shape)}, got {out.shape}")
    if out.dtype != dtype:
        raise TypeError(f"{op}: {name} must have dtype {dtype}, got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{op}: {name} is read-only")
    return out


def _overlaps(outs: Tuple[np.ndarray, ...], ins: Tuple[Any, ...]) -> bool:
    """Whether an output may share memory with an input or another output (when NumPy cannot
    tell quickly, assume it does)."""
    arrays = [a for a in ins if isinstance(a, np.ndarray)]
    for i, o in enumerate(outs):
        for a in arrays + list(outs[i + 1:]):
            try:
                if np.shares_memory(o, a, max_work=1000):
                    return True
            except Exception:  # too hard to decide: take the safe path
                return True
    return False


def _targets(outs: Tuple[np.ndarray, ...], ins: Tuple[Any, ...], in_place: bool
             ) -> Tuple[np.ndarray, ...]:
    """Arrays for the kernel to write: the callers' own where the kernel can (the right layout,
    no overlap), else fresh C-contiguous ones to copy from afterwards."""
    if in_place and all(_row_strided(o) for o in outs) and not _overlaps(outs, ins):
        return outs
    return tuple(_check.host_empty(o.shape, o.dtype) for o in outs)


def _attention_args(q: Any, k: Any, v: Any, causal: Any, scale: Any, mask: Any, op: str):
    q = _rows(q, "q", op)
    k = _rows(k, "k", op)
    v = _rows(v, "v", op)
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


def _attention(q, k, v, causal, scale, mask, keep: bool, out: Any = None):
    op = "attention_forward" if keep else "attention"
    q, k, v, causal, scale, m, three_d = _attention_args(q, k, v, causal, scale, mask, op)
    b, h, nq, _ = q.shape
    shape = (b, h, nq, v.shape[3])
    fn = _im.kernel("attention_forward")
    in_place = _in_place(fn)
    if not in_place:
        q, k, v = (np.ascontiguousarray(a) for a in (q, k, v))
    mine = None
    if out is None:
        o = _check.host_empty(shape, q.dtype)
    else:
        mine = _out_arg(out, "out", op, shape[:1] + shape[2:] if three_d else shape, q.dtype)
        mine4 = mine[:, None] if three_d else mine
        o = _targets((mine4,), (q, k, v, m), in_place)[0]
    lse = np.empty((b, h, nq), q.dtype)
    if o.size and k.shape[2]:
        fn(o, lse, q, k, v, m, scale, causal)
    else:  # no keys: every row is fully masked
        o.fill(0)
        lse.fill(-np.inf)
    if mine is not None and o is not mine4:  # computed aside: the caller's array overlapped
        np.copyto(mine4, o)
        o = mine4
    out = o
    ctx = None
    if keep:
        ctx = AttentionCtx()
        ctx.q, ctx.k, ctx.v, ctx.out, ctx.lse, ctx.mask = q, k, v, out, lse, m
        ctx.scale, ctx.causal, ctx.squeeze = scale, causal, three_d
    return (out[:, 0] if three_d else out), ctx


def attention(q: Any, k: Any, v: Any, *, causal: bool = False, scale: Optional[float] = None,
              mask: Any = None, out: Optional[np.ndarray] = None) -> np.ndarray:
    """``softmax(q k^T * scale + mask) v``, fused: q (B, H, Nq, d), k (B, H, Nk, d),
    v (B, H, Nk, dv) -> (B, H, Nq, dv) (or 3-D without heads); see the module docstring.
    ``out``: an array of the result's shape and dtype to write it into (returned)."""
    return _attention(q, k, v, causal, scale, mask, False, out)[0]


def attention_forward(q: Any, k: Any, v: Any, *, causal: bool = False,
                      scale: Optional[float] = None, mask: Any = None,
                      out: Optional[np.ndarray] = None) -> Tuple[np.ndarray, AttentionCtx]:
    """``attention`` plus the ctx (inputs, output, row log-sum-exp) for the backward."""
    return _attention(q, k, v, causal, scale, mask, True, out)


def attention_backward(ctx: AttentionCtx, do: Any, *,
                       out: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None
                       ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dq, dk, dv)`` given the output gradient ``do`` (the output's shape). ``out``: three
    arrays of the gradients' shapes and dtype to write them into (returned)."""
    op = "attention_backward"
    if not isinstance(ctx, AttentionCtx):
        raise TypeError(f"{op}: ctx must come from attention_forward, got {type(ctx).__name__}")
    dst = out
    q, k, v, out = ctx.q, ctx.k, ctx.v, ctx.out
    shape = out.shape[:1] + out.shape[2:] if ctx.squeeze else out.shape
    fn = _im.kernel("attention_backward")
    in_place = _in_place(fn)
    do = _im.grad_of(_rows(do, "do", op), "do", op, shape, out.dtype)
    if ctx.squeeze:
        do = do[:, None]
    if not in_place:
        q, k, v, out, do = (np.ascontiguousarray(a) for a in (q, k, v, out, do))
    mine = None
    if dst is None:
        grads = (_check.host_empty(q.shape, q.dtype), _check.host_empty(k.shape, k.dtype),
                 _check.host_empty(v.shape, v.dtype))
    else:
        if not isinstance(dst, (tuple, list)) or len(dst) != 3:
            raise TypeError(f"{op}: out must be a tuple (dq, dk, dv), got {type(dst).__name__}")
        squeeze = (lambda a: a.shape[:1] + a.shape[2:]) if ctx.squeeze else (lambda a: a.shape)
        mine = tuple(_out_arg(a, name, op, squeeze(ref), q.dtype)
                     for a, name, ref in zip(dst, ("dq", "dk", "dv"), (q, k, v)))
        if ctx.squeeze:
            mine = tuple(a[:, None] for a in mine)
        grads = _targets(mine, (q, k, v, out, do, ctx.lse, ctx.mask), in_place)
    dq, dk, dv = grads
    if out.size and k.shape[2]:
        fn(dq, dk, dv, out, ctx.lse, do, q, k, v, ctx.mask, ctx.scale, ctx.causal)
    else:
        dq.fill(0)
        dk.fill(0)
        dv.fill(0)
    if mine is not None and grads is not mine:
        for a, g in zip(mine, grads):
            np.copyto(a, g)
        dq, dk, dv = mine
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
