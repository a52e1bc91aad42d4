"""The economics services: budgets (reserve / commit / release, typed
errors across processes, no double spending, restart under the supervisor)
and reputation (recency weighting, anti-gaming refusals counted, decay,
penalties), with reads from the board."""

from __future__ import annotations

import ast
import importlib
import os
import signal
from decimal import Decimal
from pathlib import Path

import pytest
from economics_agents import call_and_report, start_bidders
from helpers import down_of, recv, recv_tagged

import mabeam._errors
import otp
from mabeam import economics as E
from mabeam._app import APP
from mabeam.economics import reputation as reputation_rules


def test_services_are_in_the_application_and_started_in_order(app):
    assert [spec.id for spec in E.child_specs()] == [E.BOARD, E.REPUTATION, E.BUDGETS, E.HOSTS]
    ids = [c.id for c in otp.supervisor.which_children(APP)]
    assert ids.index(E.BOARD) < ids.index(E.REPUTATION) < ids.index(E.BUDGETS) < ids.index(E.HOSTS)
    assert all(otp.whereis(name) is not None for name in (E.BOARD, E.REPUTATION, E.BUDGETS, E.HOSTS))
    hosts = otp.partition_supervisor.children(E.HOSTS)
    assert len(hosts) == otp.partition_supervisor.default_partitions() and None not in hosts


def test_every_economics_error_is_an_economics_error_and_a_mabeam_error():
    errors = [v for v in vars(E).values() if isinstance(v, type) and issubclass(v, BaseException)]
    assert len(errors) > 30
    for cls in errors:
        assert issubclass(cls, E.EconomicsError) and issubclass(cls, mabeam._errors.MabeamError), cls
    for base in (E.AuctionError, E.BudgetError, E.OrderBookError, E.ReputationError):
        assert issubclass(base, ValueError)  # they refuse input
    assert issubclass(E.UnknownAuction, LookupError) and issubclass(E.UnknownBudget, LookupError)
    assert issubclass(E.NotStarted, mabeam._errors.NotStarted)


