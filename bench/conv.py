"""Convolution family: a ResNet-sized 3x3 convolution (forward; forward + backward) and 2x2 max
pooling, float32, NCHW.

fastnn.ops vs ``torch.nn.functional`` vs the NumPy idiom a user would write (a strided-window
view, then one matmul: "im2col"; a reshape and max for pooling). ``run_library`` times one
library in its own process; ``combine`` and ``report`` put the libraries side by side.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from .common import measure_interleaved, ms_cells, num, progress, table, timing, verdict
from .stats import summarize, versus

LIBRARIES = ("fastnn", "numpy", "torch")
# (name, what a case computes); every case is float32
CONV = {"n": 32, "c": 64, "hw": 56, "k": 3, "pad": 1}
POOL_SHAPE = (64, 32, 28, 28)
# name -> (wanted fastnn/torch, wanted fastnn/NumPy): the project's targets
TARGETS = {"conv2d forward": (1.5, 5.0), "conv2d forward+backward": (1.3, None),
           "max_pool2d 2x2": (4.0, None)}


def _inputs() -> Tuple[Any, Any, Any, Any, Any]:
    import numpy as np
    rng = np.random.default_rng(7)
    n, c, hw, k = CONV["n"], CONV["c"], CONV["hw"], CONV["k"]
    x = rng.standard_normal((n, c, hw, hw), dtype=np.float32)
    w = rng.standard_normal((c, c, k, k), dtype=np.float32) * np.float32((c * k * k) ** -0.5)
    b = rng.standard_normal(c, dtype=np.float32)
    dy = rng.standard_normal((n, c, hw, hw), dtype=np.float32)
    xp = rng.standard_normal(POOL_SHAPE, dtype=np.float32)
    return x, w, b, dy, xp


def _numpy_conv(x: Any, w: Any, b: Any) -> Any:
    """im2col as a NumPy user writes it: a padded strided-window view and one matmul."""
    import numpy as np
    pad, k = CONV["pad"], CONV["k"]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))  # N C H W k k
    n, c, h, wd = win.shape[:4]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * wd, c * k * k)
    y = cols @ w.reshape(w.shape[0], -1).T + b
    return y.reshape(n, h, wd, -1).transpose(0, 3, 1, 2)


def _numpy_pool(x: Any) -> Any:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def _calls(lib: str, mods: Dict[str, Any]) -> List[Tuple[str, Optional[Callable[[], Any]]]]:
    """(case name, the timed call or None when the library has no such idiom)."""
    x, w, b, dy, xp = _inputs()
    pad = CONV["pad"]
    if lib == "fastnn":
        ops = mods["fastnn"].ops

        def fwd_bwd() -> Any:
            y, ctx = ops.conv2d_forward(x, w, b, padding=pad)
            return ops.conv2d_backward(ctx, dy)

        return [("conv2d forward", lambda: ops.conv2d(x, w, b, padding=pad)),
                ("conv2d forward+backward", fwd_bwd),
                ("max_pool2d 2x2", lambda: ops.max_pool2d(xp, 2))]
    if lib == "torch":
        torch = mods["torch"]
        F = torch.nn.functional
        tx, tw, tb, tdy, txp = (torch.from_numpy(v) for v in (x, w, b, dy, xp))

        def t_fwd_bwd() -> Any:
            xr, wr, br = (v.detach().requires_grad_() for v in (tx, tw, tb))
            F.conv2d(xr, wr, br, padding=pad).backward(tdy)
            return xr.grad, wr.grad, br.grad

        def t_fwd() -> Any:
            with torch.no_grad():
                return F.conv2d(tx, tw, tb, padding=pad)

        def t_pool() -> Any:
            with torch.no_grad():
                return F.max_pool2d(txp, 2)

        return [("conv2d forward", t_fwd), ("conv2d forward+backward", t_fwd_bwd),
                ("max_pool2d 2x2", t_pool)]
    return [("conv2d forward", lambda: _numpy_conv(x, w, b)),
            ("conv2d forward+backward", None),
            ("max_pool2d 2x2", lambda: _numpy_pool(xp))]


def _check(lib: str, mods: Dict[str, Any]) -> bool:
    """fastnn's forward and pooling against the NumPy idiom (float32, scaled tolerance)."""
    import numpy as np
    if lib != "fastnn":
        return True
    x, w, b, _, xp = _inputs()
    ops = mods["fastnn"].ops
    want = _numpy_conv(x, w, b)
    got = ops.conv2d(x, w, b, padding=CONV["pad"])
    ok = float(np.abs(got - want).max()) <= 1e-3 * float(np.abs(want).max())
    return ok and bool(np.array_equal(ops.max_pool2d(xp, 2), _numpy_pool(xp)))


def run_library(lib: str, quick: bool, mods: Dict[str, Any]) -> Dict[str, Any]:
    """Every case for one library: samples in seconds per call."""
    progress(f"conv   {lib:6s} preparing")
    cases = _calls(lib, mods)
    timed = [(name, fn) for name, fn in cases if fn is not None]
    settings = timing(quick)
    results = measure_interleaved(
        [fn for _, fn in timed], **settings,
        on_round=lambda r: progress(f"conv   {lib:6s} repeat {r + 1}/{settings['repeats']}"))
    out = {name: res for (name, _), res in zip(timed, results)}
    return {"cases": out, "correct": _check(lib, mods)}


def combine(results: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    ok = {lib: r for lib, r in results.items() if "error" not in r}
    rows = []
    for name, (t_torch, t_numpy) in TARGETS.items():
        libs = {lib: summarize(r["cases"][name]["samples"])
                for lib, r in ok.items() if name in r["cases"]}
        med = {lib: libs[lib]["median"] if lib in libs else None for lib in LIBRARIES}
        row = {"case": name, "libs": libs, **versus(med, t_torch, t_numpy)}
        rows.append(row)
    return {"rows": rows, "correct": ok.get("fastnn", {}).get("correct"),
            "errors": {lib: r["error"] for lib, r in results.items() if "error" in r},
            "conv": CONV, "pool_shape": list(POOL_SHAPE)}


def report(res: Dict[str, Any]) -> str:
    rows = []
    for row in res["rows"]:
        cells: List[Any] = [row["case"]] + ms_cells(row["libs"], LIBRARIES, 2)
        wanted = [f"torch >= {row['target_torch']}"]
        if row["target_numpy"]:
            wanted.append(f"numpy >= {row['target_numpy']}")
        cells += [num(row["ratio_torch"], 2), num(row["ratio_numpy"], 2), ", ".join(wanted),
                  verdict(row["pass"], res["correct"])]
        rows.append(cells)
    heads = sum(([f"{lib} ms", "IQR"] for lib in LIBRARIES), [])
    c = res["conv"]
    errors = "".join(f"\n{lib}: {e}" for lib, e in res["errors"].items())
    return (f"Convolution, float32 NCHW: conv2d batch {c['n']}, {c['c']}->{c['c']} channels, "
            f"{c['k']}x{c['k']}, {c['hw']}x{c['hw']}, padding {c['pad']}; max_pool2d on "
            f"{tuple(res['pool_shape'])}; median ms per call\n"
            + table(["case"] + heads + ["fastnn/torch", "fastnn/numpy", "target", ""], rows)
            + "\n(NumPy: a strided-window view and one matmul for conv2d, reshape + max for "
              "pooling; it has no backward idiom)" + errors)
