"""Bounded soak: a steady mixed workload, memory per process tracked as PSS.

    python -m stress.soak [--minutes 5] [--bound-kib 2048] [--interval 10]

A node runs, for ``--minutes``:

* ``--servers`` long-lived gen_servers (started by the root);
* one driver process (spawned by the root, as an application's top process
  would be) that loops over ticks of: ``--calls`` ``otp.call`` and
  ``--casts`` ``otp.cast`` spread over the servers, ``--spawns`` short-lived
  processes (``spawn_monitor``, each answers and exits normally), and one
  gen_server started, called and stopped.

Every ``--interval`` seconds the root asks the driver to pause at the end of
its tick (so no short-lived process is alive), waits a moment for the node to
settle (the zygote re-forks its ready processes; not a timed region), reads
the PSS of every process of the node from ``/proc/<pid>/smaps_rollup`` (the
root, the zygote and everything the zygote started), and resumes the driver.

Verdict: for every process alive from the end of the warm-up (``--warmup``
seconds, default a fifth of the run) to the end, growth = median of its last
three samples - median of its first three samples after the warm-up.  The
soak fails (exit 1) if any process's PSS growth exceeds ``--bound-kib``, and
prints every process's growth either way.  The same bound is applied to USS
(its private pages, from the same file): a process's PSS also moves when
*other* processes on the machine start or stop mapping the same files (the
interpreter, libzmq), which can hide a private leak; USS does not.  The series are written as JSON and PNG under
``stress/results/soak-<timestamp>.*``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from collections.abc import Callable

import otp

from ._bench import down_of, started
from ._pss import rollup, uss_kib

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
#: Pause after the driver stopped and before sampling, so the zygote has
#: re-forked its ready processes and the servers have drained their casts.
SETTLE_S = 0.3


class Server(otp.GenServer):
    def init(self, args):
        return 0

    def handle_call(self, request, from_, n):
        return otp.Reply((request, n), n)

    def handle_cast(self, request, n):
        return otp.NoReply(n + 1)


class Churn(otp.GenServer):
    def handle_call(self, request, from_, state):
        return otp.Reply(request, state)


def short_task(parent, i) -> None:
    otp.send(parent, ("done", i))


def driver(servers: list, calls: int, casts: int, spawns: int, root) -> None:
    me = otp.self()
    counts = {"ticks": 0, "calls": 0, "casts": 0, "spawns": 0, "churn": 0}
    payload = {"op": "soak", "payload": "x" * 64}
    k = len(servers)
    while True:
        for i in range(calls):
            otp.call(servers[i % k], payload)
        for i in range(casts):
            otp.cast(servers[i % k], payload)
        refs = set()
        for i in range(spawns):
            refs.add(otp.spawn_monitor(short_task, me, i)[1])
        for _ in range(spawns):
            otp.receive(30, lambda m: type(m) is tuple and len(m) == 2 and m[0] == "done")
        while refs:
            refs.discard(otp.receive(30, down_of(otp, refs)).ref)
        churn = started(Churn.start_link(None))
        otp.call(churn, "hello")
        otp.stop(churn)
        counts["ticks"] += 1
        counts["calls"] += calls
        counts["casts"] += casts
        counts["spawns"] += spawns
        counts["churn"] += 1
        try:
            msg = otp.receive(0, lambda m: type(m) is tuple and len(m) == 2 and m[0] in ("pause", "stop"))
        except otp.Timeout:
            msg = None
        if msg is not None:
            otp.send(root, ("paused", msg[1], dict(counts)))
            if msg[0] == "stop":
                return
            if otp.receive(None, (("resume", msg[1]), ("stop", msg[1])).__contains__)[0] == "stop":
                return


def _node_roles(node: otp.Node) -> dict[int, str]:
    """Names for the node's own processes (kernel supervisor, registry), if the node says."""
    roles: dict[int, str] = {}
    kernel = getattr(node, "kernel", None)
    if kernel is None:
        return roles
    roles[kernel.ospid] = "kernel supervisor"
    try:
        for child in otp.supervisor.which_children(kernel):
            if isinstance(child.pid, otp.Pid):
                roles[child.pid.ospid] = f"kernel: {child.id}"
    except Exception:  # noqa: BLE001 - labels only
        pass
    return roles


