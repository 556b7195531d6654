"""float64 references of the pooling family: max_pool2d, avg_pool2d, global_avg_pool2d and their
gradients, on NCHW images.

As in :mod:`.conv`, the input is padded explicitly and one loop over the window taps reads each
tap's strided slice; the window's values are then stacked along a new last axis and reduced.
max_pool2d pads with -inf and picks the first maximum of a window (the first NaN, if any, wins,
so NaN propagates); its argmax is the flat index ``row * W + col`` into the unpadded input plane.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np

__all__ = ["max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
           "global_avg_pool2d", "global_avg_pool2d_backward"]

Pair = Union[int, Tuple[int, int]]


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _pair(v: Pair) -> Tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _windows(xp: np.ndarray, k, s, out) -> np.ndarray:
    """(..., OH, OW, kh*kw): the values of every window of the padded planes, taps in row-major
    order."""
    (kh, kw), (sh, sw), (oh, ow) = k, s, out
    taps = [xp[..., i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
            for i in range(kh) for j in range(kw)]
    return np.stack(taps, axis=-1)


def _geometry(shape, kernel_size, stride, padding):
    k = _pair(kernel_size)
    s = k if stride is None else _pair(stride)
    p = _pair(padding)
    out = tuple((shape[2 + a] + 2 * p[a] - k[a]) // s[a] + 1 for a in range(2))
    return k, s, p, out


def max_pool2d(x, kernel_size: Pair, stride: Optional[Pair] = None,
               padding: Pair = 0) -> Tuple[np.ndarray, np.ndarray]:
    """``(y, argmax)``: the window maxima and, as int64, where each was found."""
    x = _f64(x)
    k, s, p, out = _geometry(x.shape, kernel_size, stride, padding)
    h, w = x.shape[2:]
    pad = ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1]))
    xp = np.pad(x, pad, constant_values=-np.inf)
    # The flat index of each padded position in the unpadded plane (-1 in the padding).
    where = np.pad(np.arange(h * w, dtype=np.int64).reshape(h, w), pad[2:], constant_values=-1)
    vals = _windows(xp, k, s, out)
    idx = np.broadcast_to(_windows(where, k, s, out), vals.shape)
    real = idx >= 0
    nan = np.isnan(vals)
    top = np.where(real, vals, -np.inf).max(axis=-1, keepdims=True)
    # The first real tap holding the maximum; when a window holds only -inf, that is its first
    # real element (a padding tap is never chosen). NaN overrides both.
    first_max = np.argmax(real & (vals == top), axis=-1)
    best = np.where(nan.any(axis=-1), np.argmax(nan, axis=-1), first_max)
    y = np.take_along_axis(vals, best[..., None], axis=-1)[..., 0]
    arg = np.take_along_axis(idx, best[..., None], axis=-1)[..., 0]
    return y, np.ascontiguousarray(arg)


def max_pool2d_backward(x, dy, kernel_size: Pair, stride: Optional[Pair] = None,
                        padding: Pair = 0) -> np.ndarray:
    """``dx``: each output gradient added to the input element its window's max came from
    (windows that overlap add up)."""
    x, dy = _f64(x), _f64(dy)
    _, arg = max_pool2d(x, kernel_size, stride, padding)
    n, c, h, w = x.shape
    dx = np.zeros((n * c, h * w))
    np.add.at(dx, (np.arange(n * c)[:, None], arg.reshape(n * c, -1)), dy.reshape(n * c, -1))
    return dx.reshape(x.shape)


def _counts(shape, k, s, p, out, count_include_pad: bool) -> np.ndarray:
    """(OH, OW): the divisor of each window: its full size, or its real (unpadded) elements."""
    if count_include_pad:
        return np.full(out, float(k[0] * k[1]))
    ones = np.pad(np.ones(shape[2:]), ((p[0], p[0]), (p[1], p[1])))
    return _windows(ones, k, s, out).sum(axis=-1)


def avg_pool2d(x, kernel_size: Pair, stride: Optional[Pair] = None, padding: Pair = 0,
               count_include_pad: bool = True) -> np.ndarray:
    """Window means over the zero-padded input; with ``count_include_pad=False`` the padding is
    left out of the divisor."""
    x = _f64(x)
    k, s, p, out = _geometry(x.shape, kernel_size, stride, padding)
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    with np.errstate(invalid="ignore"):  # inf - inf in a window is NaN, as it should be
        return _windows(xp, k, s, out).sum(axis=-1) / _counts(x.shape, k, s, p, out,
                                                              count_include_pad)


def avg_pool2d_backward(x, dy, kernel_size: Pair, stride: Optional[Pair] = None,
                        padding: Pair = 0, count_include_pad: bool = True) -> np.ndarray:
    """``dx``: each output gradient divided by its window's divisor and spread over the
    window's real elements."""
    x, dy = _f64(x), _f64(dy)
    k, s, p, out = _geometry(x.shape, kernel_size, stride, padding)
    share = dy / _counts(x.shape, k, s, p, out, count_include_pad)
    n, c, h, w = x.shape
    dxp = np.zeros((n, c, h + 2 * p[0], w + 2 * p[1]))
    for i in range(k[0]):
        for j in range(k[1]):
            dxp[..., i:i + s[0] * (out[0] - 1) + 1:s[0], j:j + s[1] * (out[1] - 1) + 1:s[1]] \
                += share
    return dxp[..., p[0]:p[0] + h, p[1]:p[1] + w]


def global_avg_pool2d(x) -> np.ndarray:
    """(N, C, 1, 1): the mean of each plane."""
    with np.errstate(invalid="ignore"):
        return _f64(x).mean(axis=(2, 3), keepdims=True)


def global_avg_pool2d_backward(x, dy) -> np.ndarray:
    x = _f64(x)
    return np.broadcast_to(_f64(dy) / (x.shape[2] * x.shape[3]), x.shape).copy()
