"""Optimizer updates, each one fused kernel pass that updates the parameter and its state in
place, plus the reductions a training loop needs around them (global gradient norm, L1/L2
penalties).

The arrays must be C-contiguous float32/float64 NumPy arrays of one shape and dtype; the updated
ones (parameter, state) must be writeable. Nothing is allocated and nothing is returned by the
updates: the training layer owns its buffers.

Formulations: SGD as PyTorch (momentum buffer ``v = mu*v + g``, Nesterov ``g + mu*v``, L2
``weight_decay`` added to the gradient); Adam and RMSprop as Keras (Adam's eps is added to
``sqrt(v)`` and the bias correction goes into the step size; RMSprop's eps is inside the sqrt),
with ``decoupled=True`` giving AdamW (``p -= lr*wd*p`` before the step).
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np

from .. import backend as _backend
from . import _nncheck as _c

__all__ = ["sgd_step", "adam_step", "adam_steps", "rmsprop_step", "ema_update", "grad_norm",
           "clip_grad_norm", "regularizer_loss", "regularizer_grad"]


_INF = math.inf
F32, F64, ND = _c.F32, _c.F64, _c.ND


def _fast_ok(p: Any, ro: tuple, rw: tuple) -> bool:
    """True when every array is a C-contiguous NumPy array of p's shape and (canonical float)
    dtype and p and the ``rw`` ones are writeable: the common case, checked in ~1 us."""
    if type(p) is not ND:
        return False
    dt = p.dtype
    if not (dt is F32 or dt is F64):
        return False
    f = p.flags
    if not (f.c_contiguous and f.writeable):
        return False
    shape = p.shape
    for a in ro:
        if type(a) is not ND or a.dtype is not dt or a.shape != shape or not a.flags.c_contiguous:
            return False
    for a in rw:
        if type(a) is not ND or a.dtype is not dt or a.shape != shape:
            return False
        f = a.flags
        if not (f.c_contiguous and f.writeable):
            return False
    return True


def _param(a: Any, name: str, op: str) -> None:
    if type(a) is not np.ndarray:
        raise TypeError(f"{op}: {name} must be a NumPy array, got {type(a).__name__}")
    if a.dtype not in (F32, F64):
        raise TypeError(f"{op}: {name} must be (native) float32 or float64, got {a.dtype}")
    fl = a.flags
    if not (fl.c_contiguous and fl.writeable):
        raise ValueError(f"{op}: {name} is updated in place and must be C-contiguous and "
                         f"writeable (c_contiguous={fl.c_contiguous}, writeable={fl.writeable})")


def _like(a: Any, name: str, p: np.ndarray, op: str, writeable: bool) -> None:
    if type(a) is not np.ndarray:
        raise TypeError(f"{op}: {name} must be a NumPy array, got {type(a).__name__}")
    if a.shape != p.shape:
        raise ValueError(f"{op}: {name} must have the parameter's shape {p.shape}, got {a.shape}")
    if a.dtype != p.dtype:
        raise TypeError(f"{op}: {name} has dtype {a.dtype} but the parameter is {p.dtype}")
    fl = a.flags
    if not fl.c_contiguous or (writeable and not fl.writeable):
        raise ValueError(f"{op}: {name} must be C-contiguous" + (" and writeable" if writeable
                                                                  else ""))


def _slow_check(op: str, p: Any, ro: tuple, rw: tuple) -> None:
    """The same conditions as _fast_ok, raising an error that names the first one broken."""
    _param(p, "param", op)
    for name, a in ro:
        _like(a, name, p, op, False)
    for name, a in rw:
        _like(a, name, p, op, True)


def _lr(lr: Any) -> float:
    lr = _c.real(lr, "lr")
    if not (lr >= 0.0 and lr != math.inf):
        raise ValueError(f"lr must be a finite number >= 0, got {lr}")
    return lr


def _unit(v: Any, name: str, closed: bool = False) -> float:
    """v in [0, 1) (or [0, 1] when closed)."""
    return _c.in_range(_c.real(v, name), name, 0.0, 1.0, hi_open=not closed)


def _nonneg(v: Any, name: str) -> float:
    return _c.in_range(_c.real(v, name), name, 0.0, _INF)


def sgd_step(param: np.ndarray, grad: np.ndarray, velocity: Optional[np.ndarray] = None, *,
             lr: float, momentum: float = 0.0, nesterov: bool = False,
             weight_decay: float = 0.0) -> None:
    """One SGD step in place: ``g = grad + wd*param``; with momentum ``v = mu*v + g`` and the step
    along ``v`` (or ``g + mu*v`` with Nesterov); ``param -= lr * step``. ``velocity`` (zeros at
    the start) is required when ``momentum > 0``."""
    if not _fast_ok(param, (grad,), ()):
        _slow_check("sgd_step", param, (("grad", grad),), ())
    if not (type(lr) is float and 0.0 <= lr < _INF):
        lr = _lr(lr)
    if not (type(momentum) is float and 0.0 <= momentum <= 1.0):
        momentum = _unit(momentum, "momentum", closed=True)
    if not (type(weight_decay) is float and 0.0 <= weight_decay < _INF):
        weight_decay = _nonneg(weight_decay, "weight_decay")
    if momentum != 0.0:
        if velocity is None:
            raise ValueError("sgd_step with momentum > 0 needs a velocity array (zeros at the "
                             "start, the parameter's shape and dtype)")
        if not _fast_ok(velocity, (), ()) or velocity.shape != param.shape \
                or velocity.dtype is not param.dtype:
            _like(velocity, "velocity", param, "sgd_step", True)
    else:
        if nesterov:
            raise ValueError("nesterov=True needs momentum > 0")
        velocity = None
    if param.size:
        _backend.kernels().sgd_step(param, velocity, grad, lr, momentum, bool(nesterov),
                                    weight_decay)


def _adam_args(lr: Any, beta1: Any, beta2: Any, eps: Any, weight_decay: Any, step: Any
               ) -> tuple:
    """Adam's scalars checked (plain floats in range pass at the cost of a comparison)."""
    if not (type(lr) is float and 0.0 <= lr < _INF):
        lr = _lr(lr)
    if not (type(beta1) is float and 0.0 <= beta1 < 1.0):
        beta1 = _unit(beta1, "beta1")
    if not (type(beta2) is float and 0.0 <= beta2 < 1.0):
        beta2 = _unit(beta2, "beta2")
    if not (type(eps) is float and 0.0 <= eps < _INF):
        eps = _nonneg(eps, "eps")
    if not (type(weight_decay) is float and 0.0 <= weight_decay < _INF):
        weight_decay = _nonneg(weight_decay, "weight_decay")
    if type(step) is not int:
        step = _c.int_arg(step, "step", minimum=1)
    elif step < 1:
        raise ValueError(f"step is the 1-based update count, got {step}")
    return lr, beta1, beta2, eps, weight_decay, step


