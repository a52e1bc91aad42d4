"""``--compare BASE.json``: did any benchmark get significantly worse?

Rule (the same for every benchmark; conditions 1 and 2 are asv's
``compare``): a benchmark *regressed* when

1. its median got worse (higher for latencies and sizes, lower for rates) by
   at least ``min_change`` (default 10%), and
2. the 95% bootstrap confidence intervals of the median in the two runs do
   not overlap, and
3. (default ``metric="guarded"`` only) its ratio to the floor, measured in
   the same run, also got worse by at least ``min_change``.

Condition 2 is the statistical test: with non-overlapping 95% intervals the
difference is significant at well below the 5% level.  Condition 1 keeps a
tiny but consistent difference (which thousands of samples make
"significant") from failing a build.  Condition 3 keeps a machine that was
simply busier during one run (the floor slowed down as much as ours: other
jobs on a shared 2-core box) from failing it; such a row reads "worse, floor
too".  Improvements are reported with the same rule.  The one-sided
permutation-test p-value on the per-round medians is printed beside it for
information (with 3 to 5 rounds per run it cannot go below 0.05 to 0.004,
so it is not used to decide).

``metric="ours"`` uses conditions 1 and 2 only; ``metric="ratio"`` applies 1
and 2 to ours / floor per round instead of our figures (its CI is the
bootstrap CI of the median of the per-round ratios, wide with few rounds).
"""

from __future__ import annotations

import math
import statistics

from . import _stats
from ._report import _grid, fmt

__all__ = ["compare", "compare_table", "DEFAULT_MIN_CHANGE"]

DEFAULT_MIN_CHANGE = 0.10
METRICS = ("guarded", "ours", "ratio")


def _figure(r: dict, metric: str) -> tuple[float, list[float], list[float]] | None:
    """(median, ci95, per-round values) of the compared figure."""
    if metric == "ratio":
        ratios = _round_ratios(r)
        if not ratios:
            return None
        return statistics.median(ratios), list(_stats.bootstrap_ci(ratios)), ratios
    ours = r.get("ours") or {}
    if not ours.get("n"):
        return None
    return ours["median"], ours["ci95"], r.get("rounds", {}).get("ours", [])


def _round_ratios(r: dict) -> list[float]:
    rounds = r.get("rounds", {})
    return [a / b for a, b in zip(rounds.get("ours", []), rounds.get("floor", [])) if b]


def _change(old: float, new: float) -> float:
    return (new - old) / old if old else math.inf


def compare(base: dict, new: dict, min_change: float = DEFAULT_MIN_CHANGE, metric: str = "guarded") -> list[dict]:
    """One row per benchmark in either run; ``row["verdict"]`` is
    ``'REGRESSION'``, ``'improved'``, ``'unchanged'``, ``'worse, not significant'``,
    ``'better, not significant'``, ``'worse, floor too'``, ``'better, floor too'``,
    or says why it was not compared."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}")
    rows = []
    b_res, n_res = base.get("results", {}), new.get("results", {})
    for name in list(dict.fromkeys(list(b_res) + list(n_res))):
        if name not in n_res:
            rows.append({"name": name, "verdict": "not in the new run"})
            continue
        if name not in b_res:
            rows.append({"name": name, "verdict": "new (not in the base)"})
            continue
        b, n = b_res[name], n_res[name]
        fig_metric = "ratio" if metric == "ratio" else "ours"
        fb, fn = _figure(b, fig_metric), _figure(n, fig_metric)
        if fb is None or fn is None:
            rows.append({"name": name, "verdict": "no figures to compare"})
            continue
        higher_better = n.get("higher_is_better", False)
        if metric == "ratio":
            unit = "x"
        else:
            unit = n["unit"]
            if b["unit"] != unit:
                rows.append({"name": name, "verdict": f"units differ ({b['unit']} vs {unit})"})
                continue
        (mb, cib, rb), (mn, cin, rn) = fb, fn
        change = _change(mb, mn)
        worse = change < 0 if higher_better else change > 0
        big = abs(change) >= min_change
        significant = _stats.cis_disjoint(cib, cin)
        ratio_change = None
        rb_ratios, rn_ratios = _round_ratios(b), _round_ratios(n)
        if rb_ratios and rn_ratios:
            ratio_change = _change(statistics.median(rb_ratios), statistics.median(rn_ratios))
        ratio_agrees = True
        if metric == "guarded" and ratio_change is not None:
            ratio_worse = ratio_change < 0 if higher_better else ratio_change > 0
            ratio_agrees = ratio_worse == worse and abs(ratio_change) >= min_change
        if big and significant and ratio_agrees:
            verdict = "REGRESSION" if worse else "improved"
        elif big and significant:
            verdict = ("worse" if worse else "better") + ", floor too"
        elif big:
            verdict = ("worse" if worse else "better") + ", not significant"
        else:
            verdict = "unchanged"
        p = _stats.permutation_p(rb, rn, worse_is_higher=not higher_better) if rb and rn else math.nan
        floor_change = None
        if metric != "ratio" and b.get("floor", {}).get("median") and n.get("floor", {}).get("median"):
            floor_change = _change(b["floor"]["median"], n["floor"]["median"])
        rows.append(
            {
                "name": name,
                "unit": unit,
                "base": mb,
                "base_ci": cib,
                "new": mn,
                "new_ci": cin,
                "change": change,
                "floor_change": floor_change,
                "ratio_change": ratio_change if metric != "ratio" else None,
                "p_perm": p,
                "verdict": verdict,
            }
        )
    return rows


def _f(v: float, unit: str) -> str:
    return f"{v:.3f}" if unit == "x" else fmt(v, unit)


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x * 100:+.1f}%"


def compare_table(rows: list[dict], min_change: float, metric: str) -> str:
    head = (
        "benchmark",
        "base median [95% CI]",
        "new median [95% CI]",
        "change",
        "floor change",
        "ours/floor change",
        "p (perm.)",
        "verdict",
    )
    out = [head]
    for r in rows:
        if "base" not in r:
            out.append((r["name"], "", "", "", "", "", "", r["verdict"]))
            continue
        u = r["unit"]
        out.append(
            (
                r["name"],
                f"{_f(r['base'], u)} [{_f(r['base_ci'][0], u)}, {_f(r['base_ci'][1], u)}]",
                f"{_f(r['new'], u)} [{_f(r['new_ci'][0], u)}, {_f(r['new_ci'][1], u)}]",
                _pct(r["change"]),
                _pct(r["floor_change"]),
                _pct(r["ratio_change"]),
                "" if math.isnan(r["p_perm"]) else f"{r['p_perm']:.3f}",
                r["verdict"],
            )
        )
    what = {
        "guarded": "our figures",
        "ours": "our figures",
        "ratio": "ours / floor per round",
    }[metric]
    rule = (
        f"compared: {what}; a regression is a change for the worse of at least {min_change * 100:.0f}% "
        "with non-overlapping 95% CIs of the median"
        + (f", and ours/floor worse by at least {min_change * 100:.0f}% too" if metric == "guarded" else "")
    )
    return _grid(out) + "\n" + rule
