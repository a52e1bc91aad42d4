"""The market API: create, submit, cancel, close, read.

A market is addressed by its :class:`MarketRef` or its id (looked up on
the economics board, whose entry names the host that holds it).  Writes go
to that host, the market's single owner; :func:`get_market_state` and
:func:`list_markets` read the board (the caller's replica), never the host.
A call in flight when the host dies raises :class:`MarketLost` at once.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import otp

from . import _board
from ._errors import MarketLost
from ._host import placed_call
from ._hosting import DEFAULT_LINGER, check_linger, host_call, host_of, new_item_id
from ._market import (
    Cancelled,
    InvalidMarketParameter,
    MarketOutcome,
    MarketSpec,
    OrderResult,
    UnknownMarket,
    market_key,
)
from .orderbook import Order, Trade

__all__ = [
    "MarketRef",
    "UnknownMarket",
    "create_market",
    "submit_order",
    "cancel_order",
    "close_market",
    "get_market_state",
    "list_market_trades",
    "list_markets",
]


@dataclass(frozen=True)
class MarketRef:
    """A running market (``pid``: the host process that holds it); equal
    to another ref with the same id."""

    market_id: Any
    pid: otp.Pid | None = field(compare=False)
    item: Any = field(compare=False)


def _host(market: Any) -> otp.Pid:
    return host_of(market, MarketRef, market_key, UnknownMarket)


def _id_of(market: Any) -> Any:
    return market.market_id if isinstance(market, MarketRef) else market


def _calling(market: Any) -> AbstractContextManager[None]:
    """A call to the market's host (see :func:`._hosting.host_call`)."""
    return host_call(_id_of(market), UnknownMarket, MarketLost)


def create_market(
    item: Any, *, market_id: Any = None, settle: bool = False, linger: float = DEFAULT_LINGER
) -> MarketRef:
    """Create a market for ``item`` on an economics host and return its
    ref.  ``settle=True`` settles every trade in the budget service (see
    ``_market``); ``linger``: seconds a closed market stays readable (a
    finite number).  Raises ``DuplicateMarket``, ``InvalidMarketParameter``,
    or ``NotStarted``."""
    if market_id is None:
        market_id = new_item_id("market")
    spec = MarketSpec(market_id, item, bool(settle), check_linger(linger, InvalidMarketParameter))
    host, _ = placed_call(market_key(market_id), "create_market", spec)
    return MarketRef(market_id, host, item)


def submit_order(
    market: Any,
    agent_id: Any,
    side: str,
    price: float | None,
    quantity: int,
    order_id: Any = None,
    timeout: float | None = 5.0,
) -> OrderResult:
    """Submit a limit order (``price``) or a market order (``price=None``,
    immediate-or-cancel) for ``quantity`` lots; it matches on arrival.
    Raises ``InvalidOrder``, ``DuplicateOrderId``, ``MarketClosed``,
    :class:`UnknownMarket`; with settlement ``InsufficientFunds``,
    ``UnknownBudget``..."""
    with _calling(market):
        result: OrderResult = otp.ask(
            _host(market), "order", _id_of(market), agent_id, side, price, quantity, order_id, timeout=timeout
        )
    _board.note_seq(market_key(result.market_id), result.seq)
    return result


def cancel_order(market: Any, order_id: Any, agent_id: Any = None, timeout: float | None = 5.0) -> Order:
    """Remove a resting order; returns it with its unfilled quantity.  With
    ``agent_id`` only that trader's order is cancelled (``NotOrderOwner``).
    Raises ``UnknownOrder`` if the order is not resting (filled, cancelled,
    never submitted)."""
    with _calling(market):
        cancelled: Cancelled = otp.ask(_host(market), "cancel", _id_of(market), order_id, agent_id, timeout=timeout)
    _board.note_seq(market_key(_id_of(market)), cancelled.seq)
    return cancelled.order


def close_market(market: Any, timeout: float | None = 5.0) -> MarketOutcome:
    """Close the market (resting orders are cancelled) and return its
    outcome; closing again returns the same outcome."""
    with _calling(market):
        outcome: MarketOutcome = otp.ask(_host(market), "close_market", _id_of(market), timeout=timeout)
    _board.note_seq(market_key(outcome.market_id), outcome.seq)
    return outcome


def list_market_trades(market: Any, timeout: float | None = 5.0) -> list[Trade]:
    """Every trade of the market, oldest first (asked from its host, which
    keeps them all; the board shows the newest ones)."""
    with _calling(market):
        trades: list[Trade] = otp.ask(_host(market), "trades", _id_of(market), timeout=timeout)
    return trades


def get_market_state(market: Any) -> dict | None:
    """The market's public state from the economics board (the caller's
    replica; the host is not asked), or None."""
    if isinstance(market, otp.Pid):
        raise TypeError("get_market_state reads by market id or MarketRef (the board is keyed by id)")
    state: dict | None = _board.read(market_key(_id_of(market)))
    return state


def list_markets(status: str | None = None) -> list[dict]:
    """States of the running markets (optionally with this status), from the board."""
    states = [e.value for e in otp.Registry.match_metadata(_board.BOARD, "type", "market")]
    return [s for s in states if status is None or s.get("status") == status]
