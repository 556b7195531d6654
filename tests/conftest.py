"""Shared fixtures: every op test runs once per available backend; a C++ kernel test once per
instruction set (``isa``)."""
from __future__ import annotations

import os

import numpy as np
import pytest

import fastnn
from fastnn import backend as _backend


def _backends():
    out = []
    if _backend._C is not None:
        out.append("cpp")
    out.append("numba")
    out.append(pytest.param("cuda", marks=pytest.mark.gpu))
    return out


BACKENDS = _backends()


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run the test under each backend; CUDA skips cleanly where no device exists."""
    name = request.param
    if name == "cuda" and not fastnn.cuda.is_available():
        pytest.skip("no CUDA device: " + fastnn.cuda.unavailable_reason())
    with _backend.use_backend(name):
        yield name


@pytest.fixture
def rng():
    return np.random.default_rng(int(os.environ.get("FASTNN_TEST_SEED", "1234")))


@pytest.fixture(params=["generic", "avx2", "avx512"])
def isa(request):
    """Run the test under each instruction set; one this CPU (or a build without the C++
    module) cannot run skips."""
    if _backend._C is None:
        pytest.skip("no C++ backend")
    if not _backend._C.cpu_supports(request.param):
        pytest.skip(f"this CPU cannot run {request.param}")
    prev = fastnn.get_isa()
    fastnn.set_isa(request.param)
    try:
        yield request.param
    finally:
        fastnn.set_isa(prev)
