"""Loss ops. Each ``<loss>(pred, target)`` returns the mean loss as a Python float;
``<loss>_forward`` returns ``(loss, ctx)`` and computes the gradient in the same kernel pass;
``<loss>_backward(ctx, dloss=1.0)`` returns ``(d_pred, None)`` (targets get no gradient).

A NaN in the input gives a NaN loss (never an exception): the caller decides what to do with it.
The returned gradient array belongs to the ctx; ``dloss != 1`` returns a scaled copy.
"""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from .. import backend as _backend
from . import _nncheck as _c

__all__ = ["softmax_cross_entropy", "softmax_cross_entropy_forward",
           "softmax_cross_entropy_backward", "categorical_cross_entropy",
           "categorical_cross_entropy_forward", "categorical_cross_entropy_backward",
           "binary_cross_entropy", "binary_cross_entropy_forward", "binary_cross_entropy_backward",
           "mse", "mse_forward", "mse_backward", "mae", "mae_forward", "mae_backward", "LossCtx"]


class LossCtx:
    """The gradient of the mean loss with respect to the prediction, computed by the forward."""
    __slots__ = ("grad", "op")


def _ctx(grad: np.ndarray, op: str) -> LossCtx:
    ctx = LossCtx()
    ctx.grad, ctx.op = grad, op
    return ctx


def _backward(ctx: Any, dloss: Any, op: str) -> Tuple[np.ndarray, None]:
    if not isinstance(ctx, LossCtx) or ctx.op != op:
        raise TypeError(f"ctx must come from {op}_forward, got {type(ctx).__name__}")
    d = _c.real(dloss, "dloss")
    if d == 1.0:
        return ctx.grad, None
    return ctx.grad * ctx.grad.dtype.type(d), None


def _rows(x: np.ndarray, op: str, name: str) -> np.ndarray:
    """(..., C) as a 2-D (rows, C) view, refusing what has no class axis or no samples."""
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError(f"{op}: {name} must have shape (N, C) with C >= 1 classes, got {x.shape}")
    if x.size == 0:
        raise ValueError(f"{op}: {name} has no samples (shape {x.shape}); the mean loss of an "
                         f"empty batch is undefined")
    return x if x.ndim == 2 else x.reshape(-1, x.shape[-1])


_LABEL_DTYPES = (np.dtype(np.int64), np.dtype(np.int32), np.dtype(np.uint8))


def _class_labels(labels: Any, x: np.ndarray, op: str) -> np.ndarray:
    """Integer class indices of shape x.shape[:-1] (flattened, range-checked; int64, int32 and
    uint8 go to the kernels as they are, other integer dtypes become int64) or a target
    distribution of x's shape (as x's dtype, 2-D)."""
    if type(labels) is not np.ndarray:
        if labels is None:
            raise TypeError(f"{op}: labels must be an array, got None")
        labels = np.asarray(labels)
    kind = labels.dtype.kind
    classes = x.shape[-1]
    if labels.shape == x.shape[:-1]:
        if kind not in "iu":
            raise TypeError(
                f"{op}: labels of shape {labels.shape} are class indices and must be integers, "
                f"got dtype {labels.dtype}" + (" (use labels.astype(np.int64))"
                                              if kind == "f" else ""))
        flat = labels.reshape(-1)
        if flat.dtype in _LABEL_DTYPES and flat.dtype.isnative and flat.flags.c_contiguous:
            bad = _backend.kernels().label_error(flat, classes)
        else:
            # Checked before the conversion: a huge uint64 would wrap to a negative int64.
            hits = np.flatnonzero((flat < 0) | (flat >= classes))
            bad = int(hits[0]) if hits.size else -1
            if bad < 0:
                flat = np.asarray(flat, dtype=np.int64, order="C")
        if bad >= 0:
            raise ValueError(f"{op}: labels must be class indices in [0, {classes}); got "
                             f"{int(flat[bad])} at position {bad}")
        return flat
    if labels.shape == x.shape:
        if kind not in "fiub":
            raise TypeError(f"{op}: labels must be numeric, got dtype {labels.dtype}")
        t = labels if labels.ndim == 2 else labels.reshape(-1, x.shape[-1])
        if t.dtype is not x.dtype or not t.flags.c_contiguous:
            t = np.asarray(t, dtype=x.dtype, order="C")
        return t
    raise ValueError(f"{op}: labels must be class indices of shape {x.shape[:-1]} or a target "
                     f"of shape {x.shape} (one-hot or probabilities), got {labels.shape}")


