"""Counters, gauges, log-bucket histograms and the windowed MetricStore (no processes, no sleeps)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.telemetry import (
    LAST_HOUR,
    LAST_MINUTE,
    LAST_WEEK,
    Counter,
    Gauge,
    Histogram,
    IncompatibleHistograms,
    InvalidMetricName,
    InvalidObservation,
    MetricKind,
    MetricKindMismatch,
    MetricStore,
    Tier,
    WindowTooLong,
)

QS = (0.0, 0.25, 0.5, 0.95, 0.99, 1.0)


def exact(values: list[float], q: float) -> float:
    """The documented reference: the element at rank floor(q * (n - 1)) of the sorted values."""
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def within_bound(h: Histogram, estimate: float, truth: float) -> bool:
    if truth < h.min_value:
        return abs(estimate - truth) < h.min_value
    # a hair of slack for floating-point rounding at bucket edges
    return abs(estimate - truth) <= h.relative_accuracy * truth * (1 + 1e-9) + 1e-12


# -- counters and gauges ---------------------------------------------------------------


def test_counter_accumulates_and_rejects_decrease_and_nan():
    c = Counter()
    c.inc()
    c.inc(2.5)
    assert c.value == 3.5
    for bad in (-1, math.nan, math.inf):
        with pytest.raises(InvalidObservation):
            c.inc(bad)
    assert c.value == 3.5


def test_gauge_goes_both_ways():
    g = Gauge(3)
    g.inc(2)
    g.dec(10)
    assert g.value == -5
    g.set(7)
    assert g.value == 7
    with pytest.raises(InvalidObservation):
        g.set(math.nan)


# -- histogram -------------------------------------------------------------------------


def test_empty_histogram_has_no_percentiles():
    h = Histogram()
    assert h.percentile(0.5) is None
    assert h.percentiles() == {"p50": None, "p95": None, "p99": None}


def test_histogram_rejects_bad_input_and_parameters():
    h = Histogram()
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(InvalidObservation):
            h.observe(bad)
    with pytest.raises(ValueError):
        h.percentile(1.5)
    for kwargs in ({"relative_accuracy": 0}, {"relative_accuracy": 1}, {"min_value": 0}, {"max_buckets": 1}):
        with pytest.raises(ValueError):
            Histogram(**kwargs)
    assert h.count == 0


def test_single_value_is_exact_thanks_to_clamping():
    h = Histogram()
    h.observe(0.123)
    assert h.percentiles() == {"p50": 0.123, "p95": 0.123, "p99": 0.123}
    assert (h.count, h.sum, h.min, h.max) == (1, 0.123, 0.123, 0.123)


def test_latency_like_distribution_within_one_percent():
    values = [0.001 * (1.07**i) for i in range(300)]  # 1 ms .. ~ 650 s
    h = Histogram()
    for v in values:
        h.observe(v)
    for q in QS:
        assert within_bound(h, h.percentile(q), exact(values, q))


values_strategy = st.lists(
    st.one_of(
        st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False),
        st.floats(min_value=0, max_value=1e-8),  # around min_value: the zero bucket
    ),
    min_size=1,
    max_size=400,
)


@settings(max_examples=150, deadline=None)
@given(values=values_strategy, accuracy=st.sampled_from([0.001, 0.01, 0.05]))
def test_percentiles_within_documented_error(values, accuracy):
    h = Histogram(accuracy)
    for v in values:
        h.observe(v)
    for q in QS:
        assert within_bound(h, h.percentile(q), exact(values, q)), q
    assert h.count == len(values)
    assert h.min == min(values) and h.max == max(values)


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.floats(min_value=1e-6, max_value=1e9), min_size=1, max_size=600),
    max_buckets=st.integers(min_value=2, max_value=40),
)
def test_memory_is_capped_and_upper_percentiles_keep_the_bound(values, max_buckets):
    h = Histogram(0.01, max_buckets=max_buckets)
    for v in values:
        h.observe(v)
        assert h.bucket_count <= max_buckets + 1  # + the zero bucket
    for q in QS:
        truth = exact(values, q)
        if truth > h.accurate_above:
            assert within_bound(h, h.percentile(q), truth), q


@settings(max_examples=80, deadline=None)
@given(a=values_strategy, b=values_strategy, cap=st.sampled_from([8, 2048]))
def test_merge_equals_observing_everything(a, b, cap):
    ha, hb, hall = Histogram(max_buckets=cap), Histogram(max_buckets=cap), Histogram(max_buckets=cap)
    for v in a:
        ha.observe(v)
        hall.observe(v)
    for v in b:
        hb.observe(v)
        hall.observe(v)
    ha.merge(hb)
    assert (ha.count, ha.min, ha.max, ha.zero_count) == (hall.count, hall.min, hall.max, hall.zero_count)
    assert ha.bucket_count <= cap + 1
    everything = a + b
    for q in QS:
        truth = exact(everything, q)
        if truth > ha.accurate_above:
            assert within_bound(ha, ha.percentile(q), truth)
    if cap == 2048:  # no collapsing: merging is exact, bucket for bucket
        assert ha.percentiles() == hall.percentiles()


def test_merge_refuses_different_layouts():
    with pytest.raises(IncompatibleHistograms):
        Histogram(0.01).merge(Histogram(0.02))


# -- store: writes, kinds, names -------------------------------------------------------


def test_counter_series_windows_and_rate():
    store = MetricStore()
    name = ("mabeam", "tasks", "assigned")
    for t in range(0, 3_600, 10):  # one increment every 10 s for an hour
        store.increment(name, now=float(t))
    now = 3_599.0
    minute = store.last_minute(name, now=now)
    assert minute.kind is MetricKind.COUNTER
    assert 6 <= minute.value <= 7  # 60 s of 0.1/s, give or take the slot at the edge
    assert minute.rate == pytest.approx(minute.value / 60)
    hour = store.last_hour(name, now=now)
    assert hour.value == 360
    assert store.current(name).value == 360


def test_gauge_series_reports_latest_and_extremes():
    store = MetricStore()
    for t, v in [(0, 5), (1, 9), (2, 1), (3, 4)]:
        store.set_gauge(("agent", "queue"), v, {"agent": "a"}, now=float(t))
    s = store.last_minute(("agent", "queue"), {"agent": "a"}, now=3.5)
    assert (s.value, s.min, s.max, s.count) == (4, 1, 9, 4)


def test_histogram_series_percentiles_over_a_window():
    store = MetricStore()
    for i in range(1, 101):
        store.observe(("latency",), i / 1000, now=1000.0 + i * 0.1)
    s = store.last_minute(("latency",), now=1011.0)
    assert s.count == 100
    assert s.p50 == pytest.approx(0.050, rel=0.01)
    assert s.p99 == pytest.approx(0.099, rel=0.01)
    assert s.mean == pytest.approx(0.0505)


def test_old_data_leaves_short_windows_but_stays_in_long_ones():
    store = MetricStore()
    store.increment(("x",), 5, now=0.0)
    store.increment(("x",), 1, now=10_000.0)
    assert store.last_minute(("x",), now=10_000.0).value == 1
    assert store.last_hour(("x",), now=10_000.0).value == 1
    assert store.last_day(("x",), now=10_000.0).value == 6
    assert store.query(("x",), window=LAST_WEEK, now=10_000.0).value == 6
    with pytest.raises(WindowTooLong):
        store.query(("x",), window=LAST_WEEK * 2, now=10_000.0)


def test_tags_are_order_insensitive_and_distinguish_series():
    store = MetricStore()
    store.increment(("calls",), tags={"a": 1, "b": 2}, now=0.0)
    store.increment(("calls",), tags={"b": 2, "a": 1}, now=0.0)
    store.increment(("calls",), tags={"a": 2}, now=0.0)
    assert store.current(("calls",), {"a": 1, "b": 2}).value == 2
    assert len(store.series(("calls",))) == 2
    assert store.current(("calls",)) is None


def test_kind_mismatch_and_bad_names_fail_loudly():
    store = MetricStore()
    store.increment(("n",), now=0.0)
    with pytest.raises(MetricKindMismatch):
        store.observe(("n",), 1.0, now=0.0)
    for bad in ((), ("",), ["a"], "a", ("a", 1)):
        with pytest.raises(InvalidMetricName):
            store.increment(bad, now=0.0)
    with pytest.raises(InvalidObservation):
        store.increment(("n",), -1, now=0.0)
    with pytest.raises(InvalidObservation):
        store.observe(("h",), -1, now=0.0)


def test_unknown_series_queries_return_none():
    store = MetricStore()
    assert store.last_minute(("nothing",), now=0.0) is None
    assert store.current(("nothing",)) is None


def test_series_cap_refuses_and_counts_then_prune_makes_room():
    store = MetricStore(max_series=2)
    assert store.increment(("a",), now=0.0)
    assert store.increment(("b",), now=0.0)
    assert not store.increment(("c",), now=1.0)
    assert store.increment(("a",), now=1.0)  # existing series still accept writes
    assert store.stats().rejected_series == 1
    later = 1.0 + store.retention + 1
    assert store.increment(("c",), now=later)  # the cap prunes expired series first
    assert store.series() == [(("c",), ())]


def test_late_writes_older_than_every_tier_are_counted_not_stored_in_windows():
    store = MetricStore(tiers=(Tier(1.0, 10),))
    store.increment(("x",), now=100.0)
    store.increment(("x",), now=5.0)
    assert store.stats().late_dropped == 1
    assert store.query(("x",), window=10, now=100.0).value == 1
    assert store.current(("x",)).value == 2


events = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=30),  # time step
        st.sampled_from(["c", "g", "h"]),
        st.integers(min_value=0, max_value=30),  # series id (more than the cap)
        st.floats(min_value=0, max_value=1e6),
    ),
    max_size=300,
)


@settings(max_examples=60, deadline=None)
@given(events=events)
def test_memory_stays_bounded_under_random_streams(events):
    tiers = (Tier(1.0, 5), Tier(10.0, 6))
    store = MetricStore(max_series=8, tiers=tiers, max_buckets=16)
    now = 0.0
    write = {"c": store.increment, "g": store.set_gauge, "h": store.observe}
    for step, kind, sid, value in events:
        now += step
        write[kind]((kind, str(sid)), value, now=now)
        stats = store.stats()
        assert stats.series <= 8
        assert stats.slots <= stats.series * (1 + sum(t.slots + 1 for t in tiers))
        assert stats.buckets <= stats.slots * (16 + 1)


@settings(max_examples=80, deadline=None)
@given(
    times=st.lists(st.floats(min_value=0, max_value=7_200), min_size=1, max_size=200),
    window=st.sampled_from([LAST_MINUTE, 300.0, LAST_HOUR]),
)
def test_window_counts_are_sandwiched_by_one_slot(times, window):
    store = MetricStore()
    for t in sorted(times):
        store.increment(("e",), now=t)
    now = max(times)
    got = store.query(("e",), window=window, now=now).count
    slot = next(t.slot_seconds for t in store.tiers if t.span >= window)
    inside = sum(1 for t in times if now - window < t <= now)
    with_edge = sum(1 for t in times if now - window - slot < t <= now)
    assert inside <= got <= with_edge
