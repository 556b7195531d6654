"""Data-parallel scaling: one epoch of the seed MLP (global batch 256) and of the example CNN
(global batch 128) on 1 rank x 1 thread, 1 rank x 2 threads and 2 ranks x 1 thread, fastnn
(``fit(distributed=True)`` on MPI) against PyTorch's DistributedDataParallel (gloo backend).

Every configuration runs in processes of its own: fastnn's two ranks under ``mpirun -n 2``,
PyTorch's as two processes joined by ``torch.distributed`` over TCP on this machine. One rank
trains with the plain loop of each library (no distributed wrapper); two ranks shard each
global batch in halves (per-rank batch 128 for the MLP, 64 for the CNN) and average the
gradients. Both sides run the same model, initialization scheme, optimizer (Adam 1e-3),
dropout and batches, with the data already in memory.

fastnn's two-rank runs are repeated with the gradient buckets' allreduces started only at the
optimizer step instead of during the backward (the default): the median time a step waited for
the network in each case says how much of the communication the backward hides. The load
average before and after each run is printed: the figures mean little on a busy machine.

``python -m bench.distributed worker ...`` is one rank of one configuration (used by ``run``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .common import import_fastnn, num, progress, spread, table
from .stats import summarize

CONFIGS: Tuple[Tuple[int, int], ...] = ((1, 1), (1, 2), (2, 1))   # (ranks, threads per rank)
MODELS = {"mlp": {"global_batch": 256, "samples": 60000, "quick_samples": 60000},
          "cnn": {"global_batch": 128, "samples": 3200, "quick_samples": 1280}}
TARGET_SCALING = 1.8     # fastnn 2 ranks x 1 thread over 1 rank x 1 thread
TARGET_VS_TORCH = 2.0    # fastnn throughput over PyTorch's, 2 ranks x 1 thread
LR = 1e-3
SEED = 0
WARMUP_STEPS = 20


# -- one rank -----------------------------------------------------------------------------------

def _shard(n: int, batch: int, ranks: int, rank: int, epoch: int) -> Any:
    """The same split as fastnn's fit: one seeded order, each global batch cut in ``ranks``
    parts (whole global batches only, so every rank runs the same number of steps)."""
    import numpy as np
    order = np.random.default_rng([SEED, epoch]).permutation(n)
    g = batch * ranks
    full = (n // g) * g
    return order[:full].reshape(-1, ranks, batch)[:, rank].reshape(-1)


def _fastnn_model(kind: str) -> Any:
    from fastnn import nn
    if kind == "mlp":
        return nn.Sequential([nn.Dense(128, activation="relu", input_shape=(784,)),
                              nn.Dropout(0.2), nn.Dense(10, activation="softmax")])
    return nn.Sequential([
        nn.Conv2D(32, 3, padding="same", activation="relu", input_shape=(1, 28, 28)),
        nn.MaxPool2D(2), nn.Conv2D(64, 3, padding="same", activation="relu"), nn.MaxPool2D(2),
        nn.Flatten(), nn.Dense(128, activation="relu"), nn.Dropout(0.2),
        nn.Dense(10, activation="softmax")])


def _torch_model(torch: Any, kind: str) -> Any:
    nn = torch.nn
    if kind == "mlp":
        return nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(128, 10))


def _data(kind: str, samples: int, use_fastnn: bool) -> Tuple[Any, Any]:
    from .mlp import load_data
    (x, y, _, _), _ = load_data(use_fastnn)
    x, y = x[:samples], y[:samples]
    if kind == "cnn":
        x = x.reshape(len(x), 1, 28, 28)
    return x, y


def _worker_fastnn(a: argparse.Namespace) -> Optional[Dict[str, Any]]:
    fastnn = import_fastnn()
    from fastnn import distributed as dist
    fastnn.set_num_threads(a.threads)
    ranks, rank = dist.size(), dist.rank()
    x, y = _data(a.model, a.samples, True)
    batch = a.global_batch // ranks
    fastnn.random.seed(SEED + rank)  # rank 0's weights are broadcast; dropout differs by rank
    model = _fastnn_model(a.model)
    waits: List[float] = []
    if ranks > 1:
        class Timed(dist.DistributedOptimizer):
            def step(self, params, grads):
                before = self.stats["wait_s"]
                super().step(params, grads)
                waits.append(self.stats["wait_s"] - before)

        opt = Timed(fastnn.optim.Adam(LR), overlap=not a.no_overlap)
    else:
        opt = fastnn.optim.Adam(LR)
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
    dist_fit = ranks > 1
    warm = min(WARMUP_STEPS * a.global_batch, len(x))
    model.fit(x[:warm], y[:warm], epochs=1, batch_size=batch, verbose=0, distributed=dist_fit)
    times = []
    for e in range(a.epochs):
        waits.clear()
        dist.barrier()
        t0 = time.perf_counter()
        model.fit(x, y, epochs=1, batch_size=batch, verbose=0, distributed=dist_fit,
                  shuffle=True)
        times.append(time.perf_counter() - t0)
    if rank != 0:
        return None
    out: Dict[str, Any] = {"epoch_s": times, "threads": fastnn.get_num_threads(),
                           "ranks": ranks}
    if waits:
        import numpy as np
        out["wait_ms_median"] = float(np.median(waits) * 1e3)
        out["wait_ms_mean"] = float(np.mean(waits) * 1e3)
        out["buckets"] = len(opt._buckets)
    return out


def _worker_torch(a: argparse.Namespace) -> Optional[Dict[str, Any]]:
    import torch
    import torch.distributed as tdist
    torch.set_num_threads(a.threads)
    ranks, rank = a.ranks, a.rank
    if ranks > 1:
        tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{a.port}", rank=rank,
                                 world_size=ranks)
    x, y = _data(a.model, a.samples, False)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    batch = a.global_batch // ranks
    torch.manual_seed(SEED)
    model = _torch_model(torch, a.model)
    if ranks > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)  # broadcasts rank 0's weights
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()

    def epoch(n: int, e: int) -> None:
        model.train()
        idx_all = torch.from_numpy(_shard(n, batch, ranks, rank, e))
        for i in range(0, len(idx_all), batch):
            idx = idx_all[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()

    epoch(min(WARMUP_STEPS * a.global_batch, len(x)), 1000)
    times = []
    for e in range(a.epochs):
        if ranks > 1:
            tdist.barrier()
        t0 = time.perf_counter()
        epoch(len(x), e)
        times.append(time.perf_counter() - t0)
    if ranks > 1:
        tdist.destroy_process_group()
    return {"epoch_s": times, "threads": torch.get_num_threads(), "ranks": ranks} \
        if rank == 0 else None


# -- launching ----------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(threads: int) -> Dict[str, str]:
    from .launch import child_env
    env = child_env(clear_openblas=False)
    env["OMP_NUM_THREADS"] = str(threads)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


def launch(lib: str, kind: str, ranks: int, threads: int, epochs: int, samples: int,
           overlap: bool = True) -> Dict[str, Any]:
    """Run one configuration; rank 0's result, or {"error": ...}."""
    spec = MODELS[kind]
    with tempfile.TemporaryDirectory(prefix="fastnn-bench-dist-") as tmp:
        out = Path(tmp) / "result.json"
        base = [sys.executable, "-m", "bench.distributed", "worker", "--lib", lib,
                "--model", kind, "--ranks", str(ranks), "--threads", str(threads),
                "--epochs", str(epochs), "--samples", str(samples),
                "--global-batch", str(spec["global_batch"]), "--out", str(out)]
        if not overlap:
            base.append("--no-overlap")
        env = _env(threads)
        sys.stdout.flush()
        if lib == "fastnn" and ranks > 1:
            mpirun = shutil.which("mpirun")
            if mpirun is None:
                return {"error": "mpirun not found"}
            # Unbound, as PyTorch's processes are: on a busy machine a rank pinned to one core
            # waits for that core while the other may be free.
            procs = [subprocess.Popen([mpirun, "-n", str(ranks), "--oversubscribe",
                                       "--bind-to", "none"] + base, env=env, stdout=sys.stderr)]
        else:
            port = _free_port()
            procs = [subprocess.Popen(base + ["--rank", str(r), "--port", str(port)], env=env,
                                      stdout=sys.stderr) for r in range(ranks)]
        load_before = os.getloadavg()[0]
        codes = [p.wait() for p in procs]
        if any(codes) or not out.is_file():
            return {"error": f"{lib} {ranks}x{threads} failed (exit status {codes})"}
        import json
        # The 1-minute load average around the run: other processes on the machine's cores
        return {**json.loads(out.read_text()), "load": [load_before, os.getloadavg()[0]]}


