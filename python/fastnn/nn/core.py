"""The layer protocol and the shape layers: ``Layer``, ``Dense``, ``Flatten``, ``Reshape``.

A layer is a forward/backward pair over fastnn.ops:

* ``forward(x, training=False) -> y`` keeps what its backward needs (the op's ctx);
* ``backward(dy, need_dx=True) -> dx`` fills ``layer.grads`` (same order as ``layer.params``) and
  returns the gradient of its input (None with ``need_dx=False``: a first layer skips that GEMM);
* ``params`` / ``grads`` are plain arrays; an optimizer updates ``params`` in place, so a
  custom loop is ``y = layer.forward(x, True); dx = layer.backward(dy);
  opt.step(layer.params, layer.grads)``.

Shapes include the batch dimension as ``None``, as in Keras: ``layer.output_shape == (None, 128)``.
A layer builds itself from its first input when it was not given ``input_shape``.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import ops
from . import _symbolic, initializers, regularizers
from ._activation_spec import resolve_activation

__all__ = ["Layer", "Dense", "Flatten", "Reshape", "get_layer_class"]

_REGISTRY: Dict[str, type] = {}
_NAME_COUNTS: Dict[str, int] = {}
_FLOAT = (np.dtype(np.float32), np.dtype(np.float64))


def _snake(name: str) -> str:
    # Keras's rule, so default names match Keras's: a capital starts a word only when lower-case
    # letters follow it or precede it ("Conv2DTranspose" -> "conv2d_transpose", not
    # "conv2_d_transpose").
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _unique_name(base: str) -> str:
    n = _NAME_COUNTS.get(base, 0)
    _NAME_COUNTS[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def _float_dtype(dtype: Any, what: str) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in _FLOAT:
        raise TypeError(f"{what} must be float32 or float64, got {dt}")
    return dt


def get_layer_class(name: str, custom_objects: Optional[Dict[str, Any]] = None) -> type:
    """The layer class registered under ``name`` (for loading saved models)."""
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"unknown layer class {name!r}; pass custom_objects={{{name!r}: cls}} "
                         f"to load a model with custom layers")
    return cls


def _as_array(x: Any) -> Any:
    if isinstance(x, np.ndarray) or hasattr(x, "__cuda_array_interface__"):
        return x
    return np.asarray(x)


def _host_numpy(v: Any) -> np.ndarray:
    """A NumPy array from an array or a PyTorch tensor (without importing torch: a tensor that
    requires grad refuses ``np.asarray``, so it is detached first)."""
    if not isinstance(v, np.ndarray) and hasattr(v, "detach") and hasattr(v, "cpu"):
        v = v.detach().cpu().numpy()
    return np.asarray(v)


class Layer:
    """Base class. Subclasses define ``_build``, ``compute_output_shape``, ``forward`` and
    ``backward``; layers with arguments extend ``get_config``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def __init__(self, *, name: Optional[str] = None, trainable: bool = True,
                 input_shape: Optional[Sequence[int]] = None, dtype: Any = None) -> None:
        self.name = name if name is not None else _unique_name(_snake(type(self).__name__))
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a string, got {type(self.name).__name__}")
        self.trainable = bool(trainable)
        self.dtype = None if dtype is None else _float_dtype(dtype, "dtype")
        if input_shape is not None:
            if isinstance(input_shape, (int, np.integer)):
                input_shape = (int(input_shape),)
            input_shape = tuple(int(s) for s in input_shape)
            if any(s < 0 for s in input_shape):
                raise ValueError(f"input_shape must be non-negative, got {input_shape}")
        self._given_input_shape: Optional[Tuple[int, ...]] = input_shape
        self.built = False
        self.input_shape: Optional[Tuple[Optional[int], ...]] = None
        self.output_shape: Optional[Tuple[Optional[int], ...]] = None
        self.params: List[np.ndarray] = []
        self.grads: List[np.ndarray] = []
        # Arrays the layer updates itself and no optimizer sees (BatchNormalization's running
        # statistics; PyTorch's "buffers", Keras's non-trainable weights): saved with the weights.
        self.buffers: List[np.ndarray] = []

    # -- building -------------------------------------------------------------------------------

    @property
    def batch_input_shape(self) -> Optional[Tuple[Optional[int], ...]]:
        """``(None, *input_shape)`` when the layer was given ``input_shape``."""
        if self._given_input_shape is None:
            return None
        return (None,) + self._given_input_shape

    def build(self, input_shape: Sequence[Optional[int]]) -> None:
        """Create the parameters for inputs of ``input_shape`` (batch dimension included)."""
        input_shape = tuple(None if s is None else int(s) for s in input_shape)
        if len(input_shape) < 1:
            raise ValueError(f"{self.name}: input_shape must include the batch dimension, "
                             f"got {input_shape}")
        out_shape = self.compute_output_shape(input_shape)
        self._build(input_shape)
        self.input_shape, self.output_shape = input_shape, out_shape
        self.built = True

    def _build(self, input_shape: Tuple[Optional[int], ...]) -> None:
        """Create parameters (layers without any need nothing here)."""

    def compute_output_shape(self, input_shape: Tuple[Optional[int], ...]
                             ) -> Tuple[Optional[int], ...]:
        return tuple(input_shape)

    def _ensure_built(self, x: Any) -> None:
        if not self.built:
            self.build((None,) + tuple(x.shape[1:]))

    # -- computing ------------------------------------------------------------------------------

    def forward(self, x: Any, training: bool = False) -> Any:
        raise TypeError(f"{type(self).__name__} does not define forward()")

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        raise TypeError(f"{type(self).__name__} does not define backward()")

    def __call__(self, x: Any, training: bool = False) -> Any:
        """``forward(x, training)`` on arrays; on symbolic tensors (from ``Input(...)``) it
        records the call for a functional ``Model`` and returns the output tensor."""
        if _symbolic.is_symbolic(x):
            return _symbolic.call_symbolic(self, x)
        return self.forward(x, training)

    # -- functional API -------------------------------------------------------------------------

    def _accepts(self, input_shape: Tuple[Optional[int], ...]) -> bool:
        """Whether this built layer can run on inputs of ``input_shape``: by default the shape
        it was built for (same rank, known sizes equal)."""
        want = self.input_shape
        return want is not None and len(want) == len(input_shape) and all(
            a is None or b is None or a == b for a, b in zip(want[1:], input_shape[1:]))

    def _symbolic_output_shape(self, input_shape: Any) -> Tuple[Optional[int], ...]:
        """Build the layer for ``input_shape`` (a shape, or a list of shapes for a layer with
        several inputs), or check that the built layer accepts it; the output shape."""
        if not self.built:
            self.build(input_shape)
            return self.output_shape
        if not self._accepts(input_shape):
            raise ValueError(f"layer {self.name!r} was built for inputs {self.input_shape} "
                             f"and cannot be called on inputs of shape {input_shape}")
        return self.compute_output_shape(input_shape)

    def _call_state(self) -> Any:
        """What one forward call left for its backward (a shallow copy of the attributes), so a
        layer shared between several calls of a model can run the backward of each call."""
        return dict(self.__dict__)

    def _set_call_state(self, state: Any) -> None:
        self.__dict__.update(state)

    def regularization_loss(self) -> float:
        """The penalty this layer adds to the loss (0 without regularizers)."""
        return 0.0

    @property
    def has_regularizer(self) -> bool:
        return False

    # -- weights --------------------------------------------------------------------------------

    @property
    def weights(self) -> List[np.ndarray]:
        """Every weight array, in ``get_weights`` order: ``params`` then ``buffers``."""
        return self.params + self.buffers

    def get_weights(self) -> List[np.ndarray]:
        """Copies of the parameters, then of the buffers (non-trainable state)."""
        return [p.copy() for p in self.weights]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Copy ``weights`` (``get_weights`` order) into the arrays in place (optimizer state
        stays attached)."""
        weights = list(weights)
        mine = self.weights
        if len(weights) != len(mine):
            raise ValueError(f"{self.name} has {len(mine)} weight arrays, got "
                             f"{len(weights)}" + ("" if self.built else
                                                   " (the layer is not built yet)"))
        for i, (p, w) in enumerate(zip(mine, weights)):
            w = np.asarray(w)
            if w.shape != p.shape:
                raise ValueError(f"{self.name}: weight {i} must have shape {p.shape}, "
                                 f"got {w.shape}")
            p[...] = w

    def count_params(self) -> int:
        """Values in every weight array, buffers included (as Keras counts them)."""
        return int(sum(p.size for p in self.weights))

    def count_trainable_params(self) -> int:
        """Values an optimizer updates: the parameters of a trainable layer, else 0."""
        return int(sum(p.size for p in self.params)) if self.trainable else 0

    # -- PyTorch interop -------------------------------------------------------------------------

    # (state_dict key, attribute) pairs of the PyTorch module with this layer's math, in
    # PyTorch's order; the arrays already have PyTorch's layout, so nothing is transposed.
    _TORCH_KEYS: Tuple[Tuple[str, str], ...] = ()

    def _torch_arrays(self) -> Dict[str, np.ndarray]:
        if not self.built:
            raise ValueError(f"{self.name} is not built yet: build it (input_shape=..., "
                             f"layer.build(...) or model.build(...)) before moving weights")
        if self.weights and not self._TORCH_KEYS:
            raise TypeError(f"{type(self).__name__} has no PyTorch counterpart to exchange "
                            f"weights with")
        out = {}
        for key, attr in self._TORCH_KEYS:
            a = getattr(self, attr, None)
            if a is not None:  # no bias, or BatchNormalization without scale/center
                out[key] = a
        return out

    def torch_weights(self) -> Dict[str, np.ndarray]:
        """Copies of the weights under the keys, and in the layouts, of the ``state_dict()`` of
        the matching PyTorch module (``nn.Linear``, ``nn.Conv1d``/``Conv2d``,
        ``nn.ConvTranspose2d``, ``nn.BatchNorm1d``/``BatchNorm2d``); ``{}`` for a layer without
        weights. Load them with ``module.load_state_dict({k: torch.from_numpy(v) ...})``."""
        return {k: a.copy() for k, a in self._torch_arrays().items()}

    def set_torch_weights(self, weights: Any) -> None:
        """Copy a PyTorch module's weights into this (built) layer, in place.

        ``weights``: the module's ``state_dict()`` (tensors or arrays; BatchNorm's
        ``num_batches_tracked`` is ignored) or a sequence of arrays in that order. Shapes must
        match exactly; nothing is copied unless every array fits.
        """
        mine = self._torch_arrays()
        if isinstance(weights, dict):
            given = {k: v for k, v in weights.items() if k != "num_batches_tracked"}
            if set(given) != set(mine):
                raise ValueError(f"{self.name}: expected PyTorch weights {sorted(mine)}, got "
                                 f"{sorted(given)}")
        else:
            values = list(weights)
            if len(values) != len(mine):
                raise ValueError(f"{self.name}: expected {len(mine)} PyTorch arrays "
                                 f"({', '.join(mine)}), got {len(values)}")
            given = dict(zip(mine, values))
        arrays = {}
        for key, dst in mine.items():
            a = _host_numpy(given[key])
            if a.shape != dst.shape:
                raise ValueError(f"{self.name}: PyTorch {key!r} must have shape {dst.shape}, "
                                 f"got {a.shape}")
            arrays[key] = a
        for key, dst in mine.items():
            dst[...] = arrays[key]

    # -- serialization --------------------------------------------------------------------------

    def get_config(self) -> Dict[str, Any]:
        cfg: Dict[str, Any] = {"name": self.name, "trainable": self.trainable}
        if self.dtype is not None:
            cfg["dtype"] = self.dtype.name
        if self._given_input_shape is not None:
            cfg["input_shape"] = list(self._given_input_shape)
        return cfg

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "Layer":
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} output_shape={self.output_shape}>"


class _KernelBiasLayer(Layer):
    """A layer with a kernel, an optional bias and a regularizer for each (Dense and the
    convolutions): the regularization loss and the way their gradients are stored."""

    kernel_regularizer: Any = None
    bias_regularizer: Any = None

    @property
    def has_regularizer(self) -> bool:
        return self.kernel_regularizer is not None or self.bias_regularizer is not None

    def regularization_loss(self) -> float:
        total = 0.0
        if self.kernel_regularizer is not None and self.kernel is not None:
            total += self.kernel_regularizer(self.kernel)
        if self.bias_regularizer is not None and self.bias is not None:
            total += self.bias_regularizer(self.bias)
        return total

    def _store_grads(self, dw: Any, db: Any) -> None:
        """grads[0] = dw and grads[1] = db (when there is a bias), regularizers' terms added."""
        if self.kernel_regularizer is not None:
            self.kernel_regularizer.add_grad(dw, self.kernel)
        self.grads[0] = dw
        if db is not None:
            if self.bias_regularizer is not None:
                self.bias_regularizer.add_grad(db, self.bias)
            self.grads[1] = db


