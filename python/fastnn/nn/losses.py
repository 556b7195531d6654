"""Losses: objects (``SparseCategoricalCrossentropy()``) or names (``"mse"``, ...).

Every loss is the mean over the batch (and over elements, for mse/mae/binary crossentropy) and
runs as one fused op forward and one backward:

* ``loss(y_true, y_pred) -> float`` (Keras argument order);
* ``loss.value_and_grad(y_true, y_pred) -> (float, dloss/dy_pred)`` for custom loops;
* ``loss.forward(y_pred, y_true) -> (float, ctx)`` and ``loss.backward(ctx) -> dy_pred``.

Targets: ``mse``/``mae``/``binary_crossentropy`` take floats shaped like the predictions (a
``(N,)`` target for ``(N, 1)`` predictions is accepted); ``categorical_crossentropy`` one-hot (or
soft) rows ``(N, C)``; ``sparse_categorical_crossentropy`` integer class ids ``(N,)`` in
``[0, C)``.

Fusion: when a model ends in softmax (``Dense(..., activation="softmax")`` or
``Activation("softmax")``) and the loss is (sparse) categorical crossentropy, or ends in sigmoid
and the loss is binary crossentropy, training skips that activation and computes the loss from
the logits (``loss.logits_version()``): one op, and stable for logits of any size.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from .. import ops

__all__ = ["Loss", "MeanSquaredError", "MeanAbsoluteError", "BinaryCrossentropy",
           "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "get", "serialize"]

# Integer class ids are handed to the kernels in this dtype (converted once per fit).
LABEL_DTYPE = np.dtype(np.int64)


class Loss:
    """Base class. ``fusable_head`` names the output activation the loss can absorb."""

    name = "loss"
    fusable_head: Optional[str] = None

    def forward(self, y_pred: Any, y_true: Any) -> Tuple[float, Any]:
        raise TypeError(f"{type(self).__name__} does not define forward()")

    def backward(self, ctx: Any) -> Any:
        raise TypeError(f"{type(self).__name__} does not define backward()")

    def __call__(self, y_true: Any, y_pred: Any) -> float:
        y_pred = np.asarray(y_pred) if not hasattr(y_pred, "__cuda_array_interface__") else y_pred
        return self.forward(y_pred, self.prepare_targets(y_true, y_pred.shape, y_pred.dtype))[0]

    def value_and_grad(self, y_true: Any, y_pred: Any) -> Tuple[float, Any]:
        """The loss and its gradient with respect to ``y_pred`` (for custom training loops)."""
        y_pred = np.asarray(y_pred) if not hasattr(y_pred, "__cuda_array_interface__") else y_pred
        value, ctx = self.forward(y_pred, self.prepare_targets(y_true, y_pred.shape,
                                                               y_pred.dtype))
        return value, self.backward(ctx)

    def prepare_targets(self, y: Any, out_shape: Tuple[int, ...], dtype: Any) -> Any:
        """Check targets against the model's output shape and convert them once, so the
        training loop hands the kernels arrays they take as they are."""
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{self.name}: targets must be numeric, got dtype {y.dtype}")
        if len(out_shape) >= 2 and y.ndim == len(out_shape) - 1 and out_shape[-1] == 1:
            y = y.reshape(y.shape + (1,))
        if tuple(y.shape[1:]) != tuple(out_shape[1:]):
            raise ValueError(f"{self.name}: targets of shape {y.shape} do not match the model "
                             f"output shape {(None,) + tuple(out_shape[1:])}")
        return np.ascontiguousarray(y, dtype=dtype)

    def logits_version(self) -> "Loss":
        """The same loss computed from the logits before ``fusable_head``."""
        raise TypeError(f"{self.name} cannot be fused with an output activation")

    def get_config(self) -> Dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "Loss":
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def forward(self, y_pred, y_true):
        return ops.mse_forward(y_pred, y_true)

    def backward(self, ctx):
        return ops.mse_backward(ctx, 1.0)[0]


class MeanAbsoluteError(Loss):
    name = "mean_absolute_error"

    def forward(self, y_pred, y_true):
        return ops.mae_forward(y_pred, y_true)

    def backward(self, ctx):
        return ops.mae_backward(ctx, 1.0)[0]


class BinaryCrossentropy(Loss):
    """Targets in [0, 1]; predictions are probabilities, or logits with ``from_logits=True``."""

    name = "binary_crossentropy"

    def __init__(self, from_logits: bool = False) -> None:
        self.from_logits = bool(from_logits)
        self.fusable_head = None if self.from_logits else "sigmoid"

    def forward(self, y_pred, y_true):
        return ops.binary_cross_entropy_forward(y_pred, y_true, from_logits=self.from_logits)

    def backward(self, ctx):
        return ops.binary_cross_entropy_backward(ctx, 1.0)[0]

    def prepare_targets(self, y, out_shape, dtype):
        y = super().prepare_targets(y, out_shape, dtype)
        if y.size and not (y.min() >= 0.0 and y.max() <= 1.0):
            raise ValueError(f"{self.name}: targets must lie in [0, 1], got values in "
                             f"[{y.min()}, {y.max()}]")
        return y

    def logits_version(self):
        return BinaryCrossentropy(from_logits=True)

    def get_config(self):
        return {"from_logits": self.from_logits}


class CategoricalCrossentropy(Loss):
    """One-hot (or soft) targets ``(N, C)``; predictions are probabilities or logits."""

    name = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False) -> None:
        self.from_logits = bool(from_logits)
        self.fusable_head = None if self.from_logits else "softmax"

    def forward(self, y_pred, y_true):
        if self.from_logits:
            return ops.softmax_cross_entropy_forward(y_pred, y_true)
        return ops.categorical_cross_entropy_forward(y_pred, y_true)

    def backward(self, ctx):
        if self.from_logits:
            return ops.softmax_cross_entropy_backward(ctx, 1.0)[0]
        return ops.categorical_cross_entropy_backward(ctx, 1.0)[0]

    def prepare_targets(self, y, out_shape, dtype):
        if len(out_shape) != 2:
            raise ValueError(f"{self.name} needs outputs of shape (N, classes), got "
                             f"{(None,) + tuple(out_shape[1:])}")
        y = np.asarray(y)
        if y.ndim == 1 and out_shape[1] != 1:
            raise ValueError(f"{self.name} needs one-hot targets of shape (N, {out_shape[1]}), "
                             f"got shape {y.shape}; for integer class ids use "
                             f"sparse_categorical_crossentropy")
        return super().prepare_targets(y, out_shape, dtype)

    def logits_version(self):
        return CategoricalCrossentropy(from_logits=True)

    def get_config(self):
        return {"from_logits": self.from_logits}


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Integer class ids ``(N,)`` (or ``(N, 1)``) in ``[0, C)``."""

    name = "sparse_categorical_crossentropy"

    def prepare_targets(self, y, out_shape, dtype):
        if len(out_shape) != 2:
            raise ValueError(f"{self.name} needs outputs of shape (N, classes), got "
                             f"{(None,) + tuple(out_shape[1:])}")
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.reshape(-1)
        if y.ndim != 1:
            raise ValueError(f"{self.name} needs integer class ids of shape (N,), got shape "
                             f"{y.shape}; for one-hot targets use categorical_crossentropy")
        if y.dtype.kind == "f":
            if y.size and not np.array_equal(y, np.round(y)):
                raise ValueError(f"{self.name}: class ids must be whole numbers, got "
                                 f"non-integer values")
        elif y.dtype.kind not in "biu":
            raise TypeError(f"{self.name}: class ids must be integers, got dtype {y.dtype}")
        n_classes = out_shape[1]
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{self.name}: labels must lie in [0, {n_classes}) for a model "
                             f"with {n_classes} outputs, got values in [{y.min()}, {y.max()}]")
        return np.ascontiguousarray(y, dtype=LABEL_DTYPE)

    def logits_version(self):
        return SparseCategoricalCrossentropy(from_logits=True)


_CLASSES = {c.__name__: c for c in (MeanSquaredError, MeanAbsoluteError, BinaryCrossentropy,
                                     CategoricalCrossentropy, SparseCategoricalCrossentropy)}
_NAMES = {
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "binary_crossentropy": BinaryCrossentropy, "bce": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}


def get(identifier: Any) -> Loss:
    """A loss from a name, a ``{"class_name", "config"}`` dict or an instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        cls = _NAMES.get(identifier.lower())
        if cls is None:
            raise ValueError(f"unknown loss {identifier!r}; expected one of {sorted(_NAMES)} "
                             f"or a Loss")
        return cls()
    if isinstance(identifier, dict) and "class_name" in identifier:
        cls = _CLASSES.get(identifier["class_name"])
        if cls is None:
            raise ValueError(f"unknown loss class {identifier['class_name']!r}")
        return cls.from_config(identifier.get("config", {}))
    raise TypeError(f"loss must be a name or a Loss, got {type(identifier).__name__}")


def serialize(loss: Loss) -> Dict[str, Any]:
    return {"class_name": type(loss).__name__, "config": loss.get_config()}
