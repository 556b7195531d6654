"""Recurrent layers: ``SimpleRNN``, ``LSTM`` and ``GRU`` over batch-first sequences (batch, steps,
features), each one op forward (:func:`fastnn.ops.lstm_forward` and kin: every step's input
projection in one GEMM, one recurrent GEMM per step with the gate math fused) and one backward.

Weights are PyTorch's, unchanged: ``kernel`` (G*units, features), ``recurrent_kernel``
(G*units, units), ``bias_ih`` and ``bias_hh`` (G*units), with G = 4 for LSTM (gates i, f, g, o),
3 for GRU (r, z, n; the GRU's ``bias_hh`` sits inside the reset gate, as in PyTorch and Keras's
``reset_after=True``) and 1 for SimpleRNN. So ``torch_weights()`` / ``set_torch_weights()``
exchange ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0`` and ``bias_hh_l0`` with ``nn.LSTM``
/ ``nn.GRU`` / ``nn.RNN`` (one layer, ``batch_first=True``) as they are, and parameter counts are
PyTorch's (LSTM: ``4*units*(features + units + 2)``; Keras, with one bias, counts
``4*units`` fewer).

Initial weights follow Keras: Glorot-uniform ``kernel``, orthogonal ``recurrent_kernel``, zero
biases, and for LSTM ``unit_forget_bias``: the forget gate's ``bias_ih`` starts at 1.

Masks: after ``Embedding(mask_zero=True)`` in a ``Sequential`` (see :mod:`.masking`), or with
``forward(x, mask=...)``, each sequence runs its own length: outputs past its end are zero and
the last output / final state is the state at its end. A sequence with no steps at all gives
zero outputs and its initial state.

With ``return_state=True`` the forward returns ``[output, h]`` (LSTM ``[output, h, c]``) and
the backward takes one gradient per entry (None for "no gradient"); that is for custom loops
(an encoder's state into a decoder), as ``Sequential`` passes one array between layers.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import ops
from . import initializers, regularizers
from .core import Layer, _as_array
from .masking import mask_lengths

__all__ = ["SimpleRNN", "LSTM", "GRU", "reverse_in_lengths"]


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def reverse_in_lengths(a: np.ndarray, lengths: Optional[np.ndarray]) -> np.ndarray:
    """``a`` (batch, steps, ...) with each sequence's first ``lengths[b]`` steps in reverse
    order and its padding left in place (all steps without ``lengths``). Its own inverse."""
    if lengths is None:
        return np.ascontiguousarray(a[:, ::-1])
    t = np.arange(a.shape[1])
    idx = np.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    idx = idx.reshape(idx.shape + (1,) * (a.ndim - 2))
    return np.take_along_axis(a, idx, axis=1)


class _Recurrent(Layer):
    """The shared frame; subclasses set ``_GATES``, ``_STATES`` and the two op calls."""

    _GATES = 1
    _STATES = 1
    _TORCH_KEYS = (("weight_ih_l0", "kernel"), ("weight_hh_l0", "recurrent_kernel"),
                   ("bias_ih_l0", "bias_ih"), ("bias_hh_l0", "bias_hh"))

    def __init__(self, units: int, use_bias: bool = True, return_sequences: bool = False,
                 return_state: bool = False, go_backwards: bool = False,
                 kernel_initializer: Any = "glorot_uniform",
                 recurrent_initializer: Any = "orthogonal", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, recurrent_regularizer: Any = None,
                 bias_regularizer: Any = None, input_shape: Optional[Sequence[Any]] = None,
                 dtype: Any = "float32", *, name: Optional[str] = None,
                 trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable, dtype=dtype)
        if input_shape is not None:
            # (steps, features); steps may be None for sequences of any length.
            if isinstance(input_shape, (int, np.integer)) or len(input_shape) != 2:
                raise ValueError(f"{self.name}: input_shape must be (steps, features), got "
                                 f"{input_shape!r}")
            steps, feats = input_shape
            self._given_input_shape = (None if steps is None else _positive_int(steps, "steps"),
                                       _positive_int(feats, "features"))
        self.units = _positive_int(units, "units")
        self.use_bias = bool(use_bias)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel: Optional[np.ndarray] = None
        self.recurrent_kernel: Optional[np.ndarray] = None
        self.bias_ih: Optional[np.ndarray] = None
        self.bias_hh: Optional[np.ndarray] = None
        self._mask_source: Any = None
        self._mask: Optional[np.ndarray] = None
        self._state: Optional[Dict[str, Any]] = None

    # -- shapes and weights ---------------------------------------------------------------------

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.name}: {type(self).__name__} needs inputs of shape (batch, "
                             f"steps, features), got {input_shape}")
        if input_shape[-1] is None:
            raise ValueError(f"{self.name}: the feature dimension must be known")
        if self.return_sequences:
            return (input_shape[0], input_shape[1], self.units)
        return (input_shape[0], self.units)

    def _build(self, input_shape):
        feats, g, dt = int(input_shape[-1]), self._GATES * self.units, self.dtype
        self.kernel = np.ascontiguousarray(self.kernel_initializer((g, feats), dt))
        self.recurrent_kernel = np.ascontiguousarray(
            self.recurrent_initializer((g, self.units), dt))
        self.params = [self.kernel, self.recurrent_kernel]
        if self.use_bias:
            self.bias_ih = np.ascontiguousarray(self.bias_initializer((g,), dt))
            self.bias_hh = np.ascontiguousarray(self.bias_initializer((g,), dt))
            self._init_bias()
            self.params += [self.bias_ih, self.bias_hh]
        self.grads = [np.zeros_like(p) for p in self.params]

    def _init_bias(self) -> None:
        """Gate-specific bias starts (LSTM's unit forget bias)."""

    @property
    def state_size(self) -> Tuple[int, ...]:
        return (self.units,) * self._STATES

    # -- masks ----------------------------------------------------------------------------------

    @property
    def output_mask(self) -> Optional[np.ndarray]:
        """The mask of the last output: the input's when the layer returns sequences."""
        return self._mask if self.return_sequences else None

    # -- regularization -------------------------------------------------------------------------

    @property
    def has_regularizer(self) -> bool:
        return (self.kernel_regularizer is not None or self.recurrent_regularizer is not None
                or self.bias_regularizer is not None)

    def _regularized(self):
        yield self.kernel_regularizer, 0
        yield self.recurrent_regularizer, 1
        if self.use_bias:
            yield self.bias_regularizer, 2
            yield self.bias_regularizer, 3

    def regularization_loss(self) -> float:
        total = 0.0
        for reg, i in self._regularized():
            if reg is not None and self.params:
                total += reg(self.params[i])
        return total

    # -- computing ------------------------------------------------------------------------------

    def _input(self, x: Any) -> np.ndarray:
        x = _as_array(x)
        if x.ndim != 3:
            raise ValueError(f"{self.name}: {type(self).__name__} needs inputs of shape (batch, "
                             f"steps, features), got shape {tuple(x.shape)}")
        if not self.built:
            self.build(self.batch_input_shape or (None,) + tuple(x.shape[1:]))
        want = self.input_shape
        if x.shape[2] != want[2] or (want[1] is not None and x.shape[1] != want[1]):
            raise ValueError(f"{self.name}: expected inputs of shape {want}, got "
                             f"{tuple(x.shape)}")
        if x.shape[1] == 0:
            raise ValueError(f"{self.name}: sequences must have at least one step, got shape "
                             f"{tuple(x.shape)}")
        if x.dtype != self.dtype and isinstance(x, np.ndarray):
            x = x.astype(self.dtype)
        return x

    def _initial(self, initial_state: Any, batch: int) -> List[np.ndarray]:
        if initial_state is None:
            return [np.zeros((batch, self.units), self.dtype) for _ in range(self._STATES)]
        if isinstance(initial_state, np.ndarray) and self._STATES == 1:
            initial_state = [initial_state]
        states = list(initial_state)
        if len(states) != self._STATES:
            raise ValueError(f"{self.name}: initial_state must hold {self._STATES} arrays of "
                             f"shape {(batch, self.units)}, got {len(states)}")
        out = []
        for i, s in enumerate(states):
            s = np.asarray(s)
            if s.shape != (batch, self.units):
                raise ValueError(f"{self.name}: initial_state[{i}] must have shape "
                                 f"{(batch, self.units)}, got {s.shape}")
            out.append(np.ascontiguousarray(s, dtype=self.dtype))
        return out

    def forward(self, x: Any, training: bool = False, mask: Any = None,
                initial_state: Any = None) -> Any:
        """The last output (batch, units), or every step's output with ``return_sequences``
        (batch, steps, units); a list with the final states after it with ``return_state``.

        ``mask`` (batch, steps), True on real steps, right-padded, overrides the mask of the
        layer before this one; ``initial_state`` is one (batch, units) array per state
        (zeros by default).
        """
        x = self._input(x)
        batch, steps = x.shape[0], x.shape[1]
        if mask is None and self._mask_source is not None:
            mask = self._mask_source.output_mask
        lengths, empty = mask_lengths(mask, batch, steps, self.name)
        self._mask = None if mask is None else np.asarray(mask, dtype=bool)
        states0 = self._initial(initial_state, batch)
        if self.go_backwards:
            x = reverse_in_lengths(x, lengths)
        y, finals, ctx = self._op_forward(x, states0, lengths)
        if empty is not None:
            y[empty] = 0
            for f, s0 in zip(finals, states0):
                f[empty] = s0[empty]
        self._state = {"ctx": ctx, "lengths": lengths, "empty": empty, "batch": batch,
                       "steps": steps}
        out = y if self.return_sequences else finals[0]
        return [out] + list(finals) if self.return_state else out

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        """The gradient of the input (batch, steps, features); fills ``grads``. With
        ``return_state``, ``dy`` is a list: the output's gradient then each final state's
        (None entries for none); ``initial_state_grads`` then holds the initial states'."""
        st = self._state
        if st is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        batch, steps = st["batch"], st["steps"]
        if self.return_state:
            if not isinstance(dy, (list, tuple)) or len(dy) != 1 + self._STATES:
                raise ValueError(f"{self.name}: with return_state, backward takes "
                                 f"{1 + self._STATES} gradients (output, then each state)")
            d_out, d_states = dy[0], list(dy[1:])
        else:
            d_out, d_states = dy, [None] * self._STATES
        seq_shape, state_shape = (batch, steps, self.units), (batch, self.units)
        # dseq stays None without a gradient for the sequence: the op then reads none.
        d_states = [None if d is None else self._grad(d, state_shape, f"d_state[{i}]")
                    for i, d in enumerate(d_states)]
        dseq = None
        if self.return_sequences and d_out is not None:
            dseq = self._grad(d_out, seq_shape, "dy")
        elif d_out is not None:  # the last output is the final h
            d_h = self._grad(d_out, state_shape, "dy")
            d_states[0] = d_h if d_states[0] is None else d_h + d_states[0]
        empty = st["empty"]
        passed = None
        if empty is not None:  # an empty sequence's outputs and final state are constants
            if dseq is not None:
                dseq = dseq.copy()
                dseq[empty] = 0
            passed = [None if d is None else d[empty] for d in d_states]
            d_states = [None if d is None else np.where(empty[:, None], 0, d).astype(self.dtype)
                        for d in d_states]
        grads = self._op_backward(st["ctx"], dseq, d_states)
        dx, d_init, w_grads = grads[0], list(grads[1:1 + self._STATES]), grads[1 + self._STATES:]
        if passed is not None:
            for d0, p in zip(d_init, passed):
                if p is not None:
                    d0[empty] = p
        self.initial_state_grads = d_init
        self._store_grads(w_grads)
        if not need_dx:
            return None
        return reverse_in_lengths(dx, st["lengths"]) if self.go_backwards else dx

    def _grad(self, d: Any, shape: Tuple[int, ...], what: str) -> np.ndarray:
        d = np.asarray(d)
        if d.shape != shape:
            raise ValueError(f"{self.name}: {what} must have shape {shape}, got {d.shape}")
        return np.ascontiguousarray(d, dtype=self.dtype)

    def _store_grads(self, w_grads: Sequence[Any]) -> None:
        n = len(self.params)
        for i in range(n):
            self.grads[i] = w_grads[i]
        for reg, i in self._regularized():
            if reg is not None:
                reg.add_grad(self.grads[i], self.params[i])

    def _weights_grads(self, g: Sequence[Any]) -> Tuple[Any, ...]:
        """An op's ``(dx, *d_states0, dw_ih, dw_hh, db_ih, db_hh)`` without the bias gradients
        of a layer without biases."""
        return tuple(g[:3 + self._STATES]) + (tuple(g[3 + self._STATES:]) if self.use_bias
                                               else ())

    def _op_forward(self, x, states0, lengths):
        raise TypeError(f"{type(self).__name__} does not define _op_forward()")

    def _op_backward(self, ctx, dseq, d_states):
        raise TypeError(f"{type(self).__name__} does not define _op_backward()")

    # -- serialization --------------------------------------------------------------------------

    def get_config(self) -> Dict[str, Any]:
        cfg = super().get_config()
        cfg.update({
            "units": self.units,
            "use_bias": self.use_bias,
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
        })
        return cfg


class SimpleRNN(_Recurrent):
    """Elman RNN: ``h' = activation(kernel x + bias_ih + recurrent_kernel h + bias_hh)``,
    ``activation`` "tanh" (default) or "relu" (PyTorch's ``nn.RNN`` nonlinearity)."""

    _GATES = 1
    _STATES = 1

    def __init__(self, units: int, activation: str = "tanh", **kwargs: Any) -> None:
        super().__init__(units, **kwargs)
        if activation not in ("tanh", "relu"):
            raise ValueError(f"{self.name}: SimpleRNN activation must be 'tanh' or 'relu', got "
                             f"{activation!r}")
        self.activation = activation

    def _op_forward(self, x, states0, lengths):
        (y, h_n), ctx = ops.rnn_forward(x, states0[0], self.kernel, self.recurrent_kernel,
                                        self.bias_ih, self.bias_hh,
                                        nonlinearity=self.activation, lengths=lengths)
        return y, [h_n], ctx

    def _op_backward(self, ctx, dseq, d_states):
        g = ops.rnn_backward(ctx, dseq, d_states[0])
        return self._weights_grads(g)

    def get_config(self):
        cfg = super().get_config()
        cfg["activation"] = self.activation
        return cfg


class LSTM(_Recurrent):
    """Long short-term memory, PyTorch's equations and gate order (i, f, g, o):
    ``c' = f*c + i*g``, ``h' = o*tanh(c')``.

    ``unit_forget_bias`` (default True, as Keras) starts the forget gate's ``bias_ih`` at 1.
    """

    _GATES = 4
    _STATES = 2

    def __init__(self, units: int, unit_forget_bias: bool = True, **kwargs: Any) -> None:
        super().__init__(units, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _init_bias(self) -> None:
        if self.unit_forget_bias:
            h = self.units
            self.bias_ih[h:2 * h] = 1
            self.bias_hh[h:2 * h] = 0

    def _op_forward(self, x, states0, lengths):
        (y, h_n, c_n), ctx = ops.lstm_forward(x, states0[0], states0[1], self.kernel,
                                              self.recurrent_kernel, self.bias_ih,
                                              self.bias_hh, lengths=lengths)
        return y, [h_n, c_n], ctx

    def _op_backward(self, ctx, dseq, d_states):
        g = ops.lstm_backward(ctx, dseq, d_states[0], d_states[1])
        return self._weights_grads(g)

    def get_config(self):
        cfg = super().get_config()
        cfg["unit_forget_bias"] = self.unit_forget_bias
        return cfg


class GRU(_Recurrent):
    """Gated recurrent unit, PyTorch's equations and gate order (r, z, n):
    ``n = tanh(W_n x + b_in + r*(U_n h + b_hn))``, ``h' = (1 - z)*n + z*h`` (Keras's
    ``reset_after=True`` variant, the one cuDNN and PyTorch run)."""

    _GATES = 3
    _STATES = 1

    def _op_forward(self, x, states0, lengths):
        (y, h_n), ctx = ops.gru_forward(x, states0[0], self.kernel, self.recurrent_kernel,
                                        self.bias_ih, self.bias_hh, lengths=lengths)
        return y, [h_n], ctx

    def _op_backward(self, ctx, dseq, d_states):
        g = ops.gru_backward(ctx, dseq, d_states[0])
        return self._weights_grads(g)
