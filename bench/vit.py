"""Training speed: one epoch of the small Fashion-MNIST Vision Transformer, fastnn against
PyTorch CPU.

Model (examples/fashion_mnist_vit.py): 7x7 patches (16 tokens) -> linear patch embedding (64)
+ learned positions -> 2 pre-norm Transformer encoder layers (4 heads, feed-forward 128, GELU,
no dropout) -> LayerNorm -> mean over tokens -> Dense(10, softmax); standardized pixels;
Adam(1e-3), batch 64, shuffled every epoch; fastnn's Adam also averages the weights
(``use_ema=True``) as the example trains, which PyTorch's loop does not do. The PyTorch side is
the idiomatic one: ``nn.Conv2d`` patches, two ``nn.TransformerEncoderLayer(batch_first=True,
norm_first=True)``, ``CrossEntropyLoss`` on the logits, manual batching over a randperm. Each
library trains in its own process.

``python -m bench.vit [--epochs 2] [--threads 2] [--libs fastnn,torch]`` prints the table; the
runner-style ``run_library`` / ``combine`` / ``report`` are here too.
"""
from __future__ import annotations

import argparse
from typing import Any, Dict, List, Optional

from . import mlp
from .common import default_threads, import_fastnn, progress
from .mlp import load_data

TARGET = 0.6  # fastnn epoch time / PyTorch epoch time wanted
BATCH = 64
SEED = 0
D_MODEL, HEADS, FF, DEPTH, PATCH = 64, 4, 128, 2, 7
WARMUP_BATCHES = 50


def _images(x: Any) -> Any:
    return x.reshape(len(x), 1, 28, 28)


def _standardized(data: Any) -> Any:
    xtr, ytr, xte, yte = data
    mean, std = float(xtr.mean()), float(xtr.std())
    return (xtr - mean) / std, ytr, (xte - mean) / std, yte


def train_fastnn(data: Any, epochs: int) -> Dict[str, Any]:
    fastnn = import_fastnn()
    from fastnn import nn
    xtr, ytr, xte, yte = data
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
    return mlp.fit_fastnn(model, (_images(xtr), ytr, _images(xte), yte), epochs, family="vit",
                          batch=BATCH, warmup_batches=WARMUP_BATCHES, predict_batch=500,
                          use_ema=True)


def train_torch(data: Any, epochs: int) -> Dict[str, Any]:
    import torch
    nn = torch.nn
    torch.manual_seed(SEED)
    xtr, ytr, xte, yte = (torch.from_numpy(a) for a in data)

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

    return mlp.fit_torch(torch, ViT(), (_images(xtr), ytr, _images(xte), yte), epochs,
                         family="vit", batch=BATCH, warmup_batches=WARMUP_BATCHES)


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
    """fastnn's and torch's runs side by side (the MLP family's table)."""
    return mlp.combine(results, batch=BATCH, warmup_batches=WARMUP_BATCHES, target=TARGET)


def report(res: Dict[str, Any]) -> str:
    return mlp.report(res, f"Fashion-MNIST ViT training (16 tokens of 7x7, d=64, 2 encoder "
                           f"layers, 4 heads, ff 128; Adam, batch {BATCH})")


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
