"""The auction process: one gen_server per auction, ``restart='temporary'``
under the ``mabeam.economics`` dynamic supervisor.

The process owns its bids; nothing else writes them.  Driven bidding runs as
a sequence of steps the process sends itself (``$step`` messages), so calls
that arrived meanwhile (explicit bids, ``close``, reads) are served between
two rounds instead of waiting for the whole auction.  Every change is
written to the economics board (the CQRS read path, see ``_wire``) and
published on the auction's topic; telemetry events go to
``mabeam.telemetry`` when it runs.

When the auction is cleared it replies to every ``run``/``close`` caller,
sends ``('$auction_result', ref, outcome)`` to every process that asked for
the result asynchronously, reserves the payments in the budget service if
asked (``reserve_payment=True``), and stays ``linger`` seconds (default 30)
so that late readers still find its final state, then exits normally.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import otp

from .._comms import DEFAULT_TIMEOUT, broadcast
from ..rules.auctions import AuctionClosed, AuctionError, CombinatorialResult
from . import _wire
from ._mechanisms import make_mechanism

__all__ = ["AuctionServer", "AuctionOutcome", "auction_key", "auction_topic", "AUCTIONS_TOPIC", "IneligibleBidder"]

#: Topic of lifecycle events of every auction (``('auction_created', view)``,
#: ``('auction_closed', outcome)``); each auction also publishes on
#: :func:`auction_topic`.
AUCTIONS_TOPIC = "mabeam.auctions"
STEP = ("$step",)
DEFAULT_LINGER = 30.0


def auction_key(auction_id: Any) -> tuple:
    return ("auction", auction_id)


def auction_topic(auction_id: Any) -> tuple:
    """The pub/sub topic of one auction: ``('bid', bidder)``, ``('round', n,
    view)``, ``('auction_closed', outcome)`` events."""
    return ("mabeam.auction", auction_id)


class IneligibleBidder(AuctionError):
    """The bidder's reputation is below the auction's ``min_reputation``."""


@dataclass(frozen=True)
class AuctionOutcome:
    """The result of an auction, as computed by the rules.

    ``winner``/``price`` describe a single-item auction (for a combinatorial
    one: its first winner and None; see ``winners`` and ``allocation``).
    ``payments`` maps every bidder to what it pays (0.0 for losers).
    ``not_bidding`` maps participants that did not bid to why ('declined',
    'timeout', 'killed', 'not_running', ``('hook_raised', msg)``...);
    ``rejected`` maps bidders whose bid the rules refused to the error.
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


def _outcome(st: _Auction, result: Any) -> AuctionOutcome:
    mech = st.mech
    if isinstance(result, CombinatorialResult):
        winners = result.winners
        allocation = {w: frozenset(b) for w, b in result.allocation.items()}
        winner, price, welfare = (winners[0] if winners else None), None, result.welfare
    else:
        winners = () if result.winner is None else (result.winner,)
        allocation = {} if result.winner is None else {result.winner: st.item}
        winner, price, welfare = result.winner, result.price, None
    return AuctionOutcome(
        auction_id=st.auction_id,
        kind=st.kind,
        item=st.item,
        winner=winner,
        price=price,
        winners=tuple(winners),
        payments=dict(result.payments),
        allocation=allocation,
        bids=tuple(result.bids),
        not_bidding=dict(mech.not_bidding),
        rejected=dict(mech.rejected),
        rounds=mech.rounds,
        reason=result.reason,
        welfare=welfare,
        duration=time.monotonic() - st.created,
    )


class _Auction:
    """The state of one auction process."""

    def __init__(self, spec: dict) -> None:
        options = dict(spec["options"])
        self.auction_id = spec["auction_id"]
        self.kind = spec["kind"]
        self.item = spec["item"]
        self.reserve = spec["reserve"]
        self.participants = list(spec["participants"] or [])
        self.capabilities = options.pop("capabilities", None)
        self.bid_timeout = options.pop("bid_timeout", DEFAULT_TIMEOUT)
        self.linger = options.pop("linger", DEFAULT_LINGER)
        self.reserve_payment = bool(options.pop("reserve_payment", False))
        self.min_reputation = options.pop("min_reputation", None)
        self.mech = make_mechanism(self.kind, self.item, self.reserve, options)
        self.status = "open"
        self.seq = 0
        self.waiters: list = []
        self.notify: list = list(spec.get("notify") or [])
        self.outcome: AuctionOutcome | None = None
        self.error: BaseException | None = None
        self.created = time.monotonic()
        self.deadline: float | None = None

    @property
    def closed(self) -> bool:
        return self.status in ("closed", "failed")

    def base_view(self) -> dict:
        return {"auction_id": self.auction_id, "kind": self.kind, "item": self.item, "reserve": self.reserve}

    def public(self) -> dict:
        view = {
            **self.base_view(),
            **self.mech.view(),
            "status": self.status,
            "participants": list(self.participants),
            "bids": self.mech.bid_count(),
            "rounds": self.mech.rounds,
            "seq": self.seq,
        }
        if not self.mech.sealed:
            view["bidders"] = self.mech.bidders()
        if self.outcome is not None:
            o = self.outcome
            view.update(winner=o.winner, winners=o.winners, price=o.price, payments=dict(o.payments))
        if self.error is not None:
            view["error"] = f"{type(self.error).__name__}: {self.error}"
        return view

    def final(self) -> tuple:
        return _wire.ok((self.outcome, self.seq)) if self.error is None else _wire.err(self.error)

    def action(self) -> float | None:
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def eligible(self, bidder: Any) -> bool:
        if self.min_reputation is None:
            return True
        from ._reputation import reputation

        return reputation(bidder) >= self.min_reputation


