"""conv2d_max_pool2d_forward / _backward: a convolution fused with the 2x2 max pooling after it.

Its results must be exactly those of conv2d_forward then max_pool2d_forward (the pooled values
and the argmax) on every backend and ISA, whether a fused kernel serves the shape (a single
input channel at stride 1; Winograd layers whose items hold whole images) or the two ops run;
its contexts must drive the two ops' backwards (and conv2d_max_pool2d_backward, the pair of
backwards in one call, the weight gradient of a first layer unpooled into cache: the same bits) to the gradients of the composition (float64
reference, and central finite differences along random directions).
"""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import backend as _backend
from fastnn import ops
from fastnn import reference as R
from helpers import check_op

# (N, C_in, H, W, C_out, kernel, padding, activation); stride 1 unless the case says
CASES = {
    "first_layer": (3, 1, 28, 28, 32, (3, 3), "same", "relu"),
    "first_layer_odd": (2, 1, 9, 13, 11, (3, 3), 1, "relu"),
    "first_layer_no_act": (2, 1, 11, 10, 9, (3, 3), 1, None),
    "first_layer_pad_beyond_half": (2, 1, 7, 10, 5, (2, 4), (2, 3), "relu"),
    "first_layer_wide": (2, 1, 6, 33, 8, (3, 3), 1, "relu"),    # 33 columns: no fused kernel
    "few_outputs": (2, 1, 8, 9, 3, (3, 3), 1, "relu"),          # direct loops: no fused kernel
    "winograd_14": (5, 32, 14, 14, 64, (3, 3), "same", "relu"),
    "winograd_odd": (4, 32, 13, 11, 40, (3, 3), 1, "relu"),
    "winograd_7": (9, 32, 7, 7, 32, (3, 3), 1, "relu"),
    "winograd_bands": (1, 16, 66, 65, 16, (3, 3), 1, "relu"),   # bands of tiles: two ops
    "im2col": (2, 3, 9, 8, 4, (3, 3), 1, "relu"),
    "sigmoid": (2, 1, 8, 8, 8, (3, 3), 1, "sigmoid"),           # not relu: two ops
}


def _data(rng, case, dtype, bias=True):
    n, ci, h, w, co, k, pad, act = case
    x = rng.standard_normal((n, ci, h, w)).astype(dtype)
    wt = (rng.standard_normal((co, ci) + k) / np.sqrt(ci * k[0] * k[1])).astype(dtype)
    b = rng.standard_normal(co).astype(dtype) if bias else None
    return x, wt, b


def _unfused(x, w, b, pad, act):
    y, cctx = ops.conv2d_forward(x, w, b, padding=pad, activation=act)
    p, pctx = ops.max_pool2d_forward(y, 2)
    return p, cctx, pctx


@pytest.mark.parametrize("name", sorted(set(CASES) - {"winograd_bands"}))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_as_the_two_ops(backend, rng, name, dtype):
    case = CASES[name]
    x, w, b = _data(rng, case, dtype, bias=name not in ("first_layer_odd", "winograd_odd"))
    pad, act = case[6], case[7]
    p, cctx, pctx = ops.conv2d_max_pool2d_forward(x, w, b, padding=pad, activation=act)
    p2, _, pctx2 = _unfused(x, w, b, pad, act)
    assert p.dtype == p2.dtype and p.shape == p2.shape
    np.testing.assert_array_equal(p, p2)
    np.testing.assert_array_equal(pctx.argmax, pctx2.argmax)
    assert pctx.x_shape == pctx2.x_shape
    ref = _composite(x.astype(np.float64), w.astype(np.float64),
                     None if b is None else b.astype(np.float64), pad, act)
    check_op(p, ref, dtype, reduction=w[0].size)


@pytest.mark.parametrize("name", ["first_layer", "first_layer_odd", "winograd_14", "winograd_7",
                                  "first_layer_pad_beyond_half"])
def test_same_as_the_two_ops_every_isa(rng, isa, name):
    case = CASES[name]
    x, w, b = _data(rng, case, np.float32)
    x[0, 0, 1, 2] = np.nan  # NaN wins its window, as in max_pool2d
    p, _, pctx = ops.conv2d_max_pool2d_forward(x, w, b, padding=case[6], activation=case[7])
    p2, _, pctx2 = _unfused(x, w, b, case[6], case[7])
    np.testing.assert_array_equal(p, p2)
    np.testing.assert_array_equal(pctx.argmax, pctx2.argmax)
    assert np.isnan(p).any()


