"""The market API: create, submit, cancel, close, read.

A market is addressed by its :class:`MarketRef`, its pid or its id (looked
up on the economics board).  Writes go to the market's process, its single
owner; :func:`get_market_state` and :func:`list_markets` read the board (the
caller's replica), never the market process.
"""

from __future__ import annotations

import itertools
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import otp

from .._names import ECONOMICS
from . import _board
from ._errors import EconomicsError, NotStarted
from ._market_server import (
    DEFAULT_LINGER,
    Cancelled,
    DuplicateMarket,
    MarketOutcome,
    MarketServer,
    MarketSpec,
    OrderResult,
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

_ids = itertools.count(1)
_prefix = uuid.uuid4().hex[:8]


class UnknownMarket(EconomicsError, LookupError):
    """No market with this id or pid is running."""


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
    return otp.via(_board.BOARD, market_key(market))


def _id_of(market: Any) -> Any:
    return market.market_id if isinstance(market, MarketRef) else market


def create_market(
    item: Any, *, market_id: Any = None, settle: bool = False, linger: float = DEFAULT_LINGER
) -> MarketRef:
    """Start a market for ``item`` (its own process) and return its ref.
    ``settle=True`` settles every trade in the budget service (see
    ``_market_server``); ``linger``: seconds a closed market stays readable.
    Raises ``DuplicateMarket`` or ``NotStarted``."""
    if market_id is None:
        market_id = f"market-{_prefix}-{os.getpid()}-{next(_ids)}"
    spec = MarketSpec(market_id, item, bool(settle), linger)
    child = otp.child_spec(market_key(market_id), start=(MarketServer.start_link, (spec,)), restart="temporary")
    try:
        pid = otp.supervisor.start_child(ECONOMICS, child)
    except otp.NoProc:
        raise NotStarted("mabeam is not started (no mabeam.economics supervisor)") from None
    except otp.SupervisorError as exc:
        if isinstance(exc.reason, DuplicateMarket):
            raise exc.reason from None
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
    Raises ``InvalidOrder``, ``DuplicateOrderId``, ``MarketClosed``,
    :class:`UnknownMarket`; with settlement ``InsufficientFunds``,
    ``UnknownBudget``..."""
    with _board.absent_as(UnknownMarket(_id_of(market))):
        result: OrderResult = otp.ask(
            _server(market), "order", agent_id, side, price, quantity, order_id, timeout=timeout
        )
    _board.note_seq(market_key(result.market_id), result.seq)
    return result


def cancel_order(market: Any, order_id: Any, agent_id: Any = None, timeout: float | None = 5.0) -> Order:
    """Remove a resting order; returns it with its unfilled quantity.  With
    ``agent_id`` only that trader's order is cancelled (``NotOrderOwner``).
    Raises ``UnknownOrder`` if the order is not resting (filled, cancelled,
    never submitted)."""
    with _board.absent_as(UnknownMarket(_id_of(market))):
        cancelled: Cancelled = otp.ask(_server(market), "cancel", order_id, agent_id, timeout=timeout)
    _board.note_seq(market_key(_id_of(market)), cancelled.seq)
    return cancelled.order


def close_market(market: Any, timeout: float | None = 5.0) -> MarketOutcome:
    """Close the market (resting orders are cancelled) and return its
    outcome; closing again returns the same outcome."""
    with _board.absent_as(UnknownMarket(_id_of(market))):
        outcome: MarketOutcome = otp.ask(_server(market), "close", timeout=timeout)
    _board.note_seq(market_key(outcome.market_id), outcome.seq)
    return outcome


def list_market_trades(market: Any, timeout: float | None = 5.0) -> list[Trade]:
    """Every trade of the market, oldest first (asked from the market
    process, which keeps them all; the board shows the newest ones)."""
    with _board.absent_as(UnknownMarket(_id_of(market))):
        trades: list[Trade] = otp.ask(_server(market), "trades", timeout=timeout)
    return trades


def get_market_state(market: Any) -> dict | None:
    """The market's public state from the economics board (the caller's
    replica; the market process is not asked), or None."""
    if isinstance(market, otp.Pid):
        raise TypeError("get_market_state reads by market id or MarketRef (the board is keyed by id)")
    state: dict | None = _board.read(market_key(_id_of(market)))
    return state


def list_markets(status: str | None = None) -> list[dict]:
    """States of the running markets (optionally with this status), from the board."""
    states = [e.value for e in otp.Registry.match_metadata(_board.BOARD, "type", "market")]
    return [s for s in states if status is None or s.get("status") == status]
