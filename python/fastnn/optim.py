"""Optimizers and learning-rate schedules.

``opt.step(params, grads)`` updates every parameter in place with one fused op per parameter
(``ops.sgd_step``, ``ops.adam_step``, ``ops.rmsprop_step``), so the update makes no NumPy
temporaries. State (momentum, moments) is created as zeros the first time a parameter is seen and
is keyed by the parameter array itself: keep passing the same arrays (layers update theirs in
place, so a model's ``params`` qualify). ``opt.reset()`` forgets all state and the step count.
``opt.get_state(params)`` copies the state out (step count and each parameter's arrays) and
``opt.set_state(params, state)`` puts it back: a saved model resumes training from there.

``learning_rate`` is a float or a schedule (any callable of the step count, such as
:class:`ExponentialDecay`), evaluated once per step with the number of steps taken so far.
``clipnorm`` rescales all gradients together, in place, when their global L2 norm exceeds it.
``lr`` is accepted as an alias of ``learning_rate``.

``use_ema=True`` (Keras's option) also keeps an exponential moving average of every parameter,
``avg = ema_momentum * avg + (1 - ema_momentum) * param`` after each step (the first step sets it
to the parameter). ``ema_overwrite_frequency=N`` copies the averages into the parameters every N
steps; with None (the default) ``Model.fit`` copies them at its end
(:meth:`Optimizer.finalize_variable_values`). Averaged weights often test better after a short
training than the last step's. Like Keras, training then continues from the averages, so with
EMA a ``fit`` split in two (resumed from a save) is no longer identical to one ``fit``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import ops

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "LearningRateSchedule", "StepDecay",
           "ExponentialDecay", "CosineDecay", "get", "serialize"]

LearningRate = Union[float, Callable[[int], float]]


# -- schedules --------------------------------------------------------------------------------

class LearningRateSchedule:
    """A callable ``schedule(step) -> learning rate`` (``step`` counts from 0)."""

    def __call__(self, step: int) -> float:
        raise TypeError(f"{type(self).__name__} does not define __call__")

    def get_config(self) -> Dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "LearningRateSchedule":
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _positive(value: Any, name: str) -> float:
    value = float(value)
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


class StepDecay(LearningRateSchedule):
    """``initial_learning_rate * factor ** (step // step_size)``: a drop every ``step_size``."""

    def __init__(self, initial_learning_rate: float, step_size: int, factor: float = 0.5):
        self.initial_learning_rate = _positive(initial_learning_rate, "initial_learning_rate")
        self.step_size = int(step_size)
        if self.step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        self.factor = _positive(factor, "factor")

    def __call__(self, step):
        return self.initial_learning_rate * self.factor ** (int(step) // self.step_size)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "step_size": self.step_size, "factor": self.factor}


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (floored exponent when
    ``staircase``)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float,
                 staircase: bool = False):
        self.initial_learning_rate = _positive(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = int(decay_steps)
        if self.decay_steps < 1:
            raise ValueError(f"decay_steps must be >= 1, got {decay_steps}")
        self.decay_rate = _positive(decay_rate, "decay_rate")
        self.staircase = bool(staircase)

    def __call__(self, step):
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase}


class CosineDecay(LearningRateSchedule):
    """Half a cosine from ``initial_learning_rate`` down to ``alpha * initial_learning_rate`` over
    ``decay_steps``, then flat."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, alpha: float = 0.0):
        self.initial_learning_rate = _positive(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = int(decay_steps)
        if self.decay_steps < 1:
            raise ValueError(f"decay_steps must be >= 1, got {decay_steps}")
        self.alpha = float(alpha)
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")

    def __call__(self, step):
        t = min(int(step), self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * t))
        return self.initial_learning_rate * ((1.0 - self.alpha) * cosine + self.alpha)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha}


_SCHEDULES = {c.__name__: c for c in (StepDecay, ExponentialDecay, CosineDecay)}


# -- optimizers -------------------------------------------------------------------------------

class Optimizer:
    """Base class: subclasses define ``_new_state(param)`` and ``_update(param, grad, state, lr)``
    (or, with a multi-tensor kernel, ``_update_all(todo, lr)`` for all of them at once).
    """

    name = "optimizer"

    def __init__(self, learning_rate: Optional[LearningRate], clipnorm: Optional[float],
                 lr: Optional[LearningRate], default: float, use_ema: bool = False,
                 ema_momentum: float = 0.99,
                 ema_overwrite_frequency: Optional[int] = None) -> None:
        if lr is not None:
            if learning_rate is not None:
                raise TypeError("pass either learning_rate or its alias lr, not both")
            learning_rate = lr
        if learning_rate is None:
            learning_rate = default
        if isinstance(learning_rate, dict):
            learning_rate = _schedule_from_config(learning_rate)
        if not callable(learning_rate):
            learning_rate = float(learning_rate)
            if not learning_rate > 0:
                raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
        self.learning_rate: LearningRate = learning_rate
        if clipnorm is not None:
            clipnorm = float(clipnorm)
            if not clipnorm > 0:
                raise ValueError(f"clipnorm must be > 0, got {clipnorm}")
        self.clipnorm = clipnorm
        self.use_ema = bool(use_ema)
        self.ema_momentum = float(ema_momentum)
        if not 0.0 <= self.ema_momentum < 1.0:
            raise ValueError(f"ema_momentum must be in [0, 1), got {ema_momentum}")
        if ema_overwrite_frequency is not None:
            if (isinstance(ema_overwrite_frequency, bool)
                    or not isinstance(ema_overwrite_frequency, (int, np.integer))
                    or ema_overwrite_frequency < 1):
                raise ValueError(f"ema_overwrite_frequency must be None or an int >= 1, got "
                                 f"{ema_overwrite_frequency!r}")
            ema_overwrite_frequency = int(ema_overwrite_frequency)
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.iterations = 0
        self._state: Dict[int, tuple] = {}

    @property
    def lr(self) -> LearningRate:
        return self.learning_rate

    @lr.setter
    def lr(self, value: LearningRate) -> None:
        self.learning_rate = value

    def current_learning_rate(self) -> float:
        """The learning rate the next step will use."""
        lr = self.learning_rate
        return float(lr(self.iterations)) if callable(lr) else lr

    def reset(self) -> None:
        """Forget every parameter's state and the step count."""
        self._state.clear()
        self.iterations = 0

    def get_state(self, params: Sequence[Any]) -> Dict[str, Any]:
        """Copies of what the next steps depend on besides the settings.

        ``{"iterations": steps taken, "slots": [...]}`` with one entry per parameter of
        ``params``, in order: None when this optimizer has not updated it yet, else a tuple of
        copies of its state arrays (momentum, moments), with None for a slot the settings leave
        unused (SGD's momentum buffer at ``momentum=0``); with ``use_ema`` the parameter's moving
        average is the last array of each tuple.
        """
        slots: List[Optional[tuple]] = []
        for p in params:
            s = self._state.get(id(p))
            if s is None or s[0] is not p:
                slots.append(None)
            else:
                slots.append(tuple(None if a is None else np.array(a, copy=True)
                                   for a in s[1:]))
        return {"iterations": self.iterations, "slots": slots}

    def set_state(self, params: Sequence[Any], state: Dict[str, Any]) -> None:
        """Continue from ``state`` (from :meth:`get_state` of an optimizer with the same
        settings, for parameters of the same shapes in the same order).

        Replaces all state this optimizer holds, and its step count (which places a
        learning-rate schedule). Raises ValueError when ``state`` does not fit.
        """
        iterations = state.get("iterations") if isinstance(state, dict) else None
        if (isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer))
                or iterations < 0):
            raise ValueError(f"state['iterations'] must be a non-negative int, got "
                             f"{iterations!r}")
        saved_slots = list(state.get("slots") or ())
        if len(saved_slots) != len(params):
            raise ValueError(f"the state holds {len(saved_slots)} parameters but "
                             f"{len(params)} were given")
        new: Dict[int, tuple] = {}
        for i, (p, saved) in enumerate(zip(params, saved_slots)):
            if saved is None:
                continue
            fresh = self._slots(p)
            saved = tuple(saved)
            if len(saved) != len(fresh) or any((a is None) != (f is None)
                                               for a, f in zip(saved, fresh)):
                raise ValueError(
                    f"parameter {i}: the state has slots {_pattern(saved)} but {self!r} keeps "
                    f"{_pattern(fresh)} (was it saved by an optimizer with other settings?)")
            for a, f in zip(saved, fresh):
                if a is None:
                    continue
                a = np.asarray(a)
                if a.shape != p.shape or a.dtype != p.dtype:
                    raise ValueError(f"parameter {i} is {p.dtype}{list(p.shape)} but its state "
                                     f"is {a.dtype}{list(a.shape)}")
                f[...] = a  # into the arrays _new_state makes, so the layout is the usual one
            new[id(p)] = (p,) + fresh
        self._state = new
        self.iterations = int(iterations)

    def step(self, params: Sequence[Any], grads: Sequence[Any]) -> None:
        """Update ``params`` in place from ``grads`` (same order, same shapes)."""
        if len(params) != len(grads):
            raise ValueError(f"got {len(params)} parameters but {len(grads)} gradients")
        lr = self.learning_rate
        lr = float(lr(self.iterations)) if callable(lr) else lr
        if self.clipnorm is not None:
            grads = self._clip(grads)
        self.iterations += 1
        state = self._state
        todo = []
        for p, g in zip(params, grads):
            if g is None:
                continue
            s = state.get(id(p))
            if s is None or s[0] is not p:  # s[0] pins p, so an id is never reused under us
                if getattr(g, "shape", None) != p.shape:
                    raise ValueError(f"a gradient of shape {getattr(g, 'shape', None)} was "
                                     f"given for a parameter of shape {p.shape}")
                s = (p,) + self._slots(p)
                state[id(p)] = s
            todo.append((p, g, s))
        self._update_all(todo, lr)
        if self.use_ema and self.ema_overwrite_frequency is not None \
                and self.iterations % self.ema_overwrite_frequency == 0:
            for p, g in zip(params, grads):
                if g is not None:
                    p[...] = state[id(p)][-1]

    def _update_all(self, todo: List[Tuple[Any, Any, tuple]], lr: float) -> None:
        """The update of every (param, grad, state), each followed by its moving average's
        (use_ema; the first step copies the parameter). A subclass with a multi-tensor kernel
        does all of it in one call: a model of many small parameters (a Transformer's) pays
        per call, not per element."""
        update = self._update
        for p, g, s in todo:
            update(p, g, s, lr)
            if self.use_ema:
                self._ema_one(p, s)

    def _ema_one(self, p: Any, s: tuple) -> None:
        avg = s[-1]
        if self.iterations == 1:
            np.copyto(avg, p)
        else:  # one fused pass: three NumPy passes cost more than Adam's own step
            ops.ema_update(avg, p, momentum=self.ema_momentum)

    def _slots(self, p: Any) -> tuple:
        """The state arrays of a parameter: the subclass's, then the moving average."""
        if self.use_ema:
            return self._new_state(p) + (np.array(p, copy=True, order="C"),)
        return self._new_state(p)

    def finalize_variable_values(self, params: Sequence[Any]) -> None:
        """With ``use_ema`` and no ``ema_overwrite_frequency``: copy every parameter's moving
        average into it (``Model.fit`` calls this at its end, as Keras does). Otherwise
        nothing."""
        if not self.use_ema or self.ema_overwrite_frequency is not None:
            return
        for p in params:
            s = self._state.get(id(p))
            if s is not None and s[0] is p:
                p[...] = s[-1]

    def _clip(self, grads: Sequence[Any]) -> Sequence[Any]:
        ops.clip_grad_norm([g for g in grads if g is not None], self.clipnorm)
        return grads

    def _new_state(self, p: Any) -> tuple:
        return ()

    def _update(self, p: Any, g: Any, s: tuple, lr: float) -> None:
        raise TypeError(f"{type(self).__name__} does not define _update()")

    def get_config(self) -> Dict[str, Any]:
        lr = self.learning_rate
        if isinstance(lr, LearningRateSchedule):
            lr = {"class_name": type(lr).__name__, "config": lr.get_config()}
        elif callable(lr):
            lr = None  # an arbitrary function cannot be saved; a reload uses the default
        cfg: Dict[str, Any] = {"learning_rate": lr, "clipnorm": self.clipnorm}
        if self.use_ema:  # only then, so configs saved before EMA existed stay the same
            cfg.update({"use_ema": True, "ema_momentum": self.ema_momentum,
                        "ema_overwrite_frequency": self.ema_overwrite_frequency})
        return cfg

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "Optimizer":
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _pattern(slots: tuple) -> str:
    return "(" + ", ".join("None" if a is None else "array" for a in slots) + ")"


