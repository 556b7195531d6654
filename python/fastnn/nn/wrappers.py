"""Layer wrappers for sequences: ``TimeDistributed(layer)`` applies a layer to every step, and
``Bidirectional(rnn)`` runs a recurrent layer both ways and merges the two outputs.

Both own their inner layers: ``params`` / ``grads`` are the inner layers' arrays (the same
objects, so an optimizer updates them in place), and saving stores the inner layers' configs
inside the wrapper's.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from .core import Layer, _as_array, get_layer_class
from .recurrent import _Recurrent, reverse_in_lengths

__all__ = ["TimeDistributed", "Bidirectional"]


def _layer_config(layer: Layer) -> Dict[str, Any]:
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def _layer_from(spec: Any, what: str) -> Layer:
    if isinstance(spec, Layer):
        return spec
    if not isinstance(spec, dict) or "class_name" not in spec:
        raise TypeError(f"{what} must be a Layer, got {type(spec).__name__}")
    return get_layer_class(spec["class_name"]).from_config(dict(spec.get("config", {})))


class TimeDistributed(Layer):
    """``TimeDistributed(Dense(10))``: (batch, steps, ...) -> the layer on (batch*steps, ...)
    -> (batch, steps, ...). A mask passes through unchanged."""

    def __init__(self, layer: Any, *, name=None, trainable=True, input_shape=None,
                 dtype=None) -> None:
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        self.layer = _layer_from(layer, "layer")
        if self.dtype is None:
            self.dtype = self.layer.dtype
        self._mask_source: Any = None
        self._shape = None

    @property
    def output_mask(self) -> Optional[np.ndarray]:
        src = self._mask_source
        return None if src is None else src.output_mask

    def compute_output_shape(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(f"{self.name}: TimeDistributed needs inputs of shape (batch, "
                             f"steps, ...), got {input_shape}")
        inner = (None,) + tuple(input_shape[2:])
        out = self.layer.output_shape if self.layer.built else \
            self.layer.compute_output_shape(inner)
        return tuple(input_shape[:2]) + tuple(out[1:])

    def _build(self, input_shape):
        inner = (None,) + tuple(input_shape[2:])
        if not self.layer.built:
            self.layer.build(inner)
        # The inner layer's own lists: it replaces their entries in place at each backward.
        self.params = self.layer.params
        self.grads = self.layer.grads
        self.buffers = self.layer.buffers

    @property
    def head_activation(self) -> Optional[str]:
        return None  # the losses fuse 2-D heads only

    def _flat(self, x: Any) -> Any:
        x = _as_array(x)
        if x.ndim < 3:
            raise ValueError(f"{self.name}: TimeDistributed needs inputs of shape (batch, "
                             f"steps, ...), got shape {tuple(x.shape)}")
        if not self.built:
            self._ensure_built(x)
        self._shape = x.shape[:2]
        return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])

    def forward(self, x, training=False):
        y = self.layer.forward(self._flat(x), training)
        return y.reshape(self._shape + y.shape[1:])

    def backward(self, dy, need_dx=True):
        if self._shape is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        dy = np.asarray(dy)
        dx = self.layer.backward(dy.reshape((-1,) + dy.shape[2:]), need_dx)
        self.grads = self.layer.grads
        if dx is None:
            return None
        return dx.reshape(self._shape + dx.shape[1:])

    def regularization_loss(self) -> float:
        return self.layer.regularization_loss()

    @property
    def has_regularizer(self) -> bool:
        return self.layer.has_regularizer

    def _torch_arrays(self):
        return self.layer._torch_arrays()

    def get_config(self):
        cfg = super().get_config()
        cfg.pop("dtype", None)
        cfg["layer"] = _layer_config(self.layer)
        return cfg


_MERGE_MODES = ("concat", "sum", "mul", "ave")


class Bidirectional(Layer):
    """``Bidirectional(LSTM(64, return_sequences=True), merge_mode="concat")``.

    A copy of the layer (same config, ``go_backwards=True``, its own weights) reads each sequence
    from its last real step back to its first; with ``return_sequences`` its outputs are put
    back in time order before merging, so step t of the result sees the whole sequence.
    ``merge_mode``: "concat" (features side by side: forward then backward), "sum", "mul" or
    "ave". ``torch_weights()`` matches ``nn.LSTM(..., bidirectional=True)``: the forward
    direction's ``*_l0`` and the backward's ``*_l0_reverse``.
    """

    def __init__(self, layer: Any, merge_mode: str = "concat", backward_layer: Any = None, *,
                 name=None, trainable=True, input_shape=None, dtype=None) -> None:
        self.forward_layer = _layer_from(layer, "layer")
        if not isinstance(self.forward_layer, _Recurrent):
            raise TypeError(f"Bidirectional wraps a recurrent layer (SimpleRNN, LSTM, GRU), got "
                            f"{type(self.forward_layer).__name__}")
        if input_shape is None:
            input_shape = self.forward_layer._given_input_shape
        given = input_shape
        super().__init__(name=name, trainable=trainable, dtype=dtype)
        self._given_input_shape = None if given is None else tuple(given)
        if merge_mode not in _MERGE_MODES:
            raise ValueError(f"merge_mode must be one of {_MERGE_MODES}, got {merge_mode!r}")
        if self.forward_layer.return_state:
            raise ValueError(f"{self.name}: Bidirectional does not take layers with "
                             f"return_state=True")
        self.merge_mode = merge_mode
        if backward_layer is None:
            cfg = self.forward_layer.get_config()
            cfg.update(go_backwards=not self.forward_layer.go_backwards,
                       name="backward_" + self.forward_layer.name)
            cfg.pop("input_shape", None)
            backward_layer = type(self.forward_layer).from_config(cfg)
        self.backward_layer = _layer_from(backward_layer, "backward_layer")
        fw, bw = self.forward_layer, self.backward_layer
        if (type(bw) is not type(fw) or bw.units != fw.units
                or bw.return_sequences != fw.return_sequences or bw.return_state):
            raise ValueError(f"{self.name}: backward_layer must be a {type(fw).__name__} of "
                             f"{fw.units} units with the same return_sequences")
        if self.dtype is None:
            self.dtype = fw.dtype
        self.return_sequences = fw.return_sequences
        self._mask_source: Any = None
        self._mask: Optional[np.ndarray] = None
        self._saved = None

    @property
    def output_mask(self) -> Optional[np.ndarray]:
        return self._mask if self.return_sequences else None

    def compute_output_shape(self, input_shape):
        out = self.forward_layer.compute_output_shape(input_shape)
        if self.merge_mode == "concat":
            out = tuple(out[:-1]) + (2 * out[-1],)
        return out

    def _build(self, input_shape):
        for layer in (self.forward_layer, self.backward_layer):
            if not layer.built:
                layer.build(input_shape)
        self.params = self.forward_layer.params + self.backward_layer.params
        self.grads = self.forward_layer.grads + self.backward_layer.grads

    def forward(self, x, training=False, mask=None):
        x = _as_array(x)
        if not self.built:
            if x.ndim != 3:
                raise ValueError(f"{self.name}: Bidirectional needs inputs of shape (batch, "
                                 f"steps, features), got shape {tuple(x.shape)}")
            self._ensure_built(x)
        if mask is None and self._mask_source is not None:
            mask = self._mask_source.output_mask
        self._mask = None if mask is None else np.asarray(mask, dtype=bool)
        y_f = self.forward_layer.forward(x, training, mask=mask)
        y_b = self.backward_layer.forward(x, training, mask=mask)
        lengths = None
        if self.return_sequences:
            st = self.backward_layer._state
            lengths = st["lengths"]
            y_b = reverse_in_lengths(y_b, lengths)
        self._saved = (y_f, y_b, lengths)
        mode = self.merge_mode
        if mode == "concat":
            return np.concatenate([y_f, y_b], axis=-1)
        if mode == "sum":
            return y_f + y_b
        if mode == "mul":
            return y_f * y_b
        return (y_f + y_b) * np.asarray(0.5, y_f.dtype)

    def backward(self, dy, need_dx=True):
        if self._saved is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        y_f, y_b, lengths = self._saved
        dy = np.asarray(dy, dtype=y_f.dtype)
        mode, u = self.merge_mode, y_f.shape[-1]
        want = y_f.shape[:-1] + ((2 * u,) if mode == "concat" else (u,))
        if dy.shape != want:
            raise ValueError(f"{self.name}: dy must have the output's shape {want}, got "
                             f"{dy.shape}")
        if mode == "concat":
            d_f, d_b = dy[..., :u], dy[..., u:]
        elif mode == "sum":
            d_f = d_b = dy
        elif mode == "mul":
            d_f, d_b = dy * y_b, dy * y_f
        else:
            d_f = d_b = dy * np.asarray(0.5, dy.dtype)
        if self.return_sequences:
            d_b = reverse_in_lengths(d_b, lengths)
        dx_f = self.forward_layer.backward(np.ascontiguousarray(d_f), need_dx)
        dx_b = self.backward_layer.backward(np.ascontiguousarray(d_b), need_dx)
        self.grads = self.forward_layer.grads + self.backward_layer.grads
        return dx_f + dx_b if need_dx else None

    @property
    def has_regularizer(self) -> bool:
        return self.forward_layer.has_regularizer or self.backward_layer.has_regularizer

    def regularization_loss(self) -> float:
        return (self.forward_layer.regularization_loss()
                + self.backward_layer.regularization_loss())

    def _torch_arrays(self):
        out = dict(self.forward_layer._torch_arrays())
        for key, a in self.backward_layer._torch_arrays().items():
            out[key + "_reverse"] = a
        return out

    def get_config(self):
        cfg = super().get_config()
        cfg.pop("dtype", None)
        cfg["layer"] = _layer_config(self.forward_layer)
        cfg["backward_layer"] = _layer_config(self.backward_layer)
        cfg["merge_mode"] = self.merge_mode
        return cfg
