"""The auction process: one server per auction, ``restart='temporary'``
under the ``mabeam.economics`` dynamic supervisor.

The process owns its bids; nothing else writes them.  Driven bidding runs as
a sequence of rounds the process sends itself (:data:`_Tick.ROUND`), so
requests that arrived meanwhile (explicit bids, ``close``, reads) are served
between two rounds instead of waiting for the whole auction.  Every change
is written to the economics board and published on the auction's topic;
telemetry events go to ``mabeam.telemetry`` when it runs.

When the auction is cleared it answers every ``run``/``close`` caller,
sends ``('$auction_result', ref, outcome)`` to every process that asked for
the result asynchronously, reserves the payments in the budget service if
asked (``reserve_payment=True``), and stays ``linger`` seconds (default 30)
so that late readers still find its final state, then exits normally.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, NamedTuple

import otp

from .._agent_registry import find_agents
from .._comms import DEFAULT_TIMEOUT, broadcast
from ..telemetry import emit_event
from . import _board
from ._budget_api import reserve_funds, to_money
from ._errors import EconomicsError
from ._mechanisms import AgentAnswer, Ask, Mechanism, make_mechanism
from ._reputation_api import get_reputation
from .auctions import AuctionClosed, AuctionError, AuctionResult, CombinatorialResult

__all__ = [
    "AuctionServer",
    "AuctionOutcome",
    "AuctionSpec",
    "Cleared",
    "DuplicateAuction",
    "IneligibleBidder",
    "auction_key",
    "auction_topic",
    "AUCTIONS_TOPIC",
]

#: Topic of lifecycle events of every auction (``('auction_created', view)``,
#: ``('auction_closed', outcome)``); each auction also publishes on
#: :func:`auction_topic`.
AUCTIONS_TOPIC = "mabeam.auctions"
DEFAULT_LINGER = 30.0


def auction_key(auction_id: Any) -> tuple:
    return ("auction", auction_id)


def auction_topic(auction_id: Any) -> tuple:
    """The pub/sub topic of one auction: ``('bid', bidder)``, ``('round', n,
    view)``, ``('auction_closed', outcome)`` events."""
    return ("mabeam.auction", auction_id)


class IneligibleBidder(AuctionError):
    """The bidder's reputation is below the auction's ``min_reputation``."""


class DuplicateAuction(EconomicsError):
    """An auction with this id is already running."""


class _Tick(enum.Enum):
    """The message an auction sends itself to run its next driven round."""

    ROUND = "round"


@dataclass(frozen=True)
class AuctionSpec:
    """What an auction process starts from: the API's checked arguments.
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


class Cleared(NamedTuple):
    """The answer to ``run`` and ``close``: the outcome, and the board
    ``seq`` that shows it (read-your-writes)."""

    outcome: AuctionOutcome
    seq: int


