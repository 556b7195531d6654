"""A dense autoencoder on Fashion-MNIST, trained one batch at a time with ``train_on_batch``.

    784 -> 256 -> 32 (the code) -> 256 -> 784 (sigmoid), binary crossentropy on pixels in [0, 1]

The loop is what ``fit`` does, written out: shuffle, slice batches, ``train_on_batch``, and
``evaluate`` on the test set after each epoch. The encoder half is then run on its own (the first
two layers' forward) to show the 32-number codes.

Run:  python examples/autoencoder.py [--epochs 3] [--out autoencoder.png]
Writes originals (top rows) over reconstructions (bottom rows) with matplotlib when it is
installed.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import fastnn
from fastnn import nn, optim
from fastnn.datasets import fashion_mnist, normalize


def build_autoencoder(code: int = 32) -> nn.Sequential:
    return nn.Sequential([
        nn.Dense(256, activation="relu", input_shape=(784,), name="encoder_hidden"),
        nn.Dense(code, activation="relu", name="code"),
        nn.Dense(256, activation="relu", name="decoder_hidden"),
        nn.Dense(784, activation="sigmoid", name="pixels"),
    ], name="autoencoder")


def save_pairs(originals: np.ndarray, recon: np.ndarray, path: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: skipping {path} (pip install matplotlib)")
        return
    n = len(originals)
    fig, axes = plt.subplots(2, n, figsize=(n, 2.2))
    for i in range(n):
        axes[0, i].imshow(originals[i].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
        axes[1, i].imshow(recon[i].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle("test images (top) and their reconstructions (bottom)")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="autoencoder.png")
    args = ap.parse_args()

    fastnn.random.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    (x_train, _), (x_test, _) = fashion_mnist.load_data()
    x_train = normalize(x_train).reshape(-1, 784)
    x_test = normalize(x_test).reshape(-1, 784)

    model = build_autoencoder()
    model.compile(optimizer=optim.Adam(1e-3), loss="binary_crossentropy", metrics=["mse"])
    model.summary()
    bs = args.batch_size
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        order = rng.permutation(len(x_train))
        total = 0.0
        for lo in range(0, len(order), bs):
            batch = x_train[order[lo:lo + bs]]
            loss, _ = model.train_on_batch(batch, batch)  # the input is its own target
            total += loss * len(batch)
        test_loss, test_mse = model.evaluate(x_test, x_test, batch_size=512)
        print(f"epoch {epoch + 1}/{args.epochs} ({time.perf_counter() - t0:.1f}s): "
              f"train loss {total / len(order):.4f}, test loss {test_loss:.4f}, "
              f"test mse {test_mse:.4f}", flush=True)

    codes = x_test[:5]
    for layer in model.layers[:2]:  # the encoder on its own
        codes = layer.forward(codes)
    print("codes of the first test images (32 numbers each, first 8 shown):")
    print(np.array2string(codes[:, :8], precision=2, suppress_small=True))
    save_pairs(x_test[:10], model.predict(x_test[:10]), args.out)


if __name__ == "__main__":
    main()
