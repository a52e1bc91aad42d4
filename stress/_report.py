"""Summaries, tables and the plot of a run."""

from __future__ import annotations

import math
import statistics

from . import _stats

__all__ = ["summarise", "summarise_peer", "fmt", "main_table", "peer_table", "plot", "speed_vs_ours"]


def fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "s":
        if value < 1e-6:
            return f"{value * 1e9:,.0f} ns"
        if value < 1e-3:
            return f"{value * 1e6:,.1f} us" if value < 1e-5 else f"{value * 1e6:,.0f} us"
        if value < 1:
            return f"{value * 1e3:,.2f} ms"
        return f"{value:,.2f} s"
    return f"{value:,.0f} {unit}"


def _r(x: float) -> str:
    """A ratio: two decimals, or three significant digits when small."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.2f}" if abs(x) >= 0.1 else f"{x:.3g}"


def _compact(rounds: list[list[float]]) -> list[list[float]]:
    """Samples rounded to 6 significant digits for storage (far below the noise)."""
    return [[float(f"{x:.6g}") for x in r] for r in rounds]


def _round_medians(rounds: list[list[float]]) -> list[float]:
    return [statistics.median(r) for r in rounds if r]


def summarise(bench, raw: dict, params: tuple[int, int, int]) -> dict:
    floor_rounds = _round_medians(raw["floor"])
    our_rounds = _round_medians(raw["ours"])
    result = {
        "what": bench.what,
        "unit": bench.unit,
        "floor_name": bench.floor,
        "higher_is_better": bench.higher_is_better,
        "params": {"rounds": params[0], "n": params[1], "warmup": params[2]},
        "floor": _stats.summary([x for r in raw["floor"] for x in r]),
        "ours": _stats.summary([x for r in raw["ours"] for x in r]),
        "ratio": _stats.ratio_summary(our_rounds, floor_rounds),
        "rounds": {"floor": floor_rounds, "ours": our_rounds},
        "samples": {"floor": _compact(raw["floor"]), "ours": _compact(raw["ours"])},
    }
    if raw.get("extra"):
        result["extra"] = raw["extra"]
        if bench.describe is not None:
            try:
                result["note"] = bench.describe(raw["extra"])
            except Exception as exc:  # noqa: BLE001 - a note must not lose a run
                result["note"] = f"(note failed: {exc!r})"
    if bench.target is not None:
        desc, check = bench.target
        result["target"] = desc
        result["target_met"] = bool(check(result))
    return result


def summarise_peer(result: dict, peer_result: dict) -> dict:
    """A peer's figures for one workload, with its ratios to the floor and to ours."""
    if "error" in peer_result:
        return {"error": peer_result["error"]}
    rounds = [[x for x in r if x is not None] for r in peer_result["rounds"]]
    values = [x for r in rounds for x in r]
    out = {
        "how": peer_result.get("how", ""),
        "params": peer_result.get("params", {}),
        "summary": _stats.summary(values),
        "rounds": _round_medians(rounds),
        "samples": _compact(rounds),
        "wall_s": peer_result.get("wall_s"),
    }
    if "undetected" in peer_result:
        out["undetected"] = peer_result["undetected"]
        out["detect_timeout"] = peer_result.get("detect_timeout")
        out["attempts"] = sum(len(r) for r in peer_result["rounds"])
    if values:
        med = out["summary"]["median"]
        out["ratio_to_floor"] = med / result["floor"]["median"] if result["floor"].get("median") else math.nan
        out["ours_speedup"] = speed_vs_ours(result, med)
    return out


def speed_vs_ours(result: dict, peer_median: float) -> float:
    """How many times better ours is than the peer (>1: ours is faster)."""
    ours = result["ours"]["median"]
    if result["higher_is_better"]:
        return ours / peer_median if peer_median else math.inf
    return peer_median / ours if ours else math.nan


