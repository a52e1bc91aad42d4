"""Distribution benchmarks: two nodes on 127.0.0.1, tcp with CURVE, each
beside its raw floor in the same run.

* ``dist_call_round_trip``: ``otp.call`` to a gen_server on the other node
  (process -> gateway -> gateway -> process and back) vs a raw pyzmq
  DEALER/ROUTER pair over tcp with CURVE, pickled request and reply (the
  ROUTER runs in a process of the other node, the DEALER in the caller);
* ``dist_cast_throughput``: ``otp.cast`` x n to a counting gen_server on the
  other node, ended by one ``otp.call`` returning the count, vs raw
  PUSH/PULL over tcp with CURVE, the sink answering (one ``otp.send``) once
  it has read n;
* ``dist_sigkill_to_down``: SIGKILL of a process on the other node until the
  watcher here has its DOWN (the other gateway's pidfd, a made-up
  ``'killed'`` across the connection) vs the same with a local process (the
  local figure is the floor: target <= 2x);
* ``dist_nodedown``: a node silenced (SIGSTOP of every process of it: its
  sockets stay open, as in a network cut without resets) until
  ``NodeDown`` here, with a tick time of 2 s; the floor is that bound, so
  the ratio must stay <= 1.  The note gives ``max_silence``: the longest
  the gateway went without hearing from its live peer during the run
  (ticks come every quarter tick time), the margin behind
  ``otp._gateway.NET_TICKTIME``.

The runner's node does not listen, so each benchmark runs in a subprocess
that is a listening node (the caller side) and starts the other node as a
further subprocess; samples come back as JSON on its stdout.  Both are
stopped by pid, and each removes its node directory.
"""

from __future__ import annotations

import json
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import zmq

import otp

from ._bench import Run, await_down, await_exit, benchmark, inject, measure, measure_each, measure_ops, started
from ._common import REQUEST, descendants
from ._raw import Curve, announced, drain_batches, raw_router_server, start_raw
from .kernel import CastCounter, CastRounds, EchoServer

#: Position of this module's benchmarks in the suite (after the kernel's).
ORDER = 15

HOST = "127.0.0.1"
CALLER = f"caller@{HOST}"
PEER = f"peer@{HOST}"
_START_TIMEOUT = 60.0
NODEDOWN_TICKTIME = 2.0


# ----------------------------------------------------------- processes


def raw_curve_sink(endpoint: str, parent: otp.Pid, curve: Curve) -> None:
    """PULL over tcp+CURVE: a count, then that many frames; then one
    ``otp.send`` back to the caller (once per batch: its cost is spread over
    the batch)."""
    with announced(zmq.PULL, endpoint, parent, curve=curve, rcvhwm=0) as sock:
        drain_batches(sock, otp.send, parent, "done")


def report_ospid(parent: otp.Pid) -> None:
    otp.send(parent, ("ospid", otp.self(), os.getpid()))
    otp.receive()


# ------------------------------------------------- the nodes (subprocesses)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def peer_main() -> None:
    """The other node: start, connect to the caller, wait for "stop"."""
    config = json.loads(sys.stdin.readline())
    keys = otp.KeyPair(config["public"].encode(), config["secret"].encode())
    peers = {k: tuple(v) for k, v in config["peers"].items()}
    with otp.Node(name=PEER, listen=config["listen"], keys=keys, peers=peers, net_ticktime=config["ticktime"]):
        up = otp.connect_node(CALLER, timeout=_START_TIMEOUT)
        sys.stdout.write(json.dumps({"up": up}) + "\n")
        sys.stdout.flush()
        sys.stdin.readline()


def _spawn_python(code: str, config: dict) -> subprocess.Popen:
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([top, *[p for p in sys.path if p]]))
    popen = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=top
    )
    assert popen.stdin is not None
    popen.stdin.write(json.dumps(config).encode() + b"\n")
    popen.stdin.flush()
    return popen


def _read_json(popen: subprocess.Popen, timeout: float) -> Any:
    assert popen.stdout is not None
    ready, _, _ = select.select([popen.stdout], [], [], timeout)
    line = popen.stdout.readline() if ready else b""
    if not line:
        raise RuntimeError(f"a benchmark node did not answer (exit status {popen.poll()})")
    return json.loads(line)


def _stop(popen: subprocess.Popen) -> None:
    if popen.poll() is None:
        try:
            assert popen.stdin is not None
            popen.stdin.write(b"stop\n")
            popen.stdin.flush()
        except OSError:
            pass
        try:
            popen.wait(30)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


