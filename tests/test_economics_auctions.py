"""Auctions end to end: every kind held by an economics host (a few
processes under ``mabeam.economics.hosts``), with bids answered by real
agents from their own processes (``handle_bid`` / ``handle_offer``),
explicit bids, reserve prices, dying and slow bidders, board reads while
an auction waits, and the rules' typed errors raised in the caller.  The
faults of hosting (a host SIGKILLed, an auction whose code raises, a slow
bidder beside another auction) are in test_economics_hosts.py."""

from __future__ import annotations

import os
import signal
import time

import pytest
from economics_agents import ask_and_report, auction_runner, call_and_report, start_bidders
from helpers import down_of, recv, recv_tagged

import mabeam
import otp
from mabeam import economics as E
from mabeam._agent_registry import AGENT_SUPERVISOR
from mabeam._errors import MabeamError


def hosts():
    return set(otp.partition_supervisor.children(E.HOSTS))


def result_of(ref, timeout=15):
    msg = otp.receive(
        timeout, lambda m: isinstance(m, tuple) and len(m) == 3 and m[0] == "$auction_result" and m[1] == ref
    )
    return msg[2]


# ------------------------------------------------------------------ each kind, hand-worked prices


def test_vickrey_winner_pays_the_second_price(app):
    """Bids 10, 7, 3 (each agent bids its value from its own process): the
    10 wins and pays 7.  Called exactly as the demo calls it."""
    start_bidders({"ten": {"value": 10}, "seven": {"value": 7}, "three": {"value": 3}})
    auction = E.create_auction(
        "vickrey", item="slot-1", reserve=1.0, participants=["ten", "seven", "three"], bid_timeout=5
    )
    assert isinstance(auction, E.AuctionRef) and auction.kind == "vickrey"
    outcome = E.run(auction, timeout=10)
    assert (outcome.winner, outcome.price) == ("ten", 7)
    assert outcome.payments == {"ten": 7, "seven": 0.0, "three": 0.0}
    assert sorted((b.bidder, b.amount) for b in outcome.bids) == [("seven", 7), ("ten", 10), ("three", 3)]
    assert outcome.not_bidding == {} and outcome.rejected == {} and outcome.rounds == 1
    # the auction is held by an economics host, not by a process of its own
    assert auction.pid in hosts() and len(hosts()) >= 2
    assert auction.pid not in {mabeam.whereis_agent(a) for a in ("ten", "seven", "three")}
    # running again returns the stored outcome
    assert E.run(auction.auction_id, timeout=5) == outcome


def test_vickrey_reserve_prices(app):
    start_bidders({"ten": {"value": 10}, "three": {"value": 3}})
    # the only bid above the reserve pays the reserve, not its bid
    lone = E.run(E.create_auction("vickrey", "a", reserve=5, participants=["ten", "three"]), 10)
    assert (lone.winner, lone.price) == ("ten", 5)
    # nobody reaches the reserve: no winner, nobody pays
    none = E.run(E.create_auction("vickrey", "b", reserve=11, participants=["ten", "three"]), 10)
    assert none.winner is None and none.price is None
    assert none.reason == "no bid reached the reserve price" and set(none.payments.values()) == {0.0}


def test_first_price_winner_pays_its_bid(app):
    """Values 10, 7, 3, but the 10 shades its bid to 5: the 7 wins at 7."""
    start_bidders(
        {"ten": {"value": 10, "strategy": "shade", "shade": 0.5}, "seven": {"value": 7}, "three": {"value": 3}}
    )
    outcome = E.run(E.create_auction("first_price", "x", participants=["ten", "seven", "three"]), 10)
    assert (outcome.winner, outcome.price) == ("seven", 7)
    assert outcome.payments == {"ten": 0.0, "seven": 7, "three": 0.0}
    # with a reserve above every bid nobody wins
    assert E.run(E.create_auction("first_price", "y", reserve=12, participants=["seven", "three"]), 10).winner is None


