"""Training callbacks: ``History`` (always on), ``EarlyStopping``, ``ModelCheckpoint``,
``LambdaCallback``.

Hooks receive the epoch (0-based) and the logs dict of that epoch: ``{"loss": ..., "accuracy":
..., "val_loss": ..., ...}``. Batch hooks (``on_train_batch_begin/end``) run only when some
callback defines them, so plain training pays nothing for them. A callback stops training by
setting ``self.model.stop_training = True``.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Dict, List, Optional

__all__ = ["Callback", "History", "EarlyStopping", "ModelCheckpoint", "LambdaCallback",
           "CallbackList"]


class Callback:
    def __init__(self) -> None:
        self.model: Any = None
        self.params: Dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: Dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: Optional[Dict[str, float]] = None) -> None:
        pass

    def on_train_end(self, logs: Optional[Dict[str, float]] = None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: Optional[Dict[str, float]] = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, float]] = None) -> None:
        pass

    def on_train_batch_begin(self, batch: int, logs: Optional[Dict[str, float]] = None) -> None:
        pass

    def on_train_batch_end(self, batch: int, logs: Optional[Dict[str, float]] = None) -> None:
        pass

    @property
    def wants_batch_hooks(self) -> bool:
        cls = type(self)
        return (cls.on_train_batch_begin is not Callback.on_train_batch_begin
                or cls.on_train_batch_end is not Callback.on_train_batch_end)


class History(Callback):
    """``history.history`` maps each log name to its per-epoch list; ``history.epoch`` lists the
    epochs that ran."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch: List[int] = []
        self.history: Dict[str, List[float]] = {}

    def on_train_begin(self, logs=None):
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


def _resolve_mode(mode: str, monitor: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
    return mode


class _Monitor(Callback):
    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        super().__init__()
        self.monitor = monitor
        self.mode = _resolve_mode(mode, monitor)
        self.min_delta = abs(float(min_delta))
        self._warned = False

    def _initial_best(self) -> float:
        return math.inf if self.mode == "min" else -math.inf

    def _improved(self, current: float, reference: float) -> bool:
        if self.mode == "min":
            return current < reference - self.min_delta
        return current > reference + self.min_delta

    def _current(self, logs: Optional[Dict[str, float]]) -> Optional[float]:
        value = (logs or {}).get(self.monitor)
        if value is None and not self._warned:
            self._warned = True
            warnings.warn(f"{type(self).__name__}: {self.monitor!r} is not in the logs (it has "
                          f"{sorted(logs or {})}); nothing is monitored", RuntimeWarning,
                          stacklevel=3)
        return value


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    ``mode``: "min", "max" or "auto" (max for accuracies, min otherwise). With
    ``restore_best_weights``, the model gets the weights of its best epoch back when it stops.
    ``baseline``: training also stops if the monitored value does not beat it within
    ``patience`` epochs. Epochs before ``start_from_epoch`` are not monitored (warm-up).
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: Optional[float] = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0) -> None:
        super().__init__(monitor, mode, min_delta)
        if int(patience) < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.patience = int(patience)
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = self._initial_best()
        self.best_epoch = 0
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        current = self._current(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._improved(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improved(current, self.baseline):
                self.wait = 0
                return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                if self.verbose:
                    print(f"Restoring the weights of epoch {self.best_epoch + 1} "
                          f"({self.monitor} = {self.best:.6g})")
                self.model.set_weights(self.best_weights)

    def on_train_end(self, logs=None):
        if self.stopped_epoch and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")


class ModelCheckpoint(_Monitor):
    """Save the model (``model.save``) or its weights after every epoch.

    ``filepath`` may hold ``{epoch}`` (1-based) and log names, as in
    ``"ckpt-{epoch:02d}-{val_loss:.3f}.fnn"``. With ``save_best_only`` only improvements of
    ``monitor`` are saved (and the file is overwritten each time). In a distributed ``fit``
    only rank 0 writes (``rank_zero_only``).
    """

    rank_zero_only = True

    def __init__(self, filepath: str, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, mode: str = "auto",
                 save_weights_only: bool = False) -> None:
        super().__init__(monitor, mode, 0.0)
        self.filepath = str(filepath)
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.best = self._initial_best()

    def on_train_begin(self, logs=None):
        self.best = self._initial_best()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            current = self._current(logs)
            if current is None or not self._improved(current, self.best):
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.6g} to "
                      f"{current:.6g}")
            self.best = current
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved to {path}")


class LambdaCallback(Callback):
    """A callback from plain functions: ``on_epoch_begin(epoch, logs)``,
    ``on_epoch_end(epoch, logs)``, ``on_batch_begin(batch, logs)``, ``on_batch_end(batch,
    logs)``, ``on_train_begin(logs)``, ``on_train_end(logs)``."""

    def __init__(self, on_epoch_begin: Optional[Callable] = None,
                 on_epoch_end: Optional[Callable] = None,
                 on_batch_begin: Optional[Callable] = None,
                 on_batch_end: Optional[Callable] = None,
                 on_train_begin: Optional[Callable] = None,
                 on_train_end: Optional[Callable] = None) -> None:
        super().__init__()
        self._fns = {"epoch_begin": on_epoch_begin, "epoch_end": on_epoch_end,
                     "batch_begin": on_batch_begin, "batch_end": on_batch_end,
                     "train_begin": on_train_begin, "train_end": on_train_end}
        for k, f in self._fns.items():
            if f is not None and not callable(f):
                raise TypeError(f"on_{k} must be callable, got {type(f).__name__}")

    @property
    def wants_batch_hooks(self) -> bool:
        return self._fns["batch_begin"] is not None or self._fns["batch_end"] is not None

    def on_train_begin(self, logs=None):
        if self._fns["train_begin"]:
            self._fns["train_begin"](logs)

    def on_train_end(self, logs=None):
        if self._fns["train_end"]:
            self._fns["train_end"](logs)

    def on_epoch_begin(self, epoch, logs=None):
        if self._fns["epoch_begin"]:
            self._fns["epoch_begin"](epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self._fns["epoch_end"]:
            self._fns["epoch_end"](epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        if self._fns["batch_begin"]:
            self._fns["batch_begin"](batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        if self._fns["batch_end"]:
            self._fns["batch_end"](batch, logs)


class CallbackList:
    """Fans each hook out to every callback; the model's fit loop talks only to this."""

    def __init__(self, callbacks: List[Callback], model: Any, params: Dict[str, Any]) -> None:
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback instances, got "
                                f"{type(cb).__name__}")
            cb.set_model(model)
            cb.set_params(params)
        self.callbacks = callbacks
        self.batch_callbacks = [cb for cb in callbacks if cb.wants_batch_hooks]

    def on_train_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_train_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        for cb in self.batch_callbacks:
            cb.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        for cb in self.batch_callbacks:
            cb.on_train_batch_end(batch, logs)
