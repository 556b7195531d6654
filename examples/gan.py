"""A small GAN on Fashion-MNIST, trained with a custom loop.

Two models train against each other:

* the discriminator D is an ordinary compiled model, updated with ``D.train_on_batch`` on half
  real images (label 1) and half generated ones (label 0);
* the generator G is never compiled: its step runs G.forward -> D.forward -> loss ->
  D.backward (the gradient with respect to D's input) -> G.backward -> ``g_opt.step(G.params,
  G.grads)``. D's gradients from that pass are simply not applied.

Both output logits and use ``BinaryCrossentropy(from_logits=True)``: the generator keeps a
useful gradient even when D is sure its samples are fake (a sigmoid output would saturate).

``--arch mlp`` (the default) uses dense networks on flat 784-pixel images; ``--arch conv`` a
DCGAN-style pair on (1, 28, 28) images (Radford et al., 2015): G upsamples a 7x7 map twice with
strided Conv2DTranspose layers, with batch normalization and leaky ReLU between them; D
downsamples twice with strided Conv2D layers and leaky ReLU, with dropout instead of batch
normalization (D trains on mixed real and fake batches but sees fake-only batches in G's step,
whose batch statistics would differ).

Run:  python examples/gan.py [--arch mlp|conv] [--epochs 1] [--limit N] [--out gan_samples.png]
Writes a grid of generated samples with matplotlib when it is installed. ``--limit N`` trains
on the first N images only (a quick check). A step of ``--arch conv`` costs far more than one
of the dense pair (each step runs both networks' convolutions forward and backward), so try
it on a subset first; its samples show garment shapes after a few hundred steps.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import fastnn
from fastnn import nn, optim
from fastnn.datasets import fashion_mnist, normalize

NOISE = 64


def build_generator(arch: str = "mlp") -> nn.Sequential:
    if arch == "conv":
        return nn.Sequential([
            nn.Dense(64 * 7 * 7, use_bias=False, input_shape=(NOISE,)),
            # momentum 0.9: the running statistics that predict() uses settle within tens of
            # steps, so samples drawn after a short run are not off
            nn.BatchNormalization(momentum=0.9),
            nn.Activation("leaky_relu", alpha=0.2),
            nn.Reshape((64, 7, 7)),
            nn.Conv2DTranspose(32, 4, strides=2, padding="same", use_bias=False),  # 14x14
            nn.BatchNormalization(momentum=0.9),
            nn.Activation("leaky_relu", alpha=0.2),
            nn.Conv2DTranspose(1, 4, strides=2, padding="same", activation="tanh"),  # 28x28
        ], name="generator")
    return nn.Sequential([
        nn.Dense(256, activation="leaky_relu", alpha=0.2, input_shape=(NOISE,)),
        nn.Dense(512, activation="leaky_relu", alpha=0.2),
        nn.Dense(784, activation="tanh"),  # images scaled to [-1, 1]
    ], name="generator")


def build_discriminator(arch: str = "mlp") -> nn.Sequential:
    if arch == "conv":
        return nn.Sequential([
            nn.Conv2D(32, 4, strides=2, padding="same", activation="leaky_relu", alpha=0.2,
                      input_shape=(1, 28, 28)),  # 14x14
            nn.Dropout(0.3),
            nn.Conv2D(64, 4, strides=2, padding="same", activation="leaky_relu", alpha=0.2),
            nn.Dropout(0.3),  # 7x7
            nn.Flatten(),
            nn.Dense(1),
        ], name="discriminator")
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
    ap.add_argument("--arch", choices=("mlp", "conv"), default="mlp",
                    help="dense networks (default) or a DCGAN-style convolutional pair")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None,
                    help="train on the first N training images only")
    ap.add_argument("--out", default="gan_samples.png")
    args = ap.parse_args()
    if args.limit is not None and args.limit < args.batch_size:
        ap.error("--limit must be at least the batch size")

    fastnn.random.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    (x_train, _), _ = fashion_mnist.load_data()
    if args.limit is not None:
        x_train = x_train[:args.limit]
    image_shape = (1, 28, 28) if args.arch == "conv" else (784,)
    x_train = normalize(x_train).reshape((-1,) + image_shape) * 2.0 - 1.0

    G, D = build_generator(args.arch), build_discriminator(args.arch)
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
            # training mode, as in G's own step: a batch-normalized generator then normalizes
            # with batch statistics in both (the same function for the dense generator)
            fake = G.forward(rng.standard_normal((half, NOISE)).astype(np.float32),
                             training=True)
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
