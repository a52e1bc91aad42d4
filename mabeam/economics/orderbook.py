"""A continuous double-auction order book with price-time priority.

A continuous market matches each order on arrival, and the trade happens at
the price of the order that was already resting (the maker), so a posted
quote is a firm promise and a late order cannot improve on a price someone
already posted (as trading pairs at their midpoint at close would). That is
what :class:`OrderBook` does.

The book is an ordinary in-memory object: no processes, no I/O, no clock.
Time priority is arrival order at :meth:`OrderBook.submit`.

Rules:

* limit orders match against the opposite side while prices cross, then the
  remainder rests;
* market orders (``price=None``) match against whatever is there and any
  remainder is cancelled (immediate-or-cancel): a market order that rested
  would have no price to rest at;
* self-trades are allowed (no self-trade prevention);
* an order id may be used once, ever, so that trades and cancels are
  unambiguous.

Quantities are positive integers (lots), so conservation can be checked exactly.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, replace
from typing import Literal

from ._errors import EconomicsError

__all__ = [
    "BUY",
    "SELL",
    "Side",
    "OrderBookError",
    "InvalidOrder",
    "DuplicateOrderId",
    "UnknownOrder",
    "Order",
    "Trade",
    "OrderBook",
]

Side = Literal["buy", "sell"]
BUY: Side = "buy"
SELL: Side = "sell"


class OrderBookError(EconomicsError, ValueError):
    """Base class of every error raised by the order book."""


class InvalidOrder(OrderBookError):
    """An order is malformed: unknown side, non-positive quantity, bad price."""


class DuplicateOrderId(OrderBookError):
    """An order id was submitted twice; ids are single use."""


class UnknownOrder(OrderBookError):
    """A cancel named an order that is not resting (never submitted, filled, or cancelled)."""


@dataclass(frozen=True)
class Order:
    """A limit order (``price`` set) or a market order (``price`` is ``None``)."""

    order_id: str
    trader: str
    side: Side
    quantity: int
    price: float | None = None

    def __post_init__(self) -> None:
        if self.side not in (BUY, SELL):
            raise InvalidOrder(f"side must be 'buy' or 'sell', got {self.side!r}")
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or self.quantity <= 0:
            raise InvalidOrder(f"quantity must be a positive int, got {self.quantity!r}")
        if self.price is not None and (
            isinstance(self.price, bool)
            or not isinstance(self.price, (int, float))
            or not math.isfinite(self.price)
            or self.price <= 0
        ):
            raise InvalidOrder(f"a limit price must be a finite number > 0, got {self.price!r}")

    @property
    def is_market(self) -> bool:
        return self.price is None


@dataclass(frozen=True)
class Trade:
    """One fill. ``price`` is the maker's (resting order's) limit price."""

    price: float
    quantity: int
    buy_order_id: str
    sell_order_id: str
    buyer: str
    seller: str
    maker_order_id: str
    taker_order_id: str


class _Side:
    """One side of the book: price levels, each a FIFO queue of resting orders."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self.levels: dict[float, deque[Order]] = {}
        self.prices: list[float] = []  # ascending

    def best(self) -> float | None:
        if not self.prices:
            return None
        return self.prices[-1] if self.side == BUY else self.prices[0]

    def add(self, order: Order) -> None:
        assert order.price is not None
        level = self.levels.get(order.price)
        if level is None:
            level = self.levels[order.price] = deque()
            bisect.insort(self.prices, order.price)
        level.append(order)

    def drop_level(self, price: float) -> None:
        del self.levels[price]
        del self.prices[bisect.bisect_left(self.prices, price)]

    def in_priority_order(self) -> list[float]:
        return list(reversed(self.prices)) if self.side == BUY else list(self.prices)


class OrderBook:
    """Continuous double auction. Never crossed after :meth:`submit` returns."""

    def __init__(self) -> None:
        self._sides = {BUY: _Side(BUY), SELL: _Side(SELL)}
        self._resting: dict[str, tuple[Side, float]] = {}
        self._seen: set[str] = set()

    # -- queries

    def best_bid(self) -> float | None:
        return self._sides[BUY].best()

    def best_ask(self) -> float | None:
        return self._sides[SELL].best()

    def spread(self) -> float | None:
        bid, ask = self.best_bid(), self.best_ask()
        return None if bid is None or ask is None else ask - bid

    def is_crossed(self) -> bool:
        bid, ask = self.best_bid(), self.best_ask()
        return bid is not None and ask is not None and bid >= ask

    def depth(self, side: Side) -> list[tuple[float, int]]:
        """``(price, total resting quantity)`` per level, best price first."""
        book = self._sides[side]
        return [(p, sum(o.quantity for o in book.levels[p])) for p in book.in_priority_order()]

    def resting_orders(self, side: Side) -> list[Order]:
        """Resting orders with their *remaining* quantity, in matching priority."""
        book = self._sides[side]
        return [o for p in book.in_priority_order() for o in book.levels[p]]

    def remaining(self, order_id: str) -> int:
        """Unfilled resting quantity of ``order_id`` (0 if it is not resting)."""
        where = self._resting.get(order_id)
        if where is None:
            return 0
        side, price = where
        return next(o.quantity for o in self._sides[side].levels[price] if o.order_id == order_id)

    def __len__(self) -> int:
        return len(self._resting)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._resting

    # -- commands

    def submit(self, order: Order) -> list[Trade]:
        """Match ``order`` on arrival; rest a limit remainder, drop a market remainder."""
        if order.order_id in self._seen:
            raise DuplicateOrderId(f"order id {order.order_id!r} was already used")
        self._seen.add(order.order_id)
        opposite = self._sides[SELL if order.side == BUY else BUY]
        left = order.quantity
        trades: list[Trade] = []
        while left > 0:
            best = opposite.best()
            if best is None or not self._crosses(order, best):
                break
            level = opposite.levels[best]
            maker = level[0]
            qty = min(left, maker.quantity)
            trades.append(self._trade(order, maker, qty))
            left -= qty
            if qty == maker.quantity:
                level.popleft()
                del self._resting[maker.order_id]
                if not level:
                    opposite.drop_level(best)
            else:
                level[0] = replace(maker, quantity=maker.quantity - qty)
        if left > 0 and order.price is not None:
            self._sides[order.side].add(replace(order, quantity=left))
            self._resting[order.order_id] = (order.side, order.price)
        return trades

    def cancel(self, order_id: str) -> Order:
        """Remove a resting order; returns it with the quantity that was still unfilled."""
        where = self._resting.pop(order_id, None)
        if where is None:
            raise UnknownOrder(f"order {order_id!r} is not resting")
        side, price = where
        book = self._sides[side]
        level = book.levels[price]
        index = next(i for i, o in enumerate(level) if o.order_id == order_id)
        order = level[index]
        del level[index]
        if not level:
            book.drop_level(price)
        return order

    # -- helpers

    @staticmethod
    def _crosses(taker: Order, best_opposite: float) -> bool:
        if taker.price is None:
            return True
        return taker.price >= best_opposite if taker.side == BUY else taker.price <= best_opposite

    @staticmethod
    def _trade(taker: Order, maker: Order, qty: int) -> Trade:
        assert maker.price is not None
        buy, sell = (taker, maker) if taker.side == BUY else (maker, taker)
        return Trade(
            price=maker.price,
            quantity=qty,
            buy_order_id=buy.order_id,
            sell_order_id=sell.order_id,
            buyer=buy.trader,
            seller=sell.trader,
            maker_order_id=maker.order_id,
            taker_order_id=taker.order_id,
        )
