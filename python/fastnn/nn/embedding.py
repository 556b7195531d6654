"""``Embedding(input_dim, output_dim)``: integer token ids (batch, steps) -> vectors
(batch, steps, output_dim), a row lookup in a trainable table (:func:`fastnn.ops.embedding`).

``mask_zero=True`` reserves id 0 for padding: the layer then produces a mask (id != 0) that the
recurrent layers after it in a ``Sequential`` follow (see :mod:`.masking`), so padded batches
run each sequence for its own length. As in Keras, ``input_dim`` then counts the padding id too
(vocabulary size + 1).
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

from .. import ops
from . import initializers, regularizers
from .core import Layer

__all__ = ["Embedding"]


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class Embedding(Layer):
    """A (input_dim, output_dim) table; ``torch_weights()`` exchanges it with ``nn.Embedding``
    as ``weight``. Inputs may be integers or integral floats (a ``Sequential`` hands the ids
    over as int64); an id outside ``[0, input_dim)`` raises ValueError."""

    _TORCH_KEYS = (("weight", "embeddings"),)

    def __init__(self, input_dim: int, output_dim: int,
                 embeddings_initializer: Any = "uniform", embeddings_regularizer: Any = None,
                 mask_zero: bool = False, input_shape: Optional[Sequence[int]] = None,
                 dtype: Any = "float32", *, name: Optional[str] = None,
                 trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable, dtype=dtype)
        if input_shape is not None:
            # (steps,) or (steps, ...); None entries for sequences of any length.
            if isinstance(input_shape, (int, np.integer)):
                input_shape = (input_shape,)
            self._given_input_shape = tuple(
                None if s is None else _positive_int(s, "input_shape entries")
                for s in input_shape)
        self.input_dim = _positive_int(input_dim, "input_dim")
        self.output_dim = _positive_int(output_dim, "output_dim")
        if embeddings_initializer == "uniform":  # Keras's default: U(-0.05, 0.05)
            embeddings_initializer = "random_uniform"
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.mask_zero = bool(mask_zero)
        self.embeddings: Optional[np.ndarray] = None
        self.output_mask: Optional[np.ndarray] = None
        self._ctx = None

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def _build(self, input_shape):
        self.embeddings = np.ascontiguousarray(
            self.embeddings_initializer((self.input_dim, self.output_dim), self.dtype))
        self.params = [self.embeddings]
        self.grads = [np.zeros_like(self.embeddings)]

    def convert_input(self, x: Any) -> np.ndarray:
        """``x`` as C-contiguous int64 ids, checked: integral values in ``[0, input_dim)``."""
        a = np.asarray(x)
        if a.dtype.kind == "f":
            if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
                raise ValueError(f"{self.name}: token ids must be whole numbers, got "
                                 f"non-integral values in an array of dtype {a.dtype}")
        elif a.dtype.kind not in "iub":
            raise TypeError(f"{self.name}: token ids must be integers, got dtype {a.dtype}")
        ids = np.ascontiguousarray(a, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.input_dim):
            bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
            raise ValueError(f"{self.name}: token id {bad} is out of range: ids must be in "
                             f"[0, {self.input_dim}) (input_dim={self.input_dim})")
        return ids

    def forward(self, x, training=False):
        ids = self.convert_input(x)
        if ids.ndim < 1:
            raise ValueError(f"{self.name}: token ids need a batch dimension, got a scalar")
        if not self.built:
            self.build((None,) + ids.shape[1:])
        y, self._ctx = ops.embedding_forward(ids, self.embeddings)
        self.output_mask = (ids != 0) if self.mask_zero else None
        return y

    def backward(self, dy, need_dx=True):
        if self._ctx is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        (dw,) = ops.embedding_backward(self._ctx, np.asarray(dy, dtype=self.dtype))
        if self.embeddings_regularizer is not None:
            self.embeddings_regularizer.add_grad(dw, self.embeddings)
        self.grads[0] = dw
        return None  # token ids have no gradient

    @property
    def has_regularizer(self) -> bool:
        return self.embeddings_regularizer is not None

    def regularization_loss(self) -> float:
        if self.embeddings_regularizer is None or self.embeddings is None:
            return 0.0
        return self.embeddings_regularizer(self.embeddings)

    def get_config(self) -> Dict[str, Any]:
        cfg = super().get_config()
        cfg.update({
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
            "embeddings_regularizer": regularizers.serialize(self.embeddings_regularizer),
            "mask_zero": self.mask_zero,
        })
        return cfg
