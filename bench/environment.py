"""What decides the numbers: CPU, load, library versions, the ISA fastnn runs, NumPy's kernel.

``machine()`` runs in the runner (no library loaded); ``libraries()`` runs in a benchmark
process of its own, with the environment the NumPy measurements get.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional

from .common import OPENBLAS_OVERRIDES, import_fastnn, numpy_blas_info


def cpu_model() -> str:
    """lscpu's "Model name", else /proc/cpuinfo's, else what platform knows."""
    if shutil.which("lscpu"):
        try:
            out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                                 env={**os.environ, "LC_ALL": "C"}).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(threads: int) -> Dict[str, Any]:
    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "threads": threads,
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "python": platform.python_version(),
            "openblas_overrides": {k: os.environ[k] for k in OPENBLAS_OVERRIDES
                                   if k in os.environ}}


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def libraries() -> Dict[str, Any]:
    """Library facts, gathered in a process started the way NumPy's timing processes are."""
    import numpy as np
    fastnn = import_fastnn()
    info = fastnn.build_info()
    return {"numpy": np.__version__, "numpy_blas": numpy_blas_info(),
            "openblas_overrides_seen": {k: os.environ[k] for k in OPENBLAS_OVERRIDES
                                        if k in os.environ},
            "fastnn": fastnn.__version__, "fastnn_path": str(Path(fastnn.__file__).parent),
            "fastnn_build_info": info,
            "torch": _version("torch")}


def held_back_kernel() -> List[Dict[str, Any]]:
    """NumPy's BLAS as it loads with the overrides left in place (for the record)."""
    import numpy  # noqa: F401
    return numpy_blas_info()


def _blas_text(blas: List[Dict[str, Any]]) -> str:
    return "; ".join(f"{b['internal_api']} {b['version']} kernel={b['architecture']}"
                     for b in blas) or "unknown (threadpoolctl missing?)"


def header_lines(mach: Dict[str, Any], libs: Dict[str, Any],
                 held_back: Optional[List[Dict[str, Any]]]) -> List[str]:
    load = " ".join(f"{v:.2f}" for v in mach["load_average"] or ()) or "unknown"
    lines = [f"CPU        {mach['cpu']} ({mach['logical_cpus']} logical CPUs); threads used = "
             f"{mach['threads']}; load average before the run: {load}"]
    if "error" in libs:
        return lines + [f"libraries  unknown: {libs['error']}"]
    bi = libs["fastnn_build_info"]
    extras = [f"best on this CPU: {bi.get('best_isa')}"]
    if bi.get("threading"):
        extras.append(f"threads: {bi['threading']}")
    lines.append(f"fastnn     {libs['fastnn']}  backend={bi.get('backend')}  "
                 f"ISA run: {bi.get('isa')} ({', '.join(extras)})  [{libs['fastnn_path']}]")
    lines.append(f"NumPy      {libs['numpy']}  BLAS: {_blas_text(libs['numpy_blas'])}")
    overrides = mach["openblas_overrides"]
    if overrides:
        was = f"; with them NumPy would run {_blas_text(held_back)}" if held_back else ""
        lines.append("           NumPy is timed with " + ", ".join(overrides)
                     + f" cleared in its own processes only{was}")
    else:
        lines.append("           (no OpenBLAS overrides set: NumPy runs its default kernel)")
    if libs["openblas_overrides_seen"]:
        lines.append(f"WARNING    NumPy's process still saw {libs['openblas_overrides_seen']}")
    lines.append(f"PyTorch    {libs['torch'] or 'not installed'}")
    lines.append(f"Python     {mach['python']}")
    busy = (mach["load_average"] or [0.0])[0]
    if busy > 0.25 * (mach["logical_cpus"] or 1):
        lines.append(f"WARNING    the machine is busy (load {busy:.1f} before this run started): "
                     "multi-threaded timings will be noisy")
    return lines
