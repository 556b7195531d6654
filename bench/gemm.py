"""GEMM family: square float32 products and the fused linear layer of a small MLP.

fastnn.ops.gemm vs NumPy ``a @ b`` vs ``torch.mm``; fastnn.ops.linear(x, w, b, "relu") vs the
NumPy idiom ``np.maximum(x @ w.T + b, 0)`` vs ``torch.relu(F.linear(x, w, b))``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from .common import import_fastnn, num, ratio, table

SIZES = (32, 64, 128, 256, 512, 1024, 2048)
QUICK_SIZES = (64, 256, 1024)
# (batch, in_features, out_features): the two layers of the Fashion-MNIST MLP
LINEAR_SHAPES = ((32, 784, 128), (32, 128, 10), (256, 784, 128), (256, 128, 10))

LINEAR_TARGET = 1.3  # fastnn/NumPy speed-up wanted for linear + bias + relu


def gemm_target(n: int) -> float:
    """fastnn/NumPy speed ratio wanted: ≥ 1.0 on small products, ≥ 0.95 from n = 512 on."""
    return 1.0 if n <= 256 else 0.95


def _close(got: np.ndarray, want: np.ndarray) -> bool:
    # float32 sums of k terms: error grows with k, so compare against the output's scale
    scale = float(np.abs(want).max()) or 1.0
    return bool(np.abs(got - want).max() <= 1e-3 * scale)


Timer = Callable[[Callable[[], Any]], Dict[str, float]]  # common.measure, settings bound


def _compare(fns: Dict[str, Optional[Callable[[], Any]]], timer: Timer, flops: float,
             target: float) -> Dict[str, Any]:
    """Time each library (None: not installed) and rate fastnn against the others."""
    t = {name: None if fn is None else timer(fn) for name, fn in fns.items()}
    rel = {k: ratio(t["fastnn"]["best"], t[k]["best"] if t[k] else None)
           for k in ("numpy", "torch")}
    return {"flops": flops, "times": t,
            "gflops": {k: None if v is None else flops / v["best"] / 1e9 for k, v in t.items()},
            "ratio_numpy": rel["numpy"], "ratio_torch": rel["torch"],
            "target": target, "pass": rel["numpy"] >= target}


def _square(n: int, torch: Optional[Any], timer: Timer) -> Dict[str, Any]:
    fastnn = import_fastnn()
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    fns: Dict[str, Optional[Callable[[], Any]]] = {
        "fastnn": lambda: fastnn.ops.gemm(a, b), "numpy": lambda: a @ b, "torch": None}
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        fns["torch"] = lambda: torch.mm(ta, tb)
    return {"n": n, **_compare(fns, timer, 2.0 * n * n * n, gemm_target(n)),
            "correct": _close(fastnn.ops.gemm(a, b), a @ b)}


def _linear(batch: int, fin: int, fout: int, torch: Optional[Any],
            timer: Timer) -> Dict[str, Any]:
    fastnn = import_fastnn()
    rng = np.random.default_rng(batch * fin + fout)
    x = rng.standard_normal((batch, fin), dtype=np.float32)
    w = rng.standard_normal((fout, fin), dtype=np.float32) * np.float32(fin ** -0.5)
    b = rng.standard_normal(fout, dtype=np.float32)
    fns: Dict[str, Optional[Callable[[], Any]]] = {
        "fastnn": lambda: fastnn.ops.linear(x, w, b, "relu"),
        "numpy": lambda: np.maximum(x @ w.T + b, 0),
        "torch": None}
    if torch is not None:
        tx, tw, tb = (torch.from_numpy(v) for v in (x, w, b))
        fns["torch"] = lambda: torch.relu(torch.nn.functional.linear(tx, tw, tb))
    return {"batch": batch, "in": fin, "out": fout,
            **_compare(fns, timer, 2.0 * batch * fin * fout, LINEAR_TARGET),
            "correct": _close(fastnn.ops.linear(x, w, b, "relu"), np.maximum(x @ w.T + b, 0))}


def run(sizes: Sequence[int], torch: Optional[Any], timer: Timer) -> Dict[str, Any]:
    return {"square": [_square(n, torch, timer) for n in sizes],
            "linear": [_linear(*s, torch, timer) for s in LINEAR_SHAPES],
            "ratios": "best time of the other library / best time of fastnn (> 1: fastnn faster)"}


def _verdict(r: Dict[str, Any]) -> str:
    if not r["correct"]:
        return "WRONG"
    return "pass" if r["pass"] else "MISS"


def report(res: Dict[str, Any]) -> str:
    rows: List[List[str]] = []
    for r in res["square"]:
        g = r["gflops"]
        rows.append([r["n"], num(g["fastnn"]), num(g["numpy"]), num(g["torch"]),
                     num(r["ratio_numpy"], 2), num(r["ratio_torch"], 2),
                     f">= {r['target']:.2f}", _verdict(r)])
    square = table(["n", "fastnn GF/s", "numpy GF/s", "torch GF/s", "fastnn/numpy",
                    "fastnn/torch", "target", ""], rows)
    rows = []
    for r in res["linear"]:
        t = r["times"]
        us = {k: None if v is None else v["best"] * 1e6 for k, v in t.items()}
        rows.append([f"{r['batch']} x {r['in']} -> {r['out']}", num(us["fastnn"]),
                     num(us["numpy"]), num(us["torch"]), num(r["gflops"]["fastnn"]),
                     num(r["ratio_numpy"], 2), num(r["ratio_torch"], 2),
                     f">= {r['target']:.2f}", _verdict(r)])
    linear = table(["linear+bias+relu", "fastnn us", "numpy us", "torch us", "fastnn GF/s",
                    "fastnn/numpy", "fastnn/torch", "target", ""], rows)
    return ("GEMM, square float32 (GFLOPS = 2n^3 / best time)\n" + square
            + "\n\nLinear layer, float32, time per call\n" + linear
            + "\n(ratios: other library's best time / fastnn's best time; > 1 means fastnn is"
              " faster)")
