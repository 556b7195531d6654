"""``Sequential``: a stack of layers with the Keras workflow (compile, fit, evaluate, predict).

Two levels of use:

* ``model.compile(optimizer, loss, metrics)`` then ``fit`` / ``evaluate`` / ``predict``, or one
  step at a time with ``train_on_batch(x, y)`` / ``test_on_batch(x, y)``;
* custom loops: ``y = model.forward(x, training=True)``, ``dx = model.backward(dy)`` (fills each
  layer's ``grads`` and returns the gradient of the input), ``opt.step(model.params,
  model.grads)``. Two models can be chained this way (a GAN's generator trains through its
  discriminator's ``backward``).

The training loop itself (shared with the functional :class:`~fastnn.nn.Model`) lives in
:mod:`fastnn.nn.training`. Here each layer runs one op forward and one backward, a softmax
(sigmoid) head is fused into its crossentropy loss (training computes the loss from the logits),
and the first layer with parameters skips its input gradient.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import metrics as _metrics
from . import saving as _saving
from ._fusion import backward_steps, first_pair_backward, forward_steps
from .core import Layer, _unique_name, get_layer_class
from .masking import link_masks
from .training import TrainingMixin

__all__ = ["Sequential"]


class _Plan:
    """Everything one training/evaluation step needs, resolved once (bound methods, lists)."""

    def __init__(self, model: "Sequential") -> None:
        layers = model.layers
        loss = model.loss
        last = layers[-1]
        head = getattr(last, "head_activation", None)
        self.head = head
        self.fused = (loss is not None and loss.fusable_head is not None
                      and head == loss.fusable_head and hasattr(last, "forward_logits"))
        self.loss = loss.logits_version() if self.fused else loss
        steps = backward_steps(layers)
        self.forward = forward_steps(layers, steps)
        if self.fused:
            self.forward[-1] = last.forward_logits
        trainable = [i for i, layer in enumerate(layers) if layer.trainable and layer.params]
        first = trainable[0] if trainable else len(layers)
        # Layers below the first trainable one need no backward at all; that one needs no dx.
        pair = first_pair_backward(layers, steps, first) if trainable else None
        if pair is not None:  # the first layer and its pooling in one step
            steps = list(steps)
            steps[first + 1], steps[first] = pair
        self.backward = steps[first + 1:][::-1]
        self.backward_first = steps[first] if trainable else None
        self.grad_layers = [layers[i] for i in trainable]
        self.params = [p for layer in self.grad_layers for p in layer.params]
        # A distributed optimizer (``grad_ready``) hears of each layer's gradients as soon as
        # its backward is done, to start their allreduce under the rest of the backward; the
        # plain loop above stays as it is. Entries: (backward, layer or None, first param index).
        self.sync = getattr(model.optimizer, "grad_ready", None) and model.optimizer
        start, starts = 0, {}
        for layer in self.grad_layers:
            starts[id(layer)] = start
            start += len(layer.params)
        self.backward_hooked = [(step, layer if id(layer) in starts else None,
                                 starts.get(id(layer), 0))
                                for step, layer in zip(steps[first + 1:][::-1],
                                                       layers[first + 1:][::-1])]
        self.first_start = (layers[first], 0) if trainable else None
        self.reg_layers = [layer for layer in layers if getattr(layer, "has_regularizer", False)]
        self.metrics = list(model.metrics)
        self.prob_metrics = any(m.needs_probabilities for m in self.metrics) and self.fused

    def grads(self) -> List[Any]:
        return [g for layer in self.grad_layers for g in layer.grads]

    def infer(self, x: Any) -> Any:
        h = x
        for f in self.forward:
            h = f(h, False)
        return h

    def loss_value(self, out: Any, y: Any) -> float:
        return self.loss.forward(out, y)[0]

    def regularization(self) -> float:
        total = 0.0
        for layer in self.reg_layers:
            total += layer.regularization_loss()
        return total

    def update_metrics(self, y: Any, out: Any) -> None:
        if self.prob_metrics:
            probs = _metrics.probabilities(self.head, out)
            for m in self.metrics:
                if m.needs_probabilities:
                    m.update(y, probs, False)
                else:
                    m.update(y, out, True)
        else:
            fused = self.fused
            for m in self.metrics:
                m.update(y, out, fused)


@_saving.register_model_class
class Sequential(TrainingMixin):
    """A linear stack of layers: ``Sequential([Dense(128, "relu", input_shape=(784,)),
    Dropout(0.2), Dense(10, "softmax")])``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A subclass saves under its own class name, so load_model must know it too.
        super().__init_subclass__(**kwargs)
        _saving.register_model_class(cls)

    def __init__(self, layers: Optional[Sequence[Layer]] = None,
                 name: Optional[str] = None) -> None:
        self.name = name if name is not None else _unique_name("sequential")
        self.layers: List[Layer] = []
        self.built = False
        self._init_training()
        self._build_shape: Optional[Tuple[Optional[int], ...]] = None
        for layer in layers or ():
            self.add(layer)

    # -- structure ------------------------------------------------------------------------------

    def add(self, layer: Layer) -> None:
        """Append a layer (built at once when the model already is)."""
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a Layer, got {type(layer).__name__}")
        if any(existing.name == layer.name for existing in self.layers):
            raise ValueError(f"the model already has a layer named {layer.name!r}; layer names "
                             f"must be unique")
        if self.built:
            if layer.built:
                self._check_chain(self.layers[-1].output_shape, layer)
            else:
                layer.build(self.layers[-1].output_shape)
        self.layers.append(layer)
        self._plan = None
        link_masks(self.layers)
        if not self.built and self.layers[0].batch_input_shape is not None:
            self.build()  # as in Keras: a known input shape builds the model at once

    def pop(self) -> Layer:
        if not self.layers:
            raise ValueError("the model has no layers to pop")
        self._plan = None
        layer = self.layers.pop()
        if not self.layers:
            self.built = False
        return layer

    @staticmethod
    def _check_chain(shape, layer: Layer) -> None:
        want = layer.input_shape
        if want is not None and len(want) == len(shape) and all(
                a is None or b is None or a == b for a, b in zip(want[1:], shape[1:])):
            return
        raise ValueError(f"layer {layer.name!r} was built for inputs {want} but the layer "
                         f"before it outputs {shape}")

    def build(self, input_shape: Optional[Sequence[Optional[int]]] = None) -> None:
        """Build every layer for ``input_shape`` (batch dimension included; default: the first
        layer's ``input_shape``)."""
        if not self.layers:
            raise ValueError("the model has no layers; add some before building it")
        if input_shape is None:
            input_shape = self.layers[0].batch_input_shape
            if input_shape is None:
                raise ValueError("the model's input shape is unknown: give the first layer "
                                 "input_shape=..., call build((None, ...)), or fit/predict "
                                 "on data")
        shape = tuple(None if s is None else int(s) for s in input_shape)
        self._build_shape = shape
        for layer in self.layers:
            if layer.built:
                self._check_chain(shape, layer)
            else:
                layer.build(shape)
            shape = layer.output_shape
        link_masks(self.layers)
        self.built = True
        self._plan = None

    @property
    def input_shape(self) -> Optional[Tuple[Optional[int], ...]]:
        return self.layers[0].input_shape if self.built else None

    @property
    def output_shape(self) -> Optional[Tuple[Optional[int], ...]]:
        return self.layers[-1].output_shape if self.built else None

    @property
    def dtype(self) -> np.dtype:
        """The parameters' dtype: inputs are converted to it."""
        for layer in self.layers:
            if layer.dtype is not None:
                return layer.dtype
        return np.dtype(np.float32)

    def set_weights(self, weights: Sequence[Any]) -> None:
        weights = list(weights)
        if not self.built:
            self.build()
        self._set_layer_weights(weights)

    # -- compile --------------------------------------------------------------------------------

    def _get_plan(self) -> _Plan:
        if self._plan is None:
            self._check_trainable_activations()
            self._plan = _Plan(self)
        return self._plan

    # -- data checks ----------------------------------------------------------------------------

    def _prepare_x(self, x: Any, what: str = "x") -> np.ndarray:
        if x is None:
            raise ValueError(f"{what} is required")
        if not self.layers:
            raise ValueError("the model has no layers")
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{what} must be numeric, got dtype {x.dtype}")
        if x.ndim < 1:
            raise ValueError(f"{what} must have a batch dimension, got a scalar")
        if not self.built:
            first = self.layers[0].batch_input_shape
            self.build(first if first is not None else (None,) + x.shape[1:])
        want = self.input_shape
        if len(want) != x.ndim or any(w is not None and w != s
                                      for w, s in zip(want[1:], x.shape[1:])):
            raise ValueError(f"{what} has shape {x.shape} but the model expects inputs of "
                             f"shape {want}")
        convert = getattr(self.layers[0], "convert_input", None)  # Embedding: int64 ids
        if convert is not None:
            return convert(x)
        return np.ascontiguousarray(x, dtype=self.dtype)

    def _prepare_y(self, y: Any, x: np.ndarray, what: str = "") -> np.ndarray:
        y = np.asarray(y)
        if y.ndim < 1 or len(y) != len(x):
            raise ValueError(f"{what}x and {what}y must have the same number of samples, got "
                             f"{len(x)} and {len(y) if y.ndim else 'a scalar'}")
        return self.loss.prepare_targets(y, self.output_shape, self.dtype)

    # -- inference ------------------------------------------------------------------------------

    def forward(self, x: Any, training: bool = False) -> Any:
        """Run every layer (each keeps what its backward needs) and return the output."""
        if not self.built:
            self._prepare_x(x)
        h = x
        for layer in self.layers:
            h = layer.forward(h, training)
        return h

    def __call__(self, x: Any, training: bool = False) -> Any:
        return self.forward(x, training)

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        """Backpropagate ``dy`` (the gradient of the output of the last ``forward``) through
        every layer; fills ``layer.grads`` and returns the gradient of the input."""
        d = dy
        last = len(self.layers) - 1
        for i in range(last, -1, -1):
            d = self.layers[i].backward(d, need_dx if i == 0 else True)
        return d

    def _predict_batch(self, x: np.ndarray) -> Any:
        h = x
        for layer in self.layers:
            h = layer.forward(h, False)
        return h

    def _empty_output(self) -> np.ndarray:
        return np.empty((0,) + tuple(self.output_shape[1:]), self.dtype)

    def predict_on_batch(self, x: Any) -> np.ndarray:
        return self.forward(self._prepare_x(x), False)

    # -- training -------------------------------------------------------------------------------

    def _train_step(self, plan: _Plan, x: np.ndarray, y: np.ndarray) -> Tuple[float, Any]:
        h = x
        for f in plan.forward:
            h = f(h, True)
        value, ctx = plan.loss.forward(h, y)
        d = plan.loss.backward(ctx)
        if plan.sync:
            return self._synced_backward(plan, value, d), h
        for b in plan.backward:
            d = b(d)
        if plan.backward_first is not None:
            plan.backward_first(d, False)
        if plan.reg_layers:
            value += plan.regularization()
        self.optimizer.step(plan.params, plan.grads())
        return value, h

    @staticmethod
    def _synced_backward(plan: _Plan, value: float, d: Any) -> float:
        """The backward pass and step with a distributed optimizer: each layer's gradients go
        to it as soon as they exist; returns the loss averaged over the ranks."""
        sync = plan.sync
        sync.begin_step(plan.params, value)
        ready, progress = sync.grad_ready, sync.progress
        for b, layer, start in plan.backward_hooked:
            d = b(d)
            if layer is not None:
                for j, g in enumerate(layer.grads):
                    ready(start + j, g)
            progress()
        if plan.first_start is not None:
            plan.backward_first(d, False)
            for j, g in enumerate(plan.first_start[0].grads):
                ready(j, g)
        reg = plan.regularization() if plan.reg_layers else 0.0
        sync.step(plan.params, plan.grads())
        return sync.loss + reg

    # -- reporting and saving -------------------------------------------------------------------

    def summary(self, print_fn: Any = None) -> None:
        """Print a table of layers, output shapes and parameter counts, with totals."""
        print_fn = print_fn or print
        if not self.built:
            try:
                self.build()
            except ValueError:
                raise ValueError("the model is not built yet: give the first layer "
                                 "input_shape=..., call build(), or fit it first") from None
        rows = [(f" {layer.name} ({type(layer).__name__})", str(layer.output_shape),
                 f"{layer.count_params():,}") for layer in self.layers]
        for line in self._summary_lines(rows, (" Layer (type)", "Output Shape", "Param #"),
                                        self.layers):
            print_fn(line)

    def get_config(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                       for layer in self.layers],
            "build_input_shape": list(self._build_shape) if self.built else None,
        }

    @classmethod
    def from_config(cls, config: Dict[str, Any],
                    custom_objects: Optional[Dict[str, Any]] = None) -> "Sequential":
        layers = []
        for spec in config["layers"]:
            layer_cls = get_layer_class(spec["class_name"], custom_objects)
            layers.append(layer_cls.from_config(dict(spec["config"])))
        model = cls(layers, name=config.get("name"))
        shape = config.get("build_input_shape")
        if shape is not None:
            model.build(tuple(shape))
        return model

    def __repr__(self) -> str:
        return f"<Sequential {self.name!r}: {len(self.layers)} layers>"
