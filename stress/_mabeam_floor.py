"""What the MABEAM benchmarks share: the client processes that drive the
load (both sides), and the raw pyzmq processes of the floors.

A client is a process started with ``otp.spawn`` that says ``ready``, then
runs one batch of work per ``("go", args)`` from the harness and answers
``("done", pid, result)``; the harness times from the first ``go`` to the
last ``done``.  The floors' processes are started with ``otp.spawn`` too
(each makes its own zmq context), so both sides pay for the same kind of
process; only the messages in the timed region differ.  A client answers
``(ok, failed, latencies, {error: count}[, seconds per phase])``;
:func:`batch` times one batch and adds it to a tally, :func:`summary` turns
a tally into the figures of the note (success rate, median and p95).
"""

from __future__ import annotations

import collections
import pickle
import random
import time
from collections.abc import Callable
from typing import Any

import zmq

import otp

from ._bench import await_down, await_exit, inject
from ._raw import announced

#: Seconds a raw client waits for one reply before counting a failure
#: (the same as the timeout ours passes to ``mabeam.request``).
REPLY_TIMEOUT_S = 5.0


def vote_of(agent_id: Any) -> str:
    """What agent ``agent_id`` votes (both sides): four in five approve."""
    return "reject" if agent_id % 5 == 4 else "approve"


def endpoint(node: otp.Node, tag: str, i: int) -> str:
    assert node.info is not None, "the node runs"
    return f"ipc://{node.info.dir}/mb-{tag}-{i}"


# ------------------------------------------------------------ clients


def client_loop(parent: otp.Pid, work: Callable[..., Any]) -> None:
    """The body every client runs after its own set-up."""
    me = otp.self()
    otp.send(parent, ("ready", me))
    while True:
        msg = otp.receive()
        if msg == "stop":
            return
        otp.send(parent, ("done", me, work(*msg[1])))


class Clients:
    """``count`` client processes running ``body(parent, i, *args)``,
    monitored: a client that exits makes the batch fail at once."""

    def __init__(self, count: int, body: Callable, *args: Any) -> None:
        me = otp.self()
        started = [otp.spawn_monitor(body, me, i, *args) for i in range(count)]
        self.pids = [pid for pid, _ in started]
        self.refs = {ref: pid for pid, ref in started}
        waiting = set(self.pids)
        while waiting:
            waiting.discard(self._receive("ready", 60)[1])

    def _receive(self, tag: str, timeout: float) -> tuple:
        refs = self.refs
        msg = otp.receive(
            timeout, lambda m: (type(m) is tuple and m[0] == tag) or (isinstance(m, otp.DOWN) and m.ref in refs)
        )
        if isinstance(msg, otp.DOWN):
            raise RuntimeError(f"client {msg.pid} exited: {msg.reason!r}")
        return msg

    def go(self, *args: Any, timeout: float = 300) -> tuple[float, list]:
        """One batch on every client: ``(seconds, [result, ...])``."""
        t0 = time.perf_counter()
        for pid in self.pids:
            otp.send(pid, ("go", args))
        results: dict[otp.Pid, Any] = {}
        while len(results) < len(self.pids):
            msg = self._receive("done", timeout)
            results[msg[1]] = msg[2]
        return time.perf_counter() - t0, [results[p] for p in self.pids]

    def stop(self) -> None:
        for pid in self.pids:
            otp.send(pid, "stop")
        for ref in self.refs:
            await_down(otp, ref, 30)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def new_tally() -> dict:
    return {"ok": 0, "failed": 0, "lat": [], "errors": collections.Counter()}


def batch(clients: Clients, count_each: int, *args: Any, ours: bool, tally: dict) -> float:
    """One timed batch on every client; returns correct answers per second.
    A client answers ``(ok, failed, latencies, {error: count})``."""
    t0 = time.perf_counter()
    _, results = clients.go(count_each, *args)
    ok = sum(r[0] for r in results)
    if ours:
        inject(ok)
    dt = time.perf_counter() - t0
    tally["ok"] += ok
    tally["failed"] += sum(r[1] for r in results)
    tally["lat"] += [x for r in results for x in r[2]]
    for r in results:
        tally["errors"].update(r[3])
    if len(results[0]) > 4:  # seconds per phase, the slowest client's
        tally.setdefault("phases", []).append([max(r[4][i] for r in results) for i in range(len(results[0][4]))])
    return ok / dt


