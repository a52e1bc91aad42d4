"""Auction clearing rules (mabeam.economics.auctions): worked examples and properties."""

from __future__ import annotations

from dataclasses import replace
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.economics.auctions import (
    MAX_COMBINATORIAL_BIDS,
    AuctionClosed,
    Bid,
    BidTooLow,
    BundleBid,
    DuplicateBidder,
    EnglishState,
    InvalidAuctionParameter,
    InvalidBid,
    TooManyBids,
    clear_combinatorial,
    clear_dutch,
    clear_dutch_sealed,
    clear_english,
    clear_first_price,
    clear_vickrey,
    close_english,
    efficiency,
    optimal_allocation,
    place_bid,
    validate_bid,
)

# --------------------------------------------------------------------------- worked examples


def test_bids_are_validated_on_construction():
    for amount in (-1, float("nan"), float("inf"), "10", True):
        with pytest.raises(InvalidBid):
            Bid("a", amount)
    with pytest.raises(InvalidBid):
        Bid("", 1)
    with pytest.raises(InvalidBid):
        BundleBid("a", frozenset(), 1)
    assert BundleBid("a", {"x"}, 1).bundle == frozenset({"x"})


def test_english_ascending_with_increment_and_reserve():
    state = EnglishState(reserve=10, increment=1)
    with pytest.raises(BidTooLow) as err:
        place_bid(state, Bid("a", 9))
    assert err.value.minimum == 10 and err.value.amount == 9
    state = place_bid(state, Bid("a", 10))  # the reserve itself opens the auction
    state = place_bid(state, Bid("b", 11))
    with pytest.raises(BidTooLow) as err:
        validate_bid(state, Bid("a", 11.5))
    assert err.value.minimum == 12
    state = place_bid(state, Bid("a", 12.5))
    result = close_english(state)
    assert (result.winner, result.price) == ("a", 12.5)
    assert dict(result.payments) == {"a": 12.5, "b": 0.0}
    assert result.winning_bid == Bid("a", 12.5)
    assert [b.amount for b in result.bids] == [10, 11, 12.5]


def test_english_increment_tolerates_float_rounding():
    # 0.2 + 0.1 == 0.30000000000000004; a bid of 0.3 must still be accepted.
    result = clear_english([Bid("a", 0.2), Bid("b", 0.3)], increment=0.1)
    assert result.winner == "b"


def test_english_no_bids_and_closed_and_bad_parameters():
    result = close_english(EnglishState(reserve=5))
    assert result.winner is None and result.price is None and "reserve" in result.reason
    with pytest.raises(AuctionClosed):
        place_bid(replace(EnglishState(), closed=True), Bid("a", 1))
    with pytest.raises(InvalidAuctionParameter):
        EnglishState(increment=0)
    with pytest.raises(InvalidAuctionParameter):
        EnglishState(reserve=-1)


def test_dutch_clock_first_acceptor_wins_at_clock_price():
    # At 90 nobody accepts; at 80 b and c both would: b answered first.
    result = clear_dutch([100, 90, 80, 70], {"a": 75, "b": 85, "c": 85})
    assert (result.winner, result.price) == ("b", 80)
    assert dict(result.payments) == {"a": 0.0, "b": 80, "c": 0.0}
    # The clock stops at the reserve.
    none = clear_dutch([100, 90, 80, 70], [Bid("a", 75), Bid("b", 85)], reserve=82)
    assert none.winner is None and "reserve" in none.reason
    with pytest.raises(InvalidAuctionParameter):
        clear_dutch([100, 100, 90], {"a": 1})
    with pytest.raises(InvalidAuctionParameter):
        clear_dutch([], {"a": 1})


