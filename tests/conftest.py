"""Shared fixtures: every op test runs once per available backend."""
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
