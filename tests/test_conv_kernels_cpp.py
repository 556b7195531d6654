"""The C++ convolution and pooling kernels (fastnn._C), called directly, against float64
references written here as plain loops over a padded input.

Shapes are awkward on purpose: odd sizes, strides 2 and 3, dilation 2, groups and depthwise,
padding larger than the kernel, batch 1, 1x1 and non-square kernels, an output smaller than the
input allows (the transposed convolution's output padding) and asymmetric "same" padding. Every
kernel must also give bit-identical results at 1, 2 and 3 threads.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import backend as _backend
from helpers import check_op

_C = _backend._C
KERNELS = ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight",
           "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward",
           "avg_pool2d_backward")
pytestmark = pytest.mark.skipif(
    _C is None or not all(hasattr(_C, k) for k in KERNELS),
    reason="fastnn._C without the convolution and pooling kernels")

DTYPES = [np.float32, np.float64]


@pytest.fixture
def threads():
    prev = fastnn.get_num_threads()
    yield fastnn.set_num_threads
    fastnn.set_num_threads(prev)


# ---------------------------------------------------------------------------------------------
# float64 references: loops over kernel taps and groups on an explicitly padded input

def _out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _padded(x, ph, pw, need_h, need_w):
    """x zero-padded by (ph, pw) at the top/left and to at least need_h x need_w; the padded
    plane may also keep input rows/columns no window reads."""
    n, c, h, w = x.shape
    xp = np.zeros((n, c, max(need_h, ph + h), max(need_w, pw + w)))
    xp[:, :, ph:ph + h, pw:pw + w] = x
    return xp


def _need(o, k, s, d):
    return (o - 1) * s + (k - 1) * d + 1


def ref_conv(x, w, b, s, p, d, groups, out_hw):
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    n, ci, _, _ = x.shape
    co, cgi, kh, kw = w.shape
    oh, ow = out_hw
    cgo = co // groups
    xp = _padded(x, p[0], p[1], _need(oh, kh, s[0], d[0]), _need(ow, kw, s[1], d[1]))
    y = np.zeros((n, co, oh, ow))
    for g in range(groups):
        gi, go = slice(g * cgi, (g + 1) * cgi), slice(g * cgo, (g + 1) * cgo)
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, gi, i * d[0]:i * d[0] + (oh - 1) * s[0] + 1:s[0],
                           j * d[1]:j * d[1] + (ow - 1) * s[1] + 1:s[1]]
                y[:, go] += np.einsum("nchw,oc->nohw", patch, w[go, :, i, j])
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]
    return y


def ref_conv_backward(x, w, dy, s, p, d, groups):
    """(dx, dw, db) of ref_conv."""
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    dy = dy.astype(np.float64)
    n, ci, h, wd = x.shape
    co, cgi, kh, kw = w.shape
    oh, ow = dy.shape[2:]
    cgo = co // groups
    xp = _padded(x, p[0], p[1], _need(oh, kh, s[0], d[0]), _need(ow, kw, s[1], d[1]))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for g in range(groups):
        gi, go = slice(g * cgi, (g + 1) * cgi), slice(g * cgo, (g + 1) * cgo)
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * d[0], i * d[0] + (oh - 1) * s[0] + 1, s[0])
                cols = slice(j * d[1], j * d[1] + (ow - 1) * s[1] + 1, s[1])
                dxp[:, gi, rows, cols] += np.einsum("nohw,oc->nchw", dy[:, go], w[go, :, i, j])
                dw[go, :, i, j] = np.einsum("nohw,nchw->oc", dy[:, go], xp[:, gi, rows, cols])
    dx = dxp[:, :, p[0]:p[0] + h, p[1]:p[1] + wd]
    return dx, dw, dy.sum(axis=(0, 2, 3))


# (n, ci, h, w, co, (kh, kw), stride, padding, dilation, groups, output (oh, ow) or None)
CONV_CASES = [
    (2, 3, 9, 11, 5, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),        # basic, odd sizes
    (2, 4, 13, 10, 6, (3, 3), (2, 2), (1, 1), (1, 1), 1, None),       # stride 2
    (1, 5, 17, 15, 7, (2, 5), (3, 2), (0, 2), (1, 1), 1, None),       # stride 3, non-square
    (2, 4, 12, 13, 3, (3, 3), (1, 1), (2, 2), (2, 2), 1, None),       # dilation 2
    (3, 6, 9, 8, 4, (3, 3), (1, 1), (1, 1), (1, 1), 2, None),         # groups 2
    (2, 4, 11, 9, 6, (3, 2), (2, 1), (1, 0), (2, 1), 2, None),        # groups, stride, dilation
    (2, 6, 10, 9, 6, (3, 3), (1, 1), (1, 1), (1, 1), 6, None),        # depthwise
    (2, 3, 11, 10, 6, (3, 3), (2, 2), (1, 1), (1, 1), 3, None),       # depthwise x2, stride 2
    (1, 1, 12, 9, 4, (5, 3), (1, 1), (2, 1), (1, 1), 1, None),        # one input channel
    (1, 3, 5, 6, 4, (3, 3), (1, 1), (3, 4), (1, 1), 1, None),         # padding > kernel
    (1, 4, 5, 6, 3, (3, 3), (2, 2), (3, 2), (1, 1), 1, None),         # padding > kernel, stride
    (1, 16, 33, 35, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),      # batch 1, several bands
    (1, 64, 20, 18, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),      # long columns, bands
    (3, 8, 7, 9, 5, (1, 1), (1, 1), (0, 0), (1, 1), 1, None),         # 1x1 (pointwise)
    (2, 8, 7, 9, 6, (1, 1), (1, 1), (0, 0), (1, 1), 2, None),         # 1x1, groups 2
    (2, 5, 9, 8, 4, (1, 1), (2, 2), (0, 0), (1, 1), 1, None),         # 1x1, stride 2
    (2, 3, 6, 7, 4, (1, 1), (1, 1), (1, 2), (1, 1), 1, None),         # 1x1 with padding
    (2, 3, 8, 7, 5, (4, 4), (1, 1), (1, 1), (1, 1), 1, (8, 7)),       # "same", even kernel
    (2, 3, 10, 12, 4, (3, 3), (2, 2), (1, 1), (1, 1), 1, (4, 5)),     # output cut short
    (2, 4, 9, 9, 6, (3, 3), (2, 2), (0, 0), (1, 1), 1, (3, 3)),       # rows no window reads
    (1, 2, 7, 23, 3, (1, 7), (1, 3), (0, 3), (1, 1), 1, None),        # 1x7, wide stride
    (2, 6, 13, 12, 5, (3, 3), (3, 2), (1, 1), (2, 1), 1, None),       # stride 3x2, dilation
    (1, 4, 14, 15, 3, (1, 1), (2, 3), (0, 0), (1, 1), 1, None),       # 1x1, one stride phase
    # Winograd F(2x2, 3x3): 3x3 stride 1, 16+ channels a group, 64+ output tiles
    (2, 16, 17, 19, 24, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),     # odd rows and columns
    (1, 16, 20, 19, 16, (3, 3), (1, 1), (0, 0), (1, 1), 1, None),     # no padding
    (1, 16, 15, 16, 20, (3, 3), (1, 1), (2, 2), (1, 1), 1, None),     # padding 2
    (1, 17, 15, 16, 16, (3, 3), (1, 1), (3, 3), (1, 1), 1, None),     # padding > kernel
    (2, 32, 17, 16, 32, (3, 3), (1, 1), (1, 1), (1, 1), 2, None),     # groups of 16
    (1, 16, 66, 65, 16, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),     # two bands of tiles
    (2, 16, 20, 20, 16, (3, 3), (1, 1), (1, 1), (1, 1), 1, (18, 17)),  # output cut short
    # Winograd on small images: several whole images a band, the last band short
    (20, 32, 7, 7, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),      # 7x7: 16 tiles an image
    (9, 32, 13, 11, 40, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),     # odd sizes, 6 + 3 images
    # padded rows within one AVX-512 vector: the whole-plane input transform (read in place)
    (12, 32, 14, 14, 64, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),    # the Fashion-MNIST CNN's
    (10, 32, 14, 13, 32, (3, 3), (1, 1), (0, 0), (1, 1), 1, None),    # no padding
    (8, 32, 10, 9, 33, (3, 3), (1, 1), (2, 2), (1, 1), 1, None),      # padding 2
    (8, 32, 16, 17, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, (13, 14)),  # rows past a vector
    (6, 64, 9, 9, 64, (3, 3), (1, 1), (1, 1), (1, 1), 2, None),       # groups of 32
    # one input channel, stride 1 (a first layer): output channels in register blocks of 8
    (3, 1, 28, 28, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),      # the Fashion-MNIST CNN's
    (2, 1, 9, 30, 11, (3, 5), (1, 1), (2, 1), (1, 1), 1, None),       # blocks of 8 and 3, 2 vectors
    (2, 1, 7, 16, 5, (2, 4), (1, 1), (0, 3), (1, 1), 1, (6, 19)),     # padding > half, cut short
    (1, 1, 6, 40, 9, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),        # rows past two vectors
    (2, 1, 10, 30, 11, (3, 3), (1, 1), (0, 2), (1, 1), 1, None),      # 32 columns, pairs + 1
    (3, 1, 8, 9, 5, (3, 3), (1, 1), (2, 0), (1, 1), 1, None),         # padding 2 rows, none
    # several small images in one GEMM, weights beyond the GEMM's direct-path budget
    (5, 160, 5, 6, 100, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),
]


def _case_id(c):
    n, ci, h, w, co, k, s, p, d, g, out = c
    return f"n{n}c{ci}x{h}x{w}o{co}k{k[0]}{k[1]}s{s[0]}{s[1]}p{p[0]}{p[1]}d{d[0]}{d[1]}g{g}"


def _conv_data(rng, case, dtype, bias=True):
    n, ci, h, w, co, k, s, p, d, g, out = case
    if out is None:
        out = (_out_size(h, k[0], s[0], p[0], d[0]), _out_size(w, k[1], s[1], p[1], d[1]))
    x = rng.standard_normal((n, ci, h, w)).astype(dtype)
    wt = rng.standard_normal((co, ci // g, k[0], k[1])).astype(dtype)
    b = rng.standard_normal(co).astype(dtype) if bias else None
    dy = rng.standard_normal((n, co) + tuple(out)).astype(dtype)
    return x, wt, b, dy, out


def _geom(case):
    _, _, _, _, _, _, s, p, d, g, _ = case
    return (s[0], s[1], p[0], p[1], d[0], d[1], g)


def run_forward(x, w, b, out, case):
    y = np.full((x.shape[0], w.shape[0]) + tuple(out), np.nan, x.dtype)
    _C.conv2d_forward(y, x, w, b, *_geom(case))
    return y


def run_backward(x, w, dy, case, with_db=True):
    dx = np.full(x.shape, np.nan, x.dtype)
    dw = np.full(w.shape, np.nan, x.dtype)
    db = np.full(w.shape[0], np.nan, x.dtype) if with_db else None
    _C.conv2d_backward_data(dx, dy, w, *_geom(case))
    _C.conv2d_backward_weight(dw, db, dy, x, *_geom(case))
    return dx, dw, db


@pytest.mark.parametrize("case", CONV_CASES, ids=_case_id)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_forward(rng, case, dtype, bias):
    x, w, b, _, out = _conv_data(rng, case, dtype, bias)
    y = run_forward(x, w, b, out, case)
    s, p, d, g = case[6], case[7], case[8], case[9]
    ref = ref_conv(x, w, b, s, p, d, g, out)
    check_op(y, ref, dtype, reduction=w.shape[1] * w.shape[2] * w.shape[3])


@pytest.mark.parametrize("case", CONV_CASES, ids=_case_id)
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_backward(rng, case, dtype):
    x, w, _, dy, out = _conv_data(rng, case, dtype)
    dx, dw, db = run_backward(x, w, dy, case)
    s, p, d, g = case[6], case[7], case[8], case[9]
    rdx, rdw, rdb = ref_conv_backward(x, w, dy, s, p, d, g)
    co, _, kh, kw = w.shape
    check_op(dx, rdx, dtype, reduction=(co // g) * kh * kw)
    check_op(dw, rdw, dtype, reduction=dy.shape[0] * dy.shape[2] * dy.shape[3])
    check_op(db, rdb, dtype, reduction=dy.shape[0] * dy.shape[2] * dy.shape[3])


def test_conv2d_backward_weight_without_db(rng):
    case = CONV_CASES[1]
    x, w, _, dy, _ = _conv_data(rng, case, np.float64)
    _, dw, db = run_backward(x, w, dy, case, with_db=False)
    assert db is None
    check_op(dw, ref_conv_backward(x, w, dy, *case[6:10])[1], np.float64,
             reduction=dy[:, 0].size)


ISA_CASES = [CONV_CASES[i] for i in (0, 1, 4, 6, 13)] + [
    (2, 16, 17, 19, 24, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),     # Winograd
    (9, 32, 13, 11, 40, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),     # Winograd, images a band
    (10, 32, 14, 13, 32, (3, 3), (1, 1), (0, 0), (1, 1), 1, None),    # whole-plane transform
    (8, 32, 16, 17, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, (13, 14)),  # the same, cut short
    (2, 1, 9, 30, 11, (3, 5), (1, 1), (2, 1), (1, 1), 1, None),       # one input channel
    # the AVX2 and AVX-512 loops of the Fashion-MNIST CNN and their edges: one input channel
    # (padded copies, blocks of 3, 4 and 8 channels, tails of 1 to 15 columns)
    (3, 1, 28, 28, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),
    (2, 1, 7, 16, 5, (2, 4), (1, 1), (0, 3), (1, 1), 1, (6, 19)),     # padding > half, cut short
    (2, 1, 10, 30, 11, (3, 3), (1, 1), (0, 2), (1, 1), 1, None),      # 32 columns
    (3, 1, 8, 9, 5, (3, 3), (1, 1), (2, 0), (1, 1), 1, None),         # padding 2 rows, none
    (2, 1, 11, 17, 7, (3, 3), (1, 1), (1, 1), (1, 1), 1, (9, 15)),    # cut short: 15 columns
    (2, 1, 5, 1, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),         # one column
    # the whole-plane Winograd transforms: the CNN's second layer, padding 2, odd sizes
    (12, 32, 14, 14, 64, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),
    (8, 32, 10, 9, 33, (3, 3), (1, 1), (2, 2), (1, 1), 1, None),
    (9, 32, 5, 3, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),
]


@pytest.mark.parametrize("case", ISA_CASES, ids=_case_id)
def test_conv2d_every_isa(rng, isa, case):
    """The GEMMs and Winograd transforms behind the convolution under each instruction set."""
    x, w, b, dy, out = _conv_data(rng, case, np.float32)
    s, p, d, g = case[6], case[7], case[8], case[9]
    check_op(run_forward(x, w, b, out, case), ref_conv(x, w, b, s, p, d, g, out),
             reduction=w[0].size)
    dx, dw, db = run_backward(x, w, dy, case)
    rdx, rdw, rdb = ref_conv_backward(x, w, dy, s, p, d, g)
    check_op(dx, rdx, reduction=w.shape[0] // g * w[0, 0].size)
    check_op(dw, rdw, reduction=dy[:, 0].size)


def test_conv2d_one_channel_unread_columns_stay_out(rng, isa):
    """A first layer whose output is cut short never reads the input's last columns: an inf
    there must not reach the weight gradient through a vector lane past the output row (the
    single-channel loops compute whole vectors; 0 * inf would be NaN)."""
    case = (2, 1, 11, 17, 7, (3, 3), (1, 1), (1, 1), (1, 1), 1, (9, 15))
    x, w, b, dy, out = _conv_data(rng, case, np.float32)
    x[:, :, :, 16] = np.inf
    x[0, 0, 10, :] = np.nan  # row 10 is read by no window either (9 output rows, padding 1)
    dx, dw, db = run_backward(x, w, dy, case)
    rdx, rdw, rdb = ref_conv_backward(x, w, dy, (1, 1), (1, 1), (1, 1), 1)
    assert np.isfinite(rdw).all() and np.isfinite(dw).all()
    check_op(dw, rdw, reduction=dy[:, 0].size)
    check_op(run_forward(x, w, b, out, case), ref_conv(x, w, b, (1, 1), (1, 1), (1, 1), 1, out),
             reduction=w[0].size)


def test_conv2d_nan_inf_propagate(rng):
    case = (2, 4, 9, 8, 6, (3, 3), (1, 1), (1, 1), (1, 1), 1, None)
    x, w, b, dy, out = _conv_data(rng, case, np.float32)
    x[0, 1, 4, 3] = np.nan
    x[1, 2, 0, 0] = np.inf
    y = run_forward(x, w, b, out, case)
    ref = ref_conv(x, w, b, (1, 1), (1, 1), (1, 1), 1, out)
    check_op(y, ref, reduction=w[0].size)


def test_conv2d_winograd_nan_propagates(rng):
    """NaN inputs give NaN exactly where the direct sum does (3x3 stride 1: Winograd)."""
    case = (2, 16, 18, 17, 16, (3, 3), (1, 1), (1, 1), (1, 1), 1, None)
    x, w, b, dy, out = _conv_data(rng, case, np.float32)
    x[0, 3, 5, 7] = np.nan
    x[1, 0, 0, 16] = np.nan
    x[1, 9, 17, 0] = np.nan
    ref = ref_conv(x, w, b, (1, 1), (1, 1), (1, 1), 1, out)
    check_op(run_forward(x, w, b, out, case), ref, reduction=w[0].size)
    dxr = ref_conv_backward(x, w, dy, (1, 1), (1, 1), (1, 1), 1)[0]
    dy[0, 2, 4, 4] = np.nan
    dx = run_backward(x, w, dy, case)[0]
    assert np.isnan(dx).sum() > 0
    assert np.array_equal(np.isnan(dx), np.isnan(
        ref_conv_backward(x, w, dy, (1, 1), (1, 1), (1, 1), 1)[0]))
    assert not np.isnan(dxr).any()


# ---- bit-identical at any thread count --------------------------------------------------------

DETERMINISM_CASES = [
    (5, 16, 30, 29, 12, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),     # stride 1, bands
    (5, 8, 31, 27, 10, (3, 3), (2, 2), (1, 1), (1, 1), 2, None),      # stride 2, groups
    (4, 12, 20, 21, 12, (3, 3), (1, 1), (1, 1), (1, 1), 12, None),    # depthwise
    (9, 16, 15, 14, 8, (1, 1), (1, 1), (0, 0), (1, 1), 1, None),      # pointwise
    (1, 32, 40, 37, 16, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),     # batch 1
    (1, 8, 33, 34, 4, (3, 3), (2, 2), (1, 1), (1, 1), 1, None),       # batch 1, stride 2
    (3, 16, 66, 65, 16, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),     # Winograd, bands
    (7, 24, 6, 7, 20, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),       # images batched
    (9, 32, 13, 11, 40, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),     # Winograd, images a band
    (6, 1, 12, 13, 16, (3, 3), (1, 1), (1, 1), (1, 1), 1, None),      # one input channel: GEMM
]


@pytest.mark.parametrize("case", DETERMINISM_CASES, ids=_case_id)
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_same_bits_at_any_thread_count(rng, threads, case, dtype):
    x, w, b, dy, out = _conv_data(rng, case, dtype)
    results = []
    for nt in (1, 2, 3):
        threads(nt)
        results.append((run_forward(x, w, b, out, case),) + run_backward(x, w, dy, case))
    for other in results[1:]:
        for a, o in zip(results[0], other):
            assert a.tobytes() == o.tobytes()


# ---------------------------------------------------------------------------------------------
# pooling references: one window at a time, all planes at once

def _pool_out(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def ref_max_pool(x, k, s, p):
    """(y, argmax): np.argmax returns the first maximum, or the first NaN: the kernels' rule."""
    n, c, h, w = x.shape
    oh, ow = _pool_out(h, k[0], s[0], p[0]), _pool_out(w, k[1], s[1], p[1])
    y = np.empty((n, c, oh, ow), x.dtype)
    am = np.empty((n, c, oh, ow), np.int64)
    for r in range(oh):
        h0, h1 = max(r * s[0] - p[0], 0), min(r * s[0] - p[0] + k[0], h)
        for q in range(ow):
            w0, w1 = max(q * s[1] - p[1], 0), min(q * s[1] - p[1] + k[1], w)
            win = x[:, :, h0:h1, w0:w1].reshape(n, c, -1)
            i = np.argmax(win, axis=2)
            y[:, :, r, q] = np.take_along_axis(win, i[..., None], axis=2)[..., 0]
            am[:, :, r, q] = (h0 + i // (w1 - w0)) * w + w0 + i % (w1 - w0)
    return y, am


def ref_max_pool_backward(x_shape, am, dy):
    n, c, h, w = x_shape
    dx = np.zeros((n * c, h * w))
    np.add.at(dx, (np.arange(n * c)[:, None], am.reshape(n * c, -1)),
              dy.reshape(n * c, -1).astype(np.float64))
    return dx.reshape(x_shape)


def _divisor(r0, k, size, p, cip):
    start = r0 - p
    end = min(start + k, size + p)
    if cip:
        return end - start
    return min(end, size) - max(start, 0)


def ref_avg_pool(x, k, s, p, cip):
    n, c, h, w = x.shape
    oh, ow = _pool_out(h, k[0], s[0], p[0]), _pool_out(w, k[1], s[1], p[1])
    xp = np.zeros((n, c, h + 2 * p[0], w + 2 * p[1]))
    xp[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = x
    y = np.empty((n, c, oh, ow))
    for r in range(oh):
        for q in range(ow):
            win = xp[:, :, r * s[0]:r * s[0] + k[0], q * s[1]:q * s[1] + k[1]]
            div = _divisor(r * s[0], k[0], h, p[0], cip) * _divisor(q * s[1], k[1], w, p[1], cip)
            y[:, :, r, q] = win.sum(axis=(2, 3)) / div
    return y


def ref_avg_pool_backward(x_shape, dy, k, s, p, cip):
    n, c, h, w = x_shape
    oh, ow = dy.shape[2:]
    dxp = np.zeros((n, c, h + 2 * p[0], w + 2 * p[1]))
    for r in range(oh):
        for q in range(ow):
            div = _divisor(r * s[0], k[0], h, p[0], cip) * _divisor(q * s[1], k[1], w, p[1], cip)
            dxp[:, :, r * s[0]:r * s[0] + k[0], q * s[1]:q * s[1] + k[1]] += (
                dy[:, :, r, q, None, None].astype(np.float64) / div)
    return dxp[:, :, p[0]:p[0] + h, p[1]:p[1] + w]


# (n, c, h, w, (kh, kw), (sh, sw), (ph, pw))
POOL_CASES = [
    (2, 3, 8, 8, (2, 2), (2, 2), (0, 0)),
    (2, 3, 9, 11, (2, 2), (2, 2), (0, 0)),       # odd: last row/column unused
    (1, 2, 6, 40, (2, 2), (2, 2), (0, 0)),       # 20 outputs a row: one vector and a tail
    (1, 2, 5, 66, (2, 2), (2, 2), (0, 0)),       # 33 a row
    (3, 2, 28, 28, (2, 2), (2, 2), (0, 0)),      # 14 a row, the benchmark's planes
    (2, 3, 9, 10, (3, 3), (2, 2), (1, 1)),       # ResNet stem pooling
    (2, 3, 7, 8, (3, 3), (1, 1), (1, 1)),        # overlapping windows
    (1, 4, 9, 13, (2, 3), (1, 2), (1, 1)),       # non-square
    (2, 2, 5, 7, (5, 7), (5, 7), (0, 0)),        # one window a plane (global)
    (1, 3, 11, 10, (3, 2), (3, 3), (1, 1)),
    (1, 1, 1, 1, (1, 1), (1, 1), (0, 0)),
]


def _pool_id(c):
    n, ch, h, w, k, s, p = c
    return f"n{n}c{ch}x{h}x{w}k{k[0]}{k[1]}s{s[0]}{s[1]}p{p[0]}{p[1]}"


def _pool_run_max(x, k, s, p):
    n, c, h, w = x.shape
    shape = (n, c, _pool_out(h, k[0], s[0], p[0]), _pool_out(w, k[1], s[1], p[1]))
    y = np.full(shape, np.nan, x.dtype)
    am = np.full(shape, -1, np.int64)
    _C.max_pool2d_forward(y, am, x, k[0], k[1], s[0], s[1], p[0], p[1])
    return y, am


@pytest.mark.parametrize("case", POOL_CASES, ids=_pool_id)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("data", ["normal", "ties"])
def test_max_pool2d(rng, case, dtype, data):
    n, c, h, w, k, s, p = case
    if data == "ties":  # few distinct values: the first maximum must win
        x = rng.integers(0, 3, size=(n, c, h, w)).astype(dtype)
    else:
        x = rng.standard_normal((n, c, h, w)).astype(dtype)
    y, am = _pool_run_max(x, k, s, p)
    ry, ram = ref_max_pool(x, k, s, p)
    assert np.array_equal(y, ry)
    assert np.array_equal(am, ram)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = np.full(x.shape, np.nan, dtype)
    _C.max_pool2d_backward(dx, am, dy)
    check_op(dx, ref_max_pool_backward(x.shape, ram, dy), dtype, reduction=k[0] * k[1])


@pytest.mark.parametrize("case", [POOL_CASES[i] for i in (1, 2, 3, 5)], ids=_pool_id)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_nan_and_inf(rng, isa, case, dtype):
    """A NaN in a window wins (the first one), -inf-only windows report their first cell."""
    n, c, h, w, k, s, p = case
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    mask = rng.random(x.shape)
    x[mask < 0.15] = np.nan
    x[(mask >= 0.15) & (mask < 0.3)] = -np.inf
    x[(mask >= 0.3) & (mask < 0.35)] = np.inf
    x[0, 0, :2, :] = -np.inf  # whole windows of -inf
    y, am = _pool_run_max(x, k, s, p)
    ry, ram = ref_max_pool(x, k, s, p)
    assert np.array_equal(np.isnan(y), np.isnan(ry))
    assert np.array_equal(y[~np.isnan(y)], ry[~np.isnan(ry)])
    assert np.array_equal(am, ram)


@pytest.mark.parametrize("case", [POOL_CASES[i] for i in (0, 1, 2, 3, 4, 5, 6, 7, 9)],
                         ids=_pool_id)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_every_isa(rng, isa, case, dtype):
    n, c, h, w, k, s, p = case
    x = rng.integers(-4, 4, size=(n, c, h, w)).astype(dtype)
    y, am = _pool_run_max(x, k, s, p)
    ry, ram = ref_max_pool(x, k, s, p)
    assert np.array_equal(y, ry) and np.array_equal(am, ram)


def test_max_pool2d_all_row_widths(isa, rng):
    """Every row length up to 40 outputs: full vectors and every tail length, 2x2 stride 2."""
    for ow in range(1, 41):
        x = rng.standard_normal((1, 2, 4, 2 * ow + ow % 2)).astype(np.float32)
        x[0, 1, 1, ::3] = np.nan
        y, am = _pool_run_max(x, (2, 2), (2, 2), (0, 0))
        ry, ram = ref_max_pool(x, (2, 2), (2, 2), (0, 0))
        assert np.array_equal(am, ram), ow
        assert np.array_equal(np.isnan(y), np.isnan(ry)), ow


@pytest.mark.parametrize("case", POOL_CASES, ids=_pool_id)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_backward_every_isa(rng, isa, case, dtype):
    """The backward under each instruction set, with and without the relu gate: 2x2 windows
    write block by block; others (overlapping windows, strides that skip elements) scatter,
    or fall back to it where an argmax leaves its block."""
    n, c, h, w, k, s, p = case
    x = np.maximum(rng.standard_normal((n, c, h, w)), 0).astype(dtype)
    y, am = _pool_run_max(x, k, s, p)
    dy = rng.standard_normal(y.shape).astype(dtype)
    ref = ref_max_pool_backward(x.shape, am, dy)
    for gate, want in [(None, ref), (y, ref * (x > 0))]:
        dx = np.full(x.shape, np.nan, dtype)
        _C.max_pool2d_backward(dx, am, dy, gate)
        check_op(dx, want, dtype, reduction=k[0] * k[1])


def test_max_pool2d_backward_all_row_widths(isa, rng):
    """2x2 stride 2, every row length up to 40 outputs (full vectors and every tail), odd and
    even planes, with and without the relu gate; then an argmax moved out of its block (as
    another window shape may leave it), which must still land where it points."""
    for ow in range(1, 41):
        x = rng.standard_normal((1, 2, 5, 2 * ow + ow % 2)).astype(np.float32)
        y, am = _pool_run_max(x, (2, 2), (2, 2), (0, 0))
        dy = rng.standard_normal(y.shape).astype(np.float32)
        for gate in (None, y):
            dx = np.full(x.shape, np.nan, np.float32)
            _C.max_pool2d_backward(dx, am, dy, gate)
            want = ref_max_pool_backward(x.shape, am, dy * (1 if gate is None else (y > 0)))
            np.testing.assert_array_equal(dx, want, err_msg=f"ow={ow}")
        am[0, 1, 0, ow - 1] = 3 * x.shape[3]  # row 3: outside its block, inside the plane
        dx = np.full(x.shape, np.nan, np.float32)
        _C.max_pool2d_backward(dx, am, dy)
        np.testing.assert_allclose(dx, ref_max_pool_backward(x.shape, am, dy), rtol=1e-6,
                                   atol=1e-7, err_msg=f"ow={ow}")  # a sum of two, rounded


@pytest.mark.parametrize("case", POOL_CASES, ids=_pool_id)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cip", [True, False])
def test_avg_pool2d(rng, case, dtype, cip):
    n, c, h, w, k, s, p = case
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    shape = (n, c, _pool_out(h, k[0], s[0], p[0]), _pool_out(w, k[1], s[1], p[1]))
    y = np.full(shape, np.nan, dtype)
    _C.avg_pool2d_forward(y, x, k[0], k[1], s[0], s[1], p[0], p[1], cip)
    check_op(y, ref_avg_pool(x, k, s, p, cip), dtype, reduction=k[0] * k[1])
    dy = rng.standard_normal(shape).astype(dtype)
    dx = np.full(x.shape, np.nan, dtype)
    _C.avg_pool2d_backward(dx, dy, k[0], k[1], s[0], s[1], p[0], p[1], cip)
    check_op(dx, ref_avg_pool_backward(x.shape, dy, k, s, p, cip), dtype, reduction=k[0] * k[1])


def test_avg_pool2d_divisor_when_window_passes_the_padding(rng):
    """Called directly with an output one window longer than the ops layer would ask for, the
    last window reaches past the padding: count_include_pad counts only up to the padded edge."""
    x = rng.standard_normal((1, 1, 5, 5))
    y = np.empty((1, 1, 3, 3))
    _C.avg_pool2d_forward(y, x, 2, 2, 2, 2, 0, 0, True)
    # window 2 covers row/column 4 only (the padded input ends there, padding 0).
    assert y[0, 0, 2, 2] == pytest.approx(x[0, 0, 4, 4])
    assert y[0, 0, 0, 2] == pytest.approx(x[0, 0, 0:2, 4].sum() / 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_same_bits_at_any_thread_count(rng, threads, dtype):
    x = rng.standard_normal((6, 9, 30, 31)).astype(dtype)
    outs = []
    for nt in (1, 2, 3):
        threads(nt)
        res = []
        for k, s, p in (((2, 2), (2, 2), (0, 0)), ((3, 3), (1, 1), (1, 1))):
            y, am = _pool_run_max(x, k, s, p)
            dx = np.empty_like(x)
            _C.max_pool2d_backward(dx, am, y)
            ya = np.empty_like(y)
            _C.avg_pool2d_forward(ya, x, k[0], k[1], s[0], s[1], p[0], p[1], False)
            dxa = np.empty_like(x)
            _C.avg_pool2d_backward(dxa, ya, k[0], k[1], s[0], s[1], p[0], p[1], False)
            res += [y, am, dx, ya, dxa]
        outs.append(res)
    for other in outs[1:]:
        for a, o in zip(outs[0], other):
            assert a.tobytes() == o.tobytes()