def _zeros(p: Any) -> Any:
    return np.zeros_like(p)


class SGD(Optimizer):
    """Plain SGD, with heavy-ball or Nesterov momentum and (coupled, L2-style) weight decay."""

    name = "sgd"

    def __init__(self, learning_rate: Optional[LearningRate] = None, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0, *,
                 clipnorm: Optional[float] = None, lr: Optional[LearningRate] = None,
                 use_ema: bool = False, ema_momentum: float = 0.99,
                 ema_overwrite_frequency: Optional[int] = None) -> None:
        super().__init__(learning_rate, clipnorm, lr, 0.01, use_ema, ema_momentum,
                         ema_overwrite_frequency)
        self.momentum = float(momentum)
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.weight_decay = float(weight_decay)
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")

    def _new_state(self, p):
        return (_zeros(p) if self.momentum else None,)

    def _update(self, p, g, s, lr):
        ops.sgd_step(p, g, s[1], lr=lr, momentum=self.momentum, nesterov=self.nesterov,
                     weight_decay=self.weight_decay)

    def get_config(self):
        cfg = super().get_config()
        cfg.update({"momentum": self.momentum, "nesterov": self.nesterov,
                    "weight_decay": self.weight_decay})
        return cfg


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias-corrected moments."""

    name = "adam"
    _decoupled = False

    def __init__(self, learning_rate: Optional[LearningRate] = None, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7, *,
                 clipnorm: Optional[float] = None, lr: Optional[LearningRate] = None,
                 use_ema: bool = False, ema_momentum: float = 0.99,
                 ema_overwrite_frequency: Optional[int] = None) -> None:
        super().__init__(learning_rate, clipnorm, lr, 0.001, use_ema, ema_momentum,
                         ema_overwrite_frequency)
        self.beta_1, self.beta_2 = float(beta_1), float(beta_2)
        for n, b in (("beta_1", self.beta_1), ("beta_2", self.beta_2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"{n} must be in [0, 1), got {b}")
        self.epsilon = _positive(epsilon, "epsilon")
        self.weight_decay = 0.0

    def _new_state(self, p):
        return (_zeros(p), _zeros(p))

    def _update_all(self, todo, lr):
        # One ops.adam_steps call for all of them and their moving averages (a ViT's 31 tensors:
        # 86 us a step, against 115 as one adam_step and one ema_update call per tensor).
        if not todo:
            return
        ema = self.use_ema and self.iterations > 1
        ops.adam_steps([t[0] for t in todo], [t[1] for t in todo], [t[2][1] for t in todo],
                       [t[2][2] for t in todo], lr=lr, beta1=self.beta_1, beta2=self.beta_2,
                       eps=self.epsilon, step=self.iterations, weight_decay=self.weight_decay,
                       decoupled=self._decoupled,
                       averages=[t[2][-1] for t in todo] if ema else None,
                       ema_momentum=self.ema_momentum)
        if self.use_ema and not ema:  # the first step: the averages start at the parameters
            for p, _, s in todo:
                self._ema_one(p, s)

    def get_config(self):
        cfg = super().get_config()
        cfg.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon})
        return cfg


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p -= lr * weight_decay * p``
    apart from the adaptive step."""

    name = "adamw"
    _decoupled = True

    def __init__(self, learning_rate: Optional[LearningRate] = None,
                 weight_decay: float = 0.004, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, *, clipnorm: Optional[float] = None,
                 lr: Optional[LearningRate] = None, use_ema: bool = False,
                 ema_momentum: float = 0.99,
                 ema_overwrite_frequency: Optional[int] = None) -> None:
        super().__init__(learning_rate, beta_1, beta_2, epsilon, clipnorm=clipnorm, lr=lr,
                         use_ema=use_ema, ema_momentum=ema_momentum,
                         ema_overwrite_frequency=ema_overwrite_frequency)
        self.weight_decay = float(weight_decay)
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")

    def get_config(self):
        cfg = super().get_config()
        cfg["weight_decay"] = self.weight_decay
        return cfg