class AuctionServer(otp.GenServer):
    def init(self, spec: dict) -> Any:
        st = _Auction(spec)
        try:
            otp.Registry.register(_wire.BOARD, auction_key(st.auction_id), st.public(), {"type": "auction"})
        except otp.AlreadyRegistered:
            return otp.Stop(("duplicate_auction", st.auction_id))
        view = st.public()
        _wire.event(AUCTIONS_TOPIC, ("auction_created", view))
        _wire.emit(("auction", "created"), {"count": 1}, {"auction_id": st.auction_id, "kind": st.kind})
        if spec.get("autorun"):
            self._start_run(st)
        return st

    # ------------------------------------------------------------ calls

    def handle_call(self, request: tuple, from_: tuple, st: _Auction) -> Any:
        op = request[0]
        if op == "bid":
            return otp.Reply(self._bid(st, request[1], request[2]), st, st.action())
        if op == "run":
            if st.closed:
                return otp.Reply(st.final(), st, st.action())
            st.waiters.append(from_)
            if st.status == "open":
                self._start_run(st)
            return otp.NoReply(st)
        if op == "close":
            if not st.closed:
                self._finish(st)
            return otp.Reply(st.final(), st, st.action())
        if op == "notify":
            if st.closed:
                otp.send(request[1], ("$auction_result", request[2], st.outcome or st.error))
            else:
                st.notify.append((request[1], request[2]))
            return otp.Reply(_wire.ok(None), st, st.action())
        if op == "$view":
            return otp.Reply(_wire.ok(st.public()), st, st.action())
        return otp.Reply(("error", _wire.pack(ValueError(f"unknown auction request {op!r}"))), st, st.action())

    def _bid(self, st: _Auction, bidder: Any, payload: Any) -> tuple:
        try:
            if st.closed:
                raise AuctionClosed("the auction is closed")
            if not st.eligible(bidder):
                raise IneligibleBidder(f"bidder {bidder!r} is below the minimum reputation {st.min_reputation}")
            st.mech.place(bidder, payload)
        except (AuctionError, _wire.EconomicsError) as exc:
            return _wire.err(exc)
        self._changed(st, ("bid", bidder) if st.mech.sealed else ("bid", bidder, payload))
        return _wire.ok(st.seq)

    # -------------------------------------------------------- driving

    def _start_run(self, st: _Auction) -> None:
        st.status = "running"
        if st.capabilities:
            from .._agent_registry import find_agents

            found = find_agents(capabilities=st.capabilities, status="running")
            st.participants += [a for a in found if a not in st.participants]
        self._changed(st, ("running",))
        otp.send(otp.self(), STEP)

    def handle_info(self, msg: Any, st: _Auction) -> Any:
        if msg == STEP and st.status == "running":
            done = st.mech.step(self._ask(st), [p for p in st.participants if self._may_bid(st, p)], st.base_view())
            if done:
                self._finish(st)
            else:
                self._changed(st, ("round", st.mech.rounds, st.mech.view()))
                otp.send(otp.self(), STEP)
        elif msg == "timeout" and st.closed and st.action() == 0.0:
            return otp.Stop("normal", st)
        return otp.NoReply(st, st.action())

    @staticmethod
    def _may_bid(st: _Auction, agent: Any) -> bool:
        if agent in st.mech.not_bidding:
            return False
        if not st.eligible(agent):
            st.mech.not_bidding[agent] = "ineligible"
            return False
        return True

    @staticmethod
    def _ask(st: _Auction):
        def ask(ids: list, payload: Any, kind: str) -> list:
            return broadcast(ids, payload, timeout=st.bid_timeout, kind=kind)

        return ask

    def _finish(self, st: _Auction) -> None:
        st.mech.closed = True
        try:
            st.outcome = _outcome(st, st.mech.clear())
            st.status = "closed"
        except AuctionError as exc:
            st.error = exc
            st.status = "failed"
        if st.outcome is not None and st.reserve_payment:
            st.outcome = _settle(st.outcome)
        st.deadline = time.monotonic() + st.linger
        self._changed(st, ("auction_closed", st.outcome or st.error))
        _wire.event(AUCTIONS_TOPIC, ("auction_closed", st.outcome or st.error))
        _wire.emit(
            ("auction", "closed"),
            {"duration": time.monotonic() - st.created, "bids": st.mech.bid_count()},
            {"auction_id": st.auction_id, "kind": st.kind, "winner": st.outcome.winner if st.outcome else None},
        )
        answer = st.final()
        for from_ in st.waiters:
            otp.reply(from_, answer)
        st.waiters.clear()
        for pid, tag in st.notify:
            otp.send(pid, ("$auction_result", tag, st.outcome or st.error))
        st.notify.clear()

    def _changed(self, st: _Auction, what: tuple) -> None:
        st.seq += 1
        _wire.post(auction_key(st.auction_id), st.public())
        _wire.event(auction_topic(st.auction_id), what)


def _settle(outcome: AuctionOutcome) -> AuctionOutcome:
    """Reserve every positive payment in the budget service under
    ``auction:<id>`` (the rules' payments, converted to exact decimals)."""
    from dataclasses import replace

    from ._budgets import reserve_funds, to_money

    reservations, errors = {}, {}
    rid = f"auction:{outcome.auction_id}"
    for bidder, amount in outcome.payments.items():
        if amount <= 0:
            continue
        try:
            reserve_funds(bidder, rid, to_money(amount))
            reservations[bidder] = rid
        except (ValueError, otp.OTPError) as exc:
            errors[bidder] = f"{type(exc).__name__}: {exc}"
    return replace(outcome, reservations=reservations, settlement_errors=errors)
