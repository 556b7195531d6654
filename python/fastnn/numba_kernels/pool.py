"""Numba fallbacks of the pooling kernels, with the signatures the C++ ones will have.

Every kernel is one parallel loop over the (image, channel) planes, so each output element has
one writer; the backward kernels zero their dx plane and then scatter into it (windows that
overlap add up). A window is clipped to the image once, before its inner loops: the padding is
never materialized.

max pooling keeps the first maximum of a window (strict >), and the first NaN, which then stays:
NaN propagates, and argmax says where it came from. A window holding only -inf reports its first
element inside the image, as PyTorch does. argmax is the flat index ``row * W + col`` into the
input plane (int64).

Arguments are trusted: ``fastnn.ops`` checked the sizes (every window overlaps the image, since
padding <= kernel / 2), made every array C-contiguous and never calls with an empty dimension.
"""
from __future__ import annotations

import numba
from numba import prange, types

from .elementwise import in_array, numba_dtype, out_array, specialize, threads

__all__ = ["max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward",
           "avg_pool2d_backward"]

_I = types.int64


@numba.njit(cache=True)
def _window(o, stride, pad, k, size):
    """The input range [lo, hi) of window o along one axis, clipped to the image."""
    start = o * stride - pad
    return max(start, 0), min(start + k, size)


def _max_forward(y, argmax, x, kh, kw, sh, sw, ph, pw):
    planes, oh_n, ow_n = y.shape
    h, wd = x.shape[1], x.shape[2]
    for t in prange(planes):
        src = x[t]
        for r in range(oh_n):
            h0, h1 = _window(r, sh, ph, kh, h)
            for q in range(ow_n):
                w0, w1 = _window(q, sw, pw, kw, wd)
                best = src[h0, w0]
                where = h0 * wd + w0
                for i in range(h0, h1):
                    for j in range(w0, w1):
                        v = src[i, j]
                        if v > best or (v != v and best == best):
                            best = v
                            where = i * wd + j
                y[t, r, q] = best
                argmax[t, r, q] = where


def _max_backward(dx, argmax, dy):
    planes, n_in = dx.shape
    n_out = dy.shape[1]
    for t in prange(planes):
        dst = dx[t]
        for k in range(n_in):
            dst[k] = 0
        for k in range(n_out):
            dst[argmax[t, k]] += dy[t, k]


def _avg_forward(y, x, kh, kw, sh, sw, ph, pw, count_include_pad):
    planes, oh_n, ow_n = y.shape
    h, wd = x.shape[1], x.shape[2]
    for t in prange(planes):
        src = x[t]
        for r in range(oh_n):
            h0, h1 = _window(r, sh, ph, kh, h)
            for q in range(ow_n):
                w0, w1 = _window(q, sw, pw, kw, wd)
                # A float64 sum: exact enough for any window, and it starts from a true zero
                # (x * 0 would turn an inf into NaN).
                s = 0.0
                for i in range(h0, h1):
                    for j in range(w0, w1):
                        s += src[i, j]
                # Windows never reach past the padding (no ceil mode), so a window that counts
                # its padding always counts kh * kw elements.
                count = kh * kw if count_include_pad else (h1 - h0) * (w1 - w0)
                y[t, r, q] = s / count


def _avg_backward(dx, dy, kh, kw, sh, sw, ph, pw, count_include_pad):
    planes, h, wd = dx.shape
    oh_n, ow_n = dy.shape[1], dy.shape[2]
    for t in prange(planes):
        dst = dx[t]
        for i in range(h):
            for j in range(wd):
                dst[i, j] = 0
        for r in range(oh_n):
            h0, h1 = _window(r, sh, ph, kh, h)
            for q in range(ow_n):
                w0, w1 = _window(q, sw, pw, kw, wd)
                count = kh * kw if count_include_pad else (h1 - h0) * (w1 - w0)
                share = dy[t, r, q] / count
                for i in range(h0, h1):
                    for j in range(w0, w1):
                        dst[i, j] += share


