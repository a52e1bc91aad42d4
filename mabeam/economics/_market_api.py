"""The market API: create, submit, cancel, close, read.

A market is addressed by its :class:`MarketRef`, its pid or its id (looked
up on the economics board).  Writes go to the market's process, its single
owner; :func:`market_state` and :func:`list_markets` read the board (the
caller's replica), never the market process.
"""

from __future__ import annotations

import itertools
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import otp

from .._app import ECONOMICS
from ..rules.orderbook import Order, Trade
from . import _wire
from ._market import DEFAULT_LINGER, MarketOutcome, MarketServer, OrderResult, market_key

__all__ = [
    "MarketRef",
    "UnknownMarket",
    "DuplicateMarket",
    "create_market",
    "submit_order",
    "cancel_order",
    "close_market",
    "market_state",
    "market_trades",
    "list_markets",
]

_ids = itertools.count(1)
_prefix = uuid.uuid4().hex[:8]


class UnknownMarket(_wire.EconomicsError, LookupError):
    """No market with this id or pid is running."""


class DuplicateMarket(_wire.EconomicsError):
    """A market with this id is already running."""


@dataclass(frozen=True)
class MarketRef:
    """A running market; equal to another ref with the same id."""

    market_id: Any
    pid: otp.Pid | None = field(compare=False)
    item: Any = field(compare=False)


def _server(market: Any) -> Any:
    if isinstance(market, MarketRef):
        return market.pid
    if isinstance(market, otp.Pid):
        return market
    return otp.via(_wire.BOARD, market_key(market))


def _id_of(market: Any) -> Any:
    return market.market_id if isinstance(market, MarketRef) else market


def _ask(market: Any, request: tuple, timeout: float | None) -> Any:
    return _wire.ask(_server(market), request, timeout, missing=UnknownMarket(_id_of(market)))


def create_market(
    item: Any, *, market_id: Any = None, settle: bool = False, linger: float = DEFAULT_LINGER
) -> MarketRef:
    """Start a market for ``item`` (its own process) and return its ref.
    ``settle=True`` settles every trade in the budget service (see the
    module doc); ``linger``: seconds a closed market stays readable.
    Raises :class:`DuplicateMarket` or ``NotStarted``."""
    if market_id is None:
        market_id = f"market-{_prefix}-{os.getpid()}-{next(_ids)}"
    spec = {"market_id": market_id, "item": item, "settle": settle, "linger": linger}
    child = otp.child_spec(market_key(market_id), start=(MarketServer.start_link, (spec,)), restart="temporary")
    try:
        pid = otp.supervisor.start_child(ECONOMICS, child)
    except otp.NoProc:
        raise _wire.NotStarted("mabeam is not started (no mabeam.economics supervisor)") from None
    except otp.SupervisorError as exc:
        if "duplicate_market" in repr(exc.reason) or "already_started" in repr(exc.reason):
            raise DuplicateMarket(market_id) from None
        raise
    return MarketRef(market_id, pid, item)


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
    Raises ``InvalidOrder``, ``DuplicateOrderId``, :class:`MarketClosed`,
    :class:`UnknownMarket`; with settlement ``InsufficientFunds``,
    ``UnknownBudget``..."""
    result = _ask(market, ("order", agent_id, side, price, quantity, order_id), timeout)
    _wire.note_seq(market_key(result.market_id), result.seq)
    return result


def cancel_order(market: Any, order_id: Any, agent_id: Any = None, timeout: float | None = 5.0) -> Order:
    """Remove a resting order; returns it with its unfilled quantity.  With
    ``agent_id`` only that trader's order is cancelled (:class:`NotOrderOwner`).
    Raises ``UnknownOrder`` if the order is not resting (filled, cancelled,
    never submitted)."""
    order, seq = _ask(market, ("cancel", order_id, agent_id), timeout)
    _wire.note_seq(market_key(_id_of(market)), seq)
    return order


def close_market(market: Any, timeout: float | None = 5.0) -> MarketOutcome:
    """Close the market (resting orders are cancelled) and return its
    outcome; closing again returns the same outcome."""
    outcome, seq = _ask(market, ("close",), timeout)
    _wire.note_seq(market_key(outcome.market_id), seq)
    return outcome


def market_trades(market: Any, timeout: float | None = 5.0) -> list[Trade]:
    """Every trade of the market, oldest first (asked from the market
    process, which keeps them all; the board shows the newest ones)."""
    return _ask(market, ("trades",), timeout)


def market_state(market: Any) -> dict | None:
    """The market's public state from the economics board (the caller's
    replica; the market process is not asked), or None."""
    if isinstance(market, otp.Pid):
        raise TypeError("market_state reads by market id or MarketRef (the board is keyed by id)")
    return _wire.read(market_key(_id_of(market)))


def list_markets(status: str | None = None) -> list[dict]:
    """States of the running markets (optionally with this status), from the board."""
    states = [e.value for e in otp.Registry.match_metadata(_wire.BOARD, "type", "market")]
    return [s for s in states if status is None or s.get("status") == status]
