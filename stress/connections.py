"""What bounding descriptors costs: a call whose socket was closed by the cap.

A process keeps at most ``peer_socket_cap`` peer sockets open (see
:mod:`otp._transport`); past it, the least recently used are closed and
reopened by their next frame.  ``call_round_trip_capped`` measures
``otp.call`` while the caller is over its cap: it calls, in turn, twice as
many echo servers as its cap allows it sockets, so that (nearly) every call
reopens the socket it needs (connect and ZeroMQ handshake before the request
can travel).  The floor does the same with raw pyzmq: a new DEALER per
request, connected to a ROUTER, one pickled request and reply, closed.

The note under the table gives the same rotation without a cap (every
socket kept) and the raw round trip on a kept connection: the price of a
reopen is the difference, and the capped call over the uncapped one is what
a process pays when it talks to more peers, in turn, than its cap.
"""

from __future__ import annotations

import pickle
import statistics

import zmq

import otp
from otp import _process
from otp._transport import EXIT_LINGER_MS

from ._bench import Run, alternate, await_exit, benchmark, started, timed_ops
from ._common import REQUEST
from ._raw import raw_router_server, start_raw
from .kernel import EchoServer

#: Position of this module's benchmarks in the suite (after the kernel's).
ORDER = 12

#: The caller's cap during the measurement (the smallest a process gets).
CAP = 16
#: Servers called in turn: twice the cap, so the socket a call needs is
#: always among the least recently used, and closed.
SERVERS = 2 * CAP


def _describe(e: dict) -> str:
    return (
        f"caller cap {e['cap']} sockets, {e['servers']} servers called in turn: "
        f"{e['reopened_share']:.0%} of the calls reopened their socket; "
        f"the same calls uncapped {e['uncapped_p50_s'] * 1e6:.0f} us (median), so a reopen costs "
        f"{(e['capped_p50_s'] - e['uncapped_p50_s']) * 1e6:.0f} us and capped/uncapped is "
        f"{e['capped_p50_s'] / e['uncapped_p50_s']:.1f}x; raw pyzmq on a kept connection "
        f"{e['raw_kept_p50_s'] * 1e6:.0f} us"
    )


@benchmark(
    "call_round_trip_capped",
    unit="s",
    floor="pyzmq DEALER/ROUTER, new connection each",
    rounds=5,
    n=400,
    warmup=64,
    quick=(3, 100, 32),
    describe=_describe,
    target=("ratio <= 2", lambda r: r["ratio"]["median"] <= 2.0),
)
def bench_call_capped(run: Run) -> dict:
    """otp.call to servers whose socket the caller's cap closed (a reopen per call)."""
    proc = _process.current()
    me = otp.self()
    endpoint = f"ipc://{run.node.info.dir}/raw-router-capped"
    raw_pid = start_raw(raw_router_server, endpoint, me)
    ctx = zmq.Context()
    request = pickle.dumps(REQUEST)

    def raw(i: int) -> None:
        dealer = ctx.socket(zmq.DEALER)
        dealer.connect(endpoint)
        dealer.send(request)
        pickle.loads(dealer.recv())
        dealer.close(linger=EXIT_LINGER_MS)

    kept = ctx.socket(zmq.DEALER)
    kept.connect(endpoint)

    def raw_kept(i: int) -> None:
        kept.send(request)
        pickle.loads(kept.recv())

    servers = [started(EchoServer.start_link(None)) for _ in range(SERVERS)]

    def ours(i: int) -> None:
        otp.call(servers[i % SERVERS], REQUEST)

    for server in servers:
        otp.call(server, REQUEST)  # every socket open, and the caller's cap state set up
    saved_cap = proc._peer_cap
    try:
        proc._peer_cap = 10 * SERVERS
        timed_ops(ours, run.warmup, ours=False)
        uncapped = timed_ops(ours, run.n, ours=False)
        raw_kept_s = timed_ops(raw_kept, run.n, ours=False)
        proc._peer_cap = CAP
        proc._evict_peers(len(proc._open) - CAP)  # as if the cap had been there all along
        timed_ops(raw, run.warmup, ours=False)
        timed_ops(ours, run.warmup, ours=True)
        reopens = proc.peer_reopens
        out = alternate(
            lambda: timed_ops(raw, run.n, ours=False), lambda: timed_ops(ours, run.n, ours=True), run.rounds
        )
        reopened = (proc.peer_reopens - reopens) / (run.n * run.rounds)
    finally:
        proc._peer_cap = saved_cap
    if reopened < 0.5:
        raise RuntimeError(
            f"the cap was not hit ({reopened:.0%} of the calls reopened a socket): the benchmark no longer "
            "measures what it says (see otp._transport for how the cap closes peer sockets)"
        )
    capped = [x for r in out["ours"] for x in r]
    out["extra"] = {
        "cap": CAP,
        "servers": SERVERS,
        "reopened_share": reopened,
        "capped_p50_s": statistics.median(capped),
        "uncapped_p50_s": statistics.median(uncapped),
        "raw_kept_p50_s": statistics.median(raw_kept_s),
    }
    kept.send(pickle.dumps("stop"))
    kept.close(linger=0)
    ctx.term()
    for server in servers:
        otp.stop(server)
    await_exit(otp, raw_pid)
    return out
