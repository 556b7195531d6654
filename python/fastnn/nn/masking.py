"""How a padding mask travels through a ``Sequential`` model.

``Embedding(mask_zero=True)`` marks the steps of each sequence that hold a token (id != 0); the
recurrent layers after it run each sequence for its own length only (the ops' ``lengths`` path),
so padding changes neither their outputs nor their gradients.

The protocol, duck-typed so that layers need no common base beyond :class:`~fastnn.nn.Layer`:

* a layer with an ``output_mask`` attribute *produces* a mask: after its ``forward`` it holds the
  (batch, steps) boolean mask of that output, or None;
* a layer with a ``_mask_source`` attribute *consumes* one: :func:`link_masks` points it at the
  nearest producer before it (or None), and its ``forward`` reads ``_mask_source.output_mask``;
* layers that change nothing along the time axis (Dropout, Activation) pass the mask on.

Any other layer stops the mask (as in Keras, where a layer that does not support masking
drops it). Only right-padded masks (each row a run of True then False) have a length; recurrent
layers reject others with a ValueError.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np

__all__ = ["link_masks", "mask_lengths"]

_PASS_THROUGH = frozenset({"Dropout", "Activation"})


def link_masks(layers: Sequence[Any]) -> None:
    """Point every mask-consuming layer at the nearest mask-producing layer before it."""
    source = None
    for layer in layers:
        if hasattr(layer, "_mask_source"):
            layer._mask_source = source
        if hasattr(layer, "output_mask"):
            source = layer
        elif type(layer).__name__ not in _PASS_THROUGH:
            source = None


def mask_lengths(mask: Any, batch: int, steps: int, who: str
                 ) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """``(lengths, empty)`` of a right-padded (batch, steps) mask.

    ``lengths`` is None when every sequence is full (the ops' fast path); otherwise int64 with
    every entry at least 1, and ``empty`` flags the sequences with no step at all (None if
    there are none): the ops need one step to run, so the layer runs one and then zeroes what
    that step produced.
    """
    if mask is None:
        return None, None
    m = np.asarray(mask)
    if m.shape != (batch, steps):
        raise ValueError(f"{who}: the mask must have shape (batch, steps) = {(batch, steps)}, "
                         f"got {m.shape}")
    m = m.astype(bool, copy=False)
    lengths = m.sum(axis=1, dtype=np.int64)
    if not np.array_equal(m, np.arange(steps) < lengths[:, None]):
        bad = int(np.argmax(np.any(m != (np.arange(steps) < lengths[:, None]), axis=1)))
        raise ValueError(f"{who}: sequence {bad} has masked steps before unmasked ones; "
                         f"recurrent layers take right-padded sequences only (tokens first, "
                         f"padding zeros after them)")
    if batch == 0 or int(lengths.min()) == steps:
        return None, None
    empty = lengths == 0
    return np.maximum(lengths, 1), (empty if empty.any() else None)
