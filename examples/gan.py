"""A small GAN on Fashion-MNIST, trained with a custom loop.

Two models train against each other:

* the discriminator D is an ordinary compiled model, updated with ``D.train_on_batch`` on half
  real images (label 1) and half generated ones (label 0);
* the generator G is never compiled: its step runs G.forward -> D.forward -> loss ->
  D.backward (the gradient with respect to D's input) -> G.backward -> ``g_opt.step(G.params,
  G.grads)``. D's gradients from that pass are simply not applied.

Both output logits and use ``BinaryCrossentropy(from_logits=True)``: the generator keeps a
useful gradient even when D is sure its samples are fake (a sigmoid output would saturate).

Run:  python examples/gan.py [--epochs 1] [--out gan_samples.png]
Writes a grid of generated samples with matplotlib when it is installed.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import fastnn
from fastnn import nn, optim
from fastnn.datasets import fashion_mnist, normalize

NOISE = 64


def build_generator() -> nn.Sequential:
    return nn.Sequential([
        nn.Dense(256, activation="leaky_relu", alpha=0.2, input_shape=(NOISE,)),
        nn.Dense(512, activation="leaky_relu", alpha=0.2),
        nn.Dense(784, activation="tanh"),  # images scaled to [-1, 1]
    ], name="generator")


def build_discriminator() -> nn.Sequential:
    return nn.Sequential([
        nn.Dense(512, activation="leaky_relu", alpha=0.2, input_shape=(784,)),
        nn.Dropout(0.3),
        nn.Dense(256, activation="leaky_relu", alpha=0.2),
        nn.Dropout(0.3),
        nn.Dense(1),  # a logit: P(real) = sigmoid(logit)
    ], name="discriminator")


def save_grid(images: np.ndarray, path: str, title: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: skipping {path} (pip install matplotlib)")
        return
    n = int(np.ceil(np.sqrt(len(images))))
    fig, axes = plt.subplots(n, n, figsize=(n, n))
    for ax, img in zip(axes.ravel(), images):
        ax.imshow(img.reshape(28, 28), cmap="gray", vmin=0, vmax=1)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="gan_samples.png")
    args = ap.parse_args()

    fastnn.random.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    (x_train, _), _ = fashion_mnist.load_data()
    x_train = normalize(x_train).reshape(-1, 784) * 2.0 - 1.0

    G, D = build_generator(), build_discriminator()
    D.compile(optimizer=optim.Adam(2e-4, beta_1=0.5),
              loss=nn.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    g_opt = optim.Adam(2e-4, beta_1=0.5)
    bce = nn.losses.BinaryCrossentropy(from_logits=True)

    half = args.batch_size // 2
    labels = np.concatenate([np.full((half, 1), 0.9, np.float32),  # one-sided label smoothing
                             np.zeros((half, 1), np.float32)])
    fooled = np.ones((args.batch_size, 1), np.float32)
    fixed_noise = rng.standard_normal((64, NOISE)).astype(np.float32)
    steps = len(x_train) // half

    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        order = rng.permutation(len(x_train))
        d_losses, d_accs, g_losses = [], [], []
        for s in range(steps):
            # discriminator: real images against the generator's current samples
            real = x_train[order[s * half:(s + 1) * half]]
            fake = G.forward(rng.standard_normal((half, NOISE)).astype(np.float32))
            d_loss, d_acc = D.train_on_batch(np.concatenate([real, fake]), labels)
            # generator: make D call its samples real, backpropagating through D
            z = rng.standard_normal((args.batch_size, NOISE)).astype(np.float32)
            logits = D.forward(G.forward(z, training=True), training=True)
            g_loss, d_logits = bce.value_and_grad(fooled, logits)
            G.backward(D.backward(d_logits), need_dx=False)
            g_opt.step(G.params, G.grads)
            d_losses.append(d_loss)
            d_accs.append(d_acc)
            g_losses.append(g_loss)
        print(f"epoch {epoch + 1}/{args.epochs} ({time.perf_counter() - t0:.1f}s): "
              f"D loss {np.mean(d_losses):.3f}, D accuracy {np.mean(d_accs):.3f}, "
              f"G loss {np.mean(g_losses):.3f}", flush=True)

    samples = (G.predict(fixed_noise) + 1.0) / 2.0
    save_grid(samples, args.out,
              f"GAN samples after {args.epochs} epoch{'' if args.epochs == 1 else 's'}")


if __name__ == "__main__":
    main()
