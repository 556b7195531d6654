"""The convolution family (conv2d, conv_transpose2d and their backward) on every backend, against
fastnn.reference; the references themselves against independent formulations, finite
differences and (when installed) PyTorch; and bad arguments.

Shapes are small and odd on purpose: strides 2-3, dilation 2, groups 2 and depthwise, padding
beyond half the kernel, batch 1, 1x1 and non-square kernels, "same" with an even kernel.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import backend as _backend
from fastnn import ops
from fastnn import reference as R
from fastnn.ops import _image
from helpers import check_grads_fd, check_op

DTYPES = [np.float32, np.float64]
FD = dict(rtol=1e-6, atol=1e-8)
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="PyTorch is not installed")


def randn(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


# (N, C_in, H, W, C_out, kernel, stride, padding, dilation, groups)
CONV = {
    "3x3_pad1": (2, 3, 7, 9, 4, (3, 3), 1, 1, 1, 1),
    "stride2_odd": (1, 3, 9, 7, 5, (3, 3), 2, 0, 1, 1),
    "stride3_nonsquare": (2, 2, 11, 10, 3, (2, 4), (3, 2), (1, 2), 1, 1),
    "dilation2": (1, 2, 9, 9, 3, (3, 3), 1, 2, 2, 1),
    "groups2": (2, 4, 6, 7, 6, (3, 2), (1, 2), 1, 1, 2),
    "depthwise": (1, 4, 7, 7, 4, (3, 3), 1, 1, 1, 4),
    "depthwise_x2": (1, 3, 5, 6, 6, (3, 3), 2, 1, 1, 3),
    "1x1": (2, 5, 4, 3, 7, (1, 1), 1, 0, 1, 1),
    "1x1_stride2": (1, 3, 5, 5, 2, (1, 1), 2, 0, 1, 1),
    "pad_beyond_half": (1, 2, 4, 5, 3, (3, 3), 1, 3, 1, 1),
    "pad_beyond_half_stride2": (2, 2, 3, 3, 2, (2, 2), 2, (3, 2), 1, 1),
    "same_odd": (1, 3, 7, 8, 4, (3, 3), 1, "same", 1, 1),
    "same_even": (2, 2, 6, 5, 3, (2, 4), 1, "same", 1, 1),
    "same_dilated": (1, 2, 7, 6, 2, (3, 2), 1, "same", (2, 3), 1),
    "valid": (1, 3, 6, 8, 2, (3, 5), (2, 1), "valid", 1, 1),
    "kernel_is_image": (2, 3, 4, 5, 2, (4, 5), 1, 0, 1, 1),
    "everything": (2, 6, 10, 9, 4, (3, 2), (2, 3), (2, 1), (2, 2), 2),
    "1x1_image_padded": (1, 2, 1, 1, 3, (3, 3), 1, 1, 1, 1),
}


def conv_case(rng, cfg, dtype, bias=True):
    n, c, h, w, co, k, s, p, d, g = cfg
    x = randn(rng, (n, c, h, w), dtype)
    wt = randn(rng, (co, c // g) + pair(k), dtype)
    b = randn(rng, co, dtype) if bias else None
    return x, wt, b, dict(stride=s, padding=p, dilation=d, groups=g)


@pytest.fixture(params=["direct", "gemm", "gemm_per_image"])
def conv_path(request, backend, monkeypatch):
    """Send every convolution of the test down one path of the Numba kernels: direct loops, or
    im2col + GEMM with as many images per GEMM as fit (all of them, in these tests) or one.
    A backend with its own conv kernels runs the test once."""
    nk = importlib.import_module("fastnn.numba_kernels.conv")
    if _image.kernel("conv2d_forward") is not nk.conv2d_forward and request.param != "direct":
        pytest.skip("the backend has its own conv kernels")
    if request.param == "direct":
        monkeypatch.setattr(nk, "GEMM_MIN_MACS", 1 << 62)
    else:
        for name in ("GEMM_MIN_ROWS", "GEMM_MIN_DEPTH", "GEMM_MIN_MACS"):
            monkeypatch.setattr(nk, name, 0)
        if request.param == "gemm_per_image":
            monkeypatch.setattr(nk, "COLUMN_BUFFER", 1)
    return request.param


def ref_args(kw):
    return kw["stride"], kw["padding"], kw["dilation"], kw["groups"]


def red(w):
    """The length of the sum behind each output of a convolution with weights w."""
    return w.shape[1] * w.shape[2] * w.shape[3]


# ---------------------------------------------------------------------------------------------
# conv2d against the reference

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CONV))
def test_conv2d_matches_reference(backend, conv_path, rng, dtype, name):
    x, w, b, kw = conv_case(rng, CONV[name], dtype)
    y, ctx = ops.conv2d_forward(x, w, b, **kw)
    check_op(y, R.conv2d(x, w, b, *ref_args(kw)), dtype, reduction=red(w))
    np.testing.assert_array_equal(ops.conv2d(x, w, b, **kw), y)
    check_op(ops.conv2d(x, w, None, **kw), R.conv2d(x, w, None, *ref_args(kw)), dtype,
             reduction=red(w))
    dy = randn(rng, y.shape, dtype)
    dx, dw, db = ops.conv2d_backward(ctx, dy)
    rx, rw, rb = R.conv2d_backward(x, w, b, dy, *ref_args(kw))
    n, co, oh, ow = y.shape
    check_op(dx, rx, dtype, reduction=(co // kw["groups"]) * w.shape[2] * w.shape[3])
    check_op(dw, rw, dtype, reduction=n * oh * ow)
    check_op(db, rb, dtype, reduction=n * oh * ow)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_same_keeps_the_size(backend, rng, dtype):
    for k in [(1, 1), (2, 2), (3, 4), (5, 2)]:
        for d in [1, 2]:
            x = randn(rng, (1, 2, 7, 6), dtype)
            w = randn(rng, (3, 2) + k, dtype)
            y = ops.conv2d(x, w, padding="same", dilation=d)
            assert y.shape == (1, 3, 7, 6)
            check_op(y, R.conv2d(x, w, None, 1, "same", d), dtype, reduction=red(w))


def nonc(a):
    """A non-contiguous view equal to ``a``: every other element of a larger buffer, walked
    backwards along the last axis."""
    buf = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    v = buf[..., ::-2][..., ::-1]
    v[...] = a
    assert not v.flags.c_contiguous
    return v


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_noncontiguous_inputs(backend, conv_path, rng, dtype):
    x, w, b, kw = conv_case(rng, CONV["everything"], dtype)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # channels-last
    y, ctx = ops.conv2d_forward(nhwc, np.asfortranarray(w), nonc(b), **kw)
    check_op(y, R.conv2d(x, w, b, *ref_args(kw)), dtype, reduction=red(w))
    dy = randn(rng, y.shape, dtype)
    got = ops.conv2d_backward(ctx, nonc(dy))
    n, _, oh, ow = y.shape
    for g, r in zip(got, R.conv2d_backward(x, w, b, dy, *ref_args(kw))):
        check_op(g, r, dtype, reduction=n * oh * ow * red(w))
    # inputs are never written
    np.testing.assert_array_equal(nhwc, x)


@pytest.mark.parametrize("need_dx,need_dw,need_db",
                         [(False, True, True), (True, False, True), (True, True, False),
                          (False, False, True), (False, True, False), (True, False, False),
                          (False, False, False)])
def test_conv2d_backward_flags(backend, conv_path, rng, need_dx, need_dw, need_db):
    x, w, b, kw = conv_case(rng, CONV["groups2"], np.float64)
    y, ctx = ops.conv2d_forward(x, w, b, **kw)
    dy = randn(rng, y.shape)
    dx, dw, db = ops.conv2d_backward(ctx, dy, need_dx=need_dx, need_dw=need_dw,
                                     need_db=need_db)
    rx, rw, rb = R.conv2d_backward(x, w, b, dy, *ref_args(kw))
    for flag, got, ref in [(need_dx, dx, rx), (need_dw, dw, rw), (need_db, db, rb)]:
        if flag:
            check_op(got, ref, np.float64, reduction=100)
        else:
            assert got is None
    _, ctx = ops.conv2d_forward(x, w, None, **kw)
    assert ops.conv2d_backward(ctx, dy, need_db=True)[2] is None  # no bias, no db


def test_conv2d_backward_finite_differences(backend, conv_path, rng):
    # stride, dilation, groups and the asymmetric "same" padding in one small case
    x = randn(rng, (2, 4, 5, 4))
    w = randn(rng, (2, 2, 2, 3))
    b = randn(rng, 2)
    kw = dict(stride=1, padding="same", dilation=(2, 1), groups=2)
    y, ctx = ops.conv2d_forward(x, w, b, **kw)
    dy = randn(rng, y.shape)
    dx, dw, db = ops.conv2d_backward(ctx, dy)

    check_grads_fd(lambda: ops.conv2d(x, w, b, **kw), dy, (dx, dw, db), (x, w, b), **FD)

    kw = dict(stride=(2, 3), padding=(2, 1), dilation=2, groups=1)
    x, w = randn(rng, (1, 2, 6, 7)), randn(rng, (3, 2, 2, 2))
    y, ctx = ops.conv2d_forward(x, w, **kw)
    dy = randn(rng, y.shape)
    dx, dw, _ = ops.conv2d_backward(ctx, dy)

    check_grads_fd(lambda: ops.conv2d(x, w, **kw), dy, (dx, dw), (x, w), **FD)


# (activation, alpha): the fused epilogue, gelu (kept apart: its derivative needs z) included
FUSED_ACTS = [("relu", None), ("leaky_relu", 0.2), ("gelu", None)]
# every path of the C++ kernels: im2col (also stride 2), direct (depthwise), pointwise, Winograd
FUSED_CASES = {name: CONV[name] for name in ("3x3_pad1", "stride2_odd", "depthwise", "1x1")}
FUSED_CASES["winograd"] = (1, 16, 16, 16, 16, (3, 3), 1, 1, 1, 1)
FUSED_CASES["one_channel"] = (2, 1, 9, 13, 11, (3, 3), 1, 1, 1, 1)


@pytest.mark.parametrize("act,alpha", FUSED_ACTS)
@pytest.mark.parametrize("name", list(FUSED_CASES))
def test_conv2d_fused_activation_matches_reference(backend, rng, name, act, alpha):
    for dtype in DTYPES:
        x, w, b, kw = conv_case(rng, FUSED_CASES[name], dtype)
        y, ctx = ops.conv2d_forward(x, w, b, activation=act, alpha=alpha, **kw)
        z = R.conv2d(x, w, b, *ref_args(kw))
        check_op(y, R.activation(z, act, alpha), dtype, reduction=red(w))
        np.testing.assert_array_equal(ops.conv2d(x, w, b, activation=act, alpha=alpha, **kw), y)
        dy = randn(rng, y.shape, dtype)
        dx, dw, db = ops.conv2d_backward(ctx, dy)
        dz = R.activation_backward(z, act, alpha, dy)
        rx, rw, rb = R.conv2d_backward(x, w, b, dz, *ref_args(kw))
        n, co, oh, ow = y.shape
        check_op(dx, rx, dtype, reduction=(co // kw["groups"]) * w.shape[2] * w.shape[3])
        check_op(dw, rw, dtype, reduction=n * oh * ow)
        check_op(db, rb, dtype, reduction=n * oh * ow)


@pytest.mark.parametrize("act", ["tanh", "gelu"])
def test_conv2d_fused_activation_finite_differences(backend, rng, act):
    x, w, b = randn(rng, (2, 3, 5, 6)), randn(rng, (4, 3, 3, 2)), randn(rng, 4)
    kw = dict(stride=(1, 2), padding=1, activation=act)
    y, ctx = ops.conv2d_forward(x, w, b, **kw)
    dy = randn(rng, y.shape)
    dx, dw, db = ops.conv2d_backward(ctx, dy)

    check_grads_fd(lambda: ops.conv2d(x, w, b, **kw), dy, (dx, dw, db), (x, w, b), **FD)


def test_conv2d_rejects_unknown_activation(backend, rng):
    x, w = randn(rng, (1, 2, 4, 4)), randn(rng, (3, 2, 3, 3))
    with pytest.raises(ValueError, match="unknown activation"):
        ops.conv2d(x, w, activation="swishy")
    with pytest.raises(TypeError, match="alpha"):
        ops.conv2d(x, w, activation="leaky_relu", alpha="0.1")


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_gemm_path_in_chunks(backend, conv_path, rng, dtype, monkeypatch):
    # 5 images, 2 per GEMM: chunks of 2, 2 and 1, in every group
    x, w, b, kw = conv_case(rng, (5, 4, 6, 5, 6, (3, 2), (2, 1), 1, (1, 2), 2), dtype)
    y, ctx = ops.conv2d_forward(x, w, b, **kw)
    nk = importlib.import_module("fastnn.numba_kernels.conv")
    monkeypatch.setattr(nk, "COLUMN_BUFFER", 2 * red(w) * y.shape[2] * y.shape[3])
    y, ctx = ops.conv2d_forward(x, w, b, **kw)
    check_op(y, R.conv2d(x, w, b, *ref_args(kw)), dtype, reduction=red(w))
    dy = randn(rng, y.shape, dtype)
    n, _, oh, ow = y.shape
    for got, ref in zip(ops.conv2d_backward(ctx, dy), R.conv2d_backward(x, w, b, dy,
                                                                         *ref_args(kw))):
        check_op(got, ref, dtype, reduction=n * oh * ow * red(w))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["everything", "same_even", "depthwise_x2", "1x1"])
def test_conv_kernels_write_every_output(backend, conv_path, rng, dtype, name):
    # The kernel contract: outputs arrive uninitialized (here: NaN) and leave fully written,
    # the positions no tap reaches as 0.
    x, w, b, kw = conv_case(rng, CONV[name], dtype)
    y, ctx = ops.conv2d_forward(x, w, b, **kw)
    dy = randn(rng, y.shape, dtype)
    ref_dx, ref_dw, ref_db = ops.conv2d_backward(ctx, dy)
    geom = ctx.geom
    for bias in (b, None):
        out = np.full_like(y, np.nan)
        _image.kernel("conv2d_forward")(out, x, w, bias, *geom)
        check_op(out, R.conv2d(x, w, bias, *ref_args(kw)), dtype, reduction=red(w))
    dx = np.full_like(x, np.nan)
    _image.kernel("conv2d_backward_data")(dx, dy, w, *geom)
    np.testing.assert_array_equal(dx, ref_dx)
    dw, db = np.full_like(w, np.nan), np.full_like(b, np.nan)
    _image.kernel("conv2d_backward_weight")(dw, db, dy, x, *geom)
    np.testing.assert_array_equal(dw, ref_dw)
    np.testing.assert_array_equal(db, ref_db)
    dw = np.full_like(w, np.nan)
    _image.kernel("conv2d_backward_weight")(dw, None, dy, x, *geom)
    np.testing.assert_array_equal(dw, ref_dw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_nan_inf_propagate(backend, conv_path, rng, dtype):
    x, w, b, kw = conv_case(rng, CONV["3x3_pad1"], dtype)  # stride 1: every input is read
    x[0, 1, 2, 3] = np.nan
    x[1, 0, 5, 4] = np.inf
    x[1, 2, 0, 0] = -np.inf
    y, ctx = ops.conv2d_forward(x, w, b, **kw)
    ref = R.conv2d(x, w, b, *ref_args(kw))
    assert np.isnan(ref).any() and np.isinf(ref).any()
    with np.errstate(invalid="ignore"):
        check_op(y, ref, dtype, reduction=red(w))
        dy = randn(rng, y.shape, dtype)
        got = ops.conv2d_backward(ctx, dy)
        want = R.conv2d_backward(x, w, b, dy, *ref_args(kw))
        check_op(got[0], want[0], dtype, reduction=100)  # dx does not read x
        assert np.isnan(want[1]).any()
        check_op(got[1], want[1], dtype, reduction=100)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_zero_size(backend, rng, dtype):
    # an empty batch
    x, w, b = randn(rng, (0, 2, 5, 5), dtype), randn(rng, (3, 2, 3, 3), dtype), \
        randn(rng, 3, dtype)
    y, ctx = ops.conv2d_forward(x, w, b, padding=1)
    assert y.shape == (0, 3, 5, 5) and y.dtype == dtype
    dx, dw, db = ops.conv2d_backward(ctx, y)
    assert dx.shape == x.shape and not dw.any() and not db.any()
    # no output channels
    y, ctx = ops.conv2d_forward(randn(rng, (2, 2, 5, 5), dtype), w[:0], b[:0])
    assert y.shape == (2, 0, 3, 3)
    dx, dw, db = ops.conv2d_backward(ctx, y)
    assert dx.shape == (2, 2, 5, 5) and not dx.any() and dw.shape == (0, 2, 3, 3)
    # no input channels: the output is the bias
    x = randn(rng, (2, 0, 4, 4), dtype)
    y, ctx = ops.conv2d_forward(x, w[:, :0], b)
    check_op(y, np.broadcast_to(b[None, :, None, None], (2, 3, 2, 2)), dtype)
    dy = randn(rng, y.shape, dtype)
    dx, dw, db = ops.conv2d_backward(ctx, dy)
    assert dx.shape == x.shape and dw.shape == (3, 0, 3, 3)
    check_op(db, dy.astype(np.float64).sum(axis=(0, 2, 3)), dtype, reduction=8)


# ---------------------------------------------------------------------------------------------
# conv_transpose2d

# (N, C_in, H, W, C_out, kernel, stride, padding, output_padding, dilation, groups)
TRANSPOSE = {
    "groups2_outpad": (2, 4, 3, 4, 6, (3, 2), (2, 3), (1, 0), (1, 2), 1, 2),
    "depthwise_dilated": (1, 3, 4, 4, 3, (3, 3), 2, 2, 0, 2, 3),
    "1x1_stride3_outpad2": (1, 2, 3, 3, 4, (1, 1), 3, 0, 2, 1, 1),
    "outpad_below_dilation": (2, 2, 4, 3, 2, (3, 3), 2, 1, 2, 3, 1),
    "stride1": (1, 3, 5, 5, 2, (4, 4), 1, 1, 0, 1, 1),
    "1x1_input": (2, 2, 1, 1, 3, (2, 3), 2, 0, 1, 1, 1),
    "stride2_pad1": (1, 2, 5, 6, 2, (3, 3), 2, 1, 1, 1, 1),
}


def transpose_case(rng, cfg, dtype, bias=True):
    n, c, h, w, co, k, s, p, op, d, g = cfg
    x = randn(rng, (n, c, h, w), dtype)
    wt = randn(rng, (c, co // g) + pair(k), dtype)
    b = randn(rng, co, dtype) if bias else None
    return x, wt, b, dict(stride=s, padding=p, output_padding=op, dilation=d, groups=g)


def tref_args(kw):
    return (kw["stride"], kw["padding"], kw["output_padding"], kw["dilation"], kw["groups"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(TRANSPOSE))
def test_conv_transpose2d_matches_reference(backend, conv_path, rng, dtype, name):
    x, w, b, kw = transpose_case(rng, TRANSPOSE[name], dtype)
    y, ctx = ops.conv_transpose2d_forward(x, w, b, **kw)
    ry = R.conv_transpose2d(x, w, b, *tref_args(kw))
    groups = kw["groups"]
    per_out = (x.shape[1] // groups) * w.shape[2] * w.shape[3]
    check_op(y, ry, dtype, reduction=per_out)
    np.testing.assert_array_equal(ops.conv_transpose2d(x, w, b, **kw), y)
    check_op(ops.conv_transpose2d(x, w, None, **kw), R.conv_transpose2d(x, w, None,
                                                                        *tref_args(kw)),
             dtype, reduction=per_out)
    dy = randn(rng, y.shape, dtype)
    dx, dw, db = ops.conv_transpose2d_backward(ctx, dy)
    rx, rw, rb = R.conv_transpose2d_backward(x, w, b, dy, *tref_args(kw))
    check_op(dx, rx, dtype, reduction=w.shape[1] * w.shape[2] * w.shape[3])
    check_op(dw, rw, dtype, reduction=x.shape[0] * x.shape[2] * x.shape[3])
    check_op(db, rb, dtype, reduction=dy.size // dy.shape[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_transpose2d_noncontiguous_and_flags(backend, rng, dtype):
    x, w, b, kw = transpose_case(rng, TRANSPOSE["groups2_outpad"], dtype)
    y, ctx = ops.conv_transpose2d_forward(nonc(x), nonc(w), nonc(b), **kw)
    check_op(y, R.conv_transpose2d(x, w, b, *tref_args(kw)), dtype, reduction=50)
    dy = randn(rng, y.shape, dtype)
    rx, rw, rb = R.conv_transpose2d_backward(x, w, b, dy, *tref_args(kw))
    dx, dw, db = ops.conv_transpose2d_backward(ctx, nonc(dy), need_dx=False)
    assert dx is None
    check_op(dw, rw, dtype, reduction=100)
    check_op(db, rb, dtype, reduction=100)
    dx, dw, db = ops.conv_transpose2d_backward(ctx, dy, need_dw=False, need_db=False)
    assert dw is None and db is None
    check_op(dx, rx, dtype, reduction=100)


def test_conv_transpose2d_backward_finite_differences(backend, conv_path, rng):
    x, w, b, kw = transpose_case(rng, (1, 4, 3, 2, 2, (2, 3), (2, 3), (1, 1), (1, 2), 1, 2),
                                 np.float64)
    y, ctx = ops.conv_transpose2d_forward(x, w, b, **kw)
    dy = randn(rng, y.shape)
    dx, dw, db = ops.conv_transpose2d_backward(ctx, dy)

    check_grads_fd(lambda: ops.conv_transpose2d(x, w, b, **kw), dy, (dx, dw, db), (x, w, b),
                   **FD)


@pytest.mark.parametrize("name", ["everything", "groups2", "depthwise_x2",
                                  "pad_beyond_half_stride2"])
def test_conv_transpose2d_is_the_adjoint_of_conv2d(backend, rng, name):
    # <conv2d(u, w), v> = <u, conv_transpose2d(v, w)> for the conv2d that maps u's size to v's
    # (output_padding picks u's size among those that map to v's).
    u, w, _, kw = conv_case(rng, CONV[name], np.float64, bias=False)
    cu = ops.conv2d(u, w, **kw)
    v = randn(rng, cu.shape)
    s, p, d = pair(kw["stride"]), pair(kw["padding"]), pair(kw["dilation"])
    k = w.shape[2:]
    outpad = tuple(u.shape[2 + a] - ((v.shape[2 + a] - 1) * s[a] - 2 * p[a]
                                     + d[a] * (k[a] - 1) + 1) for a in range(2))
    tv = ops.conv_transpose2d(v, w, stride=s, padding=p, output_padding=outpad, dilation=d,
                              groups=kw["groups"])
    assert tv.shape == u.shape
    np.testing.assert_allclose(float((cu * v).sum()), float((u * tv).sum()), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_transpose2d_zero_size(backend, rng, dtype):
    w, b = randn(rng, (2, 3, 3, 3), dtype), randn(rng, 3, dtype)
    y, ctx = ops.conv_transpose2d_forward(randn(rng, (0, 2, 4, 4), dtype), w, b, stride=2)
    assert y.shape == (0, 3, 9, 9)
    dx, dw, db = ops.conv_transpose2d_backward(ctx, y)
    assert dx.shape == (0, 2, 4, 4) and not dw.any() and not db.any()
    y = ops.conv_transpose2d(randn(rng, (1, 0, 2, 2), dtype), w[:0], b)
    check_op(y, np.broadcast_to(b[None, :, None, None], (1, 3, 4, 4)), dtype)


# ---------------------------------------------------------------------------------------------
# the references against independent formulations

def conv2d_windows(x, w, b, stride, padding, dilation, groups):
    """conv2d as one einsum over a strided view of every window (taps at dilated offsets) of an
    explicitly padded input: no loop over taps, no slicing per tap."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    (sh, sw), (dh, dw) = pair(stride), pair(dilation)
    co, cig, kh, kw = w.shape
    if padding == "same":
        th, tw = dh * (kh - 1), dw * (kw - 1)
        pads = ((th // 2, th - th // 2), (tw // 2, tw - tw // 2))
    elif padding == "valid":
        pads = ((0, 0), (0, 0))
    else:
        ph, pw = pair(padding)
        pads = ((ph, ph), (pw, pw))
    xp = np.pad(x, ((0, 0), (0, 0)) + pads)
    n, c, hp, wp = xp.shape
    oh = (hp - dh * (kh - 1) - 1) // sh + 1
    ow = (wp - dw * (kw - 1) - 1) // sw + 1
    s = xp.strides
    win = np.lib.stride_tricks.as_strided(
        xp, (n, groups, cig, oh, ow, kh, kw),
        (s[0], cig * s[1], s[1], sh * s[2], sw * s[3], dh * s[2], dw * s[3]), writeable=False)
    wg = w.reshape(groups, co // groups, cig, kh, kw)
    y = np.einsum("ngcpqij,gocij->ngopq", win, wg).reshape(n, co, oh, ow)
    return y if b is None else y + np.asarray(b, np.float64)[None, :, None, None]


@pytest.mark.parametrize("name", list(CONV))
def test_reference_conv2d_matches_window_einsum(rng, name):
    x, w, b, kw = conv_case(rng, CONV[name], np.float64)
    np.testing.assert_allclose(R.conv2d(x, w, b, *ref_args(kw)),
                               conv2d_windows(x, w, b, *ref_args(kw)), rtol=1e-12, atol=1e-12)


def test_reference_conv2d_matches_a_loop(rng):
    x, w, b, kw = conv_case(rng, CONV["everything"], np.float64)
    y = R.conv2d(x, w, b, *ref_args(kw))
    (sh, sw), (ph, pw), (dh, dw) = pair(kw["stride"]), pair(kw["padding"]), pair(kw["dilation"])
    cig, cog = w.shape[1], w.shape[0] // kw["groups"]
    for n, o, p, q in np.ndindex(*y.shape):
        acc = b[o]
        for c in range(cig):
            for i in range(w.shape[2]):
                for j in range(w.shape[3]):
                    r, s = p * sh - ph + i * dh, q * sw - pw + j * dw
                    if 0 <= r < x.shape[2] and 0 <= s < x.shape[3]:
                        acc += w[o, c, i, j] * x[n, (o // cog) * cig + c, r, s]
        assert abs(y[n, o, p, q] - acc) < 1e-12


@pytest.mark.parametrize("name", ["everything", "same_even", "depthwise_x2"])
def test_reference_conv2d_backward_finite_differences(rng, name):
    x, w, b, kw = conv_case(rng, CONV[name], np.float64)
    args = ref_args(kw)
    dy = randn(rng, R.conv2d(x, w, b, *args).shape)
    rx, rw, rb = R.conv2d_backward(x, w, b, dy, *args)

    check_grads_fd(lambda: R.conv2d(x, w, b, *args), dy, (rx, rw, rb), (x, w, b), **FD)


@pytest.mark.parametrize("name", list(TRANSPOSE))
def test_reference_conv_transpose2d_is_conv2d_input_gradient(rng, name):
    x, w, b, kw = transpose_case(rng, TRANSPOSE[name], np.float64, bias=False)
    y = R.conv_transpose2d(x, w, None, *tref_args(kw))
    # conv_transpose2d(x) is the gradient, with respect to its input u, of <conv2d(u, w), x>.
    # With output_padding >= stride (allowed below the dilation) conv2d(u) has more rows than
    # x: the extra ones meet zeros.
    u = np.zeros(y.shape)
    args = (kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    dy = np.zeros(R.conv2d(u, w, None, *args).shape)
    dy[:, :, :x.shape[2], :x.shape[3]] = x
    dx, _, _ = R.conv2d_backward(u, w, None, dy, *args)
    np.testing.assert_allclose(y, dx, rtol=1e-12, atol=1e-12)


def test_reference_conv_transpose2d_backward_finite_differences(rng):
    x, w, b, kw = transpose_case(rng, TRANSPOSE["groups2_outpad"], np.float64)
    args = tref_args(kw)
    dy = randn(rng, R.conv_transpose2d(x, w, b, *args).shape)
    rx, rw, rb = R.conv_transpose2d_backward(x, w, b, dy, *args)

    check_grads_fd(lambda: R.conv_transpose2d(x, w, b, *args), dy, (rx, rw, rb), (x, w, b),
                   **FD)


# ---------------------------------------------------------------------------------------------
# PyTorch, when installed

def _torch():
    import torch
    torch.set_num_threads(1)  # its spinning OpenMP team would fight the kernels for the cores
    return torch


@needs_torch
@pytest.mark.parametrize("name", ["everything", "depthwise_x2", "same_odd", "same_even",
                                  "pad_beyond_half_stride2"])
def test_conv2d_matches_torch(backend, rng, name):
    torch = _torch()
    F = torch.nn.functional
    x, w, b, kw = conv_case(rng, CONV[name], np.float64)
    y, ctx = ops.conv2d_forward(x, w, b, **kw)
    dy = randn(rng, y.shape)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    with warnings.catch_warnings():  # "same" with an even kernel: a note about a padded copy
        warnings.simplefilter("ignore", UserWarning)
        ty = F.conv2d(tx, tw, tb, **kw)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    for got, want in zip(ops.conv2d_backward(ctx, dy), (tx.grad, tw.grad, tb.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-12)


@needs_torch
@pytest.mark.parametrize("name", list(TRANSPOSE))
def test_conv_transpose2d_matches_torch(backend, rng, name):
    torch = _torch()
    x, w, b, kw = transpose_case(rng, TRANSPOSE[name], np.float64)
    y, ctx = ops.conv_transpose2d_forward(x, w, b, **kw)
    dy = randn(rng, y.shape)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv_transpose2d(tx, tw, tb, **kw)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    for got, want in zip(ops.conv_transpose2d_backward(ctx, dy), (tx.grad, tw.grad, tb.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Hypothesis: shapes and geometry

HYP = settings(max_examples=25, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture,
                                      HealthCheck.too_slow])


@HYP
@given(n=st.integers(1, 2), cig=st.integers(1, 3), cog=st.integers(1, 3), groups=st.integers(1, 3),
       h=st.integers(1, 8), w=st.integers(1, 8), kh=st.integers(1, 4), kw=st.integers(1, 4),
       sh=st.integers(1, 3), sw=st.integers(1, 3), ph=st.integers(0, 3), pw=st.integers(0, 3),
       dh=st.integers(1, 2), dw=st.integers(1, 2), bias=st.booleans(),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31 - 1))
def test_conv2d_hypothesis(backend, n, cig, cog, groups, h, w, kh, kw, sh, sw, ph, pw, dh, dw,
                           bias, dtype, seed):
    rng = np.random.default_rng(seed)
    x = randn(rng, (n, cig * groups, h, w), dtype)
    wt = randn(rng, (cog * groups, cig, kh, kw), dtype)
    b = randn(rng, cog * groups, dtype) if bias else None
    kwargs = dict(stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=groups)
    fits = h + 2 * ph >= dh * (kh - 1) + 1 and w + 2 * pw >= dw * (kw - 1) + 1
    if not fits:
        with pytest.raises(ValueError, match="larger than the padded input"):
            ops.conv2d(x, wt, b, **kwargs)
        return
    y, ctx = ops.conv2d_forward(x, wt, b, **kwargs)
    args = ((sh, sw), (ph, pw), (dh, dw), groups)
    check_op(y, R.conv2d(x, wt, b, *args), dtype, reduction=red(wt))
    dy = randn(rng, y.shape, dtype)
    big = n * y.shape[2] * y.shape[3] * red(wt)
    for got, ref in zip(ops.conv2d_backward(ctx, dy), R.conv2d_backward(x, wt, b, dy, *args)):
        if ref is None:
            assert got is None
        else:
            check_op(got, ref, dtype, reduction=big)


# ---------------------------------------------------------------------------------------------
# bad arguments: clear errors, raised before any kernel is looked up

@pytest.fixture
def no_kernels(monkeypatch):
    def fail(name):
        raise AssertionError(f"kernel {name} reached with arguments that should be refused")
    monkeypatch.setattr(_image, "kernel", fail)


X = np.zeros((2, 4, 6, 6))
W = np.zeros((6, 2, 3, 3))
CONV_ERRORS = [
    (dict(x=X[0]), ValueError, r"x must be 4-D \(N, C, H, W\), got shape \(4, 6, 6\)"),
    (dict(x=np.zeros((2, 4, 0, 6))), ValueError, r"at least 1x1 pixels"),
    (dict(w=W[0]), ValueError, r"w must be 4-D .*got shape \(2, 3, 3\)"),
    (dict(x=X.astype(np.int32)), TypeError, r"x must be float32 or float64, got dtype int32"),
    (dict(x=X.astype(np.float16)), TypeError, r"x must be float32 or float64"),
    (dict(w=W.astype(np.float32)), TypeError, r"w has dtype float32 but x has float64"),
    (dict(b=np.zeros(6, np.float32)), TypeError, r"b has dtype float32"),
    (dict(b=np.zeros(5)), ValueError, r"b must have shape \(6,\).*got \(5,\)"),
    (dict(b=np.zeros((6, 1))), ValueError, r"b must have shape \(6,\)"),
    (dict(groups=1), ValueError, r"x has 4 channels \(shape \(2, 4, 6, 6\)\) but w of shape "
                                 r"\(6, 2, 3, 3\).*expects 2 per group, 2 with groups=1"),
    (dict(groups=3), ValueError, r"x has 4 channels.*not divisible by groups=3"),
    (dict(w=np.zeros((5, 2, 3, 3)), b=None), ValueError,
     r"w has 5 output channels.*not divisible by groups=2"),
    (dict(groups=0), ValueError, r"groups must be >= 1"),
    (dict(groups=2.0), TypeError, r"groups must be an int"),
    (dict(stride=0), ValueError, r"stride must be >= 1, got 0"),
    (dict(stride=(1, 0)), ValueError, r"stride must be >= 1, got \(1, 0\)"),
    (dict(stride=(1, 2, 3)), ValueError, r"stride must be an int or a pair"),
    (dict(stride=True), TypeError, r"stride must be an int or a pair of ints, got bool"),
    (dict(dilation=0), ValueError, r"dilation must be >= 1"),
    (dict(padding=-1), ValueError, r"padding must be >= 0, got -1"),
    (dict(padding=(0, -2)), ValueError, r"padding must be >= 0"),
    (dict(padding=1.5), TypeError, r"padding must be an int or a pair"),
    (dict(padding="full"), ValueError, r"padding must be an int, a pair, 'same' or 'valid'"),
    (dict(padding="same", stride=2), ValueError, r"padding='same' needs stride 1"),
    (dict(w=np.zeros((6, 2, 7, 3))), ValueError,
     r"kernel \(7, 3\) with dilation \(1, 1\) spans 7x3, larger than the padded input 6x6"),
    (dict(dilation=3), ValueError, r"spans 7x7, larger than the padded input 6x6"),
    (dict(w=np.zeros((6, 2, 0, 3))), ValueError, r"kernel of at least 1x1"),
    (dict(x=None), TypeError, r"x must be an array, got None"),
]


@pytest.mark.parametrize("bad,exc,match", CONV_ERRORS)
def test_conv2d_rejects_bad_arguments(backend, no_kernels, bad, exc, match):
    args = dict(x=X, w=W, b=np.zeros(6), groups=2)
    args.update(bad)
    x, w, b = args.pop("x"), args.pop("w"), args.pop("b")
    for fn in (ops.conv2d, ops.conv2d_forward):
        with pytest.raises(exc, match=match):
            fn(x, w, b, **args)


XT = np.zeros((2, 4, 3, 3))
WT = np.zeros((4, 3, 3, 3))
TRANSPOSE_ERRORS = [
    (dict(output_padding=2, stride=2), ValueError,
     r"output_padding \(2, 2\) must be smaller than either the stride \(2, 2\) or the "
     r"dilation \(1, 1\)"),
    (dict(output_padding=(0, 1)), ValueError, r"output_padding"),
    (dict(output_padding=-1), ValueError, r"output_padding must be >= 0"),
    (dict(padding=4), ValueError, r"the output would be -3x-3"),
    (dict(padding="same"), TypeError, r"padding must be an int or a pair"),
    (dict(w=np.zeros((3, 3, 3, 3))), ValueError,
     r"x has 4 channels \(shape \(2, 4, 3, 3\)\) but w of shape \(3, 3, 3, 3\) "
     r"\(C_in, C_out/groups, kh, kw\) expects 3"),
    (dict(groups=3), ValueError, r"not divisible by groups=3"),
    (dict(b=np.zeros(3)), ValueError, r"b must have shape \(6,\)"),
    (dict(w=WT.astype(np.float32)), TypeError, r"w has dtype float32 but x has float64"),
    (dict(x=XT[:, :, 0]), ValueError, r"x must be 4-D"),
]


@pytest.mark.parametrize("bad,exc,match", TRANSPOSE_ERRORS)
def test_conv_transpose2d_rejects_bad_arguments(backend, no_kernels, bad, exc, match):
    args = dict(x=XT, w=WT, b=np.zeros(6), groups=2)
    args.update(bad)
    x, w, b = args.pop("x"), args.pop("w"), args.pop("b")
    for fn in (ops.conv_transpose2d, ops.conv_transpose2d_forward):
        with pytest.raises(exc, match=match):
            fn(x, w, b, **args)


def test_conv_backward_rejects_bad_gradients(backend, rng):
    x, w, b, kw = conv_case(rng, CONV["groups2"], np.float64)
    y, ctx = ops.conv2d_forward(x, w, b, **kw)
    with pytest.raises(ValueError, match=r"dy must have the output's shape \(2, 6, 6, 4\)"):
        ops.conv2d_backward(ctx, np.zeros((2, 6, 4, 6)))
    with pytest.raises(TypeError, match=r"dy has dtype float32 but the forward ran in float64"):
        ops.conv2d_backward(ctx, y.astype(np.float32))
    xt, wt, bt, kwt = transpose_case(rng, TRANSPOSE["stride1"], np.float64)
    yt, tctx = ops.conv_transpose2d_forward(xt, wt, bt, **kwt)
    with pytest.raises(TypeError, match=r"ctx must come from conv2d_forward"):
        ops.conv2d_backward(tctx, yt)
    with pytest.raises(TypeError, match=r"ctx must come from conv_transpose2d_forward"):
        ops.conv_transpose2d_backward(ctx, y)
    with pytest.raises(TypeError, match=r"ctx must come from conv2d_forward, got dict"):
        ops.conv2d_backward({}, y)


# ---------------------------------------------------------------------------------------------
# which kernel runs

CONV_KERNELS = ["conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight"]


def test_backends_without_conv_kernels_run_numba_silently(rng, monkeypatch):
    nk = importlib.import_module("fastnn.numba_kernels.conv")
    x, w, b, kw = conv_case(rng, CONV["groups2"], np.float64)
    want = R.conv2d(x, w, b, *ref_args(kw))

    class NoConv:  # a C++ module from before the conv kernels
        pass

    class OwnConv:
        calls = []

        @staticmethod
        def conv2d_forward(*args):
            OwnConv.calls.append(len(args))
            nk.conv2d_forward(*args)

    monkeypatch.setattr(_backend, "_kernels_now", NoConv())
    assert _image.kernel("conv2d_forward") is nk.conv2d_forward
    check_op(ops.conv2d(x, w, b, **kw), want, reduction=red(w))   # -W error: no warning
    monkeypatch.setattr(_backend, "_kernels_now", OwnConv())
    check_op(ops.conv2d(x, w, b, **kw), want, reduction=red(w))
    assert OwnConv.calls == [11]
    # the cuda backend on host arrays: fastnn.cuda hands kernels it lacks to the C++ module,
    # and here to Numba when that lacks them too (whether or not a GPU exists)
    monkeypatch.setattr(_backend, "_kernels_now", fastnn.cuda)
    for name in CONV_KERNELS:
        fn = _image.kernel(name)
        if _backend._C is None or not hasattr(_backend._C, name):
            assert fn is getattr(nk, name)
    check_op(ops.conv2d(x, w, b, **kw), want, reduction=red(w))


def _pybind_params(fn) -> list:
    first = fn.__doc__.strip().splitlines()[0]  # "name(y: numpy.ndarray, ...) -> None"
    inside = first[first.index("(") + 1:first.rindex(")")]
    return re.findall(r"(\w+):", inside)


@pytest.mark.parametrize("name", CONV_KERNELS)
def test_cpp_conv_kernels_take_the_numba_signatures(name):
    nk = importlib.import_module("fastnn.numba_kernels.conv")
    params = list(inspect.signature(getattr(nk, name)).parameters)
    if _backend._C is None or not hasattr(_backend._C, name):
        pytest.skip(f"fastnn._C has no {name} yet (the Numba kernel runs)")
    assert _pybind_params(getattr(_backend._C, name)) == params
