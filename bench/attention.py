"""Attention family: scaled dot-product attention at B=8, H=8, N=1024, d=64, float32 (forward;
forward + backward; causal forward), and the extra memory of the forward and of the backward at
B=H=1, N=16384, d=64.

fastnn.ops.attention vs ``torch.nn.functional.scaled_dot_product_attention`` vs the NumPy
reference formula a user would write (softmax(Q K^T * scale) V, whole score matrix, float32).
``run_library`` times one library in its own process; the memory probe
(``python -m bench.attention --lib LIB --out FILE``) runs each library and pass in a fresh
process of its own and reads the kernel-inclusive peak resident memory (VmHWM, reset just before
the call) minus the resident memory before it and the outputs' bytes.
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

from .common import (GEMM_RATE_CASE, gemm_floor, gemm_rate_call, gemm_rate_note, gemm_rates,
                     measure_interleaved, ms_cell, ms_cells, num, pct, progress, table, timing,
                     verdict)
from .stats import summarize, versus

LIBRARIES = ("fastnn", "numpy", "torch")
SHAPE = {"b": 8, "h": 8, "n": 1024, "d": 64}
MEMORY_SHAPE = {"b": 1, "h": 1, "n": 16384, "d": 64}
MEMORY_LIMIT_MIB = 64.0
CASES = ("attention forward", "attention forward+backward", "causal forward")
# name -> (wanted fastnn/torch, wanted fastnn/NumPy)
TARGETS = {"attention forward": (1.5, 5.0), "attention forward+backward": (1.5, None),
           "causal forward": (None, None)}
CAUSAL_TARGET = 0.6  # causal forward time / non-causal forward time, fastnn's own


def flops(case: str) -> float:
    """Useful flops: QK^T and PV (4 N^2 d per head) forward, twice that again backward (dV, dP,
    dQ, dK; the recomputed scores are not counted); half of the forward when causal."""
    s = SHAPE
    fwd = 4.0 * s["b"] * s["h"] * s["n"] * s["n"] * s["d"]
    return {"attention forward": fwd, "attention forward+backward": 3 * fwd,
            "causal forward": fwd / 2}[case]


def _inputs(shape: Dict[str, int], seed: int = 11) -> Tuple[Any, Any, Any, Any]:
    import numpy as np
    rng = np.random.default_rng(seed)
    dims = (shape["b"], shape["h"], shape["n"], shape["d"])
    q, k, v, do = (rng.standard_normal(dims, dtype=np.float32) for _ in range(4))
    return q, k, v, do


def numpy_attention(q: Any, k: Any, v: Any) -> Any:
    """The reference formula in float32, as a NumPy user writes it."""
    import numpy as np
    s = q @ np.swapaxes(k, -1, -2)
    s *= np.float32(1.0 / np.sqrt(q.shape[-1]))
    s -= s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return s @ v


def _calls(lib: str, mods: Dict[str, Any]) -> List[Tuple[str, Optional[Callable[[], Any]]]]:
    q, k, v, do = _inputs(SHAPE)
    if lib == "fastnn":
        ops = mods["fastnn"].ops

        def fwd_bwd() -> Any:
            _, ctx = ops.attention_forward(q, k, v)
            return ops.attention_backward(ctx, do)

        return [("attention forward", lambda: ops.attention(q, k, v)),
                ("attention forward+backward", fwd_bwd),
                ("causal forward", lambda: ops.attention(q, k, v, causal=True))]
    if lib == "torch":
        torch = mods["torch"]
        F = torch.nn.functional
        tq, tk, tv, tdo = (torch.from_numpy(a) for a in (q, k, v, do))

        def t_fwd(causal: bool = False) -> Any:
            with torch.no_grad():
                return F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)

        def t_fwd_bwd() -> Any:
            qr, kr, vr = (a.detach().requires_grad_() for a in (tq, tk, tv))
            F.scaled_dot_product_attention(qr, kr, vr).backward(tdo)
            return qr.grad, kr.grad, vr.grad

        return [("attention forward", t_fwd), ("attention forward+backward", t_fwd_bwd),
                ("causal forward", lambda: t_fwd(True))]
    return [("attention forward", lambda: numpy_attention(q, k, v)),
            ("attention forward+backward", None), ("causal forward", None)]


def _check(lib: str, mods: Dict[str, Any]) -> bool:
    """fastnn's forward against the float64 reference on a slice of the inputs."""
    import numpy as np
    if lib != "fastnn":
        return True
    import importlib
    reference = importlib.import_module("fastnn.reference")
    ops = mods["fastnn"].ops
    q, k, v, _ = _inputs({"b": 1, "h": 2, "n": 257, "d": 64})
    ok = True
    for causal in (False, True):
        want = reference.attention(q, k, v, causal)
        got = ops.attention(q, k, v, causal=causal)
        ok = ok and float(np.abs(got - want).max()) <= 1e-4 * max(1.0, float(np.abs(want).max()))
    return ok


