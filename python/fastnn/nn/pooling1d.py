"""``GlobalAveragePooling1D``: the mean over the steps of a sequence (a Transformer's mean
pooling of its tokens)."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from ._spatial import data_format as _data_format
from .core import Layer, _as_array

__all__ = ["GlobalAveragePooling1D"]


class GlobalAveragePooling1D(Layer):
    """``(batch, steps, features) -> (batch, features)``, the mean over steps (Keras's
    default ``data_format="channels_last"``; ``"channels_first"`` averages ``(batch, features,
    steps)`` over its last axis)."""

    def __init__(self, data_format: str = "channels_last", *, name: Optional[str] = None,
                 trainable: bool = True, input_shape: Optional[Sequence[int]] = None,
                 dtype: Any = None) -> None:
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        self.data_format = _data_format(data_format)
        self._axis = 1 if self.data_format == "channels_last" else 2
        self._in_shape = None

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.name}: expected inputs (batch, steps, features), got "
                             f"{tuple(input_shape)}")
        keep = 2 if self._axis == 1 else 1
        return (input_shape[0], input_shape[keep])

    def _accepts(self, input_shape):
        keep = 2 if self._axis == 1 else 1
        return len(input_shape) == 3 and input_shape[keep] == self.input_shape[keep]

    def forward(self, x, training=False):
        x = _as_array(x)
        self._ensure_built(x)
        if x.ndim != 3:
            raise ValueError(f"{self.name}: expected inputs (batch, steps, features), got shape "
                             f"{x.shape}")
        if x.shape[self._axis] == 0:
            raise ValueError(f"{self.name}: cannot average over 0 steps (input shape {x.shape})")
        self._in_shape = x.shape
        return x.mean(axis=self._axis)

    def backward(self, dy, need_dx=True):
        if self._in_shape is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        if not need_dx:
            return None
        n = self._in_shape[self._axis]
        g = np.expand_dims(dy / np.asarray(n, dy.dtype), self._axis)
        return np.ascontiguousarray(np.broadcast_to(g, self._in_shape))

    def get_config(self):
        cfg = super().get_config()
        cfg["data_format"] = self.data_format
        return cfg
