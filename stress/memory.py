"""1,000 processes: memory per process as PSS.

Ours: ``otp.spawn_monitor`` 1,000 processes; each answers one message from
the harness and then waits.  Once all 1,000 have answered, the PSS of each is
read from ``/proc/<pid>/smaps_rollup`` (one sample per process, KiB).

Floor: a bare Python interpreter (``python -c``, importing only ``os`` and
``sys``) forks the same number of children; each writes one byte to a pipe
and blocks.  Once all have written, the PSS of each child is read the same
way.  Both sides have the same number of processes alive when measured, so
shared pages are divided among the same number of sharers.

PSS of a process depends on its siblings (a page shared by k processes
counts 1/k in each), which is why the figure is taken with all 1,000 alive.

A note gives, for :data:`BREAKDOWN_SAMPLE` of our processes, where their
private pages are (median KiB by kind of mapping, from
``/proc/<pid>/smaps``): see stress/README.md, "Memory per process".
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import otp

from ._bench import Run, alternate, benchmark, down_of
from ._pss import MAPPING_KINDS, private_by_mapping, pss_kib, rollup, uss_kib

#: Position of this module's benchmarks in the suite.
ORDER = 20

_FORKER = r"""
import os, sys
n = int(sys.argv[1])
up_r, up_w = os.pipe()
stop_r, stop_w = os.pipe()
kids = []
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        os.close(stop_w)
        os.close(up_r)
        os.write(up_w, b"u")
        os.read(stop_r, 1)  # blocks until the parent closes stop_w
        os._exit(0)
    kids.append(pid)
os.close(up_w)
got = 0
while got < n:
    got += len(os.read(up_r, n - got))
sys.stdout.write(" ".join(map(str, kids)) + "\n")
sys.stdout.flush()
sys.stdin.readline()
os.close(stop_w)
for pid in kids:
    os.waitpid(pid, 0)
