"""The auction API: create, bid, run, close, read; sync and async.

An auction is addressed by its :class:`AuctionRef` or its id (looked up
on the economics board, whose entry names the host that holds it).
Writes (``place_bid``, ``run``, ``close``) go to that host, the auction's
single owner; reads (:func:`get_auction_state`, :func:`list_auctions`)
never do: they come from the board (see ``_board``).

A host that dies takes its auctions with it: a call in flight raises
:class:`AuctionLost` at once, :func:`await_auction_result` too (it
monitors the host while it waits); afterwards the auction is unknown.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import otp

from . import _board
from ._auction_data import AuctionOutcome, AuctionSpec, Cleared, UnknownAuction, auction_key
from ._errors import AuctionLost
from ._host import placed_call
from ._hosting import DEFAULT_LINGER, check_linger, host_call, host_of, new_item_id
from ._mechanisms import make_mechanism
from .auctions import InvalidAuctionParameter

__all__ = [
    "AuctionRef",
    "UnknownAuction",
    "create_auction",
    "create_auction_async",
    "place_bid",
    "run",
    "close",
    "get_auction_result_async",
    "await_auction_result",
    "get_auction_state",
    "list_auctions",
]


@dataclass(frozen=True)
class AuctionRef:
    """A running auction: its id, the host process that holds it, its
    kind and item.  Two refs are equal when their ids are (the id names
    the auction)."""

    auction_id: Any
    pid: otp.Pid | None = field(compare=False)
    kind: str = field(compare=False)
    item: Any = field(compare=False)


def _host(auction: Any) -> otp.Pid:
    return host_of(auction, AuctionRef, auction_key, UnknownAuction)


def _id_of(auction: Any) -> Any:
    if isinstance(auction, AuctionRef):
        return auction.auction_id
    return auction


def _calling(auction: Any) -> AbstractContextManager[None]:
    """A call to the auction's host (see :func:`._hosting.host_call`)."""
    return host_call(_id_of(auction), UnknownAuction, AuctionLost)


def _start(
    kind: str, item: Any, reserve: float, participants: Any, options: dict, notify: list, autorun: bool
) -> AuctionRef:
    auction_id = options.pop("auction_id")
    linger = check_linger(options.pop("linger", DEFAULT_LINGER), InvalidAuctionParameter)
    make_mechanism(kind, item, reserve, dict(options))  # parameters checked here: the caller gets the rules' error
    if participants is not None and not isinstance(participants, (list, tuple)):
        participants = list(participants)
    spec = AuctionSpec(auction_id, kind, item, reserve, participants, options, notify, autorun, linger)
    host, _ = placed_call(auction_key(auction_id), "create_auction", spec)
    return AuctionRef(auction_id, host, kind, item)


def create_auction(kind: str, item: Any, reserve: float = 0.0, participants: Any = None, **options: Any) -> AuctionRef:
    """Create an auction on an economics host and return its reference (it
    is open for bids).

    ``kind``: ``english``, ``dutch``, ``first_price``, ``vickrey`` or
    ``combinatorial`` (``item`` is then the collection of items for sale).
    ``participants``: agent ids that :func:`run` asks for bids (their
    ``handle_bid``/``handle_offer``); None means explicit bids only.

    A bid stands while its bidder's agent lives (see ``BiddersExited``);
    a bidder id that names no agent stands on its own.

    Options: ``auction_id``; ``increment``, ``max_rounds`` (English);
    ``start`` and ``decrement`` or ``schedule``, ``max_ticks`` (Dutch);
    ``bid_timeout`` (seconds the agents have per round, default 5);
    ``capabilities`` (ask also every running agent with these);
    ``min_reputation`` (refuse bidders below this reputation score);
    ``reserve_payment`` (reserve the payments in the budget service);
    ``linger`` (seconds the closed auction stays readable, a finite number,
    default 30).

    Raises the rules' ``InvalidAuctionParameter`` for bad parameters,
    ``DuplicateAuction``, or ``NotStarted``."""
    if options.get("auction_id") is None:
        options["auction_id"] = new_item_id("auction")
    return _start(kind, item, reserve, participants, options, [], False)


def create_auction_async(
    kind: str, item: Any, reserve: float = 0.0, participants: Any = None, reply_to: Any = None, **options: Any
) -> AuctionRef:
    """Create an auction that runs by itself at once (driven by its
    participants) and return immediately; the result arrives as the message
    ``('$auction_result', ref, outcome)`` (``outcome`` is an
    :class:`AuctionOutcome`, or the exception that kept it from clearing:
    the rules' ``AuctionError``, ``BiddersExited``, ``AuctionCrashed``)
    to ``reply_to`` (default: the caller).  ``ref`` is the returned
    :class:`AuctionRef`; explicit bids and :func:`close` still work while it
    runs.  :func:`await_auction_result` waits for that message, and
    raises :class:`AuctionLost` at once if the host dies first."""
    target = otp.self() if reply_to is None else reply_to
    if options.get("auction_id") is None:
        options["auction_id"] = new_item_id("auction")
    tag = AuctionRef(options["auction_id"], None, kind, item)  # equal to the returned ref (same id)
    return _start(kind, item, reserve, participants, options, [(target, tag)], True)


