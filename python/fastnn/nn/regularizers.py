"""Weight penalties: ``L1(l1)``, ``L2(l2)``, ``L1L2(l1, l2)``, or the names ``"l1"``, ``"l2"``,
``"l1_l2"``.

The penalty ``l1 * sum(|w|) + l2 * sum(w**2)`` is added to the training loss, and its gradient
``l1 * sign(w) + 2 * l2 * w`` is added in place into the weight's gradient, each by one fused op
(the same convention as Keras, so coefficients carry over).
"""
from __future__ import annotations

from typing import Any, Dict

from .. import ops

__all__ = ["Regularizer", "L1", "L2", "L1L2", "get", "serialize"]


class Regularizer:
    """``reg(w) -> float`` penalty; ``reg.add_grad(grad, w)`` adds its gradient into ``grad``."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        l1, l2 = float(l1), float(l2)
        if not (l1 >= 0 and l2 >= 0):
            raise ValueError(f"regularization factors must be >= 0, got l1={l1}, l2={l2}")
        self.l1, self.l2 = l1, l2

    def __call__(self, w: Any) -> float:
        return ops.regularizer_loss(w, l1=self.l1, l2=self.l2)

    def add_grad(self, grad: Any, w: Any) -> None:
        ops.regularizer_grad(grad, w, l1=self.l1, l2=self.l2)

    def get_config(self) -> Dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "Regularizer":
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(l1={self.l1}, l2={self.l2})"


class L1L2(Regularizer):
    pass


class L1(Regularizer):
    def __init__(self, l1: float = 0.01) -> None:
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    def __init__(self, l2: float = 0.01) -> None:
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


_CLASSES = {"L1": L1, "L2": L2, "L1L2": L1L2, "Regularizer": Regularizer}
_NAMES = {"l1": L1, "l2": L2, "l1_l2": L1L2, "l1l2": L1L2}


def get(identifier: Any):
    """None, a name, a ``{"class_name", "config"}`` dict or a Regularizer."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        cls = _NAMES.get(identifier.lower())
        if cls is None:
            raise ValueError(f"unknown regularizer {identifier!r}; expected one of "
                             f"{sorted(_NAMES)} or a Regularizer")
        return cls() if cls is not L1L2 else L1L2(l1=0.01, l2=0.01)
    if isinstance(identifier, dict) and "class_name" in identifier:
        cls = _CLASSES.get(identifier["class_name"])
        if cls is None:
            raise ValueError(f"unknown regularizer class {identifier['class_name']!r}")
        return cls.from_config(identifier.get("config", {}))
    raise TypeError(f"a regularizer must be None, a name or a Regularizer, got "
                    f"{type(identifier).__name__}")


def serialize(reg) -> Any:
    if reg is None:
        return None
    return {"class_name": type(reg).__name__, "config": reg.get_config()}
