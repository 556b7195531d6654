"""bench/distributed.py's pure parts: the shard split, the verdicts and the report."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # bench/ is not installed with the package
    sys.path.insert(0, str(ROOT))

from bench import distributed as bd  # noqa: E402


def test_shard_cuts_every_global_batch_in_rank_parts():
    n, batch = 23, 3
    parts = [bd._shard(n, batch, 2, r, epoch=4) for r in range(2)]
    order = np.random.default_rng([bd.SEED, 4]).permutation(n)
    assert all(len(p) == 9 for p in parts)  # 3 whole global batches of 6, in halves
    for s in range(3):
        g = order[6 * s:6 * s + 6]
        np.testing.assert_array_equal(parts[0][3 * s:3 * s + 3], g[:3])
        np.testing.assert_array_equal(parts[1][3 * s:3 * s + 3], g[3:])
    np.testing.assert_array_equal(bd._shard(n, batch, 1, 0, 4), order[:21])


def _run(median):
    return {"epoch_s": [median, median * 1.1, median * 0.9]}


def test_combine_and_report_verdicts():
    runs = {"fastnn 1x1": _run(1.0), "fastnn 1x2": _run(0.6),
            "fastnn 2x1": {**_run(0.5), "wait_ms_median": 0.1, "buckets": 1},
            "torch 1x1": _run(2.0), "torch 1x2": _run(1.5), "torch 2x1": _run(1.6),
            "fastnn 2x1 no-overlap": {"error": "fastnn 2x1 failed"}}
    res = bd.combine({"epochs": 3, "models": {"mlp": {"samples": 1000, "global_batch": 100,
                                                       "runs": runs}}})
    v = res["models"]["mlp"]["verdicts"]
    assert abs(v["fastnn 2x1 scaling"] - 2.0) < 1e-12
    assert abs(v["torch 2x1 scaling"] - 1.25) < 1e-12
    assert abs(v["fastnn/torch 2x1"] - 3.2) < 1e-12
    assert v["pass scaling"] and v["pass efficiency"] and v["pass vs torch"]
    assert runs["fastnn 1x1"]["samples_per_s"] == 1000.0
    text = bd.report(res)
    assert "fastnn 2x1 scaling 2.00" in text and "fastnn 2x1 failed" in text
    assert "0.100 ms wait/step" in text


def test_missing_library_gives_no_verdict():
    res = bd.combine({"epochs": 1, "models": {"cnn": {"samples": 256, "global_batch": 128,
                                                       "runs": {"fastnn 1x1": _run(1.0),
                                                                "fastnn 2x1": _run(0.8)}}}})
    v = res["models"]["cnn"]["verdicts"]
    assert v["pass scaling"] is False and v["pass efficiency"] is None
    assert v["pass vs torch"] is None
    assert "MISS" in bd.report(res) and "-" in bd.report(res)
