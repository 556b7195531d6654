"""Numba fallbacks of the convolution kernels, with the signatures the C++ ones will have.

Direct convolution, no im2col buffer: one parallel loop over the planes a kernel writes, so every
output element has exactly one writer (no atomics, no private copies to add up), and for each
kernel tap the loop over output columns runs over a precomputed range of columns whose input
lies inside the image. Padding is therefore never materialized and never tested per element:
the bottom/right padding is implicit in the output size, which is why an asymmetric pad ("same"
with an even kernel) needs no extra argument.

* forward: parallel over (image, output channel) planes; each tap adds ``w * input row`` into
  an output row (unit stride when the conv stride is 1, so LLVM vectorizes it);
* backward-data: parallel over (image, input channel) planes: each tap scatters ``w * dy row``
  back; every dx plane is zeroed first, so untouched positions (rows a stride skips, the
  bottom/right remainder) end up 0;
* backward-weight: parallel over (output channel, input channel of its group) pairs; each tap
  accumulates elementwise products into a row buffer that is summed once at the end, so the hot
  loop is a vectorizable multiply-add rather than a dot product (which LLVM would only
  vectorize with reassociation, i.e. fastmath).

Arguments are trusted: ``fastnn.ops`` checked the sizes, made every array C-contiguous and
never calls with an empty dimension. fastmath is limited to 'contract' (fused multiply-add).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange, types

from .elementwise import in_array, numba_dtype, out_array, specialize, threads

__all__ = ["conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight"]

_FASTMATH = {"contract"}


@numba.njit(cache=True)
def _span(n_out, offset, stride, size):
    """[lo, hi): the outputs o in [0, n_out) whose input position o*stride + offset is inside
    [0, size)."""
    lo = 0
    if offset < 0:
        lo = (-offset + stride - 1) // stride
    last = size - 1 - offset
    hi = 0
    if last >= 0:
        hi = min(n_out, last // stride + 1)
    return lo, max(lo, hi)


@numba.njit(cache=True, fastmath=_FASTMATH)
def _axpy(dst, src, a):
    # Counts from a literal 0 over pre-sliced rows: Numba drops the wraparound test and LLVM
    # vectorizes when both rows are unit-stride.
    for q in range(dst.shape[0]):
        dst[q] += a * src[q]


@numba.njit(cache=True, fastmath=_FASTMATH)
def _fma_rows(dst, a, b):
    for q in range(dst.shape[0]):
        dst[q] += a[q] * b[q]


@numba.njit(cache=True)
def _add(dst, src):
    for q in range(dst.shape[0]):
        dst[q] += src[q]


@numba.njit(cache=True)
def _row_sum(v):
    s = v[0] * 0
    for q in range(v.shape[0]):
        s += v[q]
    return s


def _forward(y, x, w, b, use_b, sh, sw, ph, pw, dil_h, dil_w, groups):
    n_img, c_out, oh_n, ow_n = y.shape
    c_in, h, wd = x.shape[1], x.shape[2], x.shape[3]
    kh_n, kw_n = w.shape[2], w.shape[3]
    cig = c_in // groups
    cog = c_out // groups
    for t in prange(n_img * c_out):
        n = t // c_out
        co = t - n * c_out
        g = co // cog
        out = y[n, co]
        init = b[co] if use_b else y[n, co, 0, 0] * 0
        for r in range(oh_n):
            orow = out[r]
            for q in range(ow_n):
                orow[q] = init
        for cl in range(cig):
            plane = x[n, g * cig + cl]
            for i in range(kh_n):
                off_h = i * dil_h - ph
                r0, r1 = _span(oh_n, off_h, sh, h)
                for j in range(kw_n):
                    off_w = j * dil_w - pw
                    c0, c1 = _span(ow_n, off_w, sw, wd)
                    if c1 <= c0:
                        continue
                    wv = w[co, cl, i, j]
                    a = c0 * sw + off_w
                    e = (c1 - 1) * sw + off_w + 1
                    for r in range(r0, r1):
                        row = r * sh + off_h
                        if sw == 1:
                            _axpy(out[r, c0:c1], plane[row, a:e], wv)
                        else:
                            _axpy(out[r, c0:c1], plane[row, a:e:sw], wv)


def _backward_data(dx, dy, w, sh, sw, ph, pw, dil_h, dil_w, groups):
    n_img, c_in, h, wd = dx.shape
    c_out, oh_n, ow_n = dy.shape[1], dy.shape[2], dy.shape[3]
    kh_n, kw_n = w.shape[2], w.shape[3]
    cig = c_in // groups
    cog = c_out // groups
    for t in prange(n_img * c_in):
        n = t // c_in
        ci = t - n * c_in
        g = ci // cig
        cl = ci - g * cig
        plane = dx[n, ci]
        for r in range(h):
            prow = plane[r]
            for q in range(wd):
                prow[q] = 0
        for ol in range(cog):
            co = g * cog + ol
            grad = dy[n, co]
            for i in range(kh_n):
                off_h = i * dil_h - ph
                r0, r1 = _span(oh_n, off_h, sh, h)
                for j in range(kw_n):
                    off_w = j * dil_w - pw
                    c0, c1 = _span(ow_n, off_w, sw, wd)
                    if c1 <= c0:
                        continue
                    wv = w[co, cl, i, j]
                    a = c0 * sw + off_w
                    e = (c1 - 1) * sw + off_w + 1
                    for r in range(r0, r1):
                        row = r * sh + off_h
                        if sw == 1:
                            _axpy(plane[row, a:e], grad[r, c0:c1], wv)
                        else:
                            _axpy(plane[row, a:e:sw], grad[r, c0:c1], wv)


def _backward_weight(dw, db, use_db, dy, x, sh, sw, ph, pw, dil_h, dil_w, groups):
    c_out, cig, kh_n, kw_n = dw.shape
    n_img, oh_n, ow_n = dy.shape[0], dy.shape[2], dy.shape[3]
    h, wd = x.shape[2], x.shape[3]
    cog = c_out // groups
    for t in prange(c_out * cig):
        co = t // cig
        cl = t - co * cig
        ci = (co // cog) * cig + cl
        # One row of partial sums per tap: the hot loop stays an elementwise multiply-add.
        acc = np.zeros((kh_n * kw_n, ow_n), dtype=dw.dtype)
        for n in range(n_img):
            plane = x[n, ci]
            grad = dy[n, co]
            for i in range(kh_n):
                off_h = i * dil_h - ph
                r0, r1 = _span(oh_n, off_h, sh, h)
                for j in range(kw_n):
                    off_w = j * dil_w - pw
                    c0, c1 = _span(ow_n, off_w, sw, wd)
                    if c1 <= c0:
                        continue
                    a = c0 * sw + off_w
                    e = (c1 - 1) * sw + off_w + 1
                    part = acc[i * kw_n + j, 0:c1 - c0]
                    for r in range(r0, r1):
                        row = r * sh + off_h
                        if sw == 1:
                            _fma_rows(part, grad[r, c0:c1], plane[row, a:e])
                        else:
                            _fma_rows(part, grad[r, c0:c1], plane[row, a:e:sw])
        for i in range(kh_n):
            for j in range(kw_n):
                dw[co, cl, i, j] = _row_sum(acc[i * kw_n + j])
        if use_db and cl == 0:
            racc = np.zeros(ow_n, dtype=dw.dtype)
            for n in range(n_img):
                grad = dy[n, co]
                for r in range(oh_n):
                    _add(racc, grad[r])
            db[co] = _row_sum(racc)


_I = types.int64


def _forward_kernel(dt):
    t = numba_dtype(dt)
    sig = types.void(out_array(t, 4), in_array(t, 4, "C"), in_array(t, 4, "C"),
                     in_array(t, 1, "C"), types.boolean, _I, _I, _I, _I, _I, _I, _I)
    return specialize(_forward, sig, fastmath=_FASTMATH)


def _backward_data_kernel(dt):
    t = numba_dtype(dt)
    sig = types.void(out_array(t, 4), in_array(t, 4, "C"), in_array(t, 4, "C"),
                     _I, _I, _I, _I, _I, _I, _I)
    return specialize(_backward_data, sig, fastmath=_FASTMATH)


def _backward_weight_kernel(dt):
    t = numba_dtype(dt)
    sig = types.void(out_array(t, 4), out_array(t, 1), types.boolean, in_array(t, 4, "C"),
                     in_array(t, 4, "C"), _I, _I, _I, _I, _I, _I, _I)
    return specialize(_backward_weight, sig, fastmath=_FASTMATH)


def _macs(dy_shape, w_shape) -> int:
    n, co, oh, ow = dy_shape
    return n * co * oh * ow * w_shape[1] * w_shape[2] * w_shape[3]


def conv2d_forward(y, x, w, b, sh, sw, ph, pw, dil_h, dil_w, groups):
    """y := conv2d(x, w) + b. y (N, C_out, OH, OW), x (N, C_in, H, W), w (C_out, C_in/groups,
    kh, kw), b (C_out,) or None; ph/pw are the top/left padding, OH/OW come from y."""
    bb = b if b is not None else np.empty(0, y.dtype)
    with threads(2 * _macs(y.shape, w.shape), y.shape[0] * y.shape[1]):
        _forward_kernel(y.dtype)(y, x, w, bb, b is not None, int(sh), int(sw), int(ph),
                                 int(pw), int(dil_h), int(dil_w), int(groups))


def conv2d_backward_data(dx, dy, w, sh, sw, ph, pw, dil_h, dil_w, groups):
    """dx := the gradient of conv2d with respect to its input (every element written)."""
    with threads(2 * _macs(dy.shape, w.shape), dx.shape[0] * dx.shape[1]):
        _backward_data_kernel(dx.dtype)(dx, dy, w, int(sh), int(sw), int(ph), int(pw),
                                        int(dil_h), int(dil_w), int(groups))


def conv2d_backward_weight(dw, db, dy, x, sh, sw, ph, pw, dil_h, dil_w, groups):
    """dw := the gradient of conv2d with respect to w; db (or None) := dy summed over
    (N, OH, OW)."""
    bb = db if db is not None else np.empty(0, dw.dtype)
    with threads(2 * _macs(dy.shape, dw.shape), dw.shape[0] * dw.shape[1]):
        _backward_weight_kernel(dw.dtype)(dw, bb, db is not None, dy, x, int(sh), int(sw),
                                          int(ph), int(pw), int(dil_h), int(dil_w),
                                          int(groups))
