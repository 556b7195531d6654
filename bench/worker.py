"""One benchmark process: one library, one family.

``python -m bench.worker FAMILY --lib LIB --threads N [--quick] [--sizes 64,256] --out FILE``
(started by the runner through ``bench.launch``; FAMILY is gemm, conv, mlp, cnn, rnn,
attention or env).

The process loads the measured library and NumPy (which prepares inputs) and nothing else. When
NumPy is not the one measured, its BLAS runs one thread: it has no idle workers to spin beside
the measured library.
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Dict, List, Optional

from .common import (OPENBLAS_OVERRIDES, import_fastnn, limit_numpy_blas, numpy_blas_info,
                     progress)

LIBRARIES = ("fastnn", "numpy", "torch", "sklearn", "fastnn_bf16")


def setup(lib: str, threads: int) -> "tuple[Dict[str, Any], Dict[str, Any]]":
    """Load ``lib``, give it ``threads`` threads; returns (modules, what this process runs)."""
    mods: Dict[str, Any] = {}
    notes: List[Optional[str]] = [limit_numpy_blas(threads if lib in ("numpy", "sklearn") else 1)]
    facts: Dict[str, Any] = {
        "pid": os.getpid(),
        "openblas_overrides_seen": {k: os.environ[k] for k in OPENBLAS_OVERRIDES
                                    if k in os.environ}}
    if lib in ("fastnn", "fastnn_bf16"):  # fastnn_bf16: fastnn with bfloat16 products (rbm)
        fastnn = mods["fastnn"] = import_fastnn()
        fastnn.set_num_threads(threads)
        facts.update(threads=fastnn.get_num_threads(), build_info=fastnn.build_info())
    elif lib == "torch":
        import torch
        mods["torch"] = torch
        torch.set_num_threads(threads)
        facts.update(threads=torch.get_num_threads(), version=torch.__version__)
    facts["numpy_blas"] = numpy_blas_info()
    if lib == "numpy":
        facts["threads"] = [b["num_threads"] for b in facts["numpy_blas"]]
    facts["notes"] = [n for n in notes if n]
    return mods, facts


def _sizes(text: str) -> List[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: Optional[List[str]] = None) -> int:
    from . import attention, cnn, conv, gemm, mlp, rnn
    from .environment import libraries
    from .launch import write_result
    p = argparse.ArgumentParser(prog="python -m bench.worker")
    p.add_argument("family", choices=("gemm", "conv", "mlp", "cnn", "rnn", "attention", "rbm", "env"))
    p.add_argument("--lib", choices=LIBRARIES, default="numpy")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sizes", type=_sizes, default=list(gemm.SIZES))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.family == "env":
        write_result(args.out, libraries())
        return 0
    mods, facts = setup(args.lib, args.threads)
    if args.family == "gemm":
        result = gemm.run_library(args.lib, args.sizes, args.quick, mods)
    elif args.family == "conv":
        result = conv.run_library(args.lib, args.quick, mods)
    elif args.family == "cnn":
        result = cnn.run_library(args.lib, args.epochs, mods)
    elif args.family == "rnn":
        result = rnn.run_library(args.lib, args.quick, mods)
    elif args.family == "attention":
        result = attention.run_library(args.lib, args.quick, mods)
    elif args.family == "rbm":
        from . import rbm
        result = rbm.run_library(args.lib, args.epochs, mods)
    else:
        result = mlp.run_library(args.lib, args.epochs, mods)
    progress(f"{args.family:6s} {args.lib:6s} done")
    write_result(args.out, {"process": facts, **result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
