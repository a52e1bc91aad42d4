"""Clearing rules for single-item and combinatorial auctions, as pure functions.

Every result, efficiency included, is computed from the bids given; nothing
here is simulated or constant.

Conventions shared by every rule:

* Bids are given in submission order. **Ties are broken in favour of the
  earliest bid** (lowest index), so results are deterministic.
* A reserve price is the lowest acceptable price. Sealed bids below it are not
  errors, they are simply not eligible (as when sealed envelopes are opened
  and none meets the reserve); open (English) bids below it are rejected.
* ``payments`` maps every bidder that took part to what it pays (0.0 for
  losers), so callers can settle budgets without special cases.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import cast

from ._errors import EconomicsError

__all__ = [
    "MAX_COMBINATORIAL_BIDS",
    "DEFAULT_BID_INCREMENT",
    "AuctionError",
    "InvalidBid",
    "InvalidAuctionParameter",
    "BidTooLow",
    "AuctionClosed",
    "DuplicateBidder",
    "TooManyBids",
    "Bid",
    "BundleBid",
    "AuctionResult",
    "CombinatorialResult",
    "EnglishState",
    "validate_bid",
    "place_bid",
    "close_english",
    "clear_english",
    "clear_dutch",
    "clear_dutch_sealed",
    "clear_first_price",
    "clear_vickrey",
    "optimal_allocation",
    "clear_combinatorial",
    "efficiency",
]

MAX_COMBINATORIAL_BIDS = 20
"""Exact winner determination is exponential; above this it is refused, not approximated."""

DEFAULT_BID_INCREMENT = 0.1
"""The step by which each English bid must beat the previous one when none is given."""

_EPS = 1e-9  # relative tolerance for "bid >= minimum" so that 0.2 + 0.1 accepts a bid of 0.3


class AuctionError(EconomicsError, ValueError):
    """Base class of every error raised by the auction rules."""


class InvalidBid(AuctionError):
    """A bid is malformed: empty bidder, non-finite or negative amount, empty bundle."""


class InvalidAuctionParameter(AuctionError):
    """An auction parameter (reserve, increment, schedule, true values) is unusable."""


class BidTooLow(AuctionError):
    """An open-outcry bid is below the current minimum acceptable bid."""

    def __init__(self, amount: float, minimum: float) -> None:
        super().__init__(f"bid {amount} is below the minimum acceptable bid {minimum}")
        self.amount = amount
        self.minimum = minimum


class AuctionClosed(AuctionError):
    """A bid was offered to an auction that has already been closed."""


class DuplicateBidder(AuctionError):
    """A sealed-bid rule received two bids from one bidder (one envelope per bidder)."""


class TooManyBids(AuctionError):
    """Exact combinatorial winner determination was asked for more bids than the cap."""


def _check_amount(value: float, what: str, error: type[AuctionError]) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise error(f"{what} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class Bid:
    """One bidder's offer for the single item (or its acceptance price in a Dutch auction)."""

    bidder: str
    amount: float

    def __post_init__(self) -> None:
        if not self.bidder:
            raise InvalidBid("bidder must be a non-empty identifier")
        _check_amount(self.amount, "bid amount", InvalidBid)


@dataclass(frozen=True)
class BundleBid:
    """A bid for a bundle of items. A bidder's bundle bids are exclusive (XOR): it wins at most one."""

    bidder: str
    bundle: frozenset[str]
    amount: float

    def __post_init__(self) -> None:
        if not self.bidder:
            raise InvalidBid("bidder must be a non-empty identifier")
        if not isinstance(self.bundle, frozenset):
            object.__setattr__(self, "bundle", frozenset(self.bundle))
        if not self.bundle:
            raise InvalidBid("a bundle must contain at least one item")
        _check_amount(self.amount, "bid amount", InvalidBid)


@dataclass(frozen=True)
class AuctionResult:
    """Outcome of a single-item auction. ``reason`` says why there is no winner."""

    mechanism: str
    winner: str | None
    price: float | None
    payments: Mapping[str, float]
    bids: tuple[Bid, ...]
    winning_bid: Bid | None = None
    reason: str | None = None


@dataclass(frozen=True)
class CombinatorialResult:
    """Outcome of a combinatorial auction with VCG payments.

    ``welfare`` is the declared welfare of the allocation (sum of winning bid
    amounts); ``allocation`` maps each winner to the bundle it receives.
    """

    allocation: Mapping[str, frozenset[str]]
    payments: Mapping[str, float]
    winning_bids: tuple[BundleBid, ...]
    welfare: float
    bids: tuple[BundleBid, ...]
    reason: str | None = None

    @property
    def winners(self) -> tuple[str, ...]:
        return tuple(b.bidder for b in self.winning_bids)