def run_library(lib: str, quick: bool, mods: Dict[str, Any]) -> Dict[str, Any]:
    """Every case for one library: samples in seconds per call."""
    progress(f"attn   {lib:6s} preparing")
    timed = [(name, fn) for name, fn in _calls(lib, mods) if fn is not None]
    timed.append((GEMM_RATE_CASE, gemm_rate_call(lib, mods)))
    settings = timing(quick)
    settings["repeats"] = min(settings["repeats"], 5 if quick else 7)  # seconds per call
    results = measure_interleaved(
        [fn for _, fn in timed], **settings,
        on_round=lambda r: progress(f"attn   {lib:6s} repeat {r + 1}/{settings['repeats']}"))
    out = {name: res for (name, _), res in zip(timed, results)}
    return {"cases": out, "correct": _check(lib, mods)}


# ---- memory -------------------------------------------------------------------------------------

def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    """Reset this process's peak resident memory (Linux); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def _extra(call: Callable[[], Any], out_bytes: int) -> Optional[float]:
    """MiB of resident memory a call needed beyond what was resident before and its outputs."""
    if not _reset_peak():
        return None
    before = _rss_bytes()
    _reset_peak()
    result = call()
    extra = _peak_bytes() - before - out_bytes
    del result
    return max(0.0, extra / 2.0 ** 20)


def memory_probe(lib: str, threads: int) -> Dict[str, Any]:
    """Forward and backward extra memory of one library at MEMORY_SHAPE (fresh process)."""
    import numpy as np
    q, k, v, do = _inputs(MEMORY_SHAPE)
    s = MEMORY_SHAPE
    o_bytes = q.nbytes
    lse_bytes = s["b"] * s["h"] * s["n"] * 4
    grads = 3 * q.nbytes
    if lib == "fastnn":
        from .common import import_fastnn
        fastnn = import_fastnn()
        fastnn.set_num_threads(threads)
        ops = fastnn.ops
        fwd = _extra(lambda: ops.attention_forward(q, k, v), o_bytes + lse_bytes)
        out, ctx = ops.attention_forward(q, k, v)
        bwd = _extra(lambda: ops.attention_backward(ctx, do), grads)
    else:
        import torch
        torch.set_num_threads(threads)
        F = torch.nn.functional
        tq, tk, tv, tdo = (torch.from_numpy(a) for a in (q, k, v, do))

        def t_fwd() -> Any:
            with torch.no_grad():
                return F.scaled_dot_product_attention(tq, tk, tv)

        fwd = _extra(t_fwd, o_bytes)
        qr, kr, vr = (a.detach().requires_grad_() for a in (tq, tk, tv))
        out = F.scaled_dot_product_attention(qr, kr, vr)
        # torch keeps what its backward needs inside the graph; the backward's own extra:
        bwd = _extra(lambda: out.backward(tdo), grads)
    del np
    return {"forward_mib": fwd, "backward_mib": bwd, "shape": MEMORY_SHAPE}


# ---- report -------------------------------------------------------------------------------------

def combine(results: Dict[str, Dict[str, Any]], memory: Dict[str, Dict[str, Any]],
            peak_gflops: Optional[float]) -> Dict[str, Any]:
    ok = {lib: r for lib, r in results.items() if "error" not in r}
    rates = gemm_rates(ok)
    rows = []
    med_all: Dict[str, Dict[str, Optional[float]]] = {}
    for name in CASES:
        t_torch, t_numpy = TARGETS[name]
        libs = {lib: summarize(r["cases"][name]["samples"])
                for lib, r in ok.items() if name in r["cases"]}
        med = {lib: libs[lib]["median"] if lib in libs else None for lib in LIBRARIES}
        med_all[name] = med
        gf = {lib: (flops(name) / m / 1e9 if m else None) for lib, m in med.items()}
        row = {"case": name, "libs": libs, "gflops": gf,
               "peak_pct": {lib: (100.0 * g / peak_gflops if g and peak_gflops else None)
                            for lib, g in gf.items()},
               "target_s": med["torch"] / t_torch if t_torch and med["torch"] else None,
               "gemm_floor_s": gemm_floor(flops(name), rates) if t_torch else None,
               **versus(med, t_torch, t_numpy)}
        rows.append(row)
    f_fwd = med_all["attention forward"]["fastnn"]
    f_causal = med_all["causal forward"]["fastnn"]
    causal_ratio = f_causal / f_fwd if f_fwd and f_causal else None
    for row in rows:
        if row["case"] == "causal forward" and causal_ratio is not None:
            row["pass"] = causal_ratio <= CAUSAL_TARGET
    return {"rows": rows, "causal_ratio": causal_ratio, "peak_gflops": peak_gflops,
            "gemm_rates": rates,
            "correct": ok.get("fastnn", {}).get("correct"), "memory": memory,
            "errors": {lib: r["error"] for lib, r in results.items() if "error" in r},
            "shape": SHAPE}


def report(res: Dict[str, Any]) -> str:
    rows = []
    for row in res["rows"]:
        cells: List[Any] = [row["case"]] + ms_cells(row["libs"], LIBRARIES, 1)
        cells += [num(row["gflops"].get("fastnn"), 0), pct(row["peak_pct"].get("fastnn")),
                  pct(row["peak_pct"].get("torch")), num(row["ratio_torch"], 2),
                  num(row["ratio_numpy"], 2), ms_cell(row.get("target_s")),
                  ms_cell(row.get("gemm_floor_s"))]
        if row["case"] == "causal forward":
            wanted = f"<= {CAUSAL_TARGET} x fwd ({num(res['causal_ratio'], 2)})"
        else:
            wanted = ", ".join(w for w in (
                f"torch >= {row['target_torch']}" if row["target_torch"] else "",
                f"numpy >= {row['target_numpy']}" if row["target_numpy"] else "") if w)
        rows.append(cells + [wanted, verdict(row["pass"], res["correct"])])
    heads = sum(([f"{lib} ms", "IQR"] for lib in LIBRARIES), [])
    heads += ["fastnn GF/s", "fastnn %pk", "torch %pk", "fastnn/torch", "fastnn/numpy",
              "target ms", "GEMM ms", "target", ""]
    s = res["shape"]
    peak = res["peak_gflops"]
    lines = [f"Attention, float32, B={s['b']} H={s['h']} N={s['n']} d={s['d']}; median ms per "
             f"call; %pk of the FMA peak ({num(peak, 0)} GFLOPS)",
             table(["case"] + heads, rows),
             "(NumPy: softmax(Q K^T * scale) V with the whole score matrix, float32; it has no "
             "backward or causal idiom. Flops: 4 N^2 d per head forward, 12 forward+backward; "
             "target ms: torch's time over the torch target)",
             gemm_rate_note(res.get("gemm_rates", {}))]
    mem_rows = []
    for lib, m in res["memory"].items():
        if "error" in m:
            mem_rows.append([lib, m["error"], "", ""])
            continue
        f, b = m.get("forward_mib"), m.get("backward_mib")
        ok = None if f is None or b is None else (f < MEMORY_LIMIT_MIB and b < MEMORY_LIMIT_MIB)
        mem_rows.append([lib, num(f, 1), num(b, 1),
                         "-" if ok is None else ("pass" if ok else "MISS")])
    ms = MEMORY_SHAPE
    lines += ["", f"Attention memory beyond inputs and outputs, B={ms['b']} H={ms['h']} "
                  f"N={ms['n']} d={ms['d']} float32 (the N x N scores alone: "
                  f"{ms['n'] ** 2 * 4 / 2 ** 20:.0f} MiB); peak resident MiB, fresh process each",
              table(["library", "forward MiB", "backward MiB", f"< {MEMORY_LIMIT_MIB:.0f} MiB"],
                    mem_rows)]
    lines += [f"{lib}: {e}" for lib, e in res["errors"].items()]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """The memory probe process: ``python -m bench.attention --lib LIB --threads N --out F``."""
    from .launch import write_result
    p = argparse.ArgumentParser(prog="python -m bench.attention")
    p.add_argument("--lib", choices=("fastnn", "torch"), required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    write_result(args.out, memory_probe(args.lib, args.threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