def run(quick: bool, with_torch: bool) -> Dict[str, Any]:
    """Every model x library x configuration, then the overlap comparison."""
    libs = ["fastnn"] + (["torch"] if with_torch else [])
    epochs = 1 if quick else 3
    res: Dict[str, Any] = {"models": {}, "epochs": epochs}
    for kind, spec in MODELS.items():
        samples = spec["quick_samples" if quick else "samples"]
        rows: Dict[str, Any] = {}
        for lib in libs:
            for ranks, threads in CONFIGS:
                progress(f"distributed {kind} {lib} {ranks} rank(s) x {threads} thread(s)")
                rows[f"{lib} {ranks}x{threads}"] = launch(lib, kind, ranks, threads, epochs,
                                                          samples)
        progress(f"distributed {kind} fastnn 2x1, allreduces started at the step")
        rows["fastnn 2x1 no-overlap"] = launch("fastnn", kind, 2, 1, epochs, samples,
                                               overlap=False)
        res["models"][kind] = {"samples": samples, "global_batch": spec["global_batch"],
                               "runs": rows}
    return combine(res)


def combine(res: Dict[str, Any]) -> Dict[str, Any]:
    for kind, m in res["models"].items():
        runs = m["runs"]
        for r in runs.values():
            if "epoch_s" in r:
                r.update(summarize(r["epoch_s"]))
                r["samples_per_s"] = m["samples"] // (m["global_batch"]) * m["global_batch"] \
                    / r["median"]

        def thr(key: str) -> Optional[float]:
            return runs.get(key, {}).get("samples_per_s")

        v: Dict[str, Any] = {}
        for lib in ("fastnn", "torch"):
            base = thr(f"{lib} 1x1")
            for cfg in ("1x2", "2x1"):
                t = thr(f"{lib} {cfg}")
                v[f"{lib} {cfg} scaling"] = t / base if t and base else None
        f2, t2 = thr("fastnn 2x1"), thr("torch 2x1")
        v["fastnn/torch 2x1"] = f2 / t2 if f2 and t2 else None
        v["pass scaling"] = (None if v["fastnn 2x1 scaling"] is None
                             else v["fastnn 2x1 scaling"] >= TARGET_SCALING)
        v["pass efficiency"] = (None if None in (v["fastnn 2x1 scaling"],
                                                 v["torch 2x1 scaling"])
                                else v["fastnn 2x1 scaling"] >= v["torch 2x1 scaling"])
        v["pass vs torch"] = (None if v["fastnn/torch 2x1"] is None
                              else v["fastnn/torch 2x1"] >= TARGET_VS_TORCH)
        m["verdicts"] = v
    return res