class Dense(_KernelBiasLayer):
    """Fully connected: ``activation(x @ kernel.T + bias)``, one fused op each way.

    ``kernel`` has shape ``(units, in_features)`` (the layout of ``ops.linear`` and of PyTorch's
    ``nn.Linear``; a Keras kernel is its transpose), and ``get_weights()`` returns
    ``[kernel, bias]`` in that layout. ``activation`` is a name from
    :data:`fastnn.nn.activations.NAMES`: the elementwise ones run inside the GEMM epilogue;
    ``softmax`` and ``threshold`` run as a second op. ``alpha`` is the activation's parameter
    (leaky_relu slope, elu alpha, threshold value). Inputs of any rank ``(..., in_features)``
    work; ``dtype`` is the parameters' dtype (inputs are cast to it).

    ``torch_weights()`` / ``set_torch_weights(linear.state_dict())`` exchange ``weight``
    ``(out, in)`` and ``bias`` with ``torch.nn.Linear`` unchanged (the same layout).
    """

    _TORCH_KEYS = (("weight", "kernel"), ("bias", "bias"))

    def __init__(self, units: int, activation: Optional[str] = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, bias_regularizer: Any = None,
                 input_shape: Optional[Sequence[int]] = None, dtype: Any = "float32", *,
                 alpha: Optional[float] = None, name: Optional[str] = None,
                 trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"units must be a positive int, got {units!r}")
        self.units = int(units)
        self.activation = resolve_activation(activation, alpha)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel: Optional[np.ndarray] = None
        self.bias: Optional[np.ndarray] = None
        self._ctx = None
        self._post_ctx = None

    @property
    def _rows(self) -> int:
        return self.units

    @property
    def head_activation(self) -> Optional[str]:
        """The output activation a loss may fuse with (softmax / sigmoid), else None."""
        return self.activation.name

    def _accepts(self, input_shape):
        return len(input_shape) >= 2 and input_shape[-1] == self.input_shape[-1]

    def compute_output_shape(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"{self.name}: Dense needs inputs of shape (batch, ..., features), "
                             f"got {input_shape}")
        if input_shape[-1] is None:
            raise ValueError(f"{self.name}: the last input dimension must be known")
        return tuple(input_shape[:-1]) + (self.units,)

    def _build(self, input_shape):
        fan_in = int(input_shape[-1])
        dt = self.dtype
        self.kernel = np.ascontiguousarray(self.kernel_initializer((self._rows, fan_in), dt))
        self.params = [self.kernel]
        self.grads = [np.zeros_like(self.kernel)]
        if self.use_bias:
            self.bias = np.ascontiguousarray(self.bias_initializer((self._rows,), dt))
            self.params.append(self.bias)
            self.grads.append(np.zeros_like(self.bias))

    def _input(self, x: Any) -> Any:
        x = _as_array(x)
        if not self.built:
            self._ensure_built(x)
        if x.dtype != self.dtype and isinstance(x, np.ndarray):
            x = x.astype(self.dtype)
        return x

    def forward(self, x, training=False):
        x = self._input(x)
        act = self.activation
        y, self._ctx = ops.linear_forward(x, self.kernel, self.bias, act.fused,
                                          alpha=act.fused_alpha)
        if act.post_forward is not None:
            y, self._post_ctx = act.post_forward(y)
        else:
            self._post_ctx = None
        return y

    def forward_logits(self, x, training=False):
        """The output before the head activation (the model fuses softmax/sigmoid into the
        loss); ``backward`` then expects the gradient of these logits."""
        x = self._input(x)
        y, self._ctx = ops.linear_forward(x, self.kernel, self.bias, None)
        self._post_ctx = None
        return y

    def backward(self, dy, need_dx=True):
        if self._ctx is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        if self._post_ctx is not None:
            dy = self.activation.post_backward(self._post_ctx, dy)
        dx, dw, db = ops.linear_backward(self._ctx, dy, need_dx=need_dx)
        self._store_grads(dw, db)
        return dx

    def get_config(self):
        cfg = super().get_config()
        cfg.update({
            "units": self.units,
            "activation": self.activation.name,
            "alpha": self.activation.alpha,
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
        })
        return cfg


