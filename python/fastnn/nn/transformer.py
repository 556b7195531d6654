"""``TransformerEncoderLayer``: self-attention and a feed-forward block, each with a residual
connection, PyTorch's ``nn.TransformerEncoderLayer`` (``batch_first=True``) on fastnn's layers.

``norm_first=True`` (pre-norm, the default here and what ViTs use)::

    x = x + drop(MHA(LN1(x)))
    x = x + drop(W2 drop(act(W1 LN2(x))))

``norm_first=False`` (post-norm, the original Transformer's)::

    x = LN1(x + drop(MHA(x)))
    x = LN2(x + drop(W2 drop(act(W1 x))))

The layer is a composite: its weights are those of its sub-layers (two LayerNormalization, one
MultiHeadAttention, two Dense), in that order, and its backward runs theirs in reverse, adding the
residual gradients.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from . import _symbolic
from .attention import MultiHeadAttention
from .core import Dense, Layer, _as_array
from .dropout import Dropout
from .layer_normalization import LayerNormalization

__all__ = ["TransformerEncoderLayer"]


class TransformerEncoderLayer(Layer):
    """One Transformer encoder block on ``(batch, steps, d_model)`` sequences.

    ``d_model`` (features), ``num_heads`` (must divide d_model), ``dim_feedforward`` (hidden
    size of the feed-forward block), ``dropout`` (rate of every dropout in the block, the
    attention's included), ``activation`` (a Dense activation name: "gelu" (exact, erf-based,
    PyTorch's default for "gelu") or "relu"...), ``norm_first``, ``layer_norm_eps`` (PyTorch's
    1e-5).

    Called as ``layer(x)``, ``layer(x, attention_mask=mask)`` or ``layer(x,
    use_causal_mask=True)`` (see :class:`MultiHeadAttention` for masks).
    """

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: str = "gelu", norm_first: bool = True,
                 layer_norm_eps: float = 1e-5, input_shape: Optional[Sequence[int]] = None,
                 dtype: Any = "float32", *, seed: Optional[int] = None,
                 name: Optional[str] = None, trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        for what, v in (("d_model", d_model), ("num_heads", num_heads),
                        ("dim_feedforward", dim_feedforward)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{what} must be a positive int, got {v!r}")
        if d_model % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide d_model ({d_model})")
        if activation in ("softmax", "threshold"):
            raise ValueError(f"activation {activation!r} does not suit a feed-forward block; use "
                             f"gelu or relu")
        self.d_model, self.num_heads = int(d_model), int(num_heads)
        self.dim_feedforward = int(dim_feedforward)
        self.dropout = float(dropout)
        self.activation = activation
        self.norm_first = bool(norm_first)
        self.layer_norm_eps = float(layer_norm_eps)
        self.seed = seed
        dt = self.dtype
        n = self.name
        seeds = [None] * 4 if seed is None else [seed + i for i in range(4)]
        self.norm1 = LayerNormalization(epsilon=self.layer_norm_eps, dtype=dt, name=f"{n}_norm1")
        self.attention = MultiHeadAttention(self.num_heads, self.d_model // self.num_heads,
                                            dropout=self.dropout, dtype=dt, seed=seeds[0],
                                            name=f"{n}_attention")
        self.dropout1 = Dropout(self.dropout, seed=seeds[1], name=f"{n}_dropout1")
        self.norm2 = LayerNormalization(epsilon=self.layer_norm_eps, dtype=dt, name=f"{n}_norm2")
        self.linear1 = Dense(self.dim_feedforward, activation=activation, dtype=dt,
                             name=f"{n}_linear1")
        self.dropout_ff = Dropout(self.dropout, seed=seeds[2], name=f"{n}_dropout")
        self.linear2 = Dense(self.d_model, dtype=dt, name=f"{n}_linear2")
        self.dropout2 = Dropout(self.dropout, seed=seeds[3], name=f"{n}_dropout2")
        self._subs = [self.norm1, self.attention, self.dropout1, self.norm2, self.linear1,
                      self.dropout_ff, self.linear2, self.dropout2]
        self._single = True

    # -- shapes ---------------------------------------------------------------------------------

    def _split_shapes(self, input_shape: Any):
        if isinstance(input_shape, list):
            if len(input_shape) != 2:
                raise ValueError(f"{self.name}: expected [x, attention_mask] shapes, got "
                                 f"{input_shape!r}")
            return tuple(input_shape[0]), input_shape[1]
        return tuple(input_shape), None

    def compute_output_shape(self, input_shape):
        x, _ = self._split_shapes(input_shape)
        if len(x) != 3 or x[-1] != self.d_model:
            raise ValueError(f"{self.name}: expected inputs (batch, steps, {self.d_model}), got "
                             f"{x}")
        return x

    def build(self, input_shape: Any) -> None:
        x, mask = self._split_shapes(input_shape)
        out = self.compute_output_shape(input_shape)
        x = tuple(None if s is None else int(s) for s in x)
        ff = x[:-1] + (self.dim_feedforward,)
        self.norm1.build(x)
        self.attention.build([x, x, None, None if mask is None else tuple(mask)])
        self.dropout1.build(x)
        self.norm2.build(x)
        self.linear1.build(x)
        self.dropout_ff.build(ff)
        self.linear2.build(ff)
        self.dropout2.build(x)
        self.params = [p for s in self._subs for p in s.params]
        self.grads = [g for s in self._subs for g in s.grads]
        self.input_shape, self.output_shape, self.built = x, out, True

    def _accepts(self, input_shape):
        try:
            self.compute_output_shape(input_shape)
        except (ValueError, TypeError):
            return False
        return True

    # -- calling --------------------------------------------------------------------------------

    def __call__(self, x: Any, attention_mask: Any = None, use_causal_mask: bool = False,
                 training: bool = False) -> Any:
        inputs = x if attention_mask is None else [x, attention_mask]
        kwargs = {"use_causal_mask": True} if use_causal_mask else {}
        if _symbolic.is_symbolic(inputs):
            return _symbolic.call_symbolic(self, inputs, kwargs)
        return self.forward(inputs, training, **kwargs)

    def forward(self, x, training=False, use_causal_mask=False):
        self._single = not isinstance(x, (list, tuple))
        x, mask = (x, None) if self._single else (x[0], x[1])
        x = _as_array(x)
        if not self.built:
            self.build((None,) + tuple(x.shape[1:]))
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"{self.name}: expected inputs (batch, steps, {self.d_model}), got "
                             f"shape {x.shape}")
        if x.dtype != self.dtype and isinstance(x, np.ndarray):
            x = x.astype(self.dtype)

        def attend(h):
            a = self.attention.forward([h, h, None, mask], training,
                                       use_causal_mask=use_causal_mask)
            return self.dropout1.forward(a, training)

        def feed(h):
            f = self.linear1.forward(h, training)
            f = self.dropout_ff.forward(f, training)
            f = self.linear2.forward(f, training)
            return self.dropout2.forward(f, training)

        if self.norm_first:
            x1 = x + attend(self.norm1.forward(x, training))
            return x1 + feed(self.norm2.forward(x1, training))
        x1 = self.norm1.forward(x + attend(x), training)
        return self.norm2.forward(x1 + feed(x1), training)

    def _attend_back(self, d):
        d = self.dropout1.backward(d)
        return self.attention.backward(d)[0]

    def _feed_back(self, d):
        d = self.dropout2.backward(d)
        d = self.linear2.backward(d)
        d = self.dropout_ff.backward(d)
        return self.linear1.backward(d)

    def backward(self, dy, need_dx=True):
        if self.norm1._ctx is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        if self.norm_first:
            dx1 = dy + self.norm2.backward(self._feed_back(dy))
            dx = dx1 + self.norm1.backward(self._attend_back(dx1))
        else:
            ds2 = self.norm2.backward(dy)
            dx1 = ds2 + self._feed_back(ds2)
            ds1 = self.norm1.backward(dx1)
            dx = ds1 + self._attend_back(ds1)
        self.grads[:] = [g for s in self._subs for g in s.grads]
        if not need_dx:
            return None
        return dx if self._single else [dx, None]

    # -- state ----------------------------------------------------------------------------------

    def _call_state(self) -> Any:
        return dict(self.__dict__), [s._call_state() for s in self._subs]

    def _set_call_state(self, state: Any) -> None:
        mine, subs = state
        self.__dict__.update(mine)
        for s, st in zip(self._subs, subs):
            s._set_call_state(st)

    def get_random_state(self) -> Optional[Dict[str, Any]]:
        """The dropout generators' states (None without ``seed``)."""
        if self.seed is None:
            return None
        return {s.name: s.get_random_state() for s in self._subs
                if hasattr(s, "get_random_state")}

    def set_random_state(self, state: Optional[Dict[str, Any]]) -> None:
        if state is None:
            if self.seed is not None:
                raise ValueError(f"{self.name} has seed={self.seed}; it needs generator states")
            return
        if self.seed is None:
            raise ValueError(f"{self.name} has no seed, so it keeps no generator state")
        subs = {s.name: s for s in self._subs}
        for key, st in state.items():
            if key not in subs:
                raise ValueError(f"{self.name} has no sub-layer {key!r}")
            subs[key].set_random_state(st)

    @property
    def sublayers(self) -> List[Layer]:
        return list(self._subs)

    def get_config(self):
        cfg = super().get_config()
        cfg.update({
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "dim_feedforward": self.dim_feedforward,
            "dropout": self.dropout,
            "activation": self.activation,
            "norm_first": self.norm_first,
            "layer_norm_eps": self.layer_norm_eps,
            "seed": self.seed,
        })
        return cfg
