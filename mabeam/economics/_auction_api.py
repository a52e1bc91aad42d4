"""The auction API: create, bid, run, close, read; sync and async.

An auction is addressed by its :class:`AuctionRef`, its pid or its id
(looked up on the economics board).  Writes (``place_bid``, ``run``,
``close``) go to the auction's process, its single owner; reads
(:func:`get_auction_state`, :func:`list_auctions`) never do: they come from the
board (see ``_board``).
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
from ._auction_server import AuctionOutcome, AuctionServer, AuctionSpec, Cleared, DuplicateAuction, auction_key
from ._errors import EconomicsError, NotStarted
from ._mechanisms import make_mechanism

__all__ = [
    "AuctionRef",
    "UnknownAuction",
    "create_auction",
    "create_auction_async",
    "place_bid",
    "run",
    "close",
    "get_auction_result_async",
    "get_auction_state",
    "list_auctions",
]

_ids = itertools.count(1)
_prefix = uuid.uuid4().hex[:8]


class UnknownAuction(EconomicsError, LookupError):
    """No auction with this id or pid is running (never created, or it
    exited after its linger time)."""


@dataclass(frozen=True)
class AuctionRef:
    """A running auction: its id, its process, its kind and item.  Two refs
    are equal when their ids are (the id names the auction)."""

    auction_id: Any
    pid: otp.Pid | None = field(compare=False)
    kind: str = field(compare=False)
    item: Any = field(compare=False)


def _new_id() -> str:
    return f"auction-{_prefix}-{os.getpid()}-{next(_ids)}"


def _server(auction: Any) -> Any:
    if isinstance(auction, AuctionRef):
        return auction.pid
    if isinstance(auction, otp.Pid):
        return auction
    return otp.via(_board.BOARD, auction_key(auction))


def _id_of(auction: Any) -> Any:
    if isinstance(auction, AuctionRef):
        return auction.auction_id
    return auction


def _start(
    kind: str, item: Any, reserve: float, participants: Any, options: dict, notify: list, autorun: bool
) -> AuctionRef:
    auction_id = options.pop("auction_id", None)
    auction_id = _new_id() if auction_id is None else auction_id
    make_mechanism(kind, item, reserve, dict(options))  # parameters checked here: the caller gets the rules' error
    if participants is not None and not isinstance(participants, (list, tuple)):
        participants = list(participants)
    spec = AuctionSpec(auction_id, kind, item, reserve, participants, options, notify, autorun)
    child = otp.child_spec(auction_key(auction_id), start=(AuctionServer.start_link, (spec,)), restart="temporary")
    try:
        pid = otp.supervisor.start_child(ECONOMICS, child)
    except otp.NoProc:
        raise NotStarted("mabeam is not started (no mabeam.economics supervisor)") from None
    except otp.SupervisorError as exc:
        if isinstance(exc.reason, DuplicateAuction):
            raise exc.reason from None
        raise
    return AuctionRef(auction_id, pid, kind, item)


def create_auction(kind: str, item: Any, reserve: float = 0.0, participants: Any = None, **options: Any) -> AuctionRef:
    """Start an auction process and return its reference (it is open for bids).

    ``kind``: ``english``, ``dutch``, ``first_price``, ``vickrey`` or
    ``combinatorial`` (``item`` is then the collection of items for sale).
    ``participants``: agent ids that :func:`run` asks for bids (their
    ``handle_bid``/``handle_offer``); None means explicit bids only.

    A bid stands while its bidder's agent lives (see ``BiddersExited``);
    a bidder id that names no agent stands on its own.

    Options: ``auction_id``; ``increment``, ``max_rounds`` (English);
    ``start`` and ``decrement`` or ``schedule``, ``max_ticks`` (Dutch);
    ``bid_timeout`` (seconds each agent has per round, default 5);
    ``capabilities`` (ask also every running agent with these);
    ``min_reputation`` (refuse bidders below this reputation score);
    ``reserve_payment`` (reserve the payments in the budget service);
    ``linger`` (seconds the closed auction stays readable, default 30).

    Raises the rules' ``InvalidAuctionParameter`` for bad parameters,
    ``DuplicateAuction``, or ``NotStarted``."""
    return _start(kind, item, reserve, participants, options, [], False)


def create_auction_async(
    kind: str, item: Any, reserve: float = 0.0, participants: Any = None, reply_to: Any = None, **options: Any
) -> AuctionRef:
    """Start an auction that runs by itself at once (driven by its
    participants) and returns immediately; the result arrives as the message
    ``('$auction_result', ref, outcome)`` (``outcome`` is an
    :class:`AuctionOutcome`, or the exception that kept it from clearing:
    the rules' ``AuctionError`` or ``BiddersExited``)
    to ``reply_to`` (default: the caller).  ``ref`` is the returned
    :class:`AuctionRef`; explicit bids and :func:`close` still work while it
    runs.  The caller may monitor ``ref.pid``."""
    target = otp.self() if reply_to is None else reply_to
    if options.get("auction_id") is None:
        options["auction_id"] = _new_id()
    tag = AuctionRef(options["auction_id"], None, kind, item)  # equal to the returned ref (same id)
    return _start(kind, item, reserve, participants, options, [(target, tag)], True)


def place_bid(auction: Any, bidder: Any, bid: Any, timeout: float | None = 5.0) -> None:
    """Place an explicit bid: an amount (single-item kinds; for Dutch the
    price at which ``bidder`` accepts), or bundle bids for a combinatorial
    auction (``[(bundle, amount), ...]`` or ``{bundle: amount}``, XOR).

    Raises the rules' typed errors: ``InvalidBid``, ``BidTooLow`` (English,
    with ``.minimum``), ``DuplicateBidder`` (sealed kinds), ``TooManyBids``,
    ``AuctionClosed``; ``IneligibleBidder``; :class:`UnknownAuction`."""
    with _board.absent_as(UnknownAuction(_id_of(auction))):
        seq = otp.ask(_server(auction), "bid", bidder, bid, timeout=timeout)
    if not isinstance(auction, otp.Pid):
        _board.note_seq(auction_key(_id_of(auction)), seq)


def run(auction: Any, timeout: float | None = 60.0) -> AuctionOutcome:
    """Ask the participants for bids (rounds, clock ticks) until the
    auction can be cleared, clear it and return the outcome (the stored
    outcome if it is already closed).  Raises ``BiddersExited`` if every
    bid that could have won was withdrawn by its bidder's exit."""
    with _board.absent_as(UnknownAuction(_id_of(auction))):
        cleared: Cleared = otp.ask(_server(auction), "run", timeout=timeout)
    return _seen(cleared)


