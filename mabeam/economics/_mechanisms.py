"""Auction mechanisms: what an auction does for each kind.

A mechanism holds the bids of one auction and knows three things: how to
take an explicit bid (validated by :mod:`mabeam.economics.auctions`, whose typed
errors go back to the bidder), how to run one *driven* step, and how to
clear (a rules function; every price and payment comes from there).

A driven step is a generator: it yields at most one :class:`Question`
(which agents to ask, what, with which agent operation) and is resumed
with their answers, in the order of the ids; its return value says
whether the auction can be cleared.  The auction's host sends the
questions as asynchronous requests and resumes the step when every agent
answered or the bid timeout passed, so a mechanism never waits itself and
the host serves every other auction meanwhile::

    answers = yield Question(todo, view, "bid")

Driven steps, per kind:

* sealed (``first_price``, ``vickrey``, ``combinatorial``): one step, every
  participant that has not bid yet is asked ``handle_bid(view)`` at once;
* ``english``: one step per round; every active participant except the high
  bidder is asked ``handle_bid(view)`` with the current minimum bid.  The
  round's bids are placed in ascending order of amount (participant order
  among equals), each validated by the rules, so the highest survives and a
  tie goes to the first.  ``None`` (or an error) drops a participant out;
  the auction ends after a round with no accepted bid;
* ``dutch``: one step per clock tick; explicit acceptance prices are checked
  first, then participants are asked ``handle_offer(view, price)``; the
  first acceptance (explicit bids first, then participant order) wins at the
  clock price, via :func:`~mabeam.economics.auctions.clear_dutch`.

A participant that cannot answer (dead, timed out, hook raised) is recorded
in ``not_bidding`` with the reason and never blocks the others (the
requests are concurrent and the wait has a timeout).

A bid stands only while the process behind it lives.  When the auction
learns that a bidder's process exited (its monitor), it calls
:meth:`Mechanism.withdraw`: every bid of that bidder is taken back, as if it
had never been placed (an English high bid falls back to the best standing
bid of another bidder, a Vickrey price is taken among the live bids, VCG is
recomputed without it), the bidder is recorded in ``withdrawn`` with its
exit reason and is not asked again.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any, NamedTuple

import otp

from .._errors import AgentError, AgentExited, CommsError, HookFailed
from . import auctions as rules
from .auctions import AuctionError, Bid, BundleBid, InvalidAuctionParameter, InvalidBid

__all__ = ["KINDS", "AgentAnswer", "Question", "Step", "Mechanism", "make_mechanism", "reason_of"]

KINDS = ("english", "dutch", "first_price", "vickrey", "combinatorial")
MAX_ROUNDS = 1000
MAX_TICKS = 10_000


class AgentAnswer(NamedTuple):
    """One agent's answer to a bid request or an offer: its ``value``, or
    the ``error`` that stopped it from answering."""

    value: Any
    error: BaseException | None = None


class Question(NamedTuple):
    """What a driven step asks: run the agent operation ``kind``
    (``'bid'``, ``'offer'``) on ``payload`` in every agent of ``ids``."""

    ids: list
    payload: Any
    kind: str


#: A driven step: yields at most one :class:`Question`, is sent the
#: answers (one :class:`AgentAnswer` per id, in order), returns True when
#: the auction can be cleared.
Step = Generator[Question, "list[AgentAnswer]", bool]


def reason_of(exc: BaseException) -> Any:
    """Why an agent did not answer, as a plain term: the cause's own term
    ('not_running', 'timeout', an exit reason such as 'killed'),
    ``('hook_raised', message)``, ``('exited', message)`` for an agent that
    crashed, or the error's repr for anything else."""
    if isinstance(exc, HookFailed):
        return ("hook_raised", _message(exc.crash))
    if isinstance(exc, AgentExited) and not isinstance(exc.exit_reason, (str, int, tuple)):
        return ("exited", _message(exc.exit_reason))
    if isinstance(exc, (AgentError, CommsError)):
        return exc.reason
    return repr(exc)


def _message(reason: object) -> str:
    return reason.message if isinstance(reason, otp.Crash) else repr(reason)