def test_the_fused_kernels_run(rng):
    """The C++ kernels take the first layer (with AVX2 or AVX-512) and the Winograd layer (the
    conv ctx then keeps no output), and leave the others to the two ops."""
    if _backend._C is None:
        pytest.skip("no C++ backend")
    with _backend.use_backend("cpp"):
        for name, fused in [("first_layer", True), ("winograd_14", True), ("few_outputs", False),
                            ("sigmoid", False), ("winograd_bands", False)]:
            case = CASES[name]
            x, w, b = _data(rng, case, np.float32)
            _, cctx, _ = ops.conv2d_max_pool2d_forward(x, w, b, padding=case[6],
                                                       activation=case[7])
            if name == "first_layer" and fastnn.get_isa() == "generic":
                fused = False  # the portable build has no single-channel loops
            assert (cctx.y is None) == fused, name


def _composite(x, w, b, pad, act):
    """max_pool2d(act(conv2d(x, w, b)), 2) by the float64 references."""
    y = R.conv2d(x, w, b, padding=pad)
    if act == "relu":
        y = np.maximum(y, 0)
    elif act == "sigmoid":
        y = 1 / (1 + np.exp(-y))
    return R.max_pool2d(y, 2)[0]


@pytest.mark.parametrize("name", ["first_layer_odd", "first_layer_no_act", "winograd_7",
                                  "im2col"])
def test_backward_through_both_contexts(backend, rng, name):
    """max_pool2d_backward(relu=True) then conv2d_backward(through_activation=False) on the fused
    contexts: the gradients of max_pool2d(relu(conv2d)), against the float64 reference's finite
    differences along random directions (and against the reference gradients in float32)."""
    n, ci, h, wd, co, k, pad, act = CASES[name]
    if name == "winograd_7":
        n = 6  # a band of six 7x7 images: still Winograd, whole images an item
    case = (n, ci, h, wd, co, k, pad, act)
    x, w, b = _data(rng, case, np.float64)
    p, cctx, pctx = ops.conv2d_max_pool2d_forward(x, w, b, padding=pad, activation=act)
    dy = rng.standard_normal(p.shape)
    dz = ops.max_pool2d_backward(pctx, dy, relu=act == "relu")[0]
    dx, dw, db = ops.conv2d_backward(cctx, dz, through_activation=act is None)
    eps = 1e-6
    for arr, grad in ((x, dx), (w, dw), (b, db)):
        for _ in range(3):
            v = rng.standard_normal(arr.shape)
            arr += eps * v
            fp = float((_composite(x, w, b, pad, act) * dy).sum())
            arr -= 2 * eps * v
            fm = float((_composite(x, w, b, pad, act) * dy).sum())
            arr += eps * v
            np.testing.assert_allclose(float((grad * v).sum()), (fp - fm) / (2 * eps),
                                       rtol=1e-6, atol=1e-7)
    # float32: against the reference gradients of the same composition
    x32, w32, b32 = (a.astype(np.float32) for a in (x, w, b))
    p, cctx, pctx = ops.conv2d_max_pool2d_forward(x32, w32, b32, padding=pad, activation=act)
    dz = ops.max_pool2d_backward(pctx, dy.astype(np.float32), relu=act == "relu")[0]
    got = ops.conv2d_backward(cctx, dz, through_activation=act is None)
    y64, c64, p64 = _unfused(x, w, b, pad, act)
    dz64 = ops.max_pool2d_backward(p64, dy, relu=act == "relu")[0]
    want = ops.conv2d_backward(c64, dz64, through_activation=act is None)
    for g, r in zip(got, want):
        check_op(g, r, np.float32, reduction=dz[:, 0].size)


def test_conv_ctx_without_output_says_what_to_do(rng):
    if _backend._C is None:
        pytest.skip("no C++ backend")
    case = CASES["winograd_14"]  # fused under every ISA
    x, w, b = _data(rng, case, np.float32)
    with _backend.use_backend("cpp"):
        p, cctx, pctx = ops.conv2d_max_pool2d_forward(x, w, b, padding="same", activation="relu")
        dz = ops.max_pool2d_backward(pctx, np.ones_like(p), relu=True)[0]
        with pytest.raises(ValueError, match="through_activation=False"):
            ops.conv2d_backward(cctx, dz)
        assert ops.conv2d_backward(cctx, dz, through_activation=False)[1].shape == w.shape


def test_bad_input_is_the_two_ops_errors():
    x = np.zeros((1, 2, 5, 5), np.float32)
    with pytest.raises(ValueError, match="channels"):
        ops.conv2d_max_pool2d_forward(x, np.zeros((4, 3, 3, 3), np.float32))
    with pytest.raises(ValueError):  # a 1x1 output has no 2x2 window
        ops.conv2d_max_pool2d_forward(np.zeros((1, 1, 3, 3), np.float32),
                                      np.zeros((8, 1, 3, 3), np.float32))
    assert fastnn.ops.conv2d_max_pool2d_forward is ops.conv2d_max_pool2d_forward