def close(auction: Any, timeout: float | None = 60.0) -> AuctionOutcome:
    """Clear now with the bids received so far (a driven run in progress
    stops after its current round) and return the outcome.  The winner must
    be alive: a bid whose bidder's agent has exited is withdrawn and the
    next standing bid wins, or ``BiddersExited`` is raised."""
    with _board.absent_as(UnknownAuction(_id_of(auction))):
        cleared: Cleared = otp.ask(_server(auction), "close", timeout=timeout)
    return _seen(cleared)


def _seen(cleared: Cleared) -> AuctionOutcome:
    _board.note_seq(auction_key(cleared.outcome.auction_id), cleared.seq)
    return cleared.outcome


def get_auction_result_async(auction: Any, reply_to: Any = None, tag: Any = None) -> Any:
    """Ask for ``('$auction_result', tag, outcome)`` when the auction is
    cleared (at once if it already is); ``tag`` defaults to a new ref, which
    is returned."""
    tag = otp.make_ref() if tag is None else tag
    target = otp.self() if reply_to is None else reply_to
    with _board.absent_as(UnknownAuction(_id_of(auction))):
        otp.ask(_server(auction), "notify_result", target, tag, timeout=5.0)
    return tag


def get_auction_state(auction: Any) -> dict | None:
    """The auction's public state from the economics board (the CQRS read
    path: served by the caller's replica, never by the auction process),
    or None if no such auction is running.  Sealed kinds show how many bids
    arrived, not the amounts, until they are cleared."""
    if isinstance(auction, otp.Pid):
        raise TypeError("get_auction_state reads by auction id or AuctionRef (the board is keyed by id)")
    state: dict | None = _board.read(auction_key(_id_of(auction)))
    return state


def list_auctions(status: str | None = None) -> list[dict]:
    """The states of the running auctions (optionally with this status),
    from the board's metadata index (the auctions are not asked)."""
    entries = otp.Registry.match_metadata(_board.BOARD, "type", "auction")
    states = [e.value for e in entries]
    return [s for s in states if status is None or s.get("status") == status]
