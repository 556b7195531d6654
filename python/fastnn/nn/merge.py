"""Merge layers: ``Add``, ``Multiply``, ``Concatenate``, called on a list of tensors.

``Add()([a, b])`` in a functional model, or ``layer.forward([a, b])`` on arrays; ``backward(dy)``
returns a list with one gradient per input. The inputs of ``Add`` and ``Multiply`` must have the
same shape (Keras's rule); ``Concatenate(axis)`` needs equal sizes on every axis but ``axis``.
``Add``'s backward hands the same ``dy`` array to every input (no copies): treat it as read-only.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from .core import Layer, _as_array

__all__ = ["Add", "Multiply", "Concatenate"]

Shape = Tuple[Optional[int], ...]


def _same(a: Optional[int], b: Optional[int]) -> bool:
    return a is None or b is None or a == b


class _Merge(Layer):
    """Several inputs (a list), one output."""

    def _shapes(self, input_shapes: Any) -> List[Shape]:
        if (not isinstance(input_shapes, (list, tuple)) or len(input_shapes) < 2
                or not all(isinstance(s, (list, tuple)) for s in input_shapes)):
            raise ValueError(f"{self.name}: {type(self).__name__} takes a list of at least two "
                             f"inputs, got {input_shapes!r}")
        return [tuple(None if d is None else int(d) for d in s) for s in input_shapes]

    def build(self, input_shape: Any) -> None:
        shapes = self._shapes(input_shape)
        self.output_shape = self.compute_output_shape(shapes)
        self.input_shape = shapes  # one shape per input
        self.built = True

    def _accepts(self, input_shape):
        try:
            shapes = self._shapes(input_shape)
        except ValueError:
            return False
        return len(shapes) == len(self.input_shape) and all(
            len(a) == len(b) and all(_same(x, y) for x, y in zip(a[1:], b[1:]))
            for a, b in zip(shapes, self.input_shape))

    def _inputs(self, xs: Any) -> List[Any]:
        if not isinstance(xs, (list, tuple)):
            raise TypeError(f"{self.name}: {type(self).__name__} takes a list of arrays, got "
                            f"{type(xs).__name__}")
        xs = [_as_array(x) for x in xs]
        shapes = [tuple(x.shape) for x in xs]
        if not self.built:
            self.build([(None,) + s[1:] for s in shapes])
        elif not self._accepts([(None,) + s[1:] for s in shapes]):
            raise ValueError(f"{self.name}: built for inputs {self.input_shape}, got arrays of "
                             f"shapes {shapes}")
        if len({s[0] for s in shapes}) > 1:
            raise ValueError(f"{self.name}: the inputs have different batch sizes: {shapes}")
        return xs


class Add(_Merge):
    """The elementwise sum of its inputs (a residual connection: ``Add()([x, f(x)])``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._n: Optional[int] = None

    def compute_output_shape(self, input_shape):
        shapes = self._shapes(input_shape)
        first = shapes[0]
        for s in shapes[1:]:
            if len(s) != len(first) or not all(_same(a, b) for a, b in zip(s[1:], first[1:])):
                raise ValueError(f"{self.name}: {type(self).__name__} needs inputs of the same "
                                 f"shape, got {shapes}")
        return tuple(next((d for d in dims if d is not None), None)
                     for dims in zip(*shapes))

    def forward(self, x, training=False):
        xs = self._inputs(x)
        out = xs[0] + xs[1]
        for a in xs[2:]:
            out += a
        self._n = len(xs)
        return out

    def backward(self, dy, need_dx=True):
        if self._n is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        return [dy] * self._n if need_dx else None


class Multiply(Add):
    """The elementwise product of its inputs (a gate: ``Multiply()([x, sigmoid_gate])``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._xs: Optional[List[Any]] = None

    def forward(self, x, training=False):
        xs = self._inputs(x)
        out = xs[0] * xs[1]
        for a in xs[2:]:
            out *= a
        self._xs = xs
        return out

    def backward(self, dy, need_dx=True):
        if self._xs is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        if not need_dx:
            return None
        xs = self._xs
        grads = []
        for i in range(len(xs)):
            g = dy
            for j, a in enumerate(xs):
                if j != i:
                    g = g * a
            grads.append(g)
        return grads


class Concatenate(_Merge):
    """Its inputs joined along ``axis`` (default the last; never the batch axis)."""

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"axis must be an int, got {axis!r}")
        self.axis = int(axis)
        self._sizes: Optional[List[int]] = None
        self._ax: Optional[int] = None

    def _resolve(self, rank: int) -> int:
        if not -rank <= self.axis < rank or self.axis % rank == 0:
            raise ValueError(f"{self.name}: axis {self.axis} is out of range or the batch axis "
                             f"for inputs of rank {rank}")
        return self.axis % rank

    def compute_output_shape(self, input_shape):
        shapes = self._shapes(input_shape)
        rank = len(shapes[0])
        if any(len(s) != rank for s in shapes):
            raise ValueError(f"{self.name}: Concatenate needs inputs of the same rank, got "
                             f"{shapes}")
        ax = self._resolve(rank)
        out: List[Optional[int]] = []
        for k, dims in enumerate(zip(*shapes)):
            if k == ax:
                out.append(None if any(d is None for d in dims) else int(sum(dims)))
                continue
            known = {d for d in dims if d is not None}
            if len(known) > 1 and k > 0:
                raise ValueError(f"{self.name}: Concatenate(axis={self.axis}) needs equal sizes "
                                 f"on every other axis, got {shapes}")
            out.append(next(iter(known)) if known else None)
        return tuple(out)

    def forward(self, x, training=False):
        xs = self._inputs(x)
        ax = self._resolve(xs[0].ndim)
        self._ax, self._sizes = ax, [a.shape[ax] for a in xs]
        return np.concatenate(xs, axis=ax)

    def backward(self, dy, need_dx=True):
        if self._sizes is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        if not need_dx:
            return None
        cuts = np.cumsum(self._sizes)[:-1]
        return np.split(dy, cuts, axis=self._ax)

    def get_config(self):
        cfg = super().get_config()
        cfg["axis"] = self.axis
        return cfg
