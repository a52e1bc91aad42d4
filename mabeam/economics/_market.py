"""The market: a continuous double auction, as state inside a host process
(see :mod:`._host`).

The market owns its :class:`~mabeam.economics.orderbook.OrderBook`: orders
match on arrival with price-time priority, a trade happens at the resting
(maker) order's price, partial fills leave the remainder resting, and the
book is never crossed between two requests.  Every trade is kept in the
market (``list_market_trades``, and the :class:`MarketOutcome` of
``close_market``); after each change the public state (depth per price
level, best bid and ask, last price, volume, the newest trades) is written
to the economics board, where ``get_market_state`` reads it from the caller's
replica, and published on :func:`market_topic` (in the host's batches:
see :mod:`._board`).

A resting order stands while its trader lives.  When the trader id names a
running agent, the market monitors the agent's process from its first
order that rests in the book; when that process exits, its resting orders leave the book
(their holds released), ``('withdrawn', order_id, trader, reason)`` is
published for each, and the close lists them in ``MarketOutcome.withdrawn``.
Deaths already queued when an order arrives are handled before it matches,
so nobody trades with an order whose trader the market knows is dead.  A
trader id that names no agent has no process to watch: its orders stay.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import otp

from .._agent import agent_name
from ._backers import Backers
from ._budget_api import apply_budget_batch, deposit_funds, release_funds, require_budget, reserve_funds, to_money
from ._budget_server import BudgetStep, Commit, Reserve
from ._errors import EconomicsError, MarketCrashed
from ._hosting import DEFAULT_LINGER, Hosted, HostSide
from .budgets import Amount
from .orderbook import BUY, SELL, DuplicateOrderId, InvalidOrder, Order, OrderBook, OrderBookError, Side, Trade

__all__ = [
    "MARKETS_TOPIC",
    "Market",
    "MarketSpec",
    "OrderResult",
    "MarketOutcome",
    "Cancelled",
    "MarketClosed",
    "InvalidMarketParameter",
    "NotOrderOwner",
    "DuplicateMarket",
    "UnknownMarket",
    "market_key",
    "market_topic",
    "DEFAULT_LINGER",
]

#: Lifecycle events of every market: ``('market_created', view)``, ``('market_closed', outcome)``.
MARKETS_TOPIC = "mabeam.markets"
#: How many of the newest trades the board snapshot shows.
RECENT_TRADES = 50


class MarketClosed(OrderBookError):
    """The market is closed: it takes no more orders or cancels."""


class InvalidMarketParameter(OrderBookError):
    """A market parameter is unusable (``linger``)."""


class NotOrderOwner(OrderBookError):
    """A trader tried to cancel another trader's order."""


class DuplicateMarket(EconomicsError):
    """A market with this id is already running."""


class UnknownMarket(EconomicsError, LookupError):
    """No market with this id is running (never created, or it left after
    its linger time, or it was lost with its host)."""


def market_key(market_id: Any) -> tuple:
    return ("market", market_id)


def market_topic(market_id: Any) -> tuple:
    """The pub/sub topic of one market: ``('order', order_id, side, price,
    quantity)``, ``('trade', trade)``, ``('cancel', order_id)``,
    ``('withdrawn', order_id, trader, reason)``, ``('market_closed',
    outcome)``, and ``('market_removed', market_id)`` when it leaves."""
    return ("mabeam.market", market_id)


@dataclass(frozen=True)
class MarketSpec:
    """What a market starts from."""

    market_id: Any
    item: Any
    settle: bool = False
    linger: float = DEFAULT_LINGER


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
    that were still resting (cancelled by the close, with the quantity
    left), and those ``withdrawn`` earlier because their trader's agent
    exited (with the quantity left then)."""

    market_id: Any
    item: Any
    trades: tuple
    volume: int
    last_price: float | None
    cancelled: tuple
    settlement_errors: dict
    duration: float
    seq: int = 0
    withdrawn: tuple = ()


class Cancelled(NamedTuple):
    """The answer to ``cancel``: the order with its unfilled quantity, and
    the board ``seq`` that shows it gone (read-your-writes)."""

    order: Order
    seq: int


class _Hold(NamedTuple):
    """The funds a resting buy order holds in its buyer's budget."""

    buyer: Any
    reservation_id: str
    limit: Amount


