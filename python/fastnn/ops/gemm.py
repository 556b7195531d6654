"""The GEMM family: ``gemm`` and the fully connected layer ``linear`` with a fused epilogue.

Every function follows the op contract: ``op`` (inference), ``op_forward`` -> ``(out, ctx)``,
``op_backward(ctx, d_out)`` -> gradients of the inputs and parameters in argument order.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from .. import backend as _backend
from . import _check
from ._activations import ACTIVATIONS, GELU, resolve

_nd = np.ndarray
_empty = np.empty
_F32, _F64 = _check._F32, _check._F64

__all__ = ["gemm", "gemm_forward", "gemm_backward", "linear", "linear_forward",
           "linear_backward", "LinearCtx", "GemmCtx"]


def _operands(a: Any, b: Any, c: Any, trans_a: bool, trans_b: bool):
    a = _check.float_array(a, "a")
    b = _check.float_array(b, "b")
    _check.ndim(a, "a", 2)
    _check.ndim(b, "b", 2)
    if trans_a:
        a = a.T
    if trans_b:
        b = b.T
    if a.shape[1] != b.shape[0]:
        raise ValueError(
            f"inner dimensions differ: op(a) has shape {tuple(a.shape)} and op(b) has shape "
            f"{tuple(b.shape)} (trans_a={trans_a}, trans_b={trans_b})")
    if c is not None:
        c = _check.float_array(c, "c")
        want = (a.shape[0], b.shape[1])
        if tuple(c.shape) != want:
            raise ValueError(f"c must have shape {want} (rows of op(a), columns of op(b)), "
                             f"got {tuple(c.shape)}")
        dt = _check.same_dtype(("a", a), ("b", b), ("c", c))
    else:
        dt = _check.same_dtype(("a", a), ("b", b))
    return a, b, c, dt


def gemm(a: Any, b: Any, c: Any = None, *, alpha: float = 1.0, beta: Optional[float] = None,
         trans_a: bool = False, trans_b: bool = False) -> Any:
    """``alpha * op(a) @ op(b) + beta * c`` as a new array (``c`` is not modified).

    ``op(x)`` is ``x.T`` when ``trans_x`` is true. ``beta`` defaults to 1 when ``c`` is given and 0
    otherwise; with ``beta == 0``, ``c`` is not read (BLAS semantics: NaN in ``c`` is ignored).
    float32 is the fast path; float64 is supported; any strides are accepted.
    """
    if (type(a) is _nd and type(b) is _nd and c is None and beta is None and alpha == 1.0
            and not (trans_a or trans_b)):
        # Fast path for the plain product of two well-formed arrays: small products are
        # dominated by per-call overhead. Anything unusual (not 2-D, other dtypes, strides that
        # are not whole elements, which the C++ binding refuses) falls through to the full checks.
        dt = a.dtype
        if (dt is _F32 or dt is _F64) and b.dtype is dt:
            try:
                (m, k), (k2, n) = a.shape, b.shape
                if k == k2 and m and n and k:
                    out = _empty((m, n), dt)
                    (_backend._kernels_now or _backend.kernels()).gemm(out, a, b, None, 1.0, 0.0)
                    return out
            except ValueError:
                pass
    a, b, c, dt = _operands(a, b, c, trans_a, trans_b)
    alpha = _check.real(alpha, "alpha")
    beta = (1.0 if c is not None else 0.0) if beta is None else _check.real(beta, "beta")
    if c is None and beta != 0.0:
        raise ValueError(f"beta={beta} needs c")
    m, k = a.shape
    n = b.shape[1]
    out = _check.empty((m, n), dt, like=a)
    if m == 0 or n == 0:
        return out
    if k == 0:  # empty sum: out = beta * c
        if c is not None and beta != 0.0:
            np.multiply(c, beta, out=out)
        else:
            out[...] = 0
        return out
    _backend.kernels_for(a, b, c).gemm(out, a, b, c if beta != 0.0 else None, alpha, beta)
    return out


class GemmCtx:
    __slots__ = ("a", "b", "c", "alpha", "beta", "trans_a", "trans_b")


def gemm_forward(a: Any, b: Any, c: Any = None, *, alpha: float = 1.0,
                 beta: Optional[float] = None, trans_a: bool = False,
                 trans_b: bool = False) -> Tuple[Any, GemmCtx]:
    """``gemm`` that also returns the context ``gemm_backward`` needs."""
    out = gemm(a, b, c, alpha=alpha, beta=beta, trans_a=trans_a, trans_b=trans_b)
    ctx = GemmCtx()
    ctx.a, ctx.b, ctx.c = _check.float_array(a, "a"), _check.float_array(b, "b"), c
    ctx.alpha = float(alpha)
    ctx.beta = (1.0 if c is not None else 0.0) if beta is None else float(beta)
    ctx.trans_a, ctx.trans_b = trans_a, trans_b
    return out, ctx


def gemm_backward(ctx: GemmCtx, d_out: Any) -> Tuple[Any, Any, Any]:
    """Gradients ``(da, db, dc)`` of ``gemm`` (``dc`` is None when there was no ``c``)."""
    a, b = ctx.a, ctx.b
    d_out = _check.float_array(d_out, "d_out")
    opa = a.T if ctx.trans_a else a
    opb = b.T if ctx.trans_b else b
    want = (opa.shape[0], opb.shape[1])
    if tuple(d_out.shape) != want:
        raise ValueError(f"d_out must have shape {want}, got {tuple(d_out.shape)}")
    # d op(a) = alpha * d_out @ op(b)^T ; d op(b) = alpha * op(a)^T @ d_out
    if ctx.trans_a:
        da = gemm(opb, d_out, alpha=ctx.alpha, trans_b=True)       # (op(b) d_out^T) = da
    else:
        da = gemm(d_out, opb, alpha=ctx.alpha, trans_b=True)
    if ctx.trans_b:
        db = gemm(d_out, opa, alpha=ctx.alpha, trans_a=True)       # d_out^T op(a) = db
    else:
        db = gemm(opa, d_out, alpha=ctx.alpha, trans_a=True)
    dc = None
    if ctx.c is not None:
        dc = d_out * d_out.dtype.type(ctx.beta)
    return da, db, dc


# ---------------------------------------------------------------------------------------------
# linear: y = act(x @ w.T + b), w of shape (out_features, in_features)


class LinearCtx:
    """What ``linear_backward`` needs: inputs, output, and the pre-activation when required."""
    __slots__ = ("x", "w", "has_bias", "y", "z", "act", "param", "x_shape")


def _linear_args(x: Any, w: Any, b: Any):
    x = _check.float_array(x, "x")
    w = _check.float_array(w, "w")
    _check.ndim(w, "w", 2)
    if len(x.shape) == 0:
        raise ValueError("x must have at least 1 dimension (…, in_features), got a scalar")
    if x.shape[-1] != w.shape[1]:
        raise ValueError(f"x has {x.shape[-1]} features (shape {tuple(x.shape)}) but w expects "
                         f"{w.shape[1]} (shape {tuple(w.shape)} = (out_features, in_features))")
    if b is not None:
        b = _check.float_array(b, "b")
        if tuple(b.shape) != (w.shape[0],):
            raise ValueError(f"b must have shape ({w.shape[0]},) to match w {tuple(w.shape)}, "
                             f"got {tuple(b.shape)}")
        b = _check.contiguous(b)
        _check.same_dtype(("x", x), ("w", w), ("b", b))
    else:
        _check.same_dtype(("x", x), ("w", w))
    x2 = x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x
    return x, x2, w, b


_resolved: dict = {}


def _well_formed(x: Any, w: Any, b: Any) -> bool:
    """The common case, checked in a few attribute reads: 2-D x and w, same float dtype,
    aligned, matching features, and a contiguous bias of the right length (or none)."""
    if type(x) is not _nd or type(w) is not _nd or x.ndim != 2 or w.ndim != 2:
        return False
    dt = x.dtype
    if not ((dt is _check._F32 or dt is _check._F64) and w.dtype is dt and x.flags.aligned
            and w.flags.aligned and x.shape[1] == w.shape[1]):
        return False
    return b is None or (type(b) is _nd and b.dtype is dt and b.shape == (w.shape[0],)
                         and b.flags.c_contiguous)


def _linear(x: Any, w: Any, b: Any, activation: Optional[str], alpha: Optional[float],
            keep: bool):
    key = (activation, alpha)
    # Cache only exact types: True == 1.0 as a dict key, and True must be rejected, not reused.
    cached = _resolved.get(key) if alpha is None or type(alpha) is float else None
    if cached is None:
        cached = resolve(activation, alpha)
        if (alpha is None or type(alpha) is float) and (activation is None
                                                        or type(activation) is str):
            if len(_resolved) < 64:
                _resolved[key] = cached
    code, param = cached
    if _well_formed(x, w, b):
        x2 = x
    else:
        x, x2, w, b = _linear_args(x, w, b)
    m, n = x2.shape[0], w.shape[0]
    y = _check.empty((m, n), x2.dtype, like=x2)
    z = None
    if code == GELU and keep:
        z = _check.empty((m, n), x2.dtype, like=x2)
    if m and n:
        if x2.shape[1] == 0:  # no inputs: the output is act(b)
            pre = np.zeros((m, n), x2.dtype) if b is None else np.broadcast_to(b, (m, n)).copy()
            if z is not None:
                z[...] = pre
            _backend.kernels_for(x2).activation(y, pre, code, param)
        else:
            _backend.kernels_for(x2, w, b).linear(y, z, x2, w, b, code, param)
    out = y.reshape(x.shape[:-1] + (n,)) if x.ndim != 2 else y
    return out, x, x2, w, b, y, z, code, param


def linear(x: Any, w: Any, b: Any = None, activation: Optional[str] = None, *,
           alpha: Optional[float] = None) -> Any:
    """``act(x @ w.T + b)``, the bias and activation fused into the GEMM epilogue.

    ``x``: (..., in_features); ``w``: (out_features, in_features); ``b``: (out_features,) or None.
    ``activation``: None/"linear", "relu", "leaky_relu", "sigmoid", "tanh", "elu", "selu",
    "gelu"; ``alpha`` is the negative slope of leaky_relu (0.01) or the alpha of elu (1.0).
    """
    if alpha is None and (activation is None or type(activation) is str):
        # Fast path (inference on well-formed arrays): per-call overhead is most of the cost of
        # a small layer. Anything unusual goes through the full checks below.
        code = ACTIVATIONS.get(activation)
        if code is not None and _well_formed(x, w, b):
            (m, k), n = x.shape, w.shape[0]
            if m and n and k:
                y = _empty((m, n), x.dtype)
                (_backend._kernels_now or _backend.kernels()).linear(y, None, x, w, b, code[0],
                                                                     code[1])
                return y
    return _linear(x, w, b, activation, alpha, keep=False)[0]


def linear_forward(x: Any, w: Any, b: Any = None, activation: Optional[str] = None, *,
                   alpha: Optional[float] = None) -> Tuple[Any, LinearCtx]:
    """``linear`` plus the context for ``linear_backward``."""
    out, x, x2, w, b, y, z, code, param = _linear(x, w, b, activation, alpha, keep=True)
    ctx = LinearCtx()
    ctx.x, ctx.w, ctx.has_bias, ctx.y, ctx.z = x2, w, b is not None, y, z
    ctx.act, ctx.param, ctx.x_shape = code, param, x.shape
    return out, ctx


def linear_backward(ctx: LinearCtx, dy: Any, *, need_dx: bool = True
                    ) -> Tuple[Optional[Any], Any, Optional[Any]]:
    """Gradients ``(dx, dw, db)`` of ``linear`` in one fused call.

    The activation's derivative, the bias gradient (column sums) and both GEMMs run in one kernel
    call. ``db`` is None without a bias; ``dx`` is None with ``need_dx=False`` (a first layer has
    no use for it, and skipping it saves a GEMM).
    """
    x, w, y = ctx.x, ctx.w, ctx.y
    dy = _check.float_array(dy, "dy")
    if tuple(dy.shape) != tuple(ctx.x_shape[:-1]) + (w.shape[0],):
        raise ValueError(f"dy must have shape {tuple(ctx.x_shape[:-1]) + (w.shape[0],)}, "
                         f"got {tuple(dy.shape)}")
    if np.dtype(dy.dtype) != np.dtype(x.dtype):
        raise TypeError(f"dy has dtype {np.dtype(dy.dtype)} but the forward ran in {x.dtype}")
    dy2 = _check.contiguous(dy.reshape(y.shape))
    dt = x.dtype
    dw = _check.empty(w.shape, dt, like=x)
    db = _check.empty((w.shape[0],), dt, like=x) if ctx.has_bias else None
    dx = _check.empty(x.shape, dt, like=x) if need_dx else None
    m, n, k = x.shape[0], w.shape[0], x.shape[1]
    if m == 0 or n == 0:
        dw[...] = 0
        if db is not None:
            db[...] = 0
        if dx is not None:
            dx[...] = 0
    elif k == 0:
        if db is not None:
            dz = np.empty_like(dy2)
            _backend.kernels_for(x).activation_backward(dz, dy2, ctx.z, y, ctx.act, ctx.param)
            db[...] = dz.sum(axis=0)
    else:
        _backend.kernels_for(x, w, dy2).linear_backward(dx, dw, db, dy2, x, w, y, ctx.z,
                                                        ctx.act, ctx.param)
    if dx is not None and len(ctx.x_shape) != 2:
        dx = dx.reshape(ctx.x_shape)
    return dx, dw, db
