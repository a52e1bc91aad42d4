"""1,000 workers under one dynamic supervisor, then a bounded kill storm.

    python -m stress.storm [--workers 1000] [--kills 300] [--wave 25] [--quick]

Steps, on one node (fork start method by default, like the suite):

1. **Up.** A ``DynamicSupervisor`` (intensity ``kills + wave``, period 60 s,
   so the storm stays within it) starts ``--workers`` gen_server workers
   with ``start_child``; timed until every worker has answered an
   ``otp.call`` (``otp.multi_call`` from one asking process per 1,000
   workers, see :data:`ASK_PER_PROCESS`).  Target: 10 s.  Then the PSS of
   the workers and of the rest of the node, and the descriptors of the
   supervisor and of a worker.
2. **Storm.** ``--kills`` SIGKILLs in waves of ``--wave`` random running
   workers; after each wave the script waits for the supervisor's
   ``'started'`` event of every victim (no sleeping, no polling), timing
   each wave from the first kill to the last replacement started.
3. **Whole again.** ``count_children`` says ``--workers`` active;
   ``which_children`` lists only live OS processes, none of them a victim;
   every worker answers a call again.
4. **No leak.** After the supervisor is shut down, the node's OS processes
   are exactly those it had before step 1 (the zygote's list, checked
   against ``/proc``), none of the workers' OS pids is alive, and the root
   and the zygote hold no more descriptors than before (within
   :data:`FD_SLACK`).

A node needs about four pids per worker (each OTP process is four tasks);
the script warns when ``--workers`` needs more than ``kernel.pid_max``.

Exit 0 when 3 and 4 hold (the timing target is reported, not enforced);
1 otherwise.  Results go to ``stress/results/storm-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import resource
import signal
import statistics
import sys
import time
from collections.abc import Callable

import otp
from otp import supervisor as sup_api
from otp._oslib import fd_readable, proc_state  # the kernel's own pidfd and /proc readers

from ._pss import rollup, uss_kib
from ._stats import percentile

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
UP_TARGET_S = 10.0
#: Seconds a process that was reported dead may take to leave the OS.
EXIT_GRACE_S = 5.0
#: Descriptors the root or the zygote may hold after the run beyond what it
#: held before (peer sockets within their cap, not yet closed as idle).
FD_SLACK = 600


class Worker(otp.GenServer):
    def init(self, index):
        return index

    def handle_call(self, request, from_, index):
        return otp.Reply((index, os.getpid()), index)


def _alive(ospid: int) -> bool:
    state = proc_state(ospid)
    return state is not None and state[0] not in ("Z", "X")


def _still_alive(ospids: set, grace: float) -> list:
    """Those of ``ospids`` still running after ``grace`` seconds, waited for
    by pidfd.  A process that has sent its exit notices (so its supervisor
    and monitors already saw it die) may still be closing its sockets."""
    deadline = time.monotonic() + grace
    alive = []
    for ospid in sorted(ospids):
        try:
            fd = os.pidfd_open(ospid)
        except ProcessLookupError:
            continue
        try:
            if not fd_readable(fd, max(0.0, deadline - time.monotonic())):
                alive.append(ospid)
        finally:
            os.close(fd)
    return alive


def _running(sup) -> list:
    return [c.pid for c in sup_api.which_children(sup) if isinstance(c.pid, otp.Pid)]


def _descriptors(ospid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{ospid}/fd"))
    except OSError:
        return None


def _tasks(ospid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{ospid}/task"))
    except OSError:
        return 0


def _memory(ospids: list) -> dict:
    """Total PSS of ``ospids`` (MiB), and median PSS and USS per process (KiB)."""
    pss, uss = [], []
    for ospid in ospids:
        try:
            fields = rollup(ospid)
        except OSError:
            continue
        pss.append(fields["Pss"])
        uss.append(uss_kib(fields))
    if not pss:
        return {"total_pss_mib": 0.0, "median_pss_kib": 0, "median_uss_kib": 0, "processes": 0}
    return {
        "total_pss_mib": sum(pss) / 1024,
        "median_pss_kib": statistics.median(pss),
        "median_uss_kib": statistics.median(uss),
        "processes": len(pss),
    }


def _pid_limit_check(workers: int) -> str | None:
    """Why this machine cannot hold ``workers`` workers, if it cannot: each
    OTP process is 4 tasks (main thread, signal thread, libzmq's I/O and
    reaper threads), each taking a pid."""
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            pid_max = int(f.read())
    except (OSError, ValueError):
        return None
    if 4 * workers > pid_max:
        return f"{workers} workers need about {4 * workers} pids (4 tasks each); kernel.pid_max is {pid_max}"
    return None


#: Workers one asking process calls.  A process keeps a watch (a pidfd) and
#: a socket (two descriptors) on each server it calls while it calls it (see
#: otp._links.call_peer), and one multi_call holds them for every server it
#: waits for, so the root asking 10,000 workers at once would hold 30,000
#: descriptors; each asker holds its share and releases it when it exits.
ASK_PER_PROCESS = 1000


def _ask(pids: list, timeout: float, parent: otp.Pid) -> None:
    answers = otp.multi_call([(pid, "ping") for pid in pids], timeout=timeout)
    otp.send(parent, ("answered", sum(1 for status, _ in answers if status == "ok")))


def _all_answer(pids: list, timeout: float) -> int:
    ok = 0
    me = otp.self()
    for start in range(0, len(pids), ASK_PER_PROCESS):
        _, ref = otp.spawn_monitor(_ask, pids[start : start + ASK_PER_PROCESS], timeout, me)
        ok += otp.receive(timeout + 30, lambda m: type(m) is tuple and m[0] == "answered")[1]
        otp.receive(30, _down_of(ref))
    return ok


def _down_of(ref: otp.Ref) -> Callable[[object], bool]:
    return lambda m: isinstance(m, otp.DOWN) and m.ref == ref


def run(workers: int, kills: int, wave: int, seed: int) -> dict:
    rng = random.Random(seed)
    report: dict = {"workers": workers, "kills": kills, "wave": wave}
    with otp.Node(start_method=os.environ.get("OTP_START_METHOD", "fork")) as node:
        otp.trap_exit(True)
        before = set(node.os_pids(embryos=False))
        kernel_ospids = {"root": os.getpid(), "zygote": node.zygote_ospid}
        fds_before = {name: _descriptors(ospid) for name, ospid in kernel_ospids.items() if ospid}
        sup = otp.DynamicSupervisor.start_link(intensity=kills + wave, period=60)
        sup_api.subscribe(sup)
        t0 = time.perf_counter()
        pids: list[otp.Pid] = []
        start_rate = []
        for i in range(workers):
            pid = sup_api.start_child(sup, otp.child_spec(i, start=(Worker.start_link, (i,))))
            assert pid is not None  # start_link never answers ignore
            pids.append(pid)
            if (i + 1) % 1000 == 0:
                start_rate.append(round((i + 1) / (time.perf_counter() - t0), 1))
        started = time.perf_counter() - t0
        answered = _all_answer(pids, 60)
        report["up_s"] = time.perf_counter() - t0
        report["start_child_s"] = started
        report["start_rate_per_1000"] = start_rate  # workers/s from the start, at each thousand
        report["answered"] = answered
        report["memory"] = {
            "workers": _memory([pid.ospid for pid in pids]),
            "node": _memory([p for p in node.os_pids() if p not in {pid.ospid for pid in pids}] + [os.getpid()]),
        }
        report["descriptors"] = {
            "limit": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
            "supervisor": _descriptors(sup.ospid),
            "worker_median": statistics.median(_descriptors(pid.ospid) or 0 for pid in pids[:: max(1, workers // 50)]),
            "before": fds_before,
        }
        report["tasks_per_worker"] = _tasks(pids[0].ospid)
        first_ospids = {pid.ospid for pid in pids}

        # The storm: waves of SIGKILL, each followed by every replacement.
        # Dynamic children have no ids in which_children (OTP: undefined);
        # the supervisor's events carry the spec id, which tracks them.
        current = dict(enumerate(pids))
        wave_s, killed_ospids = [], set()
        remaining = kills
        while remaining > 0:
            victims = rng.sample(sorted(current), min(wave, remaining))
            w0 = time.perf_counter()
            for index in victims:
                os.kill(current[index].ospid, signal.SIGKILL)
                killed_ospids.add(current[index].ospid)
            pending = {index: current[index] for index in victims}
            while pending:
                msg = otp.receive(30, lambda m: type(m) is tuple and m[0] == "$supervisor")
                if msg[2] == "started":
                    current[msg[3]] = msg[4]
                    if msg[3] in pending and msg[4] != pending[msg[3]]:
                        del pending[msg[3]]
                elif msg[2] == "shutdown":
                    raise RuntimeError(f"the supervisor gave up: {msg[3:]!r}")
            wave_s.append(time.perf_counter() - w0)
            remaining -= len(victims)
        report["wave_s"] = wave_s

        # Whole again?
        counts = sup_api.count_children(sup)
        running = _running(sup)
        live = [pid for pid in running if _alive(pid.ospid)]
        report["after"] = {
            "active": counts["active"],
            "listed_live": len(live),
            "victims_listed": sum(1 for pid in running if pid.ospid in killed_ospids),
            "answered": _all_answer(list(running), 60),
        }
        all_ospids = first_ospids | killed_ospids | {pid.ospid for pid in running}

        otp.unlink(sup)
        ref = otp.monitor(sup)
        otp.exit(sup, "shutdown")
        otp.receive(120, lambda m: isinstance(m, otp.DOWN) and m.ref == ref)
        after = set(node.os_pids(embryos=False))
        report["leaked"] = {
            "node_processes_added": _still_alive(after - before, EXIT_GRACE_S),
            "worker_ospids_alive": _still_alive({p for p in all_ospids if _alive(p)}, EXIT_GRACE_S),
        }
        fds_after = {name: _descriptors(ospid) for name, ospid in kernel_ospids.items() if ospid}
        report["descriptors"]["after"] = fds_after
        # The root keeps a few sockets it opened during the run (peer sockets
        # under their cap, closed when idle); anything near the worker count
        # is a leak.
        grown = {name: (fds_after.get(name) or 0) - (fds_before[name] or 0) for name in fds_before if fds_before[name]}
        report["leaked"]["descriptors"] = {name: n for name, n in grown.items() if n > FD_SLACK}
    whole = report["after"]
    report["ok"] = (
        report["answered"] == workers
        and whole["active"] == workers
        and whole["listed_live"] == workers
        and whole["victims_listed"] == 0
        and whole["answered"] == workers
        and not report["leaked"]["node_processes_added"]
        and not report["leaked"]["worker_ospids_alive"]
        and not report["leaked"]["descriptors"]
    )
    return report


def _print(report: dict) -> None:
    waves = report["wave_s"]
    mem, fds = report["memory"], report["descriptors"]
    per_kill = [w / report["wave"] for w in waves]
    rows = [
        (
            "workers up and answering",
            f"{report['up_s']:.2f} s",
            f"target <= {UP_TARGET_S:.0f} s",
            report["up_s"] <= UP_TARGET_S,
        ),
        ("  of which start_child x N", f"{report['start_child_s']:.2f} s", "", None),
        (
            "PSS: workers, node",
            f"{mem['workers']['total_pss_mib']:,.0f} MiB ({mem['workers']['median_pss_kib']:,.0f} KiB median), "
            f"{mem['node']['total_pss_mib']:,.0f} MiB",
            "",
            None,
        ),
        (
            "descriptors",
            f"supervisor {fds['supervisor']}, worker {fds['worker_median']:.0f}, limit {fds['limit'][0]}",
            "",
            None,
        ),
        ("kills", f"{report['kills']} in {len(waves)} waves of {report['wave']}", "", None),
        (
            "wave: kill -> all replaced",
            f"median {statistics.median(waves) * 1000:.0f} ms, p95 {percentile(sorted(waves), 95) * 1000:.0f} ms",
            "",
            None,
        ),
        ("  per killed worker", f"median {statistics.median(per_kill) * 1000:.1f} ms", "", None),
        (
            "active after the storm",
            str(report["after"]["active"]),
            f"= {report['workers']}",
            report["after"]["active"] == report["workers"],
        ),
        (
            "listed and alive",
            str(report["after"]["listed_live"]),
            "all",
            report["after"]["listed_live"] == report["workers"],
        ),
        (
            "answering after the storm",
            str(report["after"]["answered"]),
            "all",
            report["after"]["answered"] == report["workers"],
        ),
        (
            "leaked node processes",
            str(len(report["leaked"]["node_processes_added"])),
            "0",
            not report["leaked"]["node_processes_added"],
        ),
        (
            "descriptors leaked",
            str(report["leaked"]["descriptors"] or 0),
            "0",
            not report["leaked"]["descriptors"],
        ),
        (
            "worker OS pids still alive",
            str(len(report["leaked"]["worker_ospids_alive"])),
            "0",
            not report["leaked"]["worker_ospids_alive"],
        ),
    ]
    for name, value, target, ok in rows:
        mark = "" if ok is None else ("ok" if ok else "MISS")
        print(f"{name:<28} {value:<40} {target:<16} {mark}")
    print("verdict:", "whole, no leak" if report["ok"] else "FAILED")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m stress.storm", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=1000, help="workers under the supervisor (default: %(default)s)")
    ap.add_argument("--kills", type=int, default=300, help="SIGKILLs in the storm (default: %(default)s)")
    ap.add_argument("--wave", type=int, default=25, help="kills per wave (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the choice of victims (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="200 workers, 50 kills (default: off)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="directory for the JSON (default: stress/results)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.quick:
        args.workers, args.kills = 200, 50
    if min(args.workers, args.kills, args.wave) < 1:
        ap.error("--workers, --kills and --wave must be positive")
    limit = _pid_limit_check(args.workers)
    if limit:
        print(f"warning: {limit}: the run will fail to fork", file=sys.stderr)
    report = run(args.workers, args.kills, args.wave, args.seed)
    _print(report)
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(args.out, f"storm-{stamp}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print("JSON:", path)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
