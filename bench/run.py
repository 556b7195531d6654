"""Benchmark runner: ``python -m bench [--family FAMILY|all] [--threads N]
[--quick] [--sizes 64,256] [--json PATH]`` (also ``python bench/run.py ...``).

The runner loads no library itself: every measurement runs in a process of its own, one per
library per family (see ``bench.launch``). It prints the environment and one table per family,
and writes everything to JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

if __package__ in (None, ""):  # run as a script: make the bench package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import attention  # noqa: E402
from bench import cnn, common, conv, environment, gemm, interference, mlp, peak  # noqa: E402
from bench import distributed  # noqa: E402
from bench import rbm  # noqa: E402
from bench import rnn  # noqa: E402
from bench.launch import run_module  # noqa: E402

# One family a line (several people add families). "all" runs every one but the
# opt-in ones, which take long or need extra software.
FAMILIES = (
    "gemm",
    "conv",
    "mlp",
    "cnn",
    "rnn",
    "attention",
    "rbm",
    "interference",
    "distributed",
)
OPT_IN = ("distributed",)
DEFAULT_JSON = Path(__file__).resolve().parent / "results.json"


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
    p.add_argument("--family", choices=FAMILIES + ("all",), default="all",
                   help="gemm: square products and linear layers (with the FMA peak); conv: "
                        "conv2d forward, forward+backward and max pooling; mlp: "
                        "Fashion-MNIST training; cnn: the Fashion-MNIST CNN's training epoch; "
                        "rnn: LSTM and GRU forward and forward+backward; attention: fused "
                        "attention speed and memory; rbm: an RBM epoch against scikit-learn; "
                        "interference: "
                        "libraries in one process; distributed (not in all): data-parallel "
                        "epochs on 1-2 ranks (mpirun) against PyTorch DDP")
    p.add_argument("--threads", type=int, default=common.default_threads(),
                   help="threads for fastnn, NumPy's BLAS and torch (default: all cores)")
    p.add_argument("--quick", action="store_true",
                   help="fewer sizes, repeats and epochs: a smoke run")
    p.add_argument("--sizes", type=_sizes, metavar="N,N,...",
                   help="square GEMM sizes, comma-separated (default 32..2048)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON,
                   help="where to write the results (default bench/results.json)")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be at least 1")
    return args


def libraries_to_time(with_torch: bool) -> List[str]:
    return ["fastnn", "numpy"] + (["torch"] if with_torch else [])


def _worker(family: str, lib: str, args: argparse.Namespace,
            extra: Optional[List[str]] = None) -> Dict[str, Any]:
    common.progress(f"{family}: starting the {lib} process")
    argv = [family, "--lib", lib, "--threads", str(args.threads)] + (extra or [])
    # Only NumPy's processes drop the OpenBLAS overrides; the others keep the environment as is.
    return run_module("bench.worker", argv + (["--quick"] if args.quick else []),
                      clear_openblas=lib in ("numpy", "sklearn"))


def _peak_probe(args: argparse.Namespace) -> Dict[str, Any]:
    common.progress("measuring the FMA peak")
    # Cleared for the fallback probe, a NumPy sgemm; the Numba probe does not care.
    return run_module("bench.peak", ["--threads", str(args.threads)]
                      + (["--quick"] if args.quick else []), clear_openblas=True)


def run_gemm(args: argparse.Namespace, libs: List[str]) -> Dict[str, Any]:
    sizes = args.sizes or list(gemm.QUICK_SIZES if args.quick else gemm.SIZES)
    probes = [_peak_probe(args)]
    per_lib = {lib: _worker("gemm", lib, args, ["--sizes", ",".join(map(str, sizes))])
               for lib in libs}
    if not args.quick:
        # A second probe, later: on a shared machine a neighbour may have held a core during
        # the first one, and the peak is the best the cores can do.
        probes.append(_peak_probe(args))
    pk = peak.best_of(probes)
    res = gemm.combine(per_lib, pk["gflops"])
    res["processes"] = {lib: r.get("process") for lib, r in per_lib.items()}
    return {"peak": pk, "gemm": res}


def run_conv(args: argparse.Namespace, libs: List[str]) -> Dict[str, Any]:
    return conv.combine({lib: _worker("conv", lib, args) for lib in libs})


def run_rnn(args: argparse.Namespace, libs: List[str],
            peak_result: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    pk = peak_result or _peak_probe(args)
    return rnn.combine({lib: _worker("rnn", lib, args) for lib in libs}, pk.get("gflops"))


def run_attention(args: argparse.Namespace, libs: List[str]) -> Dict[str, Any]:
    per_lib = {lib: _worker("attention", lib, args) for lib in libs}
    memory = {}
    for lib in [lib for lib in libs if lib != "numpy"]:
        common.progress(f"attention: memory of {lib}")
        memory[lib] = run_module("bench.attention", ["--lib", lib, "--threads", str(args.threads)],
                                 clear_openblas=False)
    pk = peak.best_of([_peak_probe(args)])
    return attention.combine(per_lib, memory, pk.get("gflops"))


def _run_training(args: argparse.Namespace, family: str, module: Any, epochs: int,
                  with_torch: bool) -> Dict[str, Any]:
    """A training family's epochs, fastnn (and torch) each in its worker, side by side."""
    epoch_args = ["--epochs", "1" if args.quick else str(epochs)]
    per_lib = {lib: _worker(family, lib, args, epoch_args)
               for lib in ["fastnn"] + (["torch"] if with_torch else [])}
    res = module.combine(per_lib)
    res["threads"] = args.threads
    return res


