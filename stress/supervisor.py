"""Supervisor restart latency: SIGKILL of a child -> the restarted child answering.

Ours: a one_for_one ``otp.Supervisor`` with one gen_server child (intensity
high enough never to give up).  The child's ``init`` tells the harness its
pid.  Timed: ``os.kill(child, SIGKILL)`` until the restarted child has
announced itself *and* answered an ``otp.call``.

Floor: the same thing without a runtime: the harness is the supervisor of a
forked child; SIGKILL, wait for its pidfd, reap it, fork the replacement,
which writes one byte to a pipe; timed until that byte is read.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import time

import otp

from ._bench import Run, benchmark, inject, measure_each

#: Position of this module's benchmarks in the suite.
ORDER = 30

#: Pause between samples so the supervisor and the zygote (embryos) are idle
#: again; outside the timed region.
SETTLE_S = 0.02


class QuietSupervisor(otp.Supervisor):
    """one_for_one over the given child, never giving up.  Its error reports
    (one per kill, as OTP's supervisor reports) are still formatted and
    written, to /dev/null instead of the terminal: the same work, no noise."""

    def init(self, spec):
        log = logging.getLogger("otp")
        log.propagate = False
        log.addHandler(logging.StreamHandler(open(os.devnull, "w")))  # noqa: SIM115 - lives as long as the process
        return otp.SupFlags(strategy="one_for_one", intensity=1_000_000, period=1), [spec]


class Child(otp.GenServer):
    def init(self, harness):
        otp.send(harness, ("child_up", otp.self()))
        return harness

    def handle_call(self, request, from_, state):
        return otp.Reply(request, state)


def _floor_once() -> float:
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(r, 1)  # the first child just waits to be killed
        os._exit(0)
    fd = os.pidfd_open(child)
    time.sleep(SETTLE_S)  # settle: outside the timed region
    t0 = time.perf_counter()
    os.kill(child, signal.SIGKILL)
    select.select([fd], [], [], 10)
    os.waitpid(child, 0)
    again = os.fork()
    if again == 0:
        os.write(w, b"u")
        os._exit(0)
    os.read(r, 1)
    dt = time.perf_counter() - t0
    os.waitpid(again, 0)
    for x in (fd, r, w):
        os.close(x)
    return dt


@benchmark(
    "restart_sigkill_to_answer",
    unit="s",
    floor="SIGKILL -> pidfd -> fork + pipe byte",
    rounds=5,
    n=30,
    warmup=3,
    quick=(3, 8, 2),
    requires=("otp:Supervisor", "otp:child_spec"),
    what="SIGKILL of a supervised gen_server until its restarted successor answers a call",
)
def bench_restart(run: Run) -> dict:
    """SIGKILL of a supervised gen_server until its restarted successor answers a call."""
    me = otp.self()
    spec = otp.child_spec("child", start=(Child.start_link, (me,)), restart="permanent")
    sup = QuietSupervisor.start_link(spec)
    current = otp.receive(10, lambda m: type(m) is tuple and len(m) == 2 and m[0] == "child_up")[1]

    def ours_once() -> float:
        nonlocal current
        time.sleep(SETTLE_S)  # settle: outside the timed region
        old = current
        t0 = time.perf_counter()
        os.kill(old.ospid, signal.SIGKILL)
        msg = otp.receive(10, lambda m: type(m) is tuple and len(m) == 2 and m[0] == "child_up" and m[1] != old)
        current = msg[1]
        otp.call(current, "ping")
        inject()
        return time.perf_counter() - t0

    out = measure_each(_floor_once, ours_once, run)
    otp.unlink(sup)
    otp.exit(sup, "shutdown")
    ref = otp.monitor(sup)
    otp.receive(30, lambda m: isinstance(m, otp.DOWN) and m.ref == ref)
    return out
