"""What the image layers (convolution, pooling, batch normalization) share: Keras-style argument
checks (int-or-tuple sizes, ``data_format``, ``padding``), the padding arithmetic of Keras's
"same", and the moves between the caller's layout and the NCHW images that fastnn.ops takes.

A 1-D layer runs on the 2-D ops as an image of height 1: a ``(N, C, L)`` sequence is viewed as
``(N, C, 1, L)`` (no copy), and every 2-D geometry argument gets 1 for the height.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["FORMATS", "int_tuple", "data_format", "padding_arg", "same_pads", "to_nchw",
           "from_nchw", "split_shape", "join_shape", "pad_images", "crop_images"]

FORMATS = ("channels_first", "channels_last")
Pads = Tuple[Tuple[int, int], Tuple[int, int]]


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def int_tuple(value: Any, n: int, name: str, minimum: int) -> Tuple[int, ...]:
    """An int or a sequence of ``n`` ints (Keras's ``kernel_size``, ``strides``...), each at
    least ``minimum``, as a tuple of ``n`` ints."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
    if len(items) != n or not all(_is_int(v) for v in items):
        raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
    if min(items) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return tuple(int(v) for v in items)


def data_format(value: Any) -> str:
    if not isinstance(value, str) or value.lower() not in FORMATS:
        raise ValueError(f"data_format must be 'channels_first' or 'channels_last', got "
                         f"{value!r}")
    return value.lower()


def padding_arg(value: Any, n: int, names: Sequence[str]) -> Union[str, Tuple[int, ...]]:
    """One of the padding ``names`` (lower-cased), or an int / ``n`` ints of explicit padding
    on both sides of each spatial axis."""
    if isinstance(value, str):
        if value.lower() in names:
            return value.lower()
    elif _is_int(value) or isinstance(value, (tuple, list)):
        try:
            return int_tuple(value, n, "padding", 0)
        except ValueError:
            pass
    raise ValueError(f"padding must be {', '.join(repr(s) for s in names)}, an int or a tuple "
                     f"of {n} non-negative ints, got {value!r}")


def same_pads(size: int, span: int, stride: int) -> Tuple[int, int]:
    """Keras's (TensorFlow's) "same": ``ceil(size / stride)`` outputs, the padding they need
    split with the odd one at the end (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def split_shape(shape: Sequence[Optional[int]], rank: int, channels_last: bool
                ) -> Tuple[Optional[int], Tuple[Optional[int], ...]]:
    """``(channels, spatial sizes)`` of a per-sample shape (no batch dimension)."""
    shape = tuple(shape)
    if channels_last:
        return shape[-1], shape[:rank]
    return shape[0], shape[1:]


def join_shape(channels: Optional[int], spatial: Sequence[Optional[int]],
               channels_last: bool) -> Tuple[Optional[int], ...]:
    spatial = tuple(spatial)
    return spatial + (channels,) if channels_last else (channels,) + spatial


def to_nchw(x: np.ndarray, rank: int, channels_last: bool) -> np.ndarray:
    """The NCHW view of a batch in the caller's layout (the ops copy it when it is not
    contiguous; a transposed view that a channels_last layer returned comes back contiguous, so
    a chain of such layers transposes nothing)."""
    if rank == 2:
        return x.transpose(0, 3, 1, 2) if channels_last else x
    if channels_last:
        x = x.transpose(0, 2, 1)
    return x[:, :, None, :]


def from_nchw(y: np.ndarray, rank: int, channels_last: bool) -> np.ndarray:
    """The caller's layout of an NCHW batch, as a view."""
    if rank == 2:
        return y.transpose(0, 2, 3, 1) if channels_last else y
    y = y[:, :, 0, :]
    return y.transpose(0, 2, 1) if channels_last else y


def pad_images(x: np.ndarray, pads: Pads, value: float = 0.0) -> np.ndarray:
    """``x`` (NCHW) with ``pads = ((top, bottom), (left, right))`` of ``value`` around each
    plane: for the uneven padding of Keras's "same", which the ops (symmetric padding only)
    cannot express."""
    return np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]), constant_values=value)


def crop_images(dx: np.ndarray, pads: Pads) -> np.ndarray:
    """The gradient of ``pad_images``: the planes without their padding."""
    h, w = dx.shape[2], dx.shape[3]
    return dx[:, :, pads[0][0]:h - pads[0][1], pads[1][0]:w - pads[1][1]]