def report(res: Dict[str, Any]) -> str:
    lines = []
    for kind, m in res["models"].items():
        rows = []
        for key, r in m["runs"].items():
            if "median" not in r:
                rows.append([key, "-", "-", "-", "-", "-", r.get("error", "")])
                continue
            lib, cfg = key.split(" ", 1)
            base = m["runs"].get(f"{lib} 1x1", {}).get("samples_per_s")
            wait = r.get("wait_ms_median")
            load = "-".join(f"{v:.1f}" for v in r.get("load", ()))
            rows.append([key, num(r["median"], 3), spread(r), f"{r['samples_per_s']:.0f}",
                         num(r["samples_per_s"] / base if base else None, 2), load or "-",
                         "" if wait is None else f"{wait:.3f} ms wait/step, "
                         f"{r.get('buckets')} bucket(s)"])
        v = m["verdicts"]

        def verdict(ok: Optional[bool]) -> str:
            return {True: "pass", False: "MISS", None: "-"}[ok]

        what = ("seed MLP 784-128-10" if kind == "mlp" else "CNN conv32-pool-conv64-pool-"
                "128-10")
        lines.append(
            f"Data-parallel {what}: one epoch of {m['samples']} samples, global batch "
            f"{m['global_batch']}, Adam; {res['epochs']} timed epoch(s), median\n"
            + table(["library ranks x threads", "epoch s", "IQR", "samples/s", "vs 1x1",
                     "load avg", ""], rows)
            + f"\nfastnn 2x1 scaling {num(v['fastnn 2x1 scaling'], 2)} (target >= "
              f"{TARGET_SCALING}): {verdict(v['pass scaling'])}; torch 2x1 scaling "
              f"{num(v['torch 2x1 scaling'], 2)}, fastnn's at least that: "
              f"{verdict(v['pass efficiency'])}; fastnn/torch throughput at 2x1 "
              f"{num(v['fastnn/torch 2x1'], 2)} (target >= {TARGET_VS_TORCH}): "
              f"{verdict(v['pass vs torch'])}")
    return "\n\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.distributed")
    p.add_argument("mode", choices=("worker", "run"))
    p.add_argument("--lib", choices=("fastnn", "torch"), default="fastnn")
    p.add_argument("--model", choices=tuple(MODELS), default="mlp")
    p.add_argument("--ranks", type=int, default=1)
    p.add_argument("--rank", type=int, default=0)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--samples", type=int, default=60000)
    p.add_argument("--global-batch", type=int, default=256)
    p.add_argument("--no-overlap", action="store_true")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out")
    a = p.parse_args(argv)
    if a.mode == "run":
        import importlib.util
        res = run(a.quick, importlib.util.find_spec("torch") is not None)
        print(report(res))
        if a.out:
            from .launch import write_result
            write_result(a.out, res)
        return 0
    result = _worker_fastnn(a) if a.lib == "fastnn" else _worker_torch(a)
    if result is not None and a.out:
        from .launch import write_result
        write_result(a.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
