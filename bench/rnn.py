"""Recurrent family: one-layer LSTM and GRU over B = 64 sequences of T = 100 steps, I = H = 256,
float32, forward and forward + backward through time.

fastnn.ops vs ``torch.nn.LSTM``/``torch.nn.GRU`` vs the NumPy idiom a user would write (the
input projections of all steps in one matmul, then a loop of one matmul and the gate math per
step; backward the same way in reverse, the weight gradients as matmuls at the end).
``run_library`` times one library in its own process; ``combine`` and ``report`` put the
libraries side by side, with fastnn's GFLOPS and share of the machine's FMA peak.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from .common import (GEMM_RATE_CASE, gemm_floor, gemm_rate_call, gemm_rate_note, gemm_rates,
                     measure_interleaved, ms_cell, ms_cells, num, pct, progress, table, timing,
                     verdict)
from .stats import gflops, share, summarize, versus

LIBRARIES = ("fastnn", "numpy", "torch")
SIZES = {"B": 64, "T": 100, "I": 256, "H": 256}
# The row-LSTM of examples/fashion_mnist_lstm.py (28 image rows of 28 pixels, LSTM(128), batch
# 64): its training step is the LSTM's forward and backward plus a small Dense layer and Adam.
ROW_SIZES = {"B": 64, "T": 28, "I": 28, "H": 128}
ROW_CASE = "row-LSTM forward+backward"
GATES = {"LSTM": 4, "GRU": 3}
# name -> (wanted fastnn/torch, wanted fastnn/NumPy): the project's targets. The row-LSTM's is
# the epoch target (at most 0.6x PyTorch's time, so 1/0.6) applied to its dominant part.
TARGETS = {"LSTM forward": (1.3, 2.0), "LSTM forward+backward": (1.5, 2.0),
           "GRU forward": (1.3, 2.0), "GRU forward+backward": (1.5, 2.0),
           ROW_CASE: (round(1 / 0.6, 2), 2.0)}


def _sizes(case: str) -> Dict[str, int]:
    return ROW_SIZES if case == ROW_CASE else SIZES


def flops(case: str) -> float:
    """Multiply-adds x 2 of the GEMMs: forward 2*B*T*G*H*(I+H); backward twice that again
    (gradients of the inputs and of the weights)."""
    cell, _, what = case.removeprefix("row-").partition(" ")
    s = _sizes(case)
    fwd = 2.0 * s["B"] * s["T"] * GATES[cell] * s["H"] * (s["I"] + s["H"])
    return fwd * (3.0 if "backward" in what else 1.0)


def _inputs(cell: str, sizes: Optional[Dict[str, int]] = None) -> Tuple[Any, ...]:
    import numpy as np
    rng = np.random.default_rng(11)
    sz = sizes or SIZES
    b, t, i, h = sz["B"], sz["T"], sz["I"], sz["H"]
    g = GATES[cell] * h
    s = np.float32(h ** -0.5)
    x = rng.standard_normal((b, t, i), dtype=np.float32)
    w_ih = rng.uniform(-s, s, (g, i)).astype(np.float32)
    w_hh = rng.uniform(-s, s, (g, h)).astype(np.float32)
    b_ih = rng.uniform(-s, s, g).astype(np.float32)
    b_hh = rng.uniform(-s, s, g).astype(np.float32)
    h0 = np.zeros((b, h), np.float32)
    dy = rng.standard_normal((b, t, h), dtype=np.float32)
    return x, h0, w_ih, w_hh, b_ih, b_hh, dy


# ---- the NumPy idiom ----------------------------------------------------------------------------

def _sig(v: Any) -> Any:
    import numpy as np
    return 0.5 * (1.0 + np.tanh(0.5 * v))  # one ufunc, no overflow warnings


def np_lstm(x, h0, w_ih, w_hh, b_ih, b_hh, keep=False):
    import numpy as np
    b, t, _ = x.shape
    h, c = h0, np.zeros_like(h0)
    xp = (x @ w_ih.T + (b_ih + b_hh)).transpose(1, 0, 2)  # (T, B, 4H)
    ys, saved = [], []
    for s in range(t):
        a = xp[s] + h @ w_hh.T
        i, f, g, o = np.split(a, 4, axis=1)
        i, f, g, o = _sig(i), _sig(f), np.tanh(g), _sig(o)
        c_prev = c
        c = f * c + i * g
        tc = np.tanh(c)
        hp, h = h, o * tc
        ys.append(h)
        if keep:
            saved.append((hp, c_prev, i, f, g, o, tc))
    return np.stack(ys, axis=1), saved


def np_lstm_backward(x, w_ih, w_hh, dy, saved):
    import numpy as np
    b, t, _ = x.shape
    dh = np.zeros_like(saved[0][0])
    dc = np.zeros_like(dh)
    dgs = [None] * t
    for s in reversed(range(t)):
        hp, cp, i, f, g, o, tc = saved[s]
        dht = dh + dy[:, s]
        dct = dc + dht * o * (1 - tc * tc)
        dg = np.concatenate([dct * g * i * (1 - i), dct * cp * f * (1 - f),
                             dct * i * (1 - g * g), dht * tc * o * (1 - o)], axis=1)
        dgs[s] = dg
        dh = dg @ w_hh
        dc = dct * f
    dgall = np.stack(dgs, axis=1).reshape(b * t, -1)
    hprev = np.stack([sv[0] for sv in saved], axis=1).reshape(b * t, -1)
    dx = (dgall @ w_ih).reshape(x.shape)
    return dx, dgall.T @ x.reshape(b * t, -1), dgall.T @ hprev, dgall.sum(0)


def np_gru(x, h0, w_ih, w_hh, b_ih, b_hh, keep=False):
    import numpy as np
    t = x.shape[1]
    h = h0
    xp = (x @ w_ih.T + b_ih).transpose(1, 0, 2)
    ys, saved = [], []
    for s in range(t):
        gh = h @ w_hh.T + b_hh
        xr, xz, xn = np.split(xp[s], 3, axis=1)
        hr, hz, hn = np.split(gh, 3, axis=1)
        r, z = _sig(xr + hr), _sig(xz + hz)
        n = np.tanh(xn + r * hn)
        hp, h = h, n + z * (h - n)
        ys.append(h)
        if keep:
            saved.append((hp, r, z, n, hn))
    return np.stack(ys, axis=1), saved


def np_gru_backward(x, w_ih, w_hh, dy, saved):
    import numpy as np
    b, t, _ = x.shape
    dh = np.zeros_like(saved[0][0])
    gxs, ghs = [None] * t, [None] * t
    for s in reversed(range(t)):
        hp, r, z, n, hn = saved[s]
        dht = dh + dy[:, s]
        dn = dht * (1 - z) * (1 - n * n)
        dz = dht * (hp - n) * z * (1 - z)
        dr = dn * hn * r * (1 - r)
        gxs[s] = np.concatenate([dr, dz, dn], axis=1)
        ghs[s] = np.concatenate([dr, dz, dn * r], axis=1)
        dh = ghs[s] @ w_hh + dht * z
    gx = np.stack(gxs, axis=1).reshape(b * t, -1)
    gh = np.stack(ghs, axis=1).reshape(b * t, -1)
    hprev = np.stack([sv[0] for sv in saved], axis=1).reshape(b * t, -1)
    return ((gx @ w_ih).reshape(x.shape), gx.T @ x.reshape(b * t, -1), gh.T @ hprev,
            gx.sum(0), gh.sum(0))


# ---- the timed calls ----------------------------------------------------------------------------

def _calls(lib: str, mods: Dict[str, Any]) -> List[Tuple[str, Callable[[], Any]]]:
    out = []
    for cell, sizes in (("LSTM", SIZES), ("GRU", SIZES), ("LSTM", ROW_SIZES)):
        x, h0, w_ih, w_hh, b_ih, b_hh, dy = _inputs(cell, sizes)
        if lib == "fastnn":
            ops = mods["fastnn"].ops
            if cell == "LSTM":
                def fwd(x=x, h0=h0, a=(w_ih, w_hh, b_ih, b_hh)):
                    return ops.lstm(x, h0, h0, *a)

                def both(x=x, h0=h0, a=(w_ih, w_hh, b_ih, b_hh), dy=dy):
                    _, ctx = ops.lstm_forward(x, h0, h0, *a)
                    return ops.lstm_backward(ctx, dy)
            else:
                def fwd(x=x, h0=h0, a=(w_ih, w_hh, b_ih, b_hh)):
                    return ops.gru(x, h0, *a)

                def both(x=x, h0=h0, a=(w_ih, w_hh, b_ih, b_hh), dy=dy):
                    _, ctx = ops.gru_forward(x, h0, *a)
                    return ops.gru_backward(ctx, dy)
        elif lib == "torch":
            torch = mods["torch"]
            mod = (torch.nn.LSTM if cell == "LSTM" else torch.nn.GRU)(
                sizes["I"], sizes["H"], batch_first=True)
            with torch.no_grad():
                for name, v in (("weight_ih_l0", w_ih), ("weight_hh_l0", w_hh),
                                ("bias_ih_l0", b_ih), ("bias_hh_l0", b_hh)):
                    getattr(mod, name).copy_(torch.from_numpy(v))
            tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)

            def fwd(mod=mod, tx=tx):
                with torch.no_grad():
                    return mod(tx)

            def both(mod=mod, tx=tx, tdy=tdy):
                xr = tx.detach().requires_grad_()
                mod.zero_grad(set_to_none=True)
                y, _ = mod(xr)
                y.backward(tdy)
                return xr.grad
        else:
            f, bwd = (np_lstm, np_lstm_backward) if cell == "LSTM" else (np_gru, np_gru_backward)

            def fwd(f=f, a=(x, h0, w_ih, w_hh, b_ih, b_hh)):
                return f(*a)

            def both(f=f, bwd=bwd, a=(x, h0, w_ih, w_hh, b_ih, b_hh), dy=dy):
                _, saved = f(*a, keep=True)
                return bwd(a[0], a[2], a[3], dy, saved)
        if sizes is ROW_SIZES:
            out.append((ROW_CASE, both))
        else:
            out += [(f"{cell} forward", fwd), (f"{cell} forward+backward", both)]
    return out


def _check(lib: str, mods: Dict[str, Any]) -> bool:
    """fastnn's forward and input gradient against the NumPy idiom (float32, scaled tolerance)."""
    import numpy as np
    if lib != "fastnn":
        return True
    ops = mods["fastnn"].ops
    ok = True
    for cell in GATES:
        x, h0, w_ih, w_hh, b_ih, b_hh, dy = _inputs(cell)
        if cell == "LSTM":
            (y, _, _), ctx = ops.lstm_forward(x, h0, h0, w_ih, w_hh, b_ih, b_hh)
            dx = ops.lstm_backward(ctx, dy)[0]
            want, saved = np_lstm(x, h0, w_ih, w_hh, b_ih, b_hh, keep=True)
            want_dx = np_lstm_backward(x, w_ih, w_hh, dy, saved)[0]
        else:
            (y, _), ctx = ops.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh)
            dx = ops.gru_backward(ctx, dy)[0]
            want, saved = np_gru(x, h0, w_ih, w_hh, b_ih, b_hh, keep=True)
            want_dx = np_gru_backward(x, w_ih, w_hh, dy, saved)[0]
        ok &= float(np.abs(y - want).max()) <= 1e-3
        ok &= float(np.abs(dx - want_dx).max()) <= 1e-3 * max(1.0, float(np.abs(want_dx).max()))
    return bool(ok)


