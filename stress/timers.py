"""Timers: firing lateness, and the cost of arming and cancelling.

Lateness is the time a timer's message is received at its destination (the
benchmark process, blocked in a receive) minus the timer's deadline (the
clock read just before arming, plus the delay), so it counts everything:
the timer server's wait, its send, the destination's wake-up.

* ``timer_lateness``: light load, one timer at a time, delays drawn
  uniformly in 2-10 ms;
* ``timer_lateness_10k_armed``: the same, with 10,000 other timers armed
  (an hour away: the heap is large, nothing else fires);
* ``timer_lateness_10k_firing``: 10,000 timers armed at once, due over
  :data:`SPREAD_S` seconds (5,000 a second), the lateness of each.

Floor of the three: a raw process holding the same deadlines in a heap,
which ``time.sleep``\\ s until each (nanosecond clock, no mailbox) and then
sends one pickled message with a pyzmq PUSH to a PULL socket the benchmark
process blocks on: the operating system's sleep and one ZeroMQ hop, the
least any timer in a separate process can do.  (It takes all its requests
before the first deadline and cannot be cancelled: a floor, not a timer
service.)

* ``timer_arm_cost``: ``send_after`` per call (the timers an hour away),
  floor ``otp.send`` of the same message to a process that drops it:
  arming is one cast to the timer server;
* ``timer_cancel_cost``: ``cancel_timer`` of an armed timer per call,
  floor ``otp.call`` to a gen_server that replies at once: cancelling is
  one call.
"""

from __future__ import annotations

import heapq
import pickle
import random
import time

import zmq

import otp
from otp._timers import TIMER_SERVER, TimerServer, cancel_timer, send_after

from ._bench import Run, alternate, await_exit, benchmark, inject, measure, started, timed_ops
from ._raw import announced_pull_push, start_raw
from .kernel import EchoServer

#: Position of this module's benchmarks in the suite.
ORDER = 15

#: Delays of the light-load timers, seconds.
DELAY_MIN_S, DELAY_MAX_S = 0.002, 0.010
#: Timers of the loaded benchmarks.
LOAD = 10_000
#: Seconds over which the 10,000 timers of ``timer_lateness_10k_firing`` fall due,
#: and the margin before the first (arming them all must end before it).
SPREAD_S = 2.0
MARGIN_S = 1.0
FAR_S = 3600.0
REQUIRES = ("otp._timers:send_after", "otp._timers:TimerServer")
TARGET = (
    "median <= 1 ms, p99 <= 5 ms",
    lambda r: r["ours"]["median"] <= 0.001 and r["ours"]["p99"] <= 0.005,
)


# ------------------------------------------------------------- the floor


def raw_sleeper(requests: str, replies: str, parent: otp.Pid) -> None:
    """The floor: takes ``count`` then ``count`` pickled ``(deadline, tag)``,
    sleeps until each deadline in order and pushes ``tag``; ``0`` ends it."""
    with announced_pull_push(requests, replies, parent) as (pull, push):
        while True:
            count = pickle.loads(pull.recv())
            if count == 0:
                return
            heap = [pickle.loads(pull.recv()) for _ in range(count)]
            heapq.heapify(heap)
            while heap:
                deadline, tag = heapq.heappop(heap)
                wait = deadline - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                push.send(pickle.dumps(tag))


class RawTimers:
    """The benchmark's end of the floor."""

    def __init__(self, node: otp.Node) -> None:
        assert node.info is not None, "the node runs"
        requests = f"ipc://{node.info.dir}/raw-timer-requests"
        replies = f"ipc://{node.info.dir}/raw-timer-replies"
        self.ctx = zmq.Context()
        self.replies = self.ctx.socket(zmq.PULL)
        self.replies.bind(replies)
        self.pid = start_raw(raw_sleeper, requests, replies, otp.self())
        self.requests = self.ctx.socket(zmq.PUSH)
        self.requests.setsockopt(zmq.SNDHWM, 0)
        self.requests.connect(requests)

    def arm(self, deadlines: list[float]) -> None:
        self.requests.send(pickle.dumps(len(deadlines)))
        for i, deadline in enumerate(deadlines):
            self.requests.send(pickle.dumps((deadline, i)))

    def receive(self) -> int:
        return pickle.loads(self.replies.recv())

    def close(self) -> None:
        self.requests.send(pickle.dumps(0))
        for sock in (self.requests, self.replies):
            sock.close(linger=0)
        self.ctx.term()
        await_exit(otp, self.pid)


# ------------------------------------------------------------- helpers


def _timer_server() -> None:
    """The node's timer server, started here if the kernel has none."""
    if otp.whereis(TIMER_SERVER) is None:
        TimerServer.start_link(name=TIMER_SERVER)


def _armed() -> int:
    return otp.ask(TIMER_SERVER, "armed")


def _light_round(rng: random.Random, n: int, raw: RawTimers | None) -> list[float]:
    """Lateness of ``n`` timers armed one at a time."""
    me = otp.self()
    out = []
    for i in range(n):
        delay = rng.uniform(DELAY_MIN_S, DELAY_MAX_S)
        t0 = time.monotonic()
        if raw is None:
            send_after(delay, me, i)
            otp.receive(10)
        else:
            raw.arm([t0 + delay])
            raw.receive()
        now = time.monotonic()
        if raw is None:
            inject()
        out.append(now - t0 - delay)
    return out


