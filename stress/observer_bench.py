"""What the observer costs: its page among 10,000 processes, its memory, its
rounds among real processes, and its effect on the kernel's benchmarks.

    python -m stress.observer_bench [--processes 500] [--rows 10000] [--repeat 4] [--pairs 30] [--cpu-seconds 20]
        [--parts rows real paired overhead cpu]

Parts, each on a fresh node (fork start method by default, like the suite):

1. **10,000 rows.**  A collector whose rounds are held off (interval of an
   hour) gets ``--rows`` synthetic rows put into its table (through
   ``otp.sys.replace_state``: 10,000 real processes would need about 30 GB
   here), then the processes page is asked for, sorted by RSS, by name and
   with a search: through the Python API and through HTTP (the web view,
   JSON included).  Target: <= 1 s.  The collector's USS before and after
   says what a row costs.
2. **Real processes.**  ``--processes`` idle processes; rounds at 1 Hz
   while watched: seconds per round, processes sampled per round, rounds
   until every process was sampled once, the page time, the collector's
   USS; then 20 rounds of churn (50 processes exit, 50 start, per round)
   and the USS again (dead rows are dropped: memory stays bounded).
3. **Overhead.**  The suite's own ``call_round_trip`` and
   ``cast_throughput`` functions (``stress/kernel.py``), run here on a node
   without the view and on a node with ``otp.observer.serve()`` and a
   viewer refreshing at 1 Hz (a separate OS process, as a browser would be:
   the event stream, the processes page on every round, the tree on every
   change; with ``--panel``, the default, also a panel on every round, read
   by the web server's runner process for it: an upper bound, a browser
   shows one tab at a time), alternating ``--repeat`` times.  Compared: each run's ratio to
   its own floor (the suite's measure), and the raw medians.  Target:
   <= 2 % change.  Also reported: the CPU the view's three processes used
   during the runs, as a share of one core (what it takes from the
   benchmark whatever the noise of a shared machine).
4. **Paired.**  The same operations on one node with the view open, in
   ``--pairs`` rounds alternating the view frozen (its three processes
   SIGSTOPped) and live, a moment apart: the drift of a shared machine's
   load hits both sides alike, which the separate runs of part 3 cannot
   promise (printed first).  Rounds last about 2 s: a thawed collector runs
   the round its timer asked for while it was stopped, work of the frozen
   side done in the live one, so the figure leans against the view.

5. **CPU.**  A node with the view open and the viewer at 1 Hz, idle
   otherwise, without and with the panel read every round (``--repeat``
   fresh nodes each, ``--cpu-seconds`` of viewing): the CPU seconds per
   second its processes used, each live one of the zygote's session and
   those the zygote reaped (a process spawned per read shows there), and
   the viewer's.  CPU time, not wall time: what a read costs the node
   whatever else loads a shared machine.

Results go to ``stress/results/observer-<timestamp>.json``.  The module is
a script: the suite's discovery imports it and finds no benchmark in it.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
PAGE_TARGET_S = 1.0
PARTS = ["rows", "real", "paired", "overhead", "cpu"]
#: Operations per paired round: about 2 s each, so that the one round the
#: collector owes when it is thawed (its timer fired while it was stopped)
#: weighs little against the rounds it runs in a live window anyway.
CALLS_PER_ROUND = 20_000
CASTS_PER_ROUND = 150_000
OVERHEAD_TARGET = 0.02


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _inject_rows(collector, count: int) -> int:
    """Runs in the collector (``otp.sys.replace_state``): ``count`` rows of
    made-up processes, with values, in its table."""
    from otp._pid import Pid, new_uid
    from otp.observer._table import Row

    table = collector.table
    now = time.time()
    for i in range(count):
        pid = Pid("bench", new_uid(), 10_000_000 + i, 1000 + i)
        row = Row(pid, now - i)
        row.status = "waiting"
        row.queue = i % 17
        row.rss = (i * 7919) % 50_000 * 4096
        row.messages_in = i * 3
        row.messages_out = i * 2
        row.in_rate = float(i % 100)
        row.out_rate = float(i % 50)
        row.current_function = f"bench.worker_{i % 40}"
        row.sampled_at = now
        table.rows[pid] = row
        if i % 20 == 0:
            collector.sampler.names[pid] = f"worker-{i}"
    return collector


def _timed(fn, repeat: int) -> dict:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return {"median_s": _median(samples), "max_s": samples[-1], "n": len(samples)}


def part_rows(rows: int) -> dict:
    import httpx

    import otp
    import otp.observer as observer
    import otp.sys

    out: dict = {"rows": rows}
    with otp.Node(start_method=os.environ.get("OTP_START_METHOD", "fork")):
        collector = observer.collector(observer.Config(interval=3600.0, linger=3600.0))
        observer.refresh()
        before = observer.stats()
        otp.sys.replace_state(collector, lambda c: _inject_rows(c, rows), timeout=60)
        after = observer.stats()
        out["collector_uss_before"] = before.memory
        out["collector_uss_after"] = after.memory
        out["bytes_per_row"] = (after.memory - before.memory) / rows
        out["api"] = {
            "rss_desc": _timed(lambda: observer.processes(sort="rss", descending=True, limit=50), 20),
            "name": _timed(lambda: observer.processes(sort="name", limit=50), 20),
            "search": _timed(lambda: observer.processes(search="worker_3", limit=50), 20),
            "page_200": _timed(lambda: observer.processes(sort="in_rate", descending=True, offset=5000, limit=200), 20),
        }
        server = observer.serve()
        client = httpx.Client(base_url=f"http://127.0.0.1:{server.port}", headers={"X-Observer-Token": server.token})
        total = client.get("/api/processes").json()["total"]
        out["http_total_rows"] = total
        out["http"] = {
            "rss_desc": _timed(lambda: client.get("/api/processes", params={"sort": "rss", "desc": "1"}), 20),
            "search": _timed(lambda: client.get("/api/processes", params={"search": "worker_3"}), 20),
        }
        client.close()
        server.stop()
    worst = max(v["max_s"] for part in ("api", "http") for v in out[part].values())
    out["worst_s"] = worst
    out["target_met"] = worst <= PAGE_TARGET_S
    return out


def _idle():
    import otp

    otp.receive(match=lambda m: m == "stop")


def part_real(processes: int) -> dict:
    import otp
    import otp.observer as observer

    out: dict = {"processes": processes}
    with otp.Node(start_method=os.environ.get("OTP_START_METHOD", "fork")):
        pids = [otp.spawn(_idle) for _ in range(processes)]
        observer.watch(observer.Config(interval=1.0))
        rounds = []
        t0 = time.monotonic()
        while True:
            event = otp.receive(60, lambda m: isinstance(m, observer.ProcessesRefreshed))
            stats = observer.stats()
            rounds.append((stats.last_round_s, stats.sampled_last_round))
            page = observer.processes(sort="pid", limit=1000)
            done = all(r.sampled_at is not None for r in page.rows) and page.total >= processes
            if done or event.round > 60:
                break
        out["seconds_to_sample_all"] = time.monotonic() - t0
        out["rounds_to_sample_all"] = len(rounds)
        out["round_s"] = _median([r[0] for r in rounds])
        out["sampled_per_round"] = _median([r[1] for r in rounds])
        out["page_s"] = _timed(lambda: observer.processes(sort="rss", descending=True), 20)
        out["collector_uss"] = observer.stats().memory
        # churn: dead rows go, memory stays
        for _ in range(20):
            for pid in pids[:50]:
                otp.send(pid, "stop")
            pids = pids[50:] + [otp.spawn(_idle) for _ in range(50)]
            otp.receive(60, lambda m: isinstance(m, observer.ProcessesRefreshed))
        observer.refresh()
        stats = observer.stats()
        out["after_churn"] = {"rows": stats.rows, "collector_uss": stats.memory, "live": len(otp.processes())}
        observer.unwatch()
        for pid in pids:
            otp.send(pid, "stop")
    return out


# ------------------------------------------------------------------ overhead

_VIEWER = r"""
import sys, httpx
base, token, panel = sys.argv[1], sys.argv[2], sys.argv[3]
headers = {"X-Observer-Token": token}
last = {}
with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
    c.get("/api/tree")
    with c.stream("GET", "/events") as events:
        for line in events.iter_lines():
            if line == "event: hello":
                print("ready", flush=True)
            if line == "event: round":
                c.get("/api/processes", params={"sort": "rss", "desc": "1", "limit": "50"})
                if panel:  # as the page does: only the chart points since the last read
                    since = c.get("/api/panel/" + panel, params=last).json().get("at")
                    last = {"since": str(since)} if since else {}
            elif line == "event: tree":
                c.get("/api/tree")
