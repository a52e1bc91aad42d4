"""The continuous double-auction market: held by an economics host, orders
matched on arrival with price-time priority at the resting order's price,
partial fills, cancels, board reads, budget settlement, and the property
that no sequence of orders leaves the book crossed or loses a lot."""

from __future__ import annotations

import os
import signal
from decimal import Decimal

import pytest
from economics_agents import order_submitter, start_bidders
from helpers import down_of, recv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mabeam
import otp
from mabeam import economics as E
from mabeam.economics.orderbook import Order, OrderBook


def fills(result):
    return [(t.price, t.quantity, t.buyer, t.seller) for t in result.trades]


def test_crossing_orders_fill_at_the_resting_price(app):
    market = E.create_market("apples")
    assert market.pid in otp.partition_supervisor.children(E.HOSTS)  # held by an economics host
    rest = E.submit_order(market, "seller", "sell", 10, 5)
    assert rest.trades == () and rest.resting == 5
    taker = E.submit_order(market, "buyer", "buy", 12, 3)  # willing to pay 12; the ask was 10
    assert fills(taker) == [(10, 3, "buyer", "seller")]
    assert taker.trades[0].maker_order_id == rest.order_id and taker.trades[0].taker_order_id == taker.order_id
    assert (taker.filled, taker.resting, taker.dropped) == (3, 0, 0)
    # the other way round: a resting bid at 9 is hit by a sell at 8, at 9
    assert E.submit_order(market, "bidder", "buy", 9, 2).trades == ()
    assert E.get_market_state(market)["spread"] == 1
    assert fills(E.submit_order(market, "dumper", "sell", 8, 2)) == [(9, 2, "bidder", "dumper")]
    state = E.get_market_state(market)  # from the board, including our own writes
    assert state["asks"] == [(10, 2)] and state["bids"] == [] and state["last_price"] == 9
    assert (state["volume"], state["trade_count"], state["status"]) == (5, 2, "open")


def test_partial_fills(app):
    market = E.create_market("pears")
    E.submit_order(market, "s", "sell", 10, 5)
    first = E.submit_order(market, "b1", "buy", 10, 3)
    assert (first.filled, first.resting) == (3, 0)
    second = E.submit_order(market, "b2", "buy", 10, 4)  # only 2 left: the rest rests as a bid
    assert fills(second) == [(10, 2, "b2", "s")] and (second.filled, second.resting) == (2, 2)
    state = E.get_market_state(market.market_id)
    assert state["asks"] == [] and state["bids"] == [(10, 2)] and state["best_ask"] is None
    # a market order takes what is there and drops the rest (it never rests)
    sweep = E.submit_order(market, "s2", "sell", None, 5)
    assert fills(sweep) == [(10, 2, "b2", "s2")] and (sweep.filled, sweep.resting, sweep.dropped) == (2, 0, 3)
    assert E.get_market_state(market)["bids"] == []


def test_price_time_priority(app):
    market = E.create_market("plums")
    E.submit_order(market, "s1", "sell", 10, 2)
    E.submit_order(market, "s2", "sell", 10, 2)
    E.submit_order(market, "s3", "sell", 9, 1)
    E.submit_order(market, "s4", "sell", 11, 1)
    result = E.submit_order(market, "b", "buy", 10, 4)
    # best price first (9), then at 10 the earlier order (s1) before s2; 11 is too dear
    assert fills(result) == [(9, 1, "b", "s3"), (10, 2, "b", "s1"), (10, 1, "b", "s2")]
    assert E.get_market_state(market)["asks"] == [(10, 1), (11, 1)]
    assert [(t.seller, t.quantity) for t in E.list_market_trades(market)] == [("s3", 1), ("s1", 2), ("s2", 1)]


def test_cancel(app):
    market = E.create_market("figs")
    order = E.submit_order(market, "s", "sell", 10, 5, order_id="mine")
    assert order.order_id == "mine"
    E.submit_order(market, "b", "buy", 10, 2)
    with pytest.raises(E.NotOrderOwner):
        E.cancel_order(market, "mine", agent_id="b")
    cancelled = E.cancel_order(market, "mine", agent_id="s")
    assert (cancelled.order_id, cancelled.quantity, cancelled.price) == ("mine", 3, 10)  # what was left
    assert E.get_market_state(market)["asks"] == []
    with pytest.raises(E.UnknownOrder):
        E.cancel_order(market, "mine")
    with pytest.raises(E.DuplicateOrderId):
        E.submit_order(market, "s", "sell", 10, 1, order_id="mine")  # ids are single use
    with pytest.raises(E.UnknownOrder):
        E.cancel_order(market, "never")