def summary(tally: dict) -> dict:
    total = tally["ok"] + tally["failed"]
    out = {"ok": tally["ok"], "total": total, "success": tally["ok"] / total if total else 0.0}
    out.update(p50_s=pct(tally["lat"], 0.5), p95_s=pct(tally["lat"], 0.95))
    if tally["errors"]:
        out["errors"] = dict(tally["errors"].most_common(5))
    if tally.get("phases"):
        out["phases_s"] = [sum(p) / len(p) for p in zip(*tally["phases"])]
    return out


def count_error(errors: dict, exc: BaseException) -> None:
    key = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)!r}"[:120]
    errors[key] = errors.get(key, 0) + 1


def dealers(endpoints: list[str]) -> tuple[zmq.Context, list[zmq.Socket], zmq.Poller]:
    ctx = zmq.Context()
    socks = []
    poller = zmq.Poller()
    for ep in endpoints:
        sock = ctx.socket(zmq.DEALER)
        sock.connect(ep)
        socks.append(sock)
        poller.register(sock, zmq.POLLIN)
    return ctx, socks, poller


def ask(sock: zmq.Socket, request: Any) -> Any:
    """One raw round trip; ``None`` when no reply came within the timeout."""
    sock.send(pickle.dumps(request))
    if not sock.poll(int(REPLY_TIMEOUT_S * 1000)):
        return None
    return pickle.loads(sock.recv())


def close_all(ctx: zmq.Context, socks: list[zmq.Socket]) -> None:
    for sock in socks:
        sock.close(linger=0)
    ctx.term()


def stop_servers(endpoints: list[str], pids: list[otp.Pid]) -> None:
    ctx, socks, _ = dealers(endpoints)
    for sock in socks:
        sock.send(pickle.dumps("stop"))
    for pid in pids:
        await_exit(otp, pid, 30)
    close_all(ctx, socks)


def start_servers(body: Callable, endpoints: list[str], *args: Any) -> list[otp.Pid]:
    """``body(endpoint, i, parent, *args)`` per endpoint, each answering ``ready`` once bound."""
    me = otp.self()
    pids = [otp.spawn(body, ep, i, me, *args) for i, ep in enumerate(endpoints)]
    for _ in pids:
        otp.receive(60, lambda m: m == "ready")
    return pids


# ------------------------------------------------------------ raw servers


def raw_agent(ep: str, agent_id: int, parent: otp.Pid) -> None:
    """A plain process standing for an agent: ``("request", m)`` is answered
    ``(agent_id, m)`` (as ``handle_request`` does), ``("vote", p)`` with
    ``(agent_id, vote_of(agent_id))``."""
    with announced(zmq.ROUTER, ep, parent) as sock:
        vote = vote_of(agent_id)
        while True:  # not serve(): the answer stays inline, no call per request
            ident, frame = sock.recv_multipart()
            request = pickle.loads(frame)
            if request == "stop":
                return
            answer = (agent_id, request[1]) if request[0] == "request" else (agent_id, vote)
            sock.send_multipart([ident, pickle.dumps(answer)])


