"""The Keras workflow that every model class shares: compile, fit, evaluate, predict,
train_on_batch / test_on_batch, saving.

A model class (``Sequential``, the functional ``Model``) supplies the parts that depend on its
structure:

* ``_prepare_x(x, what)`` / ``_prepare_y(y, x, what)``: check and convert the data once; the
  result is an array, or a tuple of arrays for a model with several inputs (outputs);
* ``_get_plan()``: a plan (resolved once per compile) with ``metrics``, ``params``,
  ``regularization()``, ``update_metrics(y, out)``, ``infer(x) -> out`` (the training-time
  forward without training, a fused head left as logits), ``loss_value(out, y) -> float`` and
  ``sync``: the distributed optimizer that hears of gradients during the backward, or None;
* ``_train_step(plan, x, y) -> (loss, out)``: forward, backward and one optimizer step (with
  ``plan.sync``, the step of that optimizer, and the loss averaged over the ranks);
* ``_predict_batch(x)``: the model's output (after every head activation) for one batch.

The fit loop is written for small-batch speed: inputs are converted to the model's dtype once,
each epoch gathers its shuffled batches into reused buffers, and the progress bar redraws at
most every 50 ms.
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

__all__ = ["TrainingMixin", "positive_int"]

_REFRESH_S = 0.05   # progress-bar redraw interval
_CHECK_EVERY = 16   # steps between clock reads for the progress bar

Data = Union[np.ndarray, Tuple[np.ndarray, ...]]


def positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _fmt_logs(logs: Dict[str, float]) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


# A model with several inputs or outputs holds its data as a tuple of arrays; these helpers
# treat one array and a tuple alike.

def data_len(d: Data) -> int:
    return len(d[0]) if isinstance(d, tuple) else len(d)


def data_slice(d: Data, lo: int, hi: int) -> Data:
    if isinstance(d, tuple):
        return tuple(a[lo:hi] for a in d)
    return d[lo:hi]


def _buffer(d: Data, size: int) -> Data:
    if isinstance(d, tuple):
        return tuple(np.empty((size,) + a.shape[1:], a.dtype) for a in d)
    return np.empty((size,) + d.shape[1:], d.dtype)


def _take_into(d: Data, idx: np.ndarray, out: Data) -> None:
    # mode="clip": "raise" would buffer the copy
    if isinstance(d, tuple):
        for a, o in zip(d, out):
            np.take(a, idx, axis=0, out=o, mode="clip")
    else:
        np.take(d, idx, axis=0, out=out, mode="clip")


class _World:
    """What ``fit(distributed=True)`` needs from the ranks: set-up (broadcasts, the
    distributed optimizer in the plan), each epoch's shard, and the end-of-epoch sums."""

    def __init__(self, model: Any, plan: Any) -> None:
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

    def part(self, val: Tuple[Data, Data]) -> Tuple[Data, Data]:
        n = data_len(val[0])
        lo, hi = n * self.rank // self.size, n * (self.rank + 1) // self.size
        return data_slice(val[0], lo, hi), data_slice(val[1], lo, hi)

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


