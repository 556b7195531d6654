"""The C++ parallel runtime (csrc/common/parallel.h): chunks claimed from a shared counter, the
caller claiming too, idle workers sleeping, a new pool in a forked child.

Timing is the bench's business (python -m bench, interference section); these tests check the
guarantees: every chunk exactly once, completion without workers, identical results at any
thread count, concurrent callers, fork.
"""
from __future__ import annotations

import multiprocessing
import threading
import warnings

import numpy as np
import pytest

import fastnn
from fastnn import backend as _backend
from fastnn import ops
from fastnn import reference as R

from helpers import check_op

_C = _backend._C
pytestmark = pytest.mark.skipif(_C is None, reason="the C++ extension is not built")


@pytest.fixture
def threads():
    """Set the C++ thread count for one test and restore it afterwards."""
    prev = fastnn.get_num_threads()
    yield fastnn.set_num_threads
    fastnn.set_num_threads(prev)


def _run_with_deadline(fn, seconds=60.0):
    """Run fn on a daemon thread; a hang fails the test instead of hanging the suite."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised on the test's thread
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"did not finish within {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.mark.parametrize("n_chunks", [1, 2, 3, 17, 1000])
@pytest.mark.parametrize("nthreads", [1, 2, 3, 8])
def test_every_chunk_runs_once_on_a_valid_slot(n_chunks, nthreads):
    runs, slots = _C._parallel_probe(n_chunks, nthreads, False, 2.0)
    assert runs == [1] * n_chunks
    assert all(0 <= s < min(nthreads, n_chunks) for s in slots)


def test_zero_chunks_is_a_no_op():
    assert _C._parallel_probe(0, 2, False, 0.0) == ([], [])


def test_caller_completes_when_workers_never_start():
    # Workers that wake but never claim stand for workers the OS keeps off the cores (another
    # library spinning there): the caller must run every chunk itself, and not wait for them.
    runs, slots = _run_with_deadline(lambda: _C._parallel_probe(64, 4, True, 20.0))
    assert runs == [1] * 64
    assert slots == [0] * 64
    # And the pool works normally afterwards.
    runs, _ = _C._parallel_probe(64, 2, False, 1.0)
    assert runs == [1] * 64


def _check_phases(phases, parts, runs, start, end):
    assert runs == [1] * (phases * parts)
    for ph in range(1, phases):
        prev_end = max(end[(ph - 1) * parts:ph * parts])
        first_start = min(start[ph * parts:(ph + 1) * parts])
        assert first_start > prev_end, f"phase {ph} started before phase {ph - 1} ended"


@pytest.mark.parametrize("phases,parts", [(1, 1), (3, 2), (4, 3), (2, 7), (5, 1)])
@pytest.mark.parametrize("nthreads", [1, 2, 3, 8])
def test_phases_run_every_part_once_in_order(phases, parts, nthreads):
    runs, start, end = _C._phases_probe(phases, parts, nthreads, False, 20.0)
    _check_phases(phases, parts, runs, start, end)


def test_phases_zero_is_a_no_op():
    assert _C._phases_probe(0, 2, 2, False, 0.0) == ([], [], [])
    assert _C._phases_probe(3, 0, 2, False, 0.0) == ([], [], [])


def test_phases_complete_when_workers_never_start():
    # The caller takes every part of every phase itself: it never waits at a phase boundary
    # for a part nobody claimed.
    runs, start, end = _run_with_deadline(lambda: _C._phases_probe(6, 2, 2, True, 20.0))
    _check_phases(6, 2, runs, start, end)


@pytest.mark.parametrize("m,n,k", [(64, 64, 64), (256, 200, 300), (401, 161, 900),
                                   (500, 4200, 300)])
def test_gemm_completes_when_workers_never_start(threads, rng, m, n, k):
    # Both GEMM paths, the blocked one with several column panels and k blocks: with the workers
    # held, the caller runs every chunk itself and gets the product the pool computes.
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    w = np.ascontiguousarray(b.T)  # PyTorch's (out, in) layout: B = w^T is packed
    threads(2)

    def run():
        return ops.gemm(a, b), ops.linear(a, b.T, bias, "relu"), ops.linear(a, w, bias, "relu")

    with _backend.use_backend("cpp"):
        free = run()
        _C._hold_workers(True)
        try:
            held = _run_with_deadline(run)
        finally:
            _C._hold_workers(False)
    check_op(held[0], R.gemm(a, b), np.float32, reduction=k)
    for got, ref in zip(held, free):
        assert np.array_equal(got, ref)


def test_workers_do_take_part():
    # Long chunks leave a worker time to wake even from sleep: some chunk must run off slot 0,
    # or the pool is not running anything in parallel at all.
    # Several tries: on a shared machine another process may hold the second core for a while.
    for _ in range(10):
        _, slots = _C._parallel_probe(200, 2, False, 200.0)
        if any(s != 0 for s in slots):
            return
    pytest.fail("no chunk of ten 40 ms jobs ran on a worker")


def test_wake_latency_probe_returns_a_duration():
    # The bench's probe: a thread put to sleep and woken must run, after a positive and finite
    # delay (it would hang, or read a clock not yet written, if the handshake were wrong).
    samples = [_run_with_deadline(_C._wake_latency_us) for _ in range(5)]
    assert all(np.isfinite(x) and 0.0 < x for x in samples)


def test_pool_grows_with_the_thread_count(threads):
    threads(5)
    _C._parallel_probe(50, 5, False, 1.0)
    assert _C.pool_workers() >= 4
    assert "pool" in str(_C.threading)


# Shapes on both GEMM paths: direct (A in place) and blocked, with row blocks split over threads
# and with few rows (column groups), plus a k that is split into several blocks; at two threads
# and more, blocked products of 128 columns (or else rows) and up run as one part a thread.
SHAPES = [(64, 64, 64), (150, 700, 300), (401, 161, 900), (7, 3000, 260), (300, 300, 1100),
          (500, 4200, 300),  # blocked, several column panels (NC) and k blocks
          (1000, 100, 1500),  # blocked, one row part a thread
          (256, 128, 784), (100, 288, 300)]  # a packed B split by columns: 4 and 9 slivers


@pytest.mark.parametrize("m,n,k", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_identical_at_every_thread_count(threads, rng, m, n, k, dtype):
    # Each output tile is computed by one chunk in one fixed order, whichever thread claims it:
    # the result must not change with the thread count, nor between repeats.
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    bias = rng.standard_normal(n).astype(dtype)
    w = np.ascontiguousarray(b.T)  # (out, in): the linear layer packs B = w^T
    results = []
    for nt in (1, 2, 3, 2):
        threads(nt)
        with _backend.use_backend("cpp"):
            results.append((ops.gemm(a, b), ops.linear(a, b.T, bias, "relu"),
                            ops.linear(a, w, bias, "relu")))
    check_op(results[0][0], R.gemm(a, b), dtype, reduction=k)
    check_op(results[0][2], R.linear(a, w, bias, "relu"), dtype, reduction=k)
    for got in results[1:]:
        for x, ref in zip(got, results[0]):
            assert np.array_equal(x, ref)


def test_reductions_identical_at_every_thread_count(threads, rng):
    logits = rng.standard_normal((5000, 37)).astype(np.float32)
    labels = rng.integers(0, 37, 5000)
    out = []
    for nt in (1, 2, 4):
        threads(nt)
        with _backend.use_backend("cpp"):
            loss, _ = ops.softmax_cross_entropy_forward(logits, labels)
            out.append(float(loss))
    assert out[0] == out[1] == out[2]


def test_many_python_threads_at_once(threads, rng):
    # More callers than cores, on the blocked path: one job owns the pool at a time and the others
    # run theirs on their own thread; each must get its own, correct result.
    threads(2)
    mats = [(rng.standard_normal((300, 280)).astype(np.float32),
             rng.standard_normal((280, 520)).astype(np.float32)) for _ in range(6)]
    refs = [R.gemm(a, b) for a, b in mats]
    errors = []

    def work(i):
        a, b = mats[i]
        try:
            for _ in range(10):
                with _backend.use_backend("cpp"):
                    got = ops.gemm(a, b)
                check_op(got, refs[i], np.float32, reduction=280)
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not any(t.is_alive() for t in ts)
    if errors:
        raise errors[0]


def _child_gemm(n):
    a = np.arange(n * n, dtype=np.float32).reshape(n, n) % 7
    with _backend.use_backend("cpp"):
        got = ops.gemm(a, a)
    # Small integers: the float32 product is exact, so it must equal the float64 one.
    return bool(np.array_equal(got, a.astype(np.float64) @ a)), float(got[0, 1])


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                    reason="no fork on this platform")
def test_forked_child_computes(threads):
    # Data loaders fork: the child has none of the parent's worker threads, and its first call
    # must still complete (a new pool starts there).
    threads(2)
    a = np.ones((512, 512), np.float32)
    with _backend.use_backend("cpp"):
        ops.gemm(a, a)  # the parent's pool is up and its worker spinning
    assert _C.pool_workers() >= 1
    ctx = multiprocessing.get_context("fork")
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a multi-threaded process may deadlock: the case tested.
        warnings.simplefilter("ignore", DeprecationWarning)
        with ctx.Pool(1) as pool:
            exact, first = pool.apply_async(_child_gemm, (384,)).get(timeout=120)
    assert exact and first > 0
    # The parent's pool is untouched.
    with _backend.use_backend("cpp"):
        assert float(ops.gemm(a, a)[0, 0]) == 512.0
