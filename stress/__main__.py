"""Run the benchmarks: ``python -m stress [--quick] [--only NAME ...]``.

Every figure is printed beside its raw floor measured in the same run, with
the ratio (median over rounds, and its spread), and written as JSON under
``stress/results/``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys

import otp

from . import _stats, kernel

TARGETS = {
    # name: (description, check(summary) -> bool)
    "call_round_trip": ("ratio <= 1.5", lambda r: r["ratio"]["median"] <= 1.5),
    "send_throughput": ("ratio >= 0.5", lambda r: r["ratio"]["median"] >= 0.5),
    "spawn_first_reply": ("median <= 5 ms", lambda r: r["ours"]["median"] <= 0.005),
    "sigkill_to_down": ("median <= 5 ms", lambda r: r["ours"]["median"] <= 0.005),
}


def _round_stat(samples: list[float]) -> float:
    return statistics.median(samples)


def summarise(name: str, raw: dict) -> dict:
    floor_rounds = [_round_stat(r) for r in raw["floor"]]
    our_rounds = [_round_stat(r) for r in raw["ours"]]
    result = {
        "unit": raw["unit"],
        "floor_name": raw["floor_name"],
        "higher_is_better": raw.get("higher_is_better", False),
        "floor": _stats.summary([x for r in raw["floor"] for x in r]),
        "ours": _stats.summary([x for r in raw["ours"] for x in r]),
        "ratio": _stats.ratio_summary(our_rounds, floor_rounds),
        "rounds": {"floor": floor_rounds, "ours": our_rounds},
    }
    if name in TARGETS:
        desc, check = TARGETS[name]
        result["target"] = desc
        result["target_met"] = bool(check(result))
    return result


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1e6:,.0f} us" if value < 1e-3 else f"{value * 1e3:,.2f} ms"
    return f"{value:,.0f} {unit}"


def table(results: dict) -> str:
    head = ("benchmark", "floor", "floor median", "ours median", "ours p99", "ratio [min-max]", "target")
    rows = [head]
    for name, r in results.items():
        u = r["unit"]
        ratio = r["ratio"]
        target = r.get("target", "")
        if target:
            target += "  ok" if r["target_met"] else "  MISSED"
        rows.append(
            (
                name,
                r["floor_name"],
                _fmt(r["floor"]["median"], u),
                _fmt(r["ours"]["median"], u),
                _fmt(r["ours"]["p99"], u),
                f"{ratio['median']:.2f} [{ratio['min']:.2f}-{ratio['max']:.2f}]",
                target,
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def environment() -> dict:
    import zmq

    return {
        "python": platform.python_version(),
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "start_method": os.environ.get("OTP_START_METHOD", "forkserver"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    parser.add_argument("--only", nargs="*", choices=sorted(kernel.BENCHMARKS), help="run only these")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args(argv)
    names = args.only or list(kernel.BENCHMARKS)
    results = {}
    with otp.Node(name="stress") as node:
        for name in names:
            fn, rounds, n, warmup = kernel.BENCHMARKS[name]
            if args.quick:
                rounds, n, warmup = 3, max(5, n // 5), max(2, warmup // 5)
            print(f"running {name} ({rounds} rounds x {n}) ...", file=sys.stderr, flush=True)
            results[name] = summarise(name, fn(node, rounds, n, warmup))
    report = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(),
        "quick": args.quick,
        "results": results,
    }
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(args.out, f"kernel-{stamp}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(table(results))
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