class Mechanism:
    kind = ""
    sealed = True

    def __init__(self, item: Any, reserve: float, options: dict) -> None:
        self.item = item
        self.reserve = reserve
        self.not_bidding: dict = {}
        self.rejected: dict = {}
        self.withdrawn: dict = {}  # bidder -> the exit reason of the process behind its bids
        self.withdrawn_bids: list = []
        self.rounds = 0
        self.closed = False

    # -- explicit bids
    def place(self, bidder: Any, payload: Any) -> None:
        raise NotImplementedError

    def bidders(self) -> list:
        raise NotImplementedError

    def bid_count(self) -> int:
        return len(self.bidders())

    # -- bidders that exited
    def withdraw(self, bidder: Any, reason: Any) -> bool:
        """Take back every bid of ``bidder``, whose process exited with
        ``reason``; True if it had bids.  It is not asked again."""
        removed = self._remove_bids(bidder)
        if removed:
            self.withdrawn[bidder] = reason
            self.withdrawn_bids.extend(removed)
        return bool(removed)

    def _remove_bids(self, bidder: Any) -> list:
        raise NotImplementedError

    def has_eligible_withdrawn_bid(self) -> bool:
        """True if a withdrawn bid met the rules' bar for winning (the
        reserve): an auction without a winner then failed because its
        bidders exited, not for lack of bids."""
        return any(b.amount >= self.reserve for b in self.withdrawn_bids)

    def _may_ask(self, agent: Any) -> bool:
        return agent not in self.bidders() and agent not in self.not_bidding and agent not in self.withdrawn

    # -- views
    def view(self) -> dict:
        """Extra fields of the view sent to agents (and shown on the board)."""
        return {}

    # -- driving
    def step(self, participants: list, base_view: dict) -> Step:
        """One driven step (a generator, see the module doc); returns True
        when the auction can be cleared."""
        todo = [p for p in participants if self._may_ask(p)]
        if todo:
            self.rounds += 1
            answers = yield Question(todo, {**base_view, **self.view()}, "bid")
            for agent, answer in zip(todo, answers):
                self.take(agent, answer)
        return True

    def take(self, agent: Any, answer: AgentAnswer) -> bool:
        """Record one agent's answer to a bid request; True if a bid was placed."""
        value = answer.value
        if answer.error is not None:
            self.not_bidding[agent] = reason_of(answer.error)
            return False
        if value is None:
            self.not_bidding[agent] = "declined"
            return False
        try:
            self.place(agent, value)
        except AuctionError as exc:
            self.rejected[agent] = f"{type(exc).__name__}: {exc}"
            return False
        return True

    def clear(self) -> rules.AuctionResult | rules.CombinatorialResult:
        raise NotImplementedError


def _check_reserve(reserve: Any) -> None:
    rules.EnglishState(reserve)  # the rules' own validation of a reserve price


class Sealed(Mechanism):
    """Sealed bids: first price or Vickrey (second price)."""

    def __init__(self, kind: str, item: Any, reserve: float, options: dict) -> None:
        super().__init__(item, reserve, options)
        _check_reserve(reserve)
        self.kind = kind
        self.bids: list[Bid] = []

    def place(self, bidder: Any, payload: Any) -> None:
        bid = Bid(bidder, payload)
        if any(b.bidder == bidder for b in self.bids):
            raise rules.DuplicateBidder(f"bidder {bidder!r} already submitted a sealed bid")
        self.bids.append(bid)

    def bidders(self) -> list:
        return [b.bidder for b in self.bids]

    def _remove_bids(self, bidder: Any) -> list:
        removed = [b for b in self.bids if b.bidder == bidder]
        self.bids = [b for b in self.bids if b.bidder != bidder]
        return removed

    def clear(self) -> rules.AuctionResult:
        clear = rules.clear_vickrey if self.kind == "vickrey" else rules.clear_first_price
        return clear(self.bids, reserve=self.reserve)