class _Pair:
    """This process as the caller node, the peer node as a subprocess."""

    def __init__(self, ticktime: float = 8.0) -> None:
        self.caller_keys = otp.KeyPair(*zmq.curve_keypair())
        self.peer_keys = otp.KeyPair(*zmq.curve_keypair())
        self.peer_endpoint = f"tcp://{HOST}:{_free_port()}"
        self.ticktime = ticktime
        self.node = otp.Node(
            name=CALLER,
            listen=f"tcp://{HOST}:0",
            keys=self.caller_keys,
            peers={PEER: (self.peer_endpoint, self.peer_keys.public)},
            net_ticktime=ticktime,
        )
        self.popen: subprocess.Popen | None = None

    def __enter__(self) -> _Pair:
        self.node.start()
        me = otp.net_kernel.info()
        config = {
            "listen": self.peer_endpoint,
            "public": self.peer_keys.public.decode(),
            "secret": self.peer_keys.secret.decode(),
            "peers": {CALLER: [me["endpoint"], self.caller_keys.public.decode()]},
            "ticktime": self.ticktime,
        }
        self.popen = _spawn_python("from stress import dist_bench; dist_bench.peer_main()", config)
        if not _read_json(self.popen, _START_TIMEOUT).get("up") or not otp.connect_node(PEER):
            raise RuntimeError("the peer node did not connect")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.popen is not None:
                _stop(self.popen)
        finally:
            self.node.stop()


# ------------------------------------------------------------ the workers


def _curve_client(body, kind: int) -> tuple[otp.Pid, zmq.Context, zmq.Socket]:
    """``body(endpoint, caller, curve)`` started on the peer node as a raw
    CURVE server on a free tcp port, and a client socket of ``kind``
    connected to it with keys of its own: ``(server pid, context, socket)``."""
    curve = zmq.curve_keypair()
    endpoint = f"tcp://{HOST}:{_free_port()}"
    raw_pid = start_raw(body, endpoint, otp.self(), curve, timeout=30, node=PEER)
    ctx = zmq.Context()
    sock = ctx.socket(kind)
    client_public, client_secret = zmq.curve_keypair()
    sock.setsockopt(zmq.CURVE_SERVERKEY, curve[0])
    sock.setsockopt(zmq.CURVE_PUBLICKEY, client_public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, client_secret)
    if kind == zmq.PUSH:
        sock.setsockopt(zmq.SNDHWM, 0)
    sock.connect(endpoint)
    return raw_pid, ctx, sock


def _close_curve_client(raw_pid: otp.Pid, ctx: zmq.Context, sock: zmq.Socket, server: otp.Pid) -> None:
    """Stop the raw server (by its socket) and ours, wait for the raw one."""
    sock.send(pickle.dumps("stop"))
    sock.close(linger=0)
    ctx.term()
    otp.stop(server)
    await_exit(otp, raw_pid)


def _call(run: Run) -> dict:
    with _Pair():
        raw_pid, ctx, dealer = _curve_client(raw_router_server, zmq.DEALER)

        def raw(i: int) -> None:
            dealer.send(pickle.dumps(REQUEST))
            pickle.loads(dealer.recv())

        server = started(EchoServer.start(None, node=PEER))

        def ours(i: int) -> None:
            otp.call(server, REQUEST)

        out = measure_ops(raw, ours, run)
        _close_curve_client(raw_pid, ctx, dealer, server)
        return out


def _cast(run: Run) -> dict:
    with _Pair():
        raw_pid, ctx, push = _curve_client(raw_curve_sink, zmq.PUSH)

        def raw(count: int) -> float:
            t0 = time.perf_counter()
            push.send(pickle.dumps(count))
            for _ in range(count):
                push.send(pickle.dumps(REQUEST))
            otp.receive(300, lambda m: m == "done")
            return count / (time.perf_counter() - t0)

        server = started(CastCounter.start(None, node=PEER))
        ours = CastRounds(server, REQUEST, timeout=300)

        out = measure(lambda c: [raw(c)], lambda c: [ours(c)], run)
        out["extra"] = {"max_silence_s": otp.net_kernel.info()["max_silence"].get(PEER)}
        _close_curve_client(raw_pid, ctx, push, server)
        return out


def _kill_down(run: Run) -> dict:
    with _Pair():
        me = otp.self()

        def kill_once(node: str | None) -> float:
            pid, ref = otp.spawn_opt(report_ospid, (me,), node=node, monitor=True)
            _, _, ospid = otp.receive(30, lambda m: isinstance(m, tuple) and m[:2] == ("ospid", pid))
            t0 = time.perf_counter()
            os.kill(ospid, signal.SIGKILL)
            down = await_down(otp, ref, 30)
            dt = time.perf_counter() - t0
            if down.reason != "killed":
                raise AssertionError(f"DOWN with {down.reason!r}, not 'killed'")
            return dt

        def ours_once() -> float:
            dt = kill_once(PEER)
            inject()
            return dt

        return measure_each(lambda: kill_once(None), ours_once, run)


