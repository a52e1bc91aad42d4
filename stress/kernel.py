"""Kernel benchmarks, each side by side with its raw floor in the same run.

* call round trip: raw pyzmq DEALER/ROUTER (pickled request and reply)
  vs ``otp.call`` to a gen_server;
* send throughput: raw PUSH/PULL, one pickled message per frame, vs
  ``otp.send`` to a counting process;
* cast throughput: the same raw PUSH/PULL floor vs ``otp.cast`` to a
  gen_server that counts casts, ended by one ``otp.call`` that returns the
  count (so the figure covers delivery and handling, not just queueing);
* spawn + first reply: ``otp.spawn`` of a function that messages its parent,
  until the parent has that message; floor: ``os.fork`` of a process that
  writes one byte to a pipe (no interpreter start, no sockets);
* spawn burst: the same, back to back, as processes per second;
* SIGKILL -> DOWN: ``os.kill(SIGKILL)`` until the monitor's DOWN is
  received; floor: SIGKILL until a pidfd of the victim is readable.

Raw servers run inside processes started with ``otp.spawn`` (each makes its
own zmq context), so both sides pay for the same kind of process.  Rounds
alternate floor and ours so machine drift hits both.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import time

import zmq

import otp

from ._bench import Run, await_down, await_exit, benchmark, down_of, inject, measure, measure_each, measure_ops, started
from ._common import REQUEST, SPAWN_SETTLE_S
from ._raw import announced_pull_push, drain_batches, raw_router_server, start_raw

#: Position of this module's benchmarks in the suite.
ORDER = 10


# ------------------------------------------------------------- processes


def raw_pull_sink(endpoint: str, reply_endpoint: str, parent: otp.Pid) -> None:
    with announced_pull_push(endpoint, reply_endpoint, parent) as (pull, push):
        drain_batches(pull, push.send, b"done")


def otp_sink() -> None:
    while True:
        msg = otp.receive()
        if msg == "stop":
            return
        sender, n = msg
        for _ in range(n):
            otp.receive()
        otp.send(sender, "done")


class EchoServer(otp.GenServer):
    def handle_call(self, request, from_, state):
        return otp.Reply(request, state)


class CastCounter(otp.GenServer):
    def init(self, args):
        return 0

    def handle_cast(self, request, count):
        return otp.NoReply(count + 1)

    def handle_call(self, request, from_, count):
        return otp.Reply(count, count)


class CastRounds:
    """Rounds of ``count`` ``otp.cast`` of ``message`` to a :class:`CastCounter`,
    each closed by one ``otp.call`` for its count (checked against every cast
    sent so far): casts per second, the test hook's delay included."""

    def __init__(self, server: otp.Pid, message: object, timeout: float) -> None:
        self.server, self.message, self.timeout = server, message, timeout
        self.sent = 0

    def __call__(self, count: int) -> float:
        t0 = time.perf_counter()
        for _ in range(count):
            otp.cast(self.server, self.message)
        handled = otp.call(self.server, "count", timeout=self.timeout)
        inject(count)
        dt = time.perf_counter() - t0
        self.sent += count
        if handled != self.sent:
            raise AssertionError(f"the server counted {handled} casts, {self.sent} were sent")
        return count / dt


def say_up(parent: otp.Pid) -> None:
    otp.send(parent, "up")


def wait_forever() -> None:
    otp.receive()


class RawPushPull:
    """The raw floor of the throughput benchmarks: PUSH n pickled frames to a
    PULL sink in another process, which answers once it has read them all."""

    def __init__(self, node: otp.Node, tag: str) -> None:
        assert node.info is not None, "the node runs"
        me = otp.self()
        endpoint = f"ipc://{node.info.dir}/raw-pull-{tag}"
        reply_endpoint = f"ipc://{node.info.dir}/raw-reply-{tag}"
        self.ctx = zmq.Context()
        self.reply = self.ctx.socket(zmq.PULL)
        self.reply.bind(reply_endpoint)
        self.pid = start_raw(raw_pull_sink, endpoint, reply_endpoint, me)
        self.push = self.ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.SNDHWM, 0)
        self.push.connect(endpoint)

    def rate(self, count: int) -> float:
        push, message = self.push, REQUEST
        t0 = time.perf_counter()
        push.send(pickle.dumps(count))
        for _ in range(count):
            push.send(pickle.dumps(message))
        self.reply.recv()
        return count / (time.perf_counter() - t0)

    def close(self) -> None:
        self.push.send(pickle.dumps("stop"))
        for s in (self.push, self.reply):
            s.close(linger=0)
        self.ctx.term()
        await_exit(otp, self.pid)


# ------------------------------------------------------------ benchmarks


@benchmark(
    "call_round_trip",
    unit="s",
    floor="pyzmq DEALER/ROUTER",
    rounds=5,
    n=2000,
    warmup=300,
    quick=(3, 400, 60),
    peer="call_round_trip",
    target=("ratio <= 1.5", lambda r: r["ratio"]["median"] <= 1.5),
)
def bench_call(run: Run) -> dict:
    """otp.call to a gen_server that replies with the request."""
    me = otp.self()
    endpoint = f"ipc://{run.node.info.dir}/raw-router"
    raw_pid = start_raw(raw_router_server, endpoint, me)
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(endpoint)

    def raw(i: int) -> None:
        dealer.send(pickle.dumps(REQUEST))
        pickle.loads(dealer.recv())

    server = started(EchoServer.start_link(None))

    def ours(i: int) -> None:
        otp.call(server, REQUEST)

    out = measure_ops(raw, ours, run)
    dealer.send(pickle.dumps("stop"))
    dealer.close(linger=0)
    ctx.term()
    otp.stop(server)
    await_exit(otp, raw_pid)
    return out