def _check_reserve(reserve: float) -> None:
    _check_amount(reserve, "reserve price", InvalidAuctionParameter)


def _payments(bidders: Iterable[str], charges: Mapping[str, float]) -> Mapping[str, float]:
    table = dict.fromkeys(bidders, 0.0)
    table.update(charges)
    return MappingProxyType(table)


def _no_winner(mechanism: str, bids: tuple[Bid, ...], reason: str) -> AuctionResult:
    return AuctionResult(mechanism, None, None, _payments((b.bidder for b in bids), {}), bids, None, reason)


def _won(mechanism: str, bids: tuple[Bid, ...], winning: Bid, price: float) -> AuctionResult:
    payments = _payments((b.bidder for b in bids), {winning.bidder: price})
    return AuctionResult(mechanism, winning.bidder, price, payments, bids, winning, None)


def _sealed(bids: Iterable[Bid]) -> tuple[Bid, ...]:
    bids = tuple(bids)
    seen: set[str] = set()
    for b in bids:
        if b.bidder in seen:
            raise DuplicateBidder(f"bidder {b.bidder!r} submitted more than one sealed bid")
        seen.add(b.bidder)
    return bids


def _ranked(bids: tuple[Bid, ...], reserve: float) -> list[Bid]:
    """Eligible bids, best first; ``sorted`` is stable, so equal amounts keep submission order."""
    return sorted((b for b in bids if b.amount >= reserve), key=lambda b: -b.amount)


# --------------------------------------------------------------------------- English


@dataclass(frozen=True)
class EnglishState:
    """An ascending open auction. ``bids`` holds accepted bids only, each above the previous.

    The first bid must reach the reserve (a bid *at* the reserve opens the
    auction); each later one must beat the high bid by ``increment``.
    """

    reserve: float = 0.0
    increment: float = DEFAULT_BID_INCREMENT
    bids: tuple[Bid, ...] = ()
    closed: bool = False

    def __post_init__(self) -> None:
        _check_reserve(self.reserve)
        _check_amount(self.increment, "bid increment", InvalidAuctionParameter)
        if self.increment <= 0:
            raise InvalidAuctionParameter("bid increment must be > 0, otherwise the auction need not end")

    @property
    def high_bid(self) -> Bid | None:
        return self.bids[-1] if self.bids else None

    @property
    def minimum_bid(self) -> float:
        high = self.high_bid
        return self.reserve if high is None else high.amount + self.increment


def validate_bid(state: EnglishState, bid: Bid) -> None:
    """Raise :class:`AuctionClosed` or :class:`BidTooLow` if ``state`` must refuse ``bid``.

    A bidder may raise its own standing bid (useful to pass a reserve); that is
    allowed because it only ever costs the bidder itself.
    """
    if state.closed:
        raise AuctionClosed("the auction is closed")
    minimum = state.minimum_bid
    if bid.amount < minimum - _EPS * max(1.0, abs(minimum)):
        raise BidTooLow(bid.amount, minimum)


def place_bid(state: EnglishState, bid: Bid) -> EnglishState:
    """Return the state after accepting ``bid`` (validated first; ``state`` is unchanged)."""
    validate_bid(state, bid)
    return EnglishState(state.reserve, state.increment, (*state.bids, bid), False)


def close_english(state: EnglishState) -> AuctionResult:
    """Close the auction: the high bidder wins and pays its own bid."""
    high = state.high_bid
    if high is None:
        return _no_winner("english", state.bids, "no bid reached the reserve price")
    return _won("english", state.bids, high, high.amount)


def clear_english(
    bids: Iterable[Bid], *, reserve: float = 0.0, increment: float = DEFAULT_BID_INCREMENT
) -> AuctionResult:
    """Replay ``bids`` in order through :func:`place_bid` and close; the first invalid bid raises."""
    state = EnglishState(reserve, increment)
    for bid in bids:
        state = place_bid(state, bid)
    return close_english(state)


# --------------------------------------------------------------------------- Dutch


def clear_dutch(
    schedule: Sequence[float], thresholds: Sequence[Bid] | Mapping[str, float], *, reserve: float = 0.0
) -> AuctionResult:
    """Run a descending clock over ``schedule`` (strictly decreasing prices).

    At each clock price every bidder whose acceptance threshold is at least the
    price would accept; the first such bidder in ``thresholds`` order (the
    fastest hand) wins **at the clock price**, not at its threshold. The clock
    never goes below ``reserve``.
    """
    _check_reserve(reserve)
    prices = list(schedule)
    if not prices:
        raise InvalidAuctionParameter("the price schedule is empty")
    for p in prices:
        _check_amount(p, "clock price", InvalidAuctionParameter)
    if any(a <= b for a, b in zip(prices, prices[1:])):
        raise InvalidAuctionParameter("a Dutch clock schedule must be strictly decreasing")
    if isinstance(thresholds, Mapping):
        bids = tuple(Bid(bidder, amount) for bidder, amount in thresholds.items())
    else:
        bids = _sealed(thresholds)
    for price in prices:
        if price < reserve:
            break
        for b in bids:
            if b.amount >= price:
                return _won("dutch", bids, b, price)
    return _no_winner("dutch", bids, "no bidder accepted any clock price at or above the reserve")