class RMSprop(Optimizer):
    """RMSprop: steps scaled by a running RMS of the gradients, with optional momentum."""

    name = "rmsprop"

    def __init__(self, learning_rate: Optional[LearningRate] = None, rho: float = 0.9,
                 epsilon: float = 1e-7, momentum: float = 0.0, *,
                 clipnorm: Optional[float] = None, lr: Optional[LearningRate] = None,
                 use_ema: bool = False, ema_momentum: float = 0.99,
                 ema_overwrite_frequency: Optional[int] = None) -> None:
        super().__init__(learning_rate, clipnorm, lr, 0.001, use_ema, ema_momentum,
                         ema_overwrite_frequency)
        self.rho = float(rho)
        if not 0.0 <= self.rho < 1.0:
            raise ValueError(f"rho must be in [0, 1), got {rho}")
        self.epsilon = _positive(epsilon, "epsilon")
        self.momentum = float(momentum)
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")

    def _new_state(self, p):
        return (_zeros(p), _zeros(p) if self.momentum else None)

    def _update(self, p, g, s, lr):
        ops.rmsprop_step(p, g, s[1], lr=lr, rho=self.rho, eps=self.epsilon,
                         momentum=self.momentum, velocity=s[2])

    def get_config(self):
        cfg = super().get_config()
        cfg.update({"rho": self.rho, "epsilon": self.epsilon, "momentum": self.momentum})
        return cfg


