"""Interference: libraries sharing one process, on purpose (everywhere else each has its own).

``python -m bench.interference --threads N [--quick] --out FILE``, started by the runner with the
OpenBLAS overrides cleared, as for every process that runs NumPy's BLAS at full width.

A user's script calls NumPy, fastnn and torch in turn. A library whose idle threads keep spinning
after a call (OpenBLAS for about 0.1 s, OpenMP teams for a while too) steals cores from the next
library's call. For each size, each timed product is measured right after an untimed call of the
same product (the baseline) and right after an untimed call of another library, the conditions
taken in turn; the slowdown is the ratio of the two medians.
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .common import (calibrate, import_fastnn, limit_numpy_blas, num, numpy_blas_info,
                     progress, sample, table, timing, torch_installed)
from .stats import slowdown, summarize

SIZES = (128, 256, 512)
# Before every repeat the timed product runs untimed this long: longer than the disturbance an
# idle OpenBLAS worker causes (it spins about 0.1 s after a call; other libraries' calls slow
# down most towards the end of that), so that a repeat sees only the library called just before.
SETTLE_S = 0.25
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


def _conditions(timed: str, fn: Callable[[], Any], ops: Dict[str, Callable[[], Any]],
                befores: List[str], quick: bool) -> Dict[str, Dict[str, Any]]:
    """Samples of fn after each library in ``befores``, the conditions taken in turn within
    every repeat (so that drift and bursts of outside load hit all of them alike)."""
    settings = timing(quick)
    calls = {b: calibrate(fn, settings["min_time"], settings["warmup"], before=ops[b])
             for b in befores}
    samples: Dict[str, List[float]] = {b: [] for b in befores}
    for _ in range(int(settings["repeats"])):
        for b in befores:
            _settle(fn, SETTLE_S)
            samples[b].append(sample(fn, calls[b], before=ops[b]))
    return {b: {"samples": samples[b], "calls": calls[b], **summarize(samples[b])}
            for b in befores}


def run(threads: int, quick: bool, sizes: Tuple[int, ...] = SIZES) -> Dict[str, Any]:
    mods: Dict[str, Any] = {}
    note = limit_numpy_blas(threads)
    fastnn = mods["fastnn"] = import_fastnn()
    fastnn.set_num_threads(threads)
    if torch_installed():
        import torch
        torch.set_num_threads(threads)
        mods["torch"] = torch
    present = {"numpy", *mods}
    pairs = [p for p in PAIRS if p[0] in present and p[1] in present]
    timed_libs = list(dict.fromkeys(p[0] for p in pairs))
    rows: List[Dict[str, Any]] = []
    for n in sizes:
        ops = _products(n, mods)
        for timed in timed_libs:
            others = [p[1] for p in pairs if p[0] == timed]
            progress(f"interference n = {n}: {timed} after " + ", ".join([timed] + others))
            got = _conditions(timed, ops[timed], ops, [timed] + others, quick)
            for t, other, target in pairs:
                if t != timed:
                    continue
                ratio = slowdown(got[other]["median"], got[timed]["median"])
                rows.append({"n": n, "timed": timed, "after": other,
                             "after_self": got[timed], "after_other": got[other],
                             "slowdown": ratio, "target": target,
                             "pass": None if target is None or ratio is None
                             else ratio <= target})
    return {"process": {"threads": threads, "numpy_blas": numpy_blas_info(),
                        "fastnn_build_info": fastnn.build_info(),
                        "torch": getattr(mods.get("torch"), "__version__", None),
                        "notes": [note] if note else []},
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
                     f"{s['spread_pct']:.0f}%", num(o["median"] * 1e6),
                     f"{o['spread_pct']:.0f}%", num(r["slowdown"], 2),
                     "-" if r["target"] is None else f"<= {r['target']}", verdict])
    body = table(["n", "timed", "preceded by", "after itself us", "spread", "after other us",
                  "spread", "slowdown", "target", ""], rows)
    return (f"{title}\n{body}\n(slowdown = median after the other library / median after "
            "itself; gemm on n x n float32)")


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
