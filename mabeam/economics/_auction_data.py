"""What an auction is made of and answers: its spec, its outcome, its
board key and topics, and its own errors (data only: the auction itself is
:mod:`._auction`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ._errors import EconomicsError
from ._hosting import DEFAULT_LINGER
from .auctions import AuctionError

__all__ = [
    "AUCTIONS_TOPIC",
    "AuctionSpec",
    "AuctionOutcome",
    "Cleared",
    "DuplicateAuction",
    "IneligibleBidder",
    "UnknownAuction",
    "auction_key",
    "auction_topic",
]

#: Topic of lifecycle events of every auction (``('auction_created', view)``,
#: ``('auction_closed', outcome)``); each auction also publishes on
#: :func:`auction_topic`.
AUCTIONS_TOPIC = "mabeam.auctions"


def auction_key(auction_id: Any) -> tuple:
    return ("auction", auction_id)


def auction_topic(auction_id: Any) -> tuple:
    """The pub/sub topic of one auction: ``('bid', bidder)``, ``('round', n,
    view)``, ``('withdrawn', bidder, reason)``, ``('auction_closed',
    outcome)``, and ``('auction_removed', auction_id)`` when it leaves."""
    return ("mabeam.auction", auction_id)


class IneligibleBidder(AuctionError):
    """The bidder's reputation is below the auction's ``min_reputation``."""


class DuplicateAuction(EconomicsError):
    """An auction with this id is already running."""


class UnknownAuction(EconomicsError, LookupError):
    """No auction with this id is running (never created, or it left after
    its linger time, or it was lost with its host)."""


@dataclass(frozen=True)
class AuctionSpec:
    """What an auction starts from: the API's checked arguments.
    ``notify`` lists ``(pid, tag)`` told the result; ``autorun`` starts
    the driven run at once."""

    auction_id: Any
    kind: str
    item: Any
    reserve: float
    participants: list | None
    options: dict
    notify: list = field(default_factory=list)
    autorun: bool = False
    linger: float = DEFAULT_LINGER


@dataclass(frozen=True)
class AuctionOutcome:
    """The result of an auction, as computed by the rules.

    ``winner``/``price`` describe a single-item auction (for a combinatorial
    one: its first winner and None; see ``winners`` and ``allocation``).
    ``payments`` maps every bidder to what it pays (0.0 for losers).
    ``not_bidding`` maps participants that did not bid to why ('declined',
    'timeout', 'killed', 'not_running', ``('hook_raised', msg)``...);
    ``rejected`` maps bidders whose bid the rules refused to the error;
    ``withdrawn`` maps bidders whose bids were taken back because the
    process behind them exited, to its exit reason (they are not in
    ``bids`` or ``payments``).
    ``reservations`` maps winners to their budget reservation id (with
    ``reserve_payment=True``); ``settlement_errors`` says why one failed."""

    auction_id: Any
    kind: str
    item: Any
    winner: Any
    price: float | None
    winners: tuple
    payments: dict
    allocation: dict
    bids: tuple
    not_bidding: dict
    rejected: dict
    rounds: int
    reason: str | None = None
    welfare: float | None = None
    reservations: dict = field(default_factory=dict)
    settlement_errors: dict = field(default_factory=dict)
    duration: float = 0.0
    withdrawn: dict = field(default_factory=dict)


class Cleared(NamedTuple):
    """The answer to ``run`` and ``close``: the outcome, and the board
    ``seq`` that shows it (read-your-writes)."""

    outcome: AuctionOutcome
    seq: int