def test_dutch_from_sealed_acceptance_prices():
    bids = [Bid("a", 30), Bid("b", 50), Bid("c", 50)]
    continuous = clear_dutch_sealed(bids)
    assert (continuous.winner, continuous.price) == ("b", 50)
    # Discrete clock 100, 93, ..., 58, 51: c (52) is the only one to accept 51.
    discrete = clear_dutch_sealed([Bid("a", 30), Bid("b", 50), Bid("c", 52)], start=100, decrement=7)
    assert (discrete.winner, discrete.price) == ("c", 51)
    # Both a and c accept the 51 tick; a answered first, so it wins although c would pay more.
    tied = clear_dutch_sealed([Bid("a", 51.5), Bid("c", 52)], start=100, decrement=7)
    assert (tied.winner, tied.price) == ("a", 51)
    assert clear_dutch_sealed([Bid("a", 30)], start=100, decrement=7, reserve=40).winner is None
    with pytest.raises(InvalidAuctionParameter):
        clear_dutch_sealed(bids, decrement=1)


def test_first_price():
    result = clear_first_price([Bid("a", 10), Bid("b", 15), Bid("c", 15)])
    assert (result.winner, result.price) == ("b", 15)  # tie -> earliest
    assert clear_first_price([Bid("a", 10)], reserve=20).winner is None
    with pytest.raises(DuplicateBidder):
        clear_first_price([Bid("a", 10), Bid("a", 12)])


def test_vickrey():
    result = clear_vickrey([Bid("a", 10), Bid("b", 15), Bid("c", 12)])
    assert (result.winner, result.price) == ("b", 12)
    assert dict(result.payments) == {"a": 0.0, "b": 12, "c": 0.0}
    single = clear_vickrey([Bid("a", 10)], reserve=4)
    assert (single.winner, single.price) == ("a", 4)  # the reserve, not its own bid
    below = clear_vickrey([Bid("a", 10), Bid("b", 3)], reserve=5)
    assert (below.winner, below.price) == ("a", 5)
    tie = clear_vickrey([Bid("a", 15), Bid("b", 15)])
    assert (tie.winner, tie.price) == ("a", 15)
    empty = clear_vickrey([])
    assert empty.winner is None and empty.reason


def test_combinatorial_vcg_textbook_example():
    bids = [
        BundleBid("x", frozenset("A"), 6),
        BundleBid("y", frozenset("B"), 5),
        BundleBid("z", frozenset("AB"), 10),
    ]
    result = clear_combinatorial(bids)
    assert dict(result.allocation) == {"x": frozenset("A"), "y": frozenset("B")}
    assert result.welfare == 11
    # x: without x the best is z alone (10); the others get 5 with x -> pays 5. y: 10 - 6 = 4.
    assert dict(result.payments) == {"x": 5, "y": 4, "z": 0.0}
    assert result.winners == ("x", "y")

    bids[2] = BundleBid("z", frozenset("AB"), 12)
    result = clear_combinatorial(bids)
    assert dict(result.allocation) == {"z": frozenset("AB")}
    assert result.payments["z"] == 11


def test_combinatorial_bids_of_one_bidder_are_exclusive():
    bids = [
        BundleBid("x", frozenset("A"), 6),
        BundleBid("x", frozenset("B"), 5),
        BundleBid("y", frozenset("AB"), 8),
    ]
    result = clear_combinatorial(bids)
    assert dict(result.allocation) == {"y": frozenset("AB")}
    assert result.payments["y"] == 6


def test_combinatorial_ties_go_to_earliest_and_limits():
    result = clear_combinatorial([BundleBid("p", {"A"}, 7), BundleBid("q", {"A"}, 7)])
    assert result.winners == ("p",) and result.payments["p"] == 7
    assert clear_combinatorial([BundleBid("p", {"A"}, 0)]).reason
    too_many = [BundleBid(f"b{i}", {f"i{i}"}, 1) for i in range(MAX_COMBINATORIAL_BIDS + 1)]
    with pytest.raises(TooManyBids):
        clear_combinatorial(too_many)
    # The cap itself is solvable quickly (all disjoint: first leaf is optimal, bound prunes the rest).
    at_cap = clear_combinatorial(too_many[:MAX_COMBINATORIAL_BIDS])
    assert len(at_cap.winners) == MAX_COMBINATORIAL_BIDS and all(p == 0 for p in at_cap.payments.values())


