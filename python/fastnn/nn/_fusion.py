"""Backward steps that fuse neighbouring layers of a linear stack (Sequential's training plan).

A convolution with a fused relu followed by a max pooling: forward, the pair runs as one op
(``Conv2D.forward_pooled``: the convolution's output pooled while in cache, for 2x2 windows at
stride 2 where a kernel serves the shape) and the pooling's step passes its input on. Backward,
relu's derivative at the input
element a window's maximum came from is ``pooled > 0``, so the pooling applies it to its own
gradient, a quarter of the convolution's output for 2x2 windows, and the convolution takes the
result as its pre-activation gradient. That saves a pass over the convolution's whole output
(read dy and y, write dz) on every step.
"""
from __future__ import annotations

from typing import Any, Callable, List, Sequence

from .pooling import MaxPooling2D

__all__ = ["backward_steps", "first_pair_backward", "forward_steps"]


def backward_steps(layers: Sequence[Any]) -> List[Callable[..., Any]]:
    """Each layer's backward for a training step, in layer order: ``layer.backward``, or the
    pair ``(conv.backward_preactivation, pool.backward_relu)`` for a convolution with a fused
    relu directly followed by a MaxPooling2D."""
    steps = [layer.backward for layer in layers]
    for i in range(len(layers) - 1):
        conv, pool = layers[i], layers[i + 1]
        if (getattr(conv, "relu_in_kernel", False) and type(pool) is MaxPooling2D
                and steps[i] == conv.backward and steps[i + 1] == pool.backward
                and sum(layer is conv for layer in layers) == 1
                and sum(layer is pool for layer in layers) == 1):
            steps[i] = conv.backward_preactivation
            steps[i + 1] = pool.backward_relu
    return steps


def forward_steps(layers: Sequence[Any], steps: Sequence[Callable[..., Any]]
                  ) -> List[Callable[..., Any]]:
    """Each layer's forward ``f(x, training)`` for a training step, in layer order, given the
    backward ``steps`` of ``backward_steps``: where a convolution and a MaxPooling2D run their
    fused backward pair, the convolution's step is ``forward_pooled`` (both layers' work) and
    the pooling's passes its input on."""
    forward = [layer.forward for layer in layers]
    for i in range(len(layers) - 1):
        conv, pool = layers[i], layers[i + 1]
        if (steps[i] == getattr(conv, "backward_preactivation", None)
                and steps[i + 1] == getattr(pool, "backward_relu", None)
                and hasattr(conv, "forward_pooled")):
            forward[i] = _pooled(conv, pool)
            forward[i + 1] = _passed_on
    return forward


def first_pair_backward(layers: Sequence[Any], steps: Sequence[Callable[..., Any]], first: int):
    """For the first trainable layer ``first`` (no input gradient wanted): when it and the next
    layer run the fused backward pair, ``(pool_step, first_step)`` that do the pair's work in the
    pooling's step (``Conv2D.backward_pooled``, its pre-pool gradient never written out) and
    nothing in the convolution's; else None."""
    if first + 1 >= len(layers):
        return None
    conv, pool = layers[first], layers[first + 1]
    if not (steps[first] == getattr(conv, "backward_preactivation", None)
            and steps[first + 1] == getattr(pool, "backward_relu", None)
            and hasattr(conv, "backward_pooled")):
        return None

    def pool_step(dy: Any, need_dx: bool = True) -> Any:
        return conv.backward_pooled(dy, pool, False)

    def first_step(dy: Any, need_dx: bool = True) -> Any:
        return None  # done by pool_step

    return pool_step, first_step


def _pooled(conv: Any, pool: Any) -> Callable[..., Any]:
    def step(x: Any, training: bool = False) -> Any:
        return conv.forward_pooled(x, pool, training)
    return step


def _passed_on(x: Any, training: bool = False) -> Any:
    return x
