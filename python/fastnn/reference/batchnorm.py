"""float64 reference of 2-D batch normalization (per channel of an NCHW batch) and its gradient.

Unlike the op, which updates the running statistics in place, the reference is a pure function:
it returns the running statistics the op should have left behind. The backward is the chain rule
written out step by step through mean and variance (the textbook derivation), not the compact
closed form the op uses, so the two are independent.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

__all__ = ["batch_norm2d", "batch_norm2d_backward"]

_AXES = (0, 2, 3)


def _f64(x) -> Optional[np.ndarray]:
    return None if x is None else np.asarray(x, dtype=np.float64)


def _chan(v: np.ndarray) -> np.ndarray:
    return v[None, :, None, None]


def batch_norm2d(x, gamma, beta, running_mean, running_var, training: bool,
                 momentum: float = 0.1, eps: float = 1e-5
                 ) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """``(y, new_running_mean, new_running_var)``.

    Training: normalize with the batch mean and the biased batch variance; the running mean and
    variance move towards the batch mean and the *unbiased* batch variance by ``momentum``
    (PyTorch's rule). Inference: normalize with the running statistics, which are returned as
    they came. ``gamma``/``beta`` None mean 1/0; running statistics None stay None.
    """
    x = _f64(x)
    rm, rv = _f64(running_mean), _f64(running_var)
    if training:
        m = x.shape[0] * x.shape[2] * x.shape[3]
        mean = x.mean(axis=_AXES)
        var = ((x - _chan(mean)) ** 2).mean(axis=_AXES)
        if rm is not None:
            rm = (1 - momentum) * rm + momentum * mean
        if rv is not None:
            rv = (1 - momentum) * rv + momentum * var * m / (m - 1)
    else:
        mean, var = rm, rv
    y = (x - _chan(mean)) / np.sqrt(_chan(var) + eps)
    if gamma is not None:
        y = y * _chan(_f64(gamma))
    if beta is not None:
        y = y + _chan(_f64(beta))
    return y, rm, rv


def batch_norm2d_backward(x, gamma, beta, running_mean, running_var, dy, training: bool,
                          eps: float = 1e-5
                          ) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """``(dx, dgamma, dbeta)`` for the output gradient ``dy``; dgamma (dbeta) is None when gamma
    (beta) is None."""
    x, dy = _f64(x), _f64(dy)
    g = np.ones(x.shape[1]) if gamma is None else _f64(gamma)
    if training:
        m = x.shape[0] * x.shape[2] * x.shape[3]
        mean = x.mean(axis=_AXES)
        xc = x - _chan(mean)
        var = (xc ** 2).mean(axis=_AXES)
    else:
        mean, var = _f64(running_mean), _f64(running_var)
        xc = x - _chan(mean)
    inv = 1.0 / np.sqrt(var + eps)
    xhat = xc * _chan(inv)
    dxhat = dy * _chan(g)
    if training:
        # y depends on x directly and through mean(x) and var(x).
        dvar = (dxhat * xc).sum(axis=_AXES) * -0.5 * inv ** 3
        dmean = -(dxhat * _chan(inv)).sum(axis=_AXES) + dvar * (-2.0 * xc).mean(axis=_AXES)
        dx = dxhat * _chan(inv) + _chan(dvar) * 2.0 * xc / m + _chan(dmean) / m
    else:
        dx = dxhat * _chan(inv)
    dgamma = None if gamma is None else (dy * xhat).sum(axis=_AXES)
    dbeta = None if beta is None else dy.sum(axis=_AXES)
    return dx, dgamma, dbeta
