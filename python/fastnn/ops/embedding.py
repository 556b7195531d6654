"""The embedding lookup: ``embedding(ids, weight)`` gathers rows of a table by integer token id.

Op contract: ``embedding`` (inference), ``embedding_forward`` -> ``(out, ctx)``,
``embedding_backward(ctx, d_out)`` -> ``(d_weight,)`` (the ids are integers and have no
gradient). ids of any shape give an output of shape ``(*ids.shape, D)``.

The C++ backend has no kernel of its own for this op: a gather is one ``np.take`` (memory-bound,
already at copy speed), and the gradient's scatter-add runs as a sort of the ids and one
``np.add.reduceat`` over the sorted rows (2-3x faster than ``np.add.at``, and exact-order
deterministic). The Numba backend runs its own loops. Every id is checked against the table
before anything runs: an id out of range is a ValueError, never a stray read.
"""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from .. import backend as _backend
from . import _check

__all__ = ["embedding", "embedding_forward", "embedding_backward", "EmbeddingCtx"]


class EmbeddingCtx:
    """The flat int64 ids, the output's shape, the table's size and dtype."""
    __slots__ = ("ids", "out_shape", "num_embeddings", "dtype")


def _ids(ids: Any, num_embeddings: int, op: str) -> np.ndarray:
    if _check.is_device_array(ids):
        raise TypeError(f"{op}: ids must be a host (NumPy) array")
    a = np.asarray(ids)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{op}: ids must be an integer array, got dtype {a.dtype}")
    if a.size:
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi >= num_embeddings:
            bad = lo if lo < 0 else hi
            where = tuple(int(i) for i in np.argwhere(a == bad)[0])
            raise ValueError(f"{op}: token id {bad} at position {where} of ids (shape "
                             f"{a.shape}) is out of range for a table of {num_embeddings} rows "
                             f"(ids must be in [0, {num_embeddings}))")
    return np.ascontiguousarray(a.reshape(-1), dtype=np.int64)


def _weight(weight: Any, op: str) -> np.ndarray:
    if _check.is_device_array(weight):
        raise TypeError(f"{op}: weight must be a host (NumPy) array")
    w = _check.float_array(weight, "weight")
    _check.ndim(w, "weight", 2)
    return np.ascontiguousarray(w)


def _numba() -> bool:
    return _backend.get_backend() == "numba"


def _embedding(ids: Any, weight: Any):
    op = "embedding"
    w = _weight(weight, op)
    flat = _ids(ids, w.shape[0], op)
    shape = tuple(np.shape(ids)) + (w.shape[1],)
    if _numba() and flat.size and w.shape[1]:
        y = np.empty((flat.size, w.shape[1]), w.dtype)
        _backend.kernels("numba").embedding_forward(y, flat, w)
    else:
        y = np.take(w, flat, axis=0)
    return y.reshape(shape), flat, w


def embedding(ids: Any, weight: Any) -> np.ndarray:
    """``weight[ids]``: ids (any shape, integers in ``[0, V)``), weight (V, D) float32/float64
    -> (*ids.shape, D)."""
    return _embedding(ids, weight)[0]


def embedding_forward(ids: Any, weight: Any) -> Tuple[np.ndarray, EmbeddingCtx]:
    """``embedding`` plus the ctx for ``embedding_backward``."""
    y, flat, w = _embedding(ids, weight)
    ctx = EmbeddingCtx()
    ctx.ids, ctx.out_shape, ctx.num_embeddings, ctx.dtype = flat, y.shape, w.shape[0], w.dtype
    return y, ctx


def _scatter_add(dw: np.ndarray, ids: np.ndarray, dy: np.ndarray) -> None:
    dw[...] = 0
    if not ids.size:
        return
    order = np.argsort(ids, kind="stable")
    rows, starts = np.unique(ids[order], return_index=True)
    dw[rows] = np.add.reduceat(dy[order], starts, axis=0)


def embedding_backward(ctx: EmbeddingCtx, dy: Any) -> Tuple[np.ndarray]:
    """``(d_weight,)``: each row of ``dy`` added to the table row of its token."""
    op = "embedding_backward"
    if not isinstance(ctx, EmbeddingCtx):
        raise TypeError(f"{op}: ctx must come from embedding_forward, got {type(ctx).__name__}")
    dy = _check.float_array(dy, "dy")
    if tuple(dy.shape) != tuple(ctx.out_shape):
        raise ValueError(f"{op}: dy must have the output's shape {ctx.out_shape}, got "
                         f"{tuple(dy.shape)}")
    if dy.dtype != ctx.dtype:
        raise TypeError(f"{op}: dy must be {ctx.dtype} like the weight, got {dy.dtype}")
    d = ctx.out_shape[-1]
    rows = np.ascontiguousarray(dy).reshape(-1, d)
    dw = np.empty((ctx.num_embeddings, d), ctx.dtype)
    if _numba() and dw.size:
        _backend.kernels("numba").embedding_backward(dw, ctx.ids, rows)
    else:
        _scatter_add(dw, ctx.ids, rows)
    return (dw,)