class Flatten(Layer):
    """``(batch, d1, d2, ...) -> (batch, d1*d2*...)``; a view, no copy."""

    def __init__(self, *, name=None, trainable=True, input_shape=None, dtype=None) -> None:
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        self._in_shape = None

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        if any(s is None for s in rest):
            return (input_shape[0], None)
        return (input_shape[0], int(np.prod(rest, dtype=np.int64)))

    def forward(self, x, training=False):
        x = _as_array(x)
        self._ensure_built(x)
        self._in_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, need_dx=True):
        if self._in_shape is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        return dy.reshape(self._in_shape) if need_dx else None


class Reshape(Layer):
    """``(batch, ...) -> (batch, *target_shape)``; one entry may be -1 (inferred)."""

    def __init__(self, target_shape: Sequence[int], *, name=None, trainable=True,
                 input_shape=None, dtype=None) -> None:
        super().__init__(name=name, trainable=trainable, input_shape=input_shape, dtype=dtype)
        if isinstance(target_shape, (int, np.integer)):
            target_shape = (int(target_shape),)
        self.target_shape = tuple(int(s) for s in target_shape)
        if sum(s == -1 for s in self.target_shape) > 1 or any(
                s < -1 for s in self.target_shape):
            raise ValueError(f"target_shape may hold non-negative sizes and at most one -1, "
                             f"got {self.target_shape}")
        self._in_shape = None

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        if any(s is None for s in rest):
            return (input_shape[0],) + self.target_shape
        n = int(np.prod(rest, dtype=np.int64))
        known = int(np.prod([s for s in self.target_shape if s != -1], dtype=np.int64))
        if -1 in self.target_shape:
            if known == 0 or n % known:
                raise ValueError(f"{self.name}: cannot reshape {tuple(rest)} ({n} values) "
                                 f"to {self.target_shape}")
            shape = tuple(n // known if s == -1 else s for s in self.target_shape)
        else:
            if known != n:
                raise ValueError(f"{self.name}: cannot reshape {tuple(rest)} ({n} values) to "
                                 f"{self.target_shape} ({known} values)")
            shape = self.target_shape
        return (input_shape[0],) + shape

    def forward(self, x, training=False):
        x = _as_array(x)
        self._ensure_built(x)
        self._in_shape = x.shape
        return x.reshape((x.shape[0],) + self.output_shape[1:])

    def backward(self, dy, need_dx=True):
        if self._in_shape is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        return dy.reshape(self._in_shape) if need_dx else None

    def get_config(self):
        cfg = super().get_config()
        cfg["target_shape"] = list(self.target_shape)
        return cfg