_CLASSES = {c.__name__: c for c in (SGD, Adam, AdamW, RMSprop)}
_NAMES = {c.name: c for c in (SGD, Adam, AdamW, RMSprop)}


def _schedule_from_config(cfg: Dict[str, Any]) -> LearningRateSchedule:
    cls = _SCHEDULES.get(cfg.get("class_name"))
    if cls is None:
        raise ValueError(f"unknown learning-rate schedule {cfg.get('class_name')!r}")
    return cls.from_config(cfg.get("config", {}))


def get(identifier: Any) -> Optimizer:
    """An optimizer from a name (``"adam"``, ``"sgd"``...), a config dict or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _NAMES.get(identifier.lower())
        if cls is None:
            raise ValueError(f"unknown optimizer {identifier!r}; expected one of "
                             f"{sorted(_NAMES)} or an Optimizer")
        return cls()
    if isinstance(identifier, dict) and "class_name" in identifier:
        cls = _CLASSES.get(identifier["class_name"])
        if cls is None:
            raise ValueError(f"unknown optimizer class {identifier['class_name']!r}")
        cfg = {k: v for k, v in identifier.get("config", {}).items() if v is not None
               or k == "clipnorm"}
        return cls.from_config(cfg)
    raise TypeError(f"optimizer must be a name or an Optimizer, got {type(identifier).__name__}")


def serialize(opt: Optimizer) -> Dict[str, Any]:
    opt = getattr(opt, "wrapped_optimizer", opt)  # a DistributedOptimizer saves what it wraps
    return {"class_name": type(opt).__name__, "config": opt.get_config()}
