"""Symbolic tensors: what calling a layer on ``Input(...)`` returns, for the functional API.

A :class:`SymbolicTensor` holds a shape (batch dimension ``None`` first), a dtype and the
:class:`Node` that produced it: the layer, the tensors it was called on and the call's keyword
arguments. A functional :class:`~fastnn.nn.Model` walks these nodes back from its outputs. No
values flow here: calling a layer symbolically builds it (or checks that it accepts the shapes)
and records one node per call, so a layer called twice is shared and has two nodes.

This module imports nothing from the layers, so :mod:`fastnn.nn.core` can use it.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

__all__ = ["SymbolicTensor", "Node", "is_symbolic", "flat_tensors", "call_symbolic"]

Shape = Tuple[Optional[int], ...]


class Node:
    """One call of ``layer``: ``inputs`` is a SymbolicTensor, or a list of them (None where an
    optional input was not given); ``kwargs`` the call's non-tensor arguments (JSON values, so
    a model saves them); ``output`` the tensor the call made."""

    __slots__ = ("layer", "inputs", "kwargs", "output")

    def __init__(self, layer: Any, inputs: Any, kwargs: Dict[str, Any]) -> None:
        self.layer = layer
        self.inputs = inputs
        self.kwargs = dict(kwargs)
        self.output: Optional[SymbolicTensor] = None

    @property
    def parents(self) -> List["SymbolicTensor"]:
        return flat_tensors(self.inputs)


class SymbolicTensor:
    """A placeholder for the value a layer will compute; ``shape`` includes the batch axis."""

    __slots__ = ("shape", "dtype", "node", "__weakref__")

    def __init__(self, shape: Shape, dtype: np.dtype, node: Node) -> None:
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.node = node

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def name(self) -> str:
        return self.node.layer.name

    def __repr__(self) -> str:
        return f"<SymbolicTensor shape={self.shape} dtype={self.dtype.name} from {self.name!r}>"

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self!r} is a symbolic tensor: it has no values. Build a "
                        f"fastnn.nn.Model(inputs, outputs) and call the model on arrays")


def is_symbolic(x: Any) -> bool:
    """True for a SymbolicTensor or a list/tuple holding one."""
    if isinstance(x, SymbolicTensor):
        return True
    return isinstance(x, (list, tuple)) and any(isinstance(t, SymbolicTensor) for t in x)


def flat_tensors(inputs: Any) -> List[SymbolicTensor]:
    if isinstance(inputs, SymbolicTensor):
        return [inputs]
    if inputs is None:
        return []
    return [t for t in inputs if isinstance(t, SymbolicTensor)]


def call_symbolic(layer: Any, inputs: Any, kwargs: Optional[Dict[str, Any]] = None
                  ) -> SymbolicTensor:
    """Record a call of ``layer`` on symbolic ``inputs`` (a tensor or a list of tensors and
    Nones), building the layer for their shapes, and return its output tensor."""
    kwargs = dict(kwargs or {})
    if isinstance(inputs, (list, tuple)):
        inputs = list(inputs)
        for i, t in enumerate(inputs):
            if t is not None and not isinstance(t, SymbolicTensor):
                raise TypeError(f"{layer.name}: input {i} is a {type(t).__name__}, but the "
                                f"other inputs are symbolic tensors; a layer called on Input(...) "
                                f"tensors takes symbolic tensors only")
        shapes: Any = [None if t is None else t.shape for t in inputs]
        first = next(t for t in inputs if t is not None)
    else:
        shapes, first = inputs.shape, inputs
    out_shape = layer._symbolic_output_shape(shapes)
    dtype = layer.dtype if layer.dtype is not None else first.dtype
    node = Node(layer, inputs, kwargs)
    node.output = SymbolicTensor(out_shape, dtype, node)
    return node.output
