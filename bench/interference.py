"""Interference: libraries sharing one process, on purpose (everywhere else each has its own).

``python -m bench.interference --threads N [--quick] --out FILE``, started by the runner with the
OpenBLAS overrides cleared, as for every process that runs NumPy's BLAS at full width.

A user's script calls NumPy, fastnn and torch in turn. A library whose idle threads keep spinning
after a call (OpenBLAS for about 0.1 s, OpenMP teams for a while too) steals cores from the next
library's call. For each size, each timed product is measured right after an untimed call of the
same product (the baseline) and right after an untimed call of another library, all conditions
taken in turn in every repeat; the slowdown is the ratio of the two medians.
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .common import (calibrate, import_fastnn, limit_numpy_blas, num, numpy_blas_info,
                     progress, sample, spread, table, timing, torch_installed)
from .stats import paired_slowdown, slowdown, summarize

SIZES = (128, 256, 512)
# Before every repeat the timed product runs untimed this long: longer than the disturbance an
# idle OpenBLAS worker causes (it spins about 0.1 s after a call; other libraries' calls slow
# down most towards the end of that), so that a repeat sees only the library called just before.
SETTLE_S = 0.25
# More repeats than elsewhere: the verdicts sit near 1.2 and 1.5, where noise decides them.
FULL_REPEATS = 15
# (timed library, library called just before, slowdown allowed); None: reported, no target
PAIRS: Tuple[Tuple[str, str, Optional[float]], ...] = (
    ("fastnn", "numpy", 1.5),
    ("numpy", "fastnn", 1.2),
    ("torch", "numpy", None),
    ("fastnn", "torch", None),
)


def _products(n: int, mods: Dict[str, Any]) -> Dict[str, Any]:
    import numpy as np
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    gemm = mods["fastnn"].ops.gemm
    ops = {"fastnn": lambda: gemm(a, b), "numpy": lambda: a @ b}
    if "torch" in mods:
        torch = mods["torch"]
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        ops["torch"] = lambda: torch.mm(ta, tb)
    return ops


def _settle(fn: Callable[[], Any], seconds: float) -> None:
    """Call fn for a while, untimed: whatever another library left spinning runs out first."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        fn()


def _measure_all(conditions: List[Tuple[int, str, str]], ops: Dict[int, Dict[str, Any]],
                 quick: bool) -> Dict[Tuple[int, str, str], Dict[str, Any]]:
    """Samples of every (n, timed, before) condition, all conditions taken in turn within each
    repeat: a burst of outside load (seconds long on a shared machine) then spoils at most a
    repeat or two of each condition, which the median absorbs, and baseline and disturbed
    figures are taken side by side in time."""
    settings = timing(quick)
    calls: Dict[Tuple[int, str, str], int] = {}
    prev: Optional[int] = None
    for n, timed, before in conditions:
        if n != prev:
            progress(f"interference warm-up, n = {n}")
        prev = n
        calls[n, timed, before] = calibrate(ops[n][timed], settings["min_time"],
                                            settings["warmup"], before=ops[n][before])
    samples: Dict[Tuple[int, str, str], List[float]] = {c: [] for c in conditions}
    repeats = int(settings["repeats"]) if quick else FULL_REPEATS
    for r in range(repeats):
        progress(f"interference repeat {r + 1}/{repeats}")
        for c in conditions:
            n, timed, before = c
            _settle(ops[n][timed], SETTLE_S)
            samples[c].append(sample(ops[n][timed], calls[c], before=ops[n][before]))
    return {c: {"samples": samples[c], "calls": calls[c], **summarize(samples[c])}
            for c in conditions}


def _wake_latency(fastnn: Any, samples: int = 100) -> Optional[Dict[str, float]]:
    """Median microseconds from waking a sleeping thread on another core to its running: on an
    idle machine, and right after a NumPy product (OpenBLAS's worker then spins on that core).
    A product shorter than this cannot use a second thread that has to be woken first."""
    probe = getattr(fastnn._C, "_wake_latency_us", None)
    if probe is None:
        return None
    import numpy as np
    a = np.ones((128, 128), dtype=np.float32)
    idle = [probe() for _ in range(samples)]
    after = []
    for _ in range(samples):
        a @ a
        after.append(probe())
    return {"idle": float(np.median(idle)), "after_numpy": float(np.median(after))}


