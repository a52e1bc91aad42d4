"""Continuous double-auction order book (mabeam.economics.orderbook)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.economics.orderbook import (
    BUY,
    SELL,
    DuplicateOrderId,
    InvalidOrder,
    Order,
    OrderBook,
    Trade,
    UnknownOrder,
)


def _book(*orders: Order) -> OrderBook:
    book = OrderBook()
    for o in orders:
        assert book.submit(o) == []
    return book


def test_market_buy_walks_the_book_in_price_time_priority():
    book = _book(
        Order("s1", "alice", SELL, 10, 101),
        Order("s2", "bob", SELL, 5, 100),
        Order("s3", "carol", SELL, 5, 100),
    )
    trades = book.submit(Order("b1", "dave", BUY, 12))
    assert [(t.sell_order_id, t.quantity, t.price) for t in trades] == [("s2", 5, 100), ("s3", 5, 100), ("s1", 2, 101)]
    assert all(t.buyer == "dave" and t.taker_order_id == "b1" for t in trades)
    assert book.remaining("s1") == 8
    assert book.depth(SELL) == [(101, 8)]
    assert "s2" not in book and len(book) == 1


def test_limit_order_trades_then_rests_remainder():
    book = _book(Order("s1", "a", SELL, 5, 100), Order("s2", "a", SELL, 5, 101))
    trades = book.submit(Order("b1", "b", BUY, 7, 100.5))
    assert trades == [Trade(100, 5, "b1", "s1", "b", "a", maker_order_id="s1", taker_order_id="b1")]
    assert book.best_bid() == 100.5 and book.best_ask() == 101
    assert book.spread() == pytest.approx(0.5)
    assert book.remaining("b1") == 2
    assert not book.is_crossed()


def test_trade_happens_at_the_resting_orders_price():
    book = _book(Order("b1", "buyer", BUY, 3, 105))
    (trade,) = book.submit(Order("s1", "seller", SELL, 3, 100))
    assert trade.price == 105 and trade.maker_order_id == "b1"
    assert len(book) == 0 and book.best_bid() is None


def test_market_order_remainder_is_cancelled_not_rested():
    book = _book(Order("s1", "a", SELL, 2, 50))
    trades = book.submit(Order("b1", "b", BUY, 5))
    assert sum(t.quantity for t in trades) == 2
    assert len(book) == 0 and book.remaining("b1") == 0
    assert book.submit(Order("b2", "b", BUY, 5)) == []  # empty book: nothing to hit


def test_non_crossing_limit_orders_rest_with_time_priority():
    book = _book(Order("b1", "x", BUY, 1, 99), Order("b2", "y", BUY, 2, 99), Order("b3", "z", BUY, 3, 98))
    assert [o.order_id for o in book.resting_orders(BUY)] == ["b1", "b2", "b3"]
    assert book.depth(BUY) == [(99, 3), (98, 3)]
    (t1, t2) = book.submit(Order("s1", "w", SELL, 2, 99))
    assert (t1.buy_order_id, t1.quantity, t2.buy_order_id, t2.quantity) == ("b1", 1, "b2", 1)


def test_cancel_and_errors():
    book = _book(Order("b1", "x", BUY, 4, 10), Order("b2", "x", BUY, 4, 10))
    book.submit(Order("s1", "y", SELL, 1, 10))
    cancelled = book.cancel("b1")
    assert cancelled.quantity == 3 and cancelled.order_id == "b1"
    assert book.depth(BUY) == [(10, 4)]
    with pytest.raises(UnknownOrder):
        book.cancel("b1")
    with pytest.raises(UnknownOrder):
        book.cancel("nope")
    with pytest.raises(DuplicateOrderId):
        book.submit(Order("s1", "y", SELL, 1, 10))  # ids are single use, even when filled
    book.cancel("b2")
    assert book.best_bid() is None and book.depth(BUY) == []
    for bad in (
        dict(side="hold", quantity=1, price=1),
        dict(side=BUY, quantity=0, price=1),
        dict(side=BUY, quantity=1.5, price=1),
        dict(side=BUY, quantity=1, price=0),
        dict(side=BUY, quantity=1, price=float("nan")),
    ):
        with pytest.raises(InvalidOrder):
            Order("o", "t", **bad)


# --------------------------------------------------------------------------- properties

order_st = st.tuples(
    st.sampled_from([BUY, SELL]),
    st.integers(1, 10),
    st.one_of(st.none(), st.integers(95, 105)),
    st.sampled_from(["t1", "t2", "t3"]),
)
op_st = st.one_of(order_st, st.tuples(st.just("cancel"), st.integers(0, 60)))


class _Reference:
    """A deliberately naive matching engine: resting orders in a list, best found by sorting."""

    def __init__(self):
        self.resting: list[list] = []  # [seq, order_id, trader, side, remaining, price]
        self.seq = 0

    def submit(self, oid, trader, side, qty, price):
        trades = []
        opposite = SELL if side == BUY else BUY
        while qty > 0:
            sign = 1 if opposite == SELL else -1
            candidates = sorted((r for r in self.resting if r[3] == opposite), key=lambda r: (sign * r[5], r[0]))
            if not candidates:
                break
            maker = candidates[0]
            if price is not None and (price < maker[5] if side == BUY else price > maker[5]):
                break
            q = min(qty, maker[4])
            trades.append((maker[1], oid, q, maker[5]))
            qty -= q
            maker[4] -= q
            if maker[4] == 0:
                self.resting.remove(maker)
        if qty and price is not None:
            self.resting.append([self.seq, oid, trader, side, qty, price])
        self.seq += 1
        return trades


@settings(max_examples=150)
@given(ops=st.lists(op_st, max_size=60))
def test_book_is_never_crossed_quantities_are_conserved_and_matches_reference(ops):
    book, ref = OrderBook(), _Reference()
    submitted: dict[str, Order] = {}
    filled: dict[str, int] = {}
    cancelled: dict[str, int] = {}
    discarded: dict[str, int] = {}
    all_trades: list[Trade] = []
    for k, op in enumerate(ops):
        if op[0] == "cancel":
            ids = list(submitted)
            if not ids:
                continue
            oid = ids[op[1] % len(ids)]
            if oid in book:
                cancelled[oid] = book.cancel(oid).quantity
                ref.resting = [r for r in ref.resting if r[1] != oid]
            else:
                with pytest.raises(UnknownOrder):
                    book.cancel(oid)
            continue
        side, qty, price, trader = op
        order = Order(f"o{k}", trader, side, qty, price)
        submitted[order.order_id] = order
        trades = book.submit(order)
        expected = ref.submit(order.order_id, trader, side, qty, price)
        assert [(t.maker_order_id, t.taker_order_id, t.quantity, t.price) for t in trades] == expected
        for t in trades:
            buy, sell = submitted[t.buy_order_id], submitted[t.sell_order_id]
            assert buy.side == BUY and sell.side == SELL
            assert (buy.price is None or t.price <= buy.price) and (sell.price is None or t.price >= sell.price)
            filled[t.buy_order_id] = filled.get(t.buy_order_id, 0) + t.quantity
            filled[t.sell_order_id] = filled.get(t.sell_order_id, 0) + t.quantity
        all_trades += trades
        if order.is_market:
            discarded[order.order_id] = qty - sum(t.quantity for t in trades)
        assert not book.is_crossed()
        # Depth agrees with the resting orders, and best prices are the ends of the depth.
        for s in (BUY, SELL):
            levels = book.depth(s)
            prices = [p for p, _ in levels]
            assert prices == sorted(prices, reverse=(s == BUY))
            assert sum(q for _, q in levels) == sum(o.quantity for o in book.resting_orders(s))
    # Both sides of every trade: total bought == total sold.
    bought = sum(t.quantity for t in all_trades)
    assert sum(v for oid, v in filled.items() if submitted[oid].side == BUY) == bought
    assert sum(v for oid, v in filled.items() if submitted[oid].side == SELL) == bought
    # Every order's quantity is accounted for exactly once.
    for oid, order in submitted.items():
        accounted = filled.get(oid, 0) + book.remaining(oid) + cancelled.get(oid, 0) + discarded.get(oid, 0)
        assert accounted == order.quantity, oid