def _target(target: Any, pred: np.ndarray, op: str) -> np.ndarray:
    """A target of pred's shape and dtype; (N,) against (N, 1) and the reverse are accepted."""
    if type(target) is not np.ndarray:
        if target is None:
            raise TypeError(f"{op}: target must be an array, got None")
        target = np.asarray(target)
    if target.dtype.kind not in "fiub":
        raise TypeError(f"{op}: target must be numeric, got dtype {target.dtype}")
    if target.shape != pred.shape:
        if target.size == pred.size and (target.shape + (1,) == pred.shape
                                         or target.shape == pred.shape + (1,)):
            target = target.reshape(pred.shape)
        else:
            raise ValueError(f"{op}: target must have the shape of the prediction {pred.shape}, "
                             f"got {target.shape}")
    if target.dtype is not pred.dtype or not target.flags.c_contiguous:
        target = np.asarray(target, dtype=pred.dtype, order="C")
    return target


def _nonempty(x: np.ndarray, op: str, name: str) -> None:
    if x.size == 0:
        raise ValueError(f"{op}: {name} is empty (shape {x.shape}); the mean loss of nothing is "
                         f"undefined")


# ---- softmax cross-entropy (from logits) -----------------------------------------------------

def _softmax_xent(logits: Any, labels: Any, keep: bool):
    op = "softmax_cross_entropy"
    logits = _c.host_float(logits, "logits", op)
    x2 = _rows(logits, op, "logits")
    t = _class_labels(labels, logits, op)
    grad = np.empty_like(logits) if keep else None
    g2 = None if grad is None else (grad if grad.ndim == 2 else grad.reshape(x2.shape))
    loss = float(_backend.kernels().softmax_cross_entropy(g2, x2, t))
    return loss, grad


def softmax_cross_entropy(logits: Any, labels: Any) -> float:
    """Mean cross-entropy of ``softmax(logits)`` (N, C) against class indices (N,) (any integer
    dtype) or a target distribution (N, C), computed from the logits in one fused, stable pass
    (finite for logits of any finite size). Leading dimensions beyond N are flattened."""
    return _softmax_xent(logits, labels, False)[0]


def softmax_cross_entropy_forward(logits: Any, labels: Any) -> Tuple[float, LossCtx]:
    """The loss and a ctx holding ``d loss / d logits = (softmax * sum(t) - t) / N``."""
    loss, grad = _softmax_xent(logits, labels, True)
    return loss, _ctx(grad, "softmax_cross_entropy")


def softmax_cross_entropy_backward(ctx: LossCtx, dloss: float = 1.0) -> Tuple[np.ndarray, None]:
    """``(d_logits, None)``."""
    return _backward(ctx, dloss, "softmax_cross_entropy")


# ---- categorical cross-entropy (from probabilities) --------------------------------------------

def _cce(probs: Any, labels: Any, eps: Any, keep: bool):
    op = "categorical_cross_entropy"
    eps = _c.in_range(_c.real(eps, "eps"), "eps", 0.0, 0.5)
    probs = _c.host_float(probs, "probs", op)
    p2 = _rows(probs, op, "probs")
    t = _class_labels(labels, probs, op)
    grad = np.empty_like(probs) if keep else None
    g2 = None if grad is None else (grad if grad.ndim == 2 else grad.reshape(p2.shape))
    loss = float(_backend.kernels().categorical_cross_entropy(g2, p2, t, eps))
    return loss, grad


def categorical_cross_entropy(probs: Any, labels: Any, *, eps: float = 1e-7) -> float:
    """Mean cross-entropy from probabilities, as Keras computes it: each row of ``probs`` is
    divided by its sum, clipped into [eps, 1 - eps], and ``-sum(t * log p)`` is averaged over
    rows. ``labels``: class indices (N,) or one-hot/probabilities (N, C)."""
    return _cce(probs, labels, eps, False)[0]


