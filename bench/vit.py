"""Training speed: one epoch of the small Fashion-MNIST Vision Transformer, fastnn against
PyTorch CPU.

Model (examples/fashion_mnist_vit.py): 7x7 patches (16 tokens) -> linear patch embedding (64)
+ learned positions -> 2 pre-norm Transformer encoder layers (4 heads, feed-forward 128, GELU,
no dropout) -> LayerNorm -> mean over tokens -> Dense(10, softmax); standardized pixels;
Adam(1e-3), batch 64, shuffled every epoch. The PyTorch side is the idiomatic one: ``nn.Conv2d`` patches, two
``nn.TransformerEncoderLayer(batch_first=True, norm_first=True)``, ``CrossEntropyLoss`` on the
logits, manual batching over a randperm. Each library trains in its own process.

``python -m bench.vit [--epochs 2] [--threads 2] [--libs fastnn,torch]`` prints the table; the
runner-style ``run_library`` / ``combine`` / ``report`` are here too.
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Dict, List, Optional

from .common import default_threads, import_fastnn, num, progress, spread, table
from .mlp import load_data
from .stats import summarize

TARGET = 0.6  # fastnn epoch time / PyTorch epoch time wanted
BATCH = 64
LR = 1e-3
SEED = 0
D_MODEL, HEADS, FF, DEPTH, PATCH = 64, 4, 128, 2, 7
WARMUP_SAMPLES = 50 * BATCH


def _images(x: Any) -> Any:
    return x.reshape(len(x), 1, 28, 28)


def _standardized(data: Any) -> Any:
    xtr, ytr, xte, yte = data
    mean, std = float(xtr.mean()), float(xtr.std())
    return (xtr - mean) / std, ytr, (xte - mean) / std, yte


def _timed_epochs(lib: str, epoch: Any, warmup: Any, epochs: int) -> List[float]:
    progress(f"vit    {lib:6s} warm-up ({WARMUP_SAMPLES // BATCH} batches)")
    warmup()
    times = []
    for i in range(epochs):
        progress(f"vit    {lib:6s} epoch {i + 1}/{epochs}")
        t0 = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - t0)
        progress(f"vit    {lib:6s} epoch {i + 1}: {times[-1]:.1f} s")
    return times


def train_fastnn(data: Any, epochs: int) -> Dict[str, Any]:
    import numpy as np
    fastnn = import_fastnn()
    from fastnn import nn
    xtr, ytr, xte, yte = data
    xtr, xte = _images(xtr), _images(xte)
    fastnn.random.seed(SEED)
    images = nn.Input((1, 28, 28))
    x = nn.PatchEmbedding(PATCH, D_MODEL)(images)
    x = nn.PositionalEmbedding((28 // PATCH) ** 2)(x)
    for _ in range(DEPTH):
        x = nn.TransformerEncoderLayer(D_MODEL, HEADS, FF, dropout=0.0, activation="gelu",
                                       norm_first=True)(x)
    x = nn.LayerNormalization(epsilon=1e-5)(x)
    x = nn.GlobalAveragePooling1D()(x)
    model = nn.Model(images, nn.Dense(10, activation="softmax")(x))
    model.compile(optimizer=fastnn.optim.Adam(learning_rate=LR),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    times = _timed_epochs(
        "fastnn", lambda: model.fit(xtr, ytr, epochs=1, batch_size=BATCH, verbose=0),
        lambda: model.fit(xtr[:WARMUP_SAMPLES], ytr[:WARMUP_SAMPLES], epochs=1,
                          batch_size=BATCH, verbose=0), epochs)
    pred = np.argmax(model.predict(xte, batch_size=500), axis=1)
    return {"epoch_s": times, "test_accuracy": float(np.mean(pred == yte))}


def train_torch(data: Any, epochs: int) -> Dict[str, Any]:
    import torch
    nn = torch.nn
    torch.manual_seed(SEED)
    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in data)
    xtr, xte = _images(xtr), _images(xte)

    class ViT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.patches = nn.Conv2d(1, D_MODEL, PATCH, stride=PATCH)
            self.positions = nn.Parameter(torch.randn(1, (28 // PATCH) ** 2, D_MODEL) * 0.02)
            self.encoder = nn.Sequential(*[
                nn.TransformerEncoderLayer(D_MODEL, HEADS, FF, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
                for _ in range(DEPTH)])
            self.norm = nn.LayerNorm(D_MODEL)
            self.head = nn.Linear(D_MODEL, 10)

        def forward(self, x: Any) -> Any:
            t = self.patches(x).flatten(2).transpose(1, 2) + self.positions
            return self.head(self.norm(self.encoder(t)).mean(1))

    model = ViT()
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=LR)

    def epoch(n: int = len(xtr)) -> None:
        model.train()
        perm = torch.randperm(n)
        for i in range(0, n, BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xtr[idx]), ytr[idx]).backward()
            opt.step()

    times = _timed_epochs("torch", epoch, lambda: epoch(WARMUP_SAMPLES), epochs)
    model.eval()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    return {"epoch_s": times, "test_accuracy": float(acc)}


def run_library(lib: str, epochs: int, threads: int, limit: Optional[int] = None
                ) -> Dict[str, Any]:
    if lib == "fastnn":
        import_fastnn().set_num_threads(threads)
    else:
        import torch
        torch.set_num_threads(threads)
    data, source = load_data(use_fastnn=lib == "fastnn")
    data = _standardized(data)
    if limit:
        data = (data[0][:limit], data[1][:limit], data[2], data[3])
    progress(f"vit    {lib:6s} data: {source}")
    res = train_fastnn(data, epochs) if lib == "fastnn" else train_torch(data, epochs)
    return {"data": source, "n_train": len(data[0]), "threads": threads, **res}


def combine(results: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {"batch_size": BATCH, "target": TARGET, "ratio": None, "pass": None}
    for lib in ("fastnn", "torch"):
        r = results.get(lib)
        if r is not None and "epoch_s" in r:
            r = {**r, **summarize(r["epoch_s"])}
        out[lib] = r
    f, t = out["fastnn"], out["torch"]
    if f and t and "median" in f and "median" in t:
        out["ratio"] = f["median"] / t["median"]
        out["pass"] = out["ratio"] <= TARGET
    return out


def report(res: Dict[str, Any]) -> str:
    rows = []
    for name in ("fastnn", "torch"):
        r = res[name]
        if r is None or "median" not in r:
            rows.append([name, "-", "-", "-", "-", (r or {}).get("error", "did not run")])
        else:
            rows.append([name, num(r["median"], 2), spread(r), num(r["min"], 2),
                         num(r["test_accuracy"], 4), r["repeats"]])
    head = table(["library", "epoch s (median)", "IQR", "epoch s (best)", "test acc",
                  "timed epochs"], rows)
    verdict = ("no ratio (one side did not run)" if res["ratio"] is None else
               f"fastnn/torch median epoch time = {res['ratio']:.2f} (target <= {TARGET}): "
               + ("pass" if res["pass"] else "MISS"))
    return (f"Fashion-MNIST ViT training (16 tokens of 7x7, d=64, 2 encoder layers, 4 heads, "
            f"ff 128; Adam, batch {BATCH})\n{head}\n{verdict}")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--libs", default="fastnn,torch")
    p.add_argument("--limit", type=int, default=None,
                   help="train on the first N images only (a quick look, not the figure)")
    p.add_argument("--lib", help=argparse.SUPPRESS)   # the child process's half
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    threads = args.threads or default_threads()
    if args.lib:
        from .launch import write_result
        write_result(args.out, run_library(args.lib, args.epochs, threads, args.limit))
        return 0
    from .launch import run_module
    extra = ["--limit", str(args.limit)] if args.limit else []
    results = {lib: run_module("bench.vit", ["--lib", lib, "--epochs", str(args.epochs),
                                             "--threads", str(threads)] + extra,
                               clear_openblas=False)
               for lib in args.libs.split(",")}
    print(report(combine(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