def test_efficiency_single_item_and_combinatorial():
    result = clear_first_price([Bid("a", 7), Bid("b", 9)])
    assert efficiency(result, {"a": 10, "b": 8}) == pytest.approx(0.8)
    assert efficiency(result, {"a": 5, "b": 8}) == 1.0
    assert efficiency(clear_first_price([]), {"a": 10}) == 0.0
    assert efficiency(clear_first_price([]), {}) == 1.0
    bids = [BundleBid("x", {"A"}, 6), BundleBid("y", {"B"}, 5), BundleBid("z", {"A", "B"}, 10)]
    result = clear_combinatorial(bids)
    truth = {"x": {frozenset("A"): 3}, "y": {frozenset("B"): 3}, "z": {frozenset("AB"): 10}}
    assert efficiency(result, truth) == pytest.approx(0.6)
    with pytest.raises(InvalidAuctionParameter):
        efficiency(result, {"x": {frozenset("A"): 3}})


# --------------------------------------------------------------------------- properties

BIDDERS = ["p", "q", "r", "s", "t"]
ITEMS = ["A", "B", "C", "D"]

values_st = st.lists(st.integers(0, 100), min_size=1, max_size=6)
bundle_st = st.frozensets(st.sampled_from(ITEMS), min_size=1)
bundle_bid_st = st.builds(BundleBid, st.sampled_from(BIDDERS), bundle_st, st.integers(0, 60))


def _utility(result, bidder, value):
    return value - result.price if result.winner == bidder else 0


@settings(max_examples=150)
@given(values=values_st, reserve=st.integers(0, 50), i=st.integers(0, 5), deviation=st.integers(0, 120))
def test_vickrey_truthful_bidding_is_weakly_dominant(values, reserve, i, deviation):
    i %= len(values)
    names = [f"b{k}" for k in range(len(values))]
    truthful = [Bid(n, v) for n, v in zip(names, values)]
    lying = list(truthful)
    lying[i] = Bid(names[i], deviation)
    honest_u = _utility(clear_vickrey(truthful, reserve=reserve), names[i], values[i])
    lying_u = _utility(clear_vickrey(lying, reserve=reserve), names[i], values[i])
    assert honest_u >= lying_u
    assert honest_u >= 0  # individual rationality of truthful bidding


@settings(max_examples=150)
@given(values=values_st, reserve=st.integers(0, 50))
def test_sealed_winners_never_pay_more_than_their_bid(values, reserve):
    bids = [Bid(f"b{k}", v) for k, v in enumerate(values)]
    eligible = [b for b in bids if b.amount >= reserve]
    for clear in (clear_first_price, clear_vickrey, clear_dutch_sealed):
        result = clear(bids, reserve=reserve)
        if not eligible:
            assert result.winner is None and result.reason
            assert all(p == 0 for p in result.payments.values())
            continue
        top = max(b.amount for b in eligible)
        assert result.winning_bid.amount == top
        assert result.winning_bid == next(b for b in eligible if b.amount == top)  # earliest of the best
        assert reserve <= result.price <= result.winning_bid.amount
        assert result.payments[result.winner] == result.price
        assert sum(result.payments.values()) == result.price