def test_english_ascending_rounds(app):
    """Values 10, 7, 3, reserve 2, increment 1; each bidder bids the current
    minimum while it is within its value.  The minimum climbs 2, 3, ..., the
    3 drops out at 4, the 7 at 9: the 10 wins at 8 after 8 accepted rounds."""
    start_bidders({"ten": {"value": 10}, "seven": {"value": 7}, "three": {"value": 3}})
    auction = E.create_auction("english", "e", reserve=2, participants=["ten", "seven", "three"], increment=1)
    state = E.get_auction_state(auction)
    assert state["minimum_bid"] == 2 and state["high_bid"] is None and state["status"] == "open"
    with pytest.raises(E.BidTooLow) as info:  # raised in the caller, with the rules' fields
        E.place_bid(auction, "outsider", 1.5)
    assert (info.value.amount, info.value.minimum) == (1.5, 2)
    outcome = E.run(auction, 15)
    assert (outcome.winner, outcome.price) == ("ten", 8)
    assert [b.amount for b in outcome.bids] == [2, 3, 4, 5, 6, 7, 8]
    assert [b.bidder for b in outcome.bids] == ["ten", "seven", "ten", "seven", "ten", "seven", "ten"]
    assert outcome.rounds == 8
    assert E.get_auction_state(auction)["high_bidder"] == "ten"


def test_english_explicit_bids(app):
    auction = E.create_auction("english", "lot", reserve=5, increment=2)
    E.place_bid(auction, "a", 5)
    with pytest.raises(E.BidTooLow) as info:
        E.place_bid(auction.auction_id, "b", 6)  # addressed by id: found through the board
    assert info.value.minimum == 7
    E.place_bid(auction, "b", 7)
    # read your own write: the board shows the bid at once
    state = E.get_auction_state(auction)
    assert (state["high_bid"], state["high_bidder"], state["bids"]) == (7, "b", 2)
    outcome = E.close(auction)
    assert (outcome.winner, outcome.price) == ("b", 7)
    with pytest.raises(E.AuctionClosed):
        E.place_bid(auction, "c", 100)


def test_dutch_clock_from_agent_offers(app):
    """Clock 20, 18, 16, ...: the first agent to accept (value 10) wins at
    the clock price 10, on the sixth tick."""
    me = otp.self()
    start_bidders({"ten": {"value": 10}, "seven": {"value": 7, "notify": me}, "three": {"value": 3}})
    auction = E.create_auction("dutch", "d", participants=["ten", "seven", "three"], start=20, decrement=2)
    outcome = E.run(auction, 15)
    assert (outcome.winner, outcome.price, outcome.rounds) == ("ten", 10, 6)
    assert outcome.not_bidding == {"seven": "declined", "three": "declined"}
    offers = [recv_tagged("asked") for _ in range(6)]
    assert [m[2] for m in offers] == ["offer"] * 6 and [m[3]["clock"] for m in offers] == [20, 18, 16, 14, 12, 10]


def test_dutch_explicit_acceptance_price_wins_at_the_clock(app):
    start_bidders({"ten": {"value": 10}, "three": {"value": 3}})
    auction = E.create_auction("dutch", "d", participants=["ten"], start=20, decrement=2, reserve=4)
    E.place_bid(auction, "early", 15)  # accepts any price up to 15
    with pytest.raises(E.DuplicateBidder):
        E.place_bid(auction, "early", 16)
    outcome = E.run(auction, 15)
    assert (outcome.winner, outcome.price, outcome.rounds) == ("early", 14, 4)
    # a clock that reaches the reserve without a taker sells nothing
    nobody = E.run(E.create_auction("dutch", "d2", participants=["three"], start=9, decrement=1, reserve=4), 15)
    assert nobody.winner is None and nobody.rounds == 6  # 9, 8, 7, 6, 5, 4


