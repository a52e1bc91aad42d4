"""Small, dependency-free statistics for benchmark reports."""

from __future__ import annotations

import random
import statistics

__all__ = ["percentile", "summary", "bootstrap_ci", "ratio_summary"]


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        raise ValueError("no values")
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def bootstrap_ci(values: list[float], stat=statistics.median, n: int = 1000, level: float = 0.95, seed: int = 1):
    """Percentile bootstrap confidence interval of ``stat``."""
    rng = random.Random(seed)
    k = len(values)
    if k < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    stats = sorted(stat([values[rng.randrange(k)] for _ in range(k)]) for _ in range(n))
    alpha = (1 - level) / 2
    return (percentile(stats, 100 * alpha), percentile(stats, 100 * (1 - alpha)))


def summary(values: list[float]) -> dict:
    """median, p95, p99, mean, min, max, 95% CI of the median, n."""
    s = sorted(values)
    lo, hi = bootstrap_ci(s, n=400)
    return {
        "n": len(s),
        "median": statistics.median(s),
        "p95": percentile(s, 95),
        "p99": percentile(s, 99),
        "mean": statistics.fmean(s),
        "min": s[0],
        "max": s[-1],
        "ci95": [lo, hi],
    }


def ratio_summary(ours: list[float], floor: list[float]) -> dict:
    """Ratio of per-round medians (ours / floor): median and spread (min, max)."""
    ratios = sorted(a / b for a, b in zip(ours, floor) if b)
    return {"median": statistics.median(ratios), "min": ratios[0], "max": ratios[-1], "rounds": len(ratios)}
