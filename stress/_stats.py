"""Small statistics for benchmark reports (numpy is used when present, for speed).

* :func:`summary`: median, p95, p99, mean, min, max and a percentile-bootstrap
  95% confidence interval of the median;
* :func:`ratio_summary`: ours / floor per round (the rounds alternate, so a
  round's two medians were measured under the same machine conditions);
* :func:`permutation_p`: one-sided permutation test on two small sets of
  per-round figures (exact when the split count is small);
* :func:`cis_disjoint`: whether two intervals do not overlap.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics

try:  # optional: only makes the bootstrap faster
    import numpy as _np
except ImportError:  # pragma: no cover - numpy comes with matplotlib and ray
    _np = None  # type: ignore[assignment]

__all__ = ["percentile", "summary", "bootstrap_ci", "ratio_summary", "permutation_p", "cis_disjoint"]

BOOTSTRAP_RESAMPLES = 1000


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


def bootstrap_ci(values: list[float], n: int = BOOTSTRAP_RESAMPLES, level: float = 0.95, seed: int = 1):
    """Percentile-bootstrap confidence interval of the median (deterministic: fixed seed)."""
    k = len(values)
    if k == 0:
        return (math.nan, math.nan)
    if k == 1:
        return (values[0], values[0])
    alpha = (1 - level) / 2
    if _np is not None:
        rng = _np.random.default_rng(seed)
        arr = _np.asarray(values, dtype=float)
        meds = []
        chunk = max(1, 2_000_000 // k)  # bound the index matrix to ~16 MB
        done = 0
        while done < n:
            m = min(chunk, n - done)
            idx = rng.integers(0, k, size=(m, k))
            meds.append(_np.median(arr[idx], axis=1))
            done += m
        stats = sorted(_np.concatenate(meds).tolist())
    else:
        rng = random.Random(seed)
        stats = sorted(statistics.median(rng.choices(values, k=k)) for _ in range(n))
    return (percentile(stats, 100 * alpha), percentile(stats, 100 * (1 - alpha)))


def summary(values: list[float]) -> dict:
    """median, p95, p99, mean, min, max, 95% bootstrap CI of the median, n."""
    s = sorted(values)
    if not s:
        return {"n": 0}
    lo, hi = bootstrap_ci(s)
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
    if not ratios:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "rounds": 0}
    return {"median": statistics.median(ratios), "min": ratios[0], "max": ratios[-1], "rounds": len(ratios)}


def permutation_p(
    base: list[float], new: list[float], worse_is_higher: bool = True, n: int = 20000, seed: int = 1
) -> float:
    """One-sided permutation test: the probability, if both sets came from
    the same distribution, of a difference of medians (new - base, or
    base - new when lower is worse) at least as large as the observed one.

    Exact (every split) when there are at most ``n`` splits, otherwise a
    Monte Carlo estimate with ``n`` random splits.
    """
    if not base or not new:
        return math.nan
    sign = 1.0 if worse_is_higher else -1.0
    observed = sign * (statistics.median(new) - statistics.median(base))
    pooled = list(base) + list(new)
    k = len(new)
    total = math.comb(len(pooled), k)
    hits = 0
    if total <= n:
        for chosen in itertools.combinations(range(len(pooled)), k):
            picked = set(chosen)
            a = [pooled[i] for i in picked]
            b = [pooled[i] for i in range(len(pooled)) if i not in picked]
            if sign * (statistics.median(a) - statistics.median(b)) >= observed - 1e-15 * abs(observed):
                hits += 1
        return hits / total
    rng = random.Random(seed)
    for _ in range(n):
        rng.shuffle(pooled)
        if sign * (statistics.median(pooled[:k]) - statistics.median(pooled[k:])) >= observed:
            hits += 1
    return (hits + 1) / (n + 1)


def cis_disjoint(a: list[float], b: list[float]) -> bool:
    """True when the intervals ``a`` and ``b`` (each ``[lo, hi]``) do not overlap."""
    return a[1] < b[0] or b[1] < a[0]