def test_combinatorial_vcg(app):
    """x bids {A}: 5, y {B}: 4, z {A, B}: 8.  The optimum gives A to x and B
    to y (welfare 9); VCG: x pays 8 - (9 - 5) = 4, y pays 8 - (9 - 4) = 3."""
    start_bidders(
        {
            "x": {"bundles": [({"A"}, 5)]},
            "y": {"bundles": [({"B"}, 4)]},
            "z": {"bundles": [({"A", "B"}, 8)]},
        }
    )
    outcome = E.run(E.create_auction("combinatorial", {"A", "B"}, participants=["x", "y", "z"]), 10)
    assert set(outcome.winners) == {"x", "y"} and outcome.welfare == 9
    assert outcome.allocation == {"x": frozenset({"A"}), "y": frozenset({"B"})}
    assert outcome.payments == {"x": 4, "y": 3, "z": 0.0}
    # explicit bundle bids; items not for sale are refused in the caller
    auction = E.create_auction("combinatorial", ["A", "B"])
    with pytest.raises(E.InvalidBid):
        E.place_bid(auction, "w", [({"C"}, 3)])
    E.place_bid(auction, "w", {frozenset({"A", "B"}): 6})
    assert E.close(auction).payments == {"w": 0.0}  # alone: it imposes no externality


# ------------------------------------------------------------------ failures of bidders


def test_a_bidder_dying_mid_auction_is_recorded_and_the_auction_clears(app):
    pids = start_bidders({"ten": {"value": 10}, "killer": {"value": 50, "die_on_bid": True}, "seven": {"value": 7}})
    otp.supervisor.subscribe(AGENT_SUPERVISOR)
    started = time.monotonic()
    outcome = E.run(E.create_auction("vickrey", "x", participants=["ten", "killer", "seven"], bid_timeout=30), 40)
    assert time.monotonic() - started < 10  # the death is seen at once, not after the bid timeout
    assert outcome.not_bidding == {"killer": "killed"}
    assert (outcome.winner, outcome.price) == ("ten", 7)
    # the agent supervisor restarts it; the auction did not wait for that
    while True:
        msg = recv_tagged("$supervisor")
        if msg[2] == "started" and msg[3] == "killer":
            break
    assert msg[4] != pids["killer"]
    mabeam.await_status("killer", "running", timeout=10)


def test_agents_are_asked_at_once_and_answer_in_the_order_asked(app):
    """The auction's fan-out (one asynchronous request per agent): while
    the first agent holds its answer, every other request is out already;
    the answers come back in the order of the ids, each failure with its
    cause."""
    me = otp.self()
    pids = start_bidders(
        {
            "slow": {"value": 4, "hold": True, "notify": me},
            "ten": {"value": 10, "notify": me},
            "killer": {"die_on_bid": True},
            "raiser": {"raise_on_bid": True},
        },
        restart="temporary",
    )
    ids = ["slow", "ten", "ghost", "killer", "raiser"]
    otp.spawn(ask_and_report, me, ids, {"kind": "vickrey"}, "bid", 30)
    assert recv_tagged("holding") == ("holding", "slow")
    assert recv(lambda m: isinstance(m, tuple) and m[:2] == ("asked", "ten"))[2] == "bid"  # not after slow
    otp.send(pids["slow"], ("release",))
    assert recv_tagged("answers")[1] == [
        (None, 4),
        (None, 10),
        ("AgentNotRunning", "not_running"),
        ("AgentExited", "killed"),
        ("HookFailed", ("hook_raised", "raiser cannot bid")),
    ]


def test_unanswerable_bidders_are_listed_with_their_reason(app):
    me = otp.self()
    start_bidders(
        {
            "ten": {"value": 10},
            "raiser": {"raise_on_bid": True},
            "liar": {"strategy": "bad"},
            "shy": {"strategy": "decline"},
            "slow": {"hold": True, "notify": me, "hold_for": 10},
        }
    )
    ids = ["ten", "raiser", "liar", "shy", "slow", "ghost"]
    outcome = E.run(E.create_auction("first_price", "x", participants=ids, bid_timeout=2), 10)
    assert outcome.winner == "ten"
    assert outcome.not_bidding == {
        "raiser": ("hook_raised", "raiser cannot bid"),
        "shy": "declined",
        "slow": "timeout",
        "ghost": "not_running",
    }
    assert list(outcome.rejected) == ["liar"] and outcome.rejected["liar"].startswith("InvalidBid")
    assert recv_tagged("holding") == ("holding", "slow")
    otp.send(mabeam.whereis_agent("slow"), ("release",))


