"""Benchmark runner: ``python -m bench [--family gemm|mlp|all] [--threads N] [--quick]
[--sizes 64,256] [--json PATH]`` (also ``python bench/run.py ...``).

Prints the environment and one table per family, and writes everything to JSON.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import List, Optional

if __package__ in (None, ""):  # run as a script: make the bench package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402  (imports nothing heavy: NumPy must wait)


def _sizes(text: str) -> List[int]:
    try:
        sizes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"want positive integers like 64,256,1024, got {text!r}")
    return sizes


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmark fastnn against NumPy and PyTorch CPU.")
    p.add_argument("--family", choices=("gemm", "mlp", "all"), default="all")
    p.add_argument("--threads", type=int, default=common.default_threads(),
                   help="threads for fastnn, NumPy's BLAS and torch (default: all cores)")
    p.add_argument("--quick", action="store_true",
                   help="fewer sizes, repeats and epochs: a smoke run")
    p.add_argument("--sizes", type=_sizes, metavar="N,N,...",
                   help="square GEMM sizes, comma-separated (default 32..2048)")
    p.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results.json",
                   help="where to write the results (default bench/results.json)")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be at least 1")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    common.drop_openblas_overrides()  # may restart the interpreter, so before NumPy loads
    args = parse_args(argv)
    from bench import gemm, mlp

    torch = common.import_torch()
    notes = common.set_threads(args.threads, torch)
    env = common.environment(args.threads, torch)
    print("\n".join(common.environment_lines(env) + notes))
    print("Timings are wall-clock on a machine that may be busy: compare within one run.\n")
    results = {"environment": env, "quick": args.quick, "notes": notes}
    t0 = time.perf_counter()

    if args.family in ("gemm", "all"):
        sizes = args.sizes or (gemm.QUICK_SIZES if args.quick else gemm.SIZES)
        settings = (dict(min_time=0.02, repeats=3, warmup=0.12) if args.quick
                    else dict(min_time=0.05, repeats=7, warmup=0.3))
        results["gemm"] = gemm.run(sizes, torch, functools.partial(common.measure, **settings))
        results["gemm"]["timing"] = settings
        print(gemm.report(results["gemm"]) + "\n", flush=True)

    if args.family in ("mlp", "all"):
        results["mlp"] = mlp.run(torch, epochs=1 if args.quick else 3, threads=args.threads)
        print(mlp.report(results["mlp"]) + "\n", flush=True)

    results["elapsed_s"] = time.perf_counter() - t0
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results written to {args.json} ({results['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