class English(Mechanism):
    kind = "english"
    sealed = False

    def __init__(self, item: Any, reserve: float, options: dict) -> None:
        super().__init__(item, reserve, options)
        self.state = rules.EnglishState(reserve, options.get("increment", rules.DEFAULT_BID_INCREMENT))
        self.max_rounds = int(options.get("max_rounds", MAX_ROUNDS))
        self.dropped: set = set()

    def place(self, bidder: Any, payload: Any) -> None:
        if self.closed:
            raise rules.AuctionClosed("the auction is closed")
        self.state = rules.place_bid(self.state, Bid(bidder, payload))

    def bidders(self) -> list:
        return list(dict.fromkeys(b.bidder for b in self.state.bids))

    def bid_count(self) -> int:
        return len(self.state.bids)

    def _remove_bids(self, bidder: Any) -> list:
        # What stays is still ascending: the best standing bid of another
        # bidder becomes the high bid, and the minimum falls with it.
        self.dropped.add(bidder)
        removed = [b for b in self.state.bids if b.bidder == bidder]
        self.state = replace(self.state, bids=tuple(b for b in self.state.bids if b.bidder != bidder))
        return removed

    def view(self) -> dict:
        high = self.state.high_bid
        return {
            "high_bid": None if high is None else high.amount,
            "high_bidder": None if high is None else high.bidder,
            "minimum_bid": self.state.minimum_bid,
            "increment": self.state.increment,
            "round": self.rounds,
        }

    def step(self, participants: list, base_view: dict) -> Step:
        high = self.state.high_bid
        todo = [p for p in participants if p not in self.dropped and (high is None or p != high.bidder)]
        if not todo or self.rounds >= self.max_rounds:
            return True
        self.rounds += 1
        offers = []
        answers = yield Question(todo, {**base_view, **self.view()}, "bid")
        for agent, (value, error) in zip(todo, answers):
            if error is not None or value is None:
                self.dropped.add(agent)
                if error is not None:
                    self.not_bidding[agent] = reason_of(error)
                elif agent not in self.bidders():
                    self.not_bidding[agent] = "declined"
                continue
            try:
                offers.append(Bid(agent, value))
            except AuctionError as exc:
                self.dropped.add(agent)
                self.rejected[agent] = f"{type(exc).__name__}: {exc}"
        accepted = 0
        for bid in sorted(offers, key=lambda b: b.amount):  # stable: participant order among equals
            try:
                self.state = rules.place_bid(self.state, bid)
                accepted += 1
            except rules.BidTooLow:
                pass  # outbid within the round; still active
        return accepted == 0

    def clear(self) -> rules.AuctionResult:
        return rules.close_english(self.state)


class Dutch(Mechanism):
    kind = "dutch"
    sealed = False

    def __init__(self, item: Any, reserve: float, options: dict) -> None:
        super().__init__(item, reserve, options)
        _check_reserve(reserve)
        schedule = options.get("schedule")
        self.schedule: list[float] | None = None if schedule is None else [float(p) for p in schedule]
        self.start: float | None = options.get("start")
        self.decrement: float | None = options.get("decrement")
        if self.schedule is not None:
            rules.clear_dutch(self.schedule, {}, reserve=reserve)  # the rules validate the schedule
        else:
            if self.start is None or self.decrement is None:
                raise InvalidAuctionParameter("a Dutch auction needs start and decrement (or a schedule)")
            rules.clear_dutch_sealed([], reserve=reserve, start=self.start, decrement=self.decrement)
        self.max_ticks = int(options.get("max_ticks", MAX_TICKS))
        self.explicit: list[Bid] = []
        self.accepted: list[Bid] = []
        self.ticked: list[float] = []
        self.asked: dict = {}
        self.done = False

    def place(self, bidder: Any, payload: Any) -> None:
        if self.closed or self.done:
            raise rules.AuctionClosed("the clock has stopped")
        bid = Bid(bidder, payload)
        if bidder in self.bidders():
            raise rules.DuplicateBidder(f"bidder {bidder!r} already gave an acceptance price")
        self.explicit.append(bid)

    def bidders(self) -> list:
        return [b.bidder for b in self.explicit] + [b.bidder for b in self.accepted]

    def _remove_bids(self, bidder: Any) -> list:
        removed = [b for b in self.explicit + self.accepted if b.bidder == bidder]
        self.explicit = [b for b in self.explicit if b.bidder != bidder]
        self.accepted = [b for b in self.accepted if b.bidder != bidder]
        return removed

    def price(self, tick: int) -> float | None:
        if self.schedule is not None:
            return self.schedule[tick] if tick < len(self.schedule) else None
        assert self.start is not None and self.decrement is not None  # checked in __init__
        return self.start - tick * self.decrement

    def view(self) -> dict:
        return {"start": self.start, "decrement": self.decrement, "clock": self.ticked[-1] if self.ticked else None}

    def step(self, participants: list, base_view: dict) -> Step:
        todo = [p for p in participants if self._may_ask(p)]
        if self.done or not todo:
            return self._stop()
        price = self.price(len(self.ticked))
        if price is None or price < self.reserve or price < 0 or len(self.ticked) >= self.max_ticks:
            return self._stop()
        self.ticked.append(price)
        self.rounds = len(self.ticked)
        if any(b.amount >= price for b in self.explicit):
            return self._stop()
        answers = yield Question(todo, ({**base_view, **self.view()}, price), "offer")
        for agent, (value, error) in zip(todo, answers):
            self.asked[agent] = True
            if error is not None:
                self.not_bidding[agent] = reason_of(error)
            elif value:
                self.accepted.append(Bid(agent, price))
        return self._stop() if self.accepted else False

    def _stop(self) -> bool:
        self.done = True
        winners = {b.bidder for b in self.accepted}
        for agent in self.asked:
            if agent not in winners and agent not in self.not_bidding and agent not in self.withdrawn:
                self.not_bidding[agent] = "declined"
        return True

    def clear(self) -> rules.AuctionResult:
        if self.ticked:
            return rules.clear_dutch(self.ticked, self.explicit + self.accepted, reserve=self.reserve)
        if self.schedule is not None:
            return rules.clear_dutch(self.schedule, self.explicit, reserve=self.reserve)
        return rules.clear_dutch_sealed(self.explicit, reserve=self.reserve, start=self.start, decrement=self.decrement)


