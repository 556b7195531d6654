"""Training speed: one epoch of the Fashion-MNIST tutorial MLP, fastnn against PyTorch CPU.

Model: Dense(128, relu) on 784 inputs -> Dropout(0.2) -> Dense(10, softmax); Adam(1e-3),
batch 32, shuffled every epoch. Both sides run the same model, batch, optimizer and threads;
the PyTorch side is the idiomatic fast loop (manual batching over a randperm, no DataLoader).
"""
from __future__ import annotations

import gzip
import os
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .common import import_fastnn, num, table

TARGET = 0.5  # fastnn epoch time / PyTorch epoch time wanted
BATCH = 32
LR = 1e-3
SEED = 0

_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
          "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def fastnn_nn() -> Optional[Any]:
    """fastnn.nn, or None while the network layer does not exist in this build."""
    import_fastnn()
    try:
        import fastnn.nn as nn
    except ImportError:
        return None
    return nn


def _data_dirs() -> List[Path]:
    # the loader's search order
    dirs = [Path(os.environ["FASTNN_DATA"])] if os.environ.get("FASTNN_DATA") else []
    return dirs + [Path.home() / ".cache" / "fastnn" / "fashion-mnist",
                   Path("/usr/share/datasets/fashion-mnist")]


def _read_idx(path: Path, header: int, shape: Tuple[int, ...]) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    arr = np.frombuffer(raw, np.uint8, offset=header)
    return arr.reshape((-1,) + shape)


def load_data() -> Tuple[Tuple[np.ndarray, ...], str]:
    """``((x_train, y_train, x_test, y_test), source)``: pixels in [0, 1] as (n, 784) float32,
    labels int64; from fastnn.datasets, else the IDX files, else synthetic (same shapes)."""
    parts = None
    try:
        from fastnn.datasets import fashion_mnist
        (xtr, ytr), (xte, yte) = fashion_mnist.load_data()
        parts, source = (xtr, ytr, xte, yte), "fastnn.datasets.fashion_mnist"
    except Exception:  # not written yet, or no files: the bench still runs
        for d in _data_dirs():
            if all((d / f).is_file() for f in _FILES):
                parts = tuple(_read_idx(d / f, 16 if "images" in f else 8,
                                        (28, 28) if "images" in f else ())
                              for f in _FILES)
                source = f"IDX files in {d}"
                break
    if parts is None:
        rng = np.random.default_rng(SEED)
        parts = (rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8),
                 rng.integers(0, 10, 60000, dtype=np.uint8),
                 rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8),
                 rng.integers(0, 10, 10000, dtype=np.uint8))
        source = "synthetic random data (Fashion-MNIST not found; accuracy is meaningless)"
    xtr, ytr, xte, yte = parts
    prep = (lambda x: (x.reshape(len(x), -1).astype(np.float32) / np.float32(255)))
    return (prep(xtr), ytr.astype(np.int64), prep(xte), yte.astype(np.int64)), source


def _summary(epoch_s: List[float], accuracy: float, epochs: int) -> Dict[str, Any]:
    return {"epoch_s": epoch_s, "best_s": min(epoch_s), "median_s": statistics.median(epoch_s),
            "test_accuracy": accuracy, "epochs_trained": epochs}


def train_fastnn(data: Tuple[np.ndarray, ...], epochs: int, threads: int) -> Dict[str, Any]:
    fastnn = import_fastnn()
    from fastnn.nn import Dense, Dropout, Sequential
    xtr, ytr, xte, yte = data
    fastnn.set_num_threads(threads)
    seed = getattr(getattr(fastnn, "random", None), "seed", None)
    if seed is not None:
        seed(SEED)
    model = Sequential([Dense(128, activation="relu", input_shape=(784,)), Dropout(0.2),
                        Dense(10, activation="softmax")])
    model.compile(optimizer=fastnn.optim.Adam(learning_rate=LR),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    times = []
    for _ in range(epochs + 1):  # the first epoch is warm-up and not timed
        t0 = time.perf_counter()
        model.fit(xtr, ytr, epochs=1, batch_size=BATCH, verbose=0)
        times.append(time.perf_counter() - t0)
    pred = np.argmax(model.predict(xte, batch_size=1000), axis=1)
    return _summary(times[1:], float(np.mean(pred == yte)), epochs + 1)


def train_torch(torch: Any, data: Tuple[np.ndarray, ...], epochs: int,
                threads: int) -> Dict[str, Any]:
    nn = torch.nn
    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in data)
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))
    loss_fn = nn.CrossEntropyLoss()  # softmax is fused into the loss, as PyTorch users do
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    n = len(xtr)
    times = []
    for _ in range(epochs + 1):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n)
        for i in range(0, n, BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    return _summary(times[1:], float(acc), epochs + 1)


def run(torch: Optional[Any], epochs: int, threads: int) -> Dict[str, Any]:
    if fastnn_nn() is None:
        return {"skipped": "fastnn.nn not available"}
    data, source = load_data()
    res: Dict[str, Any] = {"data": source, "n_train": len(data[0]), "n_test": len(data[2]),
                           "batch_size": BATCH, "timed_epochs": epochs, "threads": threads,
                           "target": TARGET,
                           "fastnn": train_fastnn(data, epochs, threads),
                           "torch": None if torch is None else
                           train_torch(torch, data, epochs, threads)}
    if res["torch"] is None:
        res["ratio"], res["pass"] = None, None
    else:
        res["ratio"] = res["fastnn"]["best_s"] / res["torch"]["best_s"]
        res["pass"] = res["ratio"] <= TARGET
    return res


def report(res: Dict[str, Any]) -> str:
    title = "Fashion-MNIST MLP training (784-128 relu-dropout-10 softmax, Adam, batch 32)"
    if "skipped" in res:
        return f"{title}\nskipped: {res['skipped']}"
    rows = []
    for name in ("fastnn", "torch"):
        r = res[name]
        if r is None:
            rows.append([name, "-", "-", "-", "not installed"])
            continue
        rows.append([name, num(r["best_s"], 3), num(r["median_s"], 3),
                     num(r["test_accuracy"], 4), r["epochs_trained"]])
    head = table(["library", "epoch s (best)", "epoch s (median)", "test acc", "epochs"], rows)
    if res["ratio"] is None:
        verdict = "PyTorch not installed: no ratio"
    else:
        verdict = (f"fastnn/torch epoch time = {res['ratio']:.2f} (target <= {TARGET}): "
                   + ("pass" if res["pass"] else "MISS"))
    return (f"{title}\ndata: {res['data']} ({res['n_train']} train, {res['n_test']} test); "
            f"{res['timed_epochs']} timed epoch(s) after 1 warm-up\n{head}\n{verdict}")