class TrainingMixin:
    """compile / fit / evaluate / predict / save for a model class (see the module docstring)."""

    optimizer: Optional[optim.Optimizer]
    loss: Any
    metrics: List[_metrics.Metric]

    def _init_training(self) -> None:
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self.stop_training = False
        self.history: Optional[_callbacks.History] = None
        self._compile_config: Optional[Dict[str, Any]] = None
        self._plan = None

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

    # -- weights: every model class keeps its layers in ``self.layers`` --------------------------

    @property
    def params(self) -> List[np.ndarray]:
        """Trainable parameters of every layer, in layer order (a shared layer's once): what
        ``optimizer.step`` takes."""
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

    def _set_layer_weights(self, weights: List[Any]) -> None:
        want = sum(len(layer.weights) for layer in self.layers)
        if len(weights) != want:
            raise ValueError(f"the model has {want} weight arrays, got {len(weights)}")
        i = 0
        for layer in self.layers:
            k = len(layer.weights)
            layer.set_weights(weights[i:i + k])
            i += k

    def _require_compiled(self, need_optimizer: bool = True) -> None:
        if self.loss is None or (need_optimizer and self.optimizer is None):
            raise RuntimeError("compile the model with an optimizer and a loss first: "
                               "model.compile(optimizer='adam', loss=...)")

    def _get_plan(self) -> Any:
        raise TypeError(f"{type(self).__name__} does not define _get_plan()")

    def _check_trainable_activations(self) -> None:
        """Refuse a layer whose activation has no gradient (before a training plan is made)."""
        for layer in self.layers:
            act = getattr(layer, "activation", None)
            if getattr(act, "name", None) == "threshold":
                raise ValueError(f"layer {layer.name!r} uses the threshold (step) "
                                 f"activation, which has no gradient: it cannot be trained "
                                 f"(use sigmoid, tanh or relu)")

    def _prepare_xy(self, x: Any, y: Any, what: str = "") -> Tuple[Data, Data]:
        x = self._prepare_x(x, what + "x")
        if y is None:
            raise ValueError(f"{what}y is required to train or evaluate")
        return x, self._prepare_y(y, x, what)

    # -- inference ------------------------------------------------------------------------------

    def predict(self, x: Any, batch_size: int = 32, verbose: int = 0) -> Any:
        """The model's output for ``x``, computed ``batch_size`` samples at a time (a list of
        arrays for a model with several outputs)."""
        batch_size = positive_int(batch_size, "batch_size")
        x = self._prepare_x(x)
        n = data_len(x)
        outs: Optional[List[np.ndarray]] = None
        multi = False
        for lo in range(0, n, batch_size):
            h = self._predict_batch(data_slice(x, lo, lo + batch_size))
            multi = isinstance(h, (list, tuple))
            hs = list(h) if multi else [h]
            if outs is None:
                outs = [np.empty((n,) + a.shape[1:], a.dtype) for a in hs]
            for o, a in zip(outs, hs):
                o[lo:lo + len(a)] = a
        if outs is None:
            return self._empty_output()
        return outs if multi else outs[0]

    # -- training -------------------------------------------------------------------------------

    def _eval_batches(self, plan: Any, x: Data, y: Data, batch_size: int,
                      reduce: Any = None) -> Dict[str, float]:
        for m in plan.metrics:
            m.reset()
        total, n = 0.0, data_len(x)
        infer, loss_value = plan.infer, plan.loss_value
        for lo in range(0, n, batch_size):
            xb, yb = data_slice(x, lo, lo + batch_size), data_slice(y, lo, lo + batch_size)
            h = infer(xb)
            total += loss_value(h, yb) * data_len(xb)
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
        return self._result(self._eval_batches(self._get_plan(), x, y, max(data_len(x), 1)),
                            return_dict)

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int = 32, verbose: int = 0,
                 return_dict: bool = False) -> Union[float, List[float], Dict[str, float]]:
        """``[loss, *metrics]`` over the data (just the loss as a float without metrics)."""
        self._require_compiled(need_optimizer=False)
        batch_size = positive_int(batch_size, "batch_size")
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
        batch_size = positive_int(batch_size, "batch_size")
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
            size = data_len(x)
            cut = int(size * (1.0 - validation_split))
            if cut == 0 or cut == size:
                raise ValueError(f"validation_split={validation_split} leaves an empty "
                                 f"training or validation set of {size} samples")
            val = (data_slice(x, cut, size), data_slice(y, cut, size))
            x, y = data_slice(x, 0, cut), data_slice(y, 0, cut)
        n = data_len(x)
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
            if epochs > initial_epoch:  # an EMA optimizer's averages become the weights (Keras)
                self.optimizer.finalize_variable_values(plan.params)
            cbs.on_train_end()
        finally:
            if world is not None:
                world.close()
        return history

    def _fit_epoch(self, plan: Any, x: Data, y: Data, batch_size: int, steps: int,
                   epoch: int, epochs: int, verbose: int, cbs: _callbacks.CallbackList,
                   val: Optional[Tuple[Data, Data]], shuffle: bool,
                   world: Optional[_World] = None) -> Dict[str, float]:
        n = data_len(x)
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
            bufs[size] = (_buffer(x, size), _buffer(y, size))
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
        isfinite, step_fn = math.isfinite, self._train_step
        stopped_on = None
        for s in range(steps):
            lo = s * batch_size
            idx = order[lo:lo + batch_size]
            xb, yb = bufs[len(idx)]
            _take_into(x, idx, xb)
            _take_into(y, idx, yb)
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

    # -- saving ---------------------------------------------------------------------------------

    def save(self, path: Any) -> None:
        """Save the architecture, weights and compile settings to one file (see
        :mod:`fastnn.nn.saving`)."""
        _saving.save_model(self, path)

    def save_weights(self, path: Any) -> None:
        _saving.save_weights(self, path)

    def load_weights(self, path: Any) -> None:
        _saving.load_weights(self, path)

    # -- summary --------------------------------------------------------------------------------

    def _summary_lines(self, rows: List[Tuple[str, ...]], headers: Tuple[str, ...],
                       layers: Sequence[Any]) -> List[str]:
        """Keras's table: one row per layer (name (type), output shape, params[, connected
        to]), then the totals."""
        longest = max([len(r[0]) for r in rows] + [0])
        widths = [min(max(30, longest + 2), 56), 26, 12] + [36] * (len(headers) - 3)
        rule = "_" * sum(widths)

        def row(cells):
            name = cells[0]
            if len(name) > widths[0] - 1:
                name = name[:widths[0] - 2] + "…"
            out = f"{name:<{widths[0]}}{cells[1]:<{widths[1]}}{cells[2]:>{widths[2]}}"
            for c, w in zip(cells[3:], widths[3:]):
                out += f"  {c:<{w - 2}}"
            return out.rstrip()

        lines = [f'Model: "{self.name}"', rule, row(headers), "=" * sum(widths)]
        for i, r in enumerate(rows):
            lines.append(row(r))
            if i + 1 < len(rows):
                lines.append("")
        total = int(sum(layer.count_params() for layer in layers))
        # Buffers (BatchNormalization's running statistics) and frozen layers' parameters are
        # counted in the total but not as trainable, as Keras does.
        trainable = sum(layer.count_trainable_params() for layer in layers)
        lines += ["=" * sum(widths), f"Total params: {total:,}",
                  f"Trainable params: {trainable:,}",
                  f"Non-trainable params: {total - trainable:,}", rule]
        return lines
