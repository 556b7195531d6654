"""Training speed: one epoch of the Fashion-MNIST CNN of examples/fashion_mnist_cnn.py,
fastnn against PyTorch CPU.

Model: Conv2D(32, 3, same, relu) -> MaxPool2D(2) -> Conv2D(64, 3, same, relu) -> MaxPool2D(2)
-> Flatten -> Dense(128, relu) -> Dropout(0.2) -> Dense(10, softmax); Adam(1e-3), batch 64,
shuffled every epoch, NCHW images; fastnn's Adam also keeps the moving average of the weights
(``use_ema=True``), as the example trains, which PyTorch's loop does not do. The PyTorch side is
the idiomatic fast loop (manual batching over a randperm, softmax fused into the loss). Each
library trains in its own process; the data loading and the untimed warm-up are shared with the
MLP family (bench/mlp.py).
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

from . import mlp
from .common import import_fastnn, progress
from .mlp import load_data

BATCH = 64
SEED = 0
WARMUP_BATCHES = 40


def _images(x: Any) -> Any:
    return x.reshape(len(x), 1, 28, 28)


def train_fastnn(data: Tuple[Any, ...], epochs: int) -> Dict[str, Any]:
    fastnn = import_fastnn()
    from fastnn import nn
    xtr, ytr, xte, yte = data
    fastnn.random.seed(SEED)
    model = nn.Sequential([
        nn.Conv2D(32, 3, padding="same", activation="relu", input_shape=(1, 28, 28)),
        nn.MaxPool2D(2),
        nn.Conv2D(64, 3, padding="same", activation="relu"),
        nn.MaxPool2D(2),
        nn.Flatten(),
        nn.Dense(128, activation="relu"),
        nn.Dropout(0.2),
        nn.Dense(10, activation="softmax"),
    ])
    return mlp.fit_fastnn(model, (_images(xtr), ytr, _images(xte), yte), epochs, family="cnn",
                          batch=BATCH, warmup_batches=WARMUP_BATCHES, use_ema=True)


def train_torch(torch: Any, data: Tuple[Any, ...], epochs: int) -> Dict[str, Any]:
    nn = torch.nn
    torch.manual_seed(SEED)
    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in data)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(128, 10))
    return mlp.fit_torch(torch, model, (_images(xtr), ytr, _images(xte), yte), epochs,
                         family="cnn", batch=BATCH, warmup_batches=WARMUP_BATCHES)


def run_library(lib: str, epochs: int, mods: Dict[str, Any]) -> Dict[str, Any]:
    """Train one library's CNN (threads already set by the worker)."""
    data, source = load_data(use_fastnn=lib == "fastnn")
    progress(f"cnn    {lib:6s} data: {source}")
    res = train_fastnn(data, epochs) if lib == "fastnn" else train_torch(mods["torch"], data,
                                                                         epochs)
    return {"data": source, "n_train": len(data[0]), "n_test": len(data[2]), **res}


def combine(results: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """fastnn's and torch's runs side by side (the MLP family's table)."""
    return mlp.combine(results, batch=BATCH, warmup_batches=WARMUP_BATCHES)


def report(res: Dict[str, Any]) -> str:
    return mlp.report(res, "Fashion-MNIST CNN training (conv32-pool-conv64-pool-dense128-"
                           "dropout-10, Adam, batch 64)")
