"""bfloat16 products of float32 GEMM (``fastnn.set_float32_matmul_precision("medium")``).

Every bfloat16 kernel this CPU supports (AMX, AVX512_BF16) is forced in turn and compared with a
float64 reference under the error bound of bfloat16 operands: each operand is rounded to 8
significant bits (relative error <= 2^-8), so each product is off by at most ~2^-7 of its size,
and the float32 sums add k * 2^-24 of the absolute sum; the bound is that times
``|alpha| * (|A| @ |B|)``. A wrong kernel (a misplaced k pair, a dropped tile) is off by O(1) of it.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import ops, precision
from fastnn import backend as _backend

from helpers import check_fused_rbm_step

pytestmark = pytest.mark.skipif(_backend._C is None, reason="needs the C++ backend")

KERNELS = ["amx", "avx512_bf16"]


def _available():
    return precision.bf16_kernels() if _backend._C is not None else []


@pytest.fixture(autouse=True)
def _restore():
    prev_kernel = precision.bf16_kernel() or "none"
    prev_threads = fastnn.get_num_threads()
    with _backend.use_backend("cpp"):
        yield
    fastnn.set_float32_matmul_precision("highest")
    if _backend._C is not None:
        _backend._C.set_bf16_kernel(prev_kernel)
    fastnn.set_num_threads(prev_threads)


@pytest.fixture(params=KERNELS)
def kernel(request):
    """Each bfloat16 kernel, forced, under "medium"; skips where the CPU lacks it."""
    if request.param not in _available():
        pytest.skip(f"this CPU (or build) has no {request.param} kernel")
    precision._set_bf16_kernel(request.param)
    fastnn.set_float32_matmul_precision("medium")
    return request.param


def _bound(a64, b64, alpha=1.0):
    k = a64.shape[1]
    return (2.0 ** -7 + 2.0 ** -16 + k * 2.0 ** -23) * abs(alpha) * (np.abs(a64) @ np.abs(b64))


def _operand(rng, shape, trans, strided):
    """A float32 operand of logical shape `shape`, stored transposed and/or as a strided view."""
    rows, cols = shape[::-1] if trans else shape
    if strided:
        x = rng.standard_normal((rows, 2 * cols)).astype(np.float32)[:, ::2]
    else:
        x = rng.standard_normal((rows, cols)).astype(np.float32)
    return x


SHAPES = [(1, 1, 1), (7, 9, 33), (17, 65, 31), (33, 40, 100), (64, 256, 784), (65, 17, 3),
          (16, 16, 32), (48, 47, 64), (3, 130, 257)]


@pytest.mark.parametrize("m,n,k", SHAPES)
@pytest.mark.parametrize("trans_a,trans_b,strided", [(False, False, False), (True, False, False),
                                                     (False, True, False), (True, True, True),
                                                     (False, False, True)])
def test_gemm_matches_float64_within_bf16_bound(kernel, rng, m, n, k, trans_a, trans_b, strided):
    a = _operand(rng, (m, k), trans_a, strided)
    b = _operand(rng, (k, n), trans_b, strided)
    got = ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    a64 = (a.T if trans_a else a).astype(np.float64)
    b64 = (b.T if trans_b else b).astype(np.float64)
    ref = a64 @ b64
    err = np.abs(got - ref)
    assert np.all(err <= _bound(a64, b64) + 1e-30), (err.max(), _bound(a64, b64).max())


@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.5, -2.0), (-1.5, 0.0), (2.0, 0.25)])
def test_gemm_alpha_beta(kernel, rng, alpha, beta):
    m, n, k = 37, 50, 45
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    c = rng.standard_normal((m, n)).astype(np.float32)
    got = ops.gemm(a, b, c, alpha=alpha, beta=beta)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = alpha * (a64 @ b64) + beta * c.astype(np.float64)
    tol = _bound(a64, b64, alpha) + 2.0 ** -22 * (np.abs(ref) + 1.0)
    assert np.all(np.abs(got - ref) <= tol)


def test_gemm_beta_zero_ignores_nan_c(kernel, rng):
    a = rng.standard_normal((20, 30)).astype(np.float32)
    b = rng.standard_normal((30, 40)).astype(np.float32)
    c = np.full((20, 40), np.nan, np.float32)
    assert np.isfinite(ops.gemm(a, b, c, beta=0.0)).all()


ACTS = {
    None: lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": np.tanh,
}


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("batch,nin,nout", [(1, 5, 3), (9, 33, 17), (64, 784, 256)])
def test_linear_bias_activation_epilogue(kernel, rng, act, batch, nin, nout):
    x = rng.standard_normal((batch, nin)).astype(np.float32)
    w = (rng.standard_normal((nout, nin)) / np.sqrt(nin)).astype(np.float32)
    bias = rng.standard_normal(nout).astype(np.float32)
    got = ops.linear(x, w, bias, activation=act)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    ref = ACTS[act](x64 @ w64.T + bias)
    # Every activation here is 1-Lipschitz: the pre-activation's bound carries over.
    tol = _bound(x64, w64.T) + 2.0 ** -22 * (np.abs(ref) + 1.0)
    assert np.all(np.abs(got - ref) <= tol)


def test_medium_really_uses_bfloat16(kernel, rng):
    a = rng.standard_normal((40, 64)).astype(np.float32)
    b = rng.standard_normal((64, 24)).astype(np.float32)
    got = ops.gemm(a, b)
    fastnn.set_float32_matmul_precision("highest")
    exact = ops.gemm(a, b)
    assert not np.array_equal(got, exact)
    # With operands that bfloat16 holds exactly (small integers), the two agree exactly.
    ai = rng.integers(-8, 9, (40, 64)).astype(np.float32)
    bi = rng.integers(-8, 9, (64, 24)).astype(np.float32)
    want = ops.gemm(ai, bi)
    fastnn.set_float32_matmul_precision("medium")
    np.testing.assert_array_equal(ops.gemm(ai, bi), want)


def test_results_do_not_depend_on_threads(kernel, rng):
    a = rng.standard_normal((200, 300)).astype(np.float32)
    b = rng.standard_normal((300, 170)).astype(np.float32)
    fastnn.set_num_threads(1)
    one = ops.gemm(a, b)
    fastnn.set_num_threads(2)
    two = ops.gemm(a, b)
    np.testing.assert_array_equal(one, two)


def test_float64_is_never_rounded(kernel, rng):
    a = rng.standard_normal((30, 40))
    b = rng.standard_normal((40, 20))
    np.testing.assert_allclose(ops.gemm(a, b), a @ b, rtol=1e-12, atol=1e-12)


# ---- the setting ----------------------------------------------------------------------------

def test_default_is_highest():
    code = "import fastnn; print(fastnn.get_float32_matmul_precision())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ), check=True)
    assert out.stdout.strip() == "highest"


@pytest.mark.parametrize("bad", ["low", "HIGHEST", "", None, 2, "bf16"])
def test_setting_is_validated(bad):
    with pytest.raises(ValueError, match="highest.*high.*medium"):
        fastnn.set_float32_matmul_precision(bad)
    assert fastnn.get_float32_matmul_precision() == "highest"


@pytest.mark.parametrize("level", ["highest", "high", "medium"])
def test_setting_round_trips(level):
    fastnn.set_float32_matmul_precision(level)
    assert fastnn.get_float32_matmul_precision() == level


def test_highest_and_high_stay_bit_identical_float32(rng):
    a = rng.standard_normal((70, 90)).astype(np.float32)
    b = rng.standard_normal((90, 33)).astype(np.float32)
    w = rng.standard_normal((20, 90)).astype(np.float32)
    before = (ops.gemm(a, b), ops.linear(a, w, None, activation="relu"))
    for level in ("high", "medium", "highest"):
        fastnn.set_float32_matmul_precision(level)
        if level == "medium":
            continue
        after = (ops.gemm(a, b), ops.linear(a, w, None, activation="relu"))
        for x, y in zip(before, after):
            np.testing.assert_array_equal(x, y)


def test_medium_without_a_kernel_falls_back_to_float32(rng):
    a = rng.standard_normal((50, 60)).astype(np.float32)
    b = rng.standard_normal((60, 70)).astype(np.float32)
    exact = ops.gemm(a, b)
    precision._set_bf16_kernel("none")
    fastnn.set_float32_matmul_precision("medium")
    assert precision.bf16_kernel() is None
    np.testing.assert_array_equal(ops.gemm(a, b), exact)


def test_unknown_or_unsupported_kernel_is_refused():
    with pytest.raises(ValueError, match="not available"):
        precision._set_bf16_kernel("sse9")


@pytest.mark.parametrize("name", KERNELS + ["none"])
def test_env_var_forces_a_kernel(name):
    if name != "none" and name not in _available():
        pytest.skip(f"no {name} kernel here")
    code = "from fastnn import precision; print(precision.bf16_kernel())"
    env = dict(os.environ, FASTNN_BF16=name)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == (name if name != "none" else "None")


# ---- the RBM on bfloat16 products -----------------------------------------------------------

def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_rbm_units_and_samples(kernel, rng):
    nh, nv, batch = 40, 70, 33
    w = (rng.standard_normal((nh, nv)) * 0.3).astype(np.float32)
    b_hid = rng.standard_normal(nh).astype(np.float32)
    b_vis = rng.standard_normal(nv).astype(np.float32)
    v = (rng.random((batch, nv)) < 0.4).astype(np.float32)
    h = ops.rbm_hidden(v, w, b_hid)
    v64, w64 = v.astype(np.float64), w.astype(np.float64)
    ref = _sigmoid(v64 @ w64.T + b_hid)
    assert np.all(np.abs(h - ref) <= 0.25 * _bound(v64, w64.T) + 1e-6)  # sigmoid' <= 1/4
    hs = ops.rbm_hidden(v, w, b_hid, sample=True, seed=5)
    fastnn.set_float32_matmul_precision("highest")
    hs32 = ops.rbm_hidden(v, w, b_hid, sample=True, seed=5)
    assert set(np.unique(hs)) <= {0.0, 1.0}
    # The same uniforms: only draws whose probability moved across their uniform may differ.
    assert np.mean(hs != hs32) < 0.02
    fastnn.set_float32_matmul_precision("medium")
    vm = ops.rbm_visible(h, w, b_vis)
    ref_v = _sigmoid(h.astype(np.float64) @ w64 + b_vis)
    assert np.all(np.abs(vm - ref_v) <= 0.25 * _bound(h.astype(np.float64), w64) + 1e-6)


def _patterns(rng, n=512, nv=64, protos=6, flip=0.05):
    p = rng.random((protos, nv)) < 0.5
    x = p[rng.integers(0, protos, n)]
    x ^= rng.random(x.shape) < flip
    return x.astype(np.float32)


def test_rbm_trained_on_bf16_products_learns_like_float32(kernel, rng):
    x = _patterns(rng)
    scores = {}
    for level in ("highest", "medium"):
        fastnn.set_float32_matmul_precision(level)
        rbm = fastnn.nn.RBM(32, learning_rate=0.1, batch_size=32, seed=3)
        rbm.fit(x, epochs=8, verbose=0)
        fastnn.set_float32_matmul_precision("highest")  # score both the same way
        scores[level] = float(rbm.score_samples(x, seed=0).mean())
        if level == "highest":
            untrained = fastnn.nn.RBM(32, seed=3)
            untrained.initialize(x)
            start = float(untrained.score_samples(x, seed=0).mean())
    assert scores["highest"] > start + 5.0
    assert scores["medium"] > start + 5.0
    assert abs(scores["medium"] - scores["highest"]) < 0.1 * abs(scores["highest"]) + 1.0


def test_rbm_cd_step_does_not_depend_on_threads(kernel, rng):
    x = _patterns(rng, n=64, nv=90)
    results = []
    for threads in (1, 2):
        fastnn.set_num_threads(threads)
        w = (np.random.default_rng(0).standard_normal((48, 90)) * 0.01).astype(np.float32)
        b_vis, b_hid = np.zeros(90, np.float32), np.zeros(48, np.float32)
        chain = np.zeros((64, 48), np.float32)
        errs = [ops.rbm_cd_step(x, w, b_vis, b_hid, persistent_chain=chain, lr=0.05, seed=s)
                for s in range(3)]
        results.append((w, b_vis, b_hid, chain, errs))
    for a, b in zip(results[0], results[1]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("nh,nv,batch,particles", [(256, 784, 64, 64), (48, 90, 64, 64),
                                                   (33, 70, 32, 50), (100, 33, 2, 7),
                                                   (31, 31, 16, 16), (300, 500, 64, 64)])
@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_fused_pcd_step_gives_the_general_paths_bits(kernel, nh, nv, batch, particles, visible):
    # The common PCD-1 step runs as one phased job (cpu/rbm_fused.cpp) on bfloat16 products.
    check_fused_rbm_step(nh, nv, batch, particles, visible)