def _grid(rows: list[tuple]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main_table(results: dict) -> str:
    head = (
        "benchmark",
        "floor",
        "floor median",
        "ours median",
        "ours 95% CI",
        "ours p95",
        "ours p99",
        "ratio [min-max]",
        "target",
    )
    rows = [head]
    for name, r in results.items():
        u = r["unit"]
        ratio = r["ratio"]
        ci = r["ours"]["ci95"]
        target = r.get("target", "")
        if target:
            target += "  ok" if r["target_met"] else "  MISSED"
        rows.append(
            (
                name,
                r["floor_name"],
                fmt(r["floor"]["median"], u),
                fmt(r["ours"]["median"], u),
                f"[{fmt(ci[0], u)}, {fmt(ci[1], u)}]",
                fmt(r["ours"]["p95"], u),
                fmt(r["ours"]["p99"], u),
                f"{_r(ratio['median'])} [{_r(ratio['min'])}-{_r(ratio['max'])}]",
                target,
            )
        )
    return _grid(rows)


def peer_table(results: dict, peers: dict) -> str:
    head = ("workload", "side", "median", "95% CI", "p99", "samples", "ratio to floor", "vs ours")
    rows = [head]
    for name, r in results.items():
        if not r.get("peers"):
            continue
        u = r["unit"]
        f, o = r["floor"], r["ours"]
        p = r["params"]
        rows.append(
            (
                name,
                f"floor: {r['floor_name']}",
                fmt(f["median"], u),
                f"[{fmt(f['ci95'][0], u)}, {fmt(f['ci95'][1], u)}]",
                fmt(f["p99"], u),
                f"{p['rounds']}x{p['n']}",
                "1.00",
                "",
            )
        )
        rows.append(
            (
                "",
                "ours",
                fmt(o["median"], u),
                f"[{fmt(o['ci95'][0], u)}, {fmt(o['ci95'][1], u)}]",
                fmt(o["p99"], u),
                f"{p['rounds']}x{p['n']}",
                _r(r["ratio"]["median"]),
                "",
            )
        )
        for peer, pr in r["peers"].items():
            if "error" in pr:
                rows.append(("", peer, "failed", pr["error"][:60], "", "", "", ""))
                continue
            s = pr["summary"]
            pp = pr.get("params", {})
            samples = f"{pp.get('rounds', '?')}x{pp.get('n', '?')}"
            if s.get("n", 0) == 0:
                rows.append(
                    ("", peer, f"not detected within {pr.get('detect_timeout', '?')} s", "", "", samples, "", "")
                )
                continue
            sp = pr["ours_speedup"]
            vs = f"ours {sp:.1f}x faster" if sp >= 1 else f"{peer} {1 / sp:.1f}x faster"
            if pr.get("undetected"):
                vs += f"; {pr['undetected']}/{pr['attempts']} not detected within {pr['detect_timeout']} s"
            rows.append(
                (
                    "",
                    peer,
                    fmt(s["median"], u),
                    f"[{fmt(s['ci95'][0], u)}, {fmt(s['ci95'][1], u)}]",
                    fmt(s["p99"], u),
                    samples,
                    _r(pr["ratio_to_floor"]),
                    vs,
                )
            )
    lines = [_grid(rows)] if len(rows) > 1 else []
    for peer, meta in peers.items():
        if "skipped" in meta:
            lines.append(f"{peer}: skipped, {meta['skipped']}")
        else:
            left = meta.get("left_behind") or []
            lines.append(
                f"{peer} {meta.get('version', '?')}: started in {meta.get('start_s', math.nan):.1f} s, "
                f"shut down in {meta.get('stop_s', math.nan):.1f} s, {meta.get('processes_seen', '?')} processes seen, "
                + (f"{len(left)} LEFT BEHIND (killed: {left})" if left else "none left behind")
                + (f"; error: {meta['error']}" if meta.get("error") else "")
            )
    return "\n".join(lines)


def plot(report: dict, path: str) -> str | None:
    """A PNG: per benchmark, median (bar) with 95% CI (error bar) and p99
    (marker) for the floor, ours and each peer.  Returns None, or why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[stress]')"
    results = report["results"]
    if not results:
        return "no results to plot"
    cols = min(3, len(results))
    rows = math.ceil(len(results) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    colours = {"floor": "#9e9e9e", "ours": "#1f77b4", "thespian": "#ff7f0e", "ray": "#2ca02c"}
    for ax, (name, r) in zip(axes.flat, results.items()):
        unit = r["unit"]
        scale, shown = (1e3, "ms") if unit == "s" else (1.0, unit)
        if unit == "s" and r["ours"]["median"] < 1e-4:
            scale, shown = 1e6, "us"
        sides = [("floor", r["floor"]), ("ours", r["ours"])]
        for peer, pr in (r.get("peers") or {}).items():
            if "summary" in pr and pr["summary"].get("n"):
                sides.append((peer, pr["summary"]))
        labels = [s for s, _ in sides]
        meds = [s["median"] * scale for _, s in sides]
        lo = [max(0.0, (s["median"] - s["ci95"][0]) * scale) for _, s in sides]
        hi = [max(0.0, (s["ci95"][1] - s["median"]) * scale) for _, s in sides]
        x = range(len(sides))
        ax.bar(x, meds, yerr=[lo, hi], capsize=4, color=[colours.get(s, "#8c564b") for s in labels])
        if not r["higher_is_better"]:
            ax.plot(x, [s["p99"] * scale for _, s in sides], "kx", label="p99")
            ax.legend(loc="upper left", fontsize=7)
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, fontsize=8)
        positive = [m for m in meds if m > 0]
        if positive and max(positive) / min(positive) > 30:
            ax.set_yscale("log")
        ax.set_ylabel(shown + (" (higher is better)" if r["higher_is_better"] else " (lower is better)"), fontsize=8)
        ax.set_title(f"{name}\nours/floor = {r['ratio']['median']:.2f}", fontsize=9)
    for ax in list(axes.flat)[len(results) :]:
        ax.axis("off")
    env = report.get("environment", {})
    title = f"python -m stress{' --quick' if report.get('quick') else ''}  {report.get('when', '')}  {env.get('cpus', '?')} CPUs"
    if report.get("inject_delay_us"):
        title += f"  [TEST HOOK: +{report['inject_delay_us']:g} us per op]"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None