def adam_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, *, lr: float,
              beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-7, step: int,
              weight_decay: float = 0.0, decoupled: bool = False) -> None:
    """One Adam step in place (Keras's formulation): ``m = b1*m + (1-b1)*g``,
    ``v = b2*v + (1-b2)*g^2``, ``param -= lr*sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)``, with
    ``t = step`` (1 for the first update). ``weight_decay`` is L2 on the gradient, or AdamW's
    decoupled ``param -= lr*wd*param`` with ``decoupled=True``."""
    if not _fast_ok(param, (grad,), (m, v)):
        _slow_check("adam_step", param, (("grad", grad),), (("m", m), ("v", v)))
    lr, beta1, beta2, eps, weight_decay, step = _adam_args(lr, beta1, beta2, eps, weight_decay,
                                                           step)
    if param.size:
        _backend.kernels().adam_step(param, m, v, grad, lr, beta1, beta2, eps, step,
                                     weight_decay, bool(decoupled))


def adam_steps(params: Sequence[np.ndarray], grads: Sequence[np.ndarray],
               ms: Sequence[np.ndarray], vs: Sequence[np.ndarray], *, lr: float,
               beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-7, step: int,
               weight_decay: float = 0.0, decoupled: bool = False,
               averages: Optional[Sequence[np.ndarray]] = None,
               ema_momentum: float = 0.99) -> None:
    """``adam_step`` on every ``(params[i], grads[i], ms[i], vs[i])`` in one call (PyTorch's
    "foreach" form), the same result as the calls one by one: a model of many small parameters
    pays the per-call cost once. With ``averages``, each ``averages[i]`` then moves toward its
    updated parameter as ``ema_update(averages[i], params[i], momentum=ema_momentum)`` does."""
    op = "adam_steps"
    lists = [list(params), list(grads), list(ms), list(vs)]
    if averages is not None:
        lists.append(list(averages))
    if len({len(x) for x in lists}) != 1:
        raise ValueError(f"{op}: params, grads, ms, vs (and averages) must have one length, got "
                         f"{[len(x) for x in lists]}")
    ps, gs, m_s, v_s = lists[:4]
    avs = lists[4] if averages is not None else None
    for i, (p, g, m, v) in enumerate(zip(ps, gs, m_s, v_s)):
        if not _fast_ok(p, (g,), (m, v)):
            _slow_check(f"{op} (tensor {i})", p, (("grad", g),), (("m", m), ("v", v)))
        if avs is not None and not _fast_ok(avs[i], (p,), ()):
            _slow_check(f"{op} (tensor {i})", avs[i], (("param", p),), ())
    lr, beta1, beta2, eps, weight_decay, step = _adam_args(lr, beta1, beta2, eps, weight_decay,
                                                           step)
    if avs is not None and not (type(ema_momentum) is float and 0.0 <= ema_momentum <= 1.0):
        ema_momentum = _unit(ema_momentum, "ema_momentum", closed=True)
    if not ps:
        return
    kernels = _backend.kernels()
    many = getattr(kernels, "adam_steps", None)
    if many is not None and all(p.dtype is ps[0].dtype for p in ps):
        many(ps, m_s, v_s, gs, avs, lr, beta1, beta2, eps, step, weight_decay, bool(decoupled),
             float(ema_momentum))
        return
    for i, (p, g, m, v) in enumerate(zip(ps, gs, m_s, v_s)):  # a backend without it, mixed dtypes
        adam_step(p, g, m, v, lr=lr, beta1=beta1, beta2=beta2, eps=eps, step=step,
                  weight_decay=weight_decay, decoupled=decoupled)
        if avs is not None:
            ema_update(avs[i], p, momentum=ema_momentum)


