"""The pooling family (max_pool2d with its argmax, avg_pool2d, global_avg_pool2d and their
backward) on every backend, against fastnn.reference; the references against plain loops and
(when installed) PyTorch; ties, NaN and -inf; and bad arguments."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import re

import numpy as np
import pytest

from fastnn import backend as _backend
from fastnn import ops
from fastnn import reference as R
from fastnn.ops import _image
from helpers import check_op, numeric_grad

DTYPES = [np.float32, np.float64]
FD = dict(rtol=1e-6, atol=1e-8)
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="PyTorch is not installed")


def randn(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


# (N, C, H, W, kernel_size, stride, padding)
POOL = {
    "3x2_stride21_pad1": (2, 3, 7, 9, (3, 2), (2, 1), (1, 1)),
    "default_stride_pad1": (1, 2, 5, 5, 3, None, 1),
    "nonsquare_stride32": (2, 2, 6, 5, (2, 4), (3, 2), (1, 2)),
    "1x1": (1, 1, 4, 4, 1, 1, 0),
    "2x2_odd_image": (1, 3, 9, 7, 2, None, 0),
    "overlapping": (2, 2, 9, 7, 3, 2, 0),
    "stride3": (1, 2, 10, 11, (3, 2), 3, (1, 0)),
    "1x1_image": (1, 2, 1, 1, 1, None, 0),
    "kernel_is_image": (2, 2, 4, 5, (4, 5), None, 0),
    "stride1_pad": (1, 2, 3, 4, (2, 3), 1, (1, 1)),
}


def pool_case(rng, cfg, dtype):
    n, c, h, w, k, s, p = cfg
    return randn(rng, (n, c, h, w), dtype), dict(kernel_size=k, stride=s, padding=p)


def args(kw):
    return kw["kernel_size"], kw["stride"], kw["padding"]


def window(kw):
    k = pair(kw["kernel_size"])
    return k[0] * k[1]


def nonc(a):
    """A view equal to ``a`` of every other element of a larger buffer (non-contiguous unless
    the last axis has length 1)."""
    buf = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    v = buf[..., ::-2][..., ::-1]
    v[...] = a
    assert a.shape[-1] == 1 or not v.flags.c_contiguous
    return v


# ---------------------------------------------------------------------------------------------
# max_pool2d

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(POOL))
def test_max_pool2d_matches_reference(backend, rng, dtype, name):
    x, kw = pool_case(rng, POOL[name], dtype)
    y, ctx = ops.max_pool2d_forward(x, **kw)
    ry, rarg = R.max_pool2d(x, *args(kw))
    check_op(y, ry, dtype)
    np.testing.assert_array_equal(ctx.argmax, rarg)
    assert ctx.argmax.dtype == np.int64
    np.testing.assert_array_equal(ops.max_pool2d(x, **kw), y)
    dy = randn(rng, y.shape, dtype)
    (dx,) = ops.max_pool2d_backward(ctx, dy)
    check_op(dx, R.max_pool2d_backward(x, dy, *args(kw)), dtype, reduction=window(kw))


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_ties_nan_and_minus_inf(backend, rng, dtype):
    # Few distinct values: ties everywhere, and the first maximum of a window must win.
    x = rng.integers(-2, 3, size=(2, 3, 8, 7)).astype(dtype)
    x[0, 0, 2, 3] = np.nan                   # NaN wins its windows
    x[0, 1, 4:6, 1:3] = np.nan               # several NaN in one window: the first wins
    x[1, 0] = -np.inf                        # a plane of -inf: its first element in the image
    x[1, 2, :3, :3] = -np.inf
    for kw in [dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=(2, 3), stride=1,
                                                             padding=0),
               dict(kernel_size=2, stride=None, padding=1)]:
        y, ctx = ops.max_pool2d_forward(x, **kw)
        ry, rarg = R.max_pool2d(x, *args(kw))
        check_op(y, ry, dtype)
        assert np.isnan(y).any() and np.isneginf(y).any()
        np.testing.assert_array_equal(ctx.argmax, rarg)
        dy = randn(rng, y.shape, dtype)
        (dx,) = ops.max_pool2d_backward(ctx, dy)
        rdx = R.max_pool2d_backward(x, dy, *args(kw))
        check_op(dx, rdx, dtype, reduction=9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_noncontiguous(backend, rng, dtype):
    x, kw = pool_case(rng, POOL["3x2_stride21_pad1"], dtype)
    v = nonc(x)
    y, ctx = ops.max_pool2d_forward(v, **kw)
    ry, rarg = R.max_pool2d(x, *args(kw))
    check_op(y, ry, dtype)
    np.testing.assert_array_equal(ctx.argmax, rarg)
    dy = randn(rng, y.shape, dtype)
    (dx,) = ops.max_pool2d_backward(ctx, nonc(dy))
    check_op(dx, R.max_pool2d_backward(x, dy, *args(kw)), dtype, reduction=6)


def test_max_pool2d_backward_finite_differences(backend, rng):
    # Distinct values spaced far beyond the finite-difference step, so no window's argmax moves.
    n, c, h, w = 1, 2, 5, 6
    x = rng.permutation(n * c * h * w).reshape(n, c, h, w) * 0.01
    kw = dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1))
    y, ctx = ops.max_pool2d_forward(x, **kw)
    dy = randn(rng, y.shape)
    (dx,) = ops.max_pool2d_backward(ctx, dy)
    np.testing.assert_allclose(
        dx, numeric_grad(lambda: float((ops.max_pool2d(x, **kw) * dy).sum()), x), **FD)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["2x2_odd_image", "overlapping", "3x2_stride21_pad1"])
def test_max_pool2d_backward_through_relu(backend, rng, dtype, name):
    """relu=True is relu's derivative after the pooling's backward: zero where the pooled input
    (a relu's output, zeros included) is not positive, on overlapping windows too."""
    z, kw = pool_case(rng, POOL[name], dtype)
    x = np.maximum(z, 0)
    y, ctx = ops.max_pool2d_forward(x, **kw)
    dy = randn(rng, y.shape, dtype)
    (dz,) = ops.max_pool2d_backward(ctx, dy, relu=True)
    want = R.max_pool2d_backward(x, dy, *args(kw)) * (x > 0)
    assert (want == 0).any() and (want != 0).any()
    check_op(dz, want, dtype, reduction=window(kw))


# ---------------------------------------------------------------------------------------------
# avg_pool2d and global_avg_pool2d

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("name", list(POOL))
def test_avg_pool2d_matches_reference(backend, rng, dtype, count_include_pad, name):
    x, kw = pool_case(rng, POOL[name], dtype)
    y, ctx = ops.avg_pool2d_forward(x, **kw, count_include_pad=count_include_pad)
    check_op(y, R.avg_pool2d(x, *args(kw), count_include_pad), dtype, reduction=window(kw))
    np.testing.assert_array_equal(ops.avg_pool2d(x, **kw, count_include_pad=count_include_pad),
                                  y)
    dy = randn(rng, y.shape, dtype)
    (dx,) = ops.avg_pool2d_backward(ctx, nonc(dy))
    check_op(dx, R.avg_pool2d_backward(x, dy, *args(kw), count_include_pad), dtype,
             reduction=window(kw))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 1, 1, 1), (3, 2, 1, 5), (1, 4, 16, 16)])
