"""The budget service: agents' funds with reserve / commit / release.

One named gen_server (``mabeam.budgets``), the single writer of every
budget; each operation is a :mod:`mabeam.rules.budgets` function, so the
invariants (``available >= 0``, no double spending, a reservation settled
once) are the rules' and their typed errors (``InsufficientFunds``,
``ReservationSettled``...) are raised in the caller.  Every change is
written to the economics board: :func:`get_budget` reads from the caller's
replica and never queues behind the service.

Amounts are ``int`` or ``Decimal`` (the rules refuse floats); auction
payments, which are floats, are converted with :func:`to_money` (the
shortest decimal that round-trips the float, e.g. ``7.3 -> Decimal('7.3')``).

State is in memory: a restart of the service (after a crash) starts with
no budgets; the board entries of the old process are dropped with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import otp

from ..rules import budgets as rules
from ..rules.budgets import Amount, BudgetError, InvalidAmount
from . import _wire

__all__ = [
    "BUDGETS",
    "BudgetServer",
    "BudgetSnapshot",
    "UnknownBudget",
    "DuplicateBudget",
    "to_money",
    "open_budget",
    "deposit_funds",
    "reserve_funds",
    "commit_funds",
    "release_funds",
    "budget_batch",
    "get_budget",
    "child_spec",
]

BUDGETS = "mabeam.budgets"


class UnknownBudget(BudgetError, LookupError):
    """The agent has no budget (open one with :func:`open_budget`)."""


class DuplicateBudget(BudgetError):
    """The agent already has a budget."""


@dataclass(frozen=True)
class BudgetSnapshot:
    """One agent's budget as of ``seq``; ``reservations`` maps open
    reservation ids to the amounts they hold."""

    agent_id: Any
    total: Amount
    spent: Amount
    reserved: Amount
    available: Amount
    reservations: dict
    max_per_task: Amount | None
    seq: int


def budget_key(agent_id: Any) -> tuple:
    return ("budget", agent_id)


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


def _snapshot(budget: rules.Budget, seq: int) -> BudgetSnapshot:
    return BudgetSnapshot(
        agent_id=budget.agent_id,
        total=budget.total,
        spent=budget.spent,
        reserved=budget.reserved,
        available=budget.available,
        reservations=dict(budget.reservations),
        max_per_task=budget.max_per_task,
        seq=seq,
    )


class BudgetServer(otp.GenServer):
    def init(self, _args: Any) -> Any:
        self.budgets: dict[Any, rules.Budget] = {}
        self.seq = 0
        return None

    def handle_call(self, request: tuple, from_: tuple, state: Any) -> Any:
        op = request[0]
        if op == "$view":
            agent = request[1][1]
            budget = self.budgets.get(agent)
            return otp.Reply(_wire.ok(None if budget is None else _snapshot(budget, self.seq)), state)
        try:
            snapshot = self._apply(op, request[1], request[2:])
        except BudgetError as exc:
            return otp.Reply(_wire.err(exc), state)
        return otp.Reply(_wire.ok(snapshot), state)

    def _apply(self, op: str, agent: Any, args: tuple) -> BudgetSnapshot:
        if op == "open":
            if agent in self.budgets:
                raise DuplicateBudget(f"agent {agent!r} already has a budget")
            budget = rules.new_budget(agent, args[0], max_per_task=args[1])
        else:
            budget = self.budgets.get(agent)
            if budget is None:
                raise UnknownBudget(f"agent {agent!r} has no budget")
            if op == "get":
                return _snapshot(budget, self.seq)
            if op == "batch":  # all steps or none: the budget is stored only at the end
                for step in args[0]:
                    budget = _step(budget, step[0], tuple(step[1:]))
            else:
                budget = _step(budget, op, args)
        assert budget.available >= 0  # the rules' invariant, checked again where it matters
        self.budgets[agent] = budget
        self.seq += 1
        snapshot = _snapshot(budget, self.seq)
        _wire.post(budget_key(agent), snapshot)
        return snapshot


def _step(budget: rules.Budget, op: str, args: tuple) -> rules.Budget:
    if op == "deposit":
        return rules.deposit(budget, args[0])
    if op == "reserve":
        return rules.reserve(budget, args[0], args[1])
    if op == "commit":
        return rules.commit(budget, args[0], args[1] if len(args) > 1 else None)
    if op == "release":
        return rules.release(budget, args[0])
    raise BudgetError(f"unknown budget operation {op!r}")


def child_spec() -> otp.ChildSpec:
    return BudgetServer.child_spec(None, id=BUDGETS, name=BUDGETS)


def _ask(*request: Any, timeout: float | None = 5.0) -> BudgetSnapshot:
    snapshot = _wire.ask(BUDGETS, request, timeout, missing=_wire.NotStarted("the budget service is not running"))
    _wire.note_seq(budget_key(snapshot.agent_id), snapshot.seq)
    return snapshot


def open_budget(agent_id: Any, total: Any, max_per_task: Any = None) -> BudgetSnapshot:
    """Give ``agent_id`` a budget of ``total`` (optionally capping each
    reservation at ``max_per_task``); raises :class:`DuplicateBudget`."""
    cap = None if max_per_task is None else to_money(max_per_task)
    return _ask("open", agent_id, to_money(total), cap)


def deposit_funds(agent_id: Any, amount: Any) -> BudgetSnapshot:
    return _ask("deposit", agent_id, to_money(amount))


def reserve_funds(agent_id: Any, reservation_id: Any, amount: Any) -> BudgetSnapshot:
    """Hold ``amount`` aside; raises ``InsufficientFunds``,
    ``ExceedsTaskLimit``, ``DuplicateReservation``, :class:`UnknownBudget`."""
    return _ask("reserve", agent_id, reservation_id, to_money(amount))


def commit_funds(agent_id: Any, reservation_id: Any, amount: Any = None) -> BudgetSnapshot:
    """Spend ``amount`` (default: all) of a reservation, returning the rest;
    raises ``ReservationSettled``, ``UnknownReservation``,
    ``CommitExceedsReservation``."""
    return _ask("commit", agent_id, reservation_id, None if amount is None else to_money(amount))


def release_funds(agent_id: Any, reservation_id: Any) -> BudgetSnapshot:
    return _ask("release", agent_id, reservation_id)


def budget_batch(agent_id: Any, steps: list) -> BudgetSnapshot:
    """Apply several operations to one budget atomically (all or none):
    ``steps`` are ``('deposit', amount)``, ``('reserve', rid, amount)``,
    ``('commit', rid[, amount])``, ``('release', rid)``.  The market uses
    it to spend part of a reservation and keep the rest held."""
    return _ask("batch", agent_id, [_money_step(s) for s in steps])


def _money_step(step: tuple) -> tuple:
    op, *args = step
    if op == "deposit":
        return (op, to_money(args[0]))
    if op in ("reserve", "commit") and len(args) > 1 and args[1] is not None:
        return (op, args[0], to_money(args[1]))
    return (op, *args)


def get_budget(agent_id: Any) -> BudgetSnapshot | None:
    """The agent's budget from the board (the caller's replica), or None."""
    return _wire.read(budget_key(agent_id))
