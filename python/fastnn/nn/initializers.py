"""Weight initializers: objects (``GlorotUniform(seed=0)``) or names (``"glorot_uniform"``).

Shapes follow the kernel layouts of fastnn.ops: ``(out_features, in_features)`` for a dense kernel
and ``(out_channels, in_channels, *kernel_size)`` for convolutions, so ``fan_in = shape[1] *
receptive field`` and ``fan_out = shape[0] * receptive field`` (a 1-D shape uses its length for
both).

Without a ``seed`` an initializer draws from the global generator of :mod:`fastnn.random`; with one
it owns a generator made from that seed at construction, so two layers built with the same
seeded initializer object still get different weights, and reruns reproduce them.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .. import random as _random

__all__ = ["Initializer", "GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal",
           "LecunNormal", "LecunUniform", "RandomNormal", "RandomUniform", "Orthogonal", "Zeros",
           "Ones", "Constant", "get", "serialize"]


def compute_fans(shape: Tuple[int, ...]) -> Tuple[int, int]:
    """``(fan_in, fan_out)`` for a kernel in ``(out, in, *receptive)`` layout."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


class Initializer:
    """Base class: ``init(shape, dtype="float32") -> ndarray``."""

    def __call__(self, shape, dtype: Any = "float32") -> np.ndarray:
        shape = tuple(int(s) for s in shape)
        return np.asarray(self._sample(shape), dtype=np.dtype(dtype))

    def _sample(self, shape: Tuple[int, ...]) -> np.ndarray:
        raise TypeError(f"{type(self).__name__} does not define _sample()")

    def get_config(self) -> Dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "Initializer":
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class _Random(Initializer):
    def __init__(self, seed: Optional[int] = None) -> None:
        self.seed = seed
        self._rng = None if seed is None else _random.generator(seed)

    @property
    def rng(self) -> np.random.Generator:
        return self._rng if self._rng is not None else _random.get_generator()

    def get_config(self) -> Dict[str, Any]:
        return {"seed": self.seed}


