"""Auctions and markets held by economics hosts: the faults of hosting.

A host SIGKILLed with open auctions: whoever waits on them learns it at
once (typed), the host comes back empty and new auctions work.  An
exception in one auction's code fails that auction alone.  A slow bidder
in one auction does not hold up another auction on the same host.  A
closed auction does not stay forever.  Every wait is on a message."""

from __future__ import annotations

import os
import signal
import time
from functools import partial

import pytest
from economics_agents import break_auction, break_market, call_and_report, start_bidders
from helpers import down_of, recv, recv_tagged

import mabeam
import otp
from mabeam import economics as E

#: Generous: the machine is shared.  "At once" means well before the
#: callers' own timeouts (60 s).
AT_ONCE_S = 15.0


def ids_on(partition: int, count: int, prefix: str, kind: str = "auction") -> list[str]:
    """``count`` auction (or market) ids that the hosts place on ``partition``."""
    found: list[str] = []
    i = 0
    while len(found) < count:
        candidate = f"{prefix}-{i}"
        i += 1
        if otp.partition_supervisor.partition_of(E.HOSTS, (kind, candidate)) == partition:
            found.append(candidate)
    return found


def host_of(partition: int) -> otp.Pid:
    pid = otp.whereis((E.HOSTS, partition))
    assert pid is not None
    return pid


def event_of(topic, kind):
    return recv(lambda m: type(m) is tuple and m[:2] == ("$mabeam_event", topic) and m[2][0] == kind)[2]


# ------------------------------------------------------------------ a host SIGKILLed


def test_killed_host_fails_its_waiters_at_once_and_comes_back_empty(app):
    """A ``run`` caller (another process) and an async result waiter of two
    auctions on one host, both waiting on a bidder that holds its answer:
    SIGKILL the host and each gets ``AuctionLost`` ('killed') at once, not
    after its 60 s timeout.  An auction on the other host is untouched, a
    new auction placed at once works, and the restarted host is empty."""
    me = otp.self()
    holding = {"value": 3, "hold": True, "notify": me, "hold_for": 60}
    start_bidders({"slow": holding, "slow2": holding, "ten": {"value": 10}})
    run_id, async_id = ids_on(0, 2, "doomed")
    (safe_id,) = ids_on(1, 1, "safe")
    host = host_of(0)
    blocked = E.create_auction("vickrey", "x", participants=["slow", "ten"], bid_timeout=60, auction_id=run_id)
    assert blocked.pid == host
    runner = otp.spawn(call_and_report, me, "run", blocked, 60)
    assert recv_tagged("holding") == ("holding", "slow")
    waited = E.create_auction_async("vickrey", "y", participants=["slow2"], bid_timeout=60, auction_id=async_id)
    assert waited.pid == host
    assert recv_tagged("holding") == ("holding", "slow2")
    safe = E.create_auction("english", "z", reserve=1, auction_id=safe_id)
    E.place_bid(safe, "ten", 2)
    otp.supervisor.subscribe(E.HOSTS)

    ref = otp.monitor(host)
    started = time.monotonic()
    os.kill(host.ospid, signal.SIGKILL)
    with pytest.raises(E.AuctionLost) as lost:
        E.await_auction_result(waited, timeout=60)
    # the waiter's monitor may be set after the host died: OTP reports that as noproc
    assert lost.value.reason in ("killed", "noproc") and lost.value.auction_id == async_id
    _, failed = recv(lambda m: type(m) is tuple and m[0] in ("raised", "result"), timeout=60)
    assert type(failed.error) is E.AuctionLost and failed.error.reason == "killed"
    assert time.monotonic() - started < AT_ONCE_S
    assert down_of(ref).reason == "killed"
    assert isinstance(failed.error, E.EconomicsError)

    # the auction on the other host goes on; the lost ones are unknown now
    assert E.close(safe).winner == "ten"
    assert E.get_auction_state(run_id) is None
    with pytest.raises(E.UnknownAuction):
        E.run(run_id, 5)
    # a new auction placed now (its partition's host may still be restarting) works
    (fresh_id,) = ids_on(0, 1, "fresh")
    fresh = E.create_auction("first_price", "w", participants=["ten"], auction_id=fresh_id)
    assert E.run(fresh, 10).winner == "ten"
    # the partition supervisor restarted the host, empty, under the same name
    while True:
        msg = recv_tagged("$supervisor")
        if msg[2] == "started" and msg[3] == 0:
            break
    restarted = msg[4]
    assert restarted != host and otp.whereis((E.HOSTS, 0)) == restarted
    assert otp.ask(restarted, "count_items")["auctions"] == (1 if fresh.pid == restarted else 0)
    again = E.create_auction("vickrey", "v", participants=["ten"], auction_id=ids_on(0, 2, "again")[1])
    assert again.pid == restarted and E.run(again, 10).winner == "ten"
    for agent in ("slow", "slow2"):
        otp.send(mabeam.whereis_agent(agent), ("release",))
    assert runner is not None


