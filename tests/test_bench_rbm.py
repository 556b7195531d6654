"""bench.rbm: combining and reporting the per-library results (no training here)."""
from __future__ import annotations

from bench import rbm, run


def test_rbm_family_is_registered():
    assert "rbm" in run.FAMILIES
    assert run.parse_args(["--family", "rbm"]).family == "rbm"


def test_combine_and_report_against_the_targets():
    res = rbm.combine({
        "fastnn": {"epoch_s": [0.30, 0.32, 0.31], "pseudo_likelihood": -200.0,
                   "logistic_accuracy": 0.85},
        "sklearn": {"epoch_s": [3.0, 3.2, 3.1], "pseudo_likelihood": -226.0,
                    "logistic_accuracy": 0.839},
    })
    assert abs(res["ratio"] - 10.0) < 1e-9
    assert res["checks"] == {"speed": True, "pseudo_likelihood": True, "logistic": True}
    text = rbm.report(res)
    assert "10.0x" in text and "-200.0" in text and "0.8500" in text and "MISS" not in text
    slow = rbm.combine({"fastnn": {"epoch_s": [1.0], "pseudo_likelihood": -230.0,
                                   "logistic_accuracy": 0.80},
                        "sklearn": {"epoch_s": [3.0], "pseudo_likelihood": -226.0},
                        })
    assert slow["checks"] == {"speed": False, "pseudo_likelihood": False, "logistic": False}
    assert "speed MISS" in rbm.report(slow)


def test_a_failed_library_is_reported():
    res = rbm.combine({"fastnn": {"epoch_s": [0.5], "pseudo_likelihood": -210.0},
                       "sklearn": {"error": "boom"}})
    assert res["ratio"] is None and "sklearn: boom" in rbm.report(res)


def test_bf16_row_has_its_own_ratio_checks_and_kernel():
    res = rbm.combine({
        "fastnn": {"epoch_s": [1.0, 1.0], "pseudo_likelihood": -207.0, "logistic_accuracy": 0.843},
        "fastnn_bf16": {"epoch_s": [0.25, 0.27], "pseudo_likelihood": -230.0,
                        "logistic_accuracy": 0.845, "kernel": "amx"},
        "sklearn": {"epoch_s": [2.6, 2.6], "pseudo_likelihood": -226.0},
    })
    assert abs(res["ratio_bf16"] - 2.6 / 0.26) < 1e-9 and abs(res["ratio"] - 2.6) < 1e-9
    assert res["checks"]["speed (bf16)"] is True and res["checks"]["speed"] is False
    assert res["checks"]["pseudo_likelihood (bf16)"] is False
    text = rbm.report(res)
    assert "fastnn (bf16 products)" in text and "bf16 kernel: amx" in text and "10.0x" in text
