"""One auction, as state inside a host process (see :mod:`._host`).

The auction owns its bids; nothing else writes them.  Its host runs its
code one message at a time, between the messages of every other auction
and market it holds.  A driven run is a sequence of steps of the
mechanism (:mod:`._mechanisms`), one per round or clock tick, each started
by a message the host sends itself for the auction, so requests that
arrived meanwhile (explicit bids, ``close``, reads) and the other items'
messages are served between two steps.  A step that asks agents sends its
question as asynchronous requests (:class:`~._asks.AgentAsk`) and arms an
``otp`` timer for ``bid_timeout``; the step goes on when every agent
answered or the timer fired.  Every change is written to the economics
board and published on the auction's topic; telemetry events go to
``mabeam.telemetry`` when it runs.

A bid stands while the process behind it lives: the bidder's agent, for
a bid an agent answered when asked and for an explicit bid whose bidder id
names a running agent (a bidder id that names no agent has no process, and
its bids stand on their own).  The auction monitors each such process; when
one exits, the bidder's bids are withdrawn (:meth:`Mechanism.withdraw`) and
the change is published (``('withdrawn', bidder, reason)``).  At the close
the winners are checked once more with a fresh monitor, so a winner that
died just before is withdrawn too, whatever the order in which its death
and the close reached the host: the next standing bid wins, or, if every
bid that could have won was withdrawn, the auction fails with
:class:`~mabeam.economics._errors.BiddersExited`.

When the auction is cleared it answers every ``run`` caller, sends
``('$auction_result', ref, outcome)`` to every process that asked for the
result asynchronously, reserves the payments in the budget service if
asked (``reserve_payment=True``), and stays ``linger`` seconds (default 30)
so that late readers still find its final state, then leaves its host.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, ClassVar

import otp

from .._agent import agent_name
from .._agent_registry import find_agents
from .._comms import DEFAULT_TIMEOUT
from ._asks import AgentAsk
from ._auction_data import AUCTIONS_TOPIC, AuctionOutcome, AuctionSpec, Cleared, IneligibleBidder, auction_topic
from ._backers import Backers
from ._budget_api import reserve_funds, to_money
from ._errors import AuctionCrashed, BiddersExited, EconomicsError
from ._hosting import Hosted, HostSide
from ._mechanisms import AgentAnswer, Mechanism, Step, make_mechanism
from ._reputation_api import get_reputation
from .auctions import AuctionClosed, AuctionError, AuctionResult, CombinatorialResult

__all__ = ["Auction", "EXIT_REASON_WAIT"]

#: How long the close waits for the exit reason of a winner found dead: its
#: monitor's DOWN is on its way (the process is gone), this only bounds it.
EXIT_REASON_WAIT = 2.0


class Auction(Hosted):
    """One auction in its host (see the module doc)."""

    kind_of_item: ClassVar[str] = "auction"

    def __init__(self, host: HostSide, spec: AuctionSpec, serial: int) -> None:
        super().__init__(host, spec.auction_id, serial, spec.linger)
        options = dict(spec.options)
        self.auction_id = spec.auction_id
        self.kind = spec.kind
        self.item = spec.item
        self.reserve = spec.reserve
        self.participants = list(spec.participants or [])
        self.capabilities = options.pop("capabilities", None)
        self.bid_timeout = options.pop("bid_timeout", DEFAULT_TIMEOUT)
        self.reserve_payment = bool(options.pop("reserve_payment", False))
        self.min_reputation = options.pop("min_reputation", None)
        self.mech: Mechanism = make_mechanism(self.kind, self.item, self.reserve, options)
        self.autorun = spec.autorun
        self.waiters: dict[otp.Ref, tuple] = {}  # monitor of a waiting run caller -> its from_
        self.notify: list[tuple] = list(spec.notify)
        self.outcome: AuctionOutcome | None = None
        self.error: EconomicsError | None = None
        self.backers = Backers(host.routes, self)  # the process behind each bidder's bids
        self.answered_by: dict[Any, otp.Pid] = {}  # agent -> the process that answered the last ask
        self.stepping: Step | None = None  # the driven step under way
        self.asking: AgentAsk | None = None  # its question, while agents answer
        self.asks = 0  # numbers each question, so that a stale timer is told apart

    def opened(self) -> None:
        """The auction is on the board (registered by the host): announce it, start it."""
        self.host.writer.announce(AUCTIONS_TOPIC, ("auction_created", self.public()))
        self.host.writer.emit(
            ("mabeam", "economics", "auction", "created"),
            {"count": 1},
            {"auction_id": self.auction_id, "kind": self.kind},
        )
        if self.autorun:
            self._start_run()

    # ------------------------------------------------------------ operations

    def bid(self, bidder: Any, payload: Any) -> int:
        """Place an explicit bid; answers the board ``seq`` that shows it."""
        if self.closed:
            raise AuctionClosed("the auction is closed")
        if not self._eligible(bidder):
            raise IneligibleBidder(f"bidder {bidder!r} is below the minimum reputation {self.min_reputation}")
        self.mech.place(bidder, payload)
        self._back(bidder, _agent_pid(bidder))
        return self.changed(("bid", bidder) if self.mech.sealed else ("bid", bidder, payload))

    def run(self, caller: tuple) -> Cleared | None:
        """Drive the auction to its end: the outcome if it is cleared,
        else None and ``caller`` is answered when it is."""
        if self.closed:
            return self._final()
        ref = otp.monitor(caller[0])  # a caller that dies stops waiting
        self.waiters[ref] = caller
        self.host.routes[ref] = self
        if self.status == "open":
            self._start_run()
        return None

    def close(self) -> Cleared:
        """Clear now with the bids received so far (a driven step under
        way stops: the answers in are taken, those still awaited dropped)."""
        if not self.closed:
            self._finish()
        return self._final()

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

    def topic(self) -> tuple:
        return auction_topic(self.auction_id)

    def _base_view(self) -> dict:
        return {"auction_id": self.auction_id, "kind": self.kind, "item": self.item, "reserve": self.reserve}

    def minimal_view(self) -> dict:
        view = self._base_view()
        if self.error is not None:
            view["error"] = f"{type(self.error).__name__}: {self.error}"
        return view

    def public(self) -> dict:
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
        """The outcome of the cleared auction; raises its error if it could not clear."""
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
        self.changed(("running",))
        self.host.send_self(self, "round")

    def on_timer(self, what: str, n: int) -> None:
        if what == "round":
            if self.status == "running" and self.stepping is None:
                bidders = [p for p in self.participants if self._may_bid(p)]
                self.stepping = self.mech.step(bidders, self._base_view())
                self._resume(None)
        elif what == "ask_timeout":
            if self.asking is not None and n == self.asks:
                self._answered()

    def take(self, msg: otp.Response | otp.DOWN) -> None:
        if self.asking is not None and self.asking.take(msg):
            if self.asking.done:
                self._answered()
        elif (exit_ := self.backers.exit_of(msg)) is not None:
            self._withdraw(*exit_)
        elif isinstance(msg, otp.DOWN) and msg.ref in self.waiters:
            del self.waiters[msg.ref]  # the caller died: nobody to answer
            self.host.routes.pop(msg.ref, None)

    def _resume(self, answers: list[AgentAnswer] | None) -> None:
        """Run the step under way until it asks agents or ends."""
        step = self.stepping
        assert step is not None
        try:
            question = step.send(answers)  # type: ignore[arg-type]  # None starts the generator
        except StopIteration as end:
            self.stepping = None
            self._stepped(bool(end.value))
            return
        self.host.writer.flush()  # the board shows the round before any agent sees the question
        if self.closed:  # its snapshot failed it
            step.close()
            self.stepping = None
            return
        self.asks += 1
        self.asking = AgentAsk(question, self.host.routes, self)
        if self.asking.done:  # nobody to wait for (no participant is running)
            self._answered()
        elif self.bid_timeout is not None:
            self.host.arm(self.bid_timeout, self, "ask_timeout", self.asks)

    def _answered(self) -> None:
        """Every agent answered, or the bid timeout passed: the step goes on."""
        ask = self.asking
        assert ask is not None
        self.asking = None
        ask.expire()
        self.answered_by.update(ask.answered_by)
        self._resume(ask.result())

    def _back_answered(self) -> None:
        """Back each bid an agent answered with the process that answered."""
        for bidder in self.mech.bidders():
            if bidder not in self.backers and bidder in self.answered_by:
                self._back(bidder, self.answered_by[bidder])

    def _stepped(self, done: bool) -> None:
        self._back_answered()
        if done:
            self._finish()
        else:
            self.changed(("round", self.mech.rounds, self.mech.view()))
            self.host.send_self(self, "round")

    def _may_bid(self, agent: Any) -> bool:
        if agent in self.mech.not_bidding:
            return False
        if not self._eligible(agent):
            self.mech.not_bidding[agent] = "ineligible"
            return False
        return True

    def _stop_step(self, take_answers: bool) -> None:
        """End the driven step under way: its requests still out are
        abandoned (those agents did not answer in time); with
        ``take_answers`` the answers already in go into the step first."""
        ask, step = self.asking, self.stepping
        self.asking = self.stepping = None
        if ask is not None:
            ask.expire()
        if step is None:
            return
        if ask is not None and take_answers:
            self.answered_by.update(ask.answered_by)
            try:
                step.send(ask.result())
            except StopIteration:
                self._back_answered()
                return
        step.close()

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
            self.changed(("withdrawn", bidder, reason))

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
        for bidder, reason in self.backers.take_queued_exits():
            self._withdraw(bidder, reason)
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

    # -------------------------------------------------------- the end

    def _finish(self) -> None:
        self._stop_step(take_answers=True)
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
        self.host.writer.emit(
            ("mabeam", "economics", "auction", "closed"),
            {"duration": time.monotonic() - self.created, "bids": self.mech.bid_count()},
            {"auction_id": self.auction_id, "kind": self.kind, "winner": self.outcome.winner if self.outcome else None},
        )
        self._announce_end()

    def crashed_error(self, crash: otp.Crash) -> EconomicsError:
        return AuctionCrashed(self.auction_id, crash)

    def fail(self, error: EconomicsError) -> None:
        self.stop()
        self.mech.closed = True
        self.error = error
        self.outcome = None
        self.status = "failed"
        self._announce_end()

    def _announce_end(self) -> None:
        """Show the end, answer every waiter, tell the result, retire."""
        result = self.outcome or self.error
        self.changed(("auction_closed", result))
        self.host.writer.announce(AUCTIONS_TOPIC, ("auction_closed", result))
        waiters, self.waiters = self.waiters, {}
        for ref, caller in waiters.items():
            self.host.routes.pop(ref, None)
            otp.demonitor(ref, flush=True)
            if self.error is not None:
                self.host.writer.reply(caller, otp.Failed(self.error))
            else:
                self.host.writer.reply(caller, otp.Ok(self._final()))
        for pid, tag in self.notify:
            self.host.writer.send(pid, ("$auction_result", tag, result))
        self.notify.clear()
        self.host.retire(self)

    def stop(self) -> None:
        try:
            self._stop_step(take_answers=False)
        except Exception:  # noqa: BLE001 - a step that cannot even stop: dropped as it is
            self.stepping = None
            self.asking = None
        self.backers.clear()

    def removed(self) -> None:
        """The auction left its host (its linger is over)."""
        self.stop()
        self.host.writer.announce(self.topic(), ("auction_removed", self.auction_id))

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
