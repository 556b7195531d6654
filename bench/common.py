"""Timing, thread control and table formatting shared by the families.

NumPy, fastnn and torch are imported inside functions only: each benchmark process loads just the
libraries it measures (see ``bench.launch``), and the runner loads none of them.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from .stats import gflops, summarize

REPO_ROOT = Path(__file__).resolve().parent.parent

# Either variable pins OpenBLAS to an older, slower kernel than the CPU supports. NumPy is to be
# measured at its best, so the processes that time NumPy run without them (and only those).
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def timing(quick: bool) -> Dict[str, float]:
    """Settings of ``measure``: seconds per repeat, repeats, warm-up seconds."""
    if quick:
        return {"min_time": 0.02, "repeats": 5, "warmup": 0.15}
    return {"min_time": 0.05, "repeats": 9, "warmup": 0.25}


def import_fastnn() -> Any:
    """fastnn as installed, else the in-place build of this checkout."""
    try:
        import fastnn
    except ImportError:
        sys.path.insert(0, str(REPO_ROOT / "python"))
        import fastnn
    return fastnn


def torch_installed() -> bool:
    """Whether torch can be imported, without paying for the import (seconds)."""
    import importlib.util
    return importlib.util.find_spec("torch") is not None


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def limit_numpy_blas(n: int) -> Optional[str]:
    """Cap NumPy's BLAS at n threads; returns a note when that is impossible.

    Processes that time another library call this with n = 1 as well: NumPy then only prepares
    inputs, and a one-thread BLAS has no idle workers spinning beside the measured library.
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return "threadpoolctl is not installed: NumPy's BLAS threads are not controlled"
    import numpy  # noqa: F401  (its BLAS must be loaded for threadpoolctl to see it)
    blas = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
    # NumPy's wheels carry OpenBLAS; torch's BLAS (MKL, linked into torch) must keep the count
    # torch.set_num_threads gives it, so OpenBLAS is preferred when there is one.
    mine = [lib for lib in blas if lib.internal_api == "openblas"] or blas
    for lib in mine:
        lib.set_num_threads(n)
    return None if mine else "threadpoolctl found no BLAS under NumPy"


def numpy_blas_info() -> List[Dict[str, Any]]:
    """threadpoolctl's view of the BLAS libraries loaded in this process (kernel included)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("internal_api", "architecture", "version", "num_threads", "threading_layer",
            "filepath")
    return [{k: i.get(k) for k in keep} for i in threadpool_info() if i.get("user_api") == "blas"]


def progress(message: str) -> None:
    """One line on stderr, so that stdout holds the report alone."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _block(fn: Callable[[], Any], before: Optional[Callable[[], Any]],
           calls: int) -> "tuple[float, float]":
    """Run ``calls`` calls; returns (seconds inside fn, wall seconds of the whole block)."""
    if before is None:
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        spent = time.perf_counter() - t0
        return spent, spent
    inside, w0 = 0.0, time.perf_counter()
    for _ in range(calls):
        before()  # untimed: only its after-effects (spinning threads, cache) reach fn
        t0 = time.perf_counter()
        fn()
        inside += time.perf_counter() - t0
    return inside, time.perf_counter() - w0


def calibrate(fn: Callable[[], Any], min_time: float, warmup: float,
              before: Optional[Callable[[], Any]] = None) -> int:
    """Warm up for at least ``warmup`` seconds; returns the calls that make a repeat last about
    ``min_time`` seconds. Small problems get many calls per repeat so that timer resolution and
    one-off hiccups don't dominate."""
    calls, start = 1, time.perf_counter()
    while True:
        _, wall = _block(fn, before, calls)
        if wall < min_time / 4:
            calls *= 4
        elif time.perf_counter() - start >= warmup:
            break
    return max(1, int(calls * min_time / wall + 0.5))


def sample(fn: Callable[[], Any], calls: int,
           before: Optional[Callable[[], Any]] = None) -> float:
    """Seconds per call of fn over one repeat of ``calls`` calls."""
    return _block(fn, before, calls)[0] / calls


def measure(fn: Callable[[], Any], min_time: float, repeats: int, warmup: float,
            before: Optional[Callable[[], Any]] = None) -> Dict[str, Any]:
    """Seconds per call of ``fn`` in each of ``repeats`` back-to-back repeats.

    With ``before``, each timed call of fn directly follows an untimed call of ``before``.
    """
    calls = calibrate(fn, min_time, warmup, before)
    return {"samples": [sample(fn, calls, before) for _ in range(repeats)], "calls": calls}


