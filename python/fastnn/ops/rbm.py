"""Restricted Boltzmann machines: conditional means and samples, contrastive divergence, free
energy and pseudo-likelihood.

``w`` has shape ``(n_hidden, n_visible)`` (the linear layer's layout: the hidden layer is
``linear(v, w, b_hid)``). The sigmoid and the Bernoulli draw run in the GEMM's epilogue, on each
output tile while it is in cache. Random numbers are counter-based (csrc/common/rng.h): a sample
depends only on (seed, element index, sampling stage), so it is the same on every backend and
thread count, and no generator state is carried between calls. ``fastnn.reference.rbm``
documents the draw and is the float64 ground truth.

These ops have no ``_forward``/``_backward`` pair: an RBM is trained by ``rbm_cd_step``, which
computes its own (non-gradient) update.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from .. import backend as _backend
from . import _nncheck as _c

__all__ = ["rbm_hidden", "rbm_visible", "rbm_cd_step", "rbm_cd_steps", "CdSteps",
           "rbm_free_energy", "rbm_pseudo_likelihood", "VISIBLE_UNITS"]

VISIBLE_UNITS = ("bernoulli", "gaussian")
_SEED_LIMIT = 1 << 64
_COUNTER_LIMIT = 1 << 32  # elements a sampling stage may number (the counter's lower half)


def _seed(seed: Any) -> int:
    if not (type(seed) is int and 0 <= seed < _SEED_LIMIT):
        if seed is None:
            raise TypeError("seed must be a non-negative int (sampling needs one), got None")
        seed = _c.int_arg(seed, "seed")
        if seed >= _SEED_LIMIT:
            raise ValueError(f"seed must be a non-negative int below 2**64, got {seed}")
    return seed


def _visible_kind(visible: Any) -> bool:
    if visible not in VISIBLE_UNITS:
        raise ValueError(f"visible must be one of {VISIBLE_UNITS}, got {visible!r}")
    return visible == "gaussian"


def _mat(x: Any, name: str, op: str) -> np.ndarray:
    x = _c.host_float(x, name, op)
    if x.ndim != 2:
        raise ValueError(f"{op}: {name} must be 2-D, got shape {x.shape}")
    return x


def _all_finite(a: np.ndarray) -> bool:
    # min and max propagate NaN and show an inf; two vectorized passes without the temporary
    # of isfinite().all() (a third of its cost on weights checked at every training step).
    return math.isfinite(float(a.min())) and math.isfinite(float(a.max()))


def _params(w: Any, b_vis: Any, b_hid: Any, op: str, *, inplace: bool = False,
            scan: bool = True):
    """w (n_hidden, n_visible) and the biases, one float dtype, finite."""
    if inplace:
        for name, a in (("w", w), ("b_vis", b_vis), ("b_hid", b_hid)):
            if a is None:
                continue
            if not (type(a) is np.ndarray and a.dtype in (_c.F32, _c.F64)
                    and a.flags.c_contiguous and a.flags.writeable):
                got = (f"{a.dtype} array (C-contiguous: {a.flags.c_contiguous}, writable: "
                       f"{a.flags.writeable})" if isinstance(a, np.ndarray)
                       else type(a).__name__)
                raise TypeError(f"{op} updates {name} in place: it must be a writable "
                                f"C-contiguous float32/float64 NumPy array, got {got}")
    w = _mat(w, "w", op)
    nh, nv = w.shape
    out = [w]
    for name, b, n, what in (("b_vis", b_vis, nv, "n_visible"), ("b_hid", b_hid, nh, "n_hidden")):
        if b is None:
            out.append(None)
            continue
        b = _c.host_float(b, name, op)
        if b.shape != (n,):
            raise ValueError(f"{op}: {name} must have shape ({n},) ({what} of w with shape "
                             f"{w.shape}), got {b.shape}")
        if b.dtype != w.dtype:
            raise TypeError(f"{op}: {name} has dtype {b.dtype} but w has {w.dtype}")
        out.append(b)
    for name, a in zip(("w", "b_vis", "b_hid"), out):
        if scan and a is not None and a.size and not _all_finite(a):
            raise ValueError(f"{op}: {name} contains NaN or inf")
    return out


def _data(x: Any, name: str, width: int, dtype: np.dtype, op: str, what: str, *,
          unit_range: bool = False, scan: bool = True) -> np.ndarray:
    x = _mat(x, name, op)
    if x.shape[1] != width:
        raise ValueError(f"{op}: {name} must have {width} columns ({what}), got shape {x.shape}")
    if x.dtype != dtype:
        raise TypeError(f"{op}: {name} has dtype {x.dtype} but w has {dtype}")
    if scan and x.size:
        lo, hi = float(x.min()), float(x.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):  # min/max propagate NaN
            raise ValueError(f"{op}: {name} contains NaN or inf")
        if unit_range and (lo < 0.0 or hi > 1.0):
            raise ValueError(f"{op}: Bernoulli visible units need {name} in [0, 1] (binary "
                             f"data or probabilities), got values in [{lo}, {hi}]; use "
                             f"visible='gaussian' for standardized real-valued data")
    if x.size >= _COUNTER_LIMIT:
        raise ValueError(f"{op}: {name} has {x.size} elements; at most 2**32 - 1 are supported")
    return x


def _rows(rows: Any, n: int, op: str, name: str = "rows") -> np.ndarray:
    """Indices into an n-row array: 1-D, integer, non-empty, each in [0, n); as int64."""
    r = rows if isinstance(rows, np.ndarray) else np.asarray(rows)
    if r.dtype.kind not in "iu":
        raise TypeError(f"{op}: {name} must be integer indices, got dtype {r.dtype}")
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"{op}: {name} must be a non-empty 1-D array of indices, got shape "
                         f"{r.shape}")
    lo, hi = int(r.min()), int(r.max())
    if lo < 0 or hi >= n:
        raise ValueError(f"{op}: {name} must index the {n} rows of v0, got values in "
                         f"[{lo}, {hi}]")
    return np.ascontiguousarray(r, dtype=np.int64)


def _output(rows: int, cols: int, dtype: np.dtype, op: str) -> np.ndarray:
    """An uninitialized (rows, cols) result, small enough for the sampling counter."""
    if rows * cols >= _COUNTER_LIMIT:
        raise ValueError(f"{op}: the output has {rows * cols} elements; at most 2**32 - 1")
    return np.empty((rows, cols), dtype)


def rbm_hidden(v: Any, w: Any, b_hid: Any, *, sample: bool = False,
               seed: Optional[int] = None) -> np.ndarray:
    """Hidden probabilities ``sigmoid(v @ w.T + b_hid)``, shape ``(batch, n_hidden)``; with
    ``sample=True`` their Bernoulli samples (0/1 in v's dtype), drawn from ``seed``."""
    w, _, b_hid = _params(w, None, b_hid, "rbm_hidden")
    v = _data(v, "v", w.shape[1], w.dtype, "rbm_hidden", "n_visible of w")
    seed = _seed(seed) if sample else 0
    h = _output(v.shape[0], w.shape[0], w.dtype, "rbm_hidden")
    if h.size:
        _backend.kernels().rbm_hidden(h, v, w, b_hid, bool(sample), seed)
    return h


def rbm_visible(h: Any, w: Any, b_vis: Any, *, visible: str = "bernoulli", sample: bool = False,
                seed: Optional[int] = None) -> np.ndarray:
    """Visible means given the hidden units, shape ``(batch, n_visible)``: ``sigmoid(h @ w +
    b_vis)`` for Bernoulli units, ``h @ w + b_vis`` for unit-variance Gaussian ones; with
    ``sample=True`` Bernoulli samples (0/1), or the mean plus standard normal noise."""
    gaussian = _visible_kind(visible)
    w, b_vis, _ = _params(w, b_vis, None, "rbm_visible")
    h = _data(h, "h", w.shape[0], w.dtype, "rbm_visible", "n_hidden of w")
    seed = _seed(seed) if sample else 0
    v = _output(h.shape[0], w.shape[1], w.dtype, "rbm_visible")
    if v.size:
        _backend.kernels().rbm_visible(v, h, w, b_vis, gaussian, bool(sample), seed)
    return v


def _state(a: Any, name: str, shape: tuple, dtype: np.dtype, op: str) -> np.ndarray:
    if not (type(a) is np.ndarray and a.flags.c_contiguous and a.flags.writeable):
        raise TypeError(f"{op}: {name} is updated in place and must be a writable C-contiguous "
                        f"NumPy array, got {type(a).__name__}")
    if a.shape != shape:
        raise ValueError(f"{op}: {name} must have shape {shape}, got {a.shape}")
    if a.dtype != dtype:
        raise TypeError(f"{op}: {name} has dtype {a.dtype} but w has {dtype}")
    return a


def _cd_args(v0: Any, w: Any, b_vis: Any, b_hid: Any, *, k: Any, persistent_chain: Any,
             lr: Any, momentum: Any, weight_decay: Any, seed: Any, visible: Any, velocity: Any,
             compute_error: Any, check_values: Any, rows: Any) -> Tuple[Any, list]:
    """rbm_cd_step's checks; returns the kernel and its argument list (the order CdSteps uses:
    v0 at 7, compute_error at 13, seed at 14, rows at 15)."""
    op = "rbm_cd_step"
    gaussian = _visible_kind(visible)
    w, b_vis, b_hid = _params(w, b_vis, b_hid, op, inplace=True, scan=bool(check_values))
    nh, nv = w.shape
    dt = w.dtype
    if rows is None:
        v0 = _data(v0, "v0", nv, dt, op, "n_visible of w", unit_range=not gaussian,
                   scan=bool(check_values))
        if v0.shape[0] == 0:
            raise ValueError(f"{op}: v0 must have at least one row, got shape {v0.shape}")
    else:
        v0 = _data(v0, "v0", nv, dt, op, "n_visible of w", scan=False)
        rows = _rows(rows, v0.shape[0], op)
        if check_values:
            _data(v0[rows], "v0[rows]", nv, dt, op, "n_visible of w", unit_range=not gaussian)
        if len(rows) * nv >= _COUNTER_LIMIT:
            raise ValueError(f"{op}: the batch v0[rows] has {len(rows) * nv} elements; at most "
                             f"2**32 - 1 are supported")
    k = _c.int_arg(k, "k", minimum=1)
    lr = _c.real(lr, "lr")
    if not (math.isfinite(lr) and lr >= 0.0):
        raise ValueError(f"lr must be a finite number >= 0, got {lr}")
    momentum = _c.in_range(_c.real(momentum, "momentum"), "momentum", 0.0, 1.0)
    weight_decay = _c.real(weight_decay, "weight_decay")
    if not (math.isfinite(weight_decay) and weight_decay >= 0.0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay}")
    seed = _seed(seed)
    chain = persistent_chain
    if chain is not None:
        if not isinstance(chain, np.ndarray) or chain.ndim != 2 or chain.shape[1] != nh:
            raise ValueError(f"{op}: persistent_chain must have shape (n_particles, {nh}) "
                             f"(n_hidden of w with shape {w.shape}), got "
                             f"{getattr(chain, 'shape', type(chain).__name__)}")
        _state(chain, "persistent_chain", chain.shape, dt, op)
        if chain.shape[0] == 0:
            raise ValueError(f"{op}: persistent_chain must have at least one row")
        if chain.size >= _COUNTER_LIMIT or chain.shape[0] * nv >= _COUNTER_LIMIT:
            raise ValueError(f"{op}: persistent_chain is too large for the sample counters")
        if check_values and not ((chain == 0) | (chain == 1)).all():
            raise ValueError(f"{op}: persistent_chain must hold hidden samples (0/1 values)")
    vel = (None, None, None)
    if momentum != 0.0:
        if velocity is None or len(velocity) != 3:
            raise ValueError(f"{op}: momentum={momentum} needs velocity=(vel_w, vel_b_vis, "
                             f"vel_b_hid), arrays shaped like w, b_vis, b_hid")
        vel = tuple(_state(a, name, ref.shape, dt, op) for a, name, ref in
                    zip(velocity, ("vel_w", "vel_b_vis", "vel_b_hid"), (w, b_vis, b_hid)))
    return _backend.kernels().rbm_cd_step, [w, b_vis, b_hid, chain, vel[0], vel[1], vel[2], v0,
                                            k, lr, momentum, weight_decay, gaussian,
                                            bool(compute_error), seed, rows]


def rbm_cd_step(v0: Any, w: np.ndarray, b_vis: np.ndarray, b_hid: np.ndarray, *, k: int = 1,
                persistent_chain: Optional[np.ndarray] = None, lr: float,
                momentum: float = 0.0, weight_decay: float = 0.0, seed: int,
                visible: str = "bernoulli",
                velocity: Optional[Sequence[np.ndarray]] = None,
                compute_error: bool = True, check_values: bool = True,
                rows: Any = None) -> Optional[float]:
    """One contrastive-divergence update of ``w``, ``b_vis`` and ``b_hid``, in place.

    CD-k (``persistent_chain=None``): k Gibbs steps start from a hidden sample of the data.
    Persistent CD: they start from ``persistent_chain`` (``(n_particles, n_hidden)``, 0/1 values,
    updated in place with the chain's new hidden sample; its row count need not be the batch's).
    The gradient is ``h0.T v0 / batch - hk.T vk / n_particles`` (hidden probabilities h, sampled
    Bernoulli visibles or Gaussian visible means v), minus ``weight_decay * w`` for the weights;
    the step is ``lr * gradient``, accumulated in ``velocity = (vel_w, vel_b_vis, vel_b_hid)``
    (required, updated in place) when ``momentum`` is not 0. ``visible="gaussian"``: unit-variance
    Gaussian visible units, for standardized real-valued data.

    Returns the reconstruction error (the mean over the batch of ``|v0 - E[v | h0]|^2``, with the
    parameters before the update), or None when ``compute_error`` is False (one product less).

    ``check_values=False`` skips the scans of v0 and the parameters for NaN, inf and (Bernoulli
    units) values outside [0, 1], a tenth of a small step's time; shapes, dtypes and the other
    arguments are still checked. For callers that checked the data once, as ``nn.RBM.fit`` does
    (it checks the whole data set before training and the weights after every epoch).

    ``rows``: optional integer indices; the batch is then ``v0[rows]`` (v0 a whole training set,
    rows one batch of a shuffled order), gathered inside the step instead of copied first; the
    scans of ``check_values`` then cover those rows only.
    """
    kernel, args = _cd_args(v0, w, b_vis, b_hid, k=k, persistent_chain=persistent_chain, lr=lr,
                            momentum=momentum, weight_decay=weight_decay, seed=seed,
                            visible=visible, velocity=velocity, compute_error=compute_error,
                            check_values=check_values, rows=rows)
    err = kernel(*args)
    return float(err) if compute_error else None


class CdSteps:
    """``rbm_cd_step`` over batches of one data set, its arguments checked once.

    ``steps = rbm_cd_steps(data, w, b_vis, b_hid, order=perm, lr=0.05, persistent_chain=chain)``
    then ``steps(start, stop, seed)`` is ``rbm_cd_step(data, w, b_vis, b_hid, rows=perm[start:stop],
    seed=seed, ...)`` (``data[start:stop]`` without ``order``) without re-checking the arrays,
    the hyper-parameters and the order at every batch: a tenth of a small step's time. The
    arrays are the caller's and are updated in place as by rbm_cd_step; their values are scanned
    once here (``check_values``), not per step.
    """

    def __init__(self, kernel: Any, args: list, data: np.ndarray, order: Optional[np.ndarray],
                 width: int) -> None:
        self._kernel, self._args, self._data, self._order = kernel, args, data, order
        self._n = len(order) if order is not None else data.shape[0]
        self._max_rows = (_COUNTER_LIMIT - 1) // max(width, 1)

    def __call__(self, start: int, stop: int, seed: int,
                 compute_error: bool = True) -> Optional[float]:
        """One update on the batch of positions [start, stop); returns its reconstruction
        error, or None when ``compute_error`` is False."""
        if not (type(start) is int and type(stop) is int and 0 <= start < stop <= self._n):
            raise ValueError(f"CdSteps: need 0 <= start < stop <= {self._n} (ints), got "
                             f"start={start!r}, stop={stop!r}")
        if stop - start > self._max_rows:
            raise ValueError(f"CdSteps: a batch of {stop - start} rows is too large for the "
                             f"sample counters")
        args = self._args
        if self._order is None:
            args[7], args[15] = self._data[start:stop], None
        else:
            args[15] = self._order[start:stop]
        args[13] = bool(compute_error)
        args[14] = _seed(seed)
        err = self._kernel(*args)
        return float(err) if compute_error else None


def rbm_cd_steps(data: Any, w: np.ndarray, b_vis: np.ndarray, b_hid: np.ndarray, *,
                 order: Any = None, k: int = 1, persistent_chain: Optional[np.ndarray] = None,
                 lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 visible: str = "bernoulli", velocity: Optional[Sequence[np.ndarray]] = None,
                 check_values: bool = True) -> CdSteps:
    """A :class:`CdSteps` for training on ``data`` (rows are samples), in the row order
    ``order`` (a permutation, or any integer indices into data) or as stored; the other
    arguments as :func:`rbm_cd_step`'s, checked here once."""
    op = "rbm_cd_steps"
    kernel, args = _cd_args(data, w, b_vis, b_hid, k=k, persistent_chain=persistent_chain,
                            lr=lr, momentum=momentum, weight_decay=weight_decay, seed=0,
                            visible=visible, velocity=velocity, compute_error=True,
                            check_values=check_values, rows=None)
    data = args[7]
    if order is not None:
        order = _rows(order, data.shape[0], op, "order")
    return CdSteps(kernel, args, data, order, data.shape[1])


def rbm_free_energy(v: Any, w: Any, b_vis: Any, b_hid: Any, *,
                    visible: str = "bernoulli") -> np.ndarray:
    """Free energy of each row of v: ``-v @ b_vis - sum_j softplus(v @ w[j] + b_hid[j])``
    (Bernoulli visibles) or ``0.5 |v - b_vis|^2 - sum_j softplus(...)`` (unit-variance Gaussian
    visibles); float64 of shape ``(batch,)``."""
    gaussian = _visible_kind(visible)
    w, b_vis, b_hid = _params(w, b_vis, b_hid, "rbm_free_energy")
    v = _data(v, "v", w.shape[1], w.dtype, "rbm_free_energy", "n_visible of w")
    out = np.empty(v.shape[0], np.float64)
    if out.size:
        _backend.kernels().rbm_free_energy(out, v, w, b_vis, b_hid, gaussian)
    return out


def rbm_pseudo_likelihood(v: Any, w: Any, b_vis: Any, b_hid: Any, *,
                          seed: int = 0) -> np.ndarray:
    """Per-row log pseudo-likelihood as scikit-learn's ``BernoulliRBM.score_samples``: one
    visible unit j per row, chosen from ``seed``, is flipped to ``1 - v_j``, and the estimate is
    ``n_visible * log sigmoid(F(v_flipped) - F(v))``; float64 of shape ``(batch,)``. Bernoulli
    visible units only (v in [0, 1])."""
    w, b_vis, b_hid = _params(w, b_vis, b_hid, "rbm_pseudo_likelihood")
    v = _data(v, "v", w.shape[1], w.dtype, "rbm_pseudo_likelihood", "n_visible of w",
              unit_range=True)
    seed = _seed(seed)
    out = np.empty(v.shape[0], np.float64)
    if out.size:
        _backend.kernels().rbm_pseudo_likelihood(out, v, w, b_vis, b_hid, seed)
    return out