def _zygote(node: otp.Node) -> int:
    """The OS pid of the running node's zygote."""
    assert node.zygote_ospid is not None, "the node runs"
    return node.zygote_ospid


def _paused(seq: int) -> Callable[[object], bool]:
    """The receive predicate of the driver's answer to pause ``seq``."""
    return lambda m: type(m) is tuple and len(m) == 3 and m[0] == "paused" and m[1] == seq


def _sample(node: otp.Node, roles: dict[int, str]) -> dict[str, dict]:
    out = {}
    zygote = _zygote(node)
    pids = [os.getpid(), zygote] + [p for p in node.os_pids() if p not in (os.getpid(), zygote)]
    for ospid in pids:
        try:
            fields = rollup(ospid)
        except OSError:
            continue
        label = roles.get(ospid, f"node process {ospid}")
        out[f"{ospid}"] = {"role": label, "pss": fields["Pss"], "uss": uss_kib(fields)}
    return out


def _growth(series: list[float]) -> float:
    if len(series) >= 6:
        return statistics.median(series[-3:]) - statistics.median(series[:3])
    return series[-1] - series[0]


def _plot(report: dict, path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[stress]')"
    fig, ax = plt.subplots(figsize=(10, 5.5))
    times = [s["t"] for s in report["samples"]]
    for ospid, info in report["processes"].items():
        xs = [s["t"] for s in report["samples"] if ospid in s["procs"]]
        ys = [s["procs"][ospid]["pss"] / 1024 for s in report["samples"] if ospid in s["procs"]]
        if len(xs) < 2:
            continue
        ax.plot(xs, ys, marker=".", label=f"{info['role']} ({ospid})")
    ax.axvline(report["warmup_s"], color="grey", linestyle="--", label="end of warm-up")
    ax.set_xlabel("seconds")
    ax.set_ylabel("PSS (MiB)")
    verdict = "PASS" if report["passed"] else "FAIL"
    ax.set_title(
        f"soak {report['minutes']:g} min: {verdict}, max growth PSS {report['max_growth_kib']:+,.0f} KiB, "
        f"USS {report['max_uss_growth_kib']:+,.0f} KiB (bound {report['bound_kib']:,} KiB per process)",
        fontsize=10,
    )
    if times:
        ax.set_xlim(0, max(times) * 1.02)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m stress.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=float, default=5.0, help="duration (default: %(default)s)")
    p.add_argument(
        "--bound-kib",
        type=int,
        default=2048,
        help="largest allowed PSS growth per process after warm-up, KiB (default: %(default)s)",
    )
    p.add_argument("--interval", type=float, default=10.0, help="seconds between samples (default: %(default)s)")
    p.add_argument("--warmup", type=float, help="seconds excluded from the verdict (default: a fifth of the run)")
    p.add_argument("--servers", type=int, default=4, help="long-lived gen_servers (default: %(default)s)")
    p.add_argument("--calls", type=int, default=40, help="calls per tick (default: %(default)s)")
    p.add_argument("--casts", type=int, default=200, help="casts per tick (default: %(default)s)")
    p.add_argument("--spawns", type=int, default=4, help="short-lived processes per tick (default: %(default)s)")
    p.add_argument("--out", default=DEFAULT_OUT, help="directory for the JSON and PNG (default: stress/results)")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG (default: write it)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    duration = args.minutes * 60
    warmup = args.warmup if args.warmup is not None else duration / 5
    interval = min(args.interval, max(1.0, duration / 6))

    samples = []
    counts = {}
    t_start = time.monotonic()
    with otp.Node(name="soak") as node:
        me = otp.self()
        servers = [started(Server.start_link(None)) for _ in range(args.servers)]
        drv = otp.spawn_link(driver, servers, args.calls, args.casts, args.spawns, me)
        roles = {os.getpid(): "root (sampler)", _zygote(node): "zygote", drv.ospid: "driver"}
        roles.update({s.ospid: f"server {i}" for i, s in enumerate(servers)})
        roles.update(_node_roles(node))
        t_start = time.monotonic()
        next_at = t_start
        seq = 0
        while True:
            now = time.monotonic()
            last = now - t_start >= duration
            if now < next_at and not last:
                time.sleep(min(next_at - now, 1.0))  # waiting for the next sample: not a timed region
                continue
            seq += 1
            otp.send(drv, ("pause", seq))
            _, _, counts = otp.receive(120, _paused(seq))
            time.sleep(SETTLE_S)  # let the node settle before sampling (see SETTLE_S)
            t = time.monotonic() - t_start
            procs = _sample(node, roles)
            samples.append({"t": t, "procs": procs, "counts": counts})
            print(
                f"t={t:6.1f}s  {len(procs)} processes  total PSS {sum(x['pss'] for x in procs.values()) / 1024:,.1f} MiB  "
                f"ticks {counts['ticks']:,}  calls {counts['calls']:,}  casts {counts['casts']:,}  spawns {counts['spawns']:,}",
                file=sys.stderr,
                flush=True,
            )
            otp.send(drv, ("stop" if last else "resume", seq))
            if last:
                break
            next_at += interval
        ref = otp.monitor(drv)
        otp.receive(30, lambda m: isinstance(m, otp.DOWN) and m.ref == ref)
        for s in servers:
            otp.stop(s)
    elapsed = time.monotonic() - t_start

    after = [s for s in samples if s["t"] >= warmup] or samples[-1:]
    processes = {}
    for ospid in after[0]["procs"]:
        if all(ospid in s["procs"] for s in after):
            series = [s["procs"][ospid]["pss"] for s in after]
            uss = [s["procs"][ospid]["uss"] for s in after]
            processes[ospid] = {
                "role": after[0]["procs"][ospid]["role"],
                "pss_after_warmup_kib": series[0],
                "pss_end_kib": series[-1],
                "growth_kib": _growth(series),
                "uss_growth_kib": _growth(uss),
            }
    max_growth = max((p["growth_kib"] for p in processes.values()), default=0.0)
    max_uss_growth = max((p["uss_growth_kib"] for p in processes.values()), default=0.0)
    passed = max_growth <= args.bound_kib and max_uss_growth <= args.bound_kib
    report = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "minutes": args.minutes,
        "elapsed_s": elapsed,
        "warmup_s": warmup,
        "interval_s": interval,
        "bound_kib": args.bound_kib,
        "workload": {k: getattr(args, k) for k in ("servers", "calls", "casts", "spawns")},
        "counts": counts,
        "samples": samples,
        "processes": processes,
        "max_growth_kib": max_growth,
        "max_uss_growth_kib": max_uss_growth,
        "passed": passed,
    }

    window = (after[-1]["t"] - after[0]["t"]) / 60 if len(after) > 1 else 0
    print(
        f"\nsoak: {elapsed / 60:.1f} min, {len(samples)} samples every {interval:g} s, warm-up {warmup:.0f} s; "
        f"{counts.get('calls', 0):,} calls, {counts.get('casts', 0):,} casts, {counts.get('spawns', 0):,} spawns and exits, "
        f"{counts.get('churn', 0):,} gen_servers started and stopped"
    )
    rows = [("process", "role", "PSS after warm-up", "PSS at end", "growth", "USS growth")]
    for ospid, pr in sorted(processes.items(), key=lambda kv: -max(kv[1]["growth_kib"], kv[1]["uss_growth_kib"])):
        rows.append(
            (
                ospid,
                pr["role"],
                f"{pr['pss_after_warmup_kib']:,} KiB",
                f"{pr['pss_end_kib']:,} KiB",
                f"{pr['growth_kib']:+,.0f} KiB",
                f"{pr['uss_growth_kib']:+,.0f} KiB",
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(
        f"growth measured over {window:.1f} min after warm-up (median of the last 3 samples - median of the first 3); "
        f"bound {args.bound_kib:,} KiB per process (PSS and USS): "
        + ("PASS" if passed else "FAIL")
        + f" (max PSS growth {max_growth:+,.0f} KiB, max USS growth {max_uss_growth:+,.0f} KiB)"
    )
    for ospid, pr in processes.items():
        worst = max(pr["growth_kib"], pr["uss_growth_kib"])
        if worst > args.bound_kib:
            print(f"  over the bound: {pr['role']} ({ospid}) grew {worst:+,.0f} KiB")

    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(args.out, f"soak-{stamp}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"JSON: {path}")
    if not args.no_plot:
        png = path[: -len(".json")] + ".png"
        why = _plot(report, png)
        print(f"PNG:  {png}" if why is None else f"PNG:  not written ({why})")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