def run_library(lib: str, quick: bool, mods: Dict[str, Any]) -> Dict[str, Any]:
    """Every case for one library: samples in seconds per call."""
    progress(f"rnn    {lib:6s} preparing")
    cases = _calls(lib, mods) + [(GEMM_RATE_CASE, gemm_rate_call(lib, mods))]
    settings = timing(quick)
    settings["repeats"] = min(settings["repeats"], 5 if quick else 7)  # seconds per case
    results = measure_interleaved(
        [fn for _, fn in cases], **settings,
        on_round=lambda r: progress(f"rnn    {lib:6s} repeat {r + 1}/{settings['repeats']}"))
    return {"cases": {name: res for (name, _), res in zip(cases, results)},
            "correct": _check(lib, mods)}


def combine(results: Dict[str, Dict[str, Any]], peak_gflops: Optional[float]) -> Dict[str, Any]:
    ok = {lib: r for lib, r in results.items() if "error" not in r}
    rates = gemm_rates(ok)
    rows = []
    for name, (t_torch, t_numpy) in TARGETS.items():
        libs = {lib: summarize(r["cases"][name]["samples"])
                for lib, r in ok.items() if name in r["cases"]}
        med = {lib: libs[lib]["median"] if lib in libs else None for lib in LIBRARIES}
        gf = gflops(flops(name), med["fastnn"])
        row = {"case": name, "libs": libs, "gflops": gf, "peak_share": share(gf, peak_gflops),
               "target_s": med["torch"] / t_torch if med["torch"] else None,
               "gemm_floor_s": gemm_floor(flops(name), rates),
               **versus(med, t_torch, t_numpy)}
        rows.append(row)
    return {"rows": rows, "correct": ok.get("fastnn", {}).get("correct"), "gemm_rates": rates,
            "errors": {lib: r["error"] for lib, r in results.items() if "error" in r},
            "sizes": SIZES, "peak_gflops": peak_gflops}