def test_board_reads_while_an_auction_waits_on_a_slow_bidder(app):
    me = otp.self()
    start_bidders({"ten": {"value": 10}, "slow": {"value": 7, "hold": True, "notify": me}})
    auction = E.create_auction_async("vickrey", "x", participants=["ten", "slow"], bid_timeout=20)
    assert recv_tagged("holding") == ("holding", "slow")
    # the auction process is blocked in its round; reads come from the board
    started = time.monotonic()
    state = E.get_auction_state(auction)
    assert state["status"] == "running" and state["bids"] == 0 and "bidders" not in state  # sealed
    assert [s["auction_id"] for s in E.list_auctions(status="running")] == [auction.auction_id]
    assert time.monotonic() - started < 5  # not after the 20 s the auction may wait
    otp.send(mabeam.whereis_agent("slow"), ("release",))
    outcome = result_of(auction)
    assert (outcome.winner, outcome.price) == ("ten", 7)
    state = E.get_auction_state(auction)
    assert state["status"] == "closed" and state["winner"] == "ten" and state["price"] == 7


def test_concurrent_auctions_on_shared_hosts(app):
    me = otp.self()
    start_bidders({f"b{i}": {"value": 10 + i} for i in range(4)} | {"slow": {"value": 1, "hold": True, "notify": me}})
    bidders = [f"b{i}" for i in range(4)]
    held = E.create_auction_async("vickrey", "held", participants=[*bidders, "slow"], bid_timeout=20)
    assert recv_tagged("holding") == ("holding", "slow")
    kinds = ["vickrey", "first_price", "english", "vickrey", "first_price", "english"]
    refs = [E.create_auction_async(k, f"lot-{i}", participants=bidders, increment=1) for i, k in enumerate(kinds)]
    assert {r.pid for r in [held, *refs]} <= hosts()
    # every other auction clears while the held one still waits on its bidder
    outcomes = {r.auction_id: result_of(r) for r in refs}
    expected = {"vickrey": 12, "first_price": 13, "english": 13}  # b3 (13) wins each
    for ref, kind in zip(refs, kinds):
        outcome = outcomes[ref.auction_id]
        assert outcome.winner == "b3" and outcome.price == pytest.approx(expected[kind])
    assert E.get_auction_state(held)["status"] == "running"
    otp.send(mabeam.whereis_agent("slow"), ("release",))
    assert result_of(held).price == 12


def test_auctions_run_from_other_processes(app):
    start_bidders({"ten": {"value": 10}, "seven": {"value": 7}})
    me = otp.self()
    runners = [otp.spawn(auction_runner, me, "vickrey", f"x{i}", ["ten", "seven"], {}) for i in range(3)]
    outcomes = [recv(lambda m, r=r: isinstance(m, tuple) and m[0] == "outcome" and m[1] == r)[2] for r in runners]
    assert [(o.winner, o.price) for o in outcomes] == [("ten", 7)] * 3
    assert len({o.auction_id for o in outcomes}) == 3


# ------------------------------------------------------------------ API and typed errors


def test_typed_errors_in_the_caller(app):
    with pytest.raises(E.InvalidAuctionParameter):
        E.create_auction("silent", "x")
    with pytest.raises(E.InvalidAuctionParameter):
        E.create_auction("vickrey", "x", reserve=-1)
    with pytest.raises(E.InvalidAuctionParameter):
        E.create_auction("dutch", "x")  # no clock
    # refused in the caller: no host holds anything
    assert [otp.ask(h, "count_items")["auctions"] for h in hosts()] == [0] * len(hosts())
    auction = E.create_auction("vickrey", "x", auction_id="fixed")
    with pytest.raises(E.DuplicateAuction):
        E.create_auction("vickrey", "y", auction_id="fixed")
    E.place_bid("fixed", "a", 3)
    with pytest.raises(E.DuplicateBidder):
        E.place_bid(auction, "a", 4)
    with pytest.raises(E.InvalidBid):
        E.place_bid(auction, "b", float("nan"))
    with pytest.raises(E.UnknownAuction):
        E.place_bid("nope", "a", 1)
    assert E.get_auction_state("nope") is None
    # the same typed error reaches a caller in another process
    english = E.create_auction("english", "e", reserve=5)
    otp.spawn(call_and_report, otp.self(), "place_bid", english.auction_id, "p", 2)
    status, failed = recv_tagged("raised")
    exc = failed.error
    assert type(exc) is E.BidTooLow and (exc.amount, exc.minimum) == (2, 5)
    assert isinstance(exc, E.AuctionError) and isinstance(exc, ValueError)
    assert isinstance(exc, E.EconomicsError) and isinstance(exc, MabeamError)


