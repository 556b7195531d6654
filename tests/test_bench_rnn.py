"""The rnn benchmark family: its NumPy idiom computes what the references do (so the NumPy
column times honest work), and its table and verdicts from synthetic timings."""
from __future__ import annotations

import numpy as np
import pytest

from bench import rnn
from fastnn import reference as ref


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_numpy_idiom_matches_the_reference(cell):
    rng = np.random.default_rng(3)
    b, t, i, h = 3, 4, 5, 6
    g = rnn.GATES[cell] * h
    x = rng.standard_normal((b, t, i))
    h0 = np.zeros((b, h))
    w_ih, w_hh = rng.standard_normal((g, i)) * 0.4, rng.standard_normal((g, h)) * 0.4
    b_ih, b_hh = rng.standard_normal(g) * 0.3, rng.standard_normal(g) * 0.3
    dy = rng.standard_normal((b, t, h))
    if cell == "LSTM":
        y, saved = rnn.np_lstm(x, h0, w_ih, w_hh, b_ih, b_hh, keep=True)
        dx, dw_ih, dw_hh, db = rnn.np_lstm_backward(x, w_ih, w_hh, dy, saved)
        want_y = ref.lstm(x, h0, h0, w_ih, w_hh, b_ih, b_hh)[0]
        want = ref.lstm_backward(x, h0, h0, w_ih, w_hh, b_ih, b_hh, None, dy)
        got = (dx, dw_ih, dw_hh, db)
        want = (want[0], want[3], want[4], want[5])
    else:
        y, saved = rnn.np_gru(x, h0, w_ih, w_hh, b_ih, b_hh, keep=True)
        got = rnn.np_gru_backward(x, w_ih, w_hh, dy, saved)
        want_y = ref.gru(x, h0, w_ih, w_hh, b_ih, b_hh)[0]
        w = ref.gru_backward(x, h0, w_ih, w_hh, b_ih, b_hh, None, dy)
        want = (w[0], w[2], w[3], w[4], w[5])
    np.testing.assert_allclose(y, want_y, rtol=1e-12, atol=1e-12)
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-12)


def test_combine_and_report():
    def lib(ms):
        return {"cases": {name: {"samples": [ms * 1e-3] * 3} for name in rnn.TARGETS},
                "correct": True}
    res = rnn.combine({"fastnn": lib(10.0), "numpy": lib(25.0), "torch": lib(14.0)}, 400.0)
    row = res["rows"][0]
    assert row["case"] == "LSTM forward"
    assert row["ratio_torch"] == pytest.approx(1.4) and row["ratio_numpy"] == pytest.approx(2.5)
    assert row["gflops"] == pytest.approx(rnn.flops("LSTM forward") / 0.01 / 1e9)
    assert row["pass"] is True            # 1.4 >= 1.3 and 2.5 >= 2
    assert res["rows"][1]["pass"] is False  # forward+backward wants 1.5x torch
    text = rnn.report(res)
    assert "LSTM forward+backward" in text and "MISS" in text and "pass" in text
    assert rnn.flops("GRU forward+backward") == 3 * rnn.flops("GRU forward")


def test_gemm_floor_from_the_fastest_library():
    from bench import common
    m, k, n = common.GEMM_RATE_SHAPE
    gemm_flops = 2.0 * m * k * n

    def lib(ms, gemm_ms):
        cases = {name: {"samples": [ms * 1e-3] * 3} for name in rnn.TARGETS}
        cases[common.GEMM_RATE_CASE] = {"samples": [gemm_ms * 1e-3] * 3}
        return {"cases": cases, "correct": True}
    # torch's GEMM is the fastest: 10 ms for the product, so its rate sets every floor
    res = rnn.combine({"fastnn": lib(30.0, 12.0), "numpy": lib(60.0, 20.0),
                       "torch": lib(39.0, 10.0)}, 400.0)
    assert res["gemm_rates"]["torch"] == pytest.approx(gemm_flops / 0.010 / 1e9)
    row = res["rows"][0]
    assert row["gemm_floor_s"] == pytest.approx(rnn.flops(row["case"]) / gemm_flops * 0.010)
    assert row["target_s"] == pytest.approx(0.039 / 1.3)
    text = rnn.report(res)
    assert "GEMM ms" in text and "torch 429 GF/s" in text
    # without the rate case (an older worker, or every library failed) the column reads '-'
    plain = rnn.combine({"fastnn": {"cases": {c: {"samples": [0.01]} for c in rnn.TARGETS},
                                    "correct": True}}, None)
    assert plain["rows"][0]["gemm_floor_s"] is None and plain["gemm_rates"] == {}