def _spread_round(rng: random.Random, n: int, raw: RawTimers | None) -> list[float]:
    """Lateness of each of ``n`` timers armed at once, due over SPREAD_S."""
    me = otp.self()
    start = time.monotonic() + MARGIN_S
    deadlines = [start + rng.uniform(0.0, SPREAD_S) for _ in range(n)]
    if raw is None:
        for i, deadline in enumerate(deadlines):
            send_after(deadline - time.monotonic(), me, i)
    else:
        raw.arm(deadlines)
    if time.monotonic() > start:
        raise AssertionError(f"arming {n} timers took longer than the {MARGIN_S}s margin")
    out = []
    for _ in range(n):
        i = otp.receive(30) if raw is None else raw.receive()
        out.append(time.monotonic() - deadlines[i])
    if raw is None:
        inject(n)
    return out


def _lateness(run: Run, one_round, seed: int) -> dict:
    """Lateness rounds ``one_round(rng, count, raw)`` of the floor (a
    :class:`RawTimers`) and of ours (``raw`` None), one random sequence of
    delays drawn by both in turn."""
    _timer_server()
    raw = RawTimers(run.node)
    rng = random.Random(seed)
    out = measure(lambda c: one_round(rng, c, raw), lambda c: one_round(rng, c, None), run)
    raw.close()
    return out


# ------------------------------------------------------------- benchmarks


@benchmark(
    "timer_lateness",
    unit="s",
    floor="time.sleep to the deadline + pyzmq PUSH (raw process)",
    rounds=5,
    n=200,
    warmup=20,
    quick=(3, 60, 10),
    requires=REQUIRES,
    target=TARGET,
)
def bench_lateness(run: Run) -> dict:
    """send_after(2-10 ms) one at a time: receipt at the destination minus the deadline."""
    return _lateness(run, _light_round, 1)


@benchmark(
    "timer_lateness_10k_armed",
    unit="s",
    floor="time.sleep to the deadline + pyzmq PUSH (raw process)",
    rounds=5,
    n=200,
    warmup=20,
    quick=(3, 60, 10),
    requires=REQUIRES,
    target=TARGET,
)
def bench_lateness_armed(run: Run) -> dict:
    """send_after(2-10 ms) one at a time, with 10,000 other timers armed an hour away."""
    _timer_server()
    me = otp.self()
    background = [send_after(FAR_S, me, "never") for _ in range(LOAD)]
    if _armed() < LOAD:
        raise AssertionError("the background timers are not all armed")
    out = _lateness(run, _light_round, 2)
    for tref in background:
        cancel_timer(tref)
    return out


@benchmark(
    "timer_lateness_10k_firing",
    unit="s",
    floor="the same deadlines: time.sleep + pyzmq PUSH (raw process)",
    rounds=3,
    n=LOAD,
    warmup=1000,
    quick=(2, 2000, 200),
    requires=REQUIRES,
    target=TARGET,
)
def bench_lateness_firing(run: Run) -> dict:
    """10,000 timers armed at once, due over 2 s: the lateness of each."""
    return _lateness(run, _spread_round, 3)


def _sink() -> None:
    while otp.receive() != "stop":
        pass


@benchmark(
    "timer_arm_cost",
    unit="s",
    floor="otp.send of the same message",
    rounds=5,
    n=2000,
    warmup=200,
    quick=(3, 400, 40),
    requires=REQUIRES,
    target=("ratio <= 3", lambda r: r["ratio"]["median"] <= 3),
)
def bench_arm(run: Run) -> dict:
    """send_after per call (timers an hour away), each round's timers cancelled after it."""
    _timer_server()
    sink = otp.spawn(_sink)
    armed: list = []
    message = ("tick", 0)

    def raw(i: int) -> None:
        otp.send(sink, message)

    def ours(i: int) -> None:
        armed.append(send_after(FAR_S, sink, message))

    def ours_round() -> list[float]:
        samples = timed_ops(ours, run.n, ours=True)
        for tref in armed:
            cancel_timer(tref)
        armed.clear()
        return samples

    timed_ops(raw, run.warmup, ours=False)
    timed_ops(ours, run.warmup, ours=True)
    out = alternate(lambda: timed_ops(raw, run.n, ours=False), ours_round, run.rounds)
    otp.send(sink, "stop")
    await_exit(otp, sink)
    return out


@benchmark(
    "timer_cancel_cost",
    unit="s",
    floor="otp.call to a gen_server replying at once",
    rounds=5,
    n=1000,
    warmup=100,
    quick=(3, 200, 20),
    requires=REQUIRES,
    target=("ratio <= 1.5", lambda r: r["ratio"]["median"] <= 1.5),
)
def bench_cancel(run: Run) -> dict:
    """cancel_timer of an armed timer per call (armed before the round, untimed)."""
    _timer_server()
    me = otp.self()
    echo = started(EchoServer.start_link(None))
    pending: list = []

    def raw(i: int) -> None:
        otp.call(echo, i)

    def ours(i: int) -> None:
        if cancel_timer(pending[i]) is False:
            raise AssertionError("an armed timer was not found")

    def ours_round(count: int) -> list[float]:
        pending[:] = [send_after(FAR_S, me, "never") for _ in range(count)]
        _armed()  # the arms are in before the clock starts
        return timed_ops(ours, count, ours=True)

    out = measure(lambda c: timed_ops(raw, c, ours=False), ours_round, run)
    otp.stop(echo)
    return out
