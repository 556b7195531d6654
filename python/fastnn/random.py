"""Seeding for everything random in the training layer: initializers, dropout masks, shuffling.

One module-level NumPy ``Generator`` serves every draw that has no seed of its own, so
``fastnn.random.seed(42)`` before building and training a model makes the whole run repeatable.
Initializers and ``Dropout`` also take ``seed=``, which gives them a private generator that does
not depend on (or disturb) the global one.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["seed", "get_generator", "generator", "draw_seed"]

_global = np.random.default_rng()


def _check_seed(s) -> int:
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative int or None, got {type(s).__name__}")
    if s < 0:
        raise ValueError(f"seed must be non-negative, got {s}")
    return int(s)


def seed(s: Optional[int] = None) -> None:
    """Reseed the global generator (``None``: fresh entropy from the OS)."""
    global _global
    _global = np.random.default_rng(None if s is None else _check_seed(s))


def get_generator() -> np.random.Generator:
    """The global generator (replaced, not mutated, by :func:`seed`: don't cache it)."""
    return _global


def generator(s: Optional[int] = None) -> np.random.Generator:
    """A private generator for ``s``, or the global one when ``s`` is None."""
    return _global if s is None else np.random.default_rng(_check_seed(s))


def draw_seed(rng: Optional[np.random.Generator] = None) -> int:
    """A fresh 31-bit seed for a kernel that draws its own random numbers (dropout masks).

    ``random_raw`` costs a fraction of ``integers()``: this runs once per training step.
    """
    bits = (_global if rng is None else rng).bit_generator.random_raw()
    return int(bits) >> 33
