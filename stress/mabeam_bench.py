"""MABEAM benchmarks: requests among 100 agents, consensus rounds, auctions.

Each runs on a fresh node with ``mabeam.start()``; its floor runs in the same
run, rounds alternating floor and ours, and the floors' processes are
started with ``otp.spawn`` (see :mod:`stress._mabeam_floor`).

* ``mabeam_requests``: :data:`AGENTS` agent processes, :data:`CLIENTS`
  client processes each sending ``mabeam.request`` (timeout 5 s) to agents
  drawn at random, one request in flight per client; requests answered
  correctly per second over the whole batch.  Floor: the same number of
  plain processes, each a ROUTER answering ``(agent_id, message)``, and the
  same clients using one DEALER per server, pickled frames.  The success
  rate (correct answers / requests) must be at least 95%.
* ``mabeam_consensus_rounds``: one ``coordination.run_consensus`` (majority,
  timeout 5 s) after another among :data:`VOTERS` agents, each voting from
  its own process; rounds decided correctly per second.  Floor: the harness
  sends the proposal to as many plain ROUTER processes at once, waits for
  every vote and tallies a strict majority.  Ours is one call to a session
  host (a long-lived process holding sessions as state: no process per
  round), which asks the agents with asynchronous requests and answers the
  call with the tally; the note shows what the same votes cost through
  ``mabeam.broadcast`` without a session, and the rate with
  :data:`IN_FLIGHT` sessions running at once
  (``run_consensus_async``, then ``result``).
* ``mabeam_auctions``: :data:`CLIENTS` client processes; per batch each
  creates its share of ``n`` sealed-bid (Vickrey) auctions with
  ``economics.create_auction(..., linger=0)``, so all ``n`` are open at once,
  then places :data:`BIDS` explicit bids on each, then closes each and
  checks winner and price; auctions completed correctly per second, create
  latency p95, the seconds per phase and the success rate (must exceed 99%)
  in the note.  Floor: the same messages (one create, one per bid, one
  close: pickled round trips) to :data:`CLIENTS` plain auctioneer processes
  that hold their auctions in a dict and clear them with the same rules
  function.  Ours holds the auctions in the economics hosts (one per core,
  at least 2: its design), answers each call through ``otp.Service``, and
  writes a board snapshot and publishes an event per change (in batches,
  by each host's writer process); the ratio is the price of that.  After
  the timed rounds the note also gives what :data:`OPEN_FOR_MEMORY` open
  auctions add to the PSS of the node's processes (all of them: hosts,
  writers, board, the rest), created from the harness and then closed.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping
from typing import Any

import mabeam
import otp

from ._bench import Run, benchmark, inject
from ._common import REQUEST
from ._mabeam_floor import (
    REPLY_TIMEOUT_S,
    Clients,
    batch,
    client_loop,
    close_all,
    count_error,
    dealers,
    endpoint,
    new_tally,
    pct,
    raw_agent,
    raw_auction_client,
    raw_auctioneer,
    raw_consensus_round,
    raw_request_client,
    start_servers,
    stop_servers,
    summary,
    vote_of,
)
from ._pss import rollup, uss_kib

#: Position of this module's benchmarks in the suite.
ORDER = 90

AGENTS = 100
CLIENTS = 8
VOTERS = 5
IN_FLIGHT = 8
#: Explicit bids on every auction; Vickrey: b1 wins and pays 17.5.
BIDS = [("b0", 10.0), ("b1", 25.0), ("b2", 17.5)]
#: Open auctions whose memory the auctions benchmark reports (issue 13:
#: 1,000 must add at most 200 MB of PSS to the node).
OPEN_FOR_MEMORY = 1000


class BenchAgent(mabeam.Agent):
    """Answers a request with ``(agent_id, message)``, votes ``vote_of(agent_id)``."""

    def handle_request(self, message: Any) -> Any:
        return (self.agent_id, message)

    def handle_vote(self, proposal: Any) -> Any:
        return vote_of(self.agent_id)


def _start_app(count: int) -> otp.Pid:
    otp.trap_exit(True)
    sup = mabeam.start()
    for i in range(count):
        mabeam.register_agent(mabeam.AgentConfig(i, BenchAgent))
        mabeam.start_agent(i)
    return sup


def _ms(x: float) -> str:
    return f"{x * 1e3:.2f} ms"


def _success(side: dict) -> str:
    return f"{side['success']:.2%} ({side['ok']:,}/{side['total']:,})"


def _tallied_rounds(floor, ours, rounds: int) -> tuple[dict, dict]:
    """``rounds`` rounds alternating ``floor(tally)`` and ``ours(tally)``
    (each returns one rate and adds its answers to the side's tally):
    ``(samples, {"floor": tally, "ours": tally})``."""
    tallies = {"floor": new_tally(), "ours": new_tally()}
    out: dict = {"floor": [], "ours": []}
    for _ in range(rounds):
        out["floor"].append([floor(tallies["floor"])])
        out["ours"].append([ours(tallies["ours"])])
    return out, tallies


def _stop_floor(floor_clients: Clients, our_clients: Clients, eps: list[str], raw_pids: list[otp.Pid]) -> None:
    """Stop both sides' clients, ours first, then the floor's servers."""
    our_clients.stop()
    floor_clients.stop()
    stop_servers(eps, raw_pids)


# ------------------------------------------------------------ requests


def mabeam_request_client(parent: otp.Pid, index: int, n_agents: int, message: Any) -> None:
    rng = random.Random(index)
    clock = time.perf_counter

    def work(count: int, sweep: bool) -> tuple:
        targets = list(range(n_agents)) if sweep else []
        targets += [rng.randrange(n_agents) for _ in range(count)]
        ok, failed = 0, 0
        lat: list[float] = []
        errors: dict[str, int] = {}
        for agent_id in targets:
            t0 = clock()
            try:
                answer = mabeam.request(agent_id, message, timeout=REPLY_TIMEOUT_S)
            except (mabeam.CommsError, mabeam.AgentError) as exc:
                answer = None
                count_error(errors, exc)
            lat.append(clock() - t0)
            if answer == (agent_id, message):
                ok += 1
            else:
                failed += 1
        return ok, failed, lat, errors

    client_loop(parent, work)


def _describe_requests(e: dict) -> str:
    o, f = e["ours"], e["floor"]
    errors = f"; errors {o['errors']}" if o.get("errors") else ""
    return (
        f"{e['agents']} agents, {e['clients']} clients: success ours {_success(o)}, floor {_success(f)}; "
        f"per request median/p95 ours {_ms(o['p50_s'])}/{_ms(o['p95_s'])}, floor {_ms(f['p50_s'])}/{_ms(f['p95_s'])}"
        f"{errors}"
    )


@benchmark(
    "mabeam_requests",
    unit="req/s",
    floor=f"pyzmq DEALER/ROUTER, {AGENTS} procs",
    rounds=5,
    n=6000,
    warmup=100,
    quick=(3, 1600, 30),
    higher_is_better=True,
    requires=("mabeam:start", "mabeam:request"),
    target=("success >= 95%", lambda r: r["extra"]["ours"]["success"] >= 0.95),
    what=f"mabeam.request from {CLIENTS} client processes to random agents of {AGENTS}",
    describe=_describe_requests,
)
def bench_requests(run: Run) -> dict:
    """mabeam.request from client processes to random agents among 100."""
    sup = _start_app(AGENTS)
    eps = [endpoint(run.node, "agent", i) for i in range(AGENTS)]
    raw_pids = start_servers(raw_agent, eps)
    floor_clients = Clients(CLIENTS, raw_request_client, eps, REQUEST)
    our_clients = Clients(CLIENTS, mabeam_request_client, AGENTS, REQUEST)
    each = max(1, run.n // CLIENTS)
    # warm-up: every client reaches every agent once, then random requests
    batch(floor_clients, run.warmup, True, ours=False, tally=new_tally())
    batch(our_clients, run.warmup, True, ours=True, tally=new_tally())
    out, tallies = _tallied_rounds(
        lambda t: batch(floor_clients, each, False, ours=False, tally=t),
        lambda t: batch(our_clients, each, False, ours=True, tally=t),
        run.rounds,
    )
    _stop_floor(floor_clients, our_clients, eps, raw_pids)
    mabeam.stop(sup)
    out["extra"] = {
        "agents": AGENTS,
        "clients": CLIENTS,
        "floor": summary(tallies["floor"]),
        "ours": summary(tallies["ours"]),
    }
    return out


# ------------------------------------------------------------ consensus


def _decided(decision: Any, reached: bool, votes: Mapping) -> bool:
    return reached and decision == "approve" and len(votes) == VOTERS


def _describe_consensus(e: dict) -> str:
    return (
        f"{e['voters']} voters, majority: decided ours {_success(e['ours'])}, floor {_success(e['floor'])}; "
        f"ours one at a time: {e['ours_round_p50_s'] * 1e3:.1f} ms per round (median); the same votes "
        f"through mabeam.broadcast without a session: {e['broadcast_rounds_per_s']:,.0f} rounds/s; "
        f"{e['in_flight']} sessions in flight: {e['in_flight_rounds_per_s']:,.0f} rounds/s"
    )


@benchmark(
    "mabeam_consensus_rounds",
    unit="rounds/s",
    floor=f"pyzmq, {VOTERS} voter procs",
    rounds=5,
    n=100,
    warmup=10,
    quick=(3, 30, 5),
    higher_is_better=True,
    requires=("mabeam.coordination:run_consensus", "mabeam.coordination:run_consensus_async"),
    what=f"coordination.run_consensus (majority) among {VOTERS} agent processes, one round after another",
    describe=_describe_consensus,
)
def bench_consensus(run: Run) -> dict:
    """coordination.run_consensus rounds per second among 5 agent processes."""
    from mabeam import coordination  # here: every agent process imports this module
    from mabeam.coordination._session import HOSTS

    sup = _start_app(VOTERS)
    if otp.whereis(HOSTS) is None:  # a tree without the session hosts
        for spec in coordination.child_specs():
            otp.supervisor.start_child(sup, spec)
    ids = list(range(VOTERS))
    eps = [endpoint(run.node, "voter", i) for i in range(VOTERS)]
    raw_pids = start_servers(raw_agent, eps)
    ctx, socks, poller = dealers(eps)
    clock = time.perf_counter

    def raw(count: int, tally: dict) -> float:
        t0 = clock()
        ok = sum(_decided(*raw_consensus_round(socks, poller, ("proposal", i))) for i in range(count))
        dt = clock() - t0
        tally["ok"] += ok
        tally["failed"] += count - ok
        return ok / dt

    def ours(count: int, tally: dict) -> float:
        t0 = clock()
        ok = 0
        for i in range(count):
            t1 = clock()
            try:
                r = coordination.run_consensus(ids, ("proposal", i), timeout=REPLY_TIMEOUT_S)
                ok += _decided(r.decision, r.reached, r.votes)
            except coordination.CoordinationError as exc:
                count_error(tally["errors"], exc)
            tally["lat"].append(clock() - t1)
        inject(count)
        dt = clock() - t0
        tally["ok"] += ok
        tally["failed"] += count - ok
        return ok / dt

    raw(run.warmup, new_tally())
    ours(run.warmup, new_tally())
    out, tallies = _tallied_rounds(lambda t: raw(run.n, t), lambda t: ours(run.n, t), run.rounds)
    # for the note: the votes alone (no session process), and sessions in flight at once
    t0 = clock()
    for i in range(run.n):
        mabeam.broadcast(ids, ("proposal", i), timeout=REPLY_TIMEOUT_S, kind="vote")
    broadcast_rate = run.n / (clock() - t0)
    t0 = clock()
    decided = 0
    for start in range(0, run.n, IN_FLIGHT):
        sessions = [
            coordination.run_consensus_async(ids, ("proposal", i), timeout=REPLY_TIMEOUT_S)
            for i in range(start, min(run.n, start + IN_FLIGHT))
        ]
        decided += sum(_decided(r.decision, r.reached, r.votes) for r in (s.result(30) for s in sessions))
    in_flight_rate = decided / (clock() - t0)
    close_all(ctx, socks)
    stop_servers(eps, raw_pids)
    mabeam.stop(sup)
    out["extra"] = {
        "voters": VOTERS,
        "floor": summary(tallies["floor"]),
        "ours": summary(tallies["ours"]),
        "ours_round_p50_s": pct(tallies["ours"]["lat"], 0.5),
        "broadcast_rounds_per_s": broadcast_rate,
        "in_flight": IN_FLIGHT,
        "in_flight_rounds_per_s": in_flight_rate,
    }
    return out


# ------------------------------------------------------------ auctions


def mabeam_auction_client(parent: otp.Pid, index: int, bids: list) -> None:
    from mabeam import economics
    from mabeam.economics import auctions as rules

    clock = time.perf_counter
    expected = rules.clear_vickrey([rules.Bid(b, a) for b, a in bids], reserve=1.0)

    def work(count: int) -> tuple:
        created, create_lat = [], []
        errors: dict[str, int] = {}
        t0 = clock()
        for _ in range(count):
            t1 = clock()
            try:
                created.append(economics.create_auction("vickrey", "item", reserve=1.0, linger=0))
            except Exception as exc:  # noqa: BLE001 - counted: the success rate is the subject
                count_error(errors, exc)
            create_lat.append(clock() - t1)
        placed = dict.fromkeys(created, 0)
        t1 = clock()
        for bidder, amount in bids:
            for ref in created:
                try:
                    economics.place_bid(ref, bidder, amount, timeout=REPLY_TIMEOUT_S)
                    placed[ref] += 1
                except Exception as exc:  # noqa: BLE001
                    count_error(errors, exc)
        ok, t2 = 0, clock()
        for ref in created:
            try:
                outcome = economics.close(ref, timeout=REPLY_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001
                count_error(errors, exc)
                continue
            ok += placed[ref] == len(bids) and (outcome.winner, outcome.price) == (expected.winner, expected.price)
        return ok, count - ok, create_lat, errors, (t1 - t0, t2 - t1, clock() - t2)

    client_loop(parent, work)


def _describe_auctions(e: dict) -> str:
    o, f = e["ours"], e["floor"]
    errors = f"; errors {o['errors']}" if o.get("errors") else ""
    memory = e.get("open_memory")
    open_mem = (
        f"; {memory['auctions']:,} open auctions add {memory['added_mib']:+,.1f} MiB PSS to the node "
        f"({memory['before_mib']:,.0f} -> {memory['open_mib']:,.0f} MiB over {memory['processes']} processes; "
        f"private memory {memory['added_private_mib']:+,.1f} MiB, of the hosts and the board "
        f"{memory['added_holders_mib']:+,.1f} MiB)"
        if memory
        else ""
    )
    return (
        f"{e['concurrent']:,} auctions open at once ({e['clients']} clients, {e['bids']} bids each): "
        f"success ours {_success(o)}, floor {_success(f)}; create latency median/p95 ours "
        f"{_ms(o['p50_s'])}/{_ms(o['p95_s'])}, floor {_ms(f['p50_s'])}/{_ms(f['p95_s'])}; seconds per batch "
        f"creating/bidding/closing ours {_phases(o)}, floor {_phases(f)}{open_mem}{errors}"
    )


def _node_memory_kib(node: otp.Node) -> tuple[int, int, int, int]:
    """``(PSS, private memory, private memory of the economics hosts and
    the board, processes)`` of every OS process of the node (its
    processes, its zygote, the harness), in KiB.  PSS moves a little when
    other processes come and go (a shared page is charged to fewer or more
    of them), and the node's other processes free and take memory of their
    own meanwhile; the hosts and the board hold the auctions."""
    from mabeam import economics

    holders = {
        p.ospid for p in [*otp.partition_supervisor.children(economics.HOSTS), otp.whereis(economics.BOARD)] if p
    }
    pss, private, held, count = 0, 0, 0, 0
    for ospid in {*node.os_pids(), node.zygote_ospid, os.getpid()}:
        if ospid is None:
            continue
        try:
            fields = rollup(ospid)
        except OSError:  # gone meanwhile
            continue
        pss += fields["Pss"]
        private += uss_kib(fields)
        held += uss_kib(fields) if ospid in holders else 0
        count += 1
    return pss, private, held, count


def _open_auctions_memory(node: otp.Node, count: int) -> dict:
    """What ``count`` open auctions add to the node's PSS: measured before,
    with all of them open (created from here, linger 0), then they are
    closed.  Raises if one cannot be created or closed."""
    from mabeam import economics

    before, private_before, held_before, _ = _node_memory_kib(node)
    refs = [economics.create_auction("vickrey", "item", reserve=1.0, linger=0) for _ in range(count)]
    for ref in refs:
        economics.place_bid(ref, "b0", 2.0)
    opened, private_open, held_open, processes = _node_memory_kib(node)
    for ref in refs:
        economics.close(ref)
    return {
        "auctions": count,
        "before_mib": before / 1024,
        "open_mib": opened / 1024,
        "added_mib": (opened - before) / 1024,
        "added_private_mib": (private_open - private_before) / 1024,
        "added_holders_mib": (held_open - held_before) / 1024,
        "processes": processes,
    }


def _phases(side: dict) -> str:
    return "/".join(f"{x:.2f}" for x in side.get("phases_s", ()))


@benchmark(
    "mabeam_auctions",
    unit="auctions/s",
    floor=f"pyzmq, {CLIENTS} auctioneer procs",
    rounds=1,
    n=1000,
    warmup=16,
    quick=(2, 32, 8),
    higher_is_better=True,
    requires=("mabeam.economics:create_auction", "mabeam.economics:place_bid", "mabeam.economics:close"),
    target=("success > 99%", lambda r: r["extra"]["ours"]["success"] > 0.99),
    what="n sealed-bid (Vickrey) auctions open at once: create, explicit bids, close",
    describe=_describe_auctions,
)
def bench_auctions(run: Run) -> dict:
    """Sealed-bid auctions, all open at once: create + bids + close, per second."""
    sup = _start_app(0)
    eps = [endpoint(run.node, "auctioneer", i) for i in range(CLIENTS)]
    raw_pids = start_servers(raw_auctioneer, eps)
    floor_clients = Clients(CLIENTS, raw_auction_client, eps, BIDS)
    our_clients = Clients(CLIENTS, mabeam_auction_client, BIDS)
    each = max(1, run.n // CLIENTS)
    batch(floor_clients, max(1, run.warmup // CLIENTS), ours=False, tally=new_tally())
    batch(our_clients, max(1, run.warmup // CLIENTS), ours=True, tally=new_tally())
    out, tallies = _tallied_rounds(
        lambda t: batch(floor_clients, each, ours=False, tally=t),
        lambda t: batch(our_clients, each, ours=True, tally=t),
        run.rounds,
    )
    _stop_floor(floor_clients, our_clients, eps, raw_pids)
    memory = _open_auctions_memory(run.node, OPEN_FOR_MEMORY)
    mabeam.stop(sup)
    out["extra"] = {
        "concurrent": each * CLIENTS,
        "clients": CLIENTS,
        "bids": len(BIDS),
        "floor": summary(tallies["floor"]),
        "ours": summary(tallies["ours"]),
        "open_memory": memory,
    }
    return out
