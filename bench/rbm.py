"""RBM family: one epoch of persistent-CD training on Fashion-MNIST, fastnn vs scikit-learn.

Both train ``n_components=256`` hidden units with learning rate 0.05 and batch 64 (scikit-learn's
``BernoulliRBM``, NumPy over OpenBLAS; ``fastnn.nn.RBM``, one fused C++ call per batch) on the
60,000 training images scaled to [0, 1], float32. Reported per library, each in its own process:
the seconds per epoch (each of ``epochs`` epochs timed; median and IQR), the process CPU seconds
per epoch (every thread: on a busy machine OpenBLAS's threads wait for cores and the wall time of
a two-thread NumPy epoch can grow tenfold, its CPU time much less), the pseudo-likelihood on
the first 2,000 test images after those epochs (each library's ``score_samples``, the same
estimator), and the test accuracy of a logistic regression (scikit-learn's, identical in both)
on the 256 hidden probabilities. PyTorch has no RBM, so it is not timed here.

``fastnn_bf16`` is fastnn trained with ``fastnn.set_float32_matmul_precision("medium")``: the
products in bfloat16 (float32 accumulation) on the CPU's AMX or AVX512_BF16 kernel, float32
where it has neither (the report names the kernel that ran). Its pseudo-likelihood and features
are computed at the default precision, so that they measure the trained model the same way.

``pip install scikit-learn`` (the ``bench`` extra) for the comparison.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List

from .common import num, progress, table
from .stats import speedup, summarize

LIBRARIES = ("fastnn", "fastnn_bf16", "sklearn")
LABELS = {"fastnn": "fastnn", "fastnn_bf16": "fastnn (bf16 products)", "sklearn": "sklearn"}
SETTINGS = {"n_components": 256, "learning_rate": 0.05, "batch_size": 64}
PL_ROWS = 2000
# The project's targets: epoch speed-up over scikit-learn, and the features + logistic accuracy.
TARGET_SPEEDUP = 10.0
TARGET_LOGISTIC = 0.839


def sklearn_installed() -> bool:
    import importlib.util
    return importlib.util.find_spec("sklearn") is not None


def _data() -> Any:
    import numpy as np
    from fastnn.datasets import fashion_mnist  # the reader only: NumPy code, no kernels
    (x, y), (xt, yt) = fashion_mnist.load_data(install=False)
    x = (x.reshape(len(x), -1) / np.float32(255)).astype(np.float32)
    xt = (xt.reshape(len(xt), -1) / np.float32(255)).astype(np.float32)
    return x, y, xt, yt


def _logistic(f: Any, y: Any, ft: Any, yt: Any) -> float:
    from sklearn.linear_model import LogisticRegression
    clf = LogisticRegression(max_iter=500)
    clf.fit(f, y)
    return float(clf.score(ft, yt))


def run_library(lib: str, epochs: int, mods: Dict[str, Any], logistic: bool = True
                ) -> Dict[str, Any]:
    """Train ``epochs`` epochs with ``lib``; returns the epoch times and the quality figures."""
    x, y, xt, yt = _data()
    times: List[float] = []
    cpu: List[float] = []  # process CPU seconds (every thread): less sensitive to a busy machine
    version = None
    kernel = None
    if lib in ("fastnn", "fastnn_bf16"):
        fastnn = mods["fastnn"]
        if lib == "fastnn_bf16":
            from fastnn import precision
            precision.set_float32_matmul_precision("medium")
            kernel = precision.bf16_kernel() or "float32 fallback"
        rbm = fastnn.nn.RBM(SETTINGS["n_components"], learning_rate=SETTINGS["learning_rate"],
                            batch_size=SETTINGS["batch_size"], seed=0)
        for e in range(epochs):
            progress(f"rbm    {lib} epoch {e + 1}/{epochs}")
            c0 = time.process_time()
            hist = rbm.fit(x, epochs=1, verbose=0)
            cpu.append(time.process_time() - c0)
            times.append(hist.history["time"][0])
        fastnn.set_float32_matmul_precision("highest")  # evaluate every model the same way
        pl = float(rbm.score_samples(xt[:PL_ROWS], seed=0).mean())
        features = rbm.transform
    else:
        import sklearn
        from sklearn.neural_network import BernoulliRBM
        version = sklearn.__version__
        rbm = BernoulliRBM(n_iter=1, random_state=0, **SETTINGS)
        # fit() restarts from scratch; partial_fit-style epochs: the first epoch by fit(), the
        # next ones continue from its state with the same batches (what n_iter=epochs runs).
        for e in range(epochs):
            progress(f"rbm    sklearn epoch {e + 1}/{epochs}")
            t0, c0 = time.perf_counter(), time.process_time()
            if e == 0:
                rbm.fit(x)
            else:
                _sklearn_epoch(rbm, x)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        pl = float(rbm.score_samples(xt[:PL_ROWS]).mean())
        features = rbm.transform
    out: Dict[str, Any] = {"epoch_s": times, "cpu_s": cpu, "pseudo_likelihood": pl,
                           "version": version, "kernel": kernel}
    if logistic:
        progress(f"rbm    {lib} logistic regression on the features")
        out["logistic_accuracy"] = _logistic(features(x), y, features(xt), yt)
    return out


def _sklearn_epoch(rbm: Any, x: Any) -> None:
    """One more epoch of BernoulliRBM.fit's loop (same even batch slices, same generator)."""
    import numpy as np
    from sklearn.utils import check_random_state, gen_even_slices
    rng = rbm._bench_rng if hasattr(rbm, "_bench_rng") else check_random_state(rbm.random_state)
    rbm._bench_rng = rng
    n = x.shape[0]
    n_batches = int(np.ceil(float(n) / rbm.batch_size))
    for sl in gen_even_slices(n_batches * rbm.batch_size, n_batches, n_samples=n):
        rbm._fit(x[sl], rng)