# ------------------------------------------------------------------ an auction whose code raises


def test_a_bid_that_makes_the_auction_code_raise_fails_that_auction_alone(app):
    """A bundle of unhashable goods makes the combinatorial mechanism raise
    TypeError (not a rules error): that auction fails with
    ``AuctionCrashed``, raised to the bidder, stored for ``run`` and
    ``close``, shown on the board; another auction on the same host is
    unharmed, and the host is the same process."""
    broken_id, other_id = ids_on(0, 2, "crash")
    host = host_of(0)
    broken = E.create_auction("combinatorial", ["A", "B"], auction_id=broken_id)
    other = E.create_auction("vickrey", "lot", reserve=1, auction_id=other_id)
    E.place_bid(other, "a", 5)
    tag = E.get_auction_result_async(broken)
    with pytest.raises(E.AuctionCrashed) as info:
        E.place_bid(broken, "w", [([["A"]], 3)])
    crash = info.value.crash
    assert crash.type_name == "TypeError" and "unhashable" in crash.message
    assert info.value.auction_id == broken_id and isinstance(info.value, E.EconomicsError)
    with pytest.raises(E.AuctionCrashed):
        E.await_auction_result(broken, tag, timeout=10)  # the result waiter is told too
    with pytest.raises(E.AuctionCrashed):
        E.close(broken)
    with pytest.raises(E.AuctionCrashed):
        E.run(broken, 5)
    state = E.get_auction_state(broken)
    assert state["status"] == "failed" and state["error"].startswith("AuctionCrashed")
    # the other auction, same host, goes on
    E.place_bid(other, "b", 7)
    outcome = E.close(other)
    assert (outcome.winner, outcome.price) == ("b", 5)
    assert otp.whereis((E.HOSTS, 0)) == host and otp.is_alive(host)


def test_a_mechanism_that_raises_mid_run_fails_its_auction_alone(app):
    """A mechanism whose driven step raises (a bug, injected into the
    running host with ``otp.sys.replace_state``) fails its auction: the
    ``run`` caller gets ``AuctionCrashed`` at once; a mechanism whose
    clearing raises fails ``close`` the same way; the auctions beside them
    on the host clear as usual."""
    start_bidders({"ten": {"value": 10}, "seven": {"value": 7}})
    stepping_id, clearing_id, other_id = ids_on(1, 3, "broken")
    host = host_of(1)
    stepping = E.create_auction("vickrey", "s", participants=["ten", "seven"], auction_id=stepping_id)
    clearing = E.create_auction("vickrey", "c", auction_id=clearing_id)
    other = E.create_auction("vickrey", "o", participants=["ten", "seven"], auction_id=other_id)
    otp.sys.replace_state(host, partial(break_auction, stepping_id, "step"))
    otp.sys.replace_state(host, partial(break_auction, clearing_id, "clear"))
    with pytest.raises(E.AuctionCrashed) as info:
        E.run(stepping, 30)
    assert info.value.crash.type_name == "ZeroDivisionError"
    E.place_bid(clearing, "a", 3)
    with pytest.raises(E.AuctionCrashed) as info:
        E.close(clearing)
    assert "clear of a broken mechanism" in info.value.crash.message
    assert E.get_auction_state(clearing)["status"] == "failed"
    outcome = E.run(other, 30)
    assert (outcome.winner, outcome.price) == ("ten", 7)
    assert otp.whereis((E.HOSTS, 1)) == host