"""


#: Processes stopped at a time after the measurement.
TEARDOWN_BATCH = 100
#: Processes whose private pages are broken down by mapping (reading
#: ``smaps`` takes a few milliseconds a process).
BREAKDOWN_SAMPLE = 50


def answer_then_wait() -> None:
    parent = otp.receive()
    otp.send(parent, ("pong", otp.self()))
    otp.receive()  # "stop"


def _floor_round(n: int, extra: dict) -> list[float]:
    t0 = time.perf_counter()
    forker = subprocess.Popen(
        [sys.executable, "-c", _FORKER, str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert forker.stdin is not None and forker.stdout is not None  # both piped
    try:
        kids = [int(x) for x in forker.stdout.readline().split()]
        if len(kids) != n:
            raise RuntimeError(f"the floor's forker started {len(kids)} of {n} children")
        started = time.perf_counter() - t0
        values = [float(pss_kib(pid)) for pid in kids]
        extra.setdefault("floor_parent_pss_kib", []).append(pss_kib(forker.pid))
        extra.setdefault("floor_start_s", []).append(started)
    finally:
        try:
            forker.stdin.write("\n")
            forker.stdin.close()
        except OSError:
            pass
        forker.wait(60)
        forker.stdout.close()
    return values


def _ours_round(node: otp.Node, n: int, extra: dict) -> list[float]:
    me = otp.self()
    t0 = time.perf_counter()
    procs = [otp.spawn_monitor(answer_then_wait) for _ in range(n)]
    spawned = time.perf_counter() - t0
    for pid, _ in procs:
        otp.send(pid, me)
    answered: set[otp.Pid] = set()
    while len(answered) < n:
        msg = otp.receive(30, lambda m: type(m) is tuple and len(m) == 2 and m[0] == "pong")
        answered.add(msg[1])
    all_up = time.perf_counter() - t0
    values = []
    uss = []
    for pid, _ in procs:
        fields = rollup(pid.ospid)
        values.append(float(fields["Pss"]))
        uss.append(uss_kib(fields))
    step = max(1, n // BREAKDOWN_SAMPLE)
    kinds = [private_by_mapping(pid.ospid) for pid, _ in procs[::step][:BREAKDOWN_SAMPLE]]
    breakdown = extra.setdefault("private_kib_by_mapping", {})
    for kind in MAPPING_KINDS:
        private = sorted(k[kind] for k in kinds)
        breakdown.setdefault(kind, []).append(private[len(private) // 2])
    ours_ospids = {pid.ospid for pid, _ in procs}
    others = [p for p in node.os_pids() if p not in ours_ospids]
    overhead = 0
    for p in [*others, node.zygote_ospid, os.getpid()]:
        if p is None:
            continue
        try:
            overhead += pss_kib(p)
        except OSError:
            pass
    extra.setdefault("spawn_s", []).append(spawned)
    extra.setdefault("all_answered_s", []).append(all_up)
    extra.setdefault("uss_median_kib", []).append(sorted(uss)[len(uss) // 2])
    extra.setdefault("node_overhead_pss_kib", []).append(overhead)
    extra.setdefault("node_other_processes", []).append(len(others))
    # Teardown (not measured) in batches: 1,000 simultaneous exits overflow
    # the root's signal port (the kernel then logs "port is not draining"
    # and the DOWN says 'killed' instead of 'normal'); the reasons are kept.
    reasons = extra.setdefault("down_reasons", {})
    for start in range(0, n, TEARDOWN_BATCH):
        batch = procs[start : start + TEARDOWN_BATCH]
        for pid, _ in batch:
            otp.send(pid, "stop")
        refs = {ref for _, ref in batch}
        while refs:
            down = otp.receive(30, down_of(otp, refs))
            refs.discard(down.ref)
            reasons[repr(down.reason)] = reasons.get(repr(down.reason), 0) + 1
    return values


def describe(extra: dict) -> str:
    """One line for the report."""

    def mid(key: str) -> float:
        vals = sorted(extra.get(key) or [float("nan")])
        return vals[len(vals) // 2]

    return (
        f"{extra['processes']:,} processes: total PSS ours {mid('ours_total_pss_mib'):,.0f} MiB "
        f"(mean {mid('ours_mean_pss_kib'):,.0f} KiB/process, USS median {mid('uss_median_kib'):,.0f} KiB) "
        f"vs floor {mid('floor_total_pss_mib'):,.0f} MiB (mean {mid('floor_mean_pss_kib'):,.0f} KiB); "
        f"spawned in {mid('spawn_s'):.1f} s, all answered after {mid('all_answered_s'):.1f} s; "
        f"node overhead (root, zygote, {mid('node_other_processes'):.0f} other node processes) "
        f"{mid('node_overhead_pss_kib') / 1024:,.0f} MiB PSS"
        + _describe_breakdown(extra)
        + (
            f"; DOWN reasons at teardown: {extra['down_reasons']}"
            if set(extra.get("down_reasons", {})) - {"'normal'"}
            else ""
        )
    )


def _describe_breakdown(extra: dict) -> str:
    breakdown = extra.get("private_kib_by_mapping")
    if not breakdown:
        return ""
    parts = []
    for kind in MAPPING_KINDS:
        vals = sorted(breakdown.get(kind) or [0])
        parts.append(f"{kind} {vals[len(vals) // 2]:,.0f}")
    return "; private KiB by mapping (median of a sample): " + ", ".join(parts)


@benchmark(
    "processes_1000_pss",
    unit="KiB",
    floor="bare forked Python",
    rounds=2,
    n=1000,
    warmup=0,
    quick=(1, 1000, 0),
    what="PSS per process with 1,000 processes alive, each having answered a message",
    describe=describe,
)
def bench_memory(run: Run) -> dict:
    """PSS per process with n processes alive, each having answered a message."""
    extra: dict = {"processes": run.n}
    out = alternate(lambda: _floor_round(run.n, extra), lambda: _ours_round(run.node, run.n, extra), run.rounds)
    ours_total = [sum(r) for r in out["ours"]]
    floor_total = [sum(r) for r in out["floor"]]
    extra["ours_total_pss_mib"] = [t / 1024 for t in ours_total]
    extra["floor_total_pss_mib"] = [t / 1024 for t in floor_total]
    extra["ours_mean_pss_kib"] = [t / run.n for t in ours_total]
    extra["floor_mean_pss_kib"] = [t / run.n for t in floor_total]
    out["extra"] = extra
    return out