@benchmark(
    "send_throughput",
    unit="msg/s",
    floor="pyzmq PUSH/PULL",
    rounds=5,
    n=50000,
    warmup=5000,
    quick=(3, 10000, 1000),
    higher_is_better=True,
    target=("ratio >= 0.5", lambda r: r["ratio"]["median"] >= 0.5),
)
def bench_send(run: Run) -> dict:
    """otp.send of n messages to a process that counts them, then answers."""
    me = otp.self()
    raw = RawPushPull(run.node, "send")
    sink = otp.spawn(otp_sink)
    message = REQUEST

    def ours(count: int) -> float:
        t0 = time.perf_counter()
        otp.send(sink, (me, count))
        for _ in range(count):
            otp.send(sink, message)
        otp.receive(60, lambda m: m == "done")
        inject(count)
        return count / (time.perf_counter() - t0)

    out = measure(lambda c: [raw.rate(c)], lambda c: [ours(c)], run)
    otp.send(sink, "stop")
    raw.close()
    await_exit(otp, sink)
    return out


@benchmark(
    "cast_throughput",
    unit="msg/s",
    floor="pyzmq PUSH/PULL",
    rounds=5,
    n=50000,
    warmup=5000,
    quick=(3, 10000, 1000),
    higher_is_better=True,
    peer="cast_throughput",
)
def bench_cast(run: Run) -> dict:
    """otp.cast of n requests to a counting gen_server, then one otp.call for the count."""
    raw = RawPushPull(run.node, "cast")
    server = started(CastCounter.start_link(None))
    ours = CastRounds(server, REQUEST, timeout=120)

    out = measure(lambda c: [raw.rate(c)], lambda c: [ours(c)], run)
    otp.stop(server)
    raw.close()
    return out


def _fork_pipe_byte() -> float:
    r, w = os.pipe()
    t0 = time.perf_counter()
    child = os.fork()
    if child == 0:
        os.write(w, b"u")
        os._exit(0)
    os.read(r, 1)
    dt = time.perf_counter() - t0
    os.waitpid(child, 0)
    os.close(r)
    os.close(w)
    return dt


@benchmark(
    "spawn_first_reply",
    unit="s",
    floor="os.fork + pipe byte",
    rounds=5,
    n=40,
    warmup=5,
    quick=(3, 10, 2),
    peer="spawn_first_reply",
    target=("median <= 5 ms", lambda r: r["ours"]["median"] <= 0.005),
)
def bench_spawn(run: Run) -> dict:
    """otp.spawn_monitor of a function that messages its parent, until the message is in."""
    me = otp.self()

    def ours_once() -> float:
        time.sleep(SPAWN_SETTLE_S)  # settle: outside the timed region (see SPAWN_SETTLE_S)
        t0 = time.perf_counter()
        pid, ref = otp.spawn_monitor(say_up, me)
        otp.receive(10, lambda m: m == "up")
        inject()
        dt = time.perf_counter() - t0
        await_down(otp, ref)
        return dt

    return measure_each(_fork_pipe_byte, ours_once, run)


@benchmark(
    "spawn_burst",
    unit="proc/s",
    floor="os.fork + pipe byte",
    rounds=3,
    n=100,
    warmup=10,
    quick=(3, 20, 2),
    higher_is_better=True,
)
def bench_spawn_burst(run: Run) -> dict:
    """Back-to-back spawns, each answering its parent, as processes per second."""
    me = otp.self()

    def raw(count: int) -> float:
        t0 = time.perf_counter()
        for _ in range(count):
            r, w = os.pipe()
            child = os.fork()
            if child == 0:
                os.write(w, b"u")
                os._exit(0)
            os.read(r, 1)
            os.waitpid(child, 0)
            os.close(r)
            os.close(w)
        return count / (time.perf_counter() - t0)

    def ours(count: int) -> float:
        t0 = time.perf_counter()
        refs = set()
        for _ in range(count):
            refs.add(otp.spawn_monitor(say_up, me)[1])
            otp.receive(10, lambda m: m == "up")
        inject(count)
        rate = count / (time.perf_counter() - t0)
        while refs:
            refs.discard(otp.receive(10, down_of(otp, refs)).ref)
        return rate

    return measure(lambda c: [raw(c)], lambda c: [ours(c)], run)


@benchmark(
    "sigkill_to_down",
    unit="s",
    floor="SIGKILL -> pidfd readable",
    rounds=5,
    n=40,
    warmup=5,
    quick=(3, 10, 2),
    peer="sigkill_to_down",
    target=("median <= 5 ms", lambda r: r["ours"]["median"] <= 0.005),
)
def bench_kill_down(run: Run) -> dict:
    """SIGKILL of a monitored process until its DOWN is received."""

    def raw_once() -> float:
        pid = otp.spawn(wait_forever)
        fd = os.pidfd_open(pid.ospid)
        t0 = time.perf_counter()
        os.kill(pid.ospid, signal.SIGKILL)
        select.select([fd], [], [], 10)
        dt = time.perf_counter() - t0
        os.close(fd)
        return dt

    def ours_once() -> float:
        pid, ref = otp.spawn_monitor(wait_forever)
        t0 = time.perf_counter()
        os.kill(pid.ospid, signal.SIGKILL)
        await_down(otp, ref)
        inject()
        return time.perf_counter() - t0

    return measure_each(raw_once, ours_once, run)
