"""Seeding for everything random in the training layer: initializers, dropout masks, shuffling.

One module-level NumPy ``Generator`` serves every draw that has no seed of its own, so
``fastnn.random.seed(42)`` before building and training a model makes the whole run repeatable.
Initializers and ``Dropout`` also take ``seed=``, which gives them a private generator that does
not depend on (or disturb) the global one.

:func:`get_state` / :func:`set_state` capture and restore a generator exactly, as plain JSON data
(saved models carry the training random state this way, so a resumed ``fit`` shuffles and drops
out as the uninterrupted run would have).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

__all__ = ["seed", "get_generator", "generator", "draw_seed", "get_state", "set_state",
           "generator_from_state"]

# Bit generators whose state is made of ints only, so it round-trips through JSON unchanged.
# fastnn itself only makes PCG64 ones (np.random.default_rng).
_BIT_GENERATORS = {"PCG64": np.random.PCG64, "PCG64DXSM": np.random.PCG64DXSM,
                   "SFC64": np.random.SFC64}

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


def get_state(rng: Optional[np.random.Generator] = None) -> Dict[str, Any]:
    """The exact state of ``rng`` (default: the global generator) as JSON data.

    Raises TypeError for a generator whose state cannot be written that way (MT19937, Philox).
    """
    bit_generator = (_global if rng is None else rng).bit_generator
    name = type(bit_generator).__name__
    if name not in _BIT_GENERATORS:
        raise TypeError(f"the state of a {name} generator cannot be saved; use one of "
                        f"{sorted(_BIT_GENERATORS)} (np.random.default_rng makes PCG64)")
    return bit_generator.state


def generator_from_state(state: Dict[str, Any]) -> np.random.Generator:
    """A new generator that continues from ``state`` (from :func:`get_state`).

    Raises ValueError when ``state`` is not such a state.
    """
    name = state.get("bit_generator") if isinstance(state, dict) else None
    cls = _BIT_GENERATORS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"not a generator state from fastnn.random.get_state (bit generator "
                         f"{name!r})")
    bit_generator = cls()
    try:
        bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"not a valid {name} generator state ({exc})") from None
    return np.random.Generator(bit_generator)


def set_state(state: Dict[str, Any]) -> None:
    """Make the global generator continue from ``state`` (from :func:`get_state`).

    Like :func:`seed`, this replaces the global generator.
    """
    global _global
    _global = generator_from_state(state)