def raw_auctioneer(ep: str, index: int, parent: otp.Pid) -> None:
    """A plain process holding many sealed-bid auctions in a dict: create,
    bid (duplicate bidders and closed auctions refused, as the rules do) and
    close (cleared with the same rules function ours uses)."""
    from mabeam.economics import auctions as auction_rules

    auctions: dict = {}
    with announced(zmq.ROUTER, ep, parent) as sock:
        while True:
            ident, frame = sock.recv_multipart()
            req = pickle.loads(frame)
            if req == "stop":
                return
            op, aid = req[0], req[1]
            if op == "create":
                auctions[aid] = (req[2], req[3], [])
                answer = ("ok", aid)
            elif op == "bid":
                entry = auctions.get(aid)
                if entry is None or any(b.bidder == req[2] for b in entry[2]):
                    answer = ("error", "refused")
                else:
                    entry[2].append(auction_rules.Bid(req[2], req[3]))
                    answer = ("ok", len(entry[2]))
            elif aid in auctions:
                item, reserve, bids = auctions.pop(aid)
                result = auction_rules.clear_vickrey(bids, reserve=reserve)
                answer = ("ok", (aid, result.winner, result.price))
            else:
                answer = ("error", "unknown")
            sock.send_multipart([ident, pickle.dumps(answer)])


# ------------------------------------------------------------ raw clients


def raw_request_client(parent: otp.Pid, index: int, endpoints: list[str], message: Any) -> None:
    ctx, socks, _ = dealers(endpoints)
    rng = random.Random(index)
    clock = time.perf_counter

    def work(count: int, sweep: bool) -> tuple:
        targets = list(range(len(socks))) if sweep else []
        targets += [rng.randrange(len(socks)) for _ in range(count)]
        ok, failed, lat = 0, 0, []
        for agent_id in targets:
            t0 = clock()
            answer = ask(socks[agent_id], ("request", message))
            lat.append(clock() - t0)
            if answer == (agent_id, message):
                ok += 1
            else:
                failed += 1
        return ok, failed, lat, {}

    try:
        client_loop(parent, work)
    finally:
        close_all(ctx, socks)


def raw_consensus_round(socks: list[zmq.Socket], poller: zmq.Poller, proposal: Any) -> tuple:
    """Ask every voter at once, wait for all (or the timeout), tally a strict
    majority of the votes cast: ``(decision, reached, votes)``."""
    frame = pickle.dumps(("vote", proposal))
    for sock in socks:
        sock.send(frame)
    votes: dict = {}
    deadline = time.monotonic() + REPLY_TIMEOUT_S
    while len(votes) < len(socks):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for sock, _ in poller.poll(int(left * 1000) + 1):
            agent_id, vote = pickle.loads(sock.recv())
            votes[agent_id] = vote
    counts = collections.Counter(votes.values()).most_common(1)
    decision, top = counts[0] if counts else (None, 0)
    reached = 2 * top > len(votes)
    return (decision if reached else None), reached, votes


def raw_auction_client(parent: otp.Pid, index: int, endpoints: list[str], bids: list) -> None:
    """The floor of ``mabeam_auctions``: per batch, create ``count`` auctions
    (round-robin over the auctioneers), place every bid on each, close each."""
    from mabeam.economics import auctions as auction_rules

    ctx, socks, _ = dealers(endpoints)
    seq = [0]
    clock = time.perf_counter
    expected = auction_rules.clear_vickrey([auction_rules.Bid(b, a) for b, a in bids], reserve=1.0)

    def work(count: int) -> tuple:
        created, create_lat = [], []
        t0 = clock()
        for _ in range(count):
            seq[0] += 1
            aid = (index, seq[0])
            sock = socks[seq[0] % len(socks)]
            t_create = clock()
            answer = ask(sock, ("create", aid, "item", 1.0))
            create_lat.append(clock() - t_create)
            if answer == ("ok", aid):
                created.append((aid, sock))
        bid_ok = {aid: 0 for aid, _ in created}
        t1 = clock()
        for bidder, amount in bids:
            for aid, sock in created:
                answer = ask(sock, ("bid", aid, bidder, amount))
                if answer is not None and answer[0] == "ok":
                    bid_ok[aid] += 1
        ok, t2 = 0, clock()
        for aid, sock in created:
            answer = ask(sock, ("close", aid))
            if bid_ok[aid] == len(bids) and answer == ("ok", (aid, expected.winner, expected.price)):
                ok += 1
        return ok, count - ok, create_lat, {}, (t1 - t0, t2 - t1, clock() - t2)

    try:
        client_loop(parent, work)
    finally:
        close_all(ctx, socks)