@settings(max_examples=120)
@given(values=values_st, start=st.integers(50, 150), decrement=st.integers(1, 15), reserve=st.integers(0, 40))
def test_discrete_dutch_matches_clock_replay(values, start, decrement, reserve):
    bids = [Bid(f"b{k}", v) for k, v in enumerate(values)]
    schedule = [start - k * decrement for k in range(start // decrement + 1)]
    by_schedule = clear_dutch(schedule, bids, reserve=reserve)
    computed = clear_dutch_sealed(bids, start=start, decrement=decrement, reserve=reserve)
    assert (computed.winner, computed.price) == (by_schedule.winner, by_schedule.price)
    if computed.winner is not None:
        assert computed.price <= computed.winning_bid.amount


@settings(max_examples=120)
@given(amounts=st.lists(st.integers(0, 50), max_size=12), increment=st.integers(1, 5), reserve=st.integers(0, 20))
def test_english_accepts_exactly_the_bids_that_beat_the_minimum(amounts, increment, reserve):
    state = EnglishState(reserve=reserve, increment=increment)
    for k, amount in enumerate(amounts):
        bid = Bid(f"b{k % 3}", amount)
        minimum = state.minimum_bid
        if amount >= minimum:
            state = place_bid(state, bid)
        else:
            with pytest.raises(BidTooLow):
                place_bid(state, bid)
    accepted = [b.amount for b in state.bids]
    assert all(b - a >= increment for a, b in zip(accepted, accepted[1:]))
    result = close_english(state)
    if accepted:
        assert result.price == max(accepted) == result.winning_bid.amount
    else:
        assert result.winner is None


def _brute_force(bids, exclude=None):
    """Best welfare over every feasible subset of bids (disjoint bundles, one bid per bidder)."""
    live = [i for i, b in enumerate(bids) if b.bidder != exclude]
    best = 0
    for r in range(1, len(live) + 1):
        for subset in combinations(live, r):
            chosen = [bids[i] for i in subset]
            bidders = [b.bidder for b in chosen]
            items = [it for b in chosen for it in b.bundle]
            if len(set(bidders)) == len(bidders) and len(set(items)) == len(items):
                best = max(best, sum(b.amount for b in chosen))
    return best


@settings(max_examples=100, deadline=None)
@given(bids=st.lists(bundle_bid_st, max_size=8))
def test_vcg_allocation_is_welfare_maximal_and_payments_are_individually_rational(bids):
    result = clear_combinatorial(bids)
    optimum = _brute_force(bids)
    assert result.welfare == optimum
    assert optimal_allocation(bids)[0] == optimum
    # Feasible: disjoint bundles, one bundle per winner, each allocated bundle is one the winner bid for.
    items = [it for bundle in result.allocation.values() for it in bundle]
    assert len(items) == len(set(items))
    assert len(result.winners) == len(set(result.winners))
    for w in result.winning_bids:
        assert w in bids and result.allocation[w.bidder] == w.bundle
        payment = result.payments[w.bidder]
        assert 0 <= payment <= w.amount
        # Clarke pivot payment, recomputed by brute force.
        assert payment == _brute_force(bids, exclude=w.bidder) - (optimum - w.amount)
    for bidder, payment in result.payments.items():
        if bidder not in result.allocation:
            assert payment == 0
    assert efficiency(result, _truth(bids)) == 1.0


def _truth(bids):
    truth: dict[str, dict[frozenset[str], float]] = {}
    for b in bids:
        truth.setdefault(b.bidder, {})[b.bundle] = max(b.amount, truth.get(b.bidder, {}).get(b.bundle, 0))
    return truth


@settings(max_examples=100, deadline=None)
@given(
    others=st.lists(bundle_bid_st.filter(lambda b: b.bidder != "me"), max_size=6),
    bundle=bundle_st,
    value=st.integers(0, 60),
    report=st.integers(0, 80),
)
def test_vcg_single_minded_bidder_cannot_gain_by_misreporting(others, bundle, value, report):
    def utility(amount):
        result = clear_combinatorial([*others, BundleBid("me", bundle, amount)])
        won = value if result.allocation.get("me") == bundle else 0
        return won - result.payments.get("me", 0)

    assert utility(value) >= utility(report)


@settings(max_examples=100, deadline=None)
@given(declared=st.lists(bundle_bid_st, min_size=1, max_size=7), data=st.data())
def test_efficiency_is_between_zero_and_one(declared, data):
    result = clear_combinatorial(declared)
    truth = {
        bidder: {b: data.draw(st.integers(0, 60)) for b in {d.bundle for d in declared if d.bidder == bidder}}
        for bidder in {d.bidder for d in declared}
    }
    e = efficiency(result, truth)
    assert 0 <= e <= 1