class AuctionServer(otp.Service):
    errors: ClassVar[tuple[type[BaseException], ...]] = (EconomicsError,)

    def init(self, spec: AuctionSpec) -> Any:
        options = dict(spec.options)
        self.auction_id = spec.auction_id
        self.kind = spec.kind
        self.item = spec.item
        self.reserve = spec.reserve
        self.participants = list(spec.participants or [])
        self.capabilities = options.pop("capabilities", None)
        self.bid_timeout = options.pop("bid_timeout", DEFAULT_TIMEOUT)
        self.linger = options.pop("linger", DEFAULT_LINGER)
        self.reserve_payment = bool(options.pop("reserve_payment", False))
        self.min_reputation = options.pop("min_reputation", None)
        self.mech: Mechanism = make_mechanism(self.kind, self.item, self.reserve, options)
        self.status = "open"
        self.seq = 0
        self.waiters: list[tuple] = []
        self.notify: list[tuple] = list(spec.notify)
        self.outcome: AuctionOutcome | None = None
        self.error: AuctionError | None = None
        self.created = time.monotonic()
        self.deadline: float | None = None
        try:
            otp.Registry.register(_board.BOARD, auction_key(self.auction_id), self._public(), {"type": "auction"})
        except otp.AlreadyRegistered:
            return otp.Stop(DuplicateAuction(self.auction_id))
        _board.announce(AUCTIONS_TOPIC, ("auction_created", self._public()))
        emit_event(
            ("mabeam", "economics", "auction", "created"),
            {"count": 1},
            {"auction_id": self.auction_id, "kind": self.kind},
        )
        if spec.autorun:
            self._start_run()
        return None

    def next_action(self) -> float | None:
        """While the closed auction lingers: the time left before it leaves."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    # ------------------------------------------------------------ operations

    @otp.operation
    def view(self, key: tuple) -> dict:
        """The current public state (read-your-writes)."""
        return self._public()

    @otp.operation
    def bid(self, bidder: Any, payload: Any) -> int:
        """Place an explicit bid; answers the board ``seq`` that shows it."""
        if self.closed:
            raise AuctionClosed("the auction is closed")
        if not self._eligible(bidder):
            raise IneligibleBidder(f"bidder {bidder!r} is below the minimum reputation {self.min_reputation}")
        self.mech.place(bidder, payload)
        self._changed(("bid", bidder) if self.mech.sealed else ("bid", bidder, payload))
        return self.seq

    @otp.operation
    def run(self) -> Cleared:
        """Drive the auction to its end; answered when it is cleared."""
        if self.closed:
            return self._final()
        assert self.caller is not None  # set while an operation runs
        self.waiters.append(self.caller)
        if self.status == "open":
            self._start_run()
        return otp.DEFER

    @otp.operation
    def close(self) -> Cleared:
        """Clear now with the bids received so far."""
        if not self.closed:
            self._finish()
        return self._final()

    @otp.operation
    def notify_result(self, pid: otp.Pid, tag: Any) -> None:
        """Send ``('$auction_result', tag, outcome)`` to ``pid`` when cleared."""
        if self.closed:
            otp.send(pid, ("$auction_result", tag, self.outcome or self.error))
        else:
            self.notify.append((pid, tag))

    # ------------------------------------------------------------ state

    @property
    def closed(self) -> bool:
        return self.status in ("closed", "failed")

    def _base_view(self) -> dict:
        return {"auction_id": self.auction_id, "kind": self.kind, "item": self.item, "reserve": self.reserve}

    def _public(self) -> dict:
        view = {
            **self._base_view(),
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

    def _final(self) -> Cleared:
        """The outcome of the cleared auction; raises the rules' error if it could not clear."""
        if self.error is not None:
            raise self.error
        assert self.outcome is not None  # closed: cleared or failed
        return Cleared(self.outcome, self.seq)

    def _eligible(self, bidder: Any) -> bool:
        return self.min_reputation is None or get_reputation(bidder) >= self.min_reputation

    # -------------------------------------------------------- driving

    def _start_run(self) -> None:
        self.status = "running"
        if self.capabilities:
            found = find_agents(capabilities=self.capabilities, status="running")
            self.participants += [a for a in found if a not in self.participants]
        self._changed(("running",))
        otp.send(otp.self(), _Tick.ROUND)

    def handle_info(self, msg: Any, state: Any) -> Any:
        if msg is _Tick.ROUND and self.status == "running":
            bidders = [p for p in self.participants if self._may_bid(p)]
            if self.mech.step(self._ask_agents(), bidders, self._base_view()):
                self._finish()
            else:
                self._changed(("round", self.mech.rounds, self.mech.view()))
                otp.send(otp.self(), _Tick.ROUND)
        elif msg == "timeout" and self.closed and self.next_action() == 0.0:
            return otp.Stop("normal", state)
        return otp.NoReply(state, self.next_action())

    def _may_bid(self, agent: Any) -> bool:
        if agent in self.mech.not_bidding:
            return False
        if not self._eligible(agent):
            self.mech.not_bidding[agent] = "ineligible"
            return False
        return True

    def _ask_agents(self) -> Ask:
        timeout = self.bid_timeout

        def ask(ids: list, payload: Any, kind: str) -> list[AgentAnswer]:
            # broadcast answers ('ok', value) or ('error', exc) per agent
            answers = broadcast(ids, payload, timeout=timeout, kind=kind)
            return [AgentAnswer(value) if status == "ok" else AgentAnswer(None, value) for status, value in answers]

        return ask

    def _finish(self) -> None:
        self.mech.closed = True
        try:
            self.outcome = self._outcome(self.mech.clear())
            self.status = "closed"
        except AuctionError as exc:
            self.error = exc
            self.status = "failed"
        if self.outcome is not None and self.reserve_payment:
            self.outcome = _settle(self.outcome)
        self.deadline = time.monotonic() + self.linger
        result = self.outcome or self.error
        self._changed(("auction_closed", result))
        _board.announce(AUCTIONS_TOPIC, ("auction_closed", result))
        emit_event(
            ("mabeam", "economics", "auction", "closed"),
            {"duration": time.monotonic() - self.created, "bids": self.mech.bid_count()},
            {"auction_id": self.auction_id, "kind": self.kind, "winner": self.outcome.winner if self.outcome else None},
        )
        for caller in self.waiters:
            if self.error is not None:
                self.answer_error(caller, self.error)
            else:
                self.answer(caller, self._final())
        self.waiters.clear()
        for pid, tag in self.notify:
            otp.send(pid, ("$auction_result", tag, result))
        self.notify.clear()

    def _outcome(self, result: AuctionResult | CombinatorialResult) -> AuctionOutcome:
        mech = self.mech
        if isinstance(result, CombinatorialResult):
            winners = result.winners
            allocation: dict = {w: frozenset(b) for w, b in result.allocation.items()}
            winner, price, welfare = (winners[0] if winners else None), None, result.welfare
        else:
            winners = () if result.winner is None else (result.winner,)
            allocation = {} if result.winner is None else {result.winner: self.item}
            winner, price, welfare = result.winner, result.price, None
        return AuctionOutcome(
            auction_id=self.auction_id,
            kind=self.kind,
            item=self.item,
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
            duration=time.monotonic() - self.created,
        )

    def _changed(self, what: tuple) -> None:
        self.seq += 1
        _board.post(auction_key(self.auction_id), self._public())
        _board.announce(auction_topic(self.auction_id), what)


def _settle(outcome: AuctionOutcome) -> AuctionOutcome:
    """Reserve every positive payment in the budget service under
    ``auction:<id>`` (the rules' payments, converted to exact decimals)."""
    reservations, errors = {}, {}
    rid = f"auction:{outcome.auction_id}"
    for bidder, amount in outcome.payments.items():
        if amount <= 0:
            continue
        try:
            reserve_funds(bidder, rid, to_money(amount))
            reservations[bidder] = rid
        except (ValueError, otp.OTPError) as exc:  # the auction stands; the failure is reported
            errors[bidder] = f"{type(exc).__name__}: {exc}"
    return replace(outcome, reservations=reservations, settlement_errors=errors)
