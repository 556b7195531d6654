"""``Sequential``: a stack of layers with the Keras workflow (compile, fit, evaluate, predict).

Two levels of use:

* ``model.compile(optimizer, loss, metrics)`` then ``fit`` / ``evaluate`` / ``predict``, or one
  step at a time with ``train_on_batch(x, y)`` / ``test_on_batch(x, y)``;
* custom loops: ``y = model.forward(x, training=True)``, ``dx = model.backward(dy)`` (fills each
  layer's ``grads`` and returns the gradient of the input), ``opt.step(model.params,
  model.grads)``. Two models can be chained this way (a GAN's generator trains through its
  discriminator's ``backward``).

The fit loop is written for small-batch speed: inputs are converted to the model's dtype once,
each epoch gathers its shuffled batches into one reused buffer, each layer runs one op forward and
one backward, a softmax (sigmoid) head is fused into its crossentropy loss (training computes the
loss from the logits), the first layer with parameters skips its input gradient, and the progress
bar redraws at most every 50 ms.
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import optim
from .. import random as _random
from . import callbacks as _callbacks
from . import losses as _losses
from . import metrics as _metrics
from . import saving as _saving
from .core import Layer, _unique_name, get_layer_class
from .masking import link_masks

__all__ = ["Sequential"]

_REFRESH_S = 0.05   # progress-bar redraw interval
_CHECK_EVERY = 16   # steps between clock reads for the progress bar


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _fmt_logs(logs: Dict[str, float]) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


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
        self.forward = [layer.forward for layer in layers]
        if self.fused:
            self.forward[-1] = last.forward_logits
        trainable = [i for i, layer in enumerate(layers) if layer.trainable and layer.params]
        first = trainable[0] if trainable else len(layers)
        # Layers below the first trainable one need no backward at all; that one needs no dx.
        self.backward = [layer.backward for layer in reversed(layers[first + 1:])]
        self.backward_first = layers[first].backward if trainable else None
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
        self.backward_hooked = [(layer.backward, layer if id(layer) in starts else None,
                                 starts.get(id(layer), 0))
                                for layer in reversed(layers[first + 1:])]
        self.first_start = (layers[first], 0) if trainable else None
        self.reg_layers = [layer for layer in layers if getattr(layer, "has_regularizer", False)]
        self.metrics = list(model.metrics)
        self.prob_metrics = any(m.needs_probabilities for m in self.metrics) and self.fused

    def grads(self) -> List[Any]:
        return [g for layer in self.grad_layers for g in layer.grads]

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


class _World:
    """What ``fit(distributed=True)`` needs from the ranks: set-up (broadcasts, the
    distributed optimizer in the plan), each epoch's shard, and the end-of-epoch sums."""

    def __init__(self, model: "Sequential", plan: _Plan) -> None:
        from .. import distributed as dist
        self.dist = dist
        self.rank, self.size = dist.rank(), dist.size()
        self.plan, self.model = plan, model
        opt = model.optimizer
        self.saved_sync = plan.sync
        if self.size > 1 and not getattr(opt, "grad_ready", None):
            plan.sync = dist.DistributedOptimizer(opt)  # alone, the plain loop is the fastest
        dist.broadcast_weights(model)
        dist.broadcast_optimizer_state(opt, plan.params)
        self.buffers = [b for layer in model.layers for b in layer.buffers]

    def close(self) -> None:
        self.plan.sync = self.saved_sync

    def shard(self, n: int, batch_size: int, shuffle: bool) -> np.ndarray:
        """This rank's sample indices for the epoch, batch after batch: part ``rank`` of
        every global batch of one order that all ranks share."""
        if shuffle:
            seed = np.array([_random.draw_seed() if self.rank == 0 else 0], np.int64)
            self.dist.broadcast(seed)
            order = np.random.default_rng(int(seed[0])).permutation(n)
        else:
            order = np.arange(n)
        if self.size == 1:
            return order
        g = batch_size * self.size
        full = (n // g) * g
        parts = [order[:full].reshape(-1, self.size, batch_size)[:, self.rank].reshape(-1)]
        if full < n:
            last = order[full:]
            per = -(-len(last) // self.size)
            last = np.concatenate([last, order[:per * self.size - len(last)]])
            parts.append(last[self.rank * per:(self.rank + 1) * per])
        return np.concatenate(parts)

    def part(self, val: Tuple[np.ndarray, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        n = len(val[0])
        lo, hi = n * self.rank // self.size, n * (self.rank + 1) // self.size
        return val[0][lo:hi], val[1][lo:hi]

    def reduce_logs(self, total: float, seen: int, metrics: List[_metrics.Metric]
                    ) -> Tuple[float, int]:
        """Sums of the loss, the sample count and every metric's running sums over ranks."""
        if self.size == 1:
            return total, seen
        v = [total, seen]
        for m in metrics:
            v += [m.total, m.count]
        v = self.dist.allreduce(np.array(v, np.float64), op="sum")
        for i, m in enumerate(metrics):
            m.total, m.count = float(v[2 + 2 * i]), int(round(v[3 + 2 * i]))
        return float(v[0]), int(round(v[1]))

    def average_buffers(self) -> None:
        """Running statistics (BatchNormalization) saw only this rank's samples: average."""
        if self.size > 1:
            for b in self.buffers:
                if b.flags.c_contiguous:
                    self.dist.allreduce(b, op="mean", out=b)
                else:
                    b[...] = self.dist.allreduce(b, op="mean")


@_saving.register_model_class
class Sequential:
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
        self.optimizer: Optional[optim.Optimizer] = None
        self.loss: Optional[_losses.Loss] = None
        self.metrics: List[_metrics.Metric] = []
        self.stop_training = False
        self.history: Optional[_callbacks.History] = None
        self._compile_config: Optional[Dict[str, Any]] = None
        self._plan: Optional[_Plan] = None
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

    @property
    def params(self) -> List[np.ndarray]:
        """Trainable parameters of every layer, in order (what ``optimizer.step`` takes)."""
        return [p for layer in self.layers if layer.trainable for p in layer.params]

    @property
    def grads(self) -> List[np.ndarray]:
        """Their gradients from the last ``backward``, in the same order."""
        return [g for layer in self.layers if layer.trainable for g in layer.grads]

    def count_params(self) -> int:
        return int(sum(layer.count_params() for layer in self.layers))

    def get_weights(self) -> List[np.ndarray]:
        """Copies of every layer's weights, in layer order (Dense: kernel ``(units, in)``,
        then bias; a layer's buffers, such as BatchNormalization's running statistics, after
        its parameters)."""
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights: Sequence[Any]) -> None:
        weights = list(weights)
        if not self.built:
            self.build()
        want = sum(len(layer.weights) for layer in self.layers)
        if len(weights) != want:
            raise ValueError(f"the model has {want} weight arrays, got {len(weights)}")
        i = 0
        for layer in self.layers:
            k = len(layer.weights)
            layer.set_weights(weights[i:i + k])
            i += k

    # -- compile --------------------------------------------------------------------------------

    def compile(self, optimizer: Any = "rmsprop", loss: Any = None,
                metrics: Optional[Sequence[Any]] = None) -> None:
        """Choose the optimizer (name or object), the loss (name or object) and metrics."""
        self.optimizer = optim.get(optimizer)
        self.loss = None if loss is None else _losses.get(loss)
        if metrics is not None and isinstance(metrics, (str, _metrics.Metric)):
            metrics = [metrics]
        self.metrics = [_metrics.get(m, self.loss) for m in (metrics or [])]
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names) or "loss" in names:
            raise ValueError(f"metric names must be unique and not 'loss', got {names}")
        self._compile_config = {
            "optimizer": optim.serialize(self.optimizer),
            "loss": None if self.loss is None else _losses.serialize(self.loss),
            "metrics": [m if isinstance(m, str) else _metrics.serialize(m)
                        for m in (metrics or [])],
        }
        self._plan = None

    def _require_compiled(self, need_optimizer: bool = True) -> None:
        if self.loss is None or (need_optimizer and self.optimizer is None):
            raise RuntimeError("compile the model with an optimizer and a loss first: "
                               "model.compile(optimizer='adam', loss=...)")

    def _get_plan(self) -> _Plan:
        if self._plan is None:
            for layer in self.layers:
                act = getattr(layer, "activation", None)
                if getattr(act, "name", None) == "threshold":
                    raise ValueError(f"layer {layer.name!r} uses the threshold (step) "
                                     f"activation, which has no gradient: it cannot be trained "
                                     f"(use sigmoid, tanh or relu)")
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

    def _prepare_xy(self, x: Any, y: Any, what: str = "") -> Tuple[np.ndarray, np.ndarray]:
        x = self._prepare_x(x, what + "x")
        if y is None:
            raise ValueError(f"{what}y is required to train or evaluate")
        y = np.asarray(y)
        if y.ndim < 1 or len(y) != len(x):
            raise ValueError(f"{what}x and {what}y must have the same number of samples, got "
                             f"{len(x)} and {len(y) if y.ndim else 'a scalar'}")
        y = self.loss.prepare_targets(y, self.output_shape, self.dtype)
        return x, y

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

    def predict(self, x: Any, batch_size: int = 32, verbose: int = 0) -> np.ndarray:
        """The model's output for ``x``, computed ``batch_size`` samples at a time."""
        batch_size = _positive_int(batch_size, "batch_size")
        x = self._prepare_x(x)
        n = len(x)
        out = None
        for lo in range(0, n, batch_size):
            h = x[lo:lo + batch_size]
            for layer in self.layers:
                h = layer.forward(h, False)
            if out is None:
                out = np.empty((n,) + h.shape[1:], h.dtype)
            out[lo:lo + len(h)] = h
        if out is None:
            out = np.empty((0,) + tuple(self.output_shape[1:]), self.dtype)
        return out

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

    def _eval_batches(self, plan: _Plan, x: np.ndarray, y: np.ndarray,
                      batch_size: int, reduce: Any = None) -> Dict[str, float]:
        for m in plan.metrics:
            m.reset()
        total, n = 0.0, len(x)
        for lo in range(0, n, batch_size):
            xb, yb = x[lo:lo + batch_size], y[lo:lo + batch_size]
            h = xb
            for f in plan.forward:
                h = f(h, False)
            value, _ = plan.loss.forward(h, yb)
            total += value * len(xb)
            plan.update_metrics(yb, h)
        if reduce is not None:  # distributed: sums over every rank's part
            total, n = reduce(total, n, plan.metrics)
        logs = {"loss": (total / n if n else float("nan")) + plan.regularization()}
        for m in plan.metrics:
            logs[m.name] = m.result()
        return logs

    @staticmethod
    def _result(logs: Dict[str, float], return_dict: bool) -> Union[float, List[float], Dict]:
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def train_on_batch(self, x: Any, y: Any, return_dict: bool = False
                       ) -> Union[float, List[float], Dict[str, float]]:
        """One optimizer step on this batch; returns its loss (and metrics) like ``evaluate``."""
        self._require_compiled()
        x, y = self._prepare_xy(x, y)
        plan = self._get_plan()
        value, out = self._train_step(plan, x, y)
        logs = {"loss": value}
        for m in plan.metrics:
            m.reset()
        plan.update_metrics(y, out)
        for m in plan.metrics:
            logs[m.name] = m.result()
        return self._result(logs, return_dict)

    def test_on_batch(self, x: Any, y: Any, return_dict: bool = False
                      ) -> Union[float, List[float], Dict[str, float]]:
        """Loss (and metrics) of one batch, without training."""
        self._require_compiled(need_optimizer=False)
        x, y = self._prepare_xy(x, y)
        return self._result(self._eval_batches(self._get_plan(), x, y, max(len(x), 1)),
                            return_dict)

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int = 32, verbose: int = 0,
                 return_dict: bool = False) -> Union[float, List[float], Dict[str, float]]:
        """``[loss, *metrics]`` over the data (just the loss as a float without metrics)."""
        self._require_compiled(need_optimizer=False)
        batch_size = _positive_int(batch_size, "batch_size")
        x, y = self._prepare_xy(x, y)
        logs = self._eval_batches(self._get_plan(), x, y, batch_size)
        if verbose:
            print(_fmt_logs(logs))
        return self._result(logs, return_dict)

    def fit(self, x: Any = None, y: Any = None, epochs: int = 1, batch_size: int = 32,
            validation_split: float = 0.0, validation_data: Optional[Sequence[Any]] = None,
            shuffle: bool = True, callbacks: Optional[Sequence[_callbacks.Callback]] = None,
            verbose: int = 1, initial_epoch: int = 0,
            distributed: bool = False) -> _callbacks.History:
        """Train until epoch ``epochs``; returns a History (``.history["loss"]`` etc.).

        ``validation_split`` holds out that fraction of the samples (the last ones, before
        shuffling); ``validation_data=(x_val, y_val)`` gives them explicitly. ``verbose``: 0
        silent, 1 a progress bar per epoch, 2 one line per epoch. A NaN or infinite loss stops
        training with a RuntimeWarning.

        As in Keras, ``epochs`` is the index of the last epoch, not a count: with
        ``initial_epoch=2, epochs=5`` the epochs numbered 3, 4 and 5 run (0-based 2, 3, 4 in
        callbacks and ``History.epoch``). With a model from :func:`~fastnn.nn.load_model`, this
        resumes a run saved after epoch ``initial_epoch`` exactly as if it had not stopped.

        ``distributed=True`` trains data-parallel over the ranks of an MPI job (``mpirun -n 2
        python train.py``; a world of one process without it, see :mod:`fastnn.distributed`).
        Every rank passes the same ``x`` and ``y``. Rank 0's weights and optimizer state are
        broadcast first (after checking that every rank built the same model). Each epoch's
        shuffled order comes from a seed drawn on rank 0, the same on every rank, and each
        global batch of ``batch_size * size()`` samples is cut into one part per rank:
        ``batch_size`` is per rank, as in Horovod (a last short batch is evened out by
        repeating a few samples of the epoch). The gradients are averaged across ranks by a
        :class:`~fastnn.distributed.DistributedOptimizer` (the compiled one, or one made here
        around it), and so is the reported loss; the metrics, the validation (sharded too) and
        BatchNormalization's running statistics are combined over all ranks at the end of each
        epoch. Only rank 0 prints, and callbacks marked ``rank_zero_only`` (ModelCheckpoint)
        run on rank 0 alone. The learning rate is not scaled with the number of ranks: a larger
        global batch often wants a larger one, which is the caller's choice.
        """
        self._require_compiled()
        epochs = int(epochs)
        if (isinstance(initial_epoch, bool) or not isinstance(initial_epoch, (int, np.integer))
                or initial_epoch < 0):
            raise ValueError(f"initial_epoch must be a non-negative int, got {initial_epoch!r}")
        initial_epoch = int(initial_epoch)
        batch_size = _positive_int(batch_size, "batch_size")
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        x, y = self._prepare_xy(x, y)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (x_val, y_val)")
            val = self._prepare_xy(validation_data[0], validation_data[1], "validation ")
        elif validation_split:
            if not 0.0 < validation_split < 1.0:
                raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
            cut = int(len(x) * (1.0 - validation_split))
            if cut == 0 or cut == len(x):
                raise ValueError(f"validation_split={validation_split} leaves an empty "
                                 f"training or validation set of {len(x)} samples")
            x, y, val = x[:cut], y[:cut], (x[cut:], y[cut:])
        n = len(x)
        if n == 0:
            raise ValueError("x is empty: nothing to train on")
        plan = self._get_plan()
        callbacks = list(callbacks or [])
        world = None
        if distributed:
            world = _World(self, plan)
            if world.rank != 0:
                verbose = 0
                callbacks = [cb for cb in callbacks if not getattr(cb, "rank_zero_only", False)]
            steps = -(-n // (batch_size * world.size))
        else:
            steps = -(-n // batch_size)
        history = _callbacks.History()
        cbs = _callbacks.CallbackList(callbacks + [history], self,
                                      {"epochs": epochs, "steps": steps, "verbose": verbose,
                                       "batch_size": batch_size, "samples": n})
        self.history = history
        self.stop_training = False
        try:
            cbs.on_train_begin()
            for epoch in range(initial_epoch, epochs):
                if self.stop_training:
                    break
                cbs.on_epoch_begin(epoch)
                t0 = time.perf_counter()
                logs = self._fit_epoch(plan, x, y, batch_size, steps, epoch, epochs, verbose,
                                       cbs, val, bool(shuffle), world)
                if verbose == 2:
                    print(f"Epoch {epoch + 1}/{epochs} - {time.perf_counter() - t0:.2f}s - "
                          f"{_fmt_logs(logs)}", flush=True)
                cbs.on_epoch_end(epoch, logs)
            cbs.on_train_end()
        finally:
            if world is not None:
                world.close()
        return history

    def _fit_epoch(self, plan: _Plan, x: np.ndarray, y: np.ndarray, batch_size: int, steps: int,
                   epoch: int, epochs: int, verbose: int, cbs: _callbacks.CallbackList,
                   val: Optional[Tuple[np.ndarray, np.ndarray]], shuffle: bool,
                   world: Optional["_World"] = None) -> Dict[str, float]:
        n = len(x)
        if world is None:
            rng = _random.get_generator()
            order = rng.permutation(n) if shuffle else np.arange(n)
        else:
            order = world.shard(n, batch_size, shuffle)
            n = len(order)
        # One gather buffer per batch size, reused across steps and epochs.
        full = min(batch_size, n)
        bufs = {}
        for size in {full, n - (steps - 1) * batch_size}:
            bufs[size] = (np.empty((size,) + x.shape[1:], x.dtype),
                          np.empty((size,) + y.shape[1:], y.dtype))
        for m in plan.metrics:
            m.reset()
        bar = None
        if verbose == 1:
            from tqdm.auto import tqdm
            bar = tqdm(total=steps, desc=f"Epoch {epoch + 1}/{epochs}", unit="step",
                       file=sys.stdout, dynamic_ncols=True, leave=True, mininterval=_REFRESH_S)
        batch_hooks = bool(cbs.batch_callbacks)
        metrics = plan.metrics
        total, seen = 0.0, 0
        last_draw, next_check = time.perf_counter(), _CHECK_EVERY
        take, isfinite, step_fn = np.take, math.isfinite, self._train_step
        stopped_on = None
        for s in range(steps):
            lo = s * batch_size
            idx = order[lo:lo + batch_size]
            xb, yb = bufs[len(idx)]
            take(x, idx, axis=0, out=xb, mode="clip")  # "raise" would buffer the copy
            take(y, idx, axis=0, out=yb, mode="clip")
            if batch_hooks:
                cbs.on_train_batch_begin(s)
            value, out = step_fn(plan, xb, yb)
            k = len(idx)
            total += value * k
            seen += k
            plan.update_metrics(yb, out)
            if not isfinite(value):
                stopped_on = (s, value)
                break
            if batch_hooks:
                cbs.on_train_batch_end(s, self._running(total, seen, metrics))
                if self.stop_training:
                    break
            if bar is not None and s >= next_check:
                next_check = s + _CHECK_EVERY
                now = time.perf_counter()
                if now - last_draw >= _REFRESH_S:
                    last_draw = now
                    bar.set_postfix_str(_fmt_logs(self._running(total, seen, metrics)),
                                        refresh=False)
                    bar.update(s + 1 - bar.n)
        if world is not None:
            total, seen = world.reduce_logs(total, seen, metrics)
            world.average_buffers()
        logs = self._running(total, seen, metrics)
        if stopped_on is not None:
            self.stop_training = True
            warnings.warn(f"the loss became {stopped_on[1]} at epoch {epoch + 1}, batch "
                          f"{stopped_on[0] + 1}: training stopped (check the inputs for NaN "
                          f"or inf, or lower the learning rate)", RuntimeWarning, stacklevel=4)
        elif val is not None:
            vx, vy = val if world is None else world.part(val)
            reduce = None if world is None else world.reduce_logs
            for k, v in self._eval_batches(plan, vx, vy, batch_size, reduce).items():
                logs["val_" + k] = v
        if bar is not None:
            bar.set_postfix_str(_fmt_logs(logs), refresh=False)
            bar.update(steps - bar.n)
            bar.close()
        return logs

    @staticmethod
    def _running(total: float, seen: int, metrics: List[_metrics.Metric]) -> Dict[str, float]:
        logs = {"loss": total / seen if seen else float("nan")}
        for m in metrics:
            logs[m.name] = m.result()
        return logs

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
        # The name column grows to fit names like "global_average_pooling2d
        # (GlobalAveragePooling2D)", up to a limit past which names are cut.
        longest = max(len(f" {layer.name} ({type(layer).__name__})") for layer in self.layers)
        widths = (min(max(30, longest + 2), 56), 26, 12)
        rule = "_" * sum(widths)

        def row(a, b, c):
            return f"{a:<{widths[0]}}{b:<{widths[1]}}{c:>{widths[2]}}"

        lines = [f'Model: "{self.name}"', rule, row(" Layer (type)", "Output Shape", "Param #"),
                 "=" * sum(widths)]
        for i, layer in enumerate(self.layers):
            name = f" {layer.name} ({type(layer).__name__})"
            if len(name) > widths[0] - 1:
                name = name[:widths[0] - 2] + "…"
            lines.append(row(name, str(layer.output_shape), f"{layer.count_params():,}"))
            if i + 1 < len(self.layers):
                lines.append("")
        total = self.count_params()
        # Buffers (BatchNormalization's running statistics) and frozen layers' parameters are
        # counted in the total but not as trainable, as Keras does.
        trainable = sum(layer.count_trainable_params() for layer in self.layers)
        lines += ["=" * sum(widths), f"Total params: {total:,}",
                  f"Trainable params: {trainable:,}",
                  f"Non-trainable params: {total - trainable:,}", rule]
        for line in lines:
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

    def save(self, path: Any) -> None:
        """Save the architecture, weights and compile settings to one file (see
        :mod:`fastnn.nn.saving`)."""
        _saving.save_model(self, path)

    def save_weights(self, path: Any) -> None:
        _saving.save_weights(self, path)

    def load_weights(self, path: Any) -> None:
        _saving.load_weights(self, path)

    def __repr__(self) -> str:
        return f"<Sequential {self.name!r}: {len(self.layers)} layers>"