def _bundle(goods: Any) -> frozenset:
    if isinstance(goods, (str, bytes)):
        return frozenset({goods})
    return frozenset(goods)


class Combinatorial(Mechanism):
    """Bundle bids (XOR per bidder), VCG payments."""

    kind = "combinatorial"

    def __init__(self, item: Any, reserve: float, options: dict) -> None:
        super().__init__(item, reserve, options)
        if reserve:
            raise InvalidAuctionParameter("combinatorial (VCG) auctions take no reserve price")
        self.items = _bundle(item)
        if not self.items:
            raise InvalidAuctionParameter("a combinatorial auction needs at least one item")
        self.bids: list[BundleBid] = []

    def place(self, bidder: Any, payload: Any) -> None:
        new = [self._bundle_bid(bidder, b) for b in self._pairs(payload)]
        if not new:
            raise InvalidBid("no bundle bids given")
        if bidder in self.bidders():
            raise rules.DuplicateBidder(f"bidder {bidder!r} already submitted its bundle bids")
        if len(self.bids) + len(new) > rules.MAX_COMBINATORIAL_BIDS:
            raise rules.TooManyBids(
                f"{len(self.bids) + len(new)} bundle bids exceed the exact-search cap of {rules.MAX_COMBINATORIAL_BIDS}"
            )
        self.bids.extend(new)

    @staticmethod
    def _pairs(payload: Any) -> Iterable:
        if isinstance(payload, BundleBid):
            return [payload]
        if isinstance(payload, Mapping):
            return list(payload.items())
        if isinstance(payload, (list, tuple)):
            return list(payload)
        raise InvalidBid(f"bundle bids are a list of (bundle, amount) or a {{bundle: amount}} dict, not {payload!r}")

    def _bundle_bid(self, bidder: Any, entry: Any) -> BundleBid:
        if isinstance(entry, BundleBid):
            bundle, amount = entry.bundle, entry.amount
        elif isinstance(entry, (list, tuple)) and len(entry) == 2:
            bundle, amount = entry
        else:
            raise InvalidBid(f"a bundle bid is (bundle, amount), not {entry!r}")
        bid = BundleBid(bidder, _bundle(bundle), amount)
        if not bid.bundle <= self.items:
            raise InvalidBid(f"bundle {sorted(map(str, bid.bundle))} contains items not for sale")
        return bid

    def bidders(self) -> list:
        return list(dict.fromkeys(b.bidder for b in self.bids))

    def _remove_bids(self, bidder: Any) -> list:
        removed = [b for b in self.bids if b.bidder == bidder]
        self.bids = [b for b in self.bids if b.bidder != bidder]
        return removed

    def has_eligible_withdrawn_bid(self) -> bool:
        return any(b.amount > 0 for b in self.withdrawn_bids)  # VCG: a positive amount can win

    def view(self) -> dict:
        return {"items": sorted(self.items, key=str)}

    def clear(self) -> rules.CombinatorialResult:
        return rules.clear_combinatorial(self.bids)


_MECHANISMS: dict[str, Callable[[Any, float, dict], Mechanism]] = {
    "english": English,
    "dutch": Dutch,
    "first_price": partial(Sealed, "first_price"),
    "vickrey": partial(Sealed, "vickrey"),
    "combinatorial": Combinatorial,
}
assert tuple(_MECHANISMS) == KINDS


def make_mechanism(kind: str, item: Any, reserve: float, options: dict) -> Mechanism:
    """The mechanism for ``kind``; raises the rules' InvalidAuctionParameter."""
    make = _MECHANISMS.get(kind) if isinstance(kind, str) else None
    if make is None:
        raise InvalidAuctionParameter(f"unknown auction kind {kind!r}; one of {', '.join(KINDS)}")
    return make(item, reserve, options)