def clear_dutch_sealed(
    bids: Iterable[Bid], *, reserve: float = 0.0, start: float | None = None, decrement: float | None = None
) -> AuctionResult:
    """Clear a Dutch auction from sealed acceptance prices (each bid = the price a bidder would accept at).

    Without ``decrement`` the clock is continuous: the highest acceptance price
    wins and pays exactly that price (strategically a first-price auction).
    With ``start`` and ``decrement`` the clock ticks ``start, start - d, ...``
    and the winner pays the first tick at or below the highest acceptance
    price; bidders tied at that tick are resolved by submission order.
    """
    bids = _sealed(bids)
    _check_reserve(reserve)
    if decrement is None:
        ranked = _ranked(bids, reserve)
        if not ranked:
            return _no_winner("dutch", bids, "no acceptance price reached the reserve price")
        return _won("dutch", bids, ranked[0], ranked[0].amount)
    if start is None:
        raise InvalidAuctionParameter("a discrete clock needs a start price")
    _check_amount(start, "start price", InvalidAuctionParameter)
    _check_amount(decrement, "decrement", InvalidAuctionParameter)
    if decrement <= 0:
        raise InvalidAuctionParameter("decrement must be > 0")
    if not bids:
        return _no_winner("dutch", bids, "no bids")
    top = max(b.amount for b in bids)
    # First tick k with start - k*d <= top, computed rather than enumerated.
    ticks = max(0, math.ceil((start - top) / decrement - _EPS))
    price = start - ticks * decrement
    if price < reserve - _EPS * max(1.0, reserve):
        return _no_winner("dutch", bids, "the clock reached the reserve price before anyone accepted")
    price = max(price, 0.0)
    for b in bids:
        if b.amount >= price - _EPS * max(1.0, price):
            return _won("dutch", bids, b, price)
    raise AssertionError("unreachable: the top bid accepts its own tick")  # pragma: no cover


# --------------------------------------------------------------------------- sealed bid


def clear_first_price(bids: Iterable[Bid], *, reserve: float = 0.0) -> AuctionResult:
    """Sealed-bid first price: the highest eligible bid wins and pays its own bid."""
    bids = _sealed(bids)
    _check_reserve(reserve)
    ranked = _ranked(bids, reserve)
    if not ranked:
        return _no_winner("first_price", bids, "no bid reached the reserve price")
    return _won("first_price", bids, ranked[0], ranked[0].amount)


def clear_vickrey(bids: Iterable[Bid], *, reserve: float = 0.0) -> AuctionResult:
    """Sealed-bid second price: the highest eligible bid wins and pays max(second highest, reserve).

    A lone eligible bidder pays the reserve, not its bid: charging its own bid
    would make shading profitable and break the truthfulness that is the point
    of a Vickrey auction.
    """
    bids = _sealed(bids)
    _check_reserve(reserve)
    ranked = _ranked(bids, reserve)
    if not ranked:
        return _no_winner("vickrey", bids, "no bid reached the reserve price")
    second = ranked[1].amount if len(ranked) > 1 else reserve
    return _won("vickrey", bids, ranked[0], max(second, reserve))


# --------------------------------------------------------------------------- combinatorial (VCG)


