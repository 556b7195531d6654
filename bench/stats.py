"""Summary statistics of repeated timings, and the ratios the reports print. Pure functions only.

Medians rather than means or minima: on a shared, noisy machine the median is what a user sees
typically, and one disturbed repeat cannot move it. The spread says how much to trust it.
"""
from __future__ import annotations

import statistics
from typing import Any, Dict, Optional, Sequence


def summarize(samples: Sequence[float]) -> Dict[str, float]:
    """Median, extremes, quartiles and relative spreads (percent of the median) of samples."""
    if not samples:
        raise ValueError("no samples to summarize")
    xs = sorted(float(x) for x in samples)
    med = statistics.median(xs)
    if len(xs) >= 2:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    else:
        q1 = q3 = xs[0]
    rel = 100.0 / med if med > 0 else 0.0
    return {"repeats": len(xs), "median": med, "min": xs[0], "max": xs[-1], "q1": q1, "q3": q3,
            "spread_pct": (xs[-1] - xs[0]) * rel, "iqr_pct": (q3 - q1) * rel}


def speedup(ours: Optional[float], theirs: Optional[float]) -> Optional[float]:
    """Time of theirs / time of ours: how many times faster fastnn is (> 1: fastnn faster)."""
    if ours is None or theirs is None or ours <= 0:
        return None
    return theirs / ours


def versus(med: Dict[str, Optional[float]], target_torch: Optional[float],
           target_numpy: Optional[float]) -> Dict[str, Any]:
    """fastnn's speedups over torch and NumPy from the medians in ``med``, their targets, and
    ``pass``: every speedup that has a target meets it (None when none can be judged)."""
    row = {"ratio_torch": speedup(med["fastnn"], med["torch"]),
           "ratio_numpy": speedup(med["fastnn"], med["numpy"]),
           "target_torch": target_torch, "target_numpy": target_numpy}
    checks = [(row["ratio_torch"], target_torch), (row["ratio_numpy"], target_numpy)]
    verdicts = [r >= t for r, t in checks if r is not None and t is not None]
    row["pass"] = all(verdicts) if verdicts else None
    return row


def slowdown(after_other: Optional[float], after_self: Optional[float]) -> Optional[float]:
    """Time after another library's call / time after the library's own call (> 1: slowed)."""
    if after_other is None or after_self is None or after_self <= 0:
        return None
    return after_other / after_self


def paired_slowdown(after_other: Sequence[float],
                    after_self: Sequence[float]) -> Optional[float]:
    """Median over repeats of (sample after the other library / sample after itself), the two
    samples of a repeat taken a moment apart; None without usable pairs."""
    ratios = [o / s for o, s in zip(after_other, after_self) if s > 0]
    return statistics.median(ratios) if ratios else None


def gflops(flops: float, seconds: Optional[float]) -> Optional[float]:
    if seconds is None or seconds <= 0:
        return None
    return flops / seconds / 1e9


def share(part: Optional[float], whole: Optional[float]) -> Optional[float]:
    """part / whole in percent, or None when either is unknown."""
    if part is None or not whole:
        return None
    return 100.0 * part / whole