def test_async_result_and_lifecycle(app):
    start_bidders({"ten": {"value": 10}, "seven": {"value": 7}})
    auction = E.create_auction("vickrey", "x", participants=["ten", "seven"], linger=0.2)
    mabeam.subscribe(E.auction_topic(auction.auction_id))
    tag = E.get_auction_result_async(auction)
    outcome = E.run(auction, 10)
    assert result_of(tag) == outcome
    late = E.get_auction_result_async(auction)  # already closed: answered at once
    assert E.await_auction_result(auction, late) == outcome
    # it lingered, then left its host
    assert recv(
        lambda m: m[:2] == ("$mabeam_event", E.auction_topic(auction.auction_id)) and m[2][0] == "auction_removed"
    )
    assert E.get_auction_state(auction) is None
    with pytest.raises(E.UnknownAuction):
        E.run(auction, 5)


def test_min_reputation_and_capabilities(app):
    start_bidders({"good": {"value": 10}, "bad": {"value": 20}, "other": {"value": 5}})
    E.init_reputation("bad", 0.1)
    auction = E.create_auction("vickrey", "x", participants=["bad"], capabilities=["bidding"], min_reputation=0.4)
    with pytest.raises(E.IneligibleBidder):
        E.place_bid(auction, "bad", 30)
    outcome = E.run(auction, 10)
    assert outcome.not_bidding == {"bad": "ineligible"}
    assert (outcome.winner, outcome.price) == ("good", 5)  # 'good' and 'other' found by capability


# ------------------------------------------------------------------ bidders that exit while their bids stand


def kill(pid):
    """SIGKILL ``pid`` (no word, no cleanup) and wait until it is dead."""
    ref = otp.monitor(pid)
    os.kill(pid.ospid, signal.SIGKILL)
    assert down_of(ref).reason == "killed"


def test_english_high_bidder_killed_while_standing_high_loses_to_the_next_standing_bid(app):
    """Values 10 and 7, reserve 2, increment 1: the bids climb to ten's 8.
    When seven is asked for 9, ten (standing high at 8) is SIGKILLed; seven
    declines 9.  The dead high bidder does not win: seven's 7 does."""
    me = otp.self()
    pids = start_bidders({"ten": {"value": 10}, "seven": {"value": 7, "hold": True, "notify": me}}, restart="temporary")
    auction = E.create_auction_async(
        "english", "lot", reserve=2, increment=1, participants=["ten", "seven"], bid_timeout=30
    )
    while True:
        view = recv_tagged("asked")[3]
        assert recv_tagged("holding") == ("holding", "seven")
        if view["high_bidder"] == "ten" and view["minimum_bid"] > 7:
            break  # ten stands high at 8; seven is about to drop out
        otp.send(pids["seven"], ("release",))
    assert view["high_bid"] == 8
    kill(pids["ten"])
    otp.send(pids["seven"], ("release",))
    outcome = result_of(auction)
    assert (outcome.winner, outcome.price) == ("seven", 7)
    assert outcome.withdrawn == {"ten": "killed"} and outcome.payments == {"seven": 7}
    assert [(b.bidder, b.amount) for b in outcome.bids] == [("seven", 3), ("seven", 5), ("seven", 7)]
    state = E.get_auction_state(auction)
    assert (state["status"], state["winner"], state["price"]) == ("closed", "seven", 7)


