"""The machine's measured fp32 FMA peak on the threads the benchmark uses.

``python -m bench.peak --threads N --out FILE`` (started by the runner in a process of its own).

The probe is a Numba kernel: each thread updates a 4 KiB block of floats that stays in L1, with
v = v * m + c applied DEPTH times per element. The element loop vectorizes into fused
multiply-adds on full-width registers; the WIDTH elements of a row give WIDTH / lanes
independent dependency chains, enough to cover the FMA latency on every x86 core so far, and
DEPTH FMAs per load and store keep the memory ports out of the way. Each thread gets its own
block, padded apart so that no cache line is shared (false sharing halves the figure). Threads
are plain Python threads running a ``nogil`` kernel, started together at a barrier; the peak is
the best round (noise only ever slows a round down).

Without Numba, the fallback is NumPy's best sgemm on in-cache sizes: a lower bound of the peak.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import threading
import time
from typing import Any, Callable, Dict, List

DEPTH = 8   # FMAs per element per pass, a dependent chain
WIDTH = 128  # floats per row: 8 zmm or 16 ymm registers' worth of independent chains
ROWS = 8    # 8 x 128 floats = 4 KiB per thread: stays in L1d
PAD = 1     # spare rows around each thread's block keep blocks on separate cache lines


def kernel_source(depth: int = DEPTH, width: int = WIDTH) -> str:
    """Python source of the probe kernel; the chain is written out so that Numba sees
    ``depth`` multiply-adds per element and the constant row width."""
    lines = ["def fma_block(x, passes, m, c):",
             "    for _ in range(passes):",
             "        for i in range(x.shape[0]):",
             f"            for j in range({width}):",
             "                v = x[i, j]"]
    lines += ["                v = v * m + c"] * depth
    lines += ["                x[i, j] = v"]
    return "\n".join(lines) + "\n"


def _full_width_vectors() -> str:
    """Before Numba loads: let LLVM use 512-bit vectors where the CPU has them.

    LLVM's tuning for several AVX-512 Intel cores prefers 256-bit vectors (a guess about clock
    throttling), which would halve the probe. Numba takes the CPU features from this variable;
    a value the user set is left alone.
    """
    if "NUMBA_CPU_FEATURES" in os.environ or platform.machine().lower() not in ("x86_64",
                                                                                 "amd64"):
        return "LLVM's default vector width"
    import llvmlite.binding as llvm
    os.environ["NUMBA_CPU_FEATURES"] = llvm.get_host_cpu_features().flatten() + ",-prefer-256-bit"
    return "full-width vectors"


def _compile() -> "tuple[Callable[..., Any], str]":
    note = _full_width_vectors()
    import numba
    import numpy as np
    scope: Dict[str, Any] = {}
    exec(kernel_source(), scope)  # noqa: S102  (our own source text, built above)
    kern = numba.njit(fastmath=True, boundscheck=False, nogil=True)(scope["fma_block"])
    kern(np.ones((1, WIDTH), np.float32), 1, np.float32(0.5), np.float32(0.5))
    return kern, note


def vector_registers(asm: str) -> Dict[str, int]:
    """How many packed fp32 FMAs the kernel has per register width."""
    counts = {}
    for reg, bits in (("zmm", "512-bit"), ("ymm", "256-bit"), ("xmm", "128-bit")):
        counts[bits] = len(re.findall(rf"vfn?m(?:add|sub)\w*ps\s+[^\n]*%{reg}", asm))
    counts["scalar"] = len(re.findall(r"vfn?m(?:add|sub)\w*ss\s", asm))
    return counts


def _rounds(kern: Callable[..., Any], threads: int, passes: int, rounds: int) -> List[float]:
    """GFLOPS of all threads together in each round (barrier to barrier)."""
    import numpy as np
    buf = np.ones((threads, ROWS + 2 * PAD, WIDTH), np.float32)
    blocks = [buf[t, PAD:PAD + ROWS] for t in range(threads)]
    m, c = np.float32(0.999), np.float32(0.001)  # v stays near 1: no overflow, no denormals
    gate = threading.Barrier(threads + 1)

    def work(block: Any) -> None:
        for _ in range(rounds):
            gate.wait()
            kern(block, passes, m, c)
            gate.wait()

    workers = [threading.Thread(target=work, args=(b,)) for b in blocks]
    for w in workers:
        w.start()
    flops = 2.0 * DEPTH * ROWS * WIDTH * passes * threads
    out = []
    for _ in range(rounds):
        gate.wait()
        t0 = time.perf_counter()
        gate.wait()
        out.append(flops / (time.perf_counter() - t0) / 1e9)
    for w in workers:
        w.join()
    return out


def probe_numba(threads: int, quick: bool) -> Dict[str, Any]:
    kern, note = _compile()
    import numpy as np
    block = np.ones((ROWS, WIDTH), np.float32)
    passes, spent = 1000, 0.0
    while spent < 0.01:  # size a round to about 0.1 s (0.05 s quick) on one thread
        passes *= 4
        t0 = time.perf_counter()
        kern(block, passes, np.float32(0.999), np.float32(0.001))
        spent = time.perf_counter() - t0
    passes = max(1, int(passes * (0.05 if quick else 0.1) / spent))
    rounds = 5 if quick else 9
    one = _rounds(kern, 1, passes, rounds)
    many = _rounds(kern, threads, passes, rounds) if threads > 1 else one
    regs = vector_registers(kern.inspect_asm(kern.signatures[0]))
    widest = next((bits for bits in ("512-bit", "256-bit", "128-bit") if regs[bits]), "scalar")
    lanes = {"512-bit": 16, "256-bit": 8, "128-bit": 4}.get(widest, 1)
    return {"method": "numba", "gflops": max(many), "rounds_gflops": many,
            "one_thread_gflops": max(one), "one_thread_rounds_gflops": one,
            "threads": threads, "vector": widest, "fma_instructions": regs,
            "how": (f"Numba kernel: {WIDTH // lanes} independent chains of {DEPTH} dependent fp32 "
                    f"FMAs on {widest} vectors per thread, data in L1 ({note}); one thread per "
                    f"core, nogil; best of {rounds} rounds")}


def probe_sgemm(threads: int, quick: bool) -> Dict[str, Any]:
    """Fallback: NumPy sgemm on sizes whose operands fit in cache. A lower bound of the peak."""
    import numpy as np
    from .common import limit_numpy_blas, measure, timing
    limit_numpy_blas(threads)
    best = {}
    for n in (256, 512):
        a = np.ones((n, n), np.float32)
        r = measure(lambda: a @ a, **timing(quick))
        best[n] = 2.0 * n ** 3 / min(r["samples"]) / 1e9
    return {"method": "numpy-sgemm", "gflops": max(best.values()), "by_size": best,
            "threads": threads,
            "how": "NumPy sgemm at n = 256 and 512 (Numba missing): a lower bound of the peak"}


def probe(threads: int, quick: bool) -> Dict[str, Any]:
    import importlib.util
    # find_spec, not import: Numba must not load before _full_width_vectors has run
    if importlib.util.find_spec("numba") is None:
        return probe_sgemm(threads, quick)
    return probe_numba(threads, quick)


def best_of(probes: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One peak from several probes (run at different times): the best, since noise only ever
    lowers a probe. Failed probes ({"error": ...}) are kept for the record."""
    good = [p for p in probes if "gflops" in p]
    if not good:
        return {"gflops": None, "probes": probes, "how": "the probe failed"}
    best = max(good, key=lambda p: p["gflops"])
    return {"gflops": best["gflops"], "threads": best["threads"], "method": best["method"],
            "how": best["how"], "one_thread_gflops": best.get("one_thread_gflops"),
            "probe_gflops": [p["gflops"] for p in good], "probes": probes}


def peak_lines(peak: Dict[str, Any]) -> List[str]:
    if peak["gflops"] is None:
        errors = "; ".join(p.get("error", "") for p in peak["probes"])
        return [f"FMA peak   unknown ({errors}): no %peak figures"]
    one = peak.get("one_thread_gflops")
    per = f", {one:.0f} on one thread" if one and peak["threads"] > 1 else ""
    probes = " / ".join(f"{g:.0f}" for g in peak["probe_gflops"])
    lines = [f"FMA peak   {peak['gflops']:.0f} GF/s fp32 on {peak['threads']} thread(s){per} "
             f"(best of the probes: {probes})",
             f"           measured by: {peak['how']}"]
    if peak["method"] != "numba":
        lines.append("           (a lower bound: %peak figures below are upper bounds)")
    return lines


def main() -> int:
    from .launch import write_result
    p = argparse.ArgumentParser(prog="python -m bench.peak")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    write_result(args.out, probe(args.threads, args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