def test_global_avg_pool2d_matches_reference(backend, rng, dtype, shape):
    x = randn(rng, shape, dtype)
    y, ctx = ops.global_avg_pool2d_forward(nonc(x))
    assert y.shape == shape[:2] + (1, 1)
    check_op(y, R.global_avg_pool2d(x), dtype, reduction=shape[2] * shape[3])
    np.testing.assert_array_equal(ops.global_avg_pool2d(x), y)
    dy = randn(rng, y.shape, dtype)
    (dx,) = ops.global_avg_pool2d_backward(ctx, dy)
    check_op(dx, R.global_avg_pool2d_backward(x, dy), dtype)


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d_backward_finite_differences(backend, rng, count_include_pad):
    x = randn(rng, (1, 2, 5, 6))
    kw = dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1),
              count_include_pad=count_include_pad)
    y, ctx = ops.avg_pool2d_forward(x, **kw)
    dy = randn(rng, y.shape)
    (dx,) = ops.avg_pool2d_backward(ctx, dy)
    np.testing.assert_allclose(
        dx, numeric_grad(lambda: float((ops.avg_pool2d(x, **kw) * dy).sum()), x), **FD)


def test_global_avg_pool2d_backward_finite_differences(backend, rng):
    x = randn(rng, (2, 2, 3, 4))
    y, ctx = ops.global_avg_pool2d_forward(x)
    dy = randn(rng, y.shape)
    (dx,) = ops.global_avg_pool2d_backward(ctx, dy)
    np.testing.assert_allclose(
        dx, numeric_grad(lambda: float((ops.global_avg_pool2d(x) * dy).sum()), x), **FD)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d_nan_inf_propagate(backend, rng, dtype, count_include_pad):
    x = randn(rng, (1, 3, 6, 7), dtype)
    x[0, 0, 1, 1] = np.nan
    x[0, 1, 2, 2] = np.inf
    x[0, 2, 3, 3] = np.inf
    x[0, 2, 3, 4] = -np.inf    # inf - inf: NaN where both share a window
    kw = dict(kernel_size=3, stride=1, padding=1, count_include_pad=count_include_pad)
    y = ops.avg_pool2d(x, **kw)
    ref = R.avg_pool2d(x, 3, 1, 1, count_include_pad)
    assert np.isinf(ref).any() and np.isnan(ref).any()
    with np.errstate(invalid="ignore"):
        check_op(y, ref, dtype, reduction=9)
        check_op(ops.global_avg_pool2d(x), R.global_avg_pool2d(x), dtype, reduction=42)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_kernels_write_every_output(backend, rng, dtype):
    # The kernel contract: outputs arrive uninitialized (here: NaN) and leave fully written;
    # the backward kernels zero dx before they scatter into it.
    x, kw = pool_case(rng, POOL["3x2_stride21_pad1"], dtype)
    k, s, p = pair(kw["kernel_size"]), pair(kw["stride"]), pair(kw["padding"])
    ry, rarg = R.max_pool2d(x, *args(kw))
    y, arg = np.full(ry.shape, np.nan, dtype), np.full(ry.shape, -1, np.int64)
    _image.kernel("max_pool2d_forward")(y, arg, x, *k, *s, *p)
    check_op(y, ry, dtype)
    np.testing.assert_array_equal(arg, rarg)
    dy = randn(rng, y.shape, dtype)
    dx = np.full_like(x, np.nan)
    _image.kernel("max_pool2d_backward")(dx, arg, dy)
    check_op(dx, R.max_pool2d_backward(x, dy, *args(kw)), dtype, reduction=6)
    for cip in (True, False):
        y = np.full(ry.shape, np.nan, dtype)
        _image.kernel("avg_pool2d_forward")(y, x, *k, *s, *p, cip)
        check_op(y, R.avg_pool2d(x, *args(kw), cip), dtype, reduction=6)
        dx = np.full_like(x, np.nan)
        _image.kernel("avg_pool2d_backward")(dx, dy, *k, *s, *p, cip)
        check_op(dx, R.avg_pool2d_backward(x, dy, *args(kw), cip), dtype, reduction=6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_zero_size(backend, rng, dtype):
    for shape in [(0, 3, 4, 4), (2, 0, 4, 4)]:
        x = randn(rng, shape, dtype)
        y, ctx = ops.max_pool2d_forward(x, 2)
        assert y.shape == shape[:2] + (2, 2) and y.dtype == dtype
        assert ops.max_pool2d_backward(ctx, y)[0].shape == shape
        y, ctx = ops.avg_pool2d_forward(x, 3, 1, 1)
        assert y.shape == shape
        assert ops.avg_pool2d_backward(ctx, y)[0].shape == shape
        y, ctx = ops.global_avg_pool2d_forward(x)
        assert y.shape == shape[:2] + (1, 1)
        assert ops.global_avg_pool2d_backward(ctx, y)[0].shape == shape


# ---------------------------------------------------------------------------------------------
# the references against plain loops

def loop_pools(x, kernel_size, stride, padding, count_include_pad):
    """(max, argmax, avg) one window at a time, by the definition."""
    (kh, kw), (ph, pw) = pair(kernel_size), pair(padding)
    sh, sw = (kh, kw) if stride is None else pair(stride)
    n, c, h, w = x.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    mx, arg, avg = np.zeros((n, c, oh, ow)), np.zeros((n, c, oh, ow), np.int64), \
        np.zeros((n, c, oh, ow))
    for i, j, p, q in np.ndindex(n, c, oh, ow):
        cells = [(r, s) for r in range(p * sh - ph, p * sh - ph + kh)
                 for s in range(q * sw - pw, q * sw - pw + kw)
                 if 0 <= r < h and 0 <= s < w]
        vals = [x[i, j, r, s] for r, s in cells]
        best = max(range(len(vals)), key=lambda t: (vals[t], -t))  # first of the maxima
        mx[i, j, p, q], arg[i, j, p, q] = vals[best], cells[best][0] * w + cells[best][1]
        avg[i, j, p, q] = sum(vals) / (kh * kw if count_include_pad else len(vals))
    return mx, arg, avg


@pytest.mark.parametrize("name", list(POOL))
def test_reference_pools_match_loops(rng, name):
    x, kw = pool_case(rng, POOL[name], np.float64)
    x = np.round(x * 2) / 2  # ties
    ry, rarg = R.max_pool2d(x, *args(kw))
    for cip in (True, False):
        mx, arg, avg = loop_pools(x, *args(kw), cip)
        np.testing.assert_array_equal(ry, mx)
        np.testing.assert_array_equal(rarg, arg)
        np.testing.assert_allclose(R.avg_pool2d(x, *args(kw), cip), avg, rtol=1e-14,
                                   atol=1e-15)


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_reference_pool_backward_finite_differences(rng, count_include_pad):
    x = rng.permutation(60).reshape(1, 2, 5, 6) * 0.01
    a = ((3, 2), (2, 1), (1, 1))
    dy = randn(rng, R.avg_pool2d(x, *a).shape)
    np.testing.assert_allclose(
        R.max_pool2d_backward(x, dy, *a),
        numeric_grad(lambda: float((R.max_pool2d(x, *a)[0] * dy).sum()), x), **FD)
    np.testing.assert_allclose(
        R.avg_pool2d_backward(x, dy, *a, count_include_pad),
        numeric_grad(lambda: float((R.avg_pool2d(x, *a, count_include_pad) * dy).sum()), x),
        **FD)
    gdy = randn(rng, (1, 2, 1, 1))
    np.testing.assert_allclose(
        R.global_avg_pool2d_backward(x, gdy),
        numeric_grad(lambda: float((R.global_avg_pool2d(x) * gdy).sum()), x), **FD)


# ---------------------------------------------------------------------------------------------
# PyTorch, when installed

def _torch():
    import torch
    torch.set_num_threads(1)  # its spinning OpenMP team would fight the kernels for the cores
    return torch


@needs_torch
@pytest.mark.parametrize("name", ["3x2_stride21_pad1", "nonsquare_stride32", "overlapping",
                                  "stride1_pad"])
def test_pools_match_torch(backend, rng, name):
    torch = _torch()
    F = torch.nn.functional
    x, kw = pool_case(rng, POOL[name], np.float64)
    k, s, p = args(kw)
    y, ctx = ops.max_pool2d_forward(x, **kw)
    dy = randn(rng, y.shape)
    tx = torch.tensor(x, requires_grad=True)
    ty, tidx = F.max_pool2d(tx, k, s, p, return_indices=True)
    ty.backward(torch.tensor(dy))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(ctx.argmax, tidx.numpy())
    np.testing.assert_allclose(ops.max_pool2d_backward(ctx, dy)[0], tx.grad.numpy(),
                               rtol=1e-12, atol=1e-14)
    for cip in (True, False):
        y, ctx = ops.avg_pool2d_forward(x, **kw, count_include_pad=cip)
        tx = torch.tensor(x, requires_grad=True)
        ty = F.avg_pool2d(tx, k, s, p, count_include_pad=cip)
        ty.backward(torch.tensor(dy))
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(ops.avg_pool2d_backward(ctx, dy)[0], tx.grad.numpy(),
                                   rtol=1e-12, atol=1e-14)
    y, ctx = ops.global_avg_pool2d_forward(x)
    gdy = randn(rng, y.shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = F.adaptive_avg_pool2d(tx, 1)
    ty.backward(torch.tensor(gdy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ops.global_avg_pool2d_backward(ctx, gdy)[0], tx.grad.numpy(),
                               rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# bad arguments: clear errors, raised before any kernel is looked up

@pytest.fixture
def no_kernels(monkeypatch):
    def fail(name):
        raise AssertionError(f"kernel {name} reached with arguments that should be refused")
    monkeypatch.setattr(_image, "kernel", fail)


X = np.zeros((2, 3, 6, 5))
POOL_ERRORS = [
    (dict(padding=2), ValueError, r"padding \(2, 2\) must be at most half the kernel size "
                                  r"\(3, 3\)"),
    (dict(kernel_size=(3, 1), padding=(1, 1)), ValueError, r"at most half the kernel size"),
    (dict(kernel_size=7, padding=0), ValueError,
     r"kernel_size \(7, 7\) is larger than the padded input 6x5 \(x shape \(2, 3, 6, 5\), "
     r"padding \(0, 0\)\)"),
    (dict(kernel_size=(4, 8), padding=1), ValueError, r"larger than the padded input 8x7"),
    (dict(kernel_size=0), ValueError, r"kernel_size must be >= 1"),
    (dict(stride=0), ValueError, r"stride must be >= 1"),
    (dict(stride=(2, -1)), ValueError, r"stride must be >= 1"),
    (dict(padding=-1), ValueError, r"padding must be >= 0"),
    (dict(kernel_size=2.5), TypeError, r"kernel_size must be an int or a pair of ints"),
    (dict(kernel_size=(2, 2, 2)), ValueError, r"kernel_size must be an int or a pair"),
    (dict(x=X[0]), ValueError, r"x must be 4-D \(N, C, H, W\), got shape \(3, 6, 5\)"),
    (dict(x=X.astype(np.int64)), TypeError, r"x must be float32 or float64, got dtype int64"),
    (dict(x=np.zeros((1, 1, 5, 0))), ValueError, r"at least 1x1 pixels"),
]


@pytest.mark.parametrize("bad,exc,match", POOL_ERRORS)
def test_pools_reject_bad_arguments(backend, no_kernels, bad, exc, match):
    a = dict(x=X, kernel_size=3, stride=None, padding=1)
    a.update(bad)
    x = a.pop("x")
    for fn in (ops.max_pool2d, ops.max_pool2d_forward, ops.avg_pool2d,
               ops.avg_pool2d_forward):
        with pytest.raises(exc, match=match):
            fn(x, **a)


def test_pool_argument_errors_name_the_op(backend, no_kernels):
    with pytest.raises(ValueError, match=r"^max_pool2d: padding"):
        ops.max_pool2d(X, 2, padding=2)
    with pytest.raises(ValueError, match=r"^avg_pool2d: padding"):
        ops.avg_pool2d(X, 2, padding=2)
    with pytest.raises(TypeError, match=r"count_include_pad must be a bool"):
        ops.avg_pool2d(X, 2, count_include_pad=1)
    with pytest.raises(ValueError, match=r"^global_avg_pool2d: x must be 4-D"):
        ops.global_avg_pool2d(X[0])
    with pytest.raises(TypeError, match=r"x must be float32 or float64, got dtype complex64"):
        ops.global_avg_pool2d(X.astype(np.complex64))


def test_pool_backward_rejects_bad_gradients(backend, rng):
    x = randn(rng, (2, 3, 6, 5))
    y, mctx = ops.max_pool2d_forward(x, 2)
    _, actx = ops.avg_pool2d_forward(x, 2)
    _, gctx = ops.global_avg_pool2d_forward(x)
    with pytest.raises(ValueError, match=r"dy must have the output's shape \(2, 3, 3, 2\)"):
        ops.max_pool2d_backward(mctx, np.zeros((2, 3, 2, 3)))
    with pytest.raises(TypeError, match=r"dy has dtype float32 but the forward ran in float64"):
        ops.avg_pool2d_backward(actx, y.astype(np.float32))
    with pytest.raises(ValueError, match=r"dy must have the output's shape \(2, 3, 1, 1\)"):
        ops.global_avg_pool2d_backward(gctx, y)
    with pytest.raises(TypeError, match=r"ctx must come from max_pool2d_forward"):
        ops.max_pool2d_backward(actx, y)
    with pytest.raises(TypeError, match=r"ctx must come from avg_pool2d_forward"):
        ops.avg_pool2d_backward(gctx, y)
    with pytest.raises(TypeError, match=r"ctx must come from global_avg_pool2d_forward"):
        ops.global_avg_pool2d_backward(actx, np.zeros((2, 3, 1, 1)))


# ---------------------------------------------------------------------------------------------
# the C++ kernels, once they exist, take the Numba kernels' arguments

def _pybind_params(fn) -> list:
    first = fn.__doc__.strip().splitlines()[0]  # "name(y: numpy.ndarray, ...) -> None"
    inside = first[first.index("(") + 1:first.rindex(")")]
    return re.findall(r"(\w+):", inside)


@pytest.mark.parametrize("name", ["max_pool2d_forward", "max_pool2d_backward",
                                  "avg_pool2d_forward", "avg_pool2d_backward"])
def test_cpp_pool_kernels_take_the_numba_signatures(name):
    nk = importlib.import_module("fastnn.numba_kernels.pool")
    params = list(inspect.signature(getattr(nk, name)).parameters)
    if _backend._C is None or not hasattr(_backend._C, name):
        pytest.skip(f"fastnn._C has no {name} yet (the Numba kernel runs)")
    assert _pybind_params(getattr(_backend._C, name)) == params
