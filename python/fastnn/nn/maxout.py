"""``Maxout(units, pieces)``: a linear layer with ``units * pieces`` outputs, then the maximum
over each unit's ``pieces`` (Goodfellow et al., 2013).

The kernel has shape ``(units * pieces, in_features)``; its rows are grouped into units the way
``ops.maxout`` groups the features of its input.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .. import ops
from .core import Dense

__all__ = ["Maxout"]


class Maxout(Dense):
    def __init__(self, units: int, pieces: int, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, bias_regularizer: Any = None,
                 input_shape: Optional[Sequence[int]] = None, dtype: Any = "float32", *,
                 name: Optional[str] = None, trainable: bool = True) -> None:
        if isinstance(pieces, bool) or not isinstance(pieces, (int, np.integer)) or pieces < 1:
            raise ValueError(f"pieces must be a positive int, got {pieces!r}")
        super().__init__(units, None, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, input_shape, dtype, name=name,
                         trainable=trainable)
        self.pieces = int(pieces)
        self._max_ctx = None

    @property
    def _rows(self) -> int:
        return self.units * self.pieces

    @property
    def head_activation(self) -> Optional[str]:
        return None

    def forward(self, x, training=False):
        x = self._input(x)
        z, self._ctx = ops.linear_forward(x, self.kernel, self.bias)
        y, self._max_ctx = ops.maxout_forward(z, self.pieces)
        self._post_ctx = None
        return y

    def backward(self, dy, need_dx=True):
        if self._max_ctx is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        (dz,) = ops.maxout_backward(self._max_ctx, dy)
        return super().backward(dz, need_dx)

    def get_config(self):
        cfg = super().get_config()
        del cfg["activation"], cfg["alpha"]
        cfg["pieces"] = self.pieces
        return cfg
