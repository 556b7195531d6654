"""Run by tests/test_distributed.py under ``mpirun -n 2`` (and in one process, for the
reference): ``python distributed_worker.py CASE OUTDIR``.

Cases: ``train`` (the collectives, then fit with distributed=True in several ways; rank 0 writes
what it saw to OUTDIR/train-<size>.npz), ``raise`` (rank 1 raises during training),
``mismatch`` (rank 1 builds a different model).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import fastnn
from fastnn import distributed as dist
from fastnn import nn

N, FEATURES, CLASSES = 256, 12, 4


def data(n=N):
    rng = np.random.default_rng(123)
    x = rng.standard_normal((n, FEATURES)).astype(np.float32)
    y = (x[:, :CLASSES] + 0.3 * rng.standard_normal((n, CLASSES))).argmax(1)
    return x, y


def model(units=16, optimizer=None):
    fastnn.random.seed(5 + 1000 * dist.rank())  # other initial weights on every rank
    m = nn.Sequential([nn.Dense(units, activation="tanh", input_shape=(FEATURES,)),
                       nn.Dense(CLASSES, activation="softmax")])
    m.compile(optimizer=optimizer or fastnn.optim.Adam(1e-2),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def functional_model(optimizer):
    """A functional Model with a shared layer (called twice) and a residual."""
    fastnn.random.seed(7 + 1000 * dist.rank())
    inp = nn.Input((FEATURES,))
    shared = nn.Dense(FEATURES, activation="tanh")
    h = shared(inp)
    h = nn.Add()([h, shared(h)])
    out = nn.Dense(CLASSES, activation="softmax")(nn.Concatenate()([h, inp]))
    m = nn.Model(inp, out)
    m.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    return m


def same_on_every_rank(arrays) -> bool:
    ok = True
    for a in arrays:
        lo = dist.allreduce(a, op="min")
        hi = dist.allreduce(a, op="max")
        ok &= bool(np.array_equal(lo, hi))
    return ok


def collectives(out: dict) -> None:
    r, s = dist.rank(), dist.size()
    a = np.arange(6, dtype=np.float32).reshape(2, 3) * (r + 1)
    out["sum"] = dist.allreduce(a, op="sum")
    out["mean"] = dist.allreduce(a, op="mean")
    out["max"] = dist.allreduce(a, op="max")
    out["int_mean"] = dist.allreduce(np.array([r, 2 * r]), op="mean")
    out["bool_sum"] = dist.allreduce(np.array([r == 1, True]), op="sum")
    inplace = a.copy()
    out["inplace_is_out"] = dist.allreduce(inplace, op="sum", out=inplace) is inplace
    out["inplace"] = inplace
    b = np.full(5, float(r + 7))
    out["bcast"] = dist.broadcast(b, root=s - 1).copy()
    out["rank_size"] = np.array([r, s, dist.local_rank(), dist.local_size()])
    dist.barrier()


def train(outdir: Path) -> None:
    out: dict = {}
    collectives(out)
    x, y = data()
    xv, yv = data(37)
    per_rank = 64 // dist.size()

    # Shuffled, with validation: the shared permutation, the averaged logs.
    m = model()
    h = m.fit(x, y, epochs=2, batch_size=per_rank, verbose=2, distributed=True,
              validation_data=(xv, yv))
    out["shuffled"] = np.concatenate([w.ravel() for w in m.get_weights()])
    out["shuffled_same"] = same_on_every_rank(m.get_weights())
    out["history"] = json.dumps(h.history)

    # In order, with a last short batch (N - 8 samples), checkpoints on rank 0 only.
    m = model()
    ckpt = outdir / f"ckpt-rank{dist.rank()}-{{epoch}}.fnn"
    m.fit(x[:N - 8], y[:N - 8], epochs=1, batch_size=per_rank, verbose=0, shuffle=False,
          distributed=True, callbacks=[nn.ModelCheckpoint(str(ckpt), monitor="loss")])
    out["ordered"] = np.concatenate([w.ravel() for w in m.get_weights()])
    out["ordered_same"] = same_on_every_rank(m.get_weights())

    # A compiled DistributedOptimizer with small buckets, SGD with momentum (state broadcast).
    opt = dist.DistributedOptimizer(fastnn.optim.SGD(0.1, momentum=0.9), bucket_bytes=256)
    m = model(optimizer=opt)
    m.fit(x, y, epochs=1, batch_size=per_rank, verbose=0, shuffle=False, distributed=True)
    out["sgd"] = np.concatenate([w.ravel() for w in m.get_weights()])
    out["sgd_same"] = same_on_every_rank(m.get_weights())
    out["buckets_per_step"] = opt.stats["buckets"] / opt.stats["steps"]

    # A functional Model (shared layer, residual), gradients handed over during the backward
    # in small buckets on two ranks; the reference (one process) runs the plain loop.
    opt = fastnn.optim.SGD(0.1, momentum=0.9)
    if dist.size() > 1:
        opt = dist.DistributedOptimizer(opt, bucket_bytes=256)
    m = functional_model(opt)
    m.fit(x, y, epochs=2, batch_size=per_rank, verbose=0, distributed=True,
          validation_data=(xv, yv))
    out["functional"] = np.concatenate([w.ravel() for w in m.get_weights()])
    out["functional_same"] = same_on_every_rank(m.get_weights())

    # BatchNormalization's running statistics saw each rank's part: averaged after the epoch.
    fastnn.random.seed(9 + dist.rank())
    m = nn.Sequential([nn.Reshape((1, 3, 4), input_shape=(FEATURES,)),
                       nn.Conv2D(2, 2, activation="relu"), nn.BatchNormalization(),
                       nn.Flatten(), nn.Dense(CLASSES, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    m.fit(x, y, epochs=1, batch_size=per_rank, verbose=0, distributed=True)
    out["bn_same"] = same_on_every_rank(m.get_weights())

    # A custom loop: broadcast, then DistributedOptimizer.step without hooks.
    m = model()
    dist.broadcast_weights(m)
    opt = dist.DistributedOptimizer(fastnn.optim.SGD(0.05))
    for lo in range(dist.rank() * per_rank, N, 64):
        xb, yb = x[lo:lo + per_rank], y[lo:lo + per_rank]
        p = m.forward(xb, training=True)
        dy = np.zeros_like(p)
        dy[np.arange(len(yb)), yb] = -1.0 / (p[np.arange(len(yb)), yb] * len(yb) * 1.0)
        m.backward(dy, need_dx=False)
        opt.step(m.params, m.grads)
    out["custom_same"] = same_on_every_rank(m.get_weights())

    if dist.rank() == 0:
        np.savez(outdir / f"train-{dist.size()}.npz", **out)


def raise_on_rank1(outdir: Path) -> None:
    x, y = data()

    def boom(epoch, logs):
        if dist.rank() == 1 and epoch == 1:
            raise RuntimeError("rank 1 failed on purpose")

    m = model()
    m.fit(x, y, epochs=50, batch_size=8, verbose=0, distributed=True,
          callbacks=[nn.LambdaCallback(on_epoch_begin=boom)])


def mismatch(outdir: Path) -> None:
    x, y = data()
    m = model(units=16 if dist.rank() == 0 else 8)
    m.fit(x, y, epochs=1, batch_size=8, verbose=0, distributed=True)


if __name__ == "__main__":
    case, outdir = sys.argv[1], Path(sys.argv[2])
    {"train": train, "raise": raise_on_rank1, "mismatch": mismatch}[case](outdir)