def test_the_rules_modules_are_pure():
    """The rules and the error root import no kernel, no process, no I/O."""
    package = Path(E.__file__).parent
    for name in ("auctions", "budgets", "orderbook", "reputation", "_errors"):
        tree = ast.parse((package / f"{name}.py").read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add("." * node.level + (node.module or ""))
        assert imported <= {
            "__future__", "math", "bisect", "collections", "collections.abc", "dataclasses", "decimal",
            "types", "typing", "._errors", ".._errors",
        }, (name, imported)  # fmt: skip


def test_the_package_reputation_is_the_rules_module():
    """``mabeam.economics.reputation`` is the pure rules; an agent's score is ``get_reputation``."""
    assert reputation_rules is importlib.import_module("mabeam.economics.reputation")
    assert E.reputation is reputation_rules and "reputation" in E.__all__


# ------------------------------------------------------------------ budgets


def test_reserve_commit_release(app):
    snap = E.open_budget("alice", 100, max_per_task=60)
    assert (snap.total, snap.available) == (100, 100)
    with pytest.raises(E.DuplicateBudget):
        E.open_budget("alice", 5)
    assert E.reserve_funds("alice", "job-1", 40).available == 60
    snap = E.commit_funds("alice", "job-1", 25)  # spend less than held: the rest comes back
    assert (snap.spent, snap.reserved, snap.available) == (25, 0, 75)
    assert E.reserve_funds("alice", "job-2", 10).reservations == {"job-2": 10}
    assert E.release_funds("alice", "job-2").available == 75
    with pytest.raises(E.ReservationSettled):
        E.commit_funds("alice", "job-1")  # committing twice would spend twice
    with pytest.raises(E.DuplicateReservation):
        E.reserve_funds("alice", "job-2", 1)
    with pytest.raises(E.UnknownReservation):
        E.release_funds("alice", "job-9")
    with pytest.raises(E.ExceedsTaskLimit):
        E.reserve_funds("alice", "big", 61)
    with pytest.raises(E.CommitExceedsReservation):
        E.reserve_funds("alice", "job-3", 5)
        E.commit_funds("alice", "job-3", 6)
    with pytest.raises(E.UnknownBudget):
        E.reserve_funds("bob", "x", 1)
    with pytest.raises(E.InvalidAmount):
        E.deposit_funds("alice", float("inf"))
    # floats become the exact decimal they print as
    assert E.deposit_funds("alice", 0.1).total == Decimal("100.1")
    # the board (this process's replica) shows the last write at once
    board = E.get_budget("alice")
    assert (board.total, board.spent, board.reserved) == (Decimal("100.1"), 25, 5)
    assert E.get_budget("bob") is None


def test_budget_batch_is_all_or_none(app):
    E.open_budget("fay", 10)
    with pytest.raises(E.InsufficientFunds):
        E.apply_budget_batch("fay", [("reserve", "a", 6), ("reserve", "b", 6)])
    assert E.get_budget("fay").reservations == {}  # the first step did not stay
    snap = E.apply_budget_batch("fay", [("reserve", "a", 6), ("commit", "a", 4), ("deposit", 0.5)])
    assert (snap.spent, snap.reserved, snap.total) == (4, 0, Decimal("10.5"))
    with pytest.raises(E.InvalidBudgetStep):
        E.apply_budget_batch("fay", [("steal", 5)])
    with pytest.raises(E.InvalidBudgetStep):
        E.apply_budget_batch("fay", [("reserve",)])
    assert E.get_budget("fay").total == Decimal("10.5")


def test_insufficient_funds_is_typed_across_processes(app):
    E.open_budget("carol", 50)
    with pytest.raises(E.InsufficientFunds) as info:  # detected in the budget process, raised here
        E.reserve_funds("carol", "r", 80)
    assert (info.value.requested, info.value.available) == (80, 50)
    # from another process as well
    otp.spawn(call_and_report, otp.self(), "reserve_funds", "carol", "r", 51)
    exc = recv_tagged("raised")[1].error
    assert type(exc) is E.InsufficientFunds and (exc.requested, exc.available) == (51, 50)
    assert isinstance(exc, E.BudgetError)


def test_no_double_spending_under_concurrent_reservations(app):
    E.open_budget("dave", 100)
    me = otp.self()
    for i in range(4):
        otp.spawn(call_and_report, me, "reserve_funds", "dave", f"r{i}", 60)
    answers = [recv(lambda m: isinstance(m, tuple) and m[0] in ("result", "raised")) for _ in range(4)]
    assert sorted(a[0] for a in answers) == ["raised", "raised", "raised", "result"]
    assert all(type(a[1].error) is E.InsufficientFunds for a in answers if a[0] == "raised")
    # the service's own answer (another process's writes reach this replica a moment later)
    assert E.deposit_funds("dave", 0).available == 40


def test_a_crashed_budget_server_restarts_under_the_supervisor(app):
    E.open_budget("erin", 10)
    old = otp.whereis(E.BUDGETS)
    otp.supervisor.subscribe(APP)
    ref = otp.monitor(old)
    os.kill(old.ospid, signal.SIGKILL)
    assert down_of(ref).reason == "killed"
    while True:
        msg = recv_tagged("$supervisor")
        if msg[2] == "started" and msg[3] == E.BUDGETS:
            break
    new = msg[4]
    assert new != old and otp.whereis(E.BUDGETS) == new
    # state was in memory: the restarted service starts empty, the old board entry went with the old process
    assert E.get_budget("erin") is None
    with pytest.raises(E.UnknownBudget):
        E.reserve_funds("erin", "r", 1)
    assert E.open_budget("erin", 20).available == 20
    assert E.get_budget("erin").total == 20
    assert otp.whereis(E.REPUTATION) is not None  # one_for_one: the others were not touched


def test_auction_payment_reserved_in_the_budget(app):
    start_bidders({"ten": {"value": 10}, "seven": {"value": 7}})
    E.open_budget("ten", 100)
    outcome = E.run(E.create_auction("vickrey", "x", participants=["ten", "seven"], reserve_payment=True), 10)
    rid = f"auction:{outcome.auction_id}"
    assert outcome.reservations == {"ten": rid} and outcome.settlement_errors == {}
    assert E.get_budget("ten").reservations == {rid: 7}
    assert E.commit_funds("ten", rid).spent == 7
    # a winner without a budget: the auction clears, the failure is reported
    broke = E.run(E.create_auction("vickrey", "y", participants=["seven"], reserve=1, reserve_payment=True), 10)
    assert broke.winner == "seven" and broke.reservations == {}
    assert broke.settlement_errors["seven"].startswith("UnknownBudget")


# ------------------------------------------------------------------ reputation


def test_reputation_weights_recent_records_more(app):
    assert E.get_reputation("nobody") == 0.5  # nobody rated it
    # the same two records, in opposite orders (outcomes 0.2 and 0.9)
    E.record_performance("up", "t1", 0.2, 0.2, 500)
    snap = E.record_performance("up", "t2", 1.0, 0.8, 500, task_type="ml")
    E.record_performance("down", "t2", 1.0, 0.8, 500)
    E.record_performance("down", "t1", 0.2, 0.2, 500)
    # newest first, weights 1 and 0.95
    assert snap.score == pytest.approx((0.9 + 0.95 * 0.2) / 1.95)
    assert E.get_reputation("down") == pytest.approx((0.2 + 0.95 * 0.9) / 1.95)
    assert E.get_reputation("up") > E.get_reputation("down")
    assert E.get_reputation("up", task_type="ml") == pytest.approx(0.9)
    assert E.list_reputation_rankings() == [
        ("up", pytest.approx(snap.score)),
        ("down", pytest.approx(E.get_reputation("down"))),
    ]
    # decay moves the score toward the prior, a penalty lowers it for good
    decayed = E.decay_reputation("up", 0.5, 1)[0]
    assert decayed.score == pytest.approx(0.5 + 0.5 * (snap.score - 0.5))
    assert E.penalize("up", "collusion_detected").score == pytest.approx(decayed.score - 0.2)


def test_gaming_attempts_are_refused_and_counted(app):
    first = E.record_performance("gamer", "task", 0.7, 0.7, 800)
    with pytest.raises(E.DuplicateRecord):  # the same record replayed
        E.record_performance("gamer", "task", 0.7, 0.7, 800)
    with pytest.raises(E.ImplausibleRecord):  # all perfect in 50 ms
        E.record_performance("gamer", "fake", 1.0, 1.0, 50)
    info = E.get_reputation_info("gamer")
    assert (info.refused, info.records, info.score) == (2, 1, first.score)
    # a refusal from another process is typed there too, and counted
    otp.spawn(call_and_report, otp.self(), "record_performance", "gamer", "task", 0.7, 0.7, 800)
    assert type(recv_tagged("raised")[1].error) is E.DuplicateRecord
    assert E.record_performance("gamer", "later", 0.6, 0.6, 900).refused == 3
    with pytest.raises(E.InvalidRecord):  # refused in the caller, never sent
        E.record_performance("gamer", "t", 1.5, 0.5, 800)
