"""The functional API: ``Input(shape)``, layers called on symbolic tensors, ``Model(inputs,
outputs)``.

::

    x = Input((784,))
    h = Dense(128, activation="relu")(x)
    y = Dense(10, activation="softmax")(Add()([h, Dense(128)(x)]))
    model = Model(x, y)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])

A model runs its layer calls (nodes) in a topological order of the graph; backward runs them in
reverse, and where a tensor feeds several calls the gradients coming back from them are summed.
A layer called more than once is shared: one set of weights, whose gradients are the sum over
its calls; before the backward of each call the model puts back what that call's forward left
in the layer (its op contexts, see ``Layer._call_state``), so each call is differentiated at its
own inputs.

Several inputs and outputs: ``fit``/``evaluate``/``predict`` take a list (or a dict by input
layer name) of arrays for ``x``, and, for several outputs, a list (or dict by output layer name)
of targets; ``compile`` takes one loss for every output or one per output (list or dict), and
``loss_weights``; the training loss is the weighted sum, and metrics are computed per output
(named ``<output layer>_<metric>``). ``compile``, ``fit``, ``evaluate``, ``predict``,
``summary``, ``save`` and :func:`~fastnn.nn.load_model` work as for ``Sequential``; custom loops
use ``model.forward(x, training=True)`` and ``model.backward(dy)``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import losses as _losses
from . import metrics as _metrics
from . import saving as _saving
from ._symbolic import Node, SymbolicTensor, call_symbolic, is_symbolic
from .core import Layer, _unique_name, get_layer_class
from .training import TrainingMixin, data_len

__all__ = ["Input", "InputLayer", "Model"]


class InputLayer(Layer):
    """The layer behind ``Input(shape)``: the identity, with a node and a symbolic output of
    its own (``input_layer.output``)."""

    def __init__(self, shape: Sequence[Optional[int]], dtype: Any = "float32", *,
                 name: Optional[str] = None, trainable: bool = True) -> None:
        super().__init__(name=name if name is not None else _unique_name("input_layer"),
                         trainable=trainable)
        self.dtype = _input_dtype(dtype)
        if isinstance(shape, (int, np.integer)):
            shape = (int(shape),)
        try:
            shape = tuple(None if s is None else int(s) for s in shape)
        except (TypeError, ValueError):
            raise ValueError(f"Input shape must be a tuple of sizes (None for unknown), got "
                             f"{shape!r}") from None
        if any(s is not None and s < 0 for s in shape):
            raise ValueError(f"Input shape sizes must be non-negative, got {shape}")
        self.shape = shape
        self.build((None,) + shape)
        node = Node(self, None, {})
        node.output = SymbolicTensor((None,) + shape, self.dtype, node)
        self.output = node.output

    def _symbolic_output_shape(self, input_shape):
        raise TypeError(f"{self.name} is an input layer: it is not called on tensors")

    def forward(self, x, training=False):
        return x

    def backward(self, dy, need_dx=True):
        return dy if need_dx else None

    def get_config(self):
        return {"shape": list(self.shape), "dtype": self.dtype.name, "name": self.name,
                "trainable": self.trainable}


def _input_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in ("float32", "float64", "bool"):
        raise TypeError(f"Input dtype must be float32, float64 or bool (a mask), got {dtype!r}")
    return dt


def Input(shape: Sequence[Optional[int]], dtype: Any = "float32",
          name: Optional[str] = None) -> SymbolicTensor:
    """A placeholder for a model input of per-sample ``shape`` (no batch dimension; None for
    a size that may vary, such as a sequence length). ``dtype``: float32, float64, or bool
    for an attention mask."""
    return InputLayer(shape, dtype, name=name).output


class _Step:
    """One node, resolved to slots of the value list (``ins``: an int, or a list with -1 for an
    absent optional input)."""

    __slots__ = ("layer", "ins", "single", "out", "kwargs", "shared", "state")

    def __init__(self, layer, ins, single, out, kwargs, shared):
        self.layer, self.ins, self.single, self.out = layer, ins, single, out
        self.kwargs, self.shared, self.state = kwargs, shared, None

    @property
    def in_slots(self) -> List[int]:
        return [self.ins] if self.single else [i for i in self.ins if i >= 0]


class _Backward:
    """Which steps a backward pass runs, and which of their input gradients it keeps."""

    def __init__(self, model: "Model", inputs_need_grad: bool) -> None:
        need = [False] * model._n_slots
        for s in model._input_slots:
            need[s] = inputs_need_grad
        for st in model._steps:
            layer = st.layer
            need[st.out] = (layer.trainable and bool(layer.params)) or any(need[i] for i in st.in_slots)
        self.need = need
        # (step, need_dx) in reverse order, for the steps whose output needs a gradient
        self.steps = [(st, any(need[i] for i in st.in_slots))
                      for st in reversed(model._steps) if need[st.out]]


def _accumulate(grads: List[Any], owned: List[bool], slot: int, g: Any) -> None:
    cur = grads[slot]
    if cur is None:
        grads[slot] = g
    elif owned[slot]:
        cur += g
    else:  # never add into an array a layer returned: it may be another tensor's gradient
        grads[slot] = cur + g
        owned[slot] = True


def _without_regularizers(layer: Layer, dy: Any, need_dx: bool) -> Any:
    """``layer.backward`` with its ``*_regularizer`` attributes off for this call."""
    regs = {k: v for k, v in vars(layer).items() if k.endswith("_regularizer") and v is not None}
    for k in regs:
        setattr(layer, k, None)
    try:
        return layer.backward(dy, need_dx)
    finally:
        for k, v in regs.items():
            setattr(layer, k, v)


class _GraphPlan:
    """Training/evaluation resolved once per compile: per-step forward functions (a softmax or
    sigmoid head fused into its loss uses ``forward_logits``), losses, metrics, backward."""

    def __init__(self, model: "Model") -> None:
        self.model = model
        steps = model._steps
        self.forward = [st.layer.forward for st in steps]
        consumers: Dict[int, int] = {}
        for st in steps:
            for i in st.in_slots:
                consumers[i] = consumers.get(i, 0) + 1
        for s in model._out_slots:
            consumers[s] = consumers.get(s, 0) + 1
        producer = {st.out: k for k, st in enumerate(steps)}
        self.heads: List[Tuple[int, Any, float]] = []   # (slot, loss, weight)
        self.fused: List[bool] = []
        self.head_names: List[Optional[str]] = []
        for slot, loss, weight in zip(model._out_slots, model._losses, model._loss_weights):
            k = producer.get(slot)
            layer = steps[k].layer if k is not None else None
            head = getattr(layer, "head_activation", None)
            fused = (k is not None and loss.fusable_head is not None
                     and head == loss.fusable_head and hasattr(layer, "forward_logits")
                     and not steps[k].shared and consumers[slot] == 1)
            if fused:
                self.forward[k] = layer.forward_logits
                loss = loss.logits_version()
            self.heads.append((slot, loss, weight))
            self.fused.append(fused)
            self.head_names.append(head)
        self.backward = model._backward_plan(False)
        grad_layers = []
        for layer in model.layers:
            if layer.trainable and layer.params:
                grad_layers.append(layer)
        self.grad_layers = grad_layers
        self.params = [p for layer in grad_layers for p in layer.params]
        # A distributed optimizer (``grad_ready``) hears of each layer's gradients as soon as
        # they are final (a shared layer's after its last call's backward), see _backprop.
        self.sync = getattr(model.optimizer, "grad_ready", None) and model.optimizer
        self.starts: Dict[int, int] = {}
        start = 0
        for layer in grad_layers:
            self.starts[id(layer)] = start
            start += len(layer.params)
        self.reg_layers = [layer for layer in model.layers
                           if getattr(layer, "has_regularizer", False)]
        self.metric_groups = model._metric_groups
        self.metrics = [m for group in self.metric_groups for m in group]
        self.multi = len(model._out_slots) > 1

    def grads(self) -> List[Any]:
        return [g for layer in self.grad_layers for g in layer.grads]

    def regularization(self) -> float:
        total = 0.0
        for layer in self.reg_layers:
            total += layer.regularization_loss()
        return total

    def outputs(self, vals: List[Any]) -> Any:
        if self.multi:
            return tuple(vals[slot] for slot, _, _ in self.heads)
        return vals[self.heads[0][0]]

    def infer(self, x: Any) -> Any:
        return self.outputs(self.model._run(self.forward, x, False))

    def loss_value(self, out: Any, y: Any) -> float:
        if not self.multi:
            return self.heads[0][1].forward(out, y)[0]
        total = 0.0
        for (_, loss, w), o, t in zip(self.heads, out, y):
            total += w * loss.forward(o, t)[0]
        return total

    def update_metrics(self, y: Any, out: Any) -> None:
        outs, ys = (out, y) if self.multi else ((out,), (y,))
        for group, o, t, fused, head in zip(self.metric_groups, outs, ys, self.fused,
                                            self.head_names):
            probs = None
            for m in group:
                if fused and m.needs_probabilities:
                    if probs is None:
                        probs = _metrics.probabilities(head, o)
                    m.update(t, probs, False)
                else:
                    m.update(t, o, fused)


@_saving.register_model_class
class Model(TrainingMixin):
    """A model built from a graph of layer calls: ``Model(inputs, outputs)``.

    ``inputs``: the tensor returned by ``Input(...)``, or a list of them; ``outputs``: a tensor
    computed from them by calling layers, or a list. Every output must be computed from the
    given inputs only, and every input must be used.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _saving.register_model_class(cls)

    def __init__(self, inputs: Any, outputs: Any, name: Optional[str] = None) -> None:
        self.name = name if name is not None else _unique_name("functional")
        self._single_input = not isinstance(inputs, (list, tuple))
        self._single_output = not isinstance(outputs, (list, tuple))
        self.inputs: List[SymbolicTensor] = [inputs] if self._single_input else list(inputs)
        self.outputs: List[SymbolicTensor] = ([outputs] if self._single_output
                                              else list(outputs))
        self._check_endpoints()
        self._build_graph()
        self.built = True
        self._init_training()
        self._losses: List[Any] = []
        self._loss_weights: List[float] = []
        self._metric_groups: List[List[_metrics.Metric]] = []
        self._backward_plans: Dict[bool, _Backward] = {}
        self._last_vals: Optional[List[Any]] = None

    # -- graph ----------------------------------------------------------------------------------

    def _check_endpoints(self) -> None:
        if not self.inputs or not self.outputs:
            raise ValueError("a Model needs at least one input and one output")
        for what, items in (("inputs", self.inputs), ("outputs", self.outputs)):
            for t in items:
                if not isinstance(t, SymbolicTensor):
                    raise TypeError(f"Model {what} must be symbolic tensors (from Input(...) "
                                    f"and layer calls), got {type(t).__name__}")
        for t in self.inputs:
            if not isinstance(t.node.layer, InputLayer):
                raise ValueError(f"Model inputs must be tensors returned by Input(...); "
                                 f"{t!r} is the output of a layer")
        if len({id(t) for t in self.inputs}) != len(self.inputs):
            raise ValueError("the same Input is given twice in the model's inputs")

    def _build_graph(self) -> None:
        # Depth-first post-order from the outputs: every node after the nodes it reads.
        order: List[Node] = []
        seen = set()
        for out in self.outputs:
            stack = [(out.node, False)]
            while stack:
                node, expanded = stack.pop()
                if id(node) in seen:
                    continue
                if expanded:
                    seen.add(id(node))
                    order.append(node)
                    continue
                stack.append((node, True))
                for t in reversed(node.parents):
                    if id(t.node) not in seen:
                        stack.append((t.node, False))
        given = {id(t.node): k for k, t in enumerate(self.inputs)}
        reached = set()
        for node in order:
            if isinstance(node.layer, InputLayer):
                if id(node) not in given:
                    raise ValueError(
                        f"graph disconnected: the outputs depend on the input "
                        f"{node.layer.name!r} {node.output.shape}, which is not among the "
                        f"model's inputs {[t.name for t in self.inputs]}")
                reached.add(id(node))
        unused = [t.name for t in self.inputs if id(t.node) not in reached]
        if unused:
            raise ValueError(f"the model's outputs do not depend on the input(s) {unused}: "
                             f"every input must be used")
        slots: Dict[int, int] = {}
        for t in self.inputs:
            slots[id(t)] = len(slots)
        body = [n for n in order if not isinstance(n.layer, InputLayer)]
        for node in body:
            slots[id(node.output)] = len(slots)
        self._n_slots = len(slots)
        self._input_slots = [slots[id(t)] for t in self.inputs]
        self._out_slots = [slots[id(t)] for t in self.outputs]
        calls: Dict[int, int] = {}
        for node in body:
            calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
        steps = []
        for node in body:
            if isinstance(node.inputs, SymbolicTensor):
                ins, single = slots[id(node.inputs)], True
            else:
                ins, single = [-1 if t is None else slots[id(t)] for t in node.inputs], False
            steps.append(_Step(node.layer, ins, single, slots[id(node.output)], node.kwargs,
                               calls[id(node.layer)] > 1))
        self._steps = steps
        self._nodes = body
        # An input read by one layer with ``convert_input`` alone (Embedding: int64 token ids)
        # is converted by that layer rather than to the input's float dtype.
        readers: Dict[int, Dict[int, Layer]] = {}
        for st in steps:
            for i in st.in_slots:
                readers.setdefault(i, {})[id(st.layer)] = st.layer
        self._converters = []
        for s in self._input_slots:
            users = list(readers.get(s, {}).values())
            self._converters.append(getattr(users[0], "convert_input", None)
                                    if len(users) == 1 else None)
        layers: List[Layer] = [t.node.layer for t in self.inputs]
        known = {id(x) for x in layers}
        for node in body:
            if id(node.layer) not in known:
                known.add(id(node.layer))
                layers.append(node.layer)
        names = [layer.name for layer in layers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"layer names must be unique in a model; {dup} name more than one "
                             f"layer")
        self.layers = layers

    def get_layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r} in model {self.name!r}")

    @property
    def input_shape(self) -> Any:
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if self._single_input else shapes

    @property
    def output_shape(self) -> Any:
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if self._single_output else shapes

    @property
    def dtype(self) -> np.dtype:
        return self.inputs[0].dtype

    def set_weights(self, weights: Sequence[Any]) -> None:
        self._set_layer_weights(list(weights))

    def build(self, input_shape: Any = None) -> None:
        """A functional model is built when it is made (kept for the model protocol)."""

    # -- running --------------------------------------------------------------------------------

    def _run(self, fns: Sequence[Any], xs: Any, training: bool) -> List[Any]:
        vals: List[Any] = [None] * self._n_slots
        if self._single_input:
            vals[self._input_slots[0]] = xs
        else:
            for s, x in zip(self._input_slots, xs):
                vals[s] = x
        for st, fn in zip(self._steps, fns):
            a = vals[st.ins] if st.single else [None if i < 0 else vals[i] for i in st.ins]
            vals[st.out] = fn(a, training, **st.kwargs) if st.kwargs else fn(a, training)
            if st.shared:
                st.state = st.layer._call_state()
        self._last_vals = vals
        return vals

    def _backward_plan(self, inputs_need_grad: bool) -> _Backward:
        plan = self._backward_plans.get(inputs_need_grad)
        if plan is None:
            plan = self._backward_plans[inputs_need_grad] = _Backward(self, inputs_need_grad)
        return plan

    def _backprop(self, plan: _Backward, grads: List[Any], owned: List[bool],
                  sync: Any = None, starts: Optional[Dict[int, int]] = None) -> None:
        """Run the backward steps; with ``sync`` (a distributed optimizer), hand it each
        trainable layer's gradients (``starts``: its first parameter index) once final."""
        vals = self._last_vals
        need = plan.need
        shared_acc: Dict[int, List[Any]] = {}
        for st, need_dx in plan.steps:
            dy = grads[st.out]
            if dy is None:  # an output the caller gave no gradient for
                dy = np.zeros_like(vals[st.out])
            layer = st.layer
            if st.shared:
                layer._set_call_state(st.state)
                if id(layer) in shared_acc and getattr(layer, "has_regularizer", False):
                    # The penalty is counted once in the loss: its gradient only once too.
                    d = _without_regularizers(layer, dy, need_dx)
                else:
                    d = layer.backward(dy, need_dx)
            else:
                d = layer.backward(dy, need_dx)
            if st.shared and layer.params:
                acc = shared_acc.get(id(layer))
                if acc is None:
                    shared_acc[id(layer)] = [np.array(g, copy=True) for g in layer.grads]
                else:
                    for a, g in zip(acc, layer.grads):
                        a += g
            elif sync is not None:
                start = starts.get(id(layer))
                if start is not None:
                    for j, g in enumerate(layer.grads):
                        sync.grad_ready(start + j, g)
            if sync is not None:
                sync.progress()
            if not need_dx:
                continue
            if st.single:
                if need[st.ins]:
                    _accumulate(grads, owned, st.ins, d)
            else:
                for i, g in zip(st.ins, d):
                    if i >= 0 and g is not None and need[i]:
                        _accumulate(grads, owned, i, g)
        for layer in self.layers:
            acc = shared_acc.get(id(layer))
            if acc is not None:
                layer.grads[:] = acc
                start = None if sync is None else starts.get(id(layer))
                if start is not None:
                    for j, g in enumerate(layer.grads):
                        sync.grad_ready(start + j, g)

    def forward(self, x: Any, training: bool = False) -> Any:
        """Run the graph on ``x`` (an array, or one per input) and return the output (a list for
        several outputs); each layer keeps what its backward needs."""
        xs = self._prepare_x(x)
        vals = self._run([st.layer.forward for st in self._steps], xs, training)
        outs = [vals[s] for s in self._out_slots]
        return outs[0] if self._single_output else outs

    def __call__(self, x: Any, training: bool = False) -> Any:
        if is_symbolic(x):
            raise TypeError("calling a Model on symbolic tensors (nesting models) is not "
                            "supported: call its layers on the tensors instead")
        return self.forward(x, training)

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        """Backpropagate ``dy`` (the gradient of the output of the last ``forward``, a list for
        several outputs; None for an output without one) through the graph; fills every
        layer's ``grads`` and returns the gradient of the input (a list for several inputs; None
        with ``need_dx=False``)."""
        if self._last_vals is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        dys = [dy] if self._single_output else list(dy)
        if len(dys) != len(self._out_slots):
            raise ValueError(f"the model has {len(self._out_slots)} outputs, got "
                             f"{len(dys)} output gradients")
        grads: List[Any] = [None] * self._n_slots
        owned = [False] * self._n_slots
        for s, g in zip(self._out_slots, dys):
            if g is not None:
                g = np.asarray(g)
                if g.shape != self._last_vals[s].shape:
                    raise ValueError(f"an output gradient has shape {g.shape} but that output "
                                     f"has shape {self._last_vals[s].shape}")
                _accumulate(grads, owned, s, g)
        self._backprop(self._backward_plan(bool(need_dx)), grads, owned)
        if not need_dx:
            return None
        dxs = [grads[s] if grads[s] is not None else np.zeros_like(self._last_vals[s])
               for s in self._input_slots]
        return dxs[0] if self._single_input else dxs

    def _predict_batch(self, x: Any) -> Any:
        vals = self._run([st.layer.forward for st in self._steps], x, False)
        outs = [vals[s] for s in self._out_slots]
        return outs[0] if self._single_output else outs

    def _empty_output(self) -> Any:
        outs = [np.empty((0,) + tuple(0 if s is None else s for s in t.shape[1:]), t.dtype)
                for t in self.outputs]
        return outs[0] if self._single_output else outs

    def predict_on_batch(self, x: Any) -> Any:
        return self._predict_batch(self._prepare_x(x))

    # -- data -----------------------------------------------------------------------------------

    @staticmethod
    def _by_position(data: Any, tensors: List[SymbolicTensor], what: str) -> List[Any]:
        """One entry per tensor from an array, a list/tuple, or a dict keyed by layer name."""
        if isinstance(data, dict):
            names = [t.name for t in tensors]
            extra = sorted(set(data) - set(names))
            missing = [n for n in names if n not in data]
            if extra or missing:
                raise ValueError(f"{what}: expected the keys {names}, got {sorted(data)}")
            return [data[n] for n in names]
        if len(tensors) == 1:
            if isinstance(data, (list, tuple)) and len(data) == 1 and isinstance(
                    data[0], np.ndarray):
                return [data[0]]
            return [data]
        if not isinstance(data, (list, tuple)) or len(data) != len(tensors):
            raise ValueError(f"{what}: the model has {len(tensors)} of them "
                             f"({[t.name for t in tensors]}); give a list of "
                             f"{len(tensors)} arrays or a dict by name")
        return list(data)

    def _prepare_x(self, x: Any, what: str = "x") -> Any:
        if x is None:
            raise ValueError(f"{what} is required")
        arrays = []
        for t, a, convert in zip(self.inputs, self._by_position(x, self.inputs, what),
                                 self._converters):
            a = np.asarray(a)
            if a.dtype.kind not in "biuf":
                raise TypeError(f"{what} for input {t.name!r} must be numeric, got dtype "
                                f"{a.dtype}")
            if a.ndim != len(t.shape) or any(w is not None and w != s
                                             for w, s in zip(t.shape[1:], a.shape[1:])):
                raise ValueError(f"{what} for input {t.name!r} has shape {a.shape} but the "
                                 f"model expects {t.shape}")
            arrays.append(convert(a) if convert is not None
                          else np.ascontiguousarray(a, dtype=t.dtype))
        lengths = {len(a) for a in arrays}
        if len(lengths) > 1:
            raise ValueError(f"{what}: every input needs the same number of samples, got "
                             f"{[len(a) for a in arrays]}")
        return arrays[0] if self._single_input else tuple(arrays)

    def _prepare_y(self, y: Any, x: Any, what: str = "") -> Any:
        n = data_len(x)
        out = []
        for t, loss, a in zip(self.outputs, self._losses,
                              self._by_position(y, self.outputs, what + "y")):
            a = np.asarray(a)
            if a.ndim < 1 or len(a) != n:
                raise ValueError(f"{what}x and {what}y must have the same number of samples, "
                                 f"got {n} and {len(a) if a.ndim else 'a scalar'}"
                                 + ("" if self._single_output else f" (output {t.name!r})"))
            out.append(loss.prepare_targets(a, t.shape, t.dtype))
        return out[0] if self._single_output else tuple(out)

    # -- training -------------------------------------------------------------------------------

    def compile(self, optimizer: Any = "rmsprop", loss: Any = None,
                metrics: Optional[Sequence[Any]] = None,
                loss_weights: Optional[Union[Sequence[float], Dict[str, float]]] = None
                ) -> None:
        """As ``Sequential.compile``; with several outputs ``loss`` may also be a list or a
        dict (by output layer name) of losses, ``loss_weights`` (list or dict) weighs them in
        the total, and every metric is computed for every output."""
        n = len(self.outputs)
        if isinstance(loss, dict):
            losses = self._by_position(loss, self.outputs, "loss")
        elif isinstance(loss, (list, tuple)):
            losses = list(loss)
            if len(losses) != n:
                raise ValueError(f"loss: the model has {n} output(s), got {len(losses)} losses")
        else:
            losses = [loss] * n
        if loss_weights is None:
            weights = [1.0] * n
        else:
            if isinstance(loss_weights, dict):
                raw = self._by_position(loss_weights, self.outputs, "loss_weights")
            else:
                raw = (list(loss_weights) if isinstance(loss_weights, (list, tuple))
                       else [loss_weights])
            if len(raw) != n:
                raise ValueError(f"loss_weights: the model has {n} output(s), got {len(raw)} "
                                 f"weights")
            weights = [float(w) for w in raw]
        if metrics is not None and isinstance(metrics, (str, _metrics.Metric)):
            metrics = [metrics]
        super().compile(optimizer, losses[0], metrics if n == 1 else None)
        if losses[0] is None:
            self._losses, self._loss_weights, self._metric_groups = [], [], []
            return
        if any(v is None for v in losses):
            raise ValueError("loss: every output needs a loss")
        self._losses = [_losses.get(v) for v in losses]
        self._loss_weights = weights
        if n == 1:
            self._metric_groups = [list(self.metrics)]
        else:
            groups = []
            for t, lo in zip(self.outputs, self._losses):
                group = []
                for m in metrics or []:
                    if isinstance(m, _metrics.Metric):  # a fresh copy per output
                        m = _metrics.from_serialized(_metrics.serialize(m))
                    metric = _metrics.get(m, lo)
                    metric.name = f"{t.name}_{metric.name}"
                    group.append(metric)
                groups.append(group)
            self._metric_groups = groups
            self.metrics = [m for g in groups for m in g]
            self._compile_config["metrics"] = [
                m if isinstance(m, str) else _metrics.serialize(m) for m in (metrics or [])]
            self._compile_config["loss"] = [_losses.serialize(v) for v in self._losses]
        if loss_weights is not None:
            self._compile_config["loss_weights"] = weights

    def _get_plan(self) -> _GraphPlan:
        if self._plan is None:
            self._check_trainable_activations()
            self._plan = _GraphPlan(self)
        return self._plan

    def _train_step(self, plan: _GraphPlan, x: Any, y: Any) -> Tuple[float, Any]:
        vals = self._run(plan.forward, x, True)
        grads: List[Any] = [None] * self._n_slots
        owned = [False] * self._n_slots
        value = 0.0
        ys = y if plan.multi else (y,)
        for (slot, loss, w), t in zip(plan.heads, ys):
            v, ctx = loss.forward(vals[slot], t)
            g = loss.backward(ctx)
            if w != 1.0:
                g = g * w
            value += w * v
            _accumulate(grads, owned, slot, g)
        sync = plan.sync
        if sync:  # distributed: the step of the distributed optimizer, the loss averaged
            sync.begin_step(plan.params, value)
            self._backprop(plan.backward, grads, owned, sync, plan.starts)
            reg = plan.regularization() if plan.reg_layers else 0.0
            sync.step(plan.params, plan.grads())
            return sync.loss + reg, plan.outputs(vals)
        self._backprop(plan.backward, grads, owned)
        if plan.reg_layers:
            value += plan.regularization()
        self.optimizer.step(plan.params, plan.grads())
        return value, plan.outputs(vals)

    # -- reporting and saving -------------------------------------------------------------------

    def summary(self, print_fn: Any = None) -> None:
        """Print a table of layers, output shapes, parameter counts and the layers each one is
        connected to, with totals."""
        print_fn = print_fn or print
        node_index: Dict[int, Tuple[str, int]] = {}
        count: Dict[int, int] = {}
        for t in self.inputs:
            node_index[id(t)] = (t.name, 0)
        for node in self._nodes:
            k = count.get(id(node.layer), 0)
            count[id(node.layer)] = k + 1
            node_index[id(node.output)] = (node.layer.name, k)
        rows = []
        for layer in self.layers:
            nodes = [n for n in self._nodes if n.layer is layer]
            shapes = {n.output.shape for n in nodes} or {(None,) + layer.shape}
            links = []
            for n in nodes:
                for t in n.parents:
                    name, k = node_index[id(t)]
                    links.append(f"{name}[{k}]")
            rows.append((f" {layer.name} ({type(layer).__name__})",
                         ", ".join(str(s) for s in sorted(shapes, key=str)),
                         f"{layer.count_params():,}", ", ".join(links)))
        for line in self._summary_lines(rows, (" Layer (type)", "Output Shape", "Param #",
                                               "Connected to"), self.layers):
            print_fn(line)

    def get_config(self) -> Dict[str, Any]:
        layer_index = {id(layer): i for i, layer in enumerate(self.layers)}
        node_of: Dict[int, int] = {}
        nodes = []
        for t in self.inputs:
            node_of[id(t)] = len(nodes)
            nodes.append({"layer": layer_index[id(t.node.layer)]})
        for node in self._nodes:
            if isinstance(node.inputs, SymbolicTensor):
                ref: Any = node_of[id(node.inputs)]
            else:
                ref = [None if t is None else node_of[id(t)] for t in node.inputs]
            node_of[id(node.output)] = len(nodes)
            nodes.append({"layer": layer_index[id(node.layer)], "inputs": ref,
                          "kwargs": dict(node.kwargs)})
        return {
            "name": self.name,
            "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                       for layer in self.layers],
            "nodes": nodes,
            "inputs": [node_of[id(t)] for t in self.inputs],
            "outputs": [node_of[id(t)] for t in self.outputs],
            "single_input": self._single_input,
            "single_output": self._single_output,
        }

    @classmethod
    def from_config(cls, config: Dict[str, Any],
                    custom_objects: Optional[Dict[str, Any]] = None) -> "Model":
        layers = []
        for spec in config["layers"]:
            layer_cls = get_layer_class(spec["class_name"], custom_objects)
            layers.append(layer_cls.from_config(dict(spec["config"])))
        tensors: List[SymbolicTensor] = []
        for spec in config["nodes"]:
            layer = layers[spec["layer"]]
            if isinstance(layer, InputLayer):
                tensors.append(layer.output)
                continue
            ref = spec["inputs"]
            inputs = (tensors[ref] if isinstance(ref, int)
                      else [None if r is None else tensors[r] for r in ref])
            tensors.append(call_symbolic(layer, inputs, spec.get("kwargs") or {}))
        inputs = [tensors[i] for i in config["inputs"]]
        outputs = [tensors[i] for i in config["outputs"]]
        return cls(inputs[0] if config.get("single_input", True) else inputs,
                   outputs[0] if config.get("single_output", True) else outputs,
                   name=config.get("name"))

    def __repr__(self) -> str:
        return (f"<Model {self.name!r}: {len(self.inputs)} input(s), {len(self.outputs)} "
                f"output(s), {len(self.layers)} layers>")
