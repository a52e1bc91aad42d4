"""Budgets with reserve / commit / release (mabeam.economics.budgets)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.economics.budgets import (
    Budget,
    BudgetError,
    CommitExceedsReservation,
    DuplicateReservation,
    ExceedsTaskLimit,
    InsufficientFunds,
    InvalidAmount,
    ReservationSettled,
    UnknownReservation,
    can_afford,
    commit,
    deposit,
    new_budget,
    release,
    reserve,
)


def test_reserve_commit_release_worked_example():
    b = new_budget("agent", 100)
    b = reserve(b, "auction-1", 60)  # bid 60 in a Vickrey auction
    assert (b.available, b.reserved, b.spent) == (40, 60, 0)
    with pytest.raises(InsufficientFunds) as err:
        reserve(b, "auction-2", 50)  # cannot count on the same money twice
    assert (err.value.requested, err.value.available) == (50, 40)
    b = reserve(b, "auction-2", 40)
    assert b.available == 0
    b = commit(b, "auction-1", 45)  # won, paid the second price; 15 come back
    assert (b.available, b.reserved, b.spent) == (15, 40, 45)
    b = release(b, "auction-2")  # lost
    assert (b.available, b.reserved, b.spent) == (55, 0, 45)
    assert b.settled == {"auction-1", "auction-2"}


def test_no_double_spend_and_single_use_ids():
    b = commit(reserve(new_budget("a", 10), "r", 5), "r")
    assert b.spent == 5
    with pytest.raises(ReservationSettled):
        commit(b, "r")
    with pytest.raises(ReservationSettled):
        release(b, "r")
    with pytest.raises(DuplicateReservation):
        reserve(b, "r", 1)
    with pytest.raises(UnknownReservation):
        commit(b, "never")
    b = reserve(b, "s", 2)
    with pytest.raises(DuplicateReservation):
        reserve(b, "s", 1)
    with pytest.raises(CommitExceedsReservation):
        commit(b, "s", 3)


def test_amount_validation_and_limits():
    for bad in (1.5, -1, True, "3", Decimal("NaN"), Decimal("-1")):
        with pytest.raises(InvalidAmount):
            new_budget("a", bad)
    b = new_budget("a", 100, max_per_task=30)
    with pytest.raises(ExceedsTaskLimit):
        reserve(b, "big", 31)
    assert can_afford(b, 30) and not can_afford(b, 31)
    assert deposit(b, 5).total == 105
    with pytest.raises(InsufficientFunds):
        Budget("a", 10, spent=5, reservations={"r": 6})  # invariant checked on construction
    with pytest.raises(DuplicateReservation):
        Budget("a", 10, reservations={"r": 1}, settled=frozenset({"r"}))


def test_decimal_amounts_are_exact():
    b = new_budget("a", Decimal("0.30"))
    b = reserve(b, "x", Decimal("0.10"))
    b = reserve(b, "y", Decimal("0.20"))
    assert b.available == 0
    b = commit(b, "x", Decimal("0.05"))
    assert b.available == Decimal("0.05")


# --------------------------------------------------------------------------- properties

ids = st.sampled_from([f"r{k}" for k in range(6)])
op_st = st.one_of(
    st.tuples(st.just("reserve"), ids, st.integers(0, 60)),
    st.tuples(st.just("commit"), ids, st.one_of(st.none(), st.integers(0, 60))),
    st.tuples(st.just("release"), ids, st.none()),
    st.tuples(st.just("deposit"), st.none(), st.integers(0, 30)),
)


@settings(max_examples=150)
@given(initial=st.integers(0, 100), ops=st.lists(op_st, max_size=40))
def test_invariants_hold_under_any_sequence(initial, ops):
    b = new_budget("a", initial)
    deposited = 0
    committed: dict[str, int] = {}
    open_: dict[str, int] = {}
    for op, rid, amount in ops:
        before = b
        try:
            if op == "reserve":
                b = reserve(b, rid, amount)
                open_[rid] = amount
            elif op == "commit":
                b = commit(b, rid, amount)
                held = open_.pop(rid)
                committed[rid] = held if amount is None else amount
            elif op == "release":
                b = release(b, rid)
                del open_[rid]
            else:
                b = deposit(b, amount)
                deposited += amount
        except BudgetError:
            assert b is before  # a refused operation changes nothing
        assert b.available >= 0 and b.reserved >= 0 and b.spent >= 0
        assert b.spent + b.reserved + b.available == b.total == initial + deposited
        assert b.spent == sum(committed.values())  # each reservation spent at most once
        assert dict(b.reservations) == open_
        assert b.settled.isdisjoint(b.reservations)
        assert set(committed) <= b.settled
