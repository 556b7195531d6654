"""Training speed: one epoch of the Fashion-MNIST tutorial MLP, fastnn against PyTorch CPU.

Model: Dense(128, relu) on 784 inputs -> Dropout(0.2) -> Dense(10, softmax); Adam(1e-3),
batch 32, shuffled every epoch. Both sides run the same model, batch, optimizer and threads;
the PyTorch side is the idiomatic fast loop (manual batching over a randperm, no DataLoader).
Each library trains in its own process (``run_library``); ``combine`` and ``report`` compare.
"""
from __future__ import annotations

import gzip
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .common import import_fastnn, num, progress, spread, table
from .stats import summarize

TARGET = 0.5  # fastnn epoch time / PyTorch epoch time wanted
BATCH = 32
LR = 1e-3
SEED = 0
# The untimed warm-up: enough batches to reach steady state (allocations, caches, thread
# teams), far fewer than an epoch, which would double the family's run time.
WARMUP_SAMPLES = 200 * BATCH

_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def fastnn_nn() -> Optional[Any]:
    """fastnn.nn, or None while the network layer does not exist in this build."""
    import_fastnn()
    try:
        import fastnn.nn as nn
    except ImportError:
        return None
    return nn


def _data_dirs() -> List[Path]:
    # fastnn.datasets' search order, so that the PyTorch process (which must not load fastnn)
    # reads the very files the fastnn process read or downloaded
    dirs = [Path(os.environ["FASTNN_DATA"])] if os.environ.get("FASTNN_DATA") else []
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return dirs + [cache / "fastnn" / "fashion-mnist", Path("/usr/share/datasets/fashion-mnist")]


def _read_idx(path: Path, header: int, shape: Tuple[int, ...]) -> Any:
    import numpy as np
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    return np.frombuffer(raw, np.uint8, offset=header).reshape((-1,) + shape)


def _find_idx() -> Optional[Tuple[Tuple[Any, ...], str]]:
    for d in _data_dirs():
        found = []
        for name in _FILES:
            path = next((p for p in (d / f"{name}.gz", d / name) if p.is_file()), None)
            if path is None:
                break
            found.append(_read_idx(path, 16 if "images" in name else 8,
                                   (28, 28) if "images" in name else ()))
        else:
            return tuple(found), f"IDX files in {d}"
    return None


def load_data(use_fastnn: bool) -> Tuple[Tuple[Any, ...], str]:
    """``((x_train, y_train, x_test, y_test), source)``: pixels in [0, 1] as (n, 784) float32,
    labels int64; from fastnn.datasets (use_fastnn), else the IDX files, else synthetic."""
    import numpy as np
    got = None
    if use_fastnn:
        try:
            from fastnn.datasets import fashion_mnist
            (xtr, ytr), (xte, yte) = fashion_mnist.load_data()
            got = (xtr, ytr, xte, yte), "fastnn.datasets.fashion_mnist"
        except Exception:  # no files and no network: the bench still runs
            pass
    got = got or _find_idx()
    if got is None:
        rng = np.random.default_rng(SEED)
        got = ((rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8),
                rng.integers(0, 10, 60000, dtype=np.uint8),
                rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8),
                rng.integers(0, 10, 10000, dtype=np.uint8)),
               "synthetic random data (Fashion-MNIST not found; accuracy is meaningless)")
    (xtr, ytr, xte, yte), source = got

    def prep(x: Any) -> Any:
        return x.reshape(len(x), -1).astype(np.float32) / np.float32(255)

    return (prep(xtr), ytr.astype(np.int64), prep(xte), yte.astype(np.int64)), source


def timed_epochs(lib: str, epoch: Any, warmup: Any, epochs: int, family: str = "mlp",
                 warmup_batches: int = WARMUP_SAMPLES // BATCH) -> List[float]:
    """Run ``warmup()`` untimed, then time ``epochs`` calls of ``epoch()``."""
    progress(f"{family:6s} {lib:6s} warm-up ({warmup_batches} batches)")
    warmup()
    times = []
    for i in range(epochs):
        progress(f"{family:6s} {lib:6s} epoch {i + 1}/{epochs}")
        t0 = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - t0)
        progress(f"{family:6s} {lib:6s} epoch {i + 1}: {times[-1]:.1f} s")
    return times