"""
#: The panel the viewer reads on every round (``--panel``).
BENCH_PANEL = "bench"
_WITH_PANEL = [True]


def bench_panel() -> dict:
    """The benchmark's panel provider: a small table and a few values, as
    a library's panel would give (run by the web server's runner)."""
    import otp

    return {
        "tables": {"Here": [{"pid": otp.self(), "n": i} for i in range(20)]},
        "values": {"a": 1.0, "b": 2.0, "c": 3.0},
    }


def _start_view() -> tuple:
    """The web view, the bench panel and a viewer process; (server, viewer)."""
    import otp.observer as observer

    panel = ""
    if _WITH_PANEL[0]:
        observer.add_panel(BENCH_PANEL, "stress.observer_bench:bench_panel")
        panel = BENCH_PANEL
    server = observer.serve()
    viewer = subprocess.Popen(
        [sys.executable, "-c", _VIEWER, f"http://127.0.0.1:{server.port}", server.token, panel],
        stdout=subprocess.PIPE,
        text=True,
    )
    if viewer.stdout is None or viewer.stdout.readline().strip() != "ready":  # its event stream is open
        viewer.terminate()
        viewer.wait(10)
        raise RuntimeError("the viewer did not connect")
    return server, viewer


def _cpu_seconds(ospid: int) -> float:
    """User and system CPU seconds of ``ospid`` so far (0 if it is gone)."""
    try:
        with open(f"/proc/{ospid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_bench(name: str, view: bool) -> dict:
    import otp
    import otp.observer as observer

    from ._bench import Run, discover

    bench = discover()[0][name]
    rounds, n, warmup = bench.params(False)
    with otp.Node(start_method=os.environ.get("OTP_START_METHOD", "fork")) as node:
        viewer = None
        if view:
            server, viewer = _start_view()
        watched: dict[str, int] = {}
        if viewer is not None:
            collector = otp.whereis(observer.COLLECTOR_NAME)
            assert collector is not None
            watched = {"collector": collector.ospid, "web": server.pid.ospid, "viewer": viewer.pid}
        cpu0 = {k: _cpu_seconds(p) for k, p in watched.items()}
        t0 = time.monotonic()
        assert bench.fn is not None
        try:
            result = bench.fn(Run(node, rounds, n, warmup, False))
            wall = time.monotonic() - t0
            cpu = {k: (_cpu_seconds(p) - cpu0[k]) / wall for k, p in watched.items()}
        finally:
            if viewer is not None:
                viewer.terminate()
                viewer.wait(10)
    floor = _median([x for r in result["floor"] for x in r])
    ours = _median([x for r in result["ours"] for x in r])
    return {"floor": floor, "ours": ours, "ratio": ours / floor, "view_cpu_share": cpu}


def _paired(rounds: int) -> dict:
    """The same operations as the suite's call_round_trip and
    cast_throughput, on one node with the view open, in rounds alternating
    the view frozen (its collector, web server and viewer SIGSTOPped: no CPU,
    nothing sent) and live: pairs of rounds a moment apart, so the load of
    other programs on a shared machine hits both sides alike."""
    import signal

    import otp
    import otp.observer as observer

    from ._bench import alternate, timed_ops
    from ._common import REQUEST
    from .kernel import CastCounter, EchoServer

    out: dict = {}
    with otp.Node(start_method=os.environ.get("OTP_START_METHOD", "fork")):
        server, viewer = _start_view()
        try:
            collector = otp.whereis(observer.COLLECTOR_NAME)
            assert collector is not None
            view = [collector.ospid, server.pid.ospid, viewer.pid]

            def freeze(on: bool) -> None:
                for ospid in view:
                    os.kill(ospid, signal.SIGSTOP if on else signal.SIGCONT)

            def frozen(round_: object) -> list[float]:
                freeze(True)
                try:
                    return list(round_())  # type: ignore[operator]
                finally:
                    freeze(False)

            echo = EchoServer.start_link(None)
            assert echo is not None
            call = lambda i: otp.call(echo, REQUEST)  # noqa: E731
            timed_ops(call, 300, ours=False)
            calls = alternate(
                lambda: frozen(lambda: timed_ops(call, 2000, ours=False)),
                lambda: timed_ops(call, 2000, ours=False),
                rounds,
            )
            counter = CastCounter.start_link(None)
            assert counter is not None
            sent = [0]

            def casts() -> list[float]:
                t0 = time.perf_counter()
                for _ in range(CASTS_PER_ROUND):
                    otp.cast(counter, REQUEST)
                sent[0] += CASTS_PER_ROUND
                if otp.call(counter, "count", timeout=120) != sent[0]:
                    raise AssertionError("casts were lost")
                return [CASTS_PER_ROUND / (time.perf_counter() - t0)]

            casts()
            rates = alternate(lambda: frozen(casts), casts, rounds)
        finally:
            viewer.terminate()
            viewer.wait(10)
    for name, result, lower_is_better in (("call_round_trip", calls, True), ("cast_throughput", rates, False)):
        off = _median([x for r in result["floor"] for x in r])
        on = _median([x for r in result["ours"] for x in r])
        per_pair = sorted(_median(b) / _median(a) for a, b in zip(result["floor"], result["ours"]))
        out[name] = {
            "view_frozen": off,
            "view_live": on,
            "change": on / off - 1,
            "worse_by": (on / off - 1) if lower_is_better else (off / on - 1),
            "pair_ratios_median": _median(per_pair),
            "pairs": len(per_pair),
        }
    return out


def _node_cpu(sid: int) -> tuple[float, dict[int, float]]:
    """CPU seconds of a node's processes so far: those of its zygote's
    session that live (by ospid; every thread's run time, in nanoseconds,
    from ``schedstat``: clock ticks are 10 ms, as much as a second of
    viewing costs a process), and apart the total of those the zygote
    reaped (its children's time, ``cutime + cstime``, in ticks)."""
    tck = os.sysconf("SC_CLK_TCK")
    live: dict[int, float] = {}
    reaped = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) != sid:
                continue
            ns = 0
            for task in os.listdir(f"/proc/{entry}/task"):
                with open(f"/proc/{entry}/task/{task}/schedstat") as f:
                    ns += int(f.read().split()[0])
        except OSError:
            continue  # it exited meanwhile: the zygote's cutime has it
        live[int(entry)] = ns / 1e9
        if int(entry) == sid:
            reaped = (int(fields[13]) + int(fields[14])) / tck
    return reaped, live


