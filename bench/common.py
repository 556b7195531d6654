"""Timing, thread control, environment report and table formatting shared by the families.

NumPy, fastnn and torch are imported inside functions only: the runner must be able to restart
the interpreter before NumPy (and its OpenBLAS) is first loaded.
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

# Either variable pins OpenBLAS to an older, slower kernel than the CPU supports; NumPy is to be
# measured at its best, so the benchmark never runs with them.
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_CLEARED_MARK = "FASTNN_BENCH_CLEARED"

REPO_ROOT = Path(__file__).resolve().parent.parent


def drop_openblas_overrides() -> None:
    """Restart this very command without the OpenBLAS overrides if any is set.

    OpenBLAS reads them once, when the library loads, so unsetting them in a running process is
    useless once NumPy is imported; restarting is the only way that always works.
    """
    found = [f"{k}={os.environ[k]}" for k in OPENBLAS_OVERRIDES if k in os.environ]
    if not found:
        return
    for k in OPENBLAS_OVERRIDES:
        os.environ.pop(k, None)
    os.environ[_CLEARED_MARK] = ",".join(found)
    sys.stdout.flush()
    sys.stderr.flush()
    argv = list(getattr(sys, "orig_argv", [sys.executable] + sys.argv))
    os.execv(sys.executable, argv)


def import_fastnn() -> Any:
    """fastnn as installed, else the in-place build of this checkout."""
    try:
        import fastnn
    except ImportError:
        sys.path.insert(0, str(REPO_ROOT / "python"))
        import fastnn
    return fastnn


def import_torch() -> Optional[Any]:
    try:
        import torch
    except ImportError:
        return None
    return torch


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_blas_limit: Any = None  # threadpoolctl holds the limit only while this object lives


def set_threads(n: int, torch: Optional[Any]) -> List[str]:
    """Give fastnn, NumPy's BLAS and torch the same thread count; returns notes on failures."""
    global _blas_limit
    notes = []
    import_fastnn().set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        notes.append("threadpoolctl is not installed: NumPy's BLAS threads are not controlled")
    else:
        import numpy  # noqa: F401  (load OpenBLAS so that threadpoolctl can see it)
        _blas_limit = threadpool_limits(limits=n, user_api="blas")
    if torch is not None:
        torch.set_num_threads(n)
    return notes


def measure(fn: Callable[[], Any], min_time: float, repeats: int,
            warmup: float) -> Dict[str, float]:
    """Warm up for ``warmup`` seconds, then time ``repeats`` repeats of ``fn``, each at least
    ``min_time`` seconds long.

    Returns seconds per call (``best`` and ``median`` repeat) and the ``calls`` per repeat.
    Small problems get many calls per repeat so that timer resolution and one-off hiccups don't
    dominate; the best repeat is the least disturbed by other work on the machine. The warm-up
    also has to outlast the previous library: idle OpenBLAS workers keep spinning for about
    0.1 s after a call, stealing a core from whoever runs next.
    """
    calls, start = 1, time.perf_counter()
    while True:
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        spent = time.perf_counter() - t0
        if spent < min_time / 4:
            calls *= 4
        elif t0 + spent - start >= warmup:
            break
    calls = max(1, int(calls * min_time / spent + 0.5))
    per_call = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        per_call.append((time.perf_counter() - t0) / calls)
    return {"best": min(per_call), "median": statistics.median(per_call), "calls": calls,
            "repeats": repeats}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(threads: int, torch: Optional[Any]) -> Dict[str, Any]:
    """Everything that decides the numbers: CPU, threads, versions, kernels in use."""
    import numpy as np
    fastnn = import_fastnn()
    env: Dict[str, Any] = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "fastnn": fastnn.__version__,
        "fastnn_path": str(Path(fastnn.__file__).parent),
        "fastnn_backend": fastnn.get_backend(),
        "fastnn_isa": fastnn.get_isa(),
        "openblas_overrides_cleared": os.environ.get(_CLEARED_MARK, ""),
        "openblas_overrides_set": [k for k in OPENBLAS_OVERRIDES if k in os.environ],
        "numpy_blas": [],
        "torch": None if torch is None else torch.__version__,
    }
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        pass
    else:
        keep = ("internal_api", "architecture", "version", "num_threads", "threading_layer",
                "filepath")
        env["numpy_blas"] = [{k: i.get(k) for k in keep} for i in threadpool_info()
                             if i.get("user_api") == "blas"]
    if torch is not None:
        env["torch_threads"] = torch.get_num_threads()
    return env


def environment_lines(env: Dict[str, Any]) -> List[str]:
    blas = "; ".join(f"{b['internal_api']} {b['version']} kernel={b['architecture']} "
                     f"threads={b['num_threads']}" for b in env["numpy_blas"]) or "unknown"
    cleared = env["openblas_overrides_cleared"] or "none were set"
    load = " ".join(f"{v:.2f}" for v in env["load_average"] or ()) or "unknown"
    lines = [
        f"CPU        {env['cpu']} ({env['logical_cpus']} logical CPUs), threads = {env['threads']}"
        f", load average {load}",
        f"fastnn     {env['fastnn']}  backend={env['fastnn_backend']}  isa={env['fastnn_isa']}"
        f"  ({env['fastnn_path']})",
        f"NumPy      {env['numpy']}  BLAS: {blas}",
        f"           OpenBLAS overrides cleared: {cleared}",
        f"PyTorch    {env['torch'] or 'not installed'}",
        f"Python     {env['python']}",
    ]
    busy = (env["load_average"] or [0.0])[0]
    if busy > 0.25 * (env["logical_cpus"] or 1):
        lines.append(f"WARNING    the machine is busy (load {busy:.1f} before this run started): "
                     "multi-threaded timings will be noisy")
    if env["openblas_overrides_set"]:
        lines.append(f"WARNING    still set: {env['openblas_overrides_set']}")
    return lines


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Right-aligned columns, first column left-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def fmt(r: List[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths)))

    out = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    out += [fmt(r) for r in cells[1:]]
    return "\n".join(out)


def num(x: Optional[float], digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def ratio(ours: Optional[float], theirs: Optional[float]) -> Optional[float]:
    """How many times faster fastnn is (time of theirs / time of ours); > 1: fastnn faster."""
    if ours is None or theirs is None or ours <= 0:
        return None
    return theirs / ours
