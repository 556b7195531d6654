"""Restricted Boltzmann machines and deep belief networks, trained without labels.

``RBM`` trains by contrastive divergence (``fastnn.ops.rbm_cd_step``: CD-k or persistent CD,
one fused C++ call per batch) and offers what scikit-learn's ``BernoulliRBM`` does (``fit``,
``transform``, ``score_samples``, ``gibbs``-style ``sample``) plus reconstruction, momentum,
weight decay and Gaussian visible units. ``DBN`` stacks RBMs, pretrains them greedily layer by
layer, and turns the stack into a ``Sequential`` of sigmoid ``Dense`` layers for supervised
fine-tuning.
"""
from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from .. import ops
from ..ops.rbm import VISIBLE_UNITS
from .. import random as _random
from . import callbacks as _callbacks

__all__ = ["RBM", "DBN"]

_PL_ROWS = 1000  # training rows the per-epoch pseudo-likelihood is estimated on


def _positive_int(v: Any, name: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return int(v)


class RBM:
    """A restricted Boltzmann machine with ``n_hidden`` binary hidden units.

    ``visible``: "bernoulli" (data in [0, 1], binary or probabilities such as scaled pixels) or
    "gaussian" (unit variance: standardize the data first). ``k`` Gibbs steps per update;
    ``persistent=True`` keeps a chain of ``n_particles`` (default ``batch_size``) fantasy
    particles across updates (PCD, as scikit-learn's BernoulliRBM), else each update starts from
    the data (CD-k). ``momentum`` and ``weight_decay`` as in Hinton's practical guide.

    The weights ``w`` have shape ``(n_hidden, n_visible)``; ``b_vis`` and ``b_hid`` are the
    biases. They are created by the first ``fit`` (``w`` ~ N(0, 0.01); the visible biases at the
    log-odds of the data's means for Bernoulli units, zero for Gaussian ones), or set directly.
    """

    def __init__(self, n_hidden: int, visible: str = "bernoulli", k: int = 1,
                 persistent: bool = True, learning_rate: float = 0.05, batch_size: int = 64,
                 *, momentum: float = 0.0, weight_decay: float = 0.0,
                 n_particles: Optional[int] = None, shuffle: bool = True, error_every: int = 4,
                 dtype: Any = "float32", seed: Optional[int] = None) -> None:
        self.n_hidden = _positive_int(n_hidden, "n_hidden")
        if visible not in VISIBLE_UNITS:
            raise ValueError(f"visible must be one of {VISIBLE_UNITS}, got {visible!r}")
        self.visible = visible
        self.k = _positive_int(k, "k")
        self.persistent = bool(persistent)
        self.learning_rate = float(learning_rate)
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.momentum = float(momentum)
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.weight_decay = float(weight_decay)
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
        self.n_particles = None if n_particles is None else _positive_int(n_particles,
                                                                          "n_particles")
        self.shuffle = bool(shuffle)
        self.error_every = _positive_int(error_every, "error_every")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.seed = seed
        self._rng = _random.generator(seed) if seed is not None else None
        self.w: Optional[np.ndarray] = None
        self.b_vis: Optional[np.ndarray] = None
        self.b_hid: Optional[np.ndarray] = None
        self.chain: Optional[np.ndarray] = None
        self.velocity: Optional[tuple] = None
        self.history: Optional[_callbacks.History] = None

    # -- state --------------------------------------------------------------------------------

    @property
    def rng(self) -> np.random.Generator:
        return self._rng if self._rng is not None else _random.get_generator()

    @property
    def n_visible(self) -> Optional[int]:
        return None if self.w is None else int(self.w.shape[1])

    def _require_fitted(self) -> None:
        if self.w is None:
            raise RuntimeError("this RBM has no weights yet: call fit() (or load()) first")

    def _prepare(self, x: Any, name: str = "x") -> np.ndarray:
        x = np.asarray(x)
        if x.ndim < 2:
            raise ValueError(f"{name} must have shape (samples, features...), got {x.shape}")
        x = x.reshape(len(x), -1)
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        x = np.ascontiguousarray(x)
        if self.w is not None and x.shape[1] != self.w.shape[1]:
            raise ValueError(f"{name} has {x.shape[1]} features but this RBM has "
                             f"{self.w.shape[1]} visible units")
        return x

    def initialize(self, x: np.ndarray) -> None:
        """Create the weights, biases and chain for data like ``x`` (the first fit does it)."""
        nv = x.shape[1]
        dt = self.dtype
        self.w = np.ascontiguousarray(self.rng.normal(0.0, 0.01, (self.n_hidden, nv)).astype(dt))
        if self.visible == "bernoulli":
            p = np.clip(x.mean(axis=0, dtype=np.float64), 1e-3, 1 - 1e-3)
            self.b_vis = np.log(p / (1 - p)).astype(dt)
        else:
            self.b_vis = np.zeros(nv, dt)
        self.b_hid = np.zeros(self.n_hidden, dt)
        self.chain = None
        if self.persistent:
            self.chain = np.zeros((self.n_particles or self.batch_size, self.n_hidden), dt)
        self.velocity = None
        if self.momentum:
            self.velocity = tuple(np.zeros_like(a) for a in (self.w, self.b_vis, self.b_hid))

    # -- training -----------------------------------------------------------------------------

    def fit(self, x: Any, epochs: int = 1, verbose: int = 1,
            callbacks: Optional[Sequence[_callbacks.Callback]] = None) -> _callbacks.History:
        """Train for ``epochs`` passes over ``x`` (samples x features, or images, flattened).

        Returns a History with, per epoch, ``reconstruction_error`` (the mean squared distance
        between a batch and its mean-field reconstruction, summed over features, averaged over
        every ``error_every``-th batch), ``pseudo_likelihood`` (the mean of
        :meth:`score_samples` over up to 1,000 training rows) and ``time`` (seconds).
        ``verbose``: 0 silent, 1 a progress bar per epoch, 2 one line per epoch.
        """
        epochs = _positive_int(epochs, "epochs")
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        x = self._prepare(x)
        if len(x) == 0:
            raise ValueError("x is empty: nothing to train on")
        if self.w is None:
            self.initialize(x)
        for name in ("w", "b_vis", "b_hid"):  # the steps below skip these scans (check_values)
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"the RBM's {name} contains NaN or inf")
        # Check the data once here, so that a bad value is reported before any update.
        lo, hi = float(x.min()), float(x.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError("x contains NaN or inf")
        if self.visible == "bernoulli" and (lo < 0 or hi > 1):
            raise ValueError(f"Bernoulli visible units need data in [0, 1], got values in "
                             f"[{lo}, {hi}]; scale it, or use visible='gaussian' for "
                             f"standardized real-valued data")
        history = _callbacks.History()
        cbs = _callbacks.CallbackList(list(callbacks or []) + [history], self,
                                      {"epochs": epochs, "verbose": verbose})
        self.history = history
        cbs.on_train_begin()
        for epoch in range(epochs):
            cbs.on_epoch_begin(epoch)
            logs = self._fit_epoch(x, epoch, epochs, verbose)
            if verbose == 2:
                print(f"Epoch {epoch + 1}/{epochs} - {logs['time']:.2f}s - reconstruction_error: "
                      f"{logs['reconstruction_error']:.4f} - pseudo_likelihood: "
                      f"{logs['pseudo_likelihood']:.4f}", flush=True)
            cbs.on_epoch_end(epoch, logs)
        cbs.on_train_end()
        return history

    def _fit_epoch(self, x: np.ndarray, epoch: int, epochs: int, verbose: int) -> Dict[str, float]:
        n, bs = len(x), self.batch_size
        steps = -(-n // bs)
        rng = self.rng
        order = rng.permutation(n) if self.shuffle else None
        base = int(rng.integers(0, 1 << 62))
        bar = None
        if verbose == 1:
            from tqdm.auto import tqdm
            bar = tqdm(total=steps, desc=f"Epoch {epoch + 1}/{epochs}", unit="step",
                       file=sys.stdout, dynamic_ncols=True, leave=True, mininterval=0.05)
        # Arguments checked once for the epoch (x was checked in fit), not at every batch.
        step = ops.rbm_cd_steps(x, self.w, self.b_vis, self.b_hid, order=order, k=self.k,
                                persistent_chain=self.chain, lr=self.learning_rate,
                                momentum=self.momentum, weight_decay=self.weight_decay,
                                visible=self.visible, velocity=self.velocity,
                                check_values=False)
        err_sum, err_n = 0.0, 0
        t0 = time.perf_counter()
        for s in range(steps):
            lo = s * bs
            want = s % self.error_every == 0
            err = step(lo, min(lo + bs, n), base + s, want)
            if want:
                err_sum += err
                err_n += 1
            if bar is not None and (s & 31) == 31:
                bar.update(s + 1 - bar.n)
        elapsed = time.perf_counter() - t0
        if not np.isfinite(self.w).all():
            raise RuntimeError(f"the weights diverged (NaN or inf) in epoch {epoch + 1}; lower "
                               f"the learning rate")
        sub = x if n <= _PL_ROWS else x[rng.choice(n, _PL_ROWS, replace=False)]
        logs = {"reconstruction_error": err_sum / max(err_n, 1), "time": elapsed}
        logs["pseudo_likelihood"] = (float(np.mean(self.score_samples(sub)))
                                     if self.visible == "bernoulli" else float("nan"))
        if bar is not None:
            bar.set_postfix_str(f"recon {logs['reconstruction_error']:.3f} pl "
                                f"{logs['pseudo_likelihood']:.2f}", refresh=False)
            bar.update(steps - bar.n)
            bar.close()
        return logs

    def partial_fit(self, x: Any, seed: Optional[int] = None) -> float:
        """One update on the batch ``x``; returns its reconstruction error."""
        x = self._prepare(x)
        if self.w is None:
            self.initialize(x)
        if seed is None:
            seed = int(self.rng.integers(0, 1 << 62))
        return ops.rbm_cd_step(x, self.w, self.b_vis, self.b_hid, k=self.k,
                               persistent_chain=self.chain, lr=self.learning_rate,
                               momentum=self.momentum, weight_decay=self.weight_decay,
                               seed=seed, visible=self.visible, velocity=self.velocity)

    # -- inference ----------------------------------------------------------------------------

    def transform(self, x: Any) -> np.ndarray:
        """Hidden probabilities ``sigmoid(x @ w.T + b_hid)``: the features the RBM learned."""
        self._require_fitted()
        return ops.rbm_hidden(self._prepare(x), self.w, self.b_hid)

    def reconstruct(self, x: Any) -> np.ndarray:
        """Visible means given the hidden probabilities of ``x`` (mean-field reconstruction)."""
        h = self.transform(x)
        return ops.rbm_visible(h, self.w, self.b_vis, visible=self.visible)

    def free_energy(self, x: Any) -> np.ndarray:
        """Free energy of each sample (float64)."""
        self._require_fitted()
        return ops.rbm_free_energy(self._prepare(x), self.w, self.b_vis, self.b_hid,
                                   visible=self.visible)

    def score_samples(self, x: Any, seed: Optional[int] = None) -> np.ndarray:
        """Per-sample log pseudo-likelihood, computed as scikit-learn's
        ``BernoulliRBM.score_samples`` (one randomly chosen unit flipped per sample)."""
        self._require_fitted()
        if self.visible != "bernoulli":
            raise ValueError("score_samples (pseudo-likelihood) needs Bernoulli visible units")
        if seed is None:
            seed = int(self.rng.integers(0, 1 << 62))
        return ops.rbm_pseudo_likelihood(self._prepare(x), self.w, self.b_vis, self.b_hid,
                                         seed=seed)

    def gibbs(self, v: Any, steps: int = 1, seed: Optional[int] = None) -> np.ndarray:
        """``steps`` Gibbs steps v -> h -> v from ``v``; returns the last visible means."""
        self._require_fitted()
        steps = _positive_int(steps, "steps")
        rng = _random.generator(seed) if seed is not None else self.rng
        v = self._prepare(v, "v")
        gaussian = self.visible == "gaussian"
        mean = v
        for _ in range(steps):
            h = ops.rbm_hidden(v, self.w, self.b_hid, sample=True,
                               seed=int(rng.integers(0, 1 << 62)))
            mean = ops.rbm_visible(h, self.w, self.b_vis, visible=self.visible)
            v = ops.rbm_visible(h, self.w, self.b_vis, visible=self.visible, sample=True,
                                seed=int(rng.integers(0, 1 << 62))) if not gaussian else mean
        return mean

    def sample(self, n: int, gibbs_steps: int = 1000, seed: Optional[int] = None) -> np.ndarray:
        """``n`` samples from the model: Gibbs chains started from random visible states
        (Bernoulli(sigmoid(b_vis)), or N(b_vis, 1)), run ``gibbs_steps`` steps; returns the
        visible means of the last step, shape ``(n, n_visible)``."""
        self._require_fitted()
        n = _positive_int(n, "n")
        rng = _random.generator(seed) if seed is not None else self.rng
        bv = self.b_vis.astype(np.float64)
        if self.visible == "bernoulli":
            v0 = (rng.random((n, bv.size)) < 1 / (1 + np.exp(-bv))).astype(self.dtype)
        else:
            v0 = (bv + rng.standard_normal((n, bv.size))).astype(self.dtype)
        return self.gibbs(v0, gibbs_steps, seed=int(rng.integers(0, 1 << 62)))

    # -- saving -------------------------------------------------------------------------------

    def get_config(self) -> Dict[str, Any]:
        return {"n_hidden": self.n_hidden, "visible": self.visible, "k": self.k,
                "persistent": self.persistent, "learning_rate": self.learning_rate,
                "batch_size": self.batch_size, "momentum": self.momentum,
                "weight_decay": self.weight_decay, "n_particles": self.n_particles,
                "shuffle": self.shuffle, "error_every": self.error_every,
                "dtype": self.dtype.name, "seed": self.seed}

    def save(self, path: Any) -> None:
        """Write the configuration, the weights and the training state (chain, velocity) to an
        ``.npz`` file."""
        self._require_fitted()
        arrays = {"w": self.w, "b_vis": self.b_vis, "b_hid": self.b_hid}
        if self.chain is not None:
            arrays["chain"] = self.chain
        if self.velocity is not None:
            arrays.update(vel_w=self.velocity[0], vel_b_vis=self.velocity[1],
                          vel_b_hid=self.velocity[2])
        config = np.frombuffer(json.dumps(self.get_config()).encode(), np.uint8)
        with open(path, "wb") as f:
            np.savez(f, __config__=config, **arrays)

    @classmethod
    def load(cls, path: Any) -> "RBM":
        """An RBM saved by :meth:`save`, ready to transform or to continue training."""
        with np.load(path, allow_pickle=False) as data:
            if "__config__" not in data:
                raise ValueError(f"{path!r} is not a file written by RBM.save")
            config = json.loads(bytes(data["__config__"]).decode())
            arrays = {k: data[k] for k in data.files if k != "__config__"}
        rbm = cls(**config)
        dt = rbm.dtype
        rbm.w = np.ascontiguousarray(arrays["w"], dt)
        rbm.b_vis = np.ascontiguousarray(arrays["b_vis"], dt)
        rbm.b_hid = np.ascontiguousarray(arrays["b_hid"], dt)
        rbm.chain = (np.ascontiguousarray(arrays["chain"], dt) if "chain" in arrays else None)
        if "vel_w" in arrays:
            rbm.velocity = tuple(np.ascontiguousarray(arrays[k], dt)
                                 for k in ("vel_w", "vel_b_vis", "vel_b_hid"))
        return rbm

    def __repr__(self) -> str:
        return (f"RBM(n_hidden={self.n_hidden}, visible={self.visible!r}, k={self.k}, "
                f"persistent={self.persistent}, n_visible={self.n_visible})")


class DBN:
    """A deep belief network: a stack of RBMs of sizes ``layers`` (``[784, 500, 200]``: a
    784-500 RBM and a 500-200 RBM), pretrained greedily, each on the hidden probabilities of the
    one below. ``visible`` applies to the first RBM (the others see probabilities, Bernoulli);
    the other keyword arguments go to every RBM."""

    def __init__(self, layers: Sequence[int], *, visible: str = "bernoulli", **rbm_kwargs: Any):
        layers = [_positive_int(n, "layers[i]") for n in layers]
        if len(layers) < 2:
            raise ValueError(f"layers must list at least two sizes (visible, hidden...), got "
                             f"{layers}")
        self.layers = layers
        seed = rbm_kwargs.pop("seed", None)
        self.rbms = [RBM(n_hid, visible=visible if i == 0 else "bernoulli",
                         seed=None if seed is None else seed + i, **rbm_kwargs)
                     for i, n_hid in enumerate(layers[1:])]

    def pretrain(self, x: Any, epochs: Union[int, Sequence[int]] = 5,
                 verbose: int = 1) -> List[_callbacks.History]:
        """Train the RBMs bottom-up; returns their Histories. ``epochs`` may differ per RBM."""
        per = [epochs] * len(self.rbms) if isinstance(epochs, (int, np.integer)) else list(epochs)
        if len(per) != len(self.rbms):
            raise ValueError(f"epochs must be an int or {len(self.rbms)} ints, got {epochs!r}")
        x = np.asarray(x)
        x = x.reshape(len(x), -1)
        if x.shape[1] != self.layers[0]:
            raise ValueError(f"x has {x.shape[1]} features but the DBN's visible layer has "
                             f"{self.layers[0]} units")
        histories = []
        for i, (rbm, ep) in enumerate(zip(self.rbms, per)):
            if verbose:
                print(f"Pretraining RBM {i + 1}/{len(self.rbms)}: {self.layers[i]} -> "
                      f"{self.layers[i + 1]}", flush=True)
            histories.append(rbm.fit(x, epochs=ep, verbose=verbose))
            if i + 1 < len(self.rbms):
                x = rbm.transform(x)
        return histories

    def transform(self, x: Any) -> np.ndarray:
        """The top RBM's hidden probabilities, propagated up the stack."""
        x = np.asarray(x)
        x = x.reshape(len(x), -1)
        for rbm in self.rbms:
            x = rbm.transform(x)
        return x

    def to_model(self, head: Any = None) -> Any:
        """A ``Sequential`` of sigmoid ``Dense`` layers initialized from the RBMs (kernel = w,
        bias = b_hid), ready to compile and fine-tune. ``head``: None, an int (a softmax
        ``Dense`` of that many classes), or a layer (or list of layers) to append."""
        from .core import Dense, Layer
        from .model import Sequential
        for i, rbm in enumerate(self.rbms):
            if rbm.w is None:
                raise RuntimeError(f"RBM {i + 1} is not trained: call pretrain() first")
        model = Sequential()
        for i, rbm in enumerate(self.rbms):
            layer = Dense(rbm.n_hidden, activation="sigmoid", dtype=rbm.dtype,
                          input_shape=(self.layers[0],) if i == 0 else None)
            model.add(layer)
        for layer, rbm in zip(model.layers, self.rbms):
            layer.set_weights([rbm.w, rbm.b_hid])
        if head is not None:
            if isinstance(head, (int, np.integer)) and not isinstance(head, bool):
                head = Dense(int(head), activation="softmax", dtype=self.rbms[-1].dtype)
            for layer in (head if isinstance(head, (list, tuple)) else [head]):
                if not isinstance(layer, Layer):
                    raise TypeError(f"head must be None, an int or layers, got "
                                    f"{type(layer).__name__}")
                model.add(layer)
        return model