def _nodedown(run: Run) -> dict:
    ours: list[list[float]] = []
    silences = []
    for _ in range(run.rounds):
        samples = []
        for _ in range(run.n):
            with _Pair(ticktime=NODEDOWN_TICKTIME) as pair:
                assert pair.popen is not None
                otp.monitor_node(PEER)
                victims = [pair.popen.pid, *descendants(pair.popen.pid)]
                t0 = time.perf_counter()
                for ospid in victims:
                    _signal(ospid, signal.SIGSTOP)
                down = otp.receive(NODEDOWN_TICKTIME * 10, lambda m: isinstance(m, otp.NodeDown))
                samples.append(time.perf_counter() - t0)
                silences.append(otp.net_kernel.info()["max_silence"].get(PEER))
                for ospid in victims:
                    _signal(ospid, signal.SIGCONT)
                if down.reason != "net_tick_timeout":
                    raise AssertionError(f"NodeDown with {down.reason!r}")
        ours.append(samples)
    floor = [[NODEDOWN_TICKTIME] * len(r) for r in ours]
    return {"floor": floor, "ours": ours, "extra": {"max_silence_s": max((s or 0) for s in silences)}}


def _signal(ospid: int, sig: int) -> None:
    try:
        os.kill(ospid, sig)
    except ProcessLookupError:
        pass


_WORKERS = {"call": _call, "cast": _cast, "kill_down": _kill_down, "nodedown": _nodedown}


def worker_main() -> None:
    """A benchmark's caller node: run one worker, print its samples."""
    config = json.loads(sys.stdin.readline())
    run = Run(node=None, rounds=config["rounds"], n=config["n"], warmup=config["warmup"], quick=False)
    result = _WORKERS[config["kind"]](run)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def _in_subprocess(kind: str, run: Run) -> dict:
    config = {"kind": kind, "rounds": run.rounds, "n": run.n, "warmup": run.warmup}
    popen = _spawn_python("from stress import dist_bench; dist_bench.worker_main()", config)
    try:
        return _read_json(popen, 3600)
    finally:
        _stop(popen)


# ------------------------------------------------------------ benchmarks


@benchmark(
    "dist_call_round_trip",
    unit="s",
    floor="pyzmq DEALER/ROUTER, tcp+CURVE",
    rounds=5,
    n=1000,
    warmup=200,
    quick=(3, 200, 50),
    requires=("otp:rpc",),
    target=("ratio <= 1.5", lambda r: r["ratio"]["median"] <= 1.5),
)
def bench_dist_call(run: Run) -> dict:
    """otp.call to a gen_server on another node (tcp+CURVE through the gateways)."""
    return _in_subprocess("call", run)


@benchmark(
    "dist_cast_throughput",
    unit="msg/s",
    floor="pyzmq PUSH/PULL, tcp+CURVE",
    rounds=5,
    n=20000,
    warmup=2000,
    quick=(3, 5000, 500),
    higher_is_better=True,
    requires=("otp:rpc",),
    target=("ratio >= 0.5", lambda r: r["ratio"]["median"] >= 0.5),
    describe=lambda extra: f"longest silence of the live peer: {extra.get('max_silence_s') or 0:.3f} s",
)
def bench_dist_cast(run: Run) -> dict:
    """otp.cast x n to a counting gen_server on another node, then one call."""
    return _in_subprocess("cast", run)


@benchmark(
    "dist_sigkill_to_down",
    unit="s",
    floor="the same with a local process",
    rounds=5,
    n=20,
    warmup=3,
    quick=(3, 6, 1),
    requires=("otp:rpc",),
    target=("ratio <= 2", lambda r: r["ratio"]["median"] <= 2.0),
)
def bench_dist_kill_down(run: Run) -> dict:
    """SIGKILL of a process on another node until the DOWN here."""
    return _in_subprocess("kill_down", run)


@benchmark(
    "dist_nodedown",
    unit="s",
    floor=f"the tick bound ({NODEDOWN_TICKTIME:g} s)",
    rounds=2,
    n=3,
    warmup=0,
    quick=(1, 2, 0),
    requires=("otp:rpc",),
    target=("ratio <= 1", lambda r: r["ratio"]["median"] <= 1.0),
    describe=lambda extra: f"longest silence of the live peer: {extra.get('max_silence_s') or 0:.3f} s",
)
def bench_dist_nodedown(run: Run) -> dict:
    """A silenced node (SIGSTOP) until NodeDown here, net_ticktime 2 s."""
    return _in_subprocess("nodedown", run)