def ema_update(average: np.ndarray, param: np.ndarray, *, momentum: float) -> None:
    """A moving average of a parameter, in place: ``average = momentum * average + (1 - momentum)
    * param``, computed as ``average += (1 - momentum) * (param - average)`` in one pass.

    It is the SGD kernel's update ``average -= lr * (grad + wd * average)`` with ``grad = param``,
    ``wd = -1`` and ``lr = -(1 - momentum)``: the same fused loop on every backend, with
    arguments sgd_step itself refuses."""
    if not _fast_ok(average, (param,), ()):
        _slow_check("ema_update", average, (("param", param),), ())
    if not (type(momentum) is float and 0.0 <= momentum <= 1.0):
        momentum = _unit(momentum, "momentum", closed=True)
    if average.size:
        _backend.kernels().sgd_step(average, None, param, -(1.0 - momentum), 0.0, False, -1.0)


def rmsprop_step(param: np.ndarray, grad: np.ndarray, sq: np.ndarray, *, lr: float,
                 rho: float = 0.9, eps: float = 1e-7, momentum: float = 0.0,
                 velocity: Optional[np.ndarray] = None) -> None:
    """One RMSprop step in place (Keras's formulation): ``sq = rho*sq + (1-rho)*g^2``,
    ``inc = lr*g / sqrt(sq + eps)``; with momentum ``velocity = mu*velocity + inc`` is the step.
    ``velocity`` is required when ``momentum > 0``."""
    if not _fast_ok(param, (grad,), (sq,)):
        _slow_check("rmsprop_step", param, (("grad", grad),), (("sq", sq),))
    if not (type(lr) is float and 0.0 <= lr < _INF):
        lr = _lr(lr)
    if not (type(rho) is float and 0.0 <= rho < 1.0):
        rho = _unit(rho, "rho")
    if not (type(eps) is float and 0.0 <= eps < _INF):
        eps = _nonneg(eps, "eps")
    if not (type(momentum) is float and 0.0 <= momentum <= 1.0):
        momentum = _unit(momentum, "momentum", closed=True)
    if momentum != 0.0:
        if velocity is None:
            raise ValueError("rmsprop_step with momentum > 0 needs a velocity array (zeros at "
                             "the start, the parameter's shape and dtype)")
        if not _fast_ok(velocity, (), ()) or velocity.shape != param.shape \
                or velocity.dtype is not param.dtype:
            _like(velocity, "velocity", param, "rmsprop_step", True)
    else:
        velocity = None
    if param.size:
        _backend.kernels().rmsprop_step(param, sq, velocity, grad, lr, rho, eps, momentum)


