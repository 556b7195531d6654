"""Data-parallel training across processes and machines on MPI (mpi4py).

Every process (rank) holds the whole model and trains on its own shard of each batch; the
gradients are averaged across ranks before each optimizer step, so all ranks keep identical
weights. Launch with ``mpirun -n 2 python train.py``; without a launcher (or without mpi4py) every
call here works as a world of size 1, so the same script runs unchanged in one process.

* :func:`init`, :func:`rank`, :func:`size`, :func:`local_rank`, :func:`barrier`;
  :func:`allreduce` and :func:`broadcast` on NumPy buffers (MPI's buffer interface, no pickle);
* :class:`DistributedOptimizer` wraps any :class:`fastnn.optim.Optimizer`: gradients are packed
  into flat buckets, and each bucket's non-blocking allreduce starts as soon as the backward pass
  has produced all of its gradients (``model.fit`` tells it layer by layer), so communication
  overlaps the rest of the backward;
* :func:`broadcast_weights` / :func:`broadcast_optimizer_state` copy rank 0's model and
  optimizer state to every rank; ``model.fit(..., distributed=True)`` does that, shards the
  samples and averages the logs (see :meth:`fastnn.nn.Sequential.fit`).

mpi4py is imported only when the process was started by an MPI launcher (Open MPI's, MPICH's,
Intel MPI's, Slurm's PMI), or when ``FASTNN_MPI=1``; a launched process without mpi4py raises an
ImportError that says how to install it, rather than train alone. Once the world has more than
one rank, an exception that reaches the top of any rank aborts the whole job (``MPI_Abort``), so
the others do not wait for it forever. When ``OMP_NUM_THREADS`` is unset, the ranks on one
machine share its cores: each gets ``cores // ranks_on_this_machine`` fastnn threads.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import optim as _optim

__all__ = ["init", "is_initialized", "rank", "size", "local_rank", "local_size", "barrier",
           "allreduce", "broadcast", "broadcast_object", "broadcast_weights",
           "broadcast_optimizer_state", "check_same_shapes", "DistributedOptimizer", "abort"]

# Environment variables that MPI launchers set in the processes they start.
_LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK",
                  "MV2_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "HYDRA_CONTROL_FD")

_MPI: Any = None
_comm: Any = None
_rank = 0
_size = 1
_local: Optional[Tuple[int, int]] = None
_initialized = False


def _launched() -> bool:
    flag = os.environ.get("FASTNN_MPI", "").strip().lower()
    if flag in ("0", "false", "no", "off"):
        return False
    return flag in ("1", "true", "yes", "on") or any(v in os.environ for v in _LAUNCHER_VARS)


def init() -> None:
    """Join the MPI world (idempotent; the other functions call it on first use)."""
    global _MPI, _comm, _rank, _size, _initialized
    if _initialized:
        return
    _initialized = True
    if not _launched():
        return
    # Open MPI spins while it waits for the other ranks. With more runnable processes than
    # cores (other jobs, a laptop) a spinning rank keeps its core from the rank it waits for:
    # yield it instead (costs a system call per poll on an idle machine; the user's setting
    # wins).
    os.environ.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(
            "this process was started by an MPI launcher but mpi4py is not installed: "
            "pip install 'fastnn[distributed]' (or pip install mpi4py), with an MPI library "
            "such as Open MPI (apt-get install openmpi-bin libopenmpi-dev)") from e
    _MPI, _comm = MPI, MPI.COMM_WORLD
    _rank, _size = _comm.Get_rank(), _comm.Get_size()
    if _size > 1:
        _install_excepthook()
        _share_cores()


def is_initialized() -> bool:
    return _initialized


def rank() -> int:
    """This process's rank, 0 .. size() - 1."""
    init()
    return _rank


def size() -> int:
    """The number of processes in the job (1 without MPI)."""
    init()
    return _size


