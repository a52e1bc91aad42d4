"""Per-agent budgets with two-phase spending: reserve, then commit or release.

An agent that bids or starts a task first *reserves* funds; when the outcome
is known the reservation is *committed* (spent, possibly less than reserved,
the rest returned) or *released*. Holding the money aside at reservation time
is what prevents double spending: two concurrent auctions cannot both count
on the same funds.

Invariants, checked on every construction of :class:`Budget`:

* ``spent + reserved <= total``, hence ``available >= 0``;
* every amount is ``>= 0``;
* a reservation id is used once: after commit or release it is *settled* and
  cannot be committed, released or reserved again.

Amounts are ``int`` (e.g. minor currency units) or :class:`decimal.Decimal`;
floats are refused because binary rounding would make the invariants
(``available >= 0`` exactly) unreliable and leak or mint money.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import MappingProxyType

from ._errors import EconomicsError

__all__ = [
    "Amount",
    "BudgetError",
    "InvalidAmount",
    "InsufficientFunds",
    "ExceedsTaskLimit",
    "DuplicateReservation",
    "UnknownReservation",
    "ReservationSettled",
    "CommitExceedsReservation",
    "Budget",
    "new_budget",
    "can_afford",
    "deposit",
    "reserve",
    "commit",
    "release",
]

Amount = int | Decimal


class BudgetError(EconomicsError, ValueError):
    """Base class of every error raised by the budget rules."""


class InvalidAmount(BudgetError):
    """An amount is not a non-negative int or finite Decimal (floats are refused)."""


class InsufficientFunds(BudgetError):
    """A reservation asked for more than is available."""

    def __init__(self, requested: Amount, available: Amount) -> None:
        super().__init__(f"requested {requested}, only {available} available")
        self.requested = requested
        self.available = available


class ExceedsTaskLimit(BudgetError):
    """A reservation is above the budget's ``max_per_task``."""


class DuplicateReservation(BudgetError):
    """A reservation id is already open or was already settled."""


class UnknownReservation(BudgetError):
    """No reservation with this id was ever made."""


class ReservationSettled(BudgetError):
    """The reservation was already committed or released: committing twice would double spend."""


class CommitExceedsReservation(BudgetError):
    """A commit tried to spend more than was reserved."""


def _amount(value: object, what: str) -> Amount:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise InvalidAmount(f"{what} must be an int or Decimal, got {type(value).__name__} {value!r}")
    if isinstance(value, Decimal) and not value.is_finite():
        raise InvalidAmount(f"{what} must be finite, got {value!r}")
    if value < 0:
        raise InvalidAmount(f"{what} must be >= 0, got {value!r}")
    return value


@dataclass(frozen=True)
class Budget:
    """One agent's funds. ``reservations`` maps open reservation ids to amounts held."""

    agent_id: str
    total: Amount
    spent: Amount = 0
    reservations: Mapping[str, Amount] = field(default_factory=lambda: MappingProxyType({}))
    settled: frozenset[str] = frozenset()
    max_per_task: Amount | None = None

    def __post_init__(self) -> None:
        _amount(self.total, "total")
        _amount(self.spent, "spent")
        if self.max_per_task is not None:
            _amount(self.max_per_task, "max_per_task")
        if not isinstance(self.reservations, MappingProxyType):
            object.__setattr__(self, "reservations", MappingProxyType(dict(self.reservations)))
        for rid, held in self.reservations.items():
            _amount(held, f"reservation {rid!r}")
        if overlap := self.settled & self.reservations.keys():
            raise DuplicateReservation(f"reservations both open and settled: {sorted(overlap)}")
        if self.spent + self.reserved > self.total:
            raise InsufficientFunds(self.spent + self.reserved, self.total)

    @property
    def reserved(self) -> Amount:
        return sum(self.reservations.values(), 0)

    @property
    def available(self) -> Amount:
        return self.total - self.spent - self.reserved


def new_budget(agent_id: str, total: Amount, *, max_per_task: Amount | None = None) -> Budget:
    return Budget(agent_id, total, max_per_task=max_per_task)


def can_afford(budget: Budget, amount: Amount) -> bool:
    """Would :func:`reserve` of ``amount`` succeed (ignoring id checks)?"""
    _amount(amount, "amount")
    within_limit = budget.max_per_task is None or amount <= budget.max_per_task
    return within_limit and amount <= budget.available


def deposit(budget: Budget, amount: Amount) -> Budget:
    """Add funds."""
    return replace(budget, total=budget.total + _amount(amount, "deposit"))


def reserve(budget: Budget, reservation_id: str, amount: Amount) -> Budget:
    """Hold ``amount`` aside under ``reservation_id``."""
    _amount(amount, "reservation")
    if reservation_id in budget.reservations or reservation_id in budget.settled:
        raise DuplicateReservation(f"reservation id {reservation_id!r} was already used")
    if budget.max_per_task is not None and amount > budget.max_per_task:
        raise ExceedsTaskLimit(f"reservation {amount} exceeds max_per_task {budget.max_per_task}")
    if amount > budget.available:
        raise InsufficientFunds(amount, budget.available)
    return replace(budget, reservations={**budget.reservations, reservation_id: amount})


def _open(budget: Budget, reservation_id: str) -> Amount:
    if reservation_id in budget.settled:
        raise ReservationSettled(f"reservation {reservation_id!r} was already settled")
    if reservation_id not in budget.reservations:
        raise UnknownReservation(f"no reservation {reservation_id!r}")
    return budget.reservations[reservation_id]


def _settle(budget: Budget, reservation_id: str, spent: Amount) -> Budget:
    remaining = {rid: v for rid, v in budget.reservations.items() if rid != reservation_id}
    return replace(
        budget,
        spent=budget.spent + spent,
        reservations=remaining,
        settled=budget.settled | {reservation_id},
    )


def commit(budget: Budget, reservation_id: str, amount: Amount | None = None) -> Budget:
    """Spend ``amount`` (default: all) of a reservation; the unspent rest becomes available again.

    Typical use: reserve the bid, commit the price actually paid (a Vickrey
    winner pays less than it bid).
    """
    held = _open(budget, reservation_id)
    spend = held if amount is None else _amount(amount, "commit")
    if spend > held:
        raise CommitExceedsReservation(f"commit {spend} exceeds reservation {reservation_id!r} of {held}")
    return _settle(budget, reservation_id, spend)


def release(budget: Budget, reservation_id: str) -> Budget:
    """Cancel a reservation; all of it becomes available again."""
    _open(budget, reservation_id)
    return _settle(budget, reservation_id, 0)
