"""GEMM family: square float32 products and the fused linear layer of a small MLP.

fastnn.ops.gemm vs NumPy ``a @ b`` vs ``torch.mm``; fastnn.ops.linear(x, w, b, "relu") vs the
NumPy idiom ``np.maximum(x @ w.T + b, 0)`` vs ``torch.relu(F.linear(x, w, b))``.
``run_library`` times one library (in its own process); ``combine`` and ``report`` put the
libraries side by side in the runner.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .common import (matmul_call, measure_interleaved, num, pct, progress, spread, table, timing,
                     verdict)
from .stats import gflops, share, speedup, summarize

SIZES = (32, 64, 128, 256, 512, 1024, 2048)
QUICK_SIZES = (64, 256, 1024)
# (batch, in_features, out_features): the two layers of the Fashion-MNIST MLP
LINEAR_SHAPES = ((32, 784, 128), (32, 128, 10), (256, 784, 128), (256, 128, 10))
LIBRARIES = ("fastnn", "numpy", "torch")

LINEAR_TARGET = 1.3  # fastnn/NumPy speed-up wanted for linear + bias + relu


def gemm_target(n: int) -> float:
    """fastnn/NumPy speed ratio wanted: ≥ 1.0 on small products, ≥ 0.95 from n = 512 on."""
    return 1.0 if n <= 256 else 0.95


def _close(got: Any, want: Any) -> bool:
    import numpy as np
    # float32 sums of k terms: error grows with k, so compare against the output's scale
    got, want = np.asarray(got), np.asarray(want)
    scale = float(np.abs(want).max()) or 1.0
    return bool(np.abs(got - want).max() <= 1e-3 * scale)


def _square_call(lib: str, n: int, mods: Dict[str, Any]) -> Tuple[Callable[[], Any], Any]:
    """(the timed call, the product computed by NumPy for checking)."""
    import numpy as np
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    return matmul_call(lib, a, b, mods), a @ b


def _linear_call(lib: str, shape: Sequence[int],
                 mods: Dict[str, Any]) -> Tuple[Callable[[], Any], Any]:
    import numpy as np
    batch, fin, fout = shape
    rng = np.random.default_rng(batch * fin + fout)
    x = rng.standard_normal((batch, fin), dtype=np.float32)
    w = rng.standard_normal((fout, fin), dtype=np.float32) * np.float32(fin ** -0.5)
    b = rng.standard_normal(fout, dtype=np.float32)
    want = np.maximum(x @ w.T + b, 0)
    if lib == "fastnn":
        linear = mods["fastnn"].ops.linear
        return (lambda: linear(x, w, b, "relu")), want
    if lib == "torch":
        torch = mods["torch"]
        tx, tw, tb = (torch.from_numpy(v) for v in (x, w, b))
        return (lambda: torch.relu(torch.nn.functional.linear(tx, tw, tb))), want
    return (lambda: np.maximum(x @ w.T + b, 0)), want


def run_library(lib: str, sizes: Sequence[int], quick: bool,
                mods: Dict[str, Any]) -> Dict[str, Any]:
    """Every GEMM-family case for one library: samples in seconds per call."""
    progress(f"gemm   {lib:6s} preparing {len(sizes)} square sizes and "
             f"{len(LINEAR_SHAPES)} linear shapes")
    made = ([_square_call(lib, n, mods) for n in sizes]
            + [_linear_call(lib, shape, mods) for shape in LINEAR_SHAPES])
    settings = timing(quick)
    results = measure_interleaved(
        [fn for fn, _ in made], **settings,
        on_round=lambda r: progress(f"gemm   {lib:6s} repeat {r + 1}/{settings['repeats']}"))
    # Checked after timing: the check's NumPy work must not run inside the measurement.
    for res, (fn, want) in zip(results, made):
        res["correct"] = _close(fn(), want)
    square = [{"n": n, **r} for n, r in zip(sizes, results)]
    linear = [{"shape": list(shape), **r}
              for shape, r in zip(LINEAR_SHAPES, results[len(sizes):])]
    return {"square": square, "linear": linear}


def _merge(per_lib: Dict[str, Dict[str, Any]], flops: float,
           peak: Optional[float]) -> Dict[str, Any]:
    libs = {}
    for lib, r in per_lib.items():
        s = summarize(r["samples"])
        rate = gflops(flops, s["median"])
        libs[lib] = {**r, **s, "gflops": rate, "pct_peak": share(rate, peak)}
    med = {lib: libs[lib]["median"] if lib in libs else None for lib in LIBRARIES}
    return {"flops": flops, "libs": libs,
            "ratio_numpy": speedup(med["fastnn"], med["numpy"]),
            "ratio_torch": speedup(med["fastnn"], med["torch"]),
            "correct": libs.get("fastnn", {}).get("correct")}


def combine(results: Dict[str, Dict[str, Any]], peak: Optional[float]) -> Dict[str, Any]:
    """Put the libraries' results (``run_library`` each, or {"error": ...}) side by side."""
    ok = {lib: r for lib, r in results.items() if "error" not in r}
    out: Dict[str, Any] = {
        "errors": {lib: r["error"] for lib, r in results.items() if "error" in r},
        "peak_gflops": peak, "square": [], "linear": [],
        "statistic": "median over repeats of the seconds per call; ratios: other library's "
                     "median / fastnn's median (> 1: fastnn faster)"}
    if not ok:
        return out
    first = next(iter(ok.values()))
    for i, case in enumerate(first["square"]):
        n = case["n"]
        row = _merge({lib: r["square"][i] for lib, r in ok.items()}, 2.0 * n ** 3, peak)
        out["square"].append({"n": n, "target": gemm_target(n), **row})
    for i, case in enumerate(first["linear"]):
        batch, fin, fout = case["shape"]
        row = _merge({lib: r["linear"][i] for lib, r in ok.items()},
                     2.0 * batch * fin * fout, peak)
        out["linear"].append({"shape": case["shape"], "target": LINEAR_TARGET, **row})
    for row in out["square"] + out["linear"]:
        r = row["ratio_numpy"]
        row["pass"] = None if r is None else r >= row["target"]
    return out