def optimal_allocation(bids: Sequence[BundleBid], *, exclude: str | None = None) -> tuple[float, tuple[int, ...]]:
    """Welfare-maximising set of bids: disjoint bundles, at most one bid per bidder (XOR).

    Returns ``(welfare, indices of winning bids)``. Bids of ``exclude`` are
    ignored (used for VCG's "world without i"). Exact branch and bound over
    bids in submission order, including a bid before excluding it, and an
    allocation only replaces the best one when strictly better: among
    allocations of equal welfare the one that includes the earliest bids wins.
    Zero-amount bids never win (they add no welfare).
    """
    if len(bids) > MAX_COMBINATORIAL_BIDS:
        raise TooManyBids(f"{len(bids)} bids exceed the exact-search cap of {MAX_COMBINATORIAL_BIDS}")
    live = [i for i, b in enumerate(bids) if b.amount > 0 and b.bidder != exclude]
    # bound[k]: the most any choice among live[k:] can add (best bid per bidder, summed).
    bound = [0.0] * (len(live) + 1)
    best_per_bidder: dict[str, float] = {}
    for k in range(len(live) - 1, -1, -1):
        b = bids[live[k]]
        best_per_bidder[b.bidder] = max(best_per_bidder.get(b.bidder, 0.0), b.amount)
        bound[k] = sum(best_per_bidder.values())
    best_value = 0.0
    best_set: tuple[int, ...] = ()

    def search(k: int, items: frozenset[str], bidders: frozenset[str], chosen: tuple[int, ...], value: float) -> None:
        nonlocal best_value, best_set
        if value > best_value:
            best_value, best_set = value, chosen
        if k == len(live) or value + bound[k] <= best_value:
            return
        b = bids[live[k]]
        if b.bidder not in bidders and items.isdisjoint(b.bundle):
            search(k + 1, items | b.bundle, bidders | {b.bidder}, (*chosen, live[k]), value + b.amount)
        search(k + 1, items, bidders, chosen, value)

    search(0, frozenset(), frozenset(), (), 0.0)
    return best_value, best_set


def clear_combinatorial(bids: Iterable[BundleBid]) -> CombinatorialResult:
    """Welfare-maximising allocation with Vickrey-Clarke-Groves payments.

    Winner ``i`` pays the externality it imposes on the others::

        p_i = W*(without i) - (W* - v_i)

    where ``W*`` is the optimal declared welfare and ``v_i`` its winning bid.
    This makes truthful bidding dominant and gives ``0 <= p_i <= v_i``.
    The result is clamped to ``[0, v_i]`` only to absorb float rounding.
    """
    bids = tuple(bids)
    welfare, chosen = optimal_allocation(bids)
    bidders = dict.fromkeys(b.bidder for b in bids)
    if not chosen:
        return CombinatorialResult(
            MappingProxyType({}), _payments(bidders, {}), (), 0.0, bids, "no bid with a positive amount"
        )
    winning = tuple(bids[i] for i in chosen)
    charges: dict[str, float] = {}
    for w in winning:
        without_w, _ = optimal_allocation(bids, exclude=w.bidder)
        others_with_w = sum(o.amount for o in winning if o is not w)
        charges[w.bidder] = min(w.amount, max(0.0, without_w - others_with_w))
    allocation = MappingProxyType({w.bidder: w.bundle for w in winning})
    return CombinatorialResult(allocation, _payments(bidders, charges), winning, welfare, bids, None)


# --------------------------------------------------------------------------- efficiency


def _xor_value(values: Mapping[frozenset[str], float], bundle: frozenset[str]) -> float:
    """Value of receiving ``bundle`` under XOR valuations with free disposal."""
    return max((v for wanted, v in values.items() if frozenset(wanted) <= bundle), default=0.0)


def efficiency(
    result: AuctionResult | CombinatorialResult,
    true_values: Mapping[str, float] | Mapping[str, Mapping[frozenset[str], float]],
) -> float:
    """Realised welfare / optimal welfare, both measured with the bidders' *true* values.

    For a single-item result ``true_values`` maps bidder -> value of the item;
    the optimum gives it to the bidder who values it most. For a combinatorial
    result it maps bidder -> {bundle: value} (XOR, free disposal) and the
    optimum is found by exact search (so at most :data:`MAX_COMBINATORIAL_BIDS`
    valued bundles in total). If the optimal welfare is 0 every
    outcome is optimal and 1.0 is returned. Never a constant.
    """
    realised: float
    if isinstance(result, CombinatorialResult):
        # The combinatorial form of true_values: bidder -> {bundle: value}.
        valuations = cast("Mapping[str, Mapping[frozenset[str], float]]", true_values)
        realised = 0.0
        for bidder, bundle in result.allocation.items():
            if bidder not in valuations:
                raise InvalidAuctionParameter(f"no true values for winner {bidder!r}")
            realised += _xor_value(valuations[bidder], bundle)
        truth = [
            BundleBid(bidder, frozenset(bundle), value)
            for bidder, valuation in valuations.items()
            for bundle, value in valuation.items()
        ]
        optimum, _ = optimal_allocation(truth)
    else:
        # The single-item form of true_values: bidder -> value of the item.
        item_values = cast("Mapping[str, float]", true_values)
        values = list(item_values.values())
        for v in values:
            _check_amount(v, "true value", InvalidAuctionParameter)
        optimum = max(values, default=0.0)
        if result.winner is None:
            realised = 0.0
        elif result.winner not in item_values:
            raise InvalidAuctionParameter(f"no true value for winner {result.winner!r}")
        else:
            realised = item_values[result.winner]
    if optimum <= 0:
        return 1.0
    return realised / optimum