def _local_pair() -> Tuple[int, int]:
    global _local
    if _local is None:
        init()
        if _size == 1:
            _local = (0, 1)
        else:
            node = _comm.Split_type(_MPI.COMM_TYPE_SHARED, key=_rank)
            _local = (node.Get_rank(), node.Get_size())
            node.Free()
    return _local


def local_rank() -> int:
    """This process's rank among the processes on its machine (to pick a device or cores)."""
    return _local_pair()[0]


def local_size() -> int:
    """How many processes of the job run on this machine."""
    return _local_pair()[1]


def barrier() -> None:
    """Wait until every rank gets here."""
    init()
    if _size > 1:
        _comm.Barrier()


def abort(code: int = 1) -> None:
    """End every rank of the job now (a no-op exit in a world of size 1)."""
    init()
    if _size > 1:
        _comm.Abort(code)
    raise SystemExit(code)


def _install_excepthook() -> None:
    previous = sys.excepthook

    def hook(kind, value, tb):
        # Print first: Abort kills this process too. Then end the job, so that the ranks
        # blocked in a collective this rank will never join do not hang.
        try:
            previous(kind, value, tb)
            sys.stderr.write(f"fastnn.distributed: rank {_rank} raised {kind.__name__}; "
                             f"aborting all {_size} ranks\n")
            sys.stderr.flush()
        finally:
            _comm.Abort(1)

    sys.excepthook = hook


