"""float64 references of the GEMM family: gemm, linear and their gradients.

The products go through ``np.einsum`` without path optimization, NumPy's own multiply-add loop,
so the ground truth does not share code with BLAS or with any of fastnn's kernels. Inputs of any
float dtype are promoted to float64; results are float64.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .elementwise import activation as _act
from .elementwise import activation_backward as _act_backward

__all__ = ["matmul", "gemm", "gemm_backward", "linear", "linear_backward"]


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def matmul(a, b) -> np.ndarray:
    """``a @ b`` for 2-D operands, in float64 (k == 0 gives zeros)."""
    a, b = _f64(a), _f64(b)
    with np.errstate(all="ignore"):
        return np.einsum("ik,kj->ij", a, b, optimize=False)


def gemm(a, b, c=None, *, alpha: float = 1.0, beta: Optional[float] = None,
         trans_a: bool = False, trans_b: bool = False) -> np.ndarray:
    """``alpha * op(a) @ op(b) + beta * c``; ``beta`` defaults to 1 with ``c``, else 0.

    With ``beta == 0`` the term is dropped, not multiplied: NaN or inf in ``c`` do not reach the
    result (the BLAS convention the kernels follow).
    """
    a, b = _f64(a), _f64(b)
    opa = a.T if trans_a else a
    opb = b.T if trans_b else b
    if beta is None:
        beta = 1.0 if c is not None else 0.0
    with np.errstate(all="ignore"):
        out = float(alpha) * matmul(opa, opb)
        if c is not None and beta != 0.0:
            out = out + float(beta) * _f64(c)
    return out


def gemm_backward(a, b, c, d_out, *, alpha: float = 1.0, beta: Optional[float] = None,
                  trans_a: bool = False, trans_b: bool = False
                  ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Gradients ``(da, db, dc)`` of :func:`gemm` (``dc`` is None without ``c``)."""
    a, b, g = _f64(a), _f64(b), _f64(d_out)
    opa = a.T if trans_a else a
    opb = b.T if trans_b else b
    if beta is None:
        beta = 1.0 if c is not None else 0.0
    with np.errstate(all="ignore"):
        d_opa = float(alpha) * matmul(g, opb.T)
        d_opb = float(alpha) * matmul(opa.T, g)
        dc = None if c is None else float(beta) * g
    return (d_opa.T if trans_a else d_opa), (d_opb.T if trans_b else d_opb), dc


def _rows(x: np.ndarray) -> np.ndarray:
    """(..., k) -> (rows, k); explicit sizes, since -1 is ambiguous when k == 0."""
    return x.reshape(int(np.prod(x.shape[:-1], dtype=np.int64)), x.shape[-1])


def _pre_activation(x2: np.ndarray, w: np.ndarray, b) -> np.ndarray:
    z = matmul(x2, w.T)
    if b is not None:
        with np.errstate(all="ignore"):
            z = z + _f64(b)[None, :]
    return z


def linear(x, w, b=None, activation: Optional[str] = None,
           alpha: Optional[float] = None) -> np.ndarray:
    """``activation(x @ w.T + b)``; ``x``: (..., in), ``w``: (out, in), result (..., out)."""
    x, w = _f64(x), _f64(w)
    x2 = _rows(x)
    y = _act(_pre_activation(x2, w, b), activation, alpha)
    return y.reshape(x.shape[:-1] + (w.shape[0],))


def linear_backward(x, w, b, activation: Optional[str], alpha: Optional[float], dy
                    ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Gradients ``(dx, dw, db)`` of :func:`linear` for the output gradient ``dy``.

    ``db`` is None when ``b`` is None.
    """
    x, w = _f64(x), _f64(w)
    x2 = _rows(x)
    dy2 = _f64(dy).reshape(x2.shape[0], w.shape[0])
    dz = _act_backward(_pre_activation(x2, w, b), activation, alpha, dy2)
    dw = matmul(dz.T, x2)
    dx = matmul(dz, w).reshape(x.shape)
    db = None if b is None else dz.sum(axis=0)
    return dx, dw, db