def _cpu_window(seconds: float, panel: bool) -> dict:
    """A fresh node with the view open and a viewer at 1 Hz (reading the
    bench panel every round if ``panel``), idle otherwise: the CPU its
    processes used per second over ``seconds``, by process."""
    import otp
    import otp.observer as observer

    _WITH_PANEL[0] = panel
    with otp.Node(start_method=os.environ.get("OTP_START_METHOD", "fork")):
        server, viewer = _start_view()
        try:
            collector = otp.whereis(observer.COLLECTOR_NAME)
            assert collector is not None
            with open(f"/proc/{collector.ospid}/stat") as f:
                sid = int(f.read().rsplit(")", 1)[1].split()[3])
            time.sleep(3.0)  # the first reads (a runner's imports) are not the steady state
            reaped0, live0 = _node_cpu(sid)
            viewer0 = _cpu_seconds(viewer.pid)
            t0 = time.monotonic()
            time.sleep(seconds)
            reaped1, live1 = _node_cpu(sid)
            wall = time.monotonic() - t0
            viewer1 = _cpu_seconds(viewer.pid)
        finally:
            viewer.terminate()
            viewer.wait(10)
    named = {"collector": collector.ospid, "web": server.pid.ospid, "zygote": sid}
    per = {k: (live1.get(p, 0.0) - live0.get(p, 0.0)) / wall for k, p in named.items()}
    others = [p for p in live1 if p not in named.values()]
    per["other live"] = sum(live1[p] - live0.get(p, 0.0) for p in others) / wall
    per["reaped"] = (reaped1 - reaped0) / wall
    return {
        "panel": panel,
        "seconds": wall,
        "node_cpu_per_s": sum(per.values()),
        "by_process": per,
        "processes_started": len(set(live1) - set(live0)) / wall,
        "viewer_cpu_per_s": (viewer1 - viewer0) / wall,
    }


