"""Numba fallbacks of the convolution kernels, with the signatures the C++ ones will have.

Two paths, chosen per call by the shape of the product (GEMM_MIN_* below):

* im2col + GEMM (most convolutions): for a chunk of images and one group at a time, the input
  is unfolded into a (C_in/groups * kh * kw, images * OH * OW) column buffer (at most
  COLUMN_BUFFER elements, but always one whole image) and multiplied by the group's weights
  with the Numba GEMM kernel of :mod:`.gemm`: 4-6x the speed of the direct loops on ordinary
  layers (12-20 GFLOPS on one core). Backward-data multiplies the transposed weights by dy into
  the column buffer and folds it back (col2im); backward-weight accumulates ``dy @ cols.T``
  over the chunks.
* direct loops (depthwise and other thin convolutions, where a GEMM with a handful of rows
  costs more in overhead than it saves): one parallel loop over the planes a kernel writes, so
  every output element has one writer; for each kernel tap the loop over output columns runs
  over a precomputed range whose inputs lie inside the image, so padding is never materialized
  or tested per element. Backward-weight accumulates elementwise products into a row buffer
  summed once at the end, so its hot loop is a vectorizable multiply-add rather than a dot
  product (which LLVM would only vectorize with reassociation, i.e. fastmath).

Only the top/left padding is passed: the bottom/right padding follows from the output size, so
"same" padding with an even kernel needs no extra argument. Every kernel writes all of its
outputs (untouched dx positions, such as rows a stride skips, become 0).

Arguments are trusted: ``fastnn.ops`` checked the sizes, made every array C-contiguous and
never calls with an empty dimension. fastmath is limited to 'contract' (fused multiply-add).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange, types

from .elementwise import activation, in_array, numba_dtype, out_array, specialize, threads
from .gemm import gemm as _gemm

__all__ = ["conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight"]

_FASTMATH = {"contract"}

# When the GEMM path pays. Each GEMM call costs some 40 us before its first flop (argument
# typing, thread hand-off), which the direct loops, at a quarter of the GEMM's speed, only make
# up for beyond about 2**18 multiply-adds; and a product needs a few rows (output channels per
# group; the micro-kernel works on 4) and some depth (C_in/groups * kh * kw) to run at speed.
# Tests lower or raise these to send every convolution down each path.
GEMM_MIN_ROWS = 4
GEMM_MIN_DEPTH = 4
GEMM_MIN_MACS = 1 << 18
# Elements of the column buffer: as many images as fit are unfolded together (fewer, larger
# GEMM calls), and never fewer than one.
COLUMN_BUFFER = 1 << 20


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
def _copy(dst, src):
    for q in range(dst.shape[0]):
        dst[q] = src[q]


@numba.njit(cache=True)
def _row_sum(v):
    s = v[0]
    for q in range(1, v.shape[0]):
        s += v[q]
    return s


def _direct_forward(y, x, w, b, use_b, sh, sw, ph, pw, dil_h, dil_w, groups):
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
        init = b[co] if use_b else 0.0
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


def _direct_backward_data(dx, dy, w, sh, sw, ph, pw, dil_h, dil_w, groups):
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


def _direct_backward_weight(dw, db, use_db, dy, x, sh, sw, ph, pw, dil_h, dil_w, groups):
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
    return specialize(_direct_forward, sig, fastmath=_FASTMATH)


def _backward_data_kernel(dt):
    t = numba_dtype(dt)
    sig = types.void(out_array(t, 4), in_array(t, 4, "C"), in_array(t, 4, "C"),
                     _I, _I, _I, _I, _I, _I, _I)
    return specialize(_direct_backward_data, sig, fastmath=_FASTMATH)


def _backward_weight_kernel(dt):
    t = numba_dtype(dt)
    sig = types.void(out_array(t, 4), out_array(t, 1), types.boolean, in_array(t, 4, "C"),
                     in_array(t, 4, "C"), _I, _I, _I, _I, _I, _I, _I)
    return specialize(_direct_backward_weight, sig, fastmath=_FASTMATH)


def _im2col(col, x, c_first, kh_n, kw_n, oh_n, ow_n, sh, sw, ph, pw, dil_h, dil_w):
    # Row (c, i, j) of col holds, for every output pixel of every image of the chunk x, the
    # input that tap (i, j) of channel c_first + c sees there (0 in the padding).
    b_n, h, wd = x.shape[0], x.shape[2], x.shape[3]
    taps = kh_n * kw_n
    p_n = oh_n * ow_n
    for row in range(col.shape[0]):
        c = row // taps
        i = (row - c * taps) // kw_n
        j = row - c * taps - i * kw_n
        off_h = i * dil_h - ph
        off_w = j * dil_w - pw
        r0, r1 = _span(oh_n, off_h, sh, h)
        c0, c1 = _span(ow_n, off_w, sw, wd)
        a = c0 * sw + off_w
        for b in range(b_n):
            plane = x[b, c_first + c]
            dst = col[row, b * p_n:(b + 1) * p_n]
            for r in range(oh_n):
                out = dst[r * ow_n:(r + 1) * ow_n]
                if r < r0 or r >= r1 or c1 <= c0:
                    for q in range(ow_n):
                        out[q] = 0
                    continue
                for q in range(c0):
                    out[q] = 0
                for q in range(c1, ow_n):
                    out[q] = 0
                src = plane[r * sh + off_h]
                if sw == 1:
                    _copy(out[c0:c1], src[a:a + c1 - c0])
                else:
                    _copy(out[c0:c1], src[a:a + (c1 - c0 - 1) * sw + 1:sw])


def _col2im(dx, col, c_first, kh_n, kw_n, oh_n, ow_n, sh, sw, ph, pw, dil_h, dil_w):
    # The adjoint of _im2col: each plane (b, c_first + c) of the chunk dx, one writer each,
    # gathers what its kh * kw rows of col hold for image b.
    b_n, h, wd = dx.shape[0], dx.shape[2], dx.shape[3]
    taps = kh_n * kw_n
    cig = col.shape[0] // taps
    p_n = oh_n * ow_n
    for t in range(b_n * cig):
        b = t // cig
        c = t - b * cig
        plane = dx[b, c_first + c]
        for r in range(h):
            prow = plane[r]
            for q in range(wd):
                prow[q] = 0
        for i in range(kh_n):
            off_h = i * dil_h - ph
            r0, r1 = _span(oh_n, off_h, sh, h)
            for j in range(kw_n):
                off_w = j * dil_w - pw
                c0, c1 = _span(ow_n, off_w, sw, wd)
                if c1 <= c0:
                    continue
                src = col[(c * kh_n + i) * kw_n + j, b * p_n:(b + 1) * p_n]
                a = c0 * sw + off_w
                e = (c1 - 1) * sw + off_w + 1
                for r in range(r0, r1):
                    row = r * sh + off_h
                    seg = src[r * ow_n + c0:r * ow_n + c1]
                    if sw == 1:
                        _add(plane[row, a:e], seg)
                    else:
                        _add(plane[row, a:e:sw], seg)


def _im2col_kernel(dt):
    t = numba_dtype(dt)
    sig = types.void(out_array(t, 2), in_array(t, 4, "C"), _I, _I, _I, _I, _I, _I, _I, _I, _I,
                     _I, _I)
    return specialize(_im2col, sig, parallel=False)


def _col2im_kernel(dt):
    t = numba_dtype(dt)
    sig = types.void(out_array(t, 4), in_array(t, 2, "C"), _I, _I, _I, _I, _I, _I, _I, _I, _I,
                     _I, _I)
    return specialize(_col2im, sig, parallel=False)


class _Conv:
    """One call's sizes, the path it takes, and the GEMM path's buffers and chunk loop."""

    def __init__(self, x_shape, w_shape, y_shape, dtype, sh, sw, ph, pw, dil_h, dil_w, groups):
        self.n, self.c_in, self.h, self.w = (int(v) for v in x_shape)
        self.c_out, self.cig, self.kh, self.kw = (int(v) for v in w_shape)
        self.p = int(y_shape[2]) * int(y_shape[3])
        self.dtype = dtype
        self.groups = int(groups)
        self.cog = self.c_out // self.groups
        self.depth = self.cig * self.kh * self.kw
        self.geom = (int(sh), int(sw), int(ph), int(pw), int(dil_h), int(dil_w))
        self.unfold = (self.kh, self.kw, int(y_shape[2]), int(y_shape[3])) + self.geom
        self.chunk = max(1, min(self.n, COLUMN_BUFFER // max(self.depth * self.p, 1)))

    def macs(self) -> int:
        return self.n * self.c_out * self.p * self.depth

    def use_gemm(self) -> bool:
        return (self.cog >= GEMM_MIN_ROWS and self.depth >= GEMM_MIN_DEPTH
                and self.cog * self.depth * self.chunk * self.p >= GEMM_MIN_MACS)

    def chunks(self):
        """(first image, images, group rows slice, group's first input channel) per GEMM."""
        for n0 in range(0, self.n, self.chunk):
            nb = min(self.chunk, self.n - n0)
            for g in range(self.groups):
                yield n0, nb, slice(g * self.cog, (g + 1) * self.cog), g * self.cig

    def buffer(self, rows: int, nb: int, flat):
        """A C-contiguous (rows, nb * P) view of the start of the flat buffer."""
        return flat[:rows * nb * self.p].reshape(rows, nb * self.p)

    def new_buffer(self, rows: int):
        return np.empty(rows * self.chunk * self.p, self.dtype)

    # Unfolding and folding back move depth * P elements against the GEMM's 2 * cog * depth * P
    # flops, so they run on one thread: a parallel version would save little and cost seconds
    # of compilation per dtype.
    def im2col(self, cols, x_chunk, c_first) -> None:
        _im2col_kernel(self.dtype)(cols, x_chunk, c_first, *self.unfold)

    def col2im(self, dx_chunk, cols, c_first) -> None:
        _col2im_kernel(self.dtype)(dx_chunk, cols, c_first, *self.unfold)

    def gathered(self, d3, n0, nb, rows, flat):
        """d3[n0:n0+nb, rows] (nb, cog, P) as the (cog, nb * P) matrix the GEMM takes."""
        if nb == 1:
            return d3[n0, rows]
        out = self.buffer(self.cog, nb, flat)
        out.reshape(self.cog, nb, self.p)[...] = d3[n0:n0 + nb, rows].transpose(1, 0, 2)
        return out


def conv2d_forward(y, x, w, b, sh, sw, ph, pw, dil_h, dil_w, groups, act=0, act_param=0.0):
    """y := act(conv2d(x, w) + b). y (N, C_out, OH, OW), x (N, C_in, H, W), w (C_out,
    C_in/groups, kh, kw), b (C_out,) or None; ph/pw are the top/left padding, OH/OW come from y;
    act an activation code (activations.h; 0: none) with its parameter."""
    _forward_plain(y, x, w, b, sh, sw, ph, pw, dil_h, dil_w, groups)
    if act:
        activation(y, y, act, act_param)


def _forward_plain(y, x, w, b, sh, sw, ph, pw, dil_h, dil_w, groups):
    cv = _Conv(x.shape, w.shape, y.shape, y.dtype, sh, sw, ph, pw, dil_h, dil_w, groups)
    if not cv.use_gemm():
        bb = b if b is not None else np.empty(0, y.dtype)
        with threads(2 * cv.macs(), cv.n * cv.c_out):
            _forward_kernel(y.dtype)(y, x, w, bb, b is not None, *cv.geom, cv.groups)
        return
    y3 = y.reshape(cv.n, cv.c_out, cv.p)
    w2 = w.reshape(cv.c_out, cv.depth)
    col_buf = cv.new_buffer(cv.depth)
    out_buf = cv.new_buffer(cv.cog) if cv.chunk > 1 else None
    for n0, nb, rows, c_first in cv.chunks():
        cols = cv.buffer(cv.depth, nb, col_buf)
        cv.im2col(cols, x[n0:n0 + nb], c_first)
        if nb == 1:
            _gemm(y3[n0, rows], w2[rows], cols, None, 1.0, 0.0)
        else:
            out = cv.buffer(cv.cog, nb, out_buf)
            _gemm(out, w2[rows], cols, None, 1.0, 0.0)
            y3[n0:n0 + nb, rows] = out.reshape(cv.cog, nb, cv.p).transpose(1, 0, 2)
    if b is not None:
        y3 += b[:, None]


def conv2d_backward_data(dx, dy, w, sh, sw, ph, pw, dil_h, dil_w, groups):
    """dx := the gradient of conv2d with respect to its input (every element written)."""
    cv = _Conv(dx.shape, w.shape, dy.shape, dx.dtype, sh, sw, ph, pw, dil_h, dil_w, groups)
    if not cv.use_gemm():
        with threads(2 * cv.macs(), cv.n * cv.c_in):
            _backward_data_kernel(dx.dtype)(dx, dy, w, *cv.geom, cv.groups)
        return
    dy3 = dy.reshape(cv.n, cv.c_out, cv.p)
    w2 = w.reshape(cv.c_out, cv.depth)
    col_buf = cv.new_buffer(cv.depth)
    dy_buf = cv.new_buffer(cv.cog) if cv.chunk > 1 else None
    for n0, nb, rows, c_first in cv.chunks():
        cols = cv.buffer(cv.depth, nb, col_buf)
        _gemm(cols, w2[rows].T, cv.gathered(dy3, n0, nb, rows, dy_buf), None, 1.0, 0.0)
        cv.col2im(dx[n0:n0 + nb], cols, c_first)


def conv2d_backward_weight(dw, db, dy, x, sh, sw, ph, pw, dil_h, dil_w, groups):
    """dw := the gradient of conv2d with respect to w; db (or None) := dy summed over
    (N, OH, OW)."""
    cv = _Conv(x.shape, dw.shape, dy.shape, dw.dtype, sh, sw, ph, pw, dil_h, dil_w, groups)
    if not cv.use_gemm():
        bb = db if db is not None else np.empty(0, dw.dtype)
        with threads(2 * cv.macs(), cv.c_out * cv.cig):
            _backward_weight_kernel(dw.dtype)(dw, bb, db is not None, dy, x, *cv.geom,
                                              cv.groups)
        return
    dy3 = dy.reshape(cv.n, cv.c_out, cv.p)
    dw2 = dw.reshape(cv.c_out, cv.depth)
    col_buf = cv.new_buffer(cv.depth)
    dy_buf = cv.new_buffer(cv.cog) if cv.chunk > 1 else None
    # The GEMM zeroes its output before it reads c, so it cannot accumulate into dw itself:
    # later chunks land in part and are added.
    part = np.empty((cv.cog, cv.depth), dw.dtype)
    for n0, nb, rows, c_first in cv.chunks():
        cols = cv.buffer(cv.depth, nb, col_buf)
        cv.im2col(cols, x[n0:n0 + nb], c_first)
        grad = cv.gathered(dy3, n0, nb, rows, dy_buf)
        if n0 == 0:
            _gemm(dw2[rows], grad, cols.T, None, 1.0, 0.0)
        else:
            _gemm(part, grad, cols.T, None, 1.0, 0.0)
            dw2[rows] += part
    if db is not None:
        np.sum(dy3, axis=(0, 2), out=db)
