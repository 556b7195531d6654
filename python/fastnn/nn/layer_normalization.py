"""``LayerNormalization``: Keras's layer on the fused ``ops.layer_norm`` (over the last axis)."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .. import ops
from . import initializers, regularizers
from .core import _as_array
from .normalization import _GammaBetaLayer

__all__ = ["LayerNormalization"]


class LayerNormalization(_GammaBetaLayer):
    """``gamma * (x - mean) / sqrt(var + epsilon) + beta`` per sample, over the last axis
    (the feature axis of a ``(batch, steps, features)`` sequence).

    Only ``axis=-1`` (the last axis) is supported: the op normalizes rows. ``epsilon`` defaults
    to Keras's 1e-3 (PyTorch's ``nn.LayerNorm`` uses 1e-5). ``center`` / ``scale``: learn
    ``beta`` / ``gamma``. Weights: ``gamma`` (if scale), ``beta`` (if center); they are
    ``weight`` and ``bias`` of ``torch.nn.LayerNorm``.
    """

    _TORCH_KEYS = (("weight", "gamma"), ("bias", "beta"))

    def __init__(self, axis: int = -1, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer: Any = "zeros",
                 gamma_initializer: Any = "ones", beta_regularizer: Any = None,
                 gamma_regularizer: Any = None, input_shape: Optional[Sequence[int]] = None,
                 dtype: Any = "float32", *, name: Optional[str] = None,
                 trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"axis must be an int, got {axis!r}")
        self.axis = int(axis)
        try:
            epsilon = float(epsilon)
        except (TypeError, ValueError):
            raise ValueError(f"epsilon must be a number, got {epsilon!r}") from None
        if not epsilon > 0.0:
            raise ValueError(f"epsilon must be > 0, got {epsilon}")
        self.epsilon = epsilon
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.gamma: Optional[np.ndarray] = None
        self.beta: Optional[np.ndarray] = None
        self._ctx = None

    def compute_output_shape(self, input_shape):
        rank = len(input_shape)
        if rank < 2:
            raise ValueError(f"{self.name}: LayerNormalization needs inputs (batch, ..., "
                             f"features), got {tuple(input_shape)}")
        if self.axis not in (-1, rank - 1):
            raise ValueError(f"{self.name}: only the last axis can be normalized (axis=-1), "
                             f"got axis={self.axis} for inputs of rank {rank}")
        if input_shape[-1] is None or input_shape[-1] < 1:
            raise ValueError(f"{self.name}: the last axis must have a known size >= 1, got "
                             f"{tuple(input_shape)}")
        return tuple(input_shape)

    def _accepts(self, input_shape):
        return len(input_shape) >= 2 and input_shape[-1] == self.input_shape[-1]

    def _build(self, input_shape):
        self._build_gamma_beta((int(input_shape[-1]),))

    def forward(self, x, training=False):
        x = _as_array(x)
        self._ensure_built(x)
        if x.ndim < 2 or x.shape[-1] != self.input_shape[-1]:
            raise ValueError(f"{self.name}: expected inputs (batch, ..., {self.input_shape[-1]}),"
                             f" got shape {x.shape}")
        if x.dtype != self.dtype and isinstance(x, np.ndarray):
            x = x.astype(self.dtype)
        y, self._ctx = ops.layer_norm_forward(x, self.gamma, self.beta, self.epsilon)
        return y

    def backward(self, dy, need_dx=True):
        if self._ctx is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        dx, dgamma, dbeta = ops.layer_norm_backward(self._ctx, dy)
        self._store_grads(dgamma, dbeta)
        return dx if need_dx else None

    def get_config(self):
        cfg = super().get_config()
        cfg.update({
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
        })
        return cfg
