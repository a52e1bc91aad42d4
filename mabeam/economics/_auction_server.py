"""The auction process: one server per auction, ``restart='temporary'``
under the ``mabeam.economics`` dynamic supervisor.

The process owns its bids; nothing else writes them.  Driven bidding runs as
a sequence of rounds the process sends itself (:data:`_Tick.ROUND`), so
requests that arrived meanwhile (explicit bids, ``close``, reads) are served
between two rounds instead of waiting for the whole auction.  Every change
is written to the economics board and published on the auction's topic;
telemetry events go to ``mabeam.telemetry`` when it runs.

A bid stands while the process behind it lives: the bidder's agent, for
a bid an agent answered when asked and for an explicit bid whose bidder id
names a running agent (a bidder id that names no agent has no process, and
its bids stand on their own).  The auction monitors each such process; when
one exits, the bidder's bids are withdrawn (:meth:`Mechanism.withdraw`) and
the change is published (``('withdrawn', bidder, reason)``).  At the close
the winners are checked once more with a fresh monitor, so a winner that
died just before is withdrawn too, whatever the order in which its death
and the close reached the auction: the next standing bid wins, or, if every
bid that could have won was withdrawn, the auction fails with
:class:`~mabeam.economics._errors.BiddersExited`.

Agents are asked with asynchronous requests (``otp.send_request``, one per
agent, in one :class:`otp.RequestIdCollection`): the answers are taken as
they arrive, and an agent that is slow or dead costs only its own timeout
or its death, never the others' answers.

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

from .._agent import agent_name
from .._agent_registry import find_agents
from .._comms import DEFAULT_TIMEOUT, whereis_agent
from .._errors import AgentExited, AgentNotRunning, AgentTimeout
from ..telemetry import emit_event
from . import _board
from ._backers import Backers
from ._budget_api import reserve_funds, to_money
from ._errors import BiddersExited, EconomicsError
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
    "ask_agents",
    "AUCTIONS_TOPIC",
]

#: Topic of lifecycle events of every auction (``('auction_created', view)``,
#: ``('auction_closed', outcome)``); each auction also publishes on
#: :func:`auction_topic`.
AUCTIONS_TOPIC = "mabeam.auctions"
DEFAULT_LINGER = 30.0
#: How long the close waits for the exit reason of a winner found dead: its
#: monitor's DOWN is on its way (the process is gone), this only bounds it.
EXIT_REASON_WAIT = 2.0


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
        self.error: EconomicsError | None = None
        # The process behind each bidder's bids, and its monitor.
        self.backers = Backers()
        self.answered_by: dict[Any, otp.Pid] = {}  # agent -> the process that answered the last ask
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
        self._back(bidder, _agent_pid(bidder))
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
            done = self.mech.step(self._ask_agents(), bidders, self._base_view())
            for bidder in self.mech.bidders():
                if bidder not in self.backers and bidder in self.answered_by:
                    self._back(bidder, self.answered_by[bidder])
            if done:
                self._finish()
            else:
                self._changed(("round", self.mech.rounds, self.mech.view()))
                otp.send(otp.self(), _Tick.ROUND)
        elif (exit_ := self.backers.exit_of(msg)) is not None:
            self._withdraw(*exit_)
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
        answered_by = self.answered_by

        def ask(ids: list, payload: Any, kind: str) -> list[AgentAnswer]:
            return ask_agents(ids, payload, kind, timeout, answered_by)

        return ask

    # -------------------------------------------------------- the processes behind bids

    def _back(self, bidder: Any, pid: otp.Pid | None) -> None:
        """Monitor ``pid``, the process behind ``bidder``'s bids (None: no
        process stands behind them)."""
        if pid is None or self.closed:
            return
        self.backers.back(bidder, pid)  # a bidder that runs again: its new process stands behind its bids

    def _withdraw(self, bidder: Any, reason: Any) -> None:
        """``bidder``'s process exited: take its bids back."""
        self.backers.drop(bidder)
        if self.mech.withdraw(bidder, reason):
            self._changed(("withdrawn", bidder, reason))

    def _take_exits(self) -> None:
        """Withdraw the bidders whose DOWN is already queued behind the
        request being served."""
        for bidder, reason in self.backers.take_queued_exits():
            self._withdraw(bidder, reason)

    def _exit_reason(self, bidder: Any) -> Any:
        """None if the process behind ``bidder`` lives (or there is none),
        else its exit reason.  A fresh monitor answers at once for a process
        already gone, where the first monitor's DOWN may still be on its way."""
        backer = self.backers.get(bidder)
        if backer is None:
            return None
        pid, ref = backer
        probe = otp.monitor(pid)
        try:
            down = otp.receive(0, lambda m: isinstance(m, otp.DOWN) and m.ref in (ref, probe))
        except otp.Timeout:
            otp.demonitor(probe, flush=True)
            return None
        if down.ref == probe:  # gone; the first monitor's DOWN carries the real reason
            try:
                down = otp.receive(EXIT_REASON_WAIT, lambda m: isinstance(m, otp.DOWN) and m.ref == ref)
            except otp.Timeout:
                pass
        else:
            otp.demonitor(probe, flush=True)
        return down.reason

    def _clear(self) -> AuctionResult | CombinatorialResult:
        """Clear with live winners only: a winner whose process is gone is
        withdrawn and the rules clear again, until every winner lives."""
        self._take_exits()
        while True:
            result = self.mech.clear()
            winners = result.winners if isinstance(result, CombinatorialResult) else (result.winner,)
            gone = {w: r for w in winners if w is not None and (r := self._exit_reason(w)) is not None}
            if not gone:
                break
            for winner, reason in gone.items():
                self._withdraw(winner, reason)
        has_winner = bool(result.winners) if isinstance(result, CombinatorialResult) else result.winner is not None
        if not has_winner and self.mech.has_eligible_withdrawn_bid():
            raise BiddersExited(self.auction_id, self.mech.withdrawn)
        return result

    def _finish(self) -> None:
        self.mech.closed = True
        try:
            self.outcome = self._outcome(self._clear())
            self.status = "closed"
        except (AuctionError, BiddersExited) as exc:
            self.error = exc
            self.status = "failed"
        self.backers.clear()
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
            withdrawn=dict(mech.withdrawn),
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


