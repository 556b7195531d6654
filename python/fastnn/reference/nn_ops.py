"""float64 NumPy references for the training-layer ops: activations, softmax, maxout, losses,
dropout and the optimizer updates. Written for clarity, not speed; every function computes in
float64 whatever dtype it is given.

Backward references take what the op's forward saw and the upstream gradient, and return the
input gradient, so tests can check kernels and finite differences against the same formula.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "activation_fn", "activation_grad", "softmax", "softmax_grad", "log_softmax",
    "log_softmax_grad", "threshold", "maxout", "maxout_grad",
    "softmax_cross_entropy", "categorical_cross_entropy", "binary_cross_entropy", "mse", "mae",
    "dropout_keep_mask", "dropout", "sgd_step", "adam_step", "rmsprop_step", "ema_update",
    "grad_norm", "regularizer_loss", "regularizer_grad",
]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # exp of non-positive arguments only
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def activation_fn(x, name: Optional[str], alpha: Optional[float] = None) -> np.ndarray:
    """y = f(x) for the elementwise activations (relu, leaky_relu, sigmoid, tanh, elu, selu,
    gelu (erf form), linear/None)."""
    z = _f64(x)
    if name in (None, "linear"):
        return z.copy()
    if name == "relu":
        return np.where(z > 0, z, np.where(np.isnan(z), z, 0.0))
    if name == "leaky_relu":
        a = 0.01 if alpha is None else alpha
        return np.where(z > 0, z, a * z)
    if name == "sigmoid":
        return _sigmoid(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "elu":
        a = 1.0 if alpha is None else alpha
        return np.where(z > 0, z, a * np.expm1(np.minimum(z, 0.0)))
    if name == "selu":
        return np.where(z > 0, _SELU_SCALE * z,
                        _SELU_SCALE * _SELU_ALPHA * np.expm1(np.minimum(z, 0.0)))
    if name == "gelu":
        return 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0)))
    raise ValueError(f"unknown activation {name!r}")


def activation_grad(x, dy, name: Optional[str], alpha: Optional[float] = None) -> np.ndarray:
    """dx = dy * f'(x)."""
    z, g = _f64(x), _f64(dy)
    if name in (None, "linear"):
        d = np.ones_like(z)
    elif name == "relu":
        d = (z > 0).astype(np.float64)
    elif name == "leaky_relu":
        d = np.where(z > 0, 1.0, 0.01 if alpha is None else alpha)
    elif name == "sigmoid":
        s = _sigmoid(z)
        d = s * (1.0 - s)
    elif name == "tanh":
        d = 1.0 - np.tanh(z) ** 2
    elif name == "elu":
        a = 1.0 if alpha is None else alpha
        d = np.where(z > 0, 1.0, a * np.exp(np.minimum(z, 0.0)))
    elif name == "selu":
        d = np.where(z > 0, _SELU_SCALE, _SELU_SCALE * _SELU_ALPHA * np.exp(np.minimum(z, 0.0)))
    elif name == "gelu":
        d = 0.5 * (1.0 + _erf(z / math.sqrt(2.0))) + z * np.exp(-0.5 * z * z) / math.sqrt(
            2.0 * math.pi)
    else:
        raise ValueError(f"unknown activation {name!r}")
    return g * d


def softmax(x, axis: int = -1) -> np.ndarray:
    z = _f64(x)
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def softmax_grad(y, dy, axis: int = -1) -> np.ndarray:
    """dx of softmax from its output y."""
    y, g = _f64(y), _f64(dy)
    return y * (g - np.sum(g * y, axis=axis, keepdims=True))


def log_softmax(x, axis: int = -1) -> np.ndarray:
    z = _f64(x)
    m = np.max(z, axis=axis, keepdims=True)
    return z - m - np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True))


def log_softmax_grad(y, dy, axis: int = -1) -> np.ndarray:
    """dx of log_softmax from its output y."""
    y, g = _f64(y), _f64(dy)
    return g - np.exp(y) * np.sum(g, axis=axis, keepdims=True)


def threshold(x, value: float = 0.0) -> np.ndarray:
    return (_f64(x) > value).astype(np.float64)


