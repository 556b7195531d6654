"""The attention benchmark's pure helpers: the NumPy idiom, flops, result assembly, report and
the memory probe's bookkeeping. No timing is asserted."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # bench/ is not installed with the package
    sys.path.insert(0, str(ROOT))

from bench import attention, run  # noqa: E402
from fastnn import reference as R  # noqa: E402


def test_numpy_idiom_is_the_reference_formula(rng):
    q, k, v = (rng.standard_normal((2, 3, 9, 8)).astype(np.float32) for _ in range(3))
    np.testing.assert_allclose(attention.numpy_attention(q, k, v), R.attention(q, k, v),
                               rtol=1e-5, atol=1e-6)


def test_flops_convention():
    fwd = attention.flops("attention forward")
    assert fwd == 4.0 * 8 * 8 * 1024 * 1024 * 64
    assert attention.flops("attention forward+backward") == 3 * fwd
    assert attention.flops("causal forward") == fwd / 2


def _samples(ms):
    return {"samples": [ms / 1e3] * 3, "calls": 1}


def test_combine_and_report():
    results = {
        "fastnn": {"cases": {"attention forward": _samples(60), "attention forward+backward":
                             _samples(200), "causal forward": _samples(33)}, "correct": True},
        "numpy": {"cases": {"attention forward": _samples(450)}, "correct": True},
        "torch": {"cases": {"attention forward": _samples(95), "attention forward+backward":
                            _samples(350), "causal forward": _samples(72)}, "correct": True},
    }
    memory = {"fastnn": {"forward_mib": 0.5, "backward_mib": 12.0},
              "torch": {"error": "failed"}}
    res = attention.combine(results, memory, 500.0)
    rows = {r["case"]: r for r in res["rows"]}
    assert rows["attention forward"]["ratio_torch"] == pytest.approx(95 / 60)
    assert rows["attention forward"]["ratio_numpy"] == pytest.approx(7.5)
    assert rows["attention forward"]["pass"] is True
    assert rows["attention forward+backward"]["pass"] is True
    assert res["causal_ratio"] == pytest.approx(33 / 60)
    assert rows["causal forward"]["pass"] is True
    gf = rows["attention forward"]["gflops"]["fastnn"]
    assert gf == pytest.approx(attention.flops("attention forward") / 0.06 / 1e9)
    assert rows["attention forward"]["peak_pct"]["fastnn"] == pytest.approx(100 * gf / 500)
    text = attention.report(res)
    assert "attention forward" in text and "pass" in text and "failed" in text
    assert "16384" in text
    slow = dict(results, fastnn={"cases": {k: _samples(100) for k in attention.CASES},
                                 "correct": True})
    res = attention.combine(slow, memory, None)
    assert {r["case"]: r["pass"] for r in res["rows"]} == {
        "attention forward": False, "attention forward+backward": True,
        "causal forward": False}


def test_memory_extra_measures_a_large_temporary():
    if not attention._reset_peak():
        pytest.skip("this kernel cannot reset the peak resident memory")

    def big():
        a = np.ones(16 * 2 ** 20 // 8)  # 16 MiB, touched, then freed
        return float(a.sum())

    extra = attention._extra(big, 0)
    assert extra is not None and 15.0 <= extra <= 40.0


def test_attention_is_a_family():
    assert "attention" in run.FAMILIES
    assert run.parse_args(["--family", "attention"]).family == "attention"
