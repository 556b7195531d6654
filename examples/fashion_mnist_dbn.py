"""A deep belief network on Fashion-MNIST: unsupervised pretraining, then fine-tuning.

    DBN([784, 500, 200]): a 784-500 RBM and a 500-200 RBM (persistent CD-1, lr 0.05, batch 64),
    pretrained greedily on the images without labels; then the stack becomes
    Dense(500, sigmoid) -> Dense(200, sigmoid) -> Dense(10, softmax), fine-tuned with labels.
    The same network from random (Glorot) initialization is trained for the same epochs.

Run:  python examples/fashion_mnist_dbn.py [--pretrain-epochs 5] [--epochs 10] [--seed 0]
Prints ``DBN test accuracy: X`` and ``random-init test accuracy: Y`` (seed 0, 2 threads, Intel
Xeon: 0.8924 and 0.8876; 5 + 5 pretraining epochs took 51 s on a busy machine). With matplotlib installed it
writes ``dbn_filters.png`` (the first RBM's first 100 filters) and ``dbn_samples.png`` (Gibbs
samples of the first RBM).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from _common import compile_classifier, load_images

import fastnn
from fastnn import nn


def pyplot():
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_grid(plt, images: np.ndarray, path: str, title: str) -> None:
    n = int(np.ceil(np.sqrt(len(images))))
    fig, axes = plt.subplots(n, n, figsize=(n, n))
    for ax, img in zip(axes.ravel(), list(images) + [None] * (n * n - len(images))):
        ax.axis("off")
        if img is not None:
            ax.imshow(img.reshape(28, 28), cmap="gray")
    fig.suptitle(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"wrote {path}")


def random_init_model() -> nn.Sequential:
    return nn.Sequential([
        nn.Dense(500, activation="sigmoid", input_shape=(784,)),
        nn.Dense(200, activation="sigmoid"),
        nn.Dense(10, activation="softmax"),
    ])


def fine_tune(model: nn.Sequential, x, y, x_test, y_test, args) -> float:
    compile_classifier(model, args.lr)
    model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, verbose=args.verbose)
    return model.evaluate(x_test, y_test, batch_size=256)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pretrain-epochs", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs (both models)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (fine-tuning)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2))
    args = ap.parse_args()

    fastnn.random.seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_images()
    x_train = x_train.reshape(len(x_train), 784)
    x_test = x_test.reshape(len(x_test), 784)

    dbn = nn.DBN([784, 500, 200], learning_rate=0.05, batch_size=64, seed=args.seed)
    t0 = time.perf_counter()
    dbn.pretrain(x_train, epochs=args.pretrain_epochs, verbose=args.verbose)
    print(f"pretraining: {time.perf_counter() - t0:.1f} s; first RBM pseudo-likelihood on "
          f"2,000 test images: {dbn.rbms[0].score_samples(x_test[:2000], seed=0).mean():.1f}")
    plt = pyplot()
    if plt is None:
        print("matplotlib is not installed: no dbn_filters.png / dbn_samples.png "
              "(pip install matplotlib)")
    else:
        save_grid(plt, dbn.rbms[0].w[:100], "dbn_filters.png", "first RBM: filters")
        save_grid(plt, dbn.rbms[0].sample(64, gibbs_steps=1000, seed=args.seed),
                  "dbn_samples.png", "first RBM: Gibbs samples")

    fastnn.random.seed(args.seed + 1)
    dbn_acc = fine_tune(dbn.to_model(head=10), x_train, y_train, x_test, y_test, args)
    fastnn.random.seed(args.seed + 1)
    rnd_acc = fine_tune(random_init_model(), x_train, y_train, x_test, y_test, args)
    print(f"DBN test accuracy: {dbn_acc:.4f}")
    print(f"random-init test accuracy: {rnd_acc:.4f}")


if __name__ == "__main__":
    main()
