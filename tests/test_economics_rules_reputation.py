"""Reputation rules (mabeam.economics.reputation)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.economics.reputation import (
    DEFAULT_SCORE,
    HISTORY_LIMIT,
    DuplicateRecord,
    ImplausibleRecord,
    InvalidRecord,
    PerformanceRecord,
    Reputation,
    apply_decay,
    apply_penalty,
    new_reputation,
    rankings,
    record_outcome,
    reputation_score,
    score_of,
    weighted_score,
)


def rec(task_id, quality, satisfaction, ms=1000.0, **kw):
    return PerformanceRecord(task_id, quality, satisfaction, ms, **kw)


def test_unknown_and_new_agents_score_the_default():
    assert score_of({}, "ghost") == DEFAULT_SCORE == 0.5
    assert new_reputation("a").score == 0.5
    assert new_reputation("a", initial_score=0.8).score == 0.8


def test_recency_weighted_average_worked_example():
    rep = new_reputation("a")
    rep = record_outcome(rep, rec("t1", 0.8, 0.6))  # outcome 0.7
    rep = record_outcome(rep, rec("t2", 1.0, 0.8))  # outcome 0.9, newest -> weight 1
    expected = (1 * 0.9 + 0.95 * 0.7) / (1 + 0.95)
    assert rep.score == pytest.approx(expected)
    assert [r.task_id for r in rep.records] == ["t2", "t1"]


def test_only_the_newest_100_records_count():
    rep = new_reputation("a")
    for k in range(150):
        quality = 0.0 if k < 50 else 1.0  # the 50 oldest are terrible
        rep = record_outcome(rep, rec(f"t{k}", quality, quality))
    assert len(rep.records) == HISTORY_LIMIT
    assert rep.score == pytest.approx(1.0)
    # weighted_score's own window cuts the same way on a longer list.
    long = [rec(f"x{k}", 1.0, 1.0) for k in range(100)] + [rec("old", 0.0, 0.0)]
    assert weighted_score(long) == pytest.approx(1.0)
    assert weighted_score(long, window=101) < 1.0


def test_anti_gaming_checks():
    rep = record_outcome(new_reputation("a"), rec("t1", 0.9, 0.9))
    with pytest.raises(DuplicateRecord):
        record_outcome(rep, rec("t1", 0.9, 0.9))
    # Same task with different scores is a legitimate re-rating.
    record_outcome(rep, rec("t1", 0.7, 0.9))
    with pytest.raises(ImplausibleRecord):
        record_outcome(rep, rec("t2", 1.0, 1.0, ms=50))
    record_outcome(rep, rec("t2", 1.0, 1.0, ms=100))  # not faster than 100 ms
    record_outcome(rep, rec("t3", 1.0, 0.99, ms=50))  # not all perfect
    record_outcome(rep, rec("t4", 1.0, 1.0, ms=50, cost_efficiency=0.9))


def test_invalid_records_are_rejected():
    for bad in (
        dict(quality=1.5, satisfaction=0.5),
        dict(quality=-0.1, satisfaction=0.5),
        dict(quality=float("nan"), satisfaction=0.5),
        dict(quality=0.5, satisfaction=0.5, ms=-1),
    ):
        with pytest.raises(InvalidRecord):
            rec("t", bad["quality"], bad["satisfaction"], bad.get("ms", 1.0))
    with pytest.raises(InvalidRecord):
        rec("", 0.5, 0.5)
    with pytest.raises(InvalidRecord):
        apply_decay(new_reputation("a"), factor=1.5)
    with pytest.raises(InvalidRecord):
        weighted_score([], recency_weight=0)


def test_decay_moves_toward_the_prior_and_new_evidence_resets_it():
    rep = record_outcome(new_reputation("a"), rec("t1", 1.0, 0.9))  # 0.95
    decayed = apply_decay(rep, factor=0.5)
    assert decayed.score == pytest.approx(0.5 + 0.5 * 0.45)
    assert apply_decay(rep, factor=0.5, periods=2).score == pytest.approx(0.5 + 0.25 * 0.45)
    bad = record_outcome(new_reputation("b"), rec("t1", 0.1, 0.1))
    assert apply_decay(bad, 0.5).score == pytest.approx(0.5 - 0.5 * 0.4)  # bad agents recover toward 0.5
    fresh = record_outcome(decayed, rec("t2", 0.95, 0.95))
    assert fresh.staleness == 1.0


def test_penalties():
    rep = new_reputation("c", initial_score=0.8)
    assert apply_penalty(rep, "collusion_detected").score == pytest.approx(0.6)
    assert apply_penalty(rep, "something_else").score == pytest.approx(0.75)
    assert apply_penalty(apply_penalty(rep, 0.5), 0.5).score == 0.0  # clamped
    with pytest.raises(InvalidRecord):
        apply_penalty(rep, -0.1)


def test_rankings_and_domains():
    a = record_outcome(new_reputation("a"), rec("t1", 0.9, 0.9, task_type="code"))
    b = record_outcome(new_reputation("b"), rec("t1", 0.6, 0.6, task_type="text"))
    b = record_outcome(b, rec("t2", 1.0, 0.9, task_type="code"))
    c = new_reputation("c", initial_score=0.9)
    assert rankings([a, b, c]) == [("a", pytest.approx(0.9)), ("c", 0.9), ("b", pytest.approx(b.score))]
    assert [agent for agent, _ in rankings([a, b, c], task_type="code")] == ["b", "a"]
    assert reputation_score(b, "text") == pytest.approx(0.6)
    assert rankings([a, b, c], limit=1)[0][0] == "a"
    assert rankings({"a": a, "b": b}) == rankings([a, b])


# --------------------------------------------------------------------------- properties

unit = st.floats(0, 1)
record_st = st.builds(
    PerformanceRecord,
    task_id=st.uuids().map(str),
    quality_score=unit,
    client_satisfaction=unit,
    completion_time_ms=st.floats(100, 1e6),
)


@settings(max_examples=100)
@given(records=st.lists(record_st, max_size=120))
def test_score_is_a_weighted_mean_of_the_window(records):
    rep = new_reputation("a")
    for r in records:
        rep = record_outcome(rep, r)
    window = rep.records[:HISTORY_LIMIT]
    if window:
        outcomes = [r.outcome for r in window]
        assert min(outcomes) - 1e-9 <= rep.score <= max(outcomes) + 1e-9
    else:
        assert rep.score == DEFAULT_SCORE


@settings(max_examples=100)
@given(records=st.lists(record_st, min_size=1, max_size=60), new=record_st)
def test_a_new_record_moves_the_score_toward_its_outcome(records, new):
    rep = new_reputation("a")
    for r in records:
        rep = record_outcome(rep, r)
    after = record_outcome(rep, new).score
    lo, hi = sorted((rep.score, new.outcome))
    assert lo - 1e-9 <= after <= hi + 1e-9


@settings(max_examples=100)
@given(records=st.lists(record_st, max_size=20), factor=st.floats(0.01, 1), periods=st.integers(0, 30))
def test_decay_never_moves_away_from_the_prior(records, factor, periods):
    rep = Reputation("a", prior=0.6)
    for r in records:
        rep = record_outcome(rep, r)
    decayed = apply_decay(rep, factor, periods)
    assert abs(decayed.score - 0.6) <= abs(rep.score - 0.6) + 1e-12
    assert 0 <= decayed.score <= 1