def _agent_pid(bidder: Any) -> otp.Pid | None:
    """The process registered as the agent ``bidder``, if any.  Only the
    name is read: a process that died a moment ago is still returned, and
    its monitor reports it at once."""
    try:
        return otp.whereis(agent_name(bidder))
    except TypeError:  # an id no agent can have (the registry refuses the key)
        return None


def ask_agents(
    ids: list, payload: Any, kind: str, timeout: float | None, answered_by: dict | None = None
) -> list[AgentAnswer]:
    """Run the ``kind`` operation of every agent of ``ids`` on ``payload``
    and return their answers in the order of ``ids``: the value, or the
    cause that kept an agent from answering (``AgentNotRunning``,
    ``AgentTimeout``, ``AgentExited``, the hook's ``HookFailed``, or the
    kernel's ``UnknownOperation`` for a ``kind`` the agent lacks).

    One request per agent goes out at once; the answers are taken as they
    arrive, each death as its monitor reports it, so the whole takes the
    slowest answer and at most ``timeout`` (None: no limit).  The pid that
    answered is recorded in ``answered_by``."""
    answers: list[AgentAnswer | None] = [None] * len(ids)
    pending: otp.RequestIdCollection[tuple[int, Any, otp.Pid]] = otp.RequestIdCollection()
    request = otp.Request(kind, (payload,), {})
    for i, agent in enumerate(ids):
        pid = whereis_agent(agent)
        if pid is None:
            answers[i] = AgentAnswer(None, AgentNotRunning(agent))
        else:
            pending.add(otp.send_request(pid, request), (i, agent, pid))
    deadline = None if timeout is None else time.monotonic() + timeout
    while len(pending):
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            reply, (i, agent, pid), pending = otp.receive_any_response(pending, wait)
        except otp.CallTimeout:
            break  # every request still pending was abandoned: their answers are dropped
        except otp.CallError as exc:
            i, agent, _ = exc.label  # type: ignore[attr-defined]  # set by receive_any_response
            # gone before the request reached it: not running; after: exited
            not_running = isinstance(exc, otp.NoProc) or exc.reason == "noproc"
            gone = AgentNotRunning(agent) if not_running else AgentExited(agent, exc.reason)
            answers[i] = AgentAnswer(None, gone)
            continue
        answers[i] = _answer(agent, reply)
        if answered_by is not None:
            answered_by[agent] = pid
    return [AgentAnswer(None, AgentTimeout(ids[i])) if a is None else a for i, a in enumerate(answers)]


def _answer(agent: Any, reply: Any) -> AgentAnswer:
    """An agent's answer from its ``otp.Service`` reply."""
    if type(reply) is otp.Ok:
        return AgentAnswer(reply.value)
    if type(reply) is otp.Failed and isinstance(reply.error, Exception):
        return AgentAnswer(None, reply.error)
    raise TypeError(f"agent {agent!r} answered {reply!r}: not an otp.Service reply")