def test_a_market_whose_code_raises_fails_alone(app):
    """A market whose order book raises (a bug, injected into the running
    host) fails: the order's caller gets ``MarketCrashed``, later calls too,
    the board says ``failed``; the market beside it on the host trades on."""
    broken_id, other_id = ids_on(0, 2, "market", kind="market")
    host = host_of(0)
    broken = E.create_market("tin", market_id=broken_id)
    other = E.create_market("zinc", market_id=other_id)
    assert broken.pid == other.pid == host
    E.submit_order(broken, "s", "sell", 10, 5)
    otp.sys.replace_state(host, partial(break_market, broken_id, "submit"))
    with pytest.raises(E.MarketCrashed) as info:
        E.submit_order(broken, "b", "buy", 10, 1)
    assert info.value.crash.type_name == "ZeroDivisionError" and info.value.market_id == broken_id
    with pytest.raises(E.MarketCrashed):
        E.close_market(broken)
    assert E.get_market_state(broken)["status"] == "failed"
    E.submit_order(other, "s", "sell", 7, 2)
    assert [t.price for t in E.submit_order(other, "b", "buy", 8, 2).trades] == [7]
    assert otp.whereis((E.HOSTS, 0)) == host


# ------------------------------------------------------------------ auctions do not wait on each other


def test_a_slow_bidder_in_one_auction_does_not_delay_another_on_the_same_host(app):
    """Auction A waits on a bidder that holds its answer; auction B, on the
    same host, is created after A and clears first, while A still runs.
    A clears once the bidder is released."""
    me = otp.self()
    start_bidders({"slow": {"value": 4, "hold": True, "notify": me}, "ten": {"value": 10}, "seven": {"value": 7}})
    a_id, b_id = ids_on(0, 2, "order")
    a = E.create_auction_async("vickrey", "a", participants=["slow", "ten"], bid_timeout=60, auction_id=a_id)
    assert recv_tagged("holding") == ("holding", "slow")
    b = E.create_auction_async("vickrey", "b", participants=["ten", "seven"], bid_timeout=60, auction_id=b_id)
    assert a.pid == b.pid  # one host
    first = otp.receive(30, lambda m: type(m) is tuple and len(m) == 3 and m[0] == "$auction_result")
    assert first[1] == b and (first[2].winner, first[2].price) == ("ten", 7)
    assert E.get_auction_state(a)["status"] == "running"
    otp.send(mabeam.whereis_agent("slow"), ("release",))
    outcome = E.await_auction_result(a, timeout=30)
    assert (outcome.winner, outcome.price) == ("ten", 4)


def test_close_during_a_driven_round_clears_at_once(app):
    """``close`` while a driven auction waits on a slow bidder clears now,
    with the bids in so far; the answer still awaited is dropped, and the
    bidder is listed as timed out."""
    me = otp.self()
    start_bidders({"slow": {"value": 20, "hold": True, "notify": me}})
    auction = E.create_auction_async("first_price", "x", participants=["slow"], bid_timeout=60)
    assert recv_tagged("holding") == ("holding", "slow")
    E.place_bid(auction, "early", 5)
    outcome = E.close(auction)
    assert (outcome.winner, outcome.price) == ("early", 5)
    assert outcome.not_bidding == {"slow": "timeout"}
    assert E.await_auction_result(auction, timeout=10) == outcome
    otp.send(mabeam.whereis_agent("slow"), ("release",))


# ------------------------------------------------------------------ bounded memory


def test_closed_auctions_do_not_linger_without_bound(app):
    """A host keeps at most ``max_lingering`` closed auctions (lowered here
    to 2 in the running host): closing a third makes the oldest leave at
    once, whatever its linger.  An infinite linger is refused."""
    with pytest.raises(E.InvalidAuctionParameter):
        E.create_auction("vickrey", "x", linger=float("inf"))
    ids = ids_on(1, 3, "linger")
    host = host_of(1)

    def lower(h):
        h.max_lingering = 2
        return h

    otp.sys.replace_state(host, lower)
    mabeam.subscribe(E.auction_topic(ids[0]))
    for auction_id in ids:
        E.create_auction("vickrey", "x", auction_id=auction_id, linger=3600)
        E.place_bid(auction_id, "a", 1)
        E.close(auction_id)
    assert event_of(E.auction_topic(ids[0]), "auction_removed") == ("auction_removed", ids[0])
    assert E.get_auction_state(ids[0]) is None
    assert [E.get_auction_state(i)["status"] for i in ids[1:]] == ["closed", "closed"]
    assert otp.ask(host, "count_items") == {"auctions": 2, "markets": 0, "lingering": 2}
