"""Kernel benchmarks, each side by side with its raw floor in the same run.

* call round trip: raw pyzmq DEALER/ROUTER (pickled request and reply)
  vs ``otp.call`` to a gen_server;
* send throughput: raw PUSH/PULL, one pickled message per frame, vs
  ``otp.send`` to a counting process;
* spawn + first reply: ``otp.spawn`` of a function that messages its parent,
  until the parent has that message; floor: ``os.fork`` of a process that
  writes one byte to a pipe (no interpreter start, no sockets);
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

REQUEST = {"op": "echo", "seq": 0, "payload": "x" * 64}


# ------------------------------------------------------------- processes


def raw_router_server(endpoint: str, parent: otp.Pid) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(endpoint)
    otp.send(parent, "ready")
    try:
        while True:
            ident, frame = sock.recv_multipart()
            request = pickle.loads(frame)
            if request == "stop":
                return
            sock.send_multipart([ident, pickle.dumps(request)])
    finally:
        sock.close(linger=0)
        ctx.term()


def raw_pull_sink(endpoint: str, reply_endpoint: str, parent: otp.Pid) -> None:
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(endpoint)
    push = ctx.socket(zmq.PUSH)
    push.connect(reply_endpoint)
    otp.send(parent, "ready")
    try:
        while True:
            n = pickle.loads(pull.recv())
            if n == "stop":
                return
            for _ in range(n):
                pickle.loads(pull.recv())
            push.send(b"done")
    finally:
        pull.close(linger=0)
        push.close(linger=0)
        ctx.term()


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


def say_up(parent: otp.Pid) -> None:
    otp.send(parent, "up")


def wait_forever() -> None:
    otp.receive()


# ------------------------------------------------------------ benchmarks


def _timed_calls(call, n: int) -> list[float]:
    out = []
    clock = time.perf_counter
    for i in range(n):
        t0 = clock()
        call(i)
        out.append(clock() - t0)
    return out


def bench_call(node: otp.Node, rounds: int, n: int, warmup: int) -> dict:
    me = otp.self()
    endpoint = f"ipc://{node.info.dir}/raw-router"
    raw_pid = otp.spawn(raw_router_server, endpoint, me)
    otp.receive(10, lambda m: m == "ready")
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(endpoint)

    def raw(i: int) -> None:
        dealer.send(pickle.dumps(REQUEST))
        pickle.loads(dealer.recv())

    server = EchoServer.start_link(None)

    def ours(i: int) -> None:
        otp.call(server, REQUEST)

    floor, mine = [], []
    for fn in (raw, ours):
        _timed_calls(fn, warmup)
    for _ in range(rounds):
        floor.append(_timed_calls(raw, n))
        mine.append(_timed_calls(ours, n))
    dealer.send(pickle.dumps("stop"))
    dealer.close(linger=0)
    ctx.term()
    otp.stop(server)
    _await_exit(raw_pid)
    return {"unit": "s", "floor_name": "pyzmq DEALER/ROUTER", "floor": floor, "ours": mine}


def bench_send(node: otp.Node, rounds: int, n: int, warmup: int) -> dict:
    me = otp.self()
    endpoint = f"ipc://{node.info.dir}/raw-pull"
    reply_endpoint = f"ipc://{node.info.dir}/raw-reply"
    ctx = zmq.Context()
    reply = ctx.socket(zmq.PULL)
    reply.bind(reply_endpoint)
    raw_pid = otp.spawn(raw_pull_sink, endpoint, reply_endpoint, me)
    otp.receive(10, lambda m: m == "ready")
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 0)
    push.connect(endpoint)
    message = REQUEST

    def raw(count: int) -> float:
        t0 = time.perf_counter()
        push.send(pickle.dumps(count))
        for _ in range(count):
            push.send(pickle.dumps(message))
        reply.recv()
        return count / (time.perf_counter() - t0)

    sink = otp.spawn(otp_sink)

    def ours(count: int) -> float:
        t0 = time.perf_counter()
        otp.send(sink, (me, count))
        for _ in range(count):
            otp.send(sink, message)
        otp.receive(30, lambda m: m == "done")
        return count / (time.perf_counter() - t0)

    raw(warmup)
    ours(warmup)
    floor, mine = [], []
    for _ in range(rounds):
        floor.append([raw(n)])
        mine.append([ours(n)])
    push.send(pickle.dumps("stop"))
    otp.send(sink, "stop")
    for s in (push, reply):
        s.close(linger=0)
    ctx.term()
    _await_exit(raw_pid)
    _await_exit(sink)
    return {"unit": "msg/s", "floor_name": "pyzmq PUSH/PULL", "floor": floor, "ours": mine, "higher_is_better": True}


def bench_spawn(node: otp.Node, rounds: int, n: int, warmup: int) -> dict:
    me = otp.self()

    def raw_once() -> float:
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

    def ours_once() -> float:
        # A pause so the zygote has its embryos ready again: this measures
        # the latency of a spawn on a node that is not already spawning
        # flat out (bench_spawn_burst measures that).
        time.sleep(0.02)
        t0 = time.perf_counter()
        pid, ref = otp.spawn_monitor(say_up, me)
        otp.receive(10, lambda m: m == "up")
        dt = time.perf_counter() - t0
        otp.receive(10, lambda m: isinstance(m, otp.DOWN) and m.ref == ref)
        return dt

    for _ in range(warmup):
        raw_once()
        ours_once()
    floor, mine = [], []
    for _ in range(rounds):
        floor.append([raw_once() for _ in range(n)])
        mine.append([ours_once() for _ in range(n)])
    return {"unit": "s", "floor_name": "os.fork + pipe byte", "floor": floor, "ours": mine}


def bench_spawn_burst(node: otp.Node, rounds: int, n: int, warmup: int) -> dict:
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
        rate = count / (time.perf_counter() - t0)
        while refs:
            refs.discard(otp.receive(10, lambda m: isinstance(m, otp.DOWN)).ref)
        return rate

    raw(warmup)
    ours(warmup)
    floor, mine = [], []
    for _ in range(rounds):
        floor.append([raw(n)])
        mine.append([ours(n)])
    return {"unit": "proc/s", "floor_name": "os.fork + pipe byte", "floor": floor, "ours": mine, "higher_is_better": True}


def bench_kill_down(node: otp.Node, rounds: int, n: int, warmup: int) -> dict:
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
        otp.receive(10, lambda m: isinstance(m, otp.DOWN) and m.ref == ref)
        return time.perf_counter() - t0

    for _ in range(warmup):
        raw_once()
        ours_once()
    floor, mine = [], []
    for _ in range(rounds):
        floor.append([raw_once() for _ in range(n)])
        mine.append([ours_once() for _ in range(n)])
    return {"unit": "s", "floor_name": "SIGKILL -> pidfd readable", "floor": floor, "ours": mine}


def _await_exit(pid: otp.Pid) -> None:
    ref = otp.monitor(pid)
    otp.receive(10, lambda m: isinstance(m, otp.DOWN) and m.ref == ref)


#: name -> (function, rounds, samples per round, warmup) for the full run;
#: ``--quick`` divides samples by 5.
BENCHMARKS = {
    "call_round_trip": (bench_call, 5, 2000, 300),
    "send_throughput": (bench_send, 5, 50000, 5000),
    "spawn_first_reply": (bench_spawn, 5, 40, 5),
    "spawn_burst": (bench_spawn_burst, 3, 100, 10),
    "sigkill_to_down": (bench_kill_down, 5, 40, 5),
}
