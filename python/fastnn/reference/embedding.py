"""float64 reference of the embedding lookup and its gradient, written as loops over the tokens
(independent of the vectorized gather/scatter the ops use)."""
from __future__ import annotations

import numpy as np

__all__ = ["embedding", "embedding_backward"]


def embedding(ids, weight) -> np.ndarray:
    """``out[..., :] = weight[ids[...], :]``: (*ids.shape, D)."""
    ids = np.asarray(ids)
    weight = np.asarray(weight, dtype=np.float64)
    flat = ids.reshape(-1)
    out = np.empty((flat.size, weight.shape[1]))
    for t, i in enumerate(flat):
        out[t] = weight[int(i)]
    return out.reshape(ids.shape + (weight.shape[1],))


def embedding_backward(ids, dy, num_embeddings: int) -> np.ndarray:
    """The weight gradient: every row of ``dy`` added to the row of its token."""
    ids = np.asarray(ids).reshape(-1)
    dy = np.asarray(dy, dtype=np.float64)
    dy = dy.reshape(ids.size, dy.shape[-1])
    dw = np.zeros((int(num_embeddings), dy.shape[1]))
    for t, i in enumerate(ids):
        dw[int(i)] += dy[t]
    return dw