def measure_interleaved(fns: Sequence[Callable[[], Any]], min_time: float, repeats: int,
                        warmup: float,
                        on_round: Optional[Callable[[int], None]] = None) -> List[Dict[str, Any]]:
    """``measure`` for several cases at once, taking their repeats in turn (case 1, 2, ..., 1,
    2, ...): a burst of load from outside (seconds long on a shared machine) then spoils a few
    repeats of every case, which the median absorbs, instead of all repeats of one case."""
    calls = [calibrate(fn, min_time, warmup) for fn in fns]
    samples: List[List[float]] = [[] for _ in fns]
    for r in range(repeats):
        if on_round is not None:
            on_round(r)
        for fn, k, out in zip(fns, calls, samples):
            fn()  # untimed: brings this case's operands back into cache after the others
            out.append(sample(fn, k))
    return [{"samples": s, "calls": k} for s, k in zip(samples, calls)]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Right-aligned columns, first column left-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def fmt(r: List[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    out = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    out += [fmt(r) for r in cells[1:]]
    return "\n".join(out)


def num(x: Optional[float], digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def spread(summary: Dict[str, Any]) -> str:
    """The spread printed beside a median: the interquartile range in percent of the median.
    Not min-max: one repeat spoiled by a burst of outside load would swamp it, while the IQR
    says whether the median itself can be trusted. Both are in the JSON."""
    return f"{summary['iqr_pct']:.0f}%"


def pct(x: Optional[float]) -> str:
    """A percentage for a table cell; '-' when unknown."""
    return "-" if x is None else f"{x:.0f}%"


def ms_cell(seconds: Optional[float], digits: int = 1) -> str:
    """A time in seconds as a table cell in ms ('-' when unknown)."""
    return num(None if seconds is None else seconds * 1e3, digits)


def ms_cells(libs: Dict[str, Any], names: Sequence[str], digits: int) -> List[str]:
    """Each library's median in ms and its spread, two table cells a library ('-' if absent)."""
    cells: List[str] = []
    for lib in names:
        s = libs.get(lib)
        cells += ["-", "-"] if s is None else [num(s["median"] * 1e3, digits), spread(s)]
    return cells


def verdict(passed: Optional[bool], correct: Optional[bool]) -> str:
    """A row's verdict cell: WRONG when fastnn's results were wrong, else pass, MISS or '-'."""
    if correct is False:
        return "WRONG"
    return {True: "pass", False: "MISS", None: "-"}[passed]


# ---- the machine's GEMM rate: how fast any fused kernel's flops could possibly go -------------

# One well-shaped float32 product, m x k @ k x n. Each library times it in its own process beside
# the family's cases; the fastest rate is the yardstick (``gemm_floor``).
GEMM_RATE_CASE = "GEMM rate"
GEMM_RATE_SHAPE = (2048, 1024, 1024)


def matmul_call(lib: str, a: Any, b: Any, mods: Dict[str, Any]) -> Callable[[], Any]:
    """A call computing a @ b (float32 NumPy arrays) in ``lib``: fastnn.ops.gemm, torch.mm or
    NumPy's matmul."""
    if lib == "fastnn":
        gemm = mods["fastnn"].ops.gemm
        return lambda: gemm(a, b)
    if lib == "torch":
        torch = mods["torch"]
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        return lambda: torch.mm(ta, tb)
    return lambda: a @ b


def gemm_rate_call(lib: str, mods: Dict[str, Any]) -> Callable[[], Any]:
    """The GEMM_RATE_SHAPE product in ``lib`` (fastnn, torch or numpy)."""
    import numpy as np
    m, k, n = GEMM_RATE_SHAPE
    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    return matmul_call(lib, a, b, mods)


def gemm_rates(results: Dict[str, Dict[str, Any]]) -> Dict[str, float]:
    """GF/s of each library's GEMM_RATE_CASE (its median), from ``run_library`` results."""
    m, k, n = GEMM_RATE_SHAPE
    rates = {}
    for lib, r in results.items():
        case = r.get("cases", {}).get(GEMM_RATE_CASE) if "error" not in r else None
        rate = gflops(2.0 * m * k * n, summarize(case["samples"])["median"]) if case else None
        if rate is not None:
            rates[lib] = rate
    return rates


def gemm_floor(flops: float, rates: Dict[str, float]) -> Optional[float]:
    """Seconds that ``flops`` take at the fastest library's GEMM rate: what the case would cost
    as one large product with no other work. A target time below it cannot be met on this
    machine by any kernel doing these flops in float32."""
    best = max(rates.values(), default=0.0)
    return flops / (best * 1e9) if best > 0 else None


def gemm_rate_note(rates: Dict[str, float]) -> str:
    """The footnote naming the rates behind the 'GEMM ms' column."""
    m, k, n = GEMM_RATE_SHAPE
    each = ", ".join(f"{lib} {rate:.0f}" for lib, rate in sorted(rates.items()))
    return (f"(GEMM ms: the case's flops at the fastest float32 GEMM rate measured in this run, "
            f"{m}x{k} @ {k}x{n} in each library's process: {each or 'none'} GF/s. A target ms "
            f"below it asks for more than the flops alone as one large product.)")