@pytest.mark.parametrize("name", ["first_layer", "first_layer_odd", "first_layer_no_act",
                                  "first_layer_pad_beyond_half", "winograd_7", "im2col"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_pair_same_as_the_two_backwards(backend, rng, name, dtype):
    case = CASES[name]
    x, w, b = _data(rng, case, dtype, bias=name != "first_layer_odd")
    pad, act = case[6], case[7]
    relu = act == "relu"
    p, cctx, pctx = ops.conv2d_max_pool2d_forward(x, w, b, padding=pad, activation=act)
    dy = rng.standard_normal(p.shape).astype(dtype)
    dy[0, 0, 0, 0] = 0.0
    dz = ops.max_pool2d_backward(pctx, dy, relu=relu)[0]
    want = ops.conv2d_backward(cctx, dz, need_dx=False, through_activation=not relu)
    got = ops.conv2d_max_pool2d_backward(cctx, pctx, dy, relu=relu, need_dx=False)
    assert got[0] is None
    for g, r in zip(got[1:], want[1:]):
        assert (g is None) == (r is None)
        if g is not None:
            np.testing.assert_array_equal(g, r)
    full = ops.conv2d_max_pool2d_backward(cctx, pctx, dy, relu=relu)  # dx too: the two ops
    for g, r in zip(full, ops.conv2d_backward(cctx, dz, through_activation=not relu)):
        np.testing.assert_array_equal(g, r)


@pytest.mark.parametrize("name", ["first_layer", "first_layer_pad_beyond_half"])
def test_backward_pair_every_isa(rng, isa, name):
    case = CASES[name]
    x, w, b = _data(rng, case, np.float32)
    p, cctx, pctx = ops.conv2d_max_pool2d_forward(x, w, b, padding=case[6], activation="relu")
    dy = rng.standard_normal(p.shape).astype(np.float32)
    dz = ops.max_pool2d_backward(pctx, dy, relu=True)[0]
    want = ops.conv2d_backward(cctx, dz, need_dx=False, through_activation=False)
    got = ops.conv2d_max_pool2d_backward(cctx, pctx, dy, relu=True, need_dx=False)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])
    # and the float64 two ops' gradient (the same argmax: the pooled maxima are well apart)
    p64, c64, q64 = _unfused(*(a.astype(np.float64) for a in (x, w, b)), case[6], "relu")
    dz64 = ops.max_pool2d_backward(q64, dy.astype(np.float64), relu=True)[0]
    rdw = ops.conv2d_backward(c64, dz64, need_dx=False, through_activation=False)[1]
    check_op(got[1], rdw, np.float32, reduction=dz[:, 0].size)


def test_backward_pair_bad_contexts(rng):
    x, w, b = _data(rng, CASES["first_layer_odd"], np.float32)
    p, cctx, pctx = ops.conv2d_max_pool2d_forward(x, w, b, padding=1, activation="relu")
    with pytest.raises(TypeError, match="pool_ctx"):
        ops.conv2d_max_pool2d_backward(cctx, cctx, p)
    with pytest.raises(TypeError, match="conv_ctx"):
        ops.conv2d_max_pool2d_backward(pctx, pctx, p)
    with pytest.raises(ValueError, match="dy must have"):
        ops.conv2d_max_pool2d_backward(cctx, pctx, p[:, :, :-1], relu=True, need_dx=False)
    _, pctx2 = ops.max_pool2d_forward(np.zeros((2, 11, 6, 8), np.float32), 2)
    with pytest.raises(ValueError, match="output shape"):
        ops.conv2d_max_pool2d_backward(cctx, pctx2, np.zeros((2, 11, 3, 4), np.float32))


@pytest.fixture
def threads():
    prev = fastnn.get_num_threads()
    yield fastnn.set_num_threads
    fastnn.set_num_threads(prev)


@pytest.mark.parametrize("name", ["first_layer", "winograd_14", "winograd_odd"])
def test_same_bits_at_any_thread_count(rng, threads, name):
    case = CASES[name]
    x, w, b = _data(rng, case, np.float32)
    results = []
    for nt in (1, 2, 3):
        threads(nt)
        p, cctx, pctx = ops.conv2d_max_pool2d_forward(x, w, b, padding=case[6],
                                                      activation="relu")
        dy = np.random.default_rng(7).standard_normal(p.shape).astype(np.float32)
        results.append((p, pctx.argmax)
                       + ops.conv2d_max_pool2d_backward(cctx, pctx, dy, relu=True,
                                                        need_dx=False)[1:])
    for other in results[1:]:
        for a, o in zip(results[0], other):
            assert a.tobytes() == o.tobytes()
