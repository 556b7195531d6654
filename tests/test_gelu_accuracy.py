"""The float32 GELU and its derivative (C++ kernels, every ISA; the elementwise op, the linear
layer's fused path and the GEMM epilogue) against float64 over the whole float range: a few ulp
everywhere, the negative tail included, where the textbook 0.5 x (1 + erf(x / sqrt2)) loses
every digit."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fastnn import ops

_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _phi(x):
    return 0.5 * _erfc(-x / math.sqrt(2.0))


def _inputs():
    rng = np.random.default_rng(5)
    mags = np.concatenate([np.logspace(-30, np.log10(14.0), 4000),
                           rng.uniform(0.0, 14.0, 4000),
                           [0.0, 0.5, 0.999999, 1.0, 1.000001, 3.0, 9.3, 13.0, 13.2, 13.3, 20.0,
                            1e3, 1e30, 3e38]])
    return np.concatenate([mags, -mags]).astype(np.float32)


def _ulp_error(got, want, scale):
    """|got - want| in ulps of float32 at |scale|; where scale is below the normal range the
    unit is an eighth of the smallest normal (the kernels flush subnormal results to 0)."""
    tiny = float(np.finfo(np.float32).tiny)
    unit = np.spacing(np.abs(scale).astype(np.float32)).astype(np.float64)
    unit = np.where(np.abs(scale) < tiny, tiny / 8, unit)
    return np.abs(got.astype(np.float64) - want) / unit


def test_gelu_forward_ulps(isa):
    x = _inputs()
    xd = x.astype(np.float64)
    want = xd * _phi(xd)
    got = ops.activation(x, "gelu")
    err = _ulp_error(got, want, want)
    assert err.max() <= 8, (x[np.argmax(err)], err.max())


def test_gelu_derivative_ulps(isa):
    x = _inputs()
    xd = x.astype(np.float64)
    pdf_term = xd * np.exp(-0.5 * xd * xd) / math.sqrt(2.0 * math.pi)
    want = _phi(xd) + pdf_term
    _, ctx = ops.activation_forward(x, "gelu")
    (got,) = ops.activation_backward(ctx, np.ones_like(x))
    # The derivative crosses zero near x = -0.75, so its error is measured against the size of
    # the two terms it adds.
    err = _ulp_error(got, want, np.abs(_phi(xd)) + np.abs(pdf_term))
    assert err.max() <= 8, (x[np.argmax(err)], err.max())


def test_gelu_special_values(isa):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], np.float32)
    y = ops.activation(x, "gelu")
    assert np.isnan(y[0]) and y[1] == np.inf and np.isnan(y[2])
    assert y[3] == 0.0 and y[4] == 0.0


@pytest.mark.parametrize("n", [1, 7, 16, 33])
def test_gelu_row_tails(isa, n):
    # Rows shorter than, equal to and past a vector: the tail goes through the same math.
    x = np.linspace(-6.0, 6.0, 3 * n, dtype=np.float32).reshape(3, n)
    xd = x.astype(np.float64)
    want = xd * _phi(xd)
    assert _ulp_error(ops.activation(x, "gelu"), want, want).max() <= 8


def test_gelu_in_linear_layer(isa):
    # The linear layer applies GELU after the product: kept pre-activation (training) and the
    # GEMM epilogue (no pre-activation kept) agree with float64.
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((37, 19)) * 2).astype(np.float32)
    w = (rng.standard_normal((23, 19)) * 2).astype(np.float32)
    b = rng.standard_normal(23).astype(np.float32)
    z = x.astype(np.float64) @ w.T.astype(np.float64) + b
    want = z * _phi(z)
    tol = 1e-5 * (np.abs(z) + 1.0)
    for y in (ops.linear(x, w, b, activation="gelu"),
              ops.linear_forward(x, w, b, activation="gelu")[0]):
        assert np.all(np.abs(y - want) <= tol)
