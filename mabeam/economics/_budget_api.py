"""The budget API: agents' funds with reserve / commit / release.

Writes go to the budget service (``mabeam.budgets``, see
``_budget_server``); :func:`get_budget` reads the economics board from the
caller's replica and never queues behind the service.

Amounts are ``int`` or ``Decimal`` (the rules refuse floats); auction
payments, which are floats, are converted with :func:`to_money` (the
shortest decimal that round-trips the float, e.g. ``7.3 -> Decimal('7.3')``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import otp

from . import _board
from ._budget_server import BUDGETS, BudgetSnapshot, BudgetStep, Commit, Deposit, Release, Reserve, budget_key
from ._errors import NotStarted
from .budgets import Amount, BudgetError, InvalidAmount

__all__ = [
    "InvalidBudgetStep",
    "to_money",
    "open_budget",
    "deposit_funds",
    "reserve_funds",
    "commit_funds",
    "release_funds",
    "apply_budget_batch",
    "get_budget",
    "require_budget",
]


class InvalidBudgetStep(BudgetError):
    """A step of :func:`apply_budget_batch` is not one of ``('deposit', amount)``,
    ``('reserve', rid, amount)``, ``('commit', rid[, amount])``,
    ``('release', rid)``."""


def to_money(value: Any) -> Amount:
    """An amount the budget rules accept: ints and Decimals as they are, a
    finite float as the Decimal of its shortest repr."""
    if isinstance(value, bool):
        raise InvalidAmount(f"an amount must be a number, got {value!r}")
    if isinstance(value, (int, Decimal)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return Decimal(repr(value))
    raise InvalidAmount(f"an amount must be an int, Decimal or finite float, got {value!r}")


def _write(op: str, agent_id: Any, *args: Any) -> BudgetSnapshot:
    """Run ``op`` in the budget service and remember the ``seq`` of its
    answer, so that this process reads its own write."""
    with _board.absent_as(NotStarted("the budget service is not running")):
        snapshot: BudgetSnapshot = otp.ask(BUDGETS, op, agent_id, *args)
    _board.note_seq(budget_key(snapshot.agent_id), snapshot.seq)
    return snapshot


def open_budget(agent_id: Any, total: Any, max_per_task: Any = None) -> BudgetSnapshot:
    """Give ``agent_id`` a budget of ``total`` (optionally capping each
    reservation at ``max_per_task``); raises ``DuplicateBudget``."""
    cap = None if max_per_task is None else to_money(max_per_task)
    return _write("open", agent_id, to_money(total), cap)


def deposit_funds(agent_id: Any, amount: Any) -> BudgetSnapshot:
    """Add ``amount`` to the agent's balance; raises ``UnknownBudget``."""
    return _write("deposit", agent_id, to_money(amount))


def reserve_funds(agent_id: Any, reservation_id: Any, amount: Any) -> BudgetSnapshot:
    """Hold ``amount`` aside; raises ``InsufficientFunds``,
    ``ExceedsTaskLimit``, ``DuplicateReservation``, ``UnknownBudget``."""
    return _write("reserve", agent_id, reservation_id, to_money(amount))


def commit_funds(agent_id: Any, reservation_id: Any, amount: Any = None) -> BudgetSnapshot:
    """Spend ``amount`` (default: all) of a reservation, returning the rest;
    raises ``ReservationSettled``, ``UnknownReservation``,
    ``CommitExceedsReservation``."""
    return _write("commit", agent_id, reservation_id, None if amount is None else to_money(amount))


def release_funds(agent_id: Any, reservation_id: Any) -> BudgetSnapshot:
    """Give a whole reservation back to the balance; raises
    ``ReservationSettled``, ``UnknownReservation``."""
    return _write("release", agent_id, reservation_id)


def apply_budget_batch(agent_id: Any, steps: Iterable[Any]) -> BudgetSnapshot:
    """Apply several operations to one budget atomically (all or none):
    ``steps`` are ``('deposit', amount)``, ``('reserve', rid, amount)``,
    ``('commit', rid[, amount])``, ``('release', rid)`` (or the step records
    ``Deposit``, ``Reserve``, ``Commit``, ``Release``).  The market uses it
    to spend part of a reservation and keep the rest held."""
    return _write("batch", agent_id, [_step(s) for s in steps])


def get_budget(agent_id: Any) -> BudgetSnapshot | None:
    """The agent's budget from the board (the caller's replica), or None."""
    snapshot: BudgetSnapshot | None = _board.read(budget_key(agent_id))
    return snapshot


def require_budget(agent_id: Any) -> BudgetSnapshot:
    """The agent's budget as the service holds it now; raises
    ``UnknownBudget`` if it has none."""
    with _board.absent_as(NotStarted("the budget service is not running")):
        snapshot: BudgetSnapshot = otp.ask(BUDGETS, "get", agent_id)
    return snapshot


def _deposit(amount: Any) -> Deposit:
    return Deposit(to_money(amount))


def _reserve(reservation_id: Any, amount: Any) -> Reserve:
    return Reserve(reservation_id, to_money(amount))


def _commit(reservation_id: Any, amount: Any = None) -> Commit:
    return Commit(reservation_id, None if amount is None else to_money(amount))


_STEPS: dict[str, Callable[..., BudgetStep]] = {
    "deposit": _deposit,
    "reserve": _reserve,
    "commit": _commit,
    "release": Release,
}


def _step(step: Any) -> BudgetStep:
    """A step record from a record or an ``(operation, *arguments)`` tuple,
    its amounts made exact."""
    if isinstance(step, (Deposit, Reserve, Commit, Release)):
        return step
    make = _STEPS.get(step[0]) if isinstance(step, tuple) and step and isinstance(step[0], str) else None
    if make is None:
        raise InvalidBudgetStep(f"unknown budget step {step!r}")
    try:
        return make(*step[1:])
    except TypeError:
        raise InvalidBudgetStep(f"bad arguments in the budget step {step!r}") from None
