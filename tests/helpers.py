"""The one comparison helper every op test goes through, and a finite-difference gradient."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

# Per-dtype tolerances: |got - ref| <= atol + rtol * |ref|, scaled by the size of the reduction.
TOL = {np.dtype(np.float32): (1e-5, 1e-4), np.dtype(np.float64): (1e-12, 1e-10)}


def check_op(got, ref, dtype=None, *, reduction: int = 1, scale: float = 1.0) -> None:
    """Compare a kernel's output with its float64 reference.

    ``reduction`` is the length of the sums behind each element (k for GEMM): rounding error grows
    like sqrt(reduction), so the tolerance does too. ``scale`` is a typical magnitude of the terms.
    """
    got = np.asarray(got)
    ref = np.asarray(ref, dtype=np.float64)
    dtype = np.dtype(dtype or got.dtype)
    assert got.dtype == dtype, f"dtype {got.dtype}, expected {dtype}"
    assert got.shape == ref.shape, f"shape {got.shape}, expected {ref.shape}"
    atol, rtol = TOL[dtype]
    grow = np.sqrt(max(reduction, 1)) * max(scale, 1.0)
    with np.errstate(invalid="ignore"):  # inf - inf where both hold the same inf
        err = np.abs(got.astype(np.float64) - ref)
    bound = atol * grow + rtol * np.abs(ref) + rtol * grow
    nan_ref, nan_got = np.isnan(ref), np.isnan(got)
    assert np.array_equal(nan_ref, nan_got), "NaN pattern differs from the reference"
    ok = np.where(nan_ref, True, (err <= bound) | (got.astype(np.float64) == ref))
    if not ok.all():
        i = np.unravel_index(np.argmax(np.where(ok, 0, err - bound)), err.shape)
        raise AssertionError(f"max violation at {i}: got {got[i]!r}, ref {ref[i]!r}, "
                             f"|err| {err[i]:.3e} > bound {bound[i]:.3e} "
                             f"({(~ok).sum()} of {ok.size} elements off)")


def numeric_grad(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences of the scalar f() with respect to x (modified in place)."""
    g = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def check_grads_fd(fn: Callable[[], np.ndarray], dy: np.ndarray, grads: Sequence[np.ndarray],
                   inputs: Sequence[np.ndarray], **tol: float) -> None:
    """Each of ``grads`` is the gradient of ``sum(fn() * dy)`` with respect to the input at the
    same place in ``inputs`` (central finite differences; the inputs are perturbed in place)."""
    def f():
        return float((fn() * dy).sum())

    for g, x in zip(grads, inputs):
        np.testing.assert_allclose(g, numeric_grad(f, x), **tol)


def check_fused_rbm_step(nh: int, nv: int, batch: int, particles: int, visible: str) -> None:
    """The PCD-1 step's phased job (cpu/rbm_fused.cpp) against rbm_cd_step's general path, in
    the current float32 matmul precision: the same weights, biases and chain at 1, 2 and 3
    threads, with the batch given as rows of a larger array, and with the pool's workers held
    (the caller runs every part alone); the error may differ in its summation order only."""
    import pytest

    import fastnn
    from fastnn import backend as _b
    from fastnn import ops

    prev = fastnn.get_num_threads()

    def run(fused, threads, hold=False, rows=False):
        _b._C._set_rbm_fused(fused)
        fastnn.set_num_threads(threads)
        g = np.random.default_rng(1)
        w = (g.standard_normal((nh, nv)) * 0.1).astype(np.float32)
        b_vis = (g.standard_normal(nv) * 0.1).astype(np.float32)
        b_hid = (g.standard_normal(nh) * 0.1).astype(np.float32)
        chain = (g.random((particles, nh)) < 0.5).astype(np.float32)
        errs = []
        _b._C._hold_workers(hold)
        try:
            with _b.use_backend("cpp"):
                for s in range(4):
                    data = (g.standard_normal((3 * batch, nv)) if visible == "gaussian"
                            else g.random((3 * batch, nv)) < 0.3).astype(np.float32)
                    idx = g.permutation(3 * batch)[:batch]
                    kw = dict(persistent_chain=chain, lr=0.05, seed=s,
                              compute_error=s % 2 == 0, visible=visible)
                    errs.append(ops.rbm_cd_step(data, w, b_vis, b_hid, rows=idx, **kw) if rows
                                else ops.rbm_cd_step(data[idx], w, b_vis, b_hid, **kw))
        finally:
            _b._C._hold_workers(False)
            _b._C._set_rbm_fused(True)
            fastnn.set_num_threads(prev)
        return (w, b_vis, b_hid, chain), errs

    want, want_err = run(False, 1)
    for threads, hold, rows in ((1, False, False), (2, False, False), (3, False, True),
                                (2, True, True)):
        got, err = run(True, threads, hold, rows)
        for a, b in zip(want, got):
            np.testing.assert_array_equal(a, b)
        for e0, e1 in zip(want_err, err):
            assert (e0 is None) == (e1 is None)
            if e0 is not None:
                assert e1 == pytest.approx(e0, rel=1e-12)