def maxout(x, pieces: int) -> Tuple[np.ndarray, np.ndarray]:
    """(y, arg): y[..., u] = max(x[..., u*pieces:(u+1)*pieces]); arg = winning piece (NaN wins,
    first on ties)."""
    z = _f64(x)
    g = z.reshape(z.shape[:-1] + (z.shape[-1] // pieces, pieces))
    nan = np.isnan(g)
    arg = np.where(nan.any(axis=-1), np.argmax(nan, axis=-1),
                   np.argmax(np.where(nan, -np.inf, g), axis=-1))
    y = np.take_along_axis(g, arg[..., None], axis=-1)[..., 0]
    return y, arg


def maxout_grad(x, dy, pieces: int) -> np.ndarray:
    z = _f64(x)
    _, arg = maxout(z, pieces)
    g = np.zeros(z.shape[:-1] + (z.shape[-1] // pieces, pieces))
    np.put_along_axis(g, arg[..., None], _f64(dy)[..., None], axis=-1)
    return g.reshape(z.shape)


def _targets(labels, shape) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 1 and len(shape) == 2:
        t = np.zeros(shape)
        t[np.arange(shape[0]), labels.astype(np.int64)] = 1.0
        return t
    return _f64(labels)


def softmax_cross_entropy(logits, labels) -> Tuple[float, np.ndarray]:
    """(mean loss, d loss / d logits); labels are class indices (N,) or a target (N, C)."""
    z = _f64(logits)
    t = _targets(labels, z.shape)
    n = z.shape[0]
    ls = log_softmax(z)
    loss = float(-np.sum(t * ls) / n) if n else 0.0
    grad = (np.exp(ls) * t.sum(axis=1, keepdims=True) - t) / max(n, 1)
    return loss, grad


def categorical_cross_entropy(probs, labels, eps: float = 1e-7) -> Tuple[float, np.ndarray]:
    """Keras's categorical cross-entropy from probabilities: rows normalized to sum 1, clipped
    into [eps, 1-eps]; (mean loss, d loss / d probs)."""
    q = _f64(probs)
    t = _targets(labels, q.shape)
    n = q.shape[0]
    s = q.sum(axis=1, keepdims=True)
    p = q / s
    c = np.clip(p, eps, 1.0 - eps)
    loss = float(-np.sum(t * np.log(c)) / n) if n else 0.0
    gp = np.where((p >= eps) & (p <= 1.0 - eps), -t / c, 0.0)  # d/dp
    grad = (gp - np.sum(gp * p, axis=1, keepdims=True)) / s / max(n, 1)
    return loss, grad


def binary_cross_entropy(pred, target, from_logits: bool = False,
                         eps: float = 1e-7) -> Tuple[float, np.ndarray]:
    """Mean binary cross-entropy over all elements and its gradient."""
    x, t = _f64(pred), _f64(target)
    n = max(x.size, 1)
    if from_logits:
        loss = np.maximum(x, 0.0) - x * t + np.log1p(np.exp(-np.abs(x)))
        grad = (_sigmoid(x) - t) / n
    else:
        c = np.clip(x, eps, 1.0 - eps)
        loss = -(t * np.log(c) + (1.0 - t) * np.log(1.0 - c))
        grad = np.where((x >= eps) & (x <= 1.0 - eps), (c - t) / (c * (1.0 - c)), 0.0) / n
    return float(loss.sum() / n), grad


def mse(pred, target) -> Tuple[float, np.ndarray]:
    d = _f64(pred) - _f64(target)
    n = max(d.size, 1)
    return float(np.sum(d * d) / n), 2.0 * d / n


def mae(pred, target) -> Tuple[float, np.ndarray]:
    d = _f64(pred) - _f64(target)
    n = max(d.size, 1)
    return float(np.sum(np.abs(d)) / n), np.sign(d) / n


# ---- dropout: the counter-based mask, in plain Python integers --------------------------------

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _mix32(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def dropout_keep_mask(shape, rate: float, seed: int) -> np.ndarray:
    """The keep mask (bool) every backend draws for this seed: element i (flat, C order) is kept
    when mix32(mix32(i_lo ^ k0) ^ k1 ^ i_hi) >= floor(rate * 2^32), (k0, k1) = splitmix64(seed)."""
    h = _splitmix64(int(seed))
    k0, k1 = h & _M32, h >> 32
    n = int(np.prod(shape, dtype=np.int64))
    i = np.arange(n, dtype=np.uint64)
    lo, hi = i & np.uint64(_M32), i >> np.uint64(32)
    bits = _mix32(_mix32(lo ^ np.uint64(k0)) ^ np.uint64(k1) ^ hi)
    thr = int(rate * 4294967296.0)
    return (bits >= np.uint64(thr)).reshape(shape)


def dropout(x, rate: float, seed: int) -> np.ndarray:
    z = _f64(x)
    return z * dropout_keep_mask(z.shape, rate, seed) / (1.0 - rate)


# ---- optimizer updates: return new (param, *state) in float64 -----------------------------------

def sgd_step(param, grad, velocity=None, *, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    p, g = _f64(param).copy(), _f64(grad)
    g = g + weight_decay * p
    v = None
    if momentum:
        v = momentum * _f64(velocity) + g
        g = g + momentum * v if nesterov else v
    return p - lr * g, v


def ema_update(average, param, *, momentum):
    return momentum * _f64(average) + (1 - momentum) * _f64(param)


def adam_step(param, grad, m, v, *, lr, beta1=0.9, beta2=0.999, eps=1e-7, step,
              weight_decay=0.0, decoupled=False):
    p, g = _f64(param).copy(), _f64(grad)
    if weight_decay and not decoupled:
        g = g + weight_decay * p
    if weight_decay and decoupled:
        p = p - lr * weight_decay * p
    m = beta1 * _f64(m) + (1 - beta1) * g
    v = beta2 * _f64(v) + (1 - beta2) * g * g
    alpha = lr * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
    return p - alpha * m / (np.sqrt(v) + eps), m, v


def rmsprop_step(param, grad, sq, *, lr, rho=0.9, eps=1e-7, momentum=0.0, velocity=None):
    p, g = _f64(param).copy(), _f64(grad)
    sq = rho * _f64(sq) + (1 - rho) * g * g
    inc = lr * g / np.sqrt(sq + eps)
    vel = None
    if momentum:
        vel = momentum * _f64(velocity) + inc
        inc = vel
    return p - inc, sq, vel


def grad_norm(grads: Sequence) -> float:
    return math.sqrt(sum(float(np.sum(_f64(g) ** 2)) for g in grads))


def regularizer_loss(w, l1: float = 0.0, l2: float = 0.0) -> float:
    w = _f64(w)
    return float(l1 * np.sum(np.abs(w)) + l2 * np.sum(w * w))


def regularizer_grad(w, l1: float = 0.0, l2: float = 0.0) -> np.ndarray:
    w = _f64(w)
    return l1 * np.sign(w) + 2.0 * l2 * w