class RandomNormal(_Random):
    """Normal(mean, stddev); the default 0.01 is the classic "small random numbers"."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.01, seed: Optional[int] = None):
        super().__init__(seed)
        if not stddev > 0:
            raise ValueError(f"stddev must be > 0, got {stddev}")
        self.mean, self.stddev = float(mean), float(stddev)

    def _sample(self, shape):
        return self.rng.normal(self.mean, self.stddev, shape)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class RandomUniform(_Random):
    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: Optional[int] = None):
        super().__init__(seed)
        if not maxval > minval:
            raise ValueError(f"maxval must exceed minval, got [{minval}, {maxval}]")
        self.minval, self.maxval = float(minval), float(maxval)

    def _sample(self, shape):
        return self.rng.uniform(self.minval, self.maxval, shape)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class VarianceScaling(_Random):
    """Variance ``scale / n`` with ``n`` the fan_in, fan_out or their mean.

    The normal variant is truncated at two standard deviations and rescaled so the variance is
    still ``scale / n`` (0.8796 is the stddev of a unit normal truncated to [-2, 2]).
    """

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "normal",
                 seed: Optional[int] = None) -> None:
        super().__init__(seed)
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"mode must be fan_in, fan_out or fan_avg, got {mode!r}")
        if distribution not in ("normal", "uniform"):
            raise ValueError(f"distribution must be normal or uniform, got {distribution!r}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale, self.mode, self.distribution = float(scale), mode, distribution

    def _sample(self, shape):
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        var = self.scale / max(1.0, n)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * var)
            return self.rng.uniform(-limit, limit, shape)
        std = math.sqrt(var) / 0.87962566103423978
        out = self.rng.standard_normal(shape)
        bad = np.abs(out) > 2.0
        while bad.any():  # resample the tails: a truncated normal without SciPy
            out[bad] = self.rng.standard_normal(int(bad.sum()))
            bad = np.abs(out) > 2.0
        return out * std

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed}


class _Named(VarianceScaling):
    _args: Tuple[float, str, str] = (1.0, "fan_in", "normal")

    def __init__(self, seed: Optional[int] = None) -> None:
        super().__init__(*self._args, seed=seed)

    def get_config(self):
        return {"seed": self.seed}


class GlorotUniform(_Named):
    """Xavier uniform: U(-l, l), l = sqrt(6 / (fan_in + fan_out))."""
    _args = (1.0, "fan_avg", "uniform")


class GlorotNormal(_Named):
    """Xavier normal (truncated), variance 2 / (fan_in + fan_out)."""
    _args = (1.0, "fan_avg", "normal")


class HeUniform(_Named):
    """He uniform: U(-l, l), l = sqrt(6 / fan_in); for ReLU networks."""
    _args = (2.0, "fan_in", "uniform")


class HeNormal(_Named):
    """He normal (truncated), variance 2 / fan_in."""
    _args = (2.0, "fan_in", "normal")


class LecunNormal(_Named):
    """LeCun normal (truncated), variance 1 / fan_in; the initializer SELU expects."""
    _args = (1.0, "fan_in", "normal")


class LecunUniform(_Named):
    _args = (1.0, "fan_in", "uniform")


class Orthogonal(_Random):
    """A (semi-)orthogonal matrix times ``gain``: the Keras default for recurrent kernels.

    The shape is read as ``(shape[0], prod(shape[1:]))``; the smaller side gets orthonormal
    vectors (rows of a wide matrix, columns of a tall one). The QR factor's signs are fixed by the
    diagonal of R, so the draw is uniform over orthogonal matrices (Mezzadri's correction).
    """

    def __init__(self, gain: float = 1.0, seed: Optional[int] = None) -> None:
        super().__init__(seed)
        if not gain > 0:
            raise ValueError(f"gain must be > 0, got {gain}")
        self.gain = float(gain)

    def _sample(self, shape):
        if len(shape) < 2:
            raise ValueError(f"orthogonal initialization needs a shape of 2 or more "
                             f"dimensions, got {shape}")
        rows, cols = shape[0], int(np.prod(shape[1:]))
        a = self.rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.where(np.diag(r) < 0, -1.0, 1.0)
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape)

    def get_config(self):
        return {"gain": self.gain, "seed": self.seed}


class Constant(Initializer):
    def __init__(self, value: float = 0.0) -> None:
        self.value = float(value)

    def _sample(self, shape):
        return np.full(shape, self.value)

    def get_config(self):
        return {"value": self.value}


class Zeros(Constant):
    def __init__(self) -> None:
        super().__init__(0.0)

    def get_config(self):
        return {}


class Ones(Constant):
    def __init__(self) -> None:
        super().__init__(1.0)

    def get_config(self):
        return {}


_CLASSES = {c.__name__: c for c in (GlorotUniform, GlorotNormal, HeUniform, HeNormal,
                                     LecunNormal, LecunUniform, RandomNormal, RandomUniform,
                                     VarianceScaling, Orthogonal, Zeros, Ones, Constant)}
_NAMES = {
    "glorot_uniform": GlorotUniform, "xavier_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal, "xavier_normal": GlorotNormal,
    "he_uniform": HeUniform, "he_normal": HeNormal,
    "lecun_normal": LecunNormal, "lecun_uniform": LecunUniform,
    "random_normal": RandomNormal, "small_random": RandomNormal,
    "random_uniform": RandomUniform,
    "orthogonal": Orthogonal,
    "zeros": Zeros, "ones": Ones, "constant": Constant,
}


def get(identifier: Any) -> Initializer:
    """An initializer from a name, a ``{"class_name", "config"}`` dict or an instance."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        cls = _NAMES.get(identifier.lower())
        if cls is None:
            raise ValueError(f"unknown initializer {identifier!r}; expected one of "
                             f"{sorted(_NAMES)} or an Initializer")
        return cls()
    if isinstance(identifier, dict) and "class_name" in identifier:
        cls = _CLASSES.get(identifier["class_name"])
        if cls is None:
            raise ValueError(f"unknown initializer class {identifier['class_name']!r}")
        return cls.from_config(identifier.get("config", {}))
    raise TypeError(f"an initializer must be a name or an Initializer, got "
                    f"{type(identifier).__name__}")


def serialize(init: Initializer) -> Dict[str, Any]:
    return {"class_name": type(init).__name__, "config": init.get_config()}
