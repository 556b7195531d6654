"""Activations: the ``Activation`` layer, the names Dense accepts, and plain functions.

Names: ``linear`` (identity), the elementwise ``relu, leaky_relu, sigmoid, tanh, elu, selu,
gelu`` (fused into Dense's GEMM epilogue), ``softmax`` (over the last axis) and ``threshold`` (the
step function ``x > value``: forward only; asking it for a gradient raises ValueError, because
its derivative is zero almost everywhere and useless for training).

``alpha`` is the one parameter some of them take: the leaky_relu slope (default 0.01), the elu
alpha (default 1.0), the threshold value (default 0.0).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import ops
from ._activation_spec import NAMES, ActivationSpec, resolve_activation  # noqa: F401
from .core import Layer, _as_array

__all__ = ["Activation", "NAMES", "resolve_activation", "linear", "relu", "leaky_relu",
           "sigmoid", "tanh", "elu", "selu", "gelu", "softmax", "threshold"]

class Activation(Layer):
    """An activation applied as its own layer: ``Activation("relu")``,
    ``Activation("leaky_relu", alpha=0.2)``, ``Activation("softmax")``."""

    def __init__(self, activation: str, alpha: Optional[float] = None, *, name=None,
                 trainable=True, input_shape=None, dtype=None) -> None:
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        self.activation = resolve_activation(activation, alpha)
        self._ctx = None
        self._ran = False

    @property
    def head_activation(self) -> Optional[str]:
        """The activation a loss may fuse with (softmax / sigmoid)."""
        return self.activation.name

    def forward(self, x, training=False):
        x = _as_array(x)
        self._ensure_built(x)
        if self.dtype is not None and isinstance(x, np.ndarray) and x.dtype != self.dtype:
            x = x.astype(self.dtype)
        y, self._ctx = self.activation.forward(x)
        self._ran = True
        return y

    def forward_logits(self, x, training=False):
        """Identity: the model fuses this head into its loss."""
        x = _as_array(x)
        self._ensure_built(x)
        self._ctx = None
        self._ran = False
        return x

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        if not self._ran:
            return dy  # after forward_logits the head was fused into the loss
        return self.activation.backward(self._ctx, dy)

    def get_config(self):
        cfg = super().get_config()
        cfg.update({"activation": self.activation.name, "alpha": self.activation.alpha})
        return cfg


# -- plain functions ----------------------------------------------------------------------------

def linear(x):
    return x


def relu(x):
    return ops.activation(x, "relu")


def leaky_relu(x, alpha: float = 0.01):
    return ops.activation(x, "leaky_relu", alpha=alpha)


def sigmoid(x):
    return ops.activation(x, "sigmoid")


def tanh(x):
    return ops.activation(x, "tanh")


def elu(x, alpha: float = 1.0):
    return ops.activation(x, "elu", alpha=alpha)


def selu(x):
    return ops.activation(x, "selu")


def gelu(x):
    return ops.activation(x, "gelu")


def softmax(x, axis: int = -1):
    return ops.softmax(x, axis=axis)


def threshold(x, value: float = 0.0):
    return ops.threshold(x, value=value)
