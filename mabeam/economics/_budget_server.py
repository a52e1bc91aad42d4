"""The budget service: one named server (``mabeam.budgets``), the single
writer of every agent's budget.

Each operation is a :mod:`mabeam.economics.budgets` function, so the
invariants (``available >= 0``, no double spending, a reservation settled
once) are the rules' and their typed errors (``InsufficientFunds``,
``ReservationSettled``...) are raised in the caller.  Every change is
written to the economics board.  State is in memory: a restart of the
service (after a crash) starts with no budgets; the board entries of the
old process are dropped with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import otp

from . import _board
from . import budgets as rules
from .budgets import Amount, BudgetError

__all__ = [
    "BUDGETS",
    "BudgetServer",
    "BudgetSnapshot",
    "BudgetStep",
    "Deposit",
    "Reserve",
    "Commit",
    "Release",
    "UnknownBudget",
    "DuplicateBudget",
    "budget_key",
    "child_spec",
]

BUDGETS = "mabeam.budgets"


class UnknownBudget(BudgetError, LookupError):
    """The agent has no budget (open one with ``open_budget``)."""


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


class Deposit(NamedTuple):
    """Add ``amount`` to the budget."""

    amount: Amount

    def apply(self, budget: rules.Budget) -> rules.Budget:
        return rules.deposit(budget, self.amount)


class Reserve(NamedTuple):
    """Hold ``amount`` aside under ``reservation_id``."""

    reservation_id: Any
    amount: Amount

    def apply(self, budget: rules.Budget) -> rules.Budget:
        return rules.reserve(budget, self.reservation_id, self.amount)


class Commit(NamedTuple):
    """Spend ``amount`` (None: all) of a reservation."""

    reservation_id: Any
    amount: Amount | None = None

    def apply(self, budget: rules.Budget) -> rules.Budget:
        return rules.commit(budget, self.reservation_id, self.amount)


class Release(NamedTuple):
    """Give a whole reservation back."""

    reservation_id: Any

    def apply(self, budget: rules.Budget) -> rules.Budget:
        return rules.release(budget, self.reservation_id)


#: One change of a budget, as :meth:`BudgetServer.batch` applies it.
BudgetStep = Deposit | Reserve | Commit | Release


def budget_key(agent_id: Any) -> tuple:
    return ("budget", agent_id)


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


class BudgetServer(otp.Service):
    errors: ClassVar[tuple[type[BaseException], ...]] = (BudgetError,)

    def init(self, args: Any) -> None:
        self.budgets: dict[Any, rules.Budget] = {}
        self.seq = 0

    @otp.operation
    def view(self, key: tuple) -> BudgetSnapshot | None:
        """The current snapshot of a board entry of this service (read-your-writes)."""
        budget = self.budgets.get(key[1])
        return None if budget is None else _snapshot(budget, self.seq)

    @otp.operation
    def open(self, agent: Any, total: Amount, max_per_task: Amount | None) -> BudgetSnapshot:
        if agent in self.budgets:
            raise DuplicateBudget(f"agent {agent!r} already has a budget")
        return self._store(agent, rules.new_budget(agent, total, max_per_task=max_per_task))

    @otp.operation
    def get(self, agent: Any) -> BudgetSnapshot:
        return _snapshot(self._budget(agent), self.seq)

    @otp.operation
    def deposit(self, agent: Any, amount: Amount) -> BudgetSnapshot:
        return self.batch(agent, [Deposit(amount)])

    @otp.operation
    def reserve(self, agent: Any, reservation_id: Any, amount: Amount) -> BudgetSnapshot:
        return self.batch(agent, [Reserve(reservation_id, amount)])

    @otp.operation
    def commit(self, agent: Any, reservation_id: Any, amount: Amount | None = None) -> BudgetSnapshot:
        return self.batch(agent, [Commit(reservation_id, amount)])

    @otp.operation
    def release(self, agent: Any, reservation_id: Any) -> BudgetSnapshot:
        return self.batch(agent, [Release(reservation_id)])

    @otp.operation
    def batch(self, agent: Any, steps: list[BudgetStep]) -> BudgetSnapshot:
        """Apply ``steps`` in order, all or none: the budget is stored only
        after the last one."""
        budget = self._budget(agent)
        for step in steps:
            budget = step.apply(budget)
        return self._store(agent, budget)

    def _budget(self, agent: Any) -> rules.Budget:
        budget = self.budgets.get(agent)
        if budget is None:
            raise UnknownBudget(f"agent {agent!r} has no budget")
        return budget

    def _store(self, agent: Any, budget: rules.Budget) -> BudgetSnapshot:
        assert budget.available >= 0  # the rules' invariant, checked again where money is stored
        self.budgets[agent] = budget
        self.seq += 1
        snapshot = _snapshot(budget, self.seq)
        _board.post(budget_key(agent), snapshot)
        return snapshot


def child_spec() -> otp.ChildSpec:
    return BudgetServer.child_spec(None, id=BUDGETS, name=BUDGETS)
