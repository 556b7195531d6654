"""Data-parallel training on MPI: the seed MLP (or the CNN) on Fashion-MNIST over several
processes, which may run on several machines.

    mpirun -n 2 python examples/distributed_train.py                 # two ranks, this machine
    mpirun -n 2 python examples/distributed_train.py --model cnn --limit 6000
    python examples/distributed_train.py                             # one process, no MPI

Every rank loads the data and builds the model; ``fit(distributed=True)`` broadcasts rank 0's
weights, gives each rank its part of every global batch (``--batch-size`` is per rank, so the
global batch is ``batch_size * ranks``), averages the gradients and the logs, and only rank 0
prints. Learning-rate scaling is a choice: ``--scale-lr`` multiplies the learning rate by the
number of ranks (the usual rule for a global batch that many times larger).

Each rank seeds its generator with ``seed + rank``: the initial weights come from rank 0 anyway,
the epochs' order is drawn on rank 0 and shared, and the dropout masks then differ across ranks,
as they would across the samples of one large batch. Needs mpi4py (``pip install
'fastnn[distributed]'``) and an MPI library (Open MPI: ``apt-get install openmpi-bin
libopenmpi-dev``); see the README for several machines.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import fastnn
from fastnn import distributed as dist
from fastnn import nn, optim
from fastnn.datasets import fashion_mnist, normalize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist_cnn import build_model as build_cnn  # noqa: E402
from fashion_mnist_mlp import build_model as build_mlp  # noqa: E402


def load_data():
    """Every rank reads the files at once; where a machine lacks them, its first rank
    installs or downloads them while the others wait."""
    try:
        data = fashion_mnist.load_data(install=False, download=False)
    except Exception:
        data = None
    missing = dist.allreduce(np.array([data is None]), op="max")[0]
    if missing:
        if data is None and dist.local_rank() == 0:
            data = fashion_mnist.load_data(install=True)
        dist.barrier()
        if data is None:
            data = fashion_mnist.load_data(install=False)
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    ap.add_argument("--epochs", type=int, default=None, help="default: 5 (mlp), 3 (cnn)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="per rank; default: 32 (mlp), 64 (cnn)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--scale-lr", action="store_true",
                    help="multiply the learning rate by the number of ranks")
    ap.add_argument("--limit", type=int, default=None,
                    help="use only the first N training and N test images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", default=None,
                    help="save the model there after every epoch (rank 0 writes it)")
    ap.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    args = ap.parse_args()
    epochs = args.epochs or (5 if args.model == "mlp" else 3)
    batch = args.batch_size or (32 if args.model == "mlp" else 64)

    rank, size = dist.rank(), dist.size()
    fastnn.random.seed(args.seed + rank)
    (x_train, y_train), (x_test, y_test) = load_data()
    if args.limit is not None:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
        x_test, y_test = x_test[:args.limit], y_test[:args.limit]
    shape = (784,) if args.model == "mlp" else (1, 28, 28)
    x_train = normalize(x_train, 0, 255).reshape((len(x_train),) + shape)
    x_test = normalize(x_test, 0, 255).reshape((len(x_test),) + shape)

    model = build_mlp() if args.model == "mlp" else build_cnn()
    lr = args.lr * (size if args.scale_lr else 1)
    model.compile(optimizer=optim.Adam(learning_rate=lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if rank == 0:
        print(f"{size} rank(s) x {fastnn.get_num_threads()} thread(s), global batch "
              f"{batch * size}, learning rate {lr:g}")
    callbacks = [nn.ModelCheckpoint(args.checkpoint, monitor="loss")] if args.checkpoint else []
    t0 = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, batch_size=batch, verbose=args.verbose,
              distributed=True, callbacks=callbacks)
    train_s = time.perf_counter() - t0
    # Every rank holds the same weights: rank 0 evaluates alone.
    if rank == 0:
        loss, acc = model.evaluate(x_test, y_test, batch_size=256)
        print(f"training: {train_s:.1f} s for {epochs} epochs of {len(x_train)} images")
        print(f"test loss: {loss:.4f}")
        print(f"test accuracy: {acc:.4f}")


if __name__ == "__main__":
    main()