def test_typed_errors_and_close(app):
    market = E.create_market("dates", market_id="dates", linger=0.2)
    with pytest.raises(E.DuplicateMarket):
        E.create_market("dates", market_id="dates")
    with pytest.raises(E.InvalidOrder):
        E.submit_order(market, "s", "sell", 10, 0)
    with pytest.raises(E.InvalidOrder):
        E.submit_order(market, "s", "hold", 10, 1)
    with pytest.raises(E.InvalidOrder):
        E.submit_order(market, "s", "sell", -1, 1)
    with pytest.raises(E.UnknownMarket):
        E.submit_order("no-such-market", "s", "sell", 10, 1)
    E.submit_order("dates", "s", "sell", 10, 3)
    E.submit_order("dates", "b", "buy", 8, 1)
    E.submit_order("dates", "b", "buy", 10, 1)
    assert [s["market_id"] for s in E.list_markets(status="open")] == ["dates"]
    mabeam.subscribe(E.market_topic("dates"))
    outcome = E.close_market(market)
    assert (outcome.volume, outcome.last_price, len(outcome.trades)) == (1, 10, 1)
    assert sorted((o.trader, o.side, o.quantity) for o in outcome.cancelled) == [("b", "buy", 1), ("s", "sell", 2)]
    assert E.close_market(market) == outcome
    with pytest.raises(E.MarketClosed):
        E.submit_order(market, "s", "sell", 10, 1)
    state = E.get_market_state(market)
    assert state["status"] == "closed" and state["bids"] == state["asks"] == []
    assert [s["market_id"] for s in E.list_markets(status="closed")] == ["dates"]  # our own write, at once
    # lingered, then left its host
    assert recv(lambda m: m[:2] == ("$mabeam_event", E.market_topic("dates")) and m[2][0] == "market_removed")
    assert E.get_market_state(market) is None
    with pytest.raises(E.InvalidMarketParameter):
        E.create_market("figs", linger=float("inf"))  # a closed market may not stay forever


def test_concurrent_traders_never_cross_the_book(app):
    market = E.create_market("nuts")
    me = otp.self()
    plans = {
        "t0": [("sell", 10 + i % 3, 2) for i in range(10)],
        "t1": [("buy", 9 + i % 4, 3) for i in range(10)],
        "t2": [("sell", None if i % 5 == 0 else 11, 1) for i in range(10)],
        "t3": [("buy", None if i % 4 == 0 else 12, 2) for i in range(10)],
    }
    traders = {otp.spawn(order_submitter, me, market, trader, orders): trader for trader, orders in plans.items()}
    results = []
    for _ in traders:
        results += recv(lambda m: isinstance(m, tuple) and m[0] == "submitted")[2]
    check_conservation(market, results, cancelled=[])
    assert len({r.order_id for r in results}) == 40


def check_conservation(market, results, cancelled):
    """Every lot submitted is filled (counted on both sides), resting,
    cancelled or dropped; and the book is not crossed."""
    state = E.get_market_state(market)
    bid, ask = state["best_bid"], state["best_ask"]
    assert bid is None or ask is None or bid < ask
    asks, bids = [p for p, _ in state["asks"]], [p for p, _ in state["bids"]]
    assert asks == sorted(set(asks)) and bids == sorted(set(bids), reverse=True)  # best level first
    trades = E.list_market_trades(market)
    traded = sum(t.quantity for t in trades)
    resting = sum(q for _, q in state["bids"]) + sum(q for _, q in state["asks"])
    submitted = sum(r.quantity for r in results)
    dropped = sum(r.dropped for r in results)
    assert submitted == 2 * traded + resting + sum(cancelled) + dropped
    assert state["volume"] == traded
    # each order's own account: filled as taker + filled as maker + the rest
    made: dict = {}
    for t in trades:
        made[t.maker_order_id] = made.get(t.maker_order_id, 0) + t.quantity
    for r in results:
        assert r.filled + r.resting + r.dropped == r.quantity
        assert made.get(r.order_id, 0) <= r.resting


orders = st.lists(
    st.one_of(
        st.tuples(
            st.just("order"),
            st.sampled_from(["buy", "sell"]),
            st.one_of(st.none(), st.integers(1, 8)),
            st.integers(1, 5),
        ),
        st.tuples(st.just("cancel"), st.integers(0, 30)),
    ),
    max_size=25,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=orders)
def test_property_never_crossed_and_quantities_conserved(app, ops):
    market = E.create_market("prop", linger=0)
    model = OrderBook()  # the pure rules, replayed here: the process must agree with them
    results, cancelled = [], []
    for op in ops:
        if op[0] == "order":
            _, side, price, qty = op
            result = E.submit_order(market, f"t{len(results) % 3}", side, price, qty)
            assert result.trades == tuple(model.submit(Order(result.order_id, result.trader, side, qty, price)))
            results.append(result)
        elif results:
            target = results[op[1] % len(results)].order_id
            try:
                cancelled.append(E.cancel_order(market, target).quantity)
            except E.UnknownOrder:
                assert target not in model
            else:
                model.cancel(target)
        state = E.get_market_state(market)
        assert state["best_bid"] is None or state["best_ask"] is None or state["best_bid"] < state["best_ask"]
    check_conservation(market, results, cancelled)
    E.close_market(market)