def place_bid(auction: Any, bidder: Any, bid: Any, timeout: float | None = 5.0) -> None:
    """Place an explicit bid: an amount (single-item kinds; for Dutch the
    price at which ``bidder`` accepts), or bundle bids for a combinatorial
    auction (``[(bundle, amount), ...]`` or ``{bundle: amount}``, XOR).

    Raises the rules' typed errors: ``InvalidBid``, ``BidTooLow`` (English,
    with ``.minimum``), ``DuplicateBidder`` (sealed kinds), ``TooManyBids``,
    ``AuctionClosed``; ``IneligibleBidder``; :class:`UnknownAuction`,
    :class:`AuctionLost`, ``AuctionCrashed`` (the bid made the auction's
    code fail: the auction failed with it)."""
    with _calling(auction):
        seq = otp.ask(_host(auction), "bid", _id_of(auction), bidder, bid, timeout=timeout)
    _board.note_seq(auction_key(_id_of(auction)), seq)


def run(auction: Any, timeout: float | None = 60.0) -> AuctionOutcome:
    """Ask the participants for bids (rounds, clock ticks) until the
    auction can be cleared, clear it and return the outcome (the stored
    outcome if it is already closed).  Raises ``BiddersExited`` if every
    bid that could have won was withdrawn by its bidder's exit,
    :class:`AuctionLost` at once if its host dies."""
    with _calling(auction):
        cleared: Cleared = otp.ask(_host(auction), "run", _id_of(auction), timeout=timeout)
    return _seen(cleared)


def close(auction: Any, timeout: float | None = 60.0) -> AuctionOutcome:
    """Clear now with the bids received so far (a driven run in progress
    stops: the answers it still awaits are dropped) and return the outcome.
    The winner must be alive: a bid whose bidder's agent has exited is
    withdrawn and the next standing bid wins, or ``BiddersExited`` is
    raised."""
    with _calling(auction):
        cleared: Cleared = otp.ask(_host(auction), "close", _id_of(auction), timeout=timeout)
    return _seen(cleared)


def _seen(cleared: Cleared) -> AuctionOutcome:
    _board.note_seq(auction_key(cleared.outcome.auction_id), cleared.seq)
    return cleared.outcome


def get_auction_result_async(auction: Any, reply_to: Any = None, tag: Any = None) -> Any:
    """Ask for ``('$auction_result', tag, outcome)`` when the auction is
    cleared (at once if it already is); ``tag`` defaults to a new ref, which
    is returned.  :func:`await_auction_result` waits for it."""
    tag = otp.make_ref() if tag is None else tag
    target = otp.self() if reply_to is None else reply_to
    with _calling(auction):
        otp.ask(_host(auction), "notify_result", _id_of(auction), target, tag, timeout=5.0)
    return tag


def await_auction_result(auction: Any, tag: Any = None, timeout: float | None = 60.0) -> AuctionOutcome:
    """Wait for the result message ``('$auction_result', tag, outcome)``
    (``tag`` defaults to ``auction``, the ref :func:`create_auction_async`
    returned) and return the outcome, or raise the error that kept the
    auction from clearing.  While waiting it monitors the auction's host:
    if the host dies first, :class:`AuctionLost` is raised at once.
    Raises ``otp.Timeout`` after ``timeout`` seconds (None: no limit)."""
    tag = auction if tag is None else tag
    auction_id = _id_of(auction)

    def is_result(m: Any) -> bool:
        return type(m) is tuple and len(m) == 3 and m[0] == "$auction_result" and m[1] == tag

    try:
        host: otp.Pid | None = _host(auction)
    except UnknownAuction:
        host = None
    if host is None:
        try:
            msg = otp.receive(0, is_result)
        except otp.Timeout:
            raise UnknownAuction(auction_id) from None
    else:
        ref = otp.monitor(host)
        try:
            msg = otp.receive(timeout, lambda m: is_result(m) or (type(m) is otp.DOWN and m.ref == ref))
        finally:
            otp.demonitor(ref, flush=True)
        if type(msg) is otp.DOWN:
            try:  # a result the host sent before it died is in the mailbox already
                msg = otp.receive(0, is_result)
            except otp.Timeout:
                raise AuctionLost(auction_id, msg.reason) from None
    outcome = msg[2]
    if isinstance(outcome, BaseException):
        raise outcome
    result: AuctionOutcome = outcome
    return result


def get_auction_state(auction: Any) -> dict | None:
    """The auction's public state from the economics board (the CQRS read
    path: served by the caller's replica, never by the host), or None if
    no such auction is running.  Sealed kinds show how many bids arrived,
    not the amounts, until they are cleared."""
    if isinstance(auction, otp.Pid):
        raise TypeError("get_auction_state reads by auction id or AuctionRef (the board is keyed by id)")
    state: dict | None = _board.read(auction_key(_id_of(auction)))
    return state


def list_auctions(status: str | None = None) -> list[dict]:
    """The states of the running auctions (optionally with this status),
    from the board's metadata index (the hosts are not asked)."""
    entries = otp.Registry.match_metadata(_board.BOARD, "type", "auction")
    states = [e.value for e in entries]
    return [s for s in states if status is None or s.get("status") == status]