def _share_cores() -> None:
    if os.environ.get("OMP_NUM_THREADS"):
        return
    cores = os.cpu_count() or 1
    per_rank = max(1, cores // local_size())
    from . import backend
    if backend.get_num_threads() > per_rank:
        backend.set_num_threads(per_rank)


# -- collectives on NumPy buffers ---------------------------------------------------------------

_OPS = ("mean", "sum", "min", "max")


def _check_op(op: str) -> str:
    if op not in _OPS:
        raise ValueError(f"op must be one of {_OPS}, got {op!r}")
    return op


def allreduce(array: Any, op: str = "mean", out: Optional[np.ndarray] = None) -> np.ndarray:
    """The element-wise ``op`` ("mean", "sum", "min", "max") of ``array`` over all ranks.

    Returns a new array, or fills ``out`` (which may be ``array`` itself, for in place) and
    returns it. Every rank must pass the same shape and dtype. "mean" of integers is computed
    in float64; booleans count as int32 0 and 1.
    """
    _check_op(op)
    init()
    a = np.asarray(array)
    if a.dtype.kind == "b":
        a = a.astype(np.int32)
    elif a.dtype.kind not in "iufc":
        raise TypeError(f"allreduce needs a numeric array, got dtype {a.dtype}")
    if op == "mean" and a.dtype.kind not in "fc":
        a = a.astype(np.float64)
    if out is None:
        out = np.array(a, order="C", copy=True)
    else:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a NumPy array, got {type(out).__name__}")
        if out.shape != a.shape or out.dtype != a.dtype:
            raise ValueError(f"out is {out.dtype}{list(out.shape)} but array is "
                             f"{a.dtype}{list(a.shape)}")
        if not (out.flags.c_contiguous and out.flags.writeable):
            raise ValueError("out must be C-contiguous and writeable")
        if out is not a:
            out[...] = a
    if _size > 1:
        mpi_op = {"mean": _MPI.SUM, "sum": _MPI.SUM, "min": _MPI.MIN, "max": _MPI.MAX}[op]
        _comm.Allreduce(_MPI.IN_PLACE, out, op=mpi_op)
        if op == "mean":
            out *= out.dtype.type(1.0 / _size)
    return out


def broadcast(array: np.ndarray, root: int = 0) -> np.ndarray:
    """Overwrite ``array`` on every rank with ``root``'s (in place) and return it.

    ``array`` must be a C-contiguous, writeable NumPy array of the same shape and dtype on
    every rank.
    """
    init()
    if not isinstance(array, np.ndarray):
        raise TypeError(f"array must be a NumPy array, got {type(array).__name__}")
    if not 0 <= root < _size:
        raise ValueError(f"root must be a rank in [0, {_size}), got {root}")
    if not (array.flags.c_contiguous and array.flags.writeable):
        raise ValueError("array must be C-contiguous and writeable")
    if _size > 1 and array.size:
        _comm.Bcast(array, root=root)
    return array


def broadcast_object(obj: Any, root: int = 0) -> Any:
    """``root``'s ``obj`` on every rank (pickled: for settings and metadata, not tensors)."""
    init()
    return _comm.bcast(obj, root=root) if _size > 1 else obj


def check_same_shapes(arrays: Sequence[Any], what: str = "model") -> None:
    """Raise ValueError on every rank unless every rank has arrays of the same shapes and
    dtypes, in the same order (one pickled gather of the shapes: call it once, not per step)."""
    init()
    if _size == 1:
        return
    mine = [(tuple(np.shape(a)), str(np.asarray(a).dtype)) for a in arrays]
    every = _comm.allgather(mine)
    for r, theirs in enumerate(every):
        if theirs != every[0]:
            raise ValueError(
                f"the {what} differs across ranks: rank 0 has {_describe(every[0])} but rank "
                f"{r} has {_describe(theirs)} (every rank must build the same model)")


def _describe(sig: List[Tuple[Tuple[int, ...], str]]) -> str:
    return f"{len(sig)} arrays [" + ", ".join(f"{d}{list(s)}" for s, d in sig) + "]"


def broadcast_weights(model: Any, root: int = 0) -> None:
    """Copy ``root``'s weights (parameters and buffers, such as BatchNormalization's running
    statistics) into the model of every rank, after checking that the models match."""
    init()
    if _size == 1:
        return
    if not model.built:
        model.build()
    weights = [w for layer in model.layers for w in layer.weights]
    check_same_shapes(weights)
    for w in weights:
        _bcast_inplace(w, root)


def _bcast_inplace(w: np.ndarray, root: int) -> None:
    if w.flags.c_contiguous and w.flags.writeable:
        broadcast(w, root)
    else:
        tmp = np.ascontiguousarray(w)
        broadcast(tmp, root)
        w[...] = tmp


def broadcast_optimizer_state(optimizer: Any, params: Sequence[np.ndarray],
                              root: int = 0) -> None:
    """Give every rank ``root``'s optimizer state (step count, moments) for ``params``."""
    init()
    if _size == 1:
        return
    inner = optimizer.optimizer if isinstance(optimizer, DistributedOptimizer) else optimizer
    state = inner.get_state(params) if _rank == root else None
    # The layout (which slots exist) is small metadata; the arrays go as raw buffers.
    layout = None
    if _rank == root:
        layout = {"iterations": state["iterations"],
                  "slots": [None if s is None else [None if a is None else (a.shape, str(a.dtype))
                                                    for a in s] for s in state["slots"]]}
    layout = broadcast_object(layout, root)
    if _rank != root:
        slots = []
        for s in layout["slots"]:
            slots.append(None if s is None else tuple(
                None if a is None else np.empty(a[0], np.dtype(a[1])) for a in s))
        state = {"iterations": layout["iterations"], "slots": slots}
    for s in state["slots"]:
        for a in s or ():
            if a is not None:
                broadcast(a, root)
    if _rank != root:
        inner.set_state(params, state)


# -- the distributed optimizer ------------------------------------------------------------------

_spin_s: Optional[float] = None


def _spin_budget() -> float:
    """How long a rank polls its requests before it naps between polls (seconds).

    While this job's threads fit on the machine's cores, a rank that polls takes no core from
    anyone, and polling through a whole step's communication is what makes it fast: a
    non-blocking allreduce moves on only inside MPI calls, so every nap (20 us and growing)
    delays it by that much. Measured on 2 cores, the seed MLP on 2 ranks x 1 thread: 0.51-0.56 s
    an epoch with 0.2 ms of polling, 0.29-0.33 s with 5 ms. With more threads than cores, poll
    briefly and then leave the core to the rank being waited for. FASTNN_MPI_SPIN_US overrides.
    """
    global _spin_s
    if _spin_s is None:
        env = os.environ.get("FASTNN_MPI_SPIN_US")
        if env is not None:
            _spin_s = max(0.0, float(env)) * 1e-6
        else:
            from . import backend
            fits = local_size() * backend.get_num_threads() <= (os.cpu_count() or 1)
            _spin_s = 5e-3 if fits else 2e-4
    return _spin_s


def _wait_all(requests: List[Any]) -> None:
    """Wait for ``requests``: poll for a while (see _spin_budget), then sleep between polls.

    MPI's own wait spins on its core until the other ranks arrive. When the machine has more
    runnable processes than cores (two ranks on two busy cores), that spinning takes CPU time
    from the very rank it waits for, and a late rank makes every step late by a time slice;
    a sleeping rank leaves its core to it. An on-time partner is caught while polling.
    """
    test = _MPI.Request.Testall
    if test(requests):
        return
    clock = time.perf_counter
    deadline = clock() + _spin_budget()
    while clock() < deadline:
        if test(requests):
            return
    nap = 2e-5
    while not test(requests):
        time.sleep(nap)
        nap = min(2 * nap, 1e-3)


class _Bucket:
    __slots__ = ("buf", "members", "pending", "request", "extra")

    def __init__(self, dtype: np.dtype, members: List[Tuple[int, int, int]], extra: int):
        total = sum(n for _, _, n in members) + extra
        self.buf = np.zeros(total, dtype)
        self.members = members        # (param index, offset, size)
        self.extra = extra            # trailing slots for the loss (bucket 0 only)
        self.pending = 0
        self.request: Any = None


class DistributedOptimizer(_optim.Optimizer):
    """Average the gradients across ranks, then let ``optimizer`` step.

    ``DistributedOptimizer(fastnn.optim.Adam(1e-3))`` is used like the optimizer it wraps:
    ``model.compile(optimizer=DistributedOptimizer(...))``, or ``opt.step(params, grads)`` in a
    custom loop (then broadcast the initial weights first with :func:`broadcast_weights`; the
    first step checks that every rank has the same parameter shapes and raises ValueError
    otherwise). Settings and state (``learning_rate``, ``iterations``, ``get_state``...) are the
    wrapped optimizer's; a saved model saves the wrapped optimizer.

    The gradients are copied (already divided by the world size) into flat buffers of about
    ``bucket_bytes`` each, filled from the last parameter back (the order the backward pass
    produces them); a bucket's non-blocking allreduce starts as soon as its last gradient is
    in. ``model.fit`` reports each layer's gradients as its backward finishes
    (:meth:`grad_ready`), so the first buckets travel while earlier layers still compute. With
    ``overlap=False`` every bucket starts at ``step`` instead (for comparison).
    ``stats`` counts steps, buckets and the seconds ``step`` spent waiting for the network.
    """

    def __init__(self, optimizer: Any, bucket_bytes: int = 1 << 20, overlap: bool = True):
        if isinstance(optimizer, DistributedOptimizer):
            raise TypeError("the optimizer is already a DistributedOptimizer")
        self.optimizer = _optim.get(optimizer)
        if isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, (int, np.integer)) \
                or bucket_bytes < 1:
            raise ValueError(f"bucket_bytes must be a positive int, got {bucket_bytes!r}")
        self.bucket_bytes = int(bucket_bytes)
        self.overlap = bool(overlap)
        self._params: Optional[List[np.ndarray]] = None
        self._buckets: List[_Bucket] = []
        self._where: List[Tuple[int, int, int]] = []    # param -> (bucket, offset, size)
        self._views: List[np.ndarray] = []
        self._active: List[Any] = []
        self._scale = 1.0
        self._loss: Optional[float] = None
        self.loss: Optional[float] = None
        self.stats: Dict[str, float] = {"steps": 0, "buckets": 0, "wait_s": 0.0}

    # The wrapped optimizer's settings and state, so that callbacks, schedules and saving see
    # one optimizer. (The base class's __init__ never runs: nothing of its own is kept here.)
    def __getattr__(self, name: str) -> Any:
        if name == "optimizer":
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    @property
    def wrapped_optimizer(self) -> Any:
        return self.optimizer

    def finalize_variable_values(self, params: Sequence[np.ndarray]) -> None:
        """The wrapped optimizer's (its moving averages, with ``use_ema``, become the weights on
        every rank alike)."""
        self.optimizer.finalize_variable_values(params)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.optimizer.name

    @property
    def clipnorm(self) -> Optional[float]:  # type: ignore[override]
        return self.optimizer.clipnorm

    def current_learning_rate(self) -> float:
        return self.optimizer.current_learning_rate()

    def reset(self) -> None:
        self.optimizer.reset()

    def get_state(self, params: Sequence[Any]) -> Dict[str, Any]:
        return self.optimizer.get_state(params)

    def set_state(self, params: Sequence[Any], state: Dict[str, Any]) -> None:
        self.optimizer.set_state(params, state)

    @property
    def iterations(self) -> int:
        return self.optimizer.iterations

    @iterations.setter
    def iterations(self, value: int) -> None:
        self.optimizer.iterations = value

    @property
    def learning_rate(self) -> Any:
        return self.optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        self.optimizer.learning_rate = value

    lr = learning_rate

    def get_config(self) -> Dict[str, Any]:
        return self.optimizer.get_config()

    def __repr__(self) -> str:
        return f"DistributedOptimizer({self.optimizer!r}, bucket_bytes={self.bucket_bytes})"

    # -- layout ---------------------------------------------------------------------------------

    def _layout(self, params: Sequence[np.ndarray]) -> None:
        check_same_shapes(params, "model's trainable parameters")
        self._params = list(params)
        self._scale = 1.0 / size()
        groups: List[Tuple[np.dtype, List[int]]] = []
        used = 0
        for i in range(len(params) - 1, -1, -1):   # backward order: last layer first
            p = params[i]
            nbytes = p.size * p.dtype.itemsize
            if not groups or groups[-1][0] != p.dtype or (used and used + nbytes
                                                           > self.bucket_bytes):
                groups.append((p.dtype, []))
                used = 0
            groups[-1][1].append(i)
            used += nbytes
        if not groups:  # nothing to train: one bucket still averages the loss
            groups.append((np.dtype(np.float64), []))
        self._buckets, self._where = [], [(0, 0, 0)] * len(params)
        for b, (dtype, idx) in enumerate(groups):
            members, off = [], 0
            for i in idx:
                members.append((i, off, params[i].size))
                self._where[i] = (b, off, params[i].size)
                off += params[i].size
            # Bucket 0 starts first and carries the loss, so averaging it costs no message.
            self._buckets.append(_Bucket(dtype, members, 1 if b == 0 else 0))
        self._views = []
        for i, p in enumerate(params):
            b, off, n = self._where[i]
            self._views.append(self._buckets[b].buf[off:off + n].reshape(p.shape))
        self._reset_pending()

    def _reset_pending(self) -> None:
        self._active: List[Any] = []
        for bk in self._buckets:
            bk.pending = len(bk.members)
            bk.request = None

    def _ensure_layout(self, params: Sequence[np.ndarray]) -> None:
        if self._params is None:
            self._layout(params)
        elif len(params) != len(self._params) or any(
                p is not q for p, q in zip(params, self._params)):
            self._layout(params)   # other parameters (a new model): rebuild and check again

    # -- hooks the training loop calls -----------------------------------------------------------

    def begin_step(self, params: Sequence[np.ndarray], loss: Optional[float] = None) -> None:
        """Called after the forward pass, before the backward: ``loss`` (this rank's) is
        averaged with the first bucket; read the mean from ``self.loss`` after :meth:`step`."""
        self._ensure_layout(params)
        self._loss = loss

    def grad_ready(self, index: int, grad: np.ndarray) -> None:
        """The gradient of parameter ``index`` is final: pack it, and start its bucket's
        allreduce when it was the bucket's last one."""
        b, off, n = self._where[index]
        bk = self._buckets[b]
        np.multiply(grad.reshape(-1), self._scale, out=bk.buf[off:off + n])
        bk.pending -= 1
        # A single bucket completes with the backward pass: nothing is left to overlap it with,
        # and step() reduces it with a blocking allreduce (400 KB: 81 us against 125 us for a
        # non-blocking one polled to completion, on 2 ranks of one machine). Never a blocking
        # one while non-blocking ones are in flight: Open MPI 4 crashed (SIGSEGV) on that.
        if bk.pending == 0 and self.overlap and len(self._buckets) > 1:
            self._start(bk)

    def progress(self) -> None:
        """Let MPI move the buckets in flight a step further (it moves them only inside MPI
        calls, and this process has no thread of its own for that): called between layers."""
        if self._active:
            _MPI.Request.Testall(self._active)

    def _start(self, bk: _Bucket, blocking: bool = False) -> None:
        if bk.extra:
            bk.buf[-1] = 0.0 if self._loss is None else self._loss * self._scale
        if _size > 1 and blocking:
            _comm.Allreduce(_MPI.IN_PLACE, bk.buf, op=_MPI.SUM)
            bk.request = _MPI.REQUEST_NULL
        elif _size > 1:
            bk.request = _comm.Iallreduce(_MPI.IN_PLACE, bk.buf, op=_MPI.SUM)
            self._active.append(bk.request)
        else:
            bk.request = True

    def step(self, params: Sequence[np.ndarray], grads: Sequence[Any]) -> None:
        """Average ``grads`` over the ranks (the ones not reported by :meth:`grad_ready` are
        packed now), then step the wrapped optimizer with the averages."""
        if len(params) != len(grads):
            raise ValueError(f"got {len(params)} parameters but {len(grads)} gradients")
        self._ensure_layout(params)
        for i, bk in enumerate(self._buckets):
            if bk.request is None:
                if bk.pending:
                    for j, off, n in bk.members:
                        g = grads[j]
                        if g is None:
                            raise ValueError(f"parameter {j} has no gradient: every rank must "
                                             f"average every gradient")
                        if bk.pending and np.shape(g) != self._params[j].shape:
                            raise ValueError(f"a gradient of shape {np.shape(g)} was given for "
                                             f"a parameter of shape {self._params[j].shape}")
                        np.multiply(np.asarray(g).reshape(-1), self._scale,
                                    out=bk.buf[off:off + n])
                t0 = time.perf_counter()
                self._start(bk, blocking=len(self._buckets) == 1)
                self.stats["wait_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        if _size > 1:
            _wait_all([bk.request for bk in self._buckets])
        self.stats["wait_s"] += time.perf_counter() - t0
        self.stats["steps"] += 1
        self.stats["buckets"] += len(self._buckets)
        first = self._buckets[0]
        self.loss = float(first.buf[-1]) if self._loss is not None else None
        self._loss = None
        self._reset_pending()
        self.optimizer.step(params, self._views)

    # -- state ----------------------------------------------------------------------------------

    def broadcast_state(self, params: Sequence[np.ndarray], root: int = 0) -> None:
        """Give every rank ``root``'s state of the wrapped optimizer."""
        broadcast_optimizer_state(self.optimizer, params, root)