def _without_and_with(run: Callable[[bool], dict], repeat: int) -> dict[str, list[dict]]:
    """``run(False)`` and ``run(True)``, alternating ``repeat`` times."""
    runs: dict[str, list[dict]] = {"without": [], "with": []}
    for _ in range(repeat):
        runs["without"].append(run(False))
        runs["with"].append(run(True))
    return runs


def part_cpu(seconds: float, repeat: int) -> dict:
    """CPU seconds per second of viewing a node, without and with a panel
    read every round, alternating ``repeat`` times (CPU time, not wall
    time: a loaded machine slows both alike but does not add to either)."""
    runs = _without_and_with(lambda view: _cpu_window(seconds, view), repeat)
    without = _median([r["node_cpu_per_s"] for r in runs["without"]])
    with_panel = _median([r["node_cpu_per_s"] for r in runs["with"]])
    return {"runs": runs, "without": without, "with": with_panel, "panel_cost_per_s": with_panel - without}


def part_overhead(repeat: int) -> dict:
    out: dict = {}
    for name in ("call_round_trip", "cast_throughput"):
        runs = _without_and_with(functools.partial(_run_bench, name), repeat)
        without = _median([r["ratio"] for r in runs["without"]])
        with_view = _median([r["ratio"] for r in runs["with"]])
        raw_without = _median([r["ours"] for r in runs["without"]])
        raw_with = _median([r["ours"] for r in runs["with"]])
        shares = [sum(r["view_cpu_share"].values()) for r in runs["with"]]
        out[name] = {
            "runs": runs,
            "view_cpu_of_one_core": _median(shares),
            "ratio_without": without,
            "ratio_with": with_view,
            "ratio_change": with_view / without - 1,
            "raw_change": raw_with / raw_without - 1,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress.observer_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=30, help="paired rounds of the view frozen and live")
    parser.add_argument("--parts", nargs="+", default=PARTS, choices=PARTS, help="which parts to run (default: all)")
    parser.add_argument(
        "--panel", action=argparse.BooleanOptionalAction, default=True, help="the viewer reads a panel every round too"
    )
    parser.add_argument("--cpu-seconds", type=float, default=20.0, help="seconds of viewing per run of the cpu part")
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    _WITH_PANEL[0] = args.panel
    report: dict = {"when": datetime.datetime.now().isoformat(timespec="seconds"), "panel": args.panel}
    if "rows" in args.parts:
        report["rows"] = part_rows(args.rows)
        print(json.dumps(report["rows"], indent=1), flush=True)
    if "real" in args.parts:
        report["real"] = part_real(args.processes)
        print(json.dumps(report["real"], indent=1), flush=True)
    if "paired" in args.parts:
        report["paired"] = _paired(args.pairs)
        for name, o in report["paired"].items():
            print(
                f"{name} (paired rounds, view frozen vs live): {o['view_frozen']:.6g} -> {o['view_live']:.6g}, "
                f"worse by {o['worse_by']:+.1%} (median of {o['pairs']} pair ratios {o['pair_ratios_median']:.3f})",
                flush=True,
            )
    if "cpu" in args.parts:
        report["cpu"] = part_cpu(args.cpu_seconds, args.repeat)
        cpu = report["cpu"]
        print(
            f"node CPU per second of viewing: {cpu['without']:.4f} s without a panel, {cpu['with']:.4f} s with one "
            f"read every round ({cpu['panel_cost_per_s'] * 1000:+.1f} ms/s)",
            flush=True,
        )
        _WITH_PANEL[0] = args.panel
    if "overhead" in args.parts:
        report["overhead"] = part_overhead(args.repeat)
        for name, o in report["overhead"].items():
            print(
                f"{name}: ratio to floor {o['ratio_without']:.3f} without the view, {o['ratio_with']:.3f} with it "
                f"({o['ratio_change']:+.1%}); raw median {o['raw_change']:+.1%}; "
                f"the view (collector, web server, viewer) used {o['view_cpu_of_one_core']:.1%} of one core",
                flush=True,
            )
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"observer-{datetime.datetime.now():%Y%m%d-%H%M%S}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1, default=str)
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
