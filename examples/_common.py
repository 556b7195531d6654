"""What the Fashion-MNIST examples share: loading the images and training with a per-epoch timer.

Each example runs as a script (``python examples/fashion_mnist_cnn.py``), which puts this folder
first on ``sys.path``; that is how they find this module, wherever they are started from.
"""
from __future__ import annotations

import argparse
import time
from typing import List, Optional

import numpy as np

import fastnn
from fastnn import nn, optim
from fastnn.datasets import fashion_mnist, normalize


def add_limit_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--limit", type=int, default=None,
                    help="use only the first N training and N test images")


def parse_args(ap: argparse.ArgumentParser) -> argparse.Namespace:
    """``ap.parse_args()``, refusing a ``--limit`` below one image."""
    args = ap.parse_args()
    if getattr(args, "limit", None) is not None and args.limit < 1:
        ap.error("--limit must be a positive number of images")
    return args


def load_images(limit: Optional[int] = None):
    """Fashion-MNIST as ``((x_train, y_train), (x_test, y_test))``, pixels scaled to [0, 1].

    Images keep their (n, 28, 28) shape; ``limit`` keeps the first ``limit`` of each split.
    The files are found or fetched by ``fashion_mnist.load_data(install=True)``.
    """
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data(install=True)
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
        x_test, y_test = x_test[:limit], y_test[:limit]
    return (normalize(x_train, 0, 255), y_train), (normalize(x_test, 0, 255), y_test)


def standardize(x_train: np.ndarray, x_test: np.ndarray):
    """Both sets shifted and scaled by the training set's mean and standard deviation."""
    mean, std = float(x_train.mean()), float(x_train.std())
    return (x_train - mean) / std, (x_test - mean) / std


def compile_classifier(model: nn.Model, learning_rate: float = 1e-3,
                       use_ema: bool = False) -> None:
    """Adam (with Keras's weight averaging when ``use_ema``), sparse categorical cross-entropy,
    accuracy."""
    model.compile(optimizer=optim.Adam(learning_rate=learning_rate, use_ema=use_ema),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def fit_timed(model: nn.Model, x, y, args: argparse.Namespace) -> List[float]:
    """Trains ``args.epochs`` epochs of ``args.batch_size``; returns each epoch's seconds."""
    times: List[float] = []
    timer = nn.LambdaCallback(on_epoch_begin=lambda e, logs: times.append(time.perf_counter()),
                              on_epoch_end=lambda e, logs: times.append(time.perf_counter()))
    model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size,
              callbacks=[timer], verbose=args.verbose)
    return [b - a for a, b in zip(times[::2], times[1::2])]


def evaluate_and_report(model: nn.Model, n_train: int, x_test, y_test,
                        epoch_s: List[float]) -> None:
    """Evaluates on the test set and prints every epoch's time, the evaluation's, loss, accuracy."""
    t0 = time.perf_counter()
    loss, acc = model.evaluate(x_test, y_test, batch_size=256)
    eval_s = time.perf_counter() - t0
    print("epoch times: " + ", ".join(f"{s:.1f} s" for s in epoch_s) +
          f" ({n_train} images, {fastnn.get_num_threads()} threads, "
          f"{fastnn.get_backend()} backend)")
    print(f"test evaluation: {eval_s:.1f} s for {len(x_test)} images")
    print(f"test loss: {loss:.4f}")
    print(f"test accuracy: {acc:.4f}")
