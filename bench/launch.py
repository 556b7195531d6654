"""Start one benchmark process (``python -m bench.<module> ...``) and read back its results.

Every measurement runs in a fresh interpreter that loads only what it measures: a library's idle
threads (OpenBLAS workers spin for about 0.1 s after each call, OpenMP teams too) then cannot
tax another library's figures, and each process gets the environment its library is to be
measured in.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from .common import OPENBLAS_OVERRIDES, REPO_ROOT


def child_env(clear_openblas: bool, base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The environment of a benchmark process.

    clear_openblas: drop the OpenBLAS overrides. Only processes that time NumPy do so: OpenBLAS
    reads them once, when it loads, so they must be gone before the interpreter starts.
    """
    env = dict(os.environ if base is None else base)
    if clear_openblas:
        for key in OPENBLAS_OVERRIDES:
            env.pop(key, None)
    # `python -m bench.worker` must find this package from any working directory
    paths = [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def run_module(module: str, args: List[str], clear_openblas: bool) -> Dict[str, Any]:
    """Run ``python -m module *args --out FILE`` and return the JSON it wrote to FILE.

    The child's stdout goes to our stderr (with its progress lines), so that our stdout holds
    the report alone. A failed child yields ``{"error": ...}``: the other parts still run.
    """
    with tempfile.TemporaryDirectory(prefix="fastnn-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", module, *args, "--out", str(out)]
        sys.stdout.flush()
        proc = subprocess.run(cmd, env=child_env(clear_openblas), stdout=sys.stderr)
        if proc.returncode != 0 or not out.is_file():
            return {"error": f"`{' '.join(cmd[1:-2])}` failed with exit status {proc.returncode}"}
        return json.loads(out.read_text())


def write_result(path: str, result: Dict[str, Any]) -> None:
    """The child's half of ``run_module``."""
    Path(path).write_text(json.dumps(result) + "\n")
