"""The market: a continuous double auction, one gen_server per market
(``restart='temporary'``) under the ``mabeam.economics`` dynamic supervisor.

The process owns its :class:`~mabeam.rules.orderbook.OrderBook`: orders
match on arrival with price-time priority, a trade happens at the resting
(maker) order's price, partial fills leave the remainder resting, and the
book is never crossed between two calls.  Every trade is kept in the
process (``market_trades``, and the :class:`MarketOutcome` of
``close_market``; the client side is in ``_market_api``); after each change the public state (depth per
price level, best bid and ask, last price, volume, the newest trades) is
written to the economics board, where ``market_state`` reads it from
the caller's replica, and published on :func:`market_topic`.

Budget settlement (``settle=True``).  A buy order holds ``limit price x
quantity`` in the buyer's budget (``mabeam.budgets``) before it reaches the
book, so an order the buyer cannot pay for raises ``InsufficientFunds`` in
the caller and never trades.  Each fill spends the trade's cost from the
hold and keeps the rest held for the resting remainder, in one atomic
budget operation; the seller's budget receives the proceeds; a cancel or the
close releases what is still held.  Sellers need a budget, buy orders a
limit price.  Amounts are exact decimals (``to_money``).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import otp

from ..rules.orderbook import BUY, SELL, DuplicateOrderId, InvalidOrder, Order, OrderBook, OrderBookError, Trade
from . import _wire

__all__ = [
    "MARKETS_TOPIC",
    "MarketServer",
    "OrderResult",
    "MarketOutcome",
    "MarketClosed",
    "NotOrderOwner",
    "market_key",
    "market_topic",
    "DEFAULT_LINGER",
]

#: Lifecycle events of every market: ``('market_created', view)``, ``('market_closed', outcome)``.
MARKETS_TOPIC = "mabeam.markets"
DEFAULT_LINGER = 30.0
#: How many of the newest trades the board snapshot shows.
RECENT_TRADES = 50


class MarketClosed(OrderBookError):
    """The market is closed: it takes no more orders or cancels."""


class NotOrderOwner(OrderBookError):
    """A trader tried to cancel another trader's order."""


def market_key(market_id: Any) -> tuple:
    return ("market", market_id)


def market_topic(market_id: Any) -> tuple:
    """The pub/sub topic of one market: ``('order', order_id, side, price,
    quantity)``, ``('trade', trade)``, ``('cancel', order_id)``,
    ``('market_closed', outcome)``."""
    return ("mabeam.market", market_id)


@dataclass(frozen=True)
class OrderResult:
    """What happened to a submitted order: its ``trades`` (each at the
    maker's price), the quantity ``filled``, still ``resting`` in the book,
    and ``dropped`` (the unfilled rest of a market order, which never
    rests).  ``settlement_errors`` says why a budget transfer failed."""

    market_id: Any
    order_id: Any
    trader: Any
    side: str
    price: float | None
    quantity: int
    trades: tuple
    filled: int
    resting: int
    dropped: int
    settlement_errors: dict
    seq: int


@dataclass(frozen=True)
class MarketOutcome:
    """A closed market: every trade, the volume, the last price, the orders
    that were still resting (cancelled by the close, with the quantity left)."""

    market_id: Any
    item: Any
    trades: tuple
    volume: int
    last_price: float | None
    cancelled: tuple
    settlement_errors: dict
    duration: float
    seq: int = 0