def _grads(grads: Any) -> list:
    if isinstance(grads, np.ndarray):
        grads = [grads]
    try:
        items = list(grads)
    except TypeError:
        raise TypeError(f"grads must be a list of arrays, got {type(grads).__name__}") from None
    return [_c.host_float(g, f"grads[{i}]", "grad_norm") for i, g in enumerate(items)]


def grad_norm(grads: Sequence[Any]) -> float:
    """The global L2 norm ``sqrt(sum_i sum(g_i**2))`` over a list of arrays (float64 sums)."""
    k = _backend.kernels()
    total = 0.0
    for g in _grads(grads):
        if g.size:
            total += float(k.sum_squares(g))
    return math.sqrt(total)


def clip_grad_norm(grads: Sequence[np.ndarray], max_norm: float) -> float:
    """Scale every array in place by ``max_norm / norm`` when the global norm exceeds
    ``max_norm``; returns the norm before clipping (NaN or inf norms leave the arrays as they
    are, so the caller can see and handle them)."""
    max_norm = _c.in_range(_c.real(max_norm, "max_norm"), "max_norm", 0.0, math.inf,
                           lo_open=True)
    items = list(grads) if not isinstance(grads, np.ndarray) else [grads]
    for i, g in enumerate(items):
        _param(g, f"grads[{i}]", "clip_grad_norm")
    norm = grad_norm(items)
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / norm
        for g in items:
            np.multiply(g, g.dtype.type(scale), out=g)
    return norm


def _l1l2(l1: Any, l2: Any):
    return _nonneg(l1, "l1"), _nonneg(l2, "l2")


def regularizer_loss(w: Any, *, l1: float = 0.0, l2: float = 0.0) -> float:
    """``l1 * sum|w| + l2 * sum(w**2)`` (Keras's L1, L2 and L1L2 penalties), in float64."""
    l1, l2 = _l1l2(l1, l2)
    w = _c.host_float(w, "w", "regularizer_loss")
    if w.size == 0 or (l1 == 0.0 and l2 == 0.0):
        return 0.0
    return float(_backend.kernels().regularizer_loss(w, l1, l2))


def regularizer_grad(grad: np.ndarray, w: Any, *, l1: float = 0.0, l2: float = 0.0) -> None:
    """Add the penalty's gradient ``l1 * sign(w) + 2 * l2 * w`` into ``grad`` in place."""
    op = "regularizer_grad"
    l1, l2 = _l1l2(l1, l2)
    _param(grad, "grad", op)
    _like(w, "w", grad, op, False)
    if w.size and (l1 != 0.0 or l2 != 0.0):
        _backend.kernels().regularizer_grad(grad, w, l1, l2)
