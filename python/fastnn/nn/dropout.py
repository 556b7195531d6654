"""``Dropout(rate)``: inverted dropout (kept values scaled by ``1 / (1 - rate)`` in training,
so inference is the identity and needs no rescaling).

Each training step draws a fresh mask seed, from a private generator when ``seed=`` is given,
else from the global :mod:`fastnn.random` generator (``fastnn.random.seed`` makes runs repeat).
The private generator's position is the layer's only training state: ``get_random_state`` /
``set_random_state`` carry it through a saved model, so resumed training draws the masks that the
uninterrupted run would have.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from .. import ops
from .. import random as _random
from .core import Layer, _as_array

__all__ = ["Dropout"]


class _SeededLayer(Layer):
    """A layer that draws dropout masks from a private generator ``_rng`` when given a ``seed``
    (else from the global one), and saves and restores that generator's state."""

    seed: Optional[int] = None
    _rng: Any = None

    def get_random_state(self) -> Optional[Dict[str, Any]]:
        """The private generator's state as JSON data (None without ``seed``: the masks then come
        from the global generator, see :func:`fastnn.random.get_state`)."""
        return None if self._rng is None else _random.get_state(self._rng)

    def set_random_state(self, state: Optional[Dict[str, Any]]) -> None:
        """Continue the mask seeds from ``state`` (from :meth:`get_random_state`)."""
        if state is None:
            if self._rng is not None:
                raise ValueError(f"{self.name} has seed={self.seed}; it needs a generator "
                                 f"state, got None")
            return
        if self._rng is None:
            raise ValueError(f"{self.name} has no seed, so it draws from the global generator "
                             f"and keeps no state of its own")
        self._rng = _random.generator_from_state(state)


class Dropout(_SeededLayer):
    def __init__(self, rate: float, seed: Optional[int] = None, *, name=None, trainable=True,
                 input_shape=None, dtype=None) -> None:
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        rate = float(rate)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.seed = seed
        self._rng = None if seed is None else _random.generator(seed)
        self._ctx = None

    def forward(self, x, training=False):
        x = _as_array(x)
        self._ensure_built(x)
        if not training or self.rate == 0.0:
            self._ctx = None
            return x
        y, self._ctx = ops.dropout_forward(x, self.rate, seed=_random.draw_seed(self._rng))
        return y

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        if self._ctx is None:  # inference forward (or rate 0): the identity
            return dy
        return ops.dropout_backward(self._ctx, dy)[0]

    def get_config(self):
        cfg = super().get_config()
        cfg.update({"rate": self.rate, "seed": self.seed})
        return cfg
