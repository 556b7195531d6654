"""Activation names and their kernel codes (kept in sync with csrc/common/activations.h)."""
from __future__ import annotations

import numbers
from typing import Optional, Tuple

# name -> (kernel code, default parameter)
ACTIVATIONS = {
    None: (0, 0.0),
    "linear": (0, 0.0),
    "relu": (1, 0.0),
    "leaky_relu": (2, 0.01),  # negative slope
    "sigmoid": (3, 0.0),
    "tanh": (4, 0.0),
    "elu": (5, 1.0),  # alpha
    "selu": (6, 0.0),
    "gelu": (7, 0.0),
}
GELU = 7
NAMES = tuple(k for k in ACTIVATIONS if k is not None)


def resolve(activation: Optional[str], alpha: Optional[float] = None) -> Tuple[int, float]:
    """(kernel code, parameter) for an activation name, with a clear error for unknown names."""
    if activation is not None and not isinstance(activation, str):
        raise TypeError(f"activation must be a string or None, got {type(activation).__name__}")
    key = activation.lower() if isinstance(activation, str) else None
    if key not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {NAMES}")
    code, param = ACTIVATIONS[key]
    if alpha is not None:
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
            raise TypeError(f"alpha must be a real number or None, got {type(alpha).__name__}")
        param = float(alpha)
        if code == 2 and not param >= 0.0:
            raise ValueError(f"leaky_relu slope must be >= 0, got {alpha}")
        if code == 5 and not param > 0.0:
            raise ValueError(f"elu alpha must be > 0, got {alpha}")
    return code, param