def categorical_cross_entropy_forward(probs: Any, labels: Any, *,
                                      eps: float = 1e-7) -> Tuple[float, LossCtx]:
    loss, grad = _cce(probs, labels, eps, True)
    return loss, _ctx(grad, "categorical_cross_entropy")


def categorical_cross_entropy_backward(ctx: LossCtx,
                                       dloss: float = 1.0) -> Tuple[np.ndarray, None]:
    """``(d_probs, None)``; zero where the clip was active."""
    return _backward(ctx, dloss, "categorical_cross_entropy")


# ---- binary cross-entropy ---------------------------------------------------------------------

def _bce(pred: Any, target: Any, from_logits: bool, eps: Any, keep: bool):
    op = "binary_cross_entropy"
    eps = _c.in_range(_c.real(eps, "eps"), "eps", 0.0, 0.5)
    pred = _c.host_float(pred, "pred", op)
    _nonempty(pred, op, "pred")
    t = _target(target, pred, op)
    grad = np.empty_like(pred) if keep else None
    loss = float(_backend.kernels().binary_cross_entropy(grad, pred, t, bool(from_logits), eps))
    return loss, grad


def binary_cross_entropy(pred: Any, target: Any, *, from_logits: bool = False,
                         eps: float = 1e-7) -> float:
    """Mean binary cross-entropy over all elements. From probabilities (clipped into
    [eps, 1 - eps], as Keras), or ``from_logits=True``: the stable form
    ``max(z, 0) - z*t + log(1 + exp(-|z|))``, finite for any finite logit."""
    return _bce(pred, target, from_logits, eps, False)[0]


def binary_cross_entropy_forward(pred: Any, target: Any, *, from_logits: bool = False,
                                 eps: float = 1e-7) -> Tuple[float, LossCtx]:
    loss, grad = _bce(pred, target, from_logits, eps, True)
    return loss, _ctx(grad, "binary_cross_entropy")


def binary_cross_entropy_backward(ctx: LossCtx, dloss: float = 1.0) -> Tuple[np.ndarray, None]:
    """``(d_pred, None)``: ``(sigmoid(z) - t) / n`` from logits; ``(p - t) / (p (1-p) n)`` from
    probabilities (zero where clipped)."""
    return _backward(ctx, dloss, "binary_cross_entropy")


# ---- mean squared / absolute error ----------------------------------------------------------

def _pointwise(pred: Any, target: Any, op: str, keep: bool):
    pred = _c.host_float(pred, "pred", op)
    _nonempty(pred, op, "pred")
    t = _target(target, pred, op)
    grad = np.empty_like(pred) if keep else None
    loss = float(getattr(_backend.kernels(), op)(grad, pred, t))
    return loss, grad


def mse(pred: Any, target: Any) -> float:
    """Mean of ``(pred - target)**2`` over all elements."""
    return _pointwise(pred, target, "mse", False)[0]


def mse_forward(pred: Any, target: Any) -> Tuple[float, LossCtx]:
    loss, grad = _pointwise(pred, target, "mse", True)
    return loss, _ctx(grad, "mse")


def mse_backward(ctx: LossCtx, dloss: float = 1.0) -> Tuple[np.ndarray, None]:
    """``(2 (pred - target) / n, None)``."""
    return _backward(ctx, dloss, "mse")


def mae(pred: Any, target: Any) -> float:
    """Mean of ``|pred - target|`` over all elements."""
    return _pointwise(pred, target, "mae", False)[0]


def mae_forward(pred: Any, target: Any) -> Tuple[float, LossCtx]:
    loss, grad = _pointwise(pred, target, "mae", True)
    return loss, _ctx(grad, "mae")


def mae_backward(ctx: LossCtx, dloss: float = 1.0) -> Tuple[np.ndarray, None]:
    """``(sign(pred - target) / n, None)`` (0 where they are equal)."""
    return _backward(ctx, dloss, "mae")
