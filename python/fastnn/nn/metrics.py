"""Metrics: running means over an epoch, updated once per batch.

``"accuracy"`` (or ``"acc"``) resolves as in Keras: by the loss when it tells
(sparse_categorical_crossentropy -> sparse categorical accuracy, categorical_crossentropy ->
categorical accuracy, binary_crossentropy -> binary accuracy), else by the shapes of each batch.
Accuracy metrics also take logits (``logits=True``): argmax is unchanged by softmax, and the 0.5
probability threshold of a sigmoid is logit 0.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

import numpy as np

from .. import ops
from . import losses as _losses

__all__ = ["Metric", "Accuracy", "SparseCategoricalAccuracy", "CategoricalAccuracy",
           "BinaryAccuracy", "MeanSquaredError", "MeanAbsoluteError", "get"]


class Metric:
    """``update(y_true, y_pred, logits=False)`` per batch; ``result()`` is the running mean.

    ``needs_probabilities``: the metric is not defined on logits; the model applies the output
    activation first when it trained on logits.
    """

    needs_probabilities = False

    def __init__(self, name: Optional[str] = None) -> None:
        self.name = name or self.default_name
        self.total = 0.0
        self.count = 0

    default_name = "metric"

    def reset(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, y_true: Any, y_pred: Any, logits: bool = False) -> None:
        raise TypeError(f"{type(self).__name__} does not define update()")

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class SparseCategoricalAccuracy(Metric):
    default_name = "sparse_categorical_accuracy"

    def update(self, y_true, y_pred, logits=False):
        self.total += int(np.count_nonzero(y_pred.argmax(axis=-1) == y_true.reshape(-1)))
        self.count += len(y_true)


class CategoricalAccuracy(Metric):
    default_name = "categorical_accuracy"

    def update(self, y_true, y_pred, logits=False):
        self.total += int(np.count_nonzero(y_pred.argmax(axis=-1) == y_true.argmax(axis=-1)))
        self.count += len(y_true)


class BinaryAccuracy(Metric):
    """Share of elements where ``y_pred > threshold`` agrees with ``y_true > 0.5``."""

    default_name = "binary_accuracy"

    def __init__(self, name: Optional[str] = None, threshold: float = 0.5) -> None:
        super().__init__(name)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.threshold = float(threshold)
        self._logit_threshold = math.log(threshold / (1.0 - threshold))

    def update(self, y_true, y_pred, logits=False):
        t = self._logit_threshold if logits else self.threshold
        hits = (y_pred > t) == (y_true.reshape(y_pred.shape) > 0.5)
        self.total += int(np.count_nonzero(hits))
        self.count += hits.size


class Accuracy(Metric):
    """Accuracy resolved from the shapes of each batch: one output column -> binary, integer
    class ids -> sparse categorical, else categorical."""

    default_name = "accuracy"

    def __init__(self, name: Optional[str] = None) -> None:
        super().__init__(name)
        self._parts = (BinaryAccuracy(), SparseCategoricalAccuracy(), CategoricalAccuracy())

    def update(self, y_true, y_pred, logits=False):
        if y_pred.ndim == 1 or y_pred.shape[-1] == 1:
            m = self._parts[0]
        elif y_true.ndim == y_pred.ndim - 1:
            m = self._parts[1]
        else:
            m = self._parts[2]
        t, c = m.total, m.count
        m.update(y_true, y_pred, logits)
        self.total += m.total - t
        self.count += m.count - c


class _MeanError(Metric):
    needs_probabilities = True
    power = 1

    def update(self, y_true, y_pred, logits=False):
        if y_true.size != y_pred.size:
            raise ValueError(f"metric {self.name!r} needs targets shaped like the outputs "
                             f"{y_pred.shape}, got {y_true.shape}")
        d = y_pred - y_true.reshape(y_pred.shape)
        self.total += float(np.sum(d * d) if self.power == 2 else np.sum(np.abs(d)))
        self.count += d.size


class MeanSquaredError(_MeanError):
    default_name = "mse"
    power = 2


class MeanAbsoluteError(_MeanError):
    default_name = "mae"


_BY_NAME = {
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "binary_accuracy": BinaryAccuracy,
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
}


def get(identifier: Any, loss: Optional[_losses.Loss] = None) -> Metric:
    """A metric from a name (resolving ``accuracy`` by ``loss``) or a Metric instance."""
    if isinstance(identifier, Metric):
        return identifier
    if not isinstance(identifier, str):
        raise TypeError(f"a metric must be a name or a Metric, got {type(identifier).__name__}")
    key = identifier.lower()
    if key in ("accuracy", "acc"):
        if isinstance(loss, _losses.SparseCategoricalCrossentropy):
            return SparseCategoricalAccuracy(name=identifier)
        if isinstance(loss, _losses.CategoricalCrossentropy):
            return CategoricalAccuracy(name=identifier)
        if isinstance(loss, _losses.BinaryCrossentropy):
            return BinaryAccuracy(name=identifier)
        return Accuracy(name=identifier)
    cls = _BY_NAME.get(key)
    if cls is None:
        raise ValueError(f"unknown metric {identifier!r}; expected accuracy, acc or one of "
                         f"{sorted(_BY_NAME)}, or a Metric")
    return cls(name=identifier)


def probabilities(head: Optional[str], logits: Any) -> Any:
    """Apply the output activation the model fused into its loss (for metrics on probabilities)."""
    if head == "softmax":
        return ops.softmax(logits, axis=-1)
    if head == "sigmoid":
        return ops.activation(logits, "sigmoid")
    return logits


def serialize(metric: Metric) -> Dict[str, Any]:
    cfg: Dict[str, Any] = {"class_name": type(metric).__name__, "name": metric.name}
    if isinstance(metric, BinaryAccuracy):
        cfg["threshold"] = metric.threshold
    return cfg


def from_serialized(cfg: Dict[str, Any]) -> Metric:
    classes = {c.__name__: c for c in (Accuracy, SparseCategoricalAccuracy, CategoricalAccuracy,
                                        BinaryAccuracy, MeanSquaredError, MeanAbsoluteError)}
    cls = classes.get(cfg.get("class_name"))
    if cls is None:
        raise ValueError(f"unknown metric class {cfg.get('class_name')!r}")
    kwargs = {k: v for k, v in cfg.items() if k != "class_name"}
    return cls(**kwargs)
