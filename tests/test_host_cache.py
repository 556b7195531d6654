"""The host cache behind large op outputs (fastnn.empty_cache): blocks come back for reuse once
their array and every view of it are gone, the limit holds, and outputs written into recycled
(garbage-filled) blocks are still exactly what the kernels compute."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import backend as _backend
from fastnn import reference as ref
from fastnn.ops import _check

from helpers import check_op

_C = _backend._C
pytestmark = pytest.mark.skipif(_C is None, reason="no C++ module")
MIB = 1 << 20


@pytest.fixture(autouse=True)
def _empty_cache():
    fastnn.empty_cache()
    yield
    fastnn.empty_cache()


def test_large_outputs_come_back_for_reuse():
    a = _check.host_empty((512, 1024), np.float32)  # 2 MiB
    assert a.shape == (512, 1024) and a.dtype == np.float32 and a.flags.c_contiguous
    assert a.flags.writeable and a.ctypes.data % (2 * MIB) == 0
    addr = a.ctypes.data
    assert _C.host_cache_bytes() == 0
    del a
    assert _C.host_cache_bytes() == 2 * MIB
    b = _check.host_empty((2 * MIB,), np.uint8)
    assert b.ctypes.data == addr and _C.host_cache_bytes() == 0
    del b
    fastnn.empty_cache()
    assert _C.host_cache_bytes() == 0 and fastnn.build_info()["host_cache_bytes"] == 0


def test_small_outputs_are_plain_numpy_arrays():
    a = _check.host_empty((100, 100), np.float64)
    assert a.flags.owndata and a.shape == (100, 100)
    del a
    assert _C.host_cache_bytes() == 0


def test_a_view_keeps_the_block():
    a = _check.host_empty((3 * MIB // 8,), np.float64)
    a[:] = np.arange(a.size)
    view = a[10:20]
    del a
    assert _C.host_cache_bytes() == 0  # still in use through the view
    _check.host_empty((4 * MIB,), np.uint8)[:] = 7  # must not be handed the viewed block
    assert np.array_equal(view, np.arange(10, 20))
    del view
    assert _C.host_cache_bytes() >= 4 * MIB


def test_best_fit_does_not_hand_a_large_block_to_a_small_request():
    big = _check.host_empty((16 * MIB,), np.uint8)
    addr = big.ctypes.data
    del big
    small = _check.host_empty((2 * MIB,), np.uint8)
    assert small.ctypes.data != addr and _C.host_cache_bytes() == 16 * MIB


@pytest.mark.parametrize("limit_mb, left", [(0, 0), (5, 4 * MIB)])
def test_the_limit_holds(limit_mb, left):
    code = ("import numpy as np, fastnn\n"
            "from fastnn.ops import _check\n"
            "arrays = [_check.host_empty((2 << 20,), np.uint8) for _ in range(3)]\n"
            "del arrays\n"
            "print(fastnn.build_info()['host_cache_bytes'], fastnn.build_info()['host_cache_limit'])\n")
    env = dict(os.environ, FASTNN_HOST_CACHE_MB=str(limit_mb))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert int(out[0]) == left and int(out[1]) == limit_mb * MIB


def _poison(*shapes):
    """Fills cached blocks of these sizes with NaN, so the next outputs of those sizes reuse
    garbage, not the zero pages of fresh memory."""
    blocks = [_check.host_empty(s, np.float32) for s in shapes]
    assert all(not b.flags.owndata for b in blocks), "too small for the cache"
    for b in blocks:
        b.fill(np.nan)
    return {b.ctypes.data for b in blocks}


def test_outputs_in_recycled_blocks_are_fully_written(rng):
    q, k, v, do = (rng.standard_normal((2, 4, 512, 64)).astype(np.float32) for _ in range(4))
    poisoned = _poison(q.shape, q.shape, q.shape, q.shape)
    o, ctx = fastnn.ops.attention_forward(q, k, v, causal=True)
    assert o.ctypes.data in poisoned  # the test means something only if the block was reused
    check_op(o, ref.attention(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64),
                              causal=True), np.float32, reduction=512)
    poisoned = _poison(q.shape, q.shape, q.shape)
    grads = fastnn.ops.attention_backward(ctx, do)
    assert all(g.ctypes.data in poisoned and np.isfinite(g).all() for g in grads)

    x = rng.standard_normal((8, 16, 48, 48)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    poisoned = _poison(x.shape)
    y = fastnn.ops.conv2d(x, w, padding=1)
    assert y.ctypes.data in poisoned
    check_op(y, ref.conv2d(x.astype(np.float64), w.astype(np.float64), padding=1), np.float32,
             reduction=16 * 9)

    xs = rng.standard_normal((16, 64, 32)).astype(np.float32)
    h0 = np.zeros((16, 256), np.float32)
    w_ih = rng.standard_normal((1024, 32)).astype(np.float32) * 0.1
    w_hh = rng.standard_normal((1024, 256)).astype(np.float32) * 0.05
    poisoned = _poison((16, 64, 256), (64, 16, 5 * 256))  # y (1 MiB) and the saved gates
    (y1, _, _), ctx = fastnn.ops.lstm_forward(xs, h0, h0, w_ih, w_hh)
    assert {y1.ctypes.data, ctx.gates.ctypes.data} == poisoned
    fastnn.empty_cache()
    y2, _, _ = fastnn.ops.lstm(xs, h0, h0, w_ih, w_hh)
    assert np.array_equal(y1, y2) and np.isfinite(y1).all()


def _child_allocates(q):
    a = _check.host_empty((3 * MIB,), np.uint8)
    a[:] = 1
    del a
    q.put(int(_C.host_cache_bytes()))
    fastnn.empty_cache()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_uses_its_own_copy_of_the_cache():
    import multiprocessing as mp
    kept = _check.host_empty((2 * MIB,), np.uint8)
    del kept  # one 2 MiB block cached in the parent, inherited by the child
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_allocates, args=(q,))
    p.start()
    got = q.get(timeout=60)
    p.join(60)
    assert p.exitcode == 0 and got == 2 * MIB + 4 * MIB
    assert _C.host_cache_bytes() == 2 * MIB  # the parent's cache is its own