def run_mlp(args: argparse.Namespace, with_torch: bool) -> Dict[str, Any]:
    return _run_training(args, "mlp", mlp, 3, with_torch)


def run_cnn(args: argparse.Namespace, with_torch: bool) -> Dict[str, Any]:
    return _run_training(args, "cnn", cnn, 2, with_torch)


def run_rbm(args: argparse.Namespace) -> Dict[str, Any]:
    epochs = ["--epochs", "1" if args.quick else "3"]
    libs = ["fastnn", "fastnn_bf16"] + (["sklearn"] if rbm.sklearn_installed() else [])
    res = rbm.combine({lib: _worker("rbm", lib, args, epochs) for lib in libs})
    res["threads"] = args.threads
    return res


def run_interference(args: argparse.Namespace) -> Dict[str, Any]:
    common.progress("interference: starting the shared process")
    return run_module("bench.interference", ["--threads", str(args.threads)]
                      + (["--quick"] if args.quick else []), clear_openblas=True)


def run_distributed(args: argparse.Namespace, with_torch: bool) -> Dict[str, Any]:
    # Fixed configurations (1x1, 1x2, 2x1 ranks x threads): --threads does not apply.
    return distributed.run(args.quick, with_torch)


def _kernel_check(libs_env: Dict[str, Any], procs: Dict[str, Any]) -> List[str]:
    """Warn when NumPy's timing process ran another OpenBLAS kernel than reported above."""
    want = [b.get("architecture") for b in libs_env.get("numpy_blas", [])]
    got = [b.get("architecture") for b in (procs.get("numpy") or {}).get("numpy_blas", [])]
    if got and want and got != want:
        return [f"WARNING: NumPy's timing process ran OpenBLAS kernel {got}, not {want}"]
    return []


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    with_torch = common.torch_installed()
    libs = libraries_to_time(with_torch)
    if args.family == "all":
        families = tuple(f for f in FAMILIES if f not in OPT_IN)
    else:
        families = (args.family,)
    t0 = time.perf_counter()

    mach = environment.machine(args.threads)
    common.progress("reading the libraries' versions and NumPy's OpenBLAS kernel")
    libs_env = run_module("bench.worker", ["env", "--threads", str(args.threads)],
                          clear_openblas=True)
    held = None
    if mach["openblas_overrides"]:
        held = run_module("bench.worker", ["env", "--threads", str(args.threads)],
                          clear_openblas=False).get("numpy_blas")
    print("\n".join(environment.header_lines(mach, libs_env, held)))
    repeats = f"{common.timing(args.quick)['repeats']} repeats per case"
    if not args.quick and "interference" in families:
        repeats += f" ({interference.FULL_REPEATS} for interference)"
    print(f"Method     each library timed in a process of its own; {'quick run, ' * args.quick}"
          f"{repeats}, medians reported; compare within one run\n", flush=True)
    results: Dict[str, Any] = {"argv": sys.argv[1:] if argv is None else argv,
                               "machine": mach, "libraries": libs_env,
                               "numpy_blas_with_overrides": held, "quick": args.quick,
                               "threads": args.threads, "timing": common.timing(args.quick)}

    if "gemm" in families:
        results.update(run_gemm(args, libs))
        warnings = _kernel_check(libs_env, results["gemm"]["processes"])
        print("\n".join(peak.peak_lines(results["peak"]) + [""] + warnings))
        print(gemm.report(results["gemm"]) + "\n", flush=True)
    if "conv" in families:
        results["conv"] = run_conv(args, libs)
        print(conv.report(results["conv"]) + "\n", flush=True)
    if "attention" in families:
        results["attention"] = run_attention(args, libs)
        print(attention.report(results["attention"]) + "\n", flush=True)
    if "mlp" in families:
        results["mlp"] = run_mlp(args, with_torch)
        print(mlp.report(results["mlp"]) + "\n", flush=True)
    if "cnn" in families:
        results["cnn"] = run_cnn(args, with_torch)
        print(cnn.report(results["cnn"]) + "\n", flush=True)
    if "rnn" in families:
        results["rnn"] = run_rnn(args, libs, results.get("peak"))
        print(rnn.report(results["rnn"]) + "\n", flush=True)


    if "rbm" in families:
        results["rbm"] = run_rbm(args)
        print(rbm.report(results["rbm"]) + "\n", flush=True)
    if "interference" in families:
        results["interference"] = run_interference(args)
        print(interference.report(results["interference"]) + "\n", flush=True)

    if "distributed" in families:
        results["distributed"] = run_distributed(args, with_torch)
        print(distributed.report(results["distributed"]) + "\n", flush=True)

    results["elapsed_s"] = time.perf_counter() - t0
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results written to {args.json} ({results['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