def _verdict(row: Dict[str, Any]) -> str:
    return verdict(row["pass"], row["correct"])


def _cells(row: Dict[str, Any], lib: str, unit: str) -> List[str]:
    r = row["libs"].get(lib)
    if r is None:
        return ["-", "-", "-"]
    value = r["gflops"] if unit == "gflops" else r["median"] * 1e6
    return [num(value), pct(r["pct_peak"]) if unit == "gflops" else num(r["gflops"]),
            spread(r)]


def report(res: Dict[str, Any]) -> str:
    peak = res["peak_gflops"]
    peak_text = f"{peak:.0f} GF/s" if peak else "unknown"
    rows: List[List[Any]] = []
    for row in res["square"]:
        rows.append([row["n"]] + sum((_cells(row, lib, "gflops") for lib in LIBRARIES), [])
                    + [num(row["ratio_numpy"], 2), num(row["ratio_torch"], 2),
                       f">= {row['target']:.2f}", _verdict(row)])
    heads = sum(([f"{lib} GF/s", "%peak", "IQR"] for lib in LIBRARIES), [])
    square = table(["n"] + heads + ["fastnn/numpy", "fastnn/torch", "target", ""], rows)
    rows = []
    for row in res["linear"]:
        rows.append([" x ".join(map(str, row["shape"][:2])) + f" -> {row['shape'][2]}"]
                    + sum((_cells(row, lib, "us") for lib in LIBRARIES), [])
                    + [pct(row["libs"].get("fastnn", {}).get("pct_peak")),
                       num(row["ratio_numpy"], 2), num(row["ratio_torch"], 2),
                       f">= {row['target']:.2f}", _verdict(row)])
    heads = sum(([f"{lib} us", "GF/s", "IQR"] for lib in LIBRARIES), [])
    linear = table(["linear+bias+relu"] + heads
                   + ["fastnn %peak", "fastnn/numpy", "fastnn/torch", "target", ""], rows)
    errors = "".join(f"\n{lib}: {e}" for lib, e in res["errors"].items())
    return (f"GEMM, square float32: GF/s = 2n^3 / median time; %peak = share of the measured "
            f"FMA peak ({peak_text})\n{square}"
            "\n\nLinear layer, float32: median time per call\n" + linear
            + "\n(ratios: other library's median time / fastnn's; > 1 means fastnn is faster."
              " IQR = interquartile range of the repeats, % of the median)" + errors)