def _max_forward_kernel(dt):
    t = numba_dtype(dt)
    sig = types.void(out_array(t, 3), out_array(types.int64, 3), in_array(t, 3, "C"),
                     _I, _I, _I, _I, _I, _I)
    return specialize(_max_forward, sig)


def _max_backward_kernel(dt):
    t = numba_dtype(dt)
    sig = types.void(out_array(t, 2), in_array(types.int64, 2, "C"), in_array(t, 2, "C"))
    return specialize(_max_backward, sig)


def _avg_forward_kernel(dt):
    t = numba_dtype(dt)
    sig = types.void(out_array(t, 3), in_array(t, 3, "C"), _I, _I, _I, _I, _I, _I,
                     types.boolean)
    return specialize(_avg_forward, sig)


def _avg_backward_kernel(dt):
    t = numba_dtype(dt)
    sig = types.void(out_array(t, 3), in_array(t, 3, "C"), _I, _I, _I, _I, _I, _I,
                     types.boolean)
    return specialize(_avg_backward, sig)


def _planes(a, *tail):
    """(N, C, ...) as (N*C, ...): a view, since the ops layer passes C-contiguous arrays."""
    return a.reshape((a.shape[0] * a.shape[1],) + tail)


def max_pool2d_forward(y, argmax, x, kh, kw, sh, sw, ph, pw):
    """y := window maxima of x, argmax := their flat index into the (H, W) input plane.
    y and argmax (int64) are (N, C, OH, OW); OH/OW come from y."""
    oh, ow = y.shape[2], y.shape[3]
    h, w = x.shape[2], x.shape[3]
    with threads(y.size * kh * kw, y.shape[0] * y.shape[1]):
        _max_forward_kernel(y.dtype)(_planes(y, oh, ow), _planes(argmax, oh, ow),
                                     _planes(x, h, w), int(kh), int(kw), int(sh), int(sw),
                                     int(ph), int(pw))


def max_pool2d_backward(dx, argmax, dy, gate=None):
    """dx := 0, then each dy element added at its argmax (dx (N, C, H, W)); with a gate (the
    pooled output, dy's shape), dy * (gate > 0): the gradient through a relu before the
    pooling."""
    if gate is not None:
        dy = dy * (gate > 0).astype(dy.dtype)
    h, w = dx.shape[2], dx.shape[3]
    oh, ow = dy.shape[2], dy.shape[3]
    with threads(dx.size + dy.size, dx.shape[0] * dx.shape[1]):
        _max_backward_kernel(dx.dtype)(_planes(dx, h * w), _planes(argmax, oh * ow),
                                       _planes(dy, oh * ow))


def avg_pool2d_forward(y, x, kh, kw, sh, sw, ph, pw, count_include_pad):
    """y := window means of x, zero padding counted in the divisor or not."""
    oh, ow = y.shape[2], y.shape[3]
    h, w = x.shape[2], x.shape[3]
    with threads(y.size * kh * kw, y.shape[0] * y.shape[1]):
        _avg_forward_kernel(y.dtype)(_planes(y, oh, ow), _planes(x, h, w), int(kh), int(kw),
                                     int(sh), int(sw), int(ph), int(pw),
                                     bool(count_include_pad))


def avg_pool2d_backward(dx, dy, kh, kw, sh, sw, ph, pw, count_include_pad):
    """dx := 0, then each dy element divided by its window's divisor and added over the
    window's elements inside the image."""
    h, w = dx.shape[2], dx.shape[3]
    oh, ow = dy.shape[2], dy.shape[3]
    with threads(dy.size * kh * kw + dx.size, dx.shape[0] * dx.shape[1]):
        _avg_backward_kernel(dx.dtype)(_planes(dx, h, w), _planes(dy, oh, ow), int(kh), int(kw),
                                       int(sh), int(sw), int(ph), int(pw),
                                       bool(count_include_pad))
