"""Embedding layers.

``Embedding(input_dim, output_dim)``: integer token ids (batch, steps) -> vectors
(batch, steps, output_dim), a row lookup in a trainable table (:func:`fastnn.ops.embedding`).

``mask_zero=True`` reserves id 0 for padding: the layer then produces a mask (id != 0) that the
recurrent layers after it in a ``Sequential`` follow (see :mod:`.masking`), so padded batches
run each sequence for its own length. As in Keras, ``input_dim`` then counts the padding id too
(vocabulary size + 1).

Token and position embeddings for Transformers: ``PatchEmbedding`` (images to token
sequences), ``PositionalEmbedding`` (learned) and ``SinusoidalPositionalEncoding`` (fixed).

The two position layers add their encoding to the ``(batch, steps, features)`` input and return
the sum (keras-hub's ``PositionEmbedding`` / ``SinePositionEncoding`` return the encoding alone,
for the caller to add).
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .. import ops
from . import initializers, regularizers
from ._spatial import data_format as _data_format
from ._spatial import int_tuple
from .core import Layer, _as_array

__all__ = ["Embedding", "PatchEmbedding", "PositionalEmbedding", "SinusoidalPositionalEncoding"]


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class Embedding(Layer):
    """A (input_dim, output_dim) table; ``torch_weights()`` exchanges it with ``nn.Embedding``
    as ``weight``. Inputs may be integers or integral floats (a ``Sequential`` hands the ids
    over as int64); an id outside ``[0, input_dim)`` raises ValueError."""

    _TORCH_KEYS = (("weight", "embeddings"),)

    def __init__(self, input_dim: int, output_dim: int,
                 embeddings_initializer: Any = "uniform", embeddings_regularizer: Any = None,
                 mask_zero: bool = False, input_shape: Optional[Sequence[int]] = None,
                 dtype: Any = "float32", *, name: Optional[str] = None,
                 trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable, dtype=dtype)
        if input_shape is not None:
            # (steps,) or (steps, ...); None entries for sequences of any length.
            if isinstance(input_shape, (int, np.integer)):
                input_shape = (input_shape,)
            self._given_input_shape = tuple(
                None if s is None else _positive_int(s, "input_shape entries")
                for s in input_shape)
        self.input_dim = _positive_int(input_dim, "input_dim")
        self.output_dim = _positive_int(output_dim, "output_dim")
        if embeddings_initializer == "uniform":  # Keras's default: U(-0.05, 0.05)
            embeddings_initializer = "random_uniform"
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.mask_zero = bool(mask_zero)
        self.embeddings: Optional[np.ndarray] = None
        self.output_mask: Optional[np.ndarray] = None
        self._ctx = None

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def _build(self, input_shape):
        self.embeddings = np.ascontiguousarray(
            self.embeddings_initializer((self.input_dim, self.output_dim), self.dtype))
        self.params = [self.embeddings]
        self.grads = [np.zeros_like(self.embeddings)]

    def convert_input(self, x: Any) -> np.ndarray:
        """``x`` as C-contiguous int64 ids, checked: integral values in ``[0, input_dim)``."""
        a = np.asarray(x)
        if a.dtype.kind == "f":
            if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
                raise ValueError(f"{self.name}: token ids must be whole numbers, got "
                                 f"non-integral values in an array of dtype {a.dtype}")
        elif a.dtype.kind not in "iub":
            raise TypeError(f"{self.name}: token ids must be integers, got dtype {a.dtype}")
        ids = np.ascontiguousarray(a, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.input_dim):
            bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
            raise ValueError(f"{self.name}: token id {bad} is out of range: ids must be in "
                             f"[0, {self.input_dim}) (input_dim={self.input_dim})")
        return ids

    def forward(self, x, training=False):
        ids = self.convert_input(x)
        if ids.ndim < 1:
            raise ValueError(f"{self.name}: token ids need a batch dimension, got a scalar")
        if not self.built:
            self.build((None,) + ids.shape[1:])
        y, self._ctx = ops.embedding_forward(ids, self.embeddings)
        self.output_mask = (ids != 0) if self.mask_zero else None
        return y

    def backward(self, dy, need_dx=True):
        if self._ctx is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        (dw,) = ops.embedding_backward(self._ctx, np.asarray(dy, dtype=self.dtype))
        if self.embeddings_regularizer is not None:
            self.embeddings_regularizer.add_grad(dw, self.embeddings)
        self.grads[0] = dw
        return None  # token ids have no gradient

    @property
    def has_regularizer(self) -> bool:
        return self.embeddings_regularizer is not None

    def regularization_loss(self) -> float:
        if self.embeddings_regularizer is None or self.embeddings is None:
            return 0.0
        return self.embeddings_regularizer(self.embeddings)

    def get_config(self) -> Dict[str, Any]:
        cfg = super().get_config()
        cfg.update({
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
            "embeddings_regularizer": regularizers.serialize(self.embeddings_regularizer),
            "mask_zero": self.mask_zero,
        })
        return cfg


def _sequence_shape(layer: Layer, input_shape: Sequence[Optional[int]]) -> None:
    if len(input_shape) != 3 or input_shape[-1] is None:
        raise ValueError(f"{layer.name}: expected inputs (batch, steps, features) with known "
                         f"features, got {tuple(input_shape)}")


class PositionalEmbedding(Layer):
    """``x + table[:steps]`` with a learned ``(sequence_length, features)`` table (a ViT's
    position embedding). Sequences up to ``sequence_length`` steps are accepted.

    ``initializer`` defaults to a normal with stddev 0.02 (ViT's choice).
    """

    def __init__(self, sequence_length: int, initializer: Any = None,
                 input_shape: Optional[Sequence[int]] = None, dtype: Any = "float32", *,
                 name: Optional[str] = None, trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        if (isinstance(sequence_length, bool) or not isinstance(sequence_length, (int, np.integer))
                or sequence_length < 1):
            raise ValueError(f"sequence_length must be a positive int, got {sequence_length!r}")
        self.sequence_length = int(sequence_length)
        self.initializer = initializers.get(
            initializer if initializer is not None else initializers.RandomNormal(stddev=0.02))
        self.embeddings: Optional[np.ndarray] = None
        self._steps: Optional[int] = None

    def compute_output_shape(self, input_shape):
        _sequence_shape(self, input_shape)
        if input_shape[1] is not None and input_shape[1] > self.sequence_length:
            raise ValueError(f"{self.name}: sequences of {input_shape[1]} steps exceed "
                             f"sequence_length={self.sequence_length}")
        return tuple(input_shape)

    def _accepts(self, input_shape):
        return (len(input_shape) == 3 and input_shape[-1] == self.input_shape[-1]
                and (input_shape[1] is None or input_shape[1] <= self.sequence_length))

    def _build(self, input_shape):
        shape = (self.sequence_length, int(input_shape[-1]))
        self.embeddings = np.ascontiguousarray(self.initializer(shape, self.dtype))
        self.params = [self.embeddings]
        self.grads = [np.zeros_like(self.embeddings)]

    def forward(self, x, training=False):
        x = _as_array(x)
        self._ensure_built(x)
        if x.ndim != 3 or x.shape[-1] != self.embeddings.shape[1] \
                or x.shape[1] > self.sequence_length:
            raise ValueError(f"{self.name}: expected inputs (batch, <= {self.sequence_length}, "
                             f"{self.embeddings.shape[1]}), got shape {x.shape}")
        self._steps = x.shape[1]
        return x + self.embeddings[:x.shape[1]]

    def backward(self, dy, need_dx=True):
        if self._steps is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        g = np.zeros_like(self.embeddings)
        g[:self._steps] = dy.sum(axis=0)
        self.grads[0] = g
        return dy if need_dx else None

    def get_config(self):
        cfg = super().get_config()
        cfg.update({"sequence_length": self.sequence_length,
                    "initializer": initializers.serialize(self.initializer)})
        return cfg


class SinusoidalPositionalEncoding(Layer):
    """``x + pe[:steps]`` with the fixed encoding of "Attention is all you need":
    ``pe[p, 2i] = sin(p / max_wavelength^(2i/D))``, ``pe[p, 2i+1] = cos(...)``. No weights."""

    def __init__(self, max_wavelength: float = 10000.0, *, name: Optional[str] = None,
                 trainable: bool = True, input_shape: Optional[Sequence[int]] = None,
                 dtype: Any = None) -> None:
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        max_wavelength = float(max_wavelength)
        if not max_wavelength > 0:
            raise ValueError(f"max_wavelength must be > 0, got {max_wavelength}")
        self.max_wavelength = max_wavelength
        self._cache: Dict[Tuple[int, int, str], np.ndarray] = {}

    def compute_output_shape(self, input_shape):
        _sequence_shape(self, input_shape)
        return tuple(input_shape)

    def _accepts(self, input_shape):
        return len(input_shape) == 3 and input_shape[-1] == self.input_shape[-1]

    def encoding(self, steps: int, features: int, dtype: Any = np.float64) -> np.ndarray:
        """The ``(steps, features)`` encoding (cached per size and dtype)."""
        key = (int(steps), int(features), np.dtype(dtype).name)
        pe = self._cache.get(key)
        if pe is None:
            pos = np.arange(steps, dtype=np.float64)[:, None]
            i = np.arange(features)
            angle = pos * np.power(self.max_wavelength, -(2 * (i // 2)) / features)
            pe = np.where(i % 2 == 0, np.sin(angle), np.cos(angle)).astype(dtype)
            self._cache[key] = pe
        return pe

    def forward(self, x, training=False):
        x = _as_array(x)
        self._ensure_built(x)
        if x.ndim != 3:
            raise ValueError(f"{self.name}: expected inputs (batch, steps, features), got shape "
                             f"{x.shape}")
        return x + self.encoding(x.shape[1], x.shape[2], x.dtype)

    def backward(self, dy, need_dx=True):
        return dy if need_dx else None

    def get_config(self):
        cfg = super().get_config()
        cfg["max_wavelength"] = self.max_wavelength
        return cfg


class PatchEmbedding(Layer):
    """Images to a sequence of patch tokens: non-overlapping ``patch_size`` patches, each
    flattened and projected to ``embed_dim`` (a ViT's stem; the same as a convolution with
    kernel = stride = patch_size).

    Input ``(batch, channels, height, width)`` (``data_format="channels_first"``, the default) or
    ``(batch, height, width, channels)``; height and width must be multiples of the patch size.
    Output ``(batch, patches, embed_dim)``, patches in row-major order. ``kernel`` has shape
    ``(embed_dim, channels*ph*pw)``, each row in ``(channel, row, column)`` order: the weight of
    PyTorch's ``nn.Conv2d(channels, embed_dim, patch_size, stride=patch_size)`` reshaped to
    ``(embed_dim, -1)``.
    """

    def __init__(self, patch_size: Any, embed_dim: int, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 data_format: str = "channels_first",
                 input_shape: Optional[Sequence[int]] = None, dtype: Any = "float32", *,
                 name: Optional[str] = None, trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        self.patch_size = int_tuple(patch_size, 2, "patch_size", 1)
        if isinstance(embed_dim, bool) or not isinstance(embed_dim, (int, np.integer)) \
                or embed_dim < 1:
            raise ValueError(f"embed_dim must be a positive int, got {embed_dim!r}")
        self.embed_dim = int(embed_dim)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.data_format = _data_format(data_format)
        self.kernel: Optional[np.ndarray] = None
        self.bias: Optional[np.ndarray] = None
        self._ctx = None
        self._shape = None

    def _geometry(self, shape: Sequence[Optional[int]]):
        if len(shape) != 4:
            raise ValueError(f"{self.name}: PatchEmbedding needs image batches (batch, channels, "
                             f"height, width) or channels_last, got {tuple(shape)}")
        if self.data_format == "channels_first":
            c, h, w = shape[1], shape[2], shape[3]
        else:
            h, w, c = shape[1], shape[2], shape[3]
        ph, pw = self.patch_size
        if c is None or h is None or w is None:
            raise ValueError(f"{self.name}: the image size must be known, got {tuple(shape)}")
        if h % ph or w % pw:
            raise ValueError(f"{self.name}: a {h}x{w} image does not split into {ph}x{pw} "
                             f"patches (height and width must be multiples of the patch size)")
        return c, h // ph, w // pw

    def compute_output_shape(self, input_shape):
        _, gh, gw = self._geometry(input_shape)
        return (input_shape[0], gh * gw, self.embed_dim)

    def _build(self, input_shape):
        c, _, _ = self._geometry(input_shape)
        fan_in = c * self.patch_size[0] * self.patch_size[1]
        self.kernel = np.ascontiguousarray(
            self.kernel_initializer((self.embed_dim, fan_in), self.dtype))
        self.params = [self.kernel]
        if self.use_bias:
            self.bias = np.ascontiguousarray(self.bias_initializer((self.embed_dim,), self.dtype))
            self.params.append(self.bias)
        self.grads = [np.zeros_like(p) for p in self.params]

    def _patches(self, x: np.ndarray) -> np.ndarray:
        b = x.shape[0]
        c, gh, gw = self._geometry(x.shape)
        ph, pw = self.patch_size
        if self.data_format == "channels_first":
            t = x.reshape(b, c, gh, ph, gw, pw).transpose(0, 2, 4, 1, 3, 5)
        else:
            t = x.reshape(b, gh, ph, gw, pw, c).transpose(0, 1, 3, 5, 2, 4)
        return np.ascontiguousarray(t).reshape(b, gh * gw, c * ph * pw)

    def _images(self, d: np.ndarray) -> np.ndarray:
        b = d.shape[0]
        c, gh, gw = self._geometry(self._shape)
        ph, pw = self.patch_size
        t = d.reshape(b, gh, gw, c, ph, pw)
        if self.data_format == "channels_first":
            t = t.transpose(0, 3, 1, 4, 2, 5)
        else:
            t = t.transpose(0, 1, 4, 2, 5, 3)
        return np.ascontiguousarray(t).reshape(self._shape)

    def forward(self, x, training=False):
        x = _as_array(x)
        self._ensure_built(x)
        if x.ndim != 4 or self._geometry(x.shape)[0] != self.kernel.shape[1] // (
                self.patch_size[0] * self.patch_size[1]):
            raise ValueError(f"{self.name}: expected images like {self.input_shape}, got shape "
                             f"{x.shape}")
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        self._shape = x.shape
        y, self._ctx = ops.linear_forward(self._patches(x), self.kernel, self.bias)
        return y

    def backward(self, dy, need_dx=True):
        if self._ctx is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        dp, dw, db = ops.linear_backward(self._ctx, dy, need_dx=need_dx)
        self.grads[0] = dw
        if db is not None:
            self.grads[1] = db
        return self._images(dp) if need_dx else None

    def get_config(self):
        cfg = super().get_config()
        cfg.update({"patch_size": list(self.patch_size), "embed_dim": self.embed_dim,
                    "use_bias": self.use_bias,
                    "kernel_initializer": initializers.serialize(self.kernel_initializer),
                    "bias_initializer": initializers.serialize(self.bias_initializer),
                    "data_format": self.data_format})
        return cfg