def test_english_explicit_bids_of_a_killed_agent_are_withdrawn_at_close(app):
    """SIGKILL the standing high bidder, then close: the next standing bid
    wins; an auction whose every standing bid died fails with
    ``BiddersExited``, typed in the caller."""
    pids = start_bidders({"ten": {"value": 10}, "seven": {"value": 7}, "lone": {"value": 6}}, restart="temporary")
    auction = E.create_auction("english", "lot", reserve=5, increment=1)
    E.place_bid(auction, "seven", 7)
    E.place_bid(auction, "ten", 8)  # ten's agent stands behind its bid
    E.place_bid(auction, "outsider", 9)  # names no agent: its bid stands on its own
    E.place_bid(auction, "ten", 10)
    alone = E.create_auction("english", "only", reserve=5)
    E.place_bid(alone, "lone", 6)
    kill(pids["ten"])
    kill(pids["lone"])
    outcome = E.close(auction)
    assert (outcome.winner, outcome.price) == ("outsider", 9)
    assert outcome.withdrawn == {"ten": "killed"}
    assert outcome.payments == {"seven": 0.0, "outsider": 9}
    with pytest.raises(E.BiddersExited) as info:
        E.close(alone)
    assert info.value.exited == {"lone": "killed"} and info.value.auction_id == alone.auction_id
    assert isinstance(info.value, E.EconomicsError)
    with pytest.raises(E.BiddersExited):
        E.run(alone, 5)  # the stored failure
    state = E.get_auction_state(alone)
    assert state["status"] == "failed" and state["error"].startswith("BiddersExited")


def test_vickrey_killed_winner_is_withdrawn_and_the_price_recomputed(app):
    """Sealed bids 10 (explicit, backed by ten's agent), 7 and 3 (asked at
    run): ten is SIGKILLed before the auction clears, so seven wins and
    pays the second price among the live bids, 3."""
    pids = start_bidders({"ten": {"value": 10}, "seven": {"value": 7}, "three": {"value": 3}}, restart="temporary")
    auction = E.create_auction("vickrey", "slot", participants=["ten", "seven", "three"])
    E.place_bid(auction, "ten", 10)
    kill(pids["ten"])
    outcome = E.run(auction, 10)
    assert (outcome.winner, outcome.price) == ("seven", 3)
    assert outcome.withdrawn == {"ten": "killed"} and outcome.not_bidding == {}
    assert outcome.payments == {"seven": 3, "three": 0.0}


def test_dutch_killed_acceptance_is_withdrawn(app):
    """Acceptance prices 15 (ten) and 11 (seven) on a clock 20, 18, ...:
    ten would take the item at 14, but it is SIGKILLed before the close,
    so seven takes it at 10."""
    pids = start_bidders({"ten": {"value": 10}, "seven": {"value": 7}}, restart="temporary")
    auction = E.create_auction("dutch", "d", start=20, decrement=2, reserve=4)
    E.place_bid(auction, "ten", 15)
    E.place_bid(auction, "seven", 11)
    kill(pids["ten"])
    outcome = E.close(auction)
    assert (outcome.winner, outcome.price, outcome.withdrawn) == ("seven", 10, {"ten": "killed"})


def test_combinatorial_killed_winner_is_withdrawn_and_vcg_recomputed(app):
    """x {A}: 5, y {B}: 4, z {A, B}: 8; x and y would win (welfare 9).
    x is SIGKILLed: without it z wins both items (8) and pays the welfare
    the others lose, 4."""
    pids = start_bidders({"x": {}, "y": {}, "z": {}}, restart="temporary")
    auction = E.create_auction("combinatorial", ["A", "B"])
    E.place_bid(auction, "x", [({"A"}, 5)])
    E.place_bid(auction, "y", [({"B"}, 4)])
    E.place_bid(auction, "z", [({"A", "B"}, 8)])
    kill(pids["x"])
    outcome = E.close(auction)
    assert outcome.winners == ("z",) and outcome.allocation == {"z": frozenset({"A", "B"})}
    assert outcome.payments == {"y": 0.0, "z": 4} and outcome.withdrawn == {"x": "killed"}
