"""Numba kernels of the embedding lookup: a row gather, and its gradient (a scatter-add of rows).

The scatter-add runs serially: tokens repeat, so a parallel loop over tokens would race on the
rows of dw, and the work (a few thousand rows per batch) is memory-bound anyway. ``fastnn.ops``
checked every id against the table size.
"""
from __future__ import annotations

import numba
from numba import prange, types

from .elementwise import in_array, numba_dtype, out_array, specialize, threads

__all__ = ["embedding_forward", "embedding_backward"]


def _forward(y, ids, w):
    for t in prange(ids.shape[0]):
        row = ids[t]
        for j in range(w.shape[1]):
            y[t, j] = w[row, j]


def _backward(dw, ids, dy):
    for i in range(dw.shape[0]):
        for j in range(dw.shape[1]):
            dw[i, j] = 0
    for t in range(ids.shape[0]):
        row = ids[t]
        for j in range(dw.shape[1]):
            dw[row, j] += dy[t, j]


def _sig(dt):
    t = numba_dtype(dt)
    return types.void(out_array(t, 2), in_array(types.int64, 1, "C"), in_array(t, 2, "C"))


def embedding_forward(y, ids, w) -> None:
    """y (N, D) = w[ids] for flat int64 ids (N,)."""
    with threads(y.size, ids.shape[0]):
        specialize(_forward, _sig(y.dtype))(y, ids, w)


def embedding_backward(dw, ids, dy) -> None:
    """dw (V, D) = sum over t of dy[t] into row ids[t]."""
    specialize(_backward, _sig(dw.dtype), parallel=False)(dw, ids, dy)


del numba