def report(res: Dict[str, Any]) -> str:
    rows = []
    for row in res["rows"]:
        cells: List[Any] = [row["case"]] + ms_cells(row["libs"], LIBRARIES, 1)
        cells += [num(row["gflops"], 0), pct(row["peak_share"]), num(row["ratio_torch"], 2),
                  num(row["ratio_numpy"], 2), ms_cell(row.get("target_s")),
                  ms_cell(row.get("gemm_floor_s")),
                  f"torch >= {row['target_torch']}, numpy >= {row['target_numpy']}",
                  verdict(row["pass"], res["correct"])]
        rows.append(cells)
    heads = sum(([f"{lib} ms", "IQR"] for lib in LIBRARIES), [])
    s = res["sizes"]
    errors = "".join(f"\n{lib}: {e}" for lib, e in res["errors"].items())
    peak = res["peak_gflops"]
    return (f"Recurrent, float32, batch-first: B={s['B']}, T={s['T']}, I={s['I']}, H={s['H']}, "
            f"one layer (row-LSTM: B=64, T=28, I=28, H=128); median ms per call (FMA peak "
            f"{num(peak, 0)} GFLOPS)\n"
            + table(["case"] + heads + ["fastnn GF/s", "% peak", "fastnn/torch", "fastnn/numpy",
                                        "target ms", "GEMM ms", "target", ""], rows)
            + "\n(NumPy: input projections in one matmul, then one matmul and the gate math per "
              "step; backward likewise, weight gradients as matmuls after the loop. target ms: "
              "torch's time over the torch target)\n"
            + gemm_rate_note(res.get("gemm_rates", {})) + errors)
