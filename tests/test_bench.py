"""The benchmark's pure helpers: statistics, tables, argument parsing, result assembly.

No test here asserts a timing: figures depend on the machine and its load.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # bench/ is not installed with the package
    sys.path.insert(0, str(ROOT))

from bench import common, gemm, interference, mlp, peak, run, stats  # noqa: E402
from bench.launch import child_env  # noqa: E402


def test_summarize_median_spread_and_quartiles():
    s = stats.summarize([4.0, 1.0, 2.0, 3.0, 5.0])
    assert s["median"] == 3.0 and s["min"] == 1.0 and s["max"] == 5.0 and s["repeats"] == 5
    assert s["q1"] == 2.0 and s["q3"] == 4.0
    assert s["spread_pct"] == pytest.approx(400.0 / 3.0)
    assert s["iqr_pct"] == pytest.approx(200.0 / 3.0)


def test_summarize_one_sample_and_none():
    s = stats.summarize([2.5])
    assert s["median"] == s["q1"] == s["q3"] == 2.5 and s["spread_pct"] == 0.0
    with pytest.raises(ValueError):
        stats.summarize([])


def test_ratios_and_unknowns():
    assert stats.speedup(1.0, 3.0) == 3.0  # fastnn 3x faster
    assert stats.slowdown(3.0, 1.0) == 3.0  # 3x slower after the other library
    assert stats.speedup(None, 1.0) is None and stats.slowdown(1.0, 0.0) is None
    assert stats.paired_slowdown([2.0, 9.0, 3.0], [1.0, 3.0, 3.0]) == 2.0
    assert stats.paired_slowdown([], []) is None
    assert stats.gflops(2e9, 0.5) == 4.0 and stats.gflops(1.0, None) is None
    assert stats.share(50.0, 200.0) == 25.0 and stats.share(1.0, None) is None


def test_table_aligns_columns():
    out = common.table(["name", "value"], [["a", 1.5], ["long name", "-"]]).splitlines()
    assert out[0] == "name       value"
    assert out[1] == "---------  -----"
    assert out[2] == "a            1.5"
    assert out[3] == "long name      -"
    assert common.num(None) == "-" and common.num(1.234, 2) == "1.23"
    assert common.pct(None) == "-" and common.pct(49.6) == "50%"


def test_parse_args_defaults_and_options(tmp_path):
    a = run.parse_args([])
    assert a.family == "all" and not a.quick and a.sizes is None
    assert a.threads == common.default_threads() and a.json == run.DEFAULT_JSON
    a = run.parse_args(["--family", "interference", "--quick", "--sizes", "32, 64",
                        "--threads", "1", "--json", str(tmp_path / "r.json")])
    assert (a.family, a.quick, a.sizes, a.threads) == ("interference", True, [32, 64], 1)
    assert a.json == tmp_path / "r.json"


@pytest.mark.parametrize("argv", [["--sizes", "0"], ["--sizes", "x"], ["--threads", "0"],
                                  ["--family", "no-such-family"]])
def test_parse_args_rejects(argv, capsys):
    with pytest.raises(SystemExit):
        run.parse_args(argv)
    capsys.readouterr()


def test_only_numpy_processes_drop_openblas_overrides():
    base = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1", "PYTHONPATH": "elsewhere"}
    kept = child_env(False, base)
    assert kept["OPENBLAS_CORETYPE"] == "Haswell" and kept["OPENBLAS_L2_SIZE"] == "1"
    cleared = child_env(True, base)
    assert not set(common.OPENBLAS_OVERRIDES) & set(cleared)
    assert cleared["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "elsewhere"]
    assert base["OPENBLAS_CORETYPE"] == "Haswell"  # the caller's mapping is left alone


def _lib_result(seconds):
    return {"samples": seconds, "calls": 10, "correct": True}


def test_gemm_combine_and_report_without_torch():
    per_lib = {
        "fastnn": {"square": [{"n": 64, **_lib_result([1e-5, 2e-5, 3e-5])}],
                   "linear": [{"shape": [32, 784, 128], **_lib_result([4e-5])}]},
        "numpy": {"square": [{"n": 64, **_lib_result([4e-5, 4e-5, 4e-5])}],
                  "linear": [{"shape": [32, 784, 128], **_lib_result([4e-5])}]},
        "torch": {"error": "no torch here"},
    }
    res = gemm.combine(per_lib, peak=100.0)
    sq = res["square"][0]
    assert sq["ratio_numpy"] == pytest.approx(2.0) and sq["ratio_torch"] is None
    assert sq["libs"]["fastnn"]["gflops"] == pytest.approx(2 * 64 ** 3 / 2e-5 / 1e9)
    assert sq["libs"]["fastnn"]["pct_peak"] == pytest.approx(sq["libs"]["fastnn"]["gflops"])
    assert sq["pass"] is True and res["linear"][0]["pass"] is False
    text = gemm.report(res)
    assert "no torch here" in text and "MISS" in text and "pass" in text


def test_mlp_combine_ratio():
    res = mlp.combine({"fastnn": {"epoch_s": [1.0, 2.0, 3.0], "test_accuracy": 0.8,
                                  "data": "x", "n_train": 10},
                       "torch": {"epoch_s": [4.0], "test_accuracy": 0.8, "data": "x",
                                 "n_train": 10}})
    assert res["ratio"] == 0.5 and res["pass"] is True
    assert "0.50" in mlp.report(res)
    res = mlp.combine({"fastnn": {"skipped": "no nn"}})
    assert res["ratio"] is None and "no nn" in mlp.report(res)


def test_interference_report_marks_targets():
    cell = {**stats.summarize([1e-5, 1e-5]), "samples": [1e-5, 1e-5], "calls": 1}
    slow = {**stats.summarize([3e-5]), "samples": [3e-5], "calls": 1}
    rows = [{"n": 128, "timed": "fastnn", "after": "numpy", "after_self": cell,
             "after_other": slow, "slowdown": 3.0, "paired_slowdown": 2.9, "target": 1.5,
             "pass": False},
            {"n": 128, "timed": "torch", "after": "numpy", "after_self": cell,
             "after_other": cell, "slowdown": 1.0, "paired_slowdown": 1.0, "target": None,
             "pass": None}]
    text = interference.report({"rows": rows})
    assert "FAIL" in text and "3.00" in text and "2.90" in text and "<= 1.5" in text
    assert {p[:2] for p in interference.PAIRS} >= {("fastnn", "numpy"), ("numpy", "fastnn"),
                                                   ("torch", "numpy")}


def test_peak_kernel_source_and_asm_count():
    tree = ast.parse(peak.kernel_source(depth=3, width=32))
    assert tree.body[0].name == "fma_block"
    assert peak.kernel_source(depth=3).count("v * m + c") == 3
    asm = ("vfmadd213ps %zmm1, %zmm2, %zmm3\n vfmadd231ps (%rax), %ymm1, %ymm0\n"
           "vfmadd213ss %xmm1, %xmm2, %xmm3\n")
    assert peak.vector_registers(asm) == {"512-bit": 1, "256-bit": 1, "128-bit": 0,
                                          "scalar": 1}


def test_peak_best_of_probes():
    probes = [{"gflops": 90.0, "threads": 2, "method": "numba", "how": "h",
               "one_thread_gflops": 50.0},
              {"error": "crashed"},
              {"gflops": 100.0, "threads": 2, "method": "numba", "how": "h",
               "one_thread_gflops": 51.0}]
    best = peak.best_of(probes)
    assert best["gflops"] == 100.0 and best["probe_gflops"] == [90.0, 100.0]
    assert "100 GF/s" in peak.peak_lines(best)[0]
    none = peak.best_of([{"error": "crashed"}])
    assert none["gflops"] is None and "crashed" in peak.peak_lines(none)[0]


@pytest.mark.slow
def test_quick_gemm_run_end_to_end(tmp_path):
    out = tmp_path / "results.json"
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]]
                                                        if os.environ.get("PYTHONPATH") else []))}
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--family", "gemm",
                           "--sizes", "32", "--json", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert [r["n"] for r in res["gemm"]["square"]] == [32]
    assert {"fastnn", "numpy"} <= set(res["gemm"]["square"][0]["libs"])
    assert len(res["gemm"]["linear"]) == len(gemm.LINEAR_SHAPES)
    assert "FMA peak" in proc.stdout and "GEMM, square float32" in proc.stdout
