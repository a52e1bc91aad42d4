"""Run the benchmark suite: ``python -m stress [--quick] [--peers] [--compare BASE.json]``.

Every figure is printed beside its raw floor measured in the same run (rounds
alternate floor and ours), with the ratio; each benchmark runs on a fresh
node after a warm-up.  With ``--peers`` the same workloads then run on
Thespian and Ray (each in its own subprocess, after our node is gone).  The
run is written to ``stress/results/<name>-<timestamp>.json`` with a PNG
beside it.  ``--compare BASE.json`` then reports significant regressions
against an earlier run (see stress/_compare.py for the rule).

Exit status: 0 fine; 1 a regression was found by --compare; 3 a benchmark
or a peer failed (the rest of the suite still ran and was written);
2 bad usage.

Test hook: STRESS_INJECT_DELAY_US=N busy-waits N us per operation of ours
inside the timed region (a deliberately slowed build, for testing --compare).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
import time
import traceback
from typing import Any

from . import _bench, _compare, _report

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def environment() -> dict:
    import zmq

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "start_method": os.environ.get("OTP_START_METHOD", "forkserver"),
    }
    try:
        env["loadavg_at_start"] = list(os.getloadavg())
    except OSError:
        pass
    return env


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m stress", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="fewer samples: a smoke run, about 20 s, 70 s with --peers, on 2 cores (default: off)",
    )
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks, see --list (default: all)")
    p.add_argument(
        "--list", action="store_true", help="list the benchmarks and whether they can run, then exit (default: off)"
    )
    p.add_argument("--rounds", type=int, help="rounds of every benchmark run (default: each benchmark's own)")
    p.add_argument("--n", type=int, help="samples per round of every benchmark run (default: each benchmark's own)")
    p.add_argument(
        "--warmup", type=int, help="warm-up operations of every benchmark run (default: each benchmark's own)"
    )
    p.add_argument(
        "--peers",
        nargs="*",
        choices=["thespian", "ray"],
        help="also run the same workloads on these peers, both if none is named; a peer not installed is "
        "skipped (default: no peers)",
    )
    p.add_argument("--out", default=DEFAULT_OUT, help="directory for the JSON and PNG (default: stress/results)")
    p.add_argument("--name", help="file name prefix (default: 'stress' or 'stress-quick')")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG (default: write it)")
    p.add_argument(
        "--compare",
        metavar="BASE.json",
        help="report significant regressions against this run; exit 1 if any (default: no comparison)",
    )
    p.add_argument(
        "--against",
        metavar="NEW.json",
        help="with --compare: compare this file instead of running anything (default: run the suite)",
    )
    p.add_argument(
        "--min-change",
        type=float,
        default=_compare.DEFAULT_MIN_CHANGE,
        help="smallest relative change --compare reports (default: %(default)s = 10%%)",
    )
    p.add_argument(
        "--metric",
        choices=list(_compare.METRICS),
        default="guarded",
        help="--compare rule: 'guarded' (our figure significantly worse and ours/floor worse too), "
        "'ours' (our figure only), 'ratio' (ours/floor per round only); see stress/README.md (default: %(default)s)",
    )
    return p


def _load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _do_compare(base_path: str, new: dict, args) -> int:
    base = _load(base_path)
    rows = _compare.compare(base, new, args.min_change, args.metric)
    print(f"\nComparison with {base_path}:")
    if bool(base.get("quick")) != bool(new.get("quick")):
        print("note: one run is --quick and the other is not (different sample counts)")
    if base.get("inject_delay_us") or new.get("inject_delay_us"):
        print(
            f"note: test hook active (base {base.get('inject_delay_us', 0):g} us, new {new.get('inject_delay_us', 0):g} us per op)"
        )
    print(_compare.compare_table(rows, args.min_change, args.metric))
    regressions = [r["name"] for r in rows if r["verdict"] == "REGRESSION"]
    if regressions:
        print(f"REGRESSIONS: {', '.join(regressions)}")
        return 1
    print("no significant regression")
    return 0


def _list(benches: dict, broken: dict) -> None:
    for name, b in benches.items():
        why = _bench.availability(b)
        state = "ready" if why is None else f"not available yet: {why}"
        params = "" if b.planned else f"  [{b.rounds}x{b.n}, warmup {b.warmup}; quick {b.quick[0]}x{b.quick[1]}]"
        print(f"{name:28} {b.what}{params}\n{'':28} floor: {b.floor or '-'}; peers: {b.peer or '-'}; {state}")
    for mod, err in broken.items():
        print(f"{mod}: not available yet (the module does not import: {err})")


_NUMBER_LIST = re.compile(r"\[\s*(-?[0-9][-+0-9.eE]*(?:,\s*-?[0-9][-+0-9.eE]*)*)\s*\]")


def _dumps(report: dict) -> str:
    """JSON, indented, with lists of numbers (the samples) on one line each."""
    text = json.dumps(report, indent=1)
    return _NUMBER_LIST.sub(lambda m: "[" + re.sub(r"\s+", "", m.group(1)).replace(",", ", ") + "]", text)


def _unique_path(out: str, name: str, ext: str, stamp: str) -> str:
    path = os.path.join(out, f"{name}-{stamp}{ext}")
    k = 2
    while os.path.exists(path):
        path = os.path.join(out, f"{name}-{stamp}-{k}{ext}")
        k += 1
    return path


def _leftover_processes() -> list[int]:
    from ._peers import _descendants, _proc_key

    return sorted(p for p in _descendants(os.getpid()) if _proc_key(p) is not None)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.against:
        if not args.compare:
            _parser().error("--against needs --compare")
        return _do_compare(args.compare, _load(args.against), args)

    benches, broken = _bench.discover()
    if args.list:
        _list(benches, broken)
        return 0
    names = list(benches)
    if args.only:
        unknown = [n for n in args.only if n not in benches]
        if unknown:
            _parser().error(f"unknown benchmark(s) {unknown}; known: {', '.join(benches)}")
        names = [n for n in names if n in args.only]

    import otp

    started = time.perf_counter()
    when = datetime.datetime.now(datetime.timezone.utc)
    env = environment()
    print(
        f"python -m stress{' --quick' if args.quick else ''}: {env['cpus']} CPUs, Python {env['python']}, "
        f"libzmq {env['libzmq']}, start method {env['start_method']}, load average {env.get('loadavg_at_start', '?')}",
        file=sys.stderr,
    )
    if _bench.INJECT_DELAY_US:
        print(
            f"TEST HOOK ACTIVE: {_bench.INJECT_ENV}={_bench.INJECT_DELAY_US:g}: every operation of ours is slowed",
            file=sys.stderr,
        )
    results: dict = {}
    skipped: dict = {}
    failed: dict = {}
    for name in names:
        b = benches[name]
        why = _bench.availability(b)
        if why is not None:
            skipped[name] = why
            print(f"{name}: not available yet ({why})", file=sys.stderr, flush=True)
            continue
        assert b.fn is not None, "a planned benchmark is never available"
        rounds, n, warmup = b.params(args.quick)
        rounds = args.rounds or rounds
        n = args.n or n
        warmup = args.warmup if args.warmup is not None else warmup
        print(f"running {name} ({rounds} rounds x {n}, warmup {warmup}) ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            with otp.Node(name=f"stress-{name}") as node:
                raw = b.fn(_bench.Run(node=node, rounds=rounds, n=n, warmup=warmup, quick=args.quick))
            results[name] = _report.summarise(b, raw, (rounds, n, warmup))
            results[name]["wall_s"] = time.perf_counter() - t0
        except (Exception, otp.ProcessExit) as exc:  # noqa: BLE001 - reported; the suite goes on
            failed[name] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            print(f"{name}: FAILED: {failed[name]}\n{traceback.format_exc()}", file=sys.stderr, flush=True)
    for mod, err in broken.items():
        skipped[mod] = f"the module does not import: {err}"
        print(f"{mod}: not available yet (the module does not import: {err})", file=sys.stderr)

    peers_meta: dict = {}
    if args.peers is not None:
        from . import _peers

        wanted = args.peers or list(_peers.PEERS)
        workloads = {}
        for name, r in results.items():
            b = benches[name]
            if b.peer:
                p = r["params"]
                workloads[b.peer] = (p["rounds"], p["n"], p["warmup"], args.quick)
        by_workload = {benches[name].peer: name for name in results if benches[name].peer}
        for peer, res in _peers.run_peers(wanted, workloads).items():
            meta = {k: v for k, v in res.items() if k != "workloads"}
            peers_meta[peer] = meta
            for workload, wres in (res.get("workloads") or {}).items():
                bench_name = by_workload.get(workload)
                if bench_name is None:
                    continue
                wres = dict(wres)
                wres.setdefault("how", (res.get("how") or {}).get(workload, ""))
                results[bench_name].setdefault("peers", {})[peer] = _report.summarise_peer(results[bench_name], wres)
            if res.get("error"):
                failed[f"peer:{peer}"] = res["error"]
            for workload, wres in (res.get("workloads") or {}).items():
                if "error" in wres:
                    failed[f"peer:{peer}:{workload}"] = wres["error"]

    wall = time.perf_counter() - started
    report = {
        "suite": "stress",
        "format": 2,
        "when": when.isoformat(timespec="seconds"),
        "environment": env,
        "quick": args.quick,
        "argv": sys.argv[1:] if argv is None else list(argv),
        "inject_delay_us": _bench.INJECT_DELAY_US,
        "results": results,
        "skipped": skipped,
        "failed": failed,
        "peers": peers_meta,
        "wall_s": wall,
    }

    print()
    if results:
        print(_report.main_table(results))
    for name, r in results.items():
        if r.get("note"):
            print(f"  {name}: {r['note']}")
    for name, why in skipped.items():
        print(f"  {name}: not available yet ({why})")
    for name, why in failed.items():
        print(f"  {name}: FAILED ({why})")
    if args.peers is not None:
        table = _report.peer_table(results, peers_meta)
        print("\nPeers (same workloads, same run):\n" + (table or "no peer results"))

    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = args.name or ("stress-quick" if args.quick else "stress")
    path = _unique_path(args.out, name, ".json", stamp)
    leftovers = _leftover_processes()
    if leftovers:
        report["left_behind"] = leftovers
        print(f"WARNING: processes left behind by the run: {leftovers}")
    with open(path, "w") as f:
        f.write(_dumps(report))
    print(f"\nJSON: {path}")
    if not args.no_plot:
        png = path[: -len(".json")] + ".png"
        why = _report.plot(report, png)
        print(f"PNG:  {png}" if why is None else f"PNG:  not written ({why})")
    print(f"wall time: {wall:.1f} s")

    status = 3 if failed else 0
    if args.compare:
        if _do_compare(args.compare, report, args):
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