# ------------------------------------------------------------------ budget settlement


def test_settlement_moves_money_through_the_budget_service(app):
    E.open_budget("buyer", 100)
    E.open_budget("seller", 0)
    market = E.create_market("widgets", settle=True)
    E.submit_order(market, "seller", "sell", 10, 5)
    # the buy order holds 3 x 12 = 36, the fill costs 3 x 10 = 30, the rest is returned
    taker = E.submit_order(market, "buyer", "buy", 12, 3)
    assert fills(taker) == [(10, 3, "buyer", "seller")] and taker.settlement_errors == {}
    buyer = E.get_budget("buyer")
    assert (buyer.spent, buyer.reserved, buyer.available) == (30, 0, 70)
    assert E.get_budget("seller").total == 30
    # partial fill: 4 x 12 = 48 held, 2 x 10 = 20 spent, 2 x 12 = 24 stays held for the resting rest
    partial = E.submit_order(market, "buyer", "buy", 12, 4)
    assert (partial.filled, partial.resting) == (2, 2)
    buyer = E.get_budget("buyer")
    assert (buyer.spent, buyer.reserved, buyer.available) == (50, 24, 26)
    # a sell into the resting bid is paid at the bid's price (12); the hold shrinks
    E.submit_order(market, "seller", "sell", 11, 1)
    buyer = E.get_budget("buyer")
    assert (buyer.spent, buyer.reserved, buyer.available) == (62, 12, 26)
    assert E.get_budget("seller").total == 62
    # an order the buyer cannot pay for never reaches the book
    with pytest.raises(E.InsufficientFunds) as info:
        E.submit_order(market, "buyer", "buy", 10, 3)
    assert (info.value.requested, info.value.available) == (30, 26)
    assert E.get_market_state(market)["bids"] == [(12, 1)]
    # cancel releases the hold; so does the close for what still rests
    E.cancel_order(market, partial.order_id)
    assert E.get_budget("buyer").reserved == 0
    E.submit_order(market, "buyer", "buy", 0.1, 3)
    assert E.get_budget("buyer").reserved == Decimal("0.3")  # exact decimals, no float drift
    E.close_market(market)
    assert E.get_budget("buyer").reserved == 0 and E.get_budget("buyer").available == 38
    # settlement needs budgets and limit prices
    other = E.create_market("gadgets", settle=True)
    with pytest.raises(E.UnknownBudget):
        E.submit_order(other, "stranger", "sell", 5, 1)
    with pytest.raises(E.InvalidOrder):
        E.submit_order(other, "buyer", "buy", None, 1)


# ------------------------------------------------------------------ traders that exit


def test_resting_orders_of_a_trader_that_exits_are_withdrawn(app):
    """A resting order stands while its trader's agent lives: when the
    agent is SIGKILLed its orders leave the book (the buy order's hold is
    released), so nobody trades with a dead trader; orders of a trader that
    names no agent stay."""
    pids = start_bidders({"maker": {}, "buyer": {}}, restart="temporary")
    for trader, funds in (("maker", 0), ("buyer", 100), ("anon", 0), ("taker", 100)):
        E.open_budget(trader, funds)
    market = E.create_market("tin", settle=True)
    mabeam.subscribe(E.market_topic(market.market_id))
    sell = E.submit_order(market, "maker", "sell", 10, 5)
    bid = E.submit_order(market, "buyer", "buy", 8, 2)
    anon = E.submit_order(market, "anon", "sell", 12, 1)
    assert E.get_budget("buyer").reserved == 16
    for trader in ("maker", "buyer"):
        ref = otp.monitor(pids[trader])
        os.kill(pids[trader].ospid, signal.SIGKILL)
        assert down_of(ref).reason == "killed"
    withdrawn = {
        recv(lambda m: isinstance(m, tuple) and m[0] == "$mabeam_event" and m[2][0] == "withdrawn")[2][1:]
        for _ in range(2)
    }
    assert withdrawn == {(sell.order_id, "maker", "killed"), (bid.order_id, "buyer", "killed")}
    assert E.get_budget("buyer").reserved == 0  # the dead buyer's hold was released
    state = E.get_market_state(market)
    assert state["asks"] == [(12, 1)] and state["bids"] == []
    taker = E.submit_order(market, "taker", "buy", 12, 3)  # the dead maker's ask at 10 is gone
    assert fills(taker) == [(12, 1, "taker", "anon")] and taker.resting == 2
    outcome = E.close_market(market)
    assert sorted((o.order_id, o.trader, o.quantity) for o in outcome.withdrawn) == sorted(
        [(sell.order_id, "maker", 5), (bid.order_id, "buyer", 2)]
    )
    assert [o.trader for o in outcome.cancelled] == ["taker"] and anon.resting == 1