def fit_fastnn(model: Any, data: Tuple[Any, ...], epochs: int, family: str = "mlp",
               batch: int = BATCH, warmup_batches: int = WARMUP_SAMPLES // BATCH,
               predict_batch: int = 1000, use_ema: bool = False) -> Dict[str, Any]:
    """Compile a fastnn classifier (Adam, sparse crossentropy), time its epochs after an untimed
    warm-up of ``warmup_batches``, and measure its test accuracy (also the CNN's and ViT's).
    ``use_ema``: Adam averages the weights too, as the CNN example trains."""
    import numpy as np
    fastnn = import_fastnn()
    xtr, ytr, xte, yte = data
    model.compile(optimizer=fastnn.optim.Adam(learning_rate=LR, use_ema=use_ema),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    warm = warmup_batches * batch
    times = timed_epochs(
        "fastnn", lambda: model.fit(xtr, ytr, epochs=1, batch_size=batch, verbose=0),
        lambda: model.fit(xtr[:warm], ytr[:warm], epochs=1, batch_size=batch, verbose=0),
        epochs, family=family, warmup_batches=warmup_batches)
    pred = np.argmax(model.predict(xte, batch_size=predict_batch), axis=1)
    return {"epoch_s": times, "test_accuracy": float(np.mean(pred == yte))}


def fit_torch(torch: Any, model: Any, data: Tuple[Any, ...], epochs: int, family: str = "mlp",
              batch: int = BATCH, warmup_batches: int = WARMUP_SAMPLES // BATCH
              ) -> Dict[str, Any]:
    """The PyTorch twin of ``fit_fastnn``: the idiomatic fast loop (manual batching over a
    randperm, softmax fused into ``CrossEntropyLoss`` on the logits), Adam."""
    xtr, ytr, xte, yte = data
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=LR)

    def epoch(n: int = len(xtr)) -> None:
        model.train()
        perm = torch.randperm(n)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()

    times = timed_epochs("torch", epoch, lambda: epoch(warmup_batches * batch), epochs,
                         family=family, warmup_batches=warmup_batches)
    model.eval()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    return {"epoch_s": times, "test_accuracy": float(acc)}


def train_fastnn(data: Tuple[Any, ...], epochs: int) -> Dict[str, Any]:
    fastnn = import_fastnn()
    from fastnn.nn import Dense, Dropout, Sequential
    seed = getattr(getattr(fastnn, "random", None), "seed", None)
    if seed is not None:
        seed(SEED)
    model = Sequential([Dense(128, activation="relu", input_shape=(784,)), Dropout(0.2),
                        Dense(10, activation="softmax")])
    return fit_fastnn(model, data, epochs)


def train_torch(torch: Any, data: Tuple[Any, ...], epochs: int) -> Dict[str, Any]:
    nn = torch.nn
    torch.manual_seed(SEED)
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))
    return fit_torch(torch, model, tuple(torch.from_numpy(a) for a in data), epochs)


def run_library(lib: str, epochs: int, mods: Dict[str, Any]) -> Dict[str, Any]:
    """Train one library's model (threads already set by the worker)."""
    if lib == "fastnn" and fastnn_nn() is None:
        return {"skipped": "fastnn.nn not available"}
    data, source = load_data(use_fastnn=lib == "fastnn")
    progress(f"mlp    {lib:6s} data: {source}")
    res = train_fastnn(data, epochs) if lib == "fastnn" else train_torch(mods["torch"], data,
                                                                         epochs)
    return {"data": source, "n_train": len(data[0]), "n_test": len(data[2]), **res}


def combine(results: Dict[str, Dict[str, Any]], batch: int = BATCH,
            warmup_batches: int = WARMUP_SAMPLES // BATCH,
            target: float = TARGET) -> Dict[str, Any]:
    """fastnn's and torch's runs (or {"error"/"skipped": ...}) side by side (also the CNN's and
    the ViT's)."""
    out: Dict[str, Any] = {"batch_size": batch, "warmup_batches": warmup_batches,
                           "target": target, "ratio": None, "pass": None,
                           "statistic": "median epoch time; ratio: fastnn / torch"}
    for lib in ("fastnn", "torch"):
        r = results.get(lib)
        if r is not None and "epoch_s" in r:
            r = {**r, **summarize(r["epoch_s"])}
        out[lib] = r
    f, t = out["fastnn"], out["torch"]
    if f and t and "median" in f and "median" in t:
        out["ratio"] = f["median"] / t["median"]
        out["pass"] = out["ratio"] <= target
    return out


def report(res: Dict[str, Any],
           title: str = "Fashion-MNIST MLP training (784-128 relu-dropout-10 softmax, Adam, "
                        "batch 32)") -> str:
    rows, sources, n_train = [], [], "-"
    for name in ("fastnn", "torch"):
        r = res[name]
        if r is None:
            rows.append([name, "-", "-", "-", "-", "not installed"])
        elif "median" not in r:
            rows.append([name, "-", "-", "-", "-", r.get("error") or r.get("skipped")])
        else:
            rows.append([name, num(r["median"], 3), spread(r),
                         num(r["min"], 3), num(r["test_accuracy"], 4), r["repeats"]])
            sources.append(f"{name}: {r['data']}")
            n_train = r["n_train"]
    head = table(["library", "epoch s (median)", "IQR", "epoch s (best)", "test acc",
                  "timed epochs"], rows)
    if res["ratio"] is None:
        verdict = "no fastnn/torch ratio (one side did not run)"
    else:
        verdict = (f"fastnn/torch median epoch time = {res['ratio']:.2f} "
                   f"(target <= {res['target']}): " + ("pass" if res["pass"] else "MISS"))
    return (f"{title}\ndata: {'; '.join(sources) or '-'}\nwarm-up: "
            f"{res['warmup_batches']} untimed batches, then epochs of {n_train} samples timed\n"
            f"{head}\n{verdict}")