class Market(Hosted):
    """One market in its host (see the module doc)."""

    kind_of_item: ClassVar[str] = "market"
    # The rules' errors, and a budget service that did not answer: both are
    # the caller's answer, the market carries on.
    errors: ClassVar[tuple[type[BaseException], ...]] = (ValueError, otp.OTPError)

    def __init__(self, host: HostSide, spec: MarketSpec, serial: int) -> None:
        super().__init__(host, spec.market_id, serial, spec.linger)
        self.market_id = spec.market_id
        self.item = spec.item
        self.settle = spec.settle
        self.book = OrderBook()
        self.traded: list[Trade] = []  # every trade, oldest first
        self.owners: dict[Any, Any] = {}  # every order id ever used -> trader
        self.holds: dict[Any, _Hold] = {}  # buy order id -> its hold, while it rests
        self.holds_made = itertools.count(1)
        self.orders = itertools.count(1)
        self.settlement_errors: dict = {}
        # The process behind each trader with resting orders, and its monitor.
        self.backers = Backers(host.routes, self)
        self.withdrawn: list[Order] = []
        self.outcome: MarketOutcome | None = None
        self.error: EconomicsError | None = None

    def opened(self) -> None:
        """The market is on the board (registered by the host): announce it."""
        self.host.writer.announce(MARKETS_TOPIC, ("market_created", self.public()))
        self.host.writer.emit(("mabeam", "economics", "market", "created"), {"count": 1}, {"market_id": self.market_id})

    def take(self, msg: otp.Response | otp.DOWN) -> None:
        if (exit_ := self.backers.exit_of(msg)) is not None:
            self._withdraw(*exit_)

    def topic(self) -> tuple:
        return market_topic(self.market_id)

    # ------------------------------------------------------------ operations

    def trades(self) -> list[Trade]:
        self._check_failed()
        return list(self.traded)

    def _check_failed(self) -> None:
        if self.error is not None:
            raise self.error

    def order(self, trader: Any, side: Side, price: float | None, quantity: int, order_id: Any) -> OrderResult:
        self._check_failed()
        if self.outcome is not None:
            raise MarketClosed(f"market {self.market_id!r} is closed")
        if order_id is None:
            order_id = f"o{next(self.orders)}"
            while order_id in self.owners:
                order_id = f"o{next(self.orders)}"
        elif order_id in self.owners:
            raise DuplicateOrderId(f"order id {order_id!r} was already used")
        order = Order(order_id, trader, side, quantity, price)  # the rules validate it: InvalidOrder
        self._take_exits()
        if self.settle:
            self._fund(order)
        trades = self.book.submit(order)
        self.owners[order_id] = trader
        self.traded.extend(trades)
        errors = self._settle(order, trades) if self.settle else {}
        filled = sum(t.quantity for t in trades)
        resting = self.book.remaining(order_id)
        if resting:
            self._back(trader)
        self.changed(("order", order_id, side, price, quantity))
        for trade in trades:
            self.host.writer.announce(self.topic(), ("trade", trade))
            self.host.writer.emit(
                ("mabeam", "economics", "market", "trade"),
                {"price": trade.price, "quantity": trade.quantity},
                {"market_id": self.market_id},
            )
        return OrderResult(
            self.market_id, order_id, trader, side, price, quantity, tuple(trades), filled, resting,
            quantity - filled - resting, errors, self.seq,
        )  # fmt: skip

    def cancel(self, order_id: Any, trader: Any) -> Cancelled:
        self._check_failed()
        if self.outcome is not None:
            raise MarketClosed(f"market {self.market_id!r} is closed")
        owner = self.owners.get(order_id)
        if trader is not None and order_id in self.book and owner != trader:
            raise NotOrderOwner(f"order {order_id!r} belongs to {owner!r}, not {trader!r}")
        cancelled = self.book.cancel(order_id)  # UnknownOrder if it is not resting
        self._release(order_id, {})
        return Cancelled(cancelled, self.changed(("cancel", order_id)))

    def close(self) -> MarketOutcome:
        """Close the market (once; closing again answers the same outcome)."""
        self._check_failed()
        if self.outcome is None:
            self._close()
        assert self.outcome is not None
        return self.outcome

    # ------------------------------------------------------------ state

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
            "last_price": self.traded[-1].price if self.traded else None,
            "volume": sum(t.quantity for t in self.traded),
            "trade_count": len(self.traded),
            "recent_trades": self.traded[-RECENT_TRADES:],
            "seq": self.seq,
            **({} if self.error is None else {"error": f"{type(self.error).__name__}: {self.error}"}),
        }

    def minimal_view(self) -> dict:
        view = {"market_id": self.market_id, "item": self.item}
        if self.error is not None:
            view["error"] = f"{type(self.error).__name__}: {self.error}"
        return view

    def _close(self) -> None:
        self.backers.clear()
        cancelled = []
        for side in (BUY, SELL):
            for order in self.book.resting_orders(side):
                cancelled.append(self.book.cancel(order.order_id))
                self._release(order.order_id, {})
        self.status = "closed"
        outcome = MarketOutcome(
            self.market_id,
            self.item,
            tuple(self.traded),
            sum(t.quantity for t in self.traded),
            self.traded[-1].price if self.traded else None,
            tuple(cancelled),
            dict(self.settlement_errors),
            time.monotonic() - self.created,
            self.seq + 1,  # the change that shows it
            tuple(self.withdrawn),
        )
        self.outcome = outcome
        self.changed(("market_closed", outcome))
        self.host.writer.announce(MARKETS_TOPIC, ("market_closed", outcome))
        self.host.writer.emit(
            ("mabeam", "economics", "market", "closed"), {"trades": len(self.traded)}, {"market_id": self.market_id}
        )
        self.host.retire(self)

    def crashed_error(self, crash: otp.Crash) -> EconomicsError:
        return MarketCrashed(self.market_id, crash)

    def fail(self, error: EconomicsError) -> None:
        """The market's code raised: it takes no more orders; the holds of
        its resting orders are released (best effort), its state shows
        the failure."""
        self.backers.clear()
        self.error = error
        self.status = "failed"
        for order_id in list(self.holds):
            self._release(order_id, {})
        self.changed(("market_failed", error))
        self.host.writer.announce(MARKETS_TOPIC, ("market_failed", self.market_id, error))
        self.host.retire(self)

    def stop(self) -> None:
        self.backers.clear()

    def removed(self) -> None:
        """The market left its host (its linger is over)."""
        self.stop()
        self.host.writer.announce(self.topic(), ("market_removed", self.market_id))

    # ------------------------------------------------------------ traders that exit

    def _back(self, trader: Any) -> None:
        """Monitor the process registered as the agent ``trader`` (if
        any): its resting orders stand while it lives.  Only the name is
        read: a process that died a moment ago is still returned, and its
        monitor reports it at once."""
        try:
            pid = otp.whereis(agent_name(trader))
        except TypeError:  # an id no agent can have (the registry refuses the key)
            return
        if pid is None:
            return
        self.backers.back(trader, pid)  # a trader that runs again: its new process stands behind its orders

    def _take_exits(self) -> None:
        """Withdraw the traders whose DOWN is already queued behind the
        request being served."""
        for trader, reason in self.backers.take_queued_exits():
            self._withdraw(trader, reason)

    def _withdraw(self, trader: Any, reason: Any) -> None:
        """``trader``'s process exited: its resting orders leave the book."""
        self.backers.drop(trader)
        gone = [o for side in (BUY, SELL) for o in self.book.resting_orders(side) if o.trader == trader]
        if not gone:
            return
        for order in gone:
            self.withdrawn.append(self.book.cancel(order.order_id))
            self._release(order.order_id, {})
        self.changed(None)
        for order in gone:
            self.host.writer.announce(self.topic(), ("withdrawn", order.order_id, trader, reason))

    # ------------------------------------------------------------ settlement

    def _fund(self, order: Order) -> None:
        """Hold a buy order's cost; check that a seller has a budget."""
        if order.side == SELL:
            require_budget(order.trader)  # UnknownBudget in the caller
            return
        if order.price is None:
            raise InvalidOrder("with budget settlement a buy order needs a limit price")
        limit = to_money(order.price)
        rid = f"market:{self.market_id}:{order.order_id}:{next(self.holds_made)}"
        reserve_funds(order.trader, rid, limit * order.quantity)  # InsufficientFunds in the caller
        self.holds[order.order_id] = _Hold(order.trader, rid, limit)

    def _settle(self, order: Order, trades: list[Trade]) -> dict:
        """Move the money of ``trades``: each buy order involved spends its
        fills and keeps its resting rest held (atomically); sellers are paid."""
        cost: dict[Any, Amount] = {}
        proceeds: dict[Any, Amount] = {}
        for t in trades:
            money = to_money(t.price) * t.quantity
            cost[t.buy_order_id] = cost.get(t.buy_order_id, 0) + money
            proceeds[t.seller] = proceeds.get(t.seller, 0) + money
        if order.side == BUY and order.order_id not in cost:
            cost[order.order_id] = 0  # nothing filled: the hold stays as it is
        errors: dict = {}
        for oid, spent in cost.items():
            hold = self.holds.pop(oid)
            left = self.book.remaining(oid)
            if spent == 0 and left:
                self.holds[oid] = hold
                continue
            steps: list[BudgetStep] = [Commit(hold.reservation_id, spent)]
            if left:
                new_rid = f"market:{self.market_id}:{oid}:{next(self.holds_made)}"
                steps.append(Reserve(new_rid, hold.limit * left))
                self.holds[oid] = hold._replace(reservation_id=new_rid)
            self._budget(errors, ("buy", oid), apply_budget_batch, hold.buyer, steps)
        for seller, money in proceeds.items():
            self._budget(errors, ("sell", order.order_id, seller), deposit_funds, seller, money)
        return errors

    def _budget(self, errors: dict, what: tuple, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except (ValueError, otp.OTPError) as exc:  # the trade stands; the failure is reported
            errors[what] = f"{type(exc).__name__}: {exc}"
            self.settlement_errors[what] = errors[what]

    def _release(self, order_id: Any, errors: dict) -> None:
        hold = self.holds.pop(order_id, None)
        if hold is not None:
            self._budget(errors, ("release", order_id), release_funds, hold.buyer, hold.reservation_id)