def run(threads: int, quick: bool, sizes: Tuple[int, ...] = SIZES) -> Dict[str, Any]:
    mods: Dict[str, Any] = {}
    note = limit_numpy_blas(threads)
    fastnn = mods["fastnn"] = import_fastnn()
    fastnn.set_num_threads(threads)
    if torch_installed():
        import torch
        torch.set_num_threads(threads)
        mods["torch"] = torch
    wake = _wake_latency(fastnn)
    present = {"numpy", *mods}
    pairs = [p for p in PAIRS if p[0] in present and p[1] in present]
    # each timed library after itself (the baseline), then after each other library
    conditions = [(n, timed, before) for n in sizes
                  for timed in dict.fromkeys(p[0] for p in pairs)
                  for before in [timed] + [p[1] for p in pairs if p[0] == timed]]
    got = _measure_all(conditions, {n: _products(n, mods) for n in sizes}, quick)
    rows: List[Dict[str, Any]] = []
    for n in sizes:
        for timed, other, target in pairs:
            base, after = got[n, timed, timed], got[n, timed, other]
            ratio = slowdown(after["median"], base["median"])
            rows.append({"n": n, "timed": timed, "after": other, "after_self": base,
                         "after_other": after, "slowdown": ratio,
                         "paired_slowdown": paired_slowdown(after["samples"], base["samples"]),
                         "target": target,
                         "pass": None if target is None or ratio is None else ratio <= target})
    return {"process": {"threads": threads, "numpy_blas": numpy_blas_info(),
                        "fastnn_build_info": fastnn.build_info(),
                        "torch": getattr(mods.get("torch"), "__version__", None),
                        "notes": [note] if note else []},
            "wake_latency_us": wake,
            "rows": rows, "settle_s": SETTLE_S,
            "statistic": "median over repeats of the mean seconds per timed call; slowdown: "
                         "median after the other library / median after itself"}


def report(res: Dict[str, Any]) -> str:
    title = ("Interference, one process: each product timed right after an untimed call of "
             "itself (baseline) and of another library")
    if "error" in res:
        return f"{title}\n{res['error']}"
    rows = []
    for r in res["rows"]:
        s, o = r["after_self"], r["after_other"]
        verdict = {True: "pass", False: "FAIL", None: ""}[r["pass"]]
        rows.append([r["n"], r["timed"], f"after {r['after']}", num(s["median"] * 1e6),
                     spread(s), num(o["median"] * 1e6),
                     spread(o), num(r["slowdown"], 2), num(r["paired_slowdown"], 2),
                     "-" if r["target"] is None else f"<= {r['target']}", verdict])
    body = table(["n", "timed", "preceded by", "after itself us", "IQR", "after other us",
                  "IQR", "slowdown", "paired", "target", ""], rows)
    wake = res.get("wake_latency_us")
    if wake:
        body += (f"\nWaking a sleeping thread on another core takes {num(wake['idle'])} us "
                 f"(idle machine) and {num(wake['after_numpy'])} us right after a NumPy product "
                 "(OpenBLAS's worker spinning on that core), median of 100: a product shorter "
                 "than that runs on the calling thread alone before a woken worker arrives.")
    return (f"{title}\n{body}\n(gemm on n x n float32; slowdown = median after the other "
            "library / median after itself, the verdict's figure; paired = median of the same "
            "ratio taken repeat by repeat (the two samples are taken a moment apart, so outside "
            "load hits both): when the two disagree, the machine was noisy; IQR = interquartile "
            "range of the repeats, % of the median)")


def main(argv: Optional[List[str]] = None) -> int:
    from .launch import write_result
    p = argparse.ArgumentParser(prog="python -m bench.interference")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    write_result(args.out, run(args.threads, args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
