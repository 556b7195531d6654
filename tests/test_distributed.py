"""fastnn.distributed: a world of one process here, and two ranks under ``mpirun -n 2``.

The two-rank tests launch tests/distributed_worker.py with mpirun (skipped where mpirun or
mpi4py is missing); each launch costs about a second, so one launch covers many checks.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import distributed as dist
from fastnn import nn

WORKER = Path(__file__).resolve().parent / "distributed_worker.py"
HAVE_MPI = shutil.which("mpirun") is not None and importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason="needs mpirun and mpi4py")


def _env():
    env = dict(os.environ)
    # Open MPI refuses to start as root without these (containers, CI).
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    src = str(Path(fastnn.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([src] + ([env["PYTHONPATH"]]
                                                 if env.get("PYTHONPATH") else []))
    return env


def _mpirun(case, outdir, timeout=120):
    """Run the worker case on two ranks; a job that hangs fails with TimeoutExpired."""
    cmd = ["mpirun", "-n", "2", "--oversubscribe", sys.executable, str(WORKER), case,
           str(outdir)]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _single(case, outdir):
    env = _env()
    for k in [k for k in env if k.startswith(("OMPI_COMM_WORLD", "PMI", "PMIX"))]:
        del env[k]
    return subprocess.run([sys.executable, str(WORKER), case, str(outdir)], env=env,
                          capture_output=True, text=True, timeout=120)


# -- one process -------------------------------------------------------------------------------

def test_world_of_one():
    assert (dist.rank(), dist.size(), dist.local_rank(), dist.local_size()) == (0, 1, 0, 1)
    dist.barrier()
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    for op in ("mean", "sum", "min", "max"):
        got = dist.allreduce(a, op=op)
        assert got is not a and np.array_equal(got, a) and got.dtype == a.dtype
    assert dist.allreduce(np.array([1, 2]), op="mean").dtype == np.float64
    assert dist.allreduce(np.array([True]), op="max").dtype == np.int32
    out = np.empty_like(a)
    assert dist.allreduce(a, "sum", out=out) is out and np.array_equal(out, a)
    assert dist.broadcast(a) is a
    assert dist.broadcast_object({"k": 1}) == {"k": 1}


def test_bad_arguments():
    a = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="op must be"):
        dist.allreduce(a, op="prod")
    with pytest.raises(TypeError, match="numeric"):
        dist.allreduce(np.array(["a"]))
    with pytest.raises(ValueError, match="out is"):
        dist.allreduce(a, out=np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="NumPy array"):
        dist.broadcast([1.0, 2.0])
    with pytest.raises(ValueError, match="root"):
        dist.broadcast(a, root=1)
    with pytest.raises(ValueError, match="C-contiguous"):
        dist.broadcast(np.zeros((4, 4))[:, 1])
    with pytest.raises(ValueError, match="bucket_bytes"):
        dist.DistributedOptimizer("adam", bucket_bytes=0)
    with pytest.raises(TypeError, match="already"):
        dist.DistributedOptimizer(dist.DistributedOptimizer("sgd"))


def test_launched_without_mpi4py_says_how_to_install(monkeypatch):
    monkeypatch.setattr(dist, "_initialized", False)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import fails
    with pytest.raises(ImportError, match="pip install"):
        dist.init()


def _data(n=96):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    return x, rng.integers(0, 3, n)


def _model(optimizer="adam"):
    fastnn.random.seed(3)
    m = nn.Sequential([nn.Dense(8, activation="relu", input_shape=(6,)),
                       nn.Dense(3, activation="softmax")])
    m.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    return m


def test_fit_distributed_in_one_process_is_plain_fit():
    x, y = _data()
    a, b = _model(), _model()
    ha = a.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    hb = b.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, distributed=True)
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(p, q)
    assert hb.history == ha.history
    assert b._get_plan().sync is None  # the plain loop again after a distributed fit


def test_distributed_optimizer_compiled_saves_the_wrapped_one(tmp_path):
    x, y = _data()
    a = _model(fastnn.optim.SGD(0.1, momentum=0.9))
    opt = dist.DistributedOptimizer(fastnn.optim.SGD(0.1, momentum=0.9), bucket_bytes=64)
    b = _model(opt)
    a.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    b.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(p, q)
    assert opt.stats["steps"] == 6 and opt.stats["buckets"] == 6 * 4  # every array alone
    assert opt.iterations == 6 and opt.learning_rate == 0.1
    b.save(tmp_path / "m.fnn")
    c = nn.load_model(tmp_path / "m.fnn")
    assert type(c.optimizer) is fastnn.optim.SGD and c.optimizer.iterations == 6


def test_distributed_optimizer_step_checks_gradients():
    p = [np.zeros((2, 3), np.float32)]
    opt = dist.DistributedOptimizer(fastnn.optim.SGD(0.1))
    with pytest.raises(ValueError, match="shape"):
        opt.step(p, [np.zeros((3, 2), np.float32)])
    with pytest.raises(ValueError, match="no gradient"):
        opt.step(p, [None])
    opt.step(p, [np.ones((2, 3), np.float32)])
    np.testing.assert_allclose(p[0], -0.1)


# -- two ranks ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    if not HAVE_MPI:
        pytest.skip("needs mpirun and mpi4py")
    out = tmp_path_factory.mktemp("dist")
    proc = _mpirun("train", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    one = _single("train", out)
    assert one.returncode == 0, one.stdout + one.stderr
    return (dict(np.load(out / "train-2.npz")), dict(np.load(out / "train-1.npz")), proc, out)


@needs_mpi
def test_collectives_on_two_ranks(trained):
    two, _, _, _ = trained
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(two["sum"], 3 * a)
    np.testing.assert_array_equal(two["mean"], 1.5 * a)
    np.testing.assert_array_equal(two["max"], 2 * a)
    np.testing.assert_array_equal(two["int_mean"], [0.5, 1.0])
    np.testing.assert_array_equal(two["bool_sum"], [1, 2])
    assert two["inplace_is_out"] and np.array_equal(two["inplace"], 3 * a)
    np.testing.assert_array_equal(two["bcast"], 8.0)  # from root 1
    np.testing.assert_array_equal(two["rank_size"], [0, 2, 0, 2])


@needs_mpi
def test_two_ranks_of_32_train_as_one_process_of_64(trained):
    two, one, _, _ = trained
    for key in ("shuffled", "ordered", "sgd", "functional"):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=1e-6, err_msg=key)
        # and the run did train: the weights moved from the initial ones by far more
        assert np.abs(two[key]).max() > 0.1
    for key in ("shuffled_same", "ordered_same", "sgd_same", "custom_same", "bn_same",
                "functional_same"):
        assert two[key], key
    h2, h1 = json.loads(str(two["history"])), json.loads(str(one["history"]))
    assert h2.keys() == h1.keys() == {"loss", "accuracy", "val_loss", "val_accuracy"}
    for k in h1:
        np.testing.assert_allclose(h2[k], h1[k], rtol=1e-5, err_msg=k)
    assert two["buckets_per_step"] == 4  # 256-byte buckets: one per array


@needs_mpi
def test_only_rank_zero_prints_and_checkpoints(trained):
    _, _, proc, out = trained
    assert proc.stdout.count("Epoch 1/2") == 1 and proc.stdout.count("Epoch 2/2") == 1
    assert (out / "ckpt-rank0-1.fnn").is_file()
    assert not (out / "ckpt-rank1-1.fnn").exists()


@needs_mpi
def test_a_raising_rank_ends_the_job(tmp_path):
    # Rank 0 is blocked in an allreduce when rank 1 raises: without the abort the job would
    # hang, and the deadline turns a hang into a failure (no timing is asserted).
    proc = _mpirun("raise", tmp_path, timeout=60)
    assert proc.returncode != 0
    assert "rank 1 failed on purpose" in proc.stderr
    assert "rank 1 raised RuntimeError; aborting" in proc.stderr


@needs_mpi
def test_mismatched_models_fail_clearly(tmp_path):
    proc = _mpirun("mismatch", tmp_path, timeout=60)
    assert proc.returncode != 0
    assert "the model differs across ranks" in proc.stderr
    assert "float32[16, 12]" in proc.stderr and "float32[8, 12]" in proc.stderr


def test_nothing_to_train_still_averages_the_loss():
    x, y = _data(32)
    m = _model(dist.DistributedOptimizer(fastnn.optim.SGD(0.1)))
    for layer in m.layers:
        layer.trainable = False
    m._plan = None
    w = m.get_weights()
    h = m.fit(x, y, epochs=1, batch_size=16, verbose=0, distributed=True)
    assert np.isfinite(h.history["loss"][0])
    for p, q in zip(w, m.get_weights()):
        np.testing.assert_array_equal(p, q)


def test_lazy_attribute():
    assert fastnn.distributed is dist
