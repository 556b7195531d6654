"""Training speed: one epoch of the Fashion-MNIST CNN of examples/fashion_mnist_cnn.py,
fastnn against PyTorch CPU.

Model: Conv2D(32, 3, same, relu) -> MaxPool2D(2) -> Conv2D(64, 3, same, relu) -> MaxPool2D(2)
-> Flatten -> Dense(128, relu) -> Dropout(0.2) -> Dense(10, softmax); Adam(1e-3), batch 64,
shuffled every epoch, NCHW images. The PyTorch side is the idiomatic fast loop (manual batching
over a randperm, softmax fused into the loss). Each library trains in its own process; the data
loading and the untimed warm-up are shared with the MLP family (bench/mlp.py).
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

from . import mlp
from .common import import_fastnn, progress
from .mlp import load_data, timed_epochs

BATCH = 64
LR = 1e-3
SEED = 0
WARMUP_BATCHES = 40


def _images(x: Any) -> Any:
    return x.reshape(len(x), 1, 28, 28)


def train_fastnn(data: Tuple[Any, ...], epochs: int) -> Dict[str, Any]:
    import numpy as np
    fastnn = import_fastnn()
    from fastnn import nn
    xtr, ytr, xte, yte = data
    xtr, xte = _images(xtr), _images(xte)
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
    model.compile(optimizer=fastnn.optim.Adam(learning_rate=LR),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    warm = WARMUP_BATCHES * BATCH
    times = timed_epochs(
        "fastnn", lambda: model.fit(xtr, ytr, epochs=1, batch_size=BATCH, verbose=0),
        lambda: model.fit(xtr[:warm], ytr[:warm], epochs=1, batch_size=BATCH, verbose=0),
        epochs, family="cnn", warmup_batches=WARMUP_BATCHES)
    pred = np.argmax(model.predict(xte, batch_size=1000), axis=1)
    return {"epoch_s": times, "test_accuracy": float(np.mean(pred == yte))}


def train_torch(torch: Any, data: Tuple[Any, ...], epochs: int) -> Dict[str, Any]:
    nn = torch.nn
    torch.manual_seed(SEED)
    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in data)
    xtr, xte = _images(xtr), _images(xte)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(128, 10))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=LR)

    def epoch(n: int = len(xtr)) -> None:
        model.train()
        perm = torch.randperm(n)
        for i in range(0, n, BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()

    times = timed_epochs("torch", epoch, lambda: epoch(WARMUP_BATCHES * BATCH), epochs,
                         family="cnn", warmup_batches=WARMUP_BATCHES)
    model.eval()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    return {"epoch_s": times, "test_accuracy": float(acc)}


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