def combine(results: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    ok = {lib: r for lib, r in results.items() if "error" not in r}
    libs = {lib: dict(summarize(r["epoch_s"]), pseudo_likelihood=r["pseudo_likelihood"],
                      logistic_accuracy=r.get("logistic_accuracy"), kernel=r.get("kernel"),
                      cpu_median=summarize(r["cpu_s"])["median"] if r.get("cpu_s") else None)
            for lib, r in ok.items()}
    med = {lib: libs[lib]["median"] if lib in libs else None for lib in LIBRARIES}
    ratios = {lib: speedup(med[lib], med["sklearn"]) for lib in ("fastnn", "fastnn_bf16")}
    checks = {}
    for lib, suffix in (("fastnn", ""), ("fastnn_bf16", " (bf16)")):
        if lib not in libs:
            continue
        if ratios[lib] is not None:
            checks["speed" + suffix] = ratios[lib] >= TARGET_SPEEDUP
        if "sklearn" in libs:
            checks["pseudo_likelihood" + suffix] = (libs[lib]["pseudo_likelihood"]
                                                    >= libs["sklearn"]["pseudo_likelihood"])
        acc = libs[lib].get("logistic_accuracy")
        if acc is not None:
            checks["logistic" + suffix] = acc >= TARGET_LOGISTIC
    return {"libs": libs, "ratio": ratios["fastnn"], "ratio_bf16": ratios["fastnn_bf16"],
            "checks": checks, "settings": SETTINGS,
            "errors": {lib: r["error"] for lib, r in results.items() if "error" in r}}


def report(res: Dict[str, Any]) -> str:
    rows = []
    for lib in LIBRARIES:
        s = res["libs"].get(lib)
        if s is None:
            if lib != "fastnn_bf16":  # older results have no bf16 row
                rows.append([LABELS[lib], "-", "-", "-", "-", "-"])
            continue
        iqr = s["q3"] - s["q1"] if "q3" in s and "q1" in s else None
        rows.append([LABELS[lib], num(s["median"], 3), num(iqr, 3), num(s.get("cpu_median"), 3),
                     num(s["pseudo_likelihood"], 1), num(s["logistic_accuracy"], 4)])
    verdict = ", ".join(f"{k} {'pass' if v else 'MISS'}" for k, v in res["checks"].items())
    errors = "".join(f"\n{lib}: {e}" for lib, e in res["errors"].items())
    st = res["settings"]
    bf16 = ""
    if "fastnn_bf16" in res["libs"]:
        bf16 = (f"\nfastnn (bf16 products) / scikit-learn: {num(res.get('ratio_bf16'), 1)}x; "
                f"bf16 kernel: {res['libs']['fastnn_bf16'].get('kernel') or 'unknown'}")
    return (f"RBM, Fashion-MNIST (60,000 x 784, float32), {st['n_components']} hidden units, "
            f"persistent CD-1, lr {st['learning_rate']}, batch {st['batch_size']}\n"
            + table(["library", "s/epoch", "IQR", "CPU s/epoch", f"PL ({PL_ROWS} test)",
                     "features+logistic"], rows)
            + f"\nfastnn / scikit-learn epoch speed-up: {num(res['ratio'], 1)}x (target >= "
              f"{TARGET_SPEEDUP:g}x; PL at least scikit-learn's; logistic >= {TARGET_LOGISTIC})"
            + bf16
            + (f"\n{verdict}" if verdict else "") + errors)
