"""float64 references of the activations and their derivatives.

Written from the textbook definitions rather than from the kernels' formulas: the derivatives
here are taken from the input x (the kernels mostly use the output y), sigmoid is the logistic
function, GELU is x * Phi(x) with the normal CDF from the complementary error function. Where an
input is infinite the natural formula decides (e.g. GELU gives NaN at -inf, as PyTorch does).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

__all__ = ["activation", "activation_backward", "ACTIVATION_DEFAULTS"]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

# Default parameter per activation: leaky_relu's negative slope, elu's alpha.
ACTIVATION_DEFAULTS = {"leaky_relu": 0.01, "elu": 1.0}

_erfc = np.frompyfunc(math.erfc, 1, 1)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    # erfc keeps full relative precision in the left tail, where 1 + erf(x) cancels.
    return 0.5 * _erfc(-x / math.sqrt(2.0)).astype(np.float64)


def _normal_pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _name(name: Optional[str]) -> str:
    key = "linear" if name is None else str(name).lower()
    if key not in ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "elu", "selu", "gelu"):
        raise ValueError(f"unknown activation {name!r}")
    return key


def _param(key: str, alpha: Optional[float]) -> float:
    if alpha is not None:
        return float(alpha)
    return ACTIVATION_DEFAULTS.get(key, 0.0)


def activation(x, name: Optional[str], alpha: Optional[float] = None) -> np.ndarray:
    """``name(x)`` in float64 (``alpha``: leaky_relu slope or elu alpha; defaults as in ops)."""
    x = np.asarray(x, dtype=np.float64)
    key = _name(name)
    a = _param(key, alpha)
    with np.errstate(all="ignore"):
        if key == "linear":
            return x.copy()
        if key == "relu":
            return np.where(x < 0.0, 0.0, x)  # NaN is not < 0, so it passes through
        if key == "leaky_relu":
            return np.where(x < 0.0, a * x, x)
        if key == "sigmoid":
            return 1.0 / (1.0 + np.exp(-x))
        if key == "tanh":
            return np.tanh(x)
        if key == "elu":
            return np.where(x < 0.0, a * np.expm1(x), x)
        if key == "selu":
            return SELU_SCALE * np.where(x < 0.0, SELU_ALPHA * np.expm1(x), x)
        return x * _normal_cdf(x)  # gelu


def activation_backward(x, name: Optional[str], alpha: Optional[float], dy) -> np.ndarray:
    """``dy * name'(x)`` in float64, the derivative taken at the pre-activation ``x``.

    At the kinks (x == 0) the derivative is the left one, as the kernels use (relu'(0) = 0);
    at NaN the branch conditions are false, so relu'(NaN) = 0 and leaky_relu'(NaN) = slope, the
    smooth activations give NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    key = _name(name)
    a = _param(key, alpha)
    with np.errstate(all="ignore"):
        if key == "linear":
            d = np.ones_like(x)
        elif key == "relu":
            d = np.where(x > 0.0, 1.0, 0.0)
        elif key == "leaky_relu":
            d = np.where(x > 0.0, 1.0, a)
        elif key == "sigmoid":
            e = np.exp(-np.abs(x))  # symmetric form: no 1 - s cancellation for large x
            d = e / (1.0 + e) ** 2
        elif key == "tanh":
            d = 1.0 / np.cosh(x) ** 2
        elif key == "elu":
            d = np.where(x > 0.0, 1.0, a * np.exp(x))
        elif key == "selu":
            d = SELU_SCALE * np.where(x > 0.0, 1.0, SELU_ALPHA * np.exp(x))
        else:  # gelu
            d = _normal_cdf(x) + x * _normal_pdf(x)
        return dy * d
