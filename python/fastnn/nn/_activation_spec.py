"""Resolved activations: what a layer fuses into its linear op and what runs after it.

Kept apart from :mod:`fastnn.nn.activations` so that ``core`` (Dense) and the ``Activation``
layer can both use it without importing each other.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from .. import ops

__all__ = ["NAMES", "ActivationSpec", "resolve_activation"]

_ELEMENTWISE = ("relu", "leaky_relu", "sigmoid", "tanh", "elu", "selu", "gelu")
NAMES = ("linear",) + _ELEMENTWISE + ("softmax", "threshold")


class ActivationSpec:
    """A resolved activation: what to fuse into a linear op, and what runs after it."""

    __slots__ = ("name", "alpha", "fused", "fused_alpha", "post_forward", "post_backward")

    def __init__(self, name: str, alpha: Optional[float]) -> None:
        self.name, self.alpha = name, alpha
        self.fused: Optional[str] = None
        self.fused_alpha: Optional[float] = None
        self.post_forward: Optional[Callable[[Any], Any]] = None
        self.post_backward: Optional[Callable[[Any, Any], Any]] = None
        if name in _ELEMENTWISE:
            self.fused, self.fused_alpha = name, alpha
        elif name == "softmax":
            self.post_forward = _softmax_forward
            self.post_backward = _softmax_backward
        elif name == "threshold":
            value = 0.0 if alpha is None else alpha
            self.post_forward = lambda x: ops.threshold_forward(x, value=value)
            self.post_backward = _threshold_backward

    def forward(self, x: Any):
        """``(y, ctx)`` of the activation alone (ctx None for linear)."""
        if self.fused is not None:
            return ops.activation_forward(x, self.fused, alpha=self.fused_alpha)
        if self.post_forward is not None:
            return self.post_forward(x)
        return x, None

    def backward(self, ctx: Any, dy: Any) -> Any:
        if self.fused is not None:
            return ops.activation_backward(ctx, dy)[0]
        if self.post_backward is not None:
            return self.post_backward(ctx, dy)
        return dy


def _softmax_forward(x):
    return ops.softmax_forward(x, axis=-1)


def _softmax_backward(ctx, dy):
    return ops.softmax_backward(ctx, dy)[0]


def _threshold_backward(ctx, dy):
    raise ValueError("the threshold (step) activation has no useful gradient (it is zero almost "
                     "everywhere): use it for inference only, and train with sigmoid, tanh or "
                     "relu instead")


def resolve_activation(name: Optional[str], alpha: Optional[float] = None) -> ActivationSpec:
    """Check a name (and its parameter) and resolve it once, at layer construction."""
    if name is None:
        name = "linear"
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name (one of {NAMES}) or None, got "
                        f"{type(name).__name__}")
    key = name.lower()
    if key not in NAMES:
        raise ValueError(f"unknown activation {name!r}; expected one of {NAMES}")
    if alpha is not None:
        if key not in ("leaky_relu", "elu", "threshold"):
            raise ValueError(f"activation {key!r} takes no alpha (got {alpha})")
        alpha = float(alpha)
        if key == "leaky_relu" and not alpha >= 0:
            raise ValueError(f"leaky_relu slope must be >= 0, got {alpha}")
        if key == "elu" and not alpha > 0:
            raise ValueError(f"elu alpha must be > 0, got {alpha}")
    return ActivationSpec(key, alpha)
