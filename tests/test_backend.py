"""Backend dispatch: build_info, choosing a backend (API and FASTNN_BACKEND), forcing an ISA
(API and FASTNN_ISA), threads, the lazy Numba import, and the kernel-module contract."""
from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import backend as _backend
from fastnn import ops
from fastnn import reference as R
from helpers import check_op

HAS_CPP = _backend._C is not None
needs_cpp = pytest.mark.skipif(not HAS_CPP, reason="fastnn._C is not built")
KERNEL_FUNCTIONS = ["gemm", "linear", "linear_backward", "activation", "activation_backward",
                    "conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight",
                    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward",
                    "avg_pool2d_backward",
                    "lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "rnn_forward",
                    "rnn_backward"]
KERNEL_FUNCTIONS += ["attention_forward", "attention_backward", "layer_norm_forward",
                     "layer_norm_backward"]
KERNEL_FUNCTIONS += ["rbm_hidden", "rbm_visible", "rbm_cd_step", "rbm_free_energy",
                     "rbm_pseudo_likelihood"]


def run_python(code: str, **env_overrides: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (PYTHONPATH and the rest of the environment inherited,
    ``env_overrides`` set, an override of "" removes the variable)."""
    env = dict(os.environ)
    for key, value in env_overrides.items():
        if value == "":
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)


def run_json(code: str, **env_overrides: str):
    """Run ``code`` (which prints one JSON value last) and return that value."""
    proc = run_python(code, **env_overrides)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# build_info

def test_build_info_keys_and_types():
    info = fastnn.build_info()
    for key in ("version", "backend", "cpp", "isa", "best_isa", "num_threads", "threading",
                "cuda_compiled", "cuda_available"):
        assert key in info, key
    assert info["version"] == fastnn.__version__
    assert info["backend"] == fastnn.get_backend()
    assert info["cpp"] is HAS_CPP
    assert isinstance(info["num_threads"], int) and info["num_threads"] >= 1
    assert info["threading"] == ("fastnn pool" if HAS_CPP else None)
    assert isinstance(info["cuda_compiled"], bool) and isinstance(info["cuda_available"], bool)
    assert info["cuda_available"] == fastnn.cuda.is_available()
    if info["cuda_available"]:
        assert info["cuda_compiled"]
    json.dumps(info)  # plain data, printable by a bug report


@needs_cpp
def test_build_info_isa():
    info = fastnn.build_info()
    assert info["isa"] in ("generic", "avx2", "avx512")
    assert info["isa"] == fastnn.get_isa()
    assert info["best_isa"] in ("generic", "avx2", "avx512")
    assert _backend._C.cpu_supports(info["best_isa"])


# ---------------------------------------------------------------------------------------------
# choosing a backend

def test_available_backends():
    names = fastnn.available_backends()
    assert "numba" in names
    assert ("cpp" in names) is HAS_CPP
    if HAS_CPP:
        assert names[0] == "cpp"
    assert ("cuda" in names) is fastnn.cuda.is_available()


def test_default_backend():
    # The test process may itself run under FASTNN_BACKEND: only check the unset case.
    if os.environ.get("FASTNN_BACKEND"):
        pytest.skip("FASTNN_BACKEND is set for this run")
    assert fastnn.get_backend() == ("cpp" if HAS_CPP else "numba")


def test_set_backend_and_restore():
    prev = fastnn.get_backend()
    try:
        fastnn.set_backend("numba")
        assert fastnn.get_backend() == "numba"
        assert _backend.kernels().__name__ == "fastnn.numba_kernels"
        fastnn.set_backend("NUMBA")  # names are case-insensitive
        assert fastnn.get_backend() == "numba"
        if HAS_CPP:
            fastnn.set_backend("cpp")
            assert fastnn.get_backend() == "cpp"
            assert _backend.kernels() is _backend._C
    finally:
        fastnn.set_backend(prev)
    assert fastnn.get_backend() == prev


@pytest.mark.parametrize("name", ["tensorflow", "", "c++", None, 3, ["numba"]])
def test_set_backend_rejects_unknown_names(name):
    prev = fastnn.get_backend()
    with pytest.raises(ValueError, match="backend must be one of"):
        fastnn.set_backend(name)
    with pytest.raises(ValueError, match="backend must be one of"):
        with _backend.use_backend(name):
            pass  # pragma: no cover - never entered
    assert fastnn.get_backend() == prev


def test_set_backend_cuda_without_a_device():
    if fastnn.cuda.is_available():
        pytest.skip("a CUDA device is present")
    prev = fastnn.get_backend()
    with pytest.raises(RuntimeError, match="CUDA"):
        fastnn.set_backend("cuda")
    assert fastnn.get_backend() == prev


def test_use_backend_restores_on_exit_and_on_error(rng):
    prev = fastnn.get_backend()
    a, b = rng.standard_normal((5, 4)), rng.standard_normal((4, 3))
    with _backend.use_backend("numba") as ctx:
        assert fastnn.get_backend() == "numba" and ctx.name == "numba"
        check_op(ops.gemm(a, b), R.gemm(a, b), reduction=4)
    assert fastnn.get_backend() == prev
    with pytest.raises(KeyError):
        with _backend.use_backend("numba"):
            raise KeyError("boom")
    assert fastnn.get_backend() == prev


def test_use_backend_nests():
    prev = fastnn.get_backend()
    with _backend.use_backend("numba"):
        if HAS_CPP:
            with _backend.use_backend("cpp"):
                assert fastnn.get_backend() == "cpp"
        assert fastnn.get_backend() == "numba"
    assert fastnn.get_backend() == prev


def test_fastnn_backend_env_numba():
    out = run_json(
        "import json, sys, numpy as np, fastnn\n"
        "a = np.arange(12.0).reshape(3, 4); b = np.ones((4, 2))\n"
        "got = fastnn.ops.gemm(a, b)\n"
        "print(json.dumps([fastnn.get_backend(), fastnn.build_info()['backend'],\n"
        "                  'numba' in sys.modules, got.tolist()]))",
        FASTNN_BACKEND="numba")
    assert out[0] == "numba" and out[1] == "numba"
    assert out[2] is True  # the op really ran on the Numba kernels
    assert out[3] == (np.arange(12.0).reshape(3, 4) @ np.ones((4, 2))).tolist()


@needs_cpp
def test_fastnn_backend_env_cpp_and_case():
    out = run_json("import json, fastnn; print(json.dumps(fastnn.get_backend()))",
                   FASTNN_BACKEND=" CPP ")
    assert out == "cpp"


def test_fastnn_backend_env_unknown_warns_and_falls_back():
    proc = run_python("import fastnn; print(fastnn.get_backend())", FASTNN_BACKEND="tpu")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("cpp" if HAS_CPP else "numba")
    assert "FASTNN_BACKEND" in proc.stderr and "RuntimeWarning" in proc.stderr


def test_device_arrays_dispatch_to_cuda():
    class FakeDeviceArray:
        __cuda_array_interface__ = {}

    assert _backend.kernels_for(None, FakeDeviceArray()) is _backend.kernels("cuda")
    assert _backend.kernels_for(np.ones(2), None) is _backend.kernels()


# ---------------------------------------------------------------------------------------------
# the lazy Numba import

IMPORT_PROBE = (
    "import json, sys\n"
    "import fastnn\n"
    "print(json.dumps(['numba' in sys.modules, 'llvmlite' in sys.modules]))")


def test_import_fastnn_does_not_import_numba():
    # What keeps `import fastnn` fast (an eager Numba import costs about a second); its time is
    # not asserted here: timing belongs in bench/.
    numba_loaded, llvmlite_loaded = run_json(IMPORT_PROBE, FASTNN_BACKEND="")
    assert not numba_loaded and not llvmlite_loaded


def test_numba_backend_env_still_imports_lazily():
    # FASTNN_BACKEND=numba picks the backend, but Numba loads on the first op, not on import.
    numba_loaded, _ = run_json(IMPORT_PROBE, FASTNN_BACKEND="numba")
    assert not numba_loaded


@needs_cpp
def test_cpp_ops_never_import_numba():
    out = run_json(
        "import json, sys, numpy as np, fastnn\n"
        "x = np.ones((4, 3)); w = np.ones((2, 3))\n"
        "y, ctx = fastnn.ops.linear_forward(x, w, np.ones(2), 'gelu')\n"
        "fastnn.ops.linear_backward(ctx, np.ones_like(y))\n"
        "fastnn.ops.gemm(x, w, trans_b=True)\n"
        "fastnn.build_info(); fastnn.available_backends()\n"
        "a = 'numba' in sys.modules\n"
        "fastnn.set_backend('numba')\n"
        "print(json.dumps([a, 'numba' in sys.modules]))",
        FASTNN_BACKEND="")
    assert out == [False, True]


def test_set_num_threads_does_not_import_numba():
    out = run_json(
        "import json, sys, fastnn\n"
        "fastnn.set_num_threads(1)\n"
        "print(json.dumps('numba' in sys.modules))",
        FASTNN_BACKEND="")
    assert out is False


# ---------------------------------------------------------------------------------------------
# instruction sets

@needs_cpp
@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_set_isa(isa, rng):
    prev = fastnn.get_isa()
    if not _backend._C.cpu_supports(isa):
        with pytest.raises(ValueError, match="cannot run"):
            fastnn.set_isa(isa)
        assert fastnn.get_isa() == prev
        return
    try:
        fastnn.set_isa(isa)
        assert fastnn.get_isa() == isa and fastnn.build_info()["isa"] == isa
        a, b = rng.standard_normal((20, 30)), rng.standard_normal((30, 10))
        with _backend.use_backend("cpp"):
            check_op(ops.gemm(a, b), R.gemm(a, b), reduction=30)
    finally:
        fastnn.set_isa(prev)
    assert fastnn.get_isa() == prev


@needs_cpp
@pytest.mark.parametrize("name", ["sse2", "AVX2", "", None, "native"])
def test_set_isa_rejects_unknown_names(name):
    prev = fastnn.get_isa()
    with pytest.raises(ValueError, match="isa must be"):
        fastnn.set_isa(name)
    assert fastnn.get_isa() == prev


def test_generic_isa_is_always_supported():
    if not HAS_CPP:
        assert fastnn.get_isa() is None
        return
    assert _backend._C.cpu_supports("generic")


@needs_cpp
@pytest.mark.parametrize("isa", ["generic", "avx2"])
def test_fastnn_isa_env(isa):
    code = ("import json, numpy as np, fastnn\n"
            "a = np.ones((40, 50), np.float32); b = np.ones((50, 60), np.float32)\n"
            "print(json.dumps([fastnn.get_isa(), float(fastnn.ops.gemm(a, b).max())]))")
    if not _backend._C.cpu_supports(isa):
        pytest.skip(f"this CPU cannot run {isa}")
    out = run_json(code, FASTNN_ISA=isa)
    assert out == [isa, 50.0]


@needs_cpp
def test_fastnn_isa_env_unusable_warns():
    proc = run_python("import fastnn; print(fastnn.get_isa())", FASTNN_ISA="sse9")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == _backend._C.best_isa()
    assert "FASTNN_ISA" in proc.stderr and "RuntimeWarning" in proc.stderr


# ---------------------------------------------------------------------------------------------
# threads

@pytest.mark.parametrize("n", [0, -1, 1.5, True, "2", None, 2.0])
def test_set_num_threads_rejects_bad_values(n):
    prev = fastnn.get_num_threads()
    with pytest.raises(ValueError, match="num_threads"):
        fastnn.set_num_threads(n)
    assert fastnn.get_num_threads() == prev


def test_set_num_threads_results_do_not_depend_on_threads(backend, rng):
    prev = fastnn.get_num_threads()
    # Large enough for the C++ blocked path and for several Numba tiles.
    a = rng.standard_normal((260, 170)).astype(np.float32)
    b = rng.standard_normal((170, 300)).astype(np.float32)
    ref = R.gemm(a, b)
    try:
        for n in (1, 2, 3):
            fastnn.set_num_threads(n)
            if HAS_CPP:
                assert fastnn.get_num_threads() == n
            check_op(ops.gemm(a, b), ref, np.float32, reduction=170)
    finally:
        fastnn.set_num_threads(prev)
    assert fastnn.get_num_threads() == prev


def test_set_num_threads_reaches_numba():
    import numba

    prev = fastnn.get_num_threads()
    prev_numba = numba.get_num_threads()
    try:
        with _backend.use_backend("numba"):
            fastnn.set_num_threads(1)
            assert numba.get_num_threads() == 1
            fastnn.set_num_threads(10**6)  # capped at what Numba's pool has
            assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
    finally:
        fastnn.set_num_threads(prev)
        numba.set_num_threads(prev_numba)


@needs_cpp
def test_omp_num_threads_is_honoured():
    out = run_json("import json, fastnn; print(json.dumps(fastnn.get_num_threads()))",
                   OMP_NUM_THREADS="1")
    assert out == 1


# ---------------------------------------------------------------------------------------------
# every backend's kernel module offers the same functions with the same signatures

def _pybind_params(fn) -> list:
    first = fn.__doc__.strip().splitlines()[0]  # "gemm(out: numpy.ndarray, a: ..., ...) -> None"
    inside = first[first.index("(") + 1:first.rindex(")")]
    return re.findall(r"(\w+):", inside)


@pytest.mark.parametrize("name", KERNEL_FUNCTIONS)
def test_numba_kernels_match_the_cpp_signatures(name):
    nk = _backend.kernels("numba")
    numba_params = list(inspect.signature(getattr(nk, name)).parameters)
    if not HAS_CPP:
        pytest.skip("no C++ module to compare with")
    assert numba_params == _pybind_params(getattr(_backend._C, name))
