"""Numba fallbacks for the training-layer kernels, with the same names and signatures as their
``fastnn._C`` counterparts: softmax/log_softmax, threshold, maxout, the losses, dropout and the
optimizer updates.

Arguments are trusted (``fastnn.ops`` validated them): arrays are C-contiguous, dtypes agree,
integer labels are int64 and in range. Scalar coefficients are cast to the array dtype before they
reach a jitted loop, so float32 kernels compute in float32 as the C++ ones do, and the dropout mask
is computed with the same integer arithmetic as csrc/common/rng.h, bit for bit.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "softmax", "log_softmax", "softmax_backward", "log_softmax_backward", "threshold", "maxout",
    "maxout_backward", "softmax_cross_entropy", "categorical_cross_entropy",
    "binary_cross_entropy", "mse", "mae", "label_error", "dropout", "dropout_backward",
    "sgd_step", "adam_step", "rmsprop_step", "sum_squares", "regularizer_loss", "regularizer_grad",
]

_JIT = dict(cache=True, nogil=True)

# ---- softmax family ------------------------------------------------------------------------------


@njit(**_JIT)
def _softmax_rows(y, x, log):
    rows, cols = x.shape
    for i in range(rows):
        m = x[i, 0]
        for j in range(1, cols):
            if x[i, j] > m:
                m = x[i, j]
        s = x[i, 0] * 0  # zero of the array's dtype
        if log:
            for j in range(cols):
                s += np.exp(x[i, j] - m)
            lse = m + np.log(s)
            for j in range(cols):
                y[i, j] = x[i, j] - lse
        else:
            for j in range(cols):
                e = np.exp(x[i, j] - m)
                y[i, j] = e
                s += e
            inv = 1 / s
            for j in range(cols):
                y[i, j] *= inv


@njit(**_JIT)
def _softmax_rows_backward(dx, y, dy, log):
    rows, cols = y.shape
    for i in range(rows):
        s = y[i, 0] * 0
        if log:
            for j in range(cols):
                s += dy[i, j]
            for j in range(cols):
                dx[i, j] = dy[i, j] - np.exp(y[i, j]) * s
        else:
            for j in range(cols):
                s += dy[i, j] * y[i, j]
            for j in range(cols):
                dx[i, j] = y[i, j] * (dy[i, j] - s)


def softmax(y, x):
    if x.shape[0] and x.shape[1]:
        _softmax_rows(y, x, False)


def log_softmax(y, x):
    if x.shape[0] and x.shape[1]:
        _softmax_rows(y, x, True)


def softmax_backward(dx, y, dy):
    if y.shape[0] and y.shape[1]:
        _softmax_rows_backward(dx, y, dy, False)


def log_softmax_backward(dx, y, dy):
    if y.shape[0] and y.shape[1]:
        _softmax_rows_backward(dx, y, dy, True)


@njit(**_JIT)
def _threshold(y, x, value):
    for i in range(x.size):
        y[i] = 1 if x[i] > value else 0


def threshold(y, x, value):
    _threshold(y.reshape(-1), x.reshape(-1), x.dtype.type(value))


@njit(**_JIT)
def _maxout(y, arg, has_arg, x, pieces):
    rows, units = y.shape
    for i in range(rows):
        for u in range(units):
            base = u * pieces
            best = x[i, base]
            k = 0
            for p in range(1, pieces):
                v = x[i, base + p]
                if v > best or (v != v and best == best):
                    best = v
                    k = p
            y[i, u] = best
            if has_arg:
                arg[i, u] = k


@njit(**_JIT)
def _maxout_backward(dx, arg, dy, pieces):
    rows, units = dy.shape
    for i in range(rows):
        for u in range(units):
            base = u * pieces
            for p in range(pieces):
                dx[i, base + p] = 0
            dx[i, base + arg[i, u]] = dy[i, u]


def maxout(y, arg, x, pieces):
    has = arg is not None
    _maxout(y, arg if has else np.empty((0, 0), np.int32), has, x, int(pieces))


def maxout_backward(dx, arg, dy, pieces):
    _maxout_backward(dx, arg, dy, int(pieces))


# ---- losses --------------------------------------------------------------------------------------


@njit(**_JIT)
def _row_lse(g, has_g, x, i):
    """(log-sum-exp of row i, sum of exp(x - max)); exp(x - max) is written into g[i] if asked."""
    cols = x.shape[1]
    m = x[i, 0]
    for j in range(1, cols):
        if x[i, j] > m:
            m = x[i, j]
    s = x[i, 0] * 0
    for j in range(cols):
        e = np.exp(x[i, j] - m)
        if has_g:
            g[i, j] = e
        s += e
    return m + np.log(s), s


@njit(**_JIT)
def _xent_sparse(g, has_g, x, labels):
    rows, cols = x.shape
    inv_n = x.dtype.type(1.0 / rows)
    total = 0.0
    for i in range(rows):
        lse, s = _row_lse(g, has_g, x, i)
        k = labels[i]
        if has_g:
            sc = inv_n / s
            for j in range(cols):
                g[i, j] *= sc
            g[i, k] -= inv_n
        total += float(lse - x[i, k])
    return total / rows


@njit(**_JIT)
def _xent_dense(g, has_g, x, t):
    rows, cols = x.shape
    inv_n = x.dtype.type(1.0 / rows)
    total = 0.0
    for i in range(rows):
        lse, s = _row_lse(g, has_g, x, i)
        loss = s * 0
        tsum = s * 0
        for j in range(cols):
            loss += t[i, j] * (lse - x[i, j])
            tsum += t[i, j]
        if has_g:
            sc = tsum * inv_n / s
            for j in range(cols):
                g[i, j] = g[i, j] * sc - t[i, j] * inv_n
        total += float(loss)
    return total / rows


@njit(**_JIT)
def _clip(p, eps, one):
    if p < eps:
        return eps
    if p > one - eps:
        return one - eps
    return p


@njit(**_JIT)
def _cce_sparse(g, has_g, q, labels, eps):
    rows, cols = q.shape
    one = q.dtype.type(1)
    inv_n = q.dtype.type(1.0 / rows)
    total = 0.0
    for i in range(rows):
        s = q[i, 0] * 0
        for j in range(cols):
            s += q[i, j]
        k = labels[i]
        p = q[i, k] / s
        c = _clip(p, eps, one)
        if has_g:
            gk = -one / c if (p >= eps and p <= one - eps) else c * 0
            common = -gk * p / s * inv_n
            for j in range(cols):
                g[i, j] = common
            g[i, k] += gk / s * inv_n
        total -= float(np.log(c))
    return total / rows


@njit(**_JIT)
def _cce_dense(g, has_g, q, t, eps):
    rows, cols = q.shape
    one = q.dtype.type(1)
    inv_n = q.dtype.type(1.0 / rows)
    total = 0.0
    for i in range(rows):
        s = q[i, 0] * 0
        for j in range(cols):
            s += q[i, j]
        inv_s = one / s
        loss = s * 0
        dot = s * 0
        for j in range(cols):
            p = q[i, j] * inv_s
            c = _clip(p, eps, one)
            loss -= t[i, j] * np.log(c)
            if p >= eps and p <= one - eps:
                dot += t[i, j] / c * p
        if has_g:
            for j in range(cols):
                p = q[i, j] * inv_s
                c = _clip(p, eps, one)
                gj = -t[i, j] / c if (p >= eps and p <= one - eps) else c * 0
                g[i, j] = (gj + dot) * inv_s * inv_n
        total += float(loss)
    return total / rows


@njit(**_JIT)
def _sigmoid(z):
    one = z * 0 + 1
    if z >= 0:
        return one / (one + np.exp(-z))
    e = np.exp(z)
    return e / (one + e)


@njit(**_JIT)
def _bce(g, has_g, x, t, from_logits, eps):
    n = x.size
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    inv_n = x.dtype.type(1.0 / n)
    total = 0.0
    for i in range(n):
        z = x[i]
        if from_logits:
            pos = z if z > zero else zero
            total += float(pos - z * t[i] + np.log1p(np.exp(-np.abs(z))))
            if has_g:
                g[i] = (_sigmoid(z) - t[i]) * inv_n
        else:
            c = _clip(z, eps, one)
            total += float(-(t[i] * np.log(c) + (one - t[i]) * np.log(one - c)))
            if has_g:
                if z >= eps and z <= one - eps:
                    g[i] = (c - t[i]) / (c * (one - c)) * inv_n
                else:
                    g[i] = zero
    return total / n


@njit(**_JIT)
def _pointwise(g, has_g, x, t, absolute):
    n = x.size
    two = x.dtype.type(2.0 / n)
    inv_n = x.dtype.type(1.0 / n)
    total = 0.0
    for i in range(n):
        d = x[i] - t[i]
        if absolute:
            total += float(abs(d))
            if has_g:
                g[i] = (1 if d > 0 else (-1 if d < 0 else d * 0)) * inv_n
        else:
            total += float(d) * float(d)
            if has_g:
                g[i] = d * two
    return total / n


@njit(**_JIT)
def _first_bad_label(labels, classes):
    for i in range(labels.size):
        k = labels[i]
        if k < 0 or k >= classes:
            return i
    return -1


def label_error(labels, classes):
    return int(_first_bad_label(labels.reshape(-1), int(classes)))


def _grad_arg(grad, like, ndim):
    if grad is None:
        return np.empty((0,) * ndim, like.dtype), False
    return grad, True


def softmax_cross_entropy(grad, logits, labels):
    if logits.shape[0] == 0:
        return 0.0
    g, has = _grad_arg(grad, logits, 2)
    if labels.ndim == 1:
        return _xent_sparse(g, has, logits, labels)
    return _xent_dense(g, has, logits, labels)


def categorical_cross_entropy(grad, probs, labels, eps):
    if probs.shape[0] == 0:
        return 0.0
    g, has = _grad_arg(grad, probs, 2)
    e = probs.dtype.type(eps)
    if labels.ndim == 1:
        return _cce_sparse(g, has, probs, labels, e)
    return _cce_dense(g, has, probs, labels, e)


def binary_cross_entropy(grad, pred, target, from_logits, eps):
    if pred.size == 0:
        return 0.0
    g, has = _grad_arg(None if grad is None else grad.reshape(-1), pred, 1)
    return _bce(g, has, pred.reshape(-1), target.reshape(-1), bool(from_logits),
                pred.dtype.type(eps))


def mse(grad, pred, target):
    if pred.size == 0:
        return 0.0
    g, has = _grad_arg(None if grad is None else grad.reshape(-1), pred, 1)
    return _pointwise(g, has, pred.reshape(-1), target.reshape(-1), False)


def mae(grad, pred, target):
    if pred.size == 0:
        return 0.0
    g, has = _grad_arg(None if grad is None else grad.reshape(-1), pred, 1)
    return _pointwise(g, has, pred.reshape(-1), target.reshape(-1), True)


# ---- dropout: csrc/common/rng.h in 64-bit lanes masked to 32 bits --------------------------------

_M32 = np.uint64(0xFFFFFFFF)
_M64 = 0xFFFFFFFFFFFFFFFF
_S15 = np.uint64(15)
_S16 = np.uint64(16)
_S32 = np.uint64(32)
_C1 = np.uint64(0x7FEB352D)
_C2 = np.uint64(0x846CA68B)


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


@njit(inline="always")
def _mix32(x):
    x ^= x >> _S16
    x = (x * _C1) & _M32
    x ^= x >> _S15
    x = (x * _C2) & _M32
    x ^= x >> _S16
    return x


@njit(**_JIT)
def _dropout(y, mask, has_mask, x, thr, k0, k1, scale):
    zero = scale * 0
    for i in range(x.size):
        c = np.uint64(i)
        bits = _mix32(_mix32((c & _M32) ^ k0) ^ k1 ^ (c >> _S32))
        keep = bits >= thr
        if has_mask:
            mask[i] = 1 if keep else 0
        y[i] = x[i] * (scale if keep else zero)


@njit(**_JIT)
def _dropout_backward(dx, mask, dy, scale):
    zero = scale * 0
    for i in range(dy.size):
        dx[i] = dy[i] * (scale if mask[i] else zero)


def dropout(y, mask, x, rate, seed):
    h = _splitmix64(int(seed))
    thr = np.uint64(int(float(rate) * 4294967296.0))
    scale = x.dtype.type(1.0 / (1.0 - float(rate)))
    has = mask is not None
    _dropout(y.reshape(-1), mask.reshape(-1) if has else np.empty(0, np.uint8), has,
             x.reshape(-1), thr, np.uint64(h & 0xFFFFFFFF), np.uint64(h >> 32), scale)


def dropout_backward(dx, mask, dy, rate):
    _dropout_backward(dx.reshape(-1), mask.reshape(-1), dy.reshape(-1),
                      dy.dtype.type(1.0 / (1.0 - float(rate))))


# ---- optimizers ----------------------------------------------------------------------------------


@njit(**_JIT)
def _sgd(p, v, g, lr, mu, wd, momentum, nesterov):
    for i in range(p.size):
        gi = g[i] + wd * p[i]
        if momentum:
            v[i] = mu * v[i] + gi
            gi = gi + mu * v[i] if nesterov else v[i]
        p[i] -= lr * gi


@njit(**_JIT)
def _adam(p, m, v, g, alpha, b1, c1, b2, c2, eps, decay, mode):
    for i in range(p.size):
        gi = g[i]
        if mode == 1:
            gi = gi + decay * p[i]
        elif mode == 2:
            p[i] -= decay * p[i]
        m[i] = b1 * m[i] + c1 * gi
        v[i] = b2 * v[i] + c2 * gi * gi
        p[i] -= alpha * m[i] / (np.sqrt(v[i]) + eps)


@njit(**_JIT)
def _rmsprop(p, sq, vel, g, lr, rho, c_rho, eps, mu, momentum):
    for i in range(p.size):
        gi = g[i]
        sq[i] = rho * sq[i] + c_rho * gi * gi
        inc = lr * gi / np.sqrt(sq[i] + eps)
        if momentum:
            vel[i] = mu * vel[i] + inc
            inc = vel[i]
        p[i] -= inc


@njit(**_JIT)
def _sum_squares(x):
    s = 0.0
    for i in range(x.size):
        s += float(x[i]) * float(x[i])
    return s


@njit(**_JIT)
def _regularizer_loss(w, l1, l2):
    a = 0.0
    q = 0.0
    for i in range(w.size):
        x = float(w[i])
        a += abs(x)
        q += x * x
    return l1 * a + l2 * q


@njit(**_JIT)
def _regularizer_grad(g, w, a, b):
    for i in range(w.size):
        x = w[i]
        s = 1 if x > 0 else (-1 if x < 0 else x * 0)
        g[i] += a * s + b * x


def _flat(a):
    return a.reshape(-1)


def sgd_step(param, velocity, grad, lr, momentum, nesterov, weight_decay):
    t = param.dtype.type
    mom = bool(momentum) and velocity is not None
    v = _flat(velocity) if mom else np.empty(0, param.dtype)
    _sgd(_flat(param), v, _flat(grad), t(lr), t(momentum), t(weight_decay), mom,
         bool(nesterov))


def adam_step(param, m, v, grad, lr, beta1, beta2, eps, step, weight_decay, decoupled):
    t = param.dtype.type
    alpha = lr * math.sqrt(1.0 - beta2 ** float(step)) / (1.0 - beta1 ** float(step))
    mode = 0 if weight_decay == 0.0 else (2 if decoupled else 1)
    decay = lr * weight_decay if mode == 2 else weight_decay
    _adam(_flat(param), _flat(m), _flat(v), _flat(grad), t(alpha), t(beta1), t(1.0 - beta1),
          t(beta2), t(1.0 - beta2), t(eps), t(decay), mode)


def rmsprop_step(param, sq, velocity, grad, lr, rho, eps, momentum):
    t = param.dtype.type
    mom = bool(momentum) and velocity is not None
    vel = _flat(velocity) if mom else np.empty(0, param.dtype)
    _rmsprop(_flat(param), _flat(sq), vel, _flat(grad), t(lr), t(rho), t(1.0 - rho), t(eps),
             t(momentum), mom)


def sum_squares(x):
    return _sum_squares(_flat(x))


def regularizer_loss(w, l1, l2):
    return _regularizer_loss(_flat(w), float(l1), float(l2))


def regularizer_grad(grad, w, l1, l2):
    t = w.dtype.type
    _regularizer_grad(_flat(grad), _flat(w), t(l1), t(2.0 * l2))