class _Market:
    def __init__(self, spec: dict) -> None:
        self.market_id = spec["market_id"]
        self.item = spec["item"]
        self.settle = bool(spec.get("settle", False))
        self.linger = spec.get("linger", DEFAULT_LINGER)
        self.book = OrderBook()
        self.trades: list[Trade] = []
        self.owners: dict = {}  # every order id ever used -> trader
        self.holds: dict = {}  # buy order id -> (buyer, reservation id, limit as money) while it rests
        self.holds_made = itertools.count(1)
        self.orders = itertools.count(1)
        self.errors: dict = {}
        self.status = "open"
        self.seq = 0
        self.outcome: MarketOutcome | None = None
        self.created = time.monotonic()
        self.deadline: float | None = None

    def action(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def public(self) -> dict:
        book = self.book
        return {
            "market_id": self.market_id,
            "item": self.item,
            "status": self.status,
            "settle": self.settle,
            "best_bid": book.best_bid(),
            "best_ask": book.best_ask(),
            "spread": book.spread(),
            "bids": book.depth(BUY),
            "asks": book.depth(SELL),
            "resting": len(book),
            "last_price": self.trades[-1].price if self.trades else None,
            "volume": sum(t.quantity for t in self.trades),
            "trade_count": len(self.trades),
            "recent_trades": self.trades[-RECENT_TRADES:],
            "seq": self.seq,
        }


class MarketServer(otp.GenServer):
    def init(self, spec: dict) -> Any:
        st = _Market(spec)
        try:
            otp.Registry.register(_wire.BOARD, market_key(st.market_id), st.public(), {"type": "market"})
        except otp.AlreadyRegistered:
            return otp.Stop(("duplicate_market", st.market_id))
        _wire.event(MARKETS_TOPIC, ("market_created", st.public()))
        _wire.emit(("market", "created"), {"count": 1}, {"market_id": st.market_id})
        return st

    def handle_call(self, request: tuple, from_: tuple, st: _Market) -> Any:
        op = request[0]
        try:
            if op == "order":
                answer = self._order(st, *request[1:])
            elif op == "cancel":
                answer = self._cancel(st, *request[1:])
            elif op == "close":
                answer = (self._close(st) if st.outcome is None else st.outcome, st.seq)
            elif op == "trades":
                answer = list(st.trades)
            elif op == "$view":
                answer = st.public()
            else:
                raise ValueError(f"unknown market request {op!r}")
        except (ValueError, otp.OTPError) as exc:  # the rules' errors, or a budget service that did not answer
            return otp.Reply(_wire.err(exc), st, st.action())
        return otp.Reply(_wire.ok(answer), st, st.action())

    def handle_info(self, msg: Any, st: _Market) -> Any:
        if msg == "timeout" and st.outcome is not None and st.action() == 0.0:
            return otp.Stop("normal", st)
        return otp.NoReply(st, st.action())

    # ------------------------------------------------------------ orders

    def _order(self, st: _Market, trader: Any, side: str, price: Any, quantity: int, order_id: Any) -> OrderResult:
        if st.outcome is not None:
            raise MarketClosed(f"market {st.market_id!r} is closed")
        if order_id is None:
            order_id = f"o{next(st.orders)}"
            while order_id in st.owners:
                order_id = f"o{next(st.orders)}"
        elif order_id in st.owners:
            raise DuplicateOrderId(f"order id {order_id!r} was already used")
        order = Order(order_id, trader, side, quantity, price)  # the rules validate it: InvalidOrder
        if st.settle:
            self._fund(st, order)
        trades = st.book.submit(order)
        st.owners[order_id] = trader
        st.trades.extend(trades)
        errors = self._settle(st, order, trades) if st.settle else {}
        filled = sum(t.quantity for t in trades)
        resting = st.book.remaining(order_id)
        st.seq += 1
        _wire.post(market_key(st.market_id), st.public())
        topic = market_topic(st.market_id)
        _wire.event(topic, ("order", order_id, side, price, quantity))
        for trade in trades:
            _wire.event(topic, ("trade", trade))
            _wire.emit(
                ("market", "trade"), {"price": trade.price, "quantity": trade.quantity}, {"market_id": st.market_id}
            )
        return OrderResult(
            st.market_id, order_id, trader, side, price, quantity, tuple(trades), filled, resting,
            quantity - filled - resting, errors, st.seq,
        )  # fmt: skip

    def _fund(self, st: _Market, order: Order) -> None:
        """Settlement: hold a buy order's cost; check that a seller has a budget."""
        from ._budgets import _ask, reserve_funds, to_money

        if order.side == SELL:
            _ask("get", order.trader)  # UnknownBudget in the caller
            return
        if order.price is None:
            raise InvalidOrder("with budget settlement a buy order needs a limit price")
        limit = to_money(order.price)
        rid = f"market:{st.market_id}:{order.order_id}:{next(st.holds_made)}"
        reserve_funds(order.trader, rid, limit * order.quantity)  # InsufficientFunds in the caller
        st.holds[order.order_id] = (order.trader, rid, limit)

    def _settle(self, st: _Market, order: Order, trades: list) -> dict:
        """Move the money of ``trades``: each buy order involved spends its
        fills and keeps its resting rest held (atomically); sellers are paid."""
        from ._budgets import budget_batch, deposit_funds, to_money

        cost: dict = {}
        proceeds: dict = {}
        for t in trades:
            money = to_money(t.price) * t.quantity
            cost[t.buy_order_id] = cost.get(t.buy_order_id, 0) + money
            proceeds[t.seller] = proceeds.get(t.seller, 0) + money
        if order.side == BUY and order.order_id not in cost:
            cost[order.order_id] = 0  # nothing filled: the hold stays as it is
        errors: dict = {}
        for oid, spent in cost.items():
            buyer, rid, limit = st.holds.pop(oid)
            left = st.book.remaining(oid)
            if spent == 0 and left:
                st.holds[oid] = (buyer, rid, limit)
                continue
            steps: list = [("commit", rid, spent)]
            if left:
                new_rid = f"market:{st.market_id}:{oid}:{next(st.holds_made)}"
                steps.append(("reserve", new_rid, limit * left))
                st.holds[oid] = (buyer, new_rid, limit)
            self._budget(st, errors, ("buy", oid), budget_batch, buyer, steps)
        for seller, money in proceeds.items():
            self._budget(st, errors, ("sell", order.order_id, seller), deposit_funds, seller, money)
        return errors

    @staticmethod
    def _budget(st: _Market, errors: dict, what: tuple, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except (ValueError, otp.OTPError) as exc:  # the trade stands; the failure is reported
            errors[what] = f"{type(exc).__name__}: {exc}"
            st.errors[what] = errors[what]

    def _release(self, st: _Market, order_id: Any, errors: dict) -> None:
        if order_id in st.holds:
            from ._budgets import release_funds

            buyer, rid, _ = st.holds.pop(order_id)
            self._budget(st, errors, ("release", order_id), release_funds, buyer, rid)

    def _cancel(self, st: _Market, order_id: Any, trader: Any) -> tuple:
        if st.outcome is not None:
            raise MarketClosed(f"market {st.market_id!r} is closed")
        owner = st.owners.get(order_id)
        if trader is not None and order_id in st.book and owner != trader:
            raise NotOrderOwner(f"order {order_id!r} belongs to {owner!r}, not {trader!r}")
        cancelled = st.book.cancel(order_id)  # UnknownOrder if it is not resting
        self._release(st, order_id, {})
        st.seq += 1
        _wire.post(market_key(st.market_id), st.public())
        _wire.event(market_topic(st.market_id), ("cancel", order_id))
        return cancelled, st.seq

    def _close(self, st: _Market) -> MarketOutcome:
        cancelled = []
        for side in (BUY, SELL):
            for order in st.book.resting_orders(side):
                cancelled.append(st.book.cancel(order.order_id))
                self._release(st, order.order_id, {})
        st.status = "closed"
        st.seq += 1
        st.outcome = MarketOutcome(
            st.market_id,
            st.item,
            tuple(st.trades),
            sum(t.quantity for t in st.trades),
            st.trades[-1].price if st.trades else None,
            tuple(cancelled),
            dict(st.errors),
            time.monotonic() - st.created,
            st.seq,
        )
        st.deadline = time.monotonic() + st.linger
        _wire.post(market_key(st.market_id), st.public())
        _wire.event(market_topic(st.market_id), ("market_closed", st.outcome))
        _wire.event(MARKETS_TOPIC, ("market_closed", st.outcome))
        _wire.emit(("market", "closed"), {"trades": len(st.trades)}, {"market_id": st.market_id})
        return st.outcome
