"""Vector clocks (mabeam.coordination.vector_clock)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam._errors import MabeamError
from mabeam.coordination import CoordinationError
from mabeam.coordination.vector_clock import (
    InvalidClock,
    Ordering,
    VectorClockError,
    compare,
    concurrent,
    happened_before,
    increment,
    merge,
    new_clock,
    normalize,
)


def test_worked_example_send_and_receive():
    a = increment(new_clock(), "a")  # a: local event
    sent = increment(a, "a")  # a sends, carrying {a: 2}
    b = increment(new_clock(), "b")  # b: concurrent local event
    assert concurrent(sent, b)
    received = increment(merge(b, sent), "b")  # b receives
    assert received == {"a": 2, "b": 2}
    assert happened_before(sent, received) and compare(received, sent) is Ordering.AFTER
    assert compare(a, sent) is Ordering.BEFORE


def test_missing_entries_count_as_zero_and_inputs_are_not_mutated():
    assert compare({}, {"a": 0}) is Ordering.EQUAL
    assert normalize({"a": 0, "b": 2}) == {"b": 2}
    clock = {"a": 1}
    increment(clock, "a")
    merge(clock, {"a": 5})
    assert clock == {"a": 1}
    assert Ordering.BEFORE == "before"  # str enum: serialisable as is


def test_invalid_clocks():
    for bad in ({"a": -1}, {"a": 1.5}, {"a": True}, {"": 1}):
        with pytest.raises(InvalidClock):
            compare(bad, {})
    with pytest.raises(InvalidClock):
        increment({}, "")


clock_st = st.dictionaries(st.sampled_from("abcd"), st.integers(0, 5), max_size=4)


@settings(max_examples=150)
@given(a=clock_st, b=clock_st, c=clock_st)
def test_merge_is_a_join(a, b, c):
    assert merge(a, b) == merge(b, a)
    assert merge(merge(a, b), c) == merge(a, merge(b, c))
    assert merge(a, a) == a
    m = merge(a, b)
    assert compare(a, m) in (Ordering.BEFORE, Ordering.EQUAL)
    assert compare(b, m) in (Ordering.BEFORE, Ordering.EQUAL)


@settings(max_examples=150)
@given(a=clock_st, b=clock_st, node=st.sampled_from("abcd"))
def test_compare_is_consistent(a, b, node):
    mirror = {
        Ordering.BEFORE: Ordering.AFTER,
        Ordering.AFTER: Ordering.BEFORE,
        Ordering.EQUAL: Ordering.EQUAL,
        Ordering.CONCURRENT: Ordering.CONCURRENT,
    }
    assert compare(b, a) is mirror[compare(a, b)]
    assert (compare(a, b) is Ordering.EQUAL) == (normalize(a) == normalize(b))
    assert compare(a, increment(a, node)) is Ordering.BEFORE
    if compare(a, b) is Ordering.CONCURRENT:
        assert compare(a, merge(a, b)) is Ordering.BEFORE


def test_vector_clock_errors_are_coordination_errors_and_value_errors():
    with pytest.raises(InvalidClock) as info:
        increment({}, "")
    assert isinstance(info.value, VectorClockError) and isinstance(info.value, ValueError)
    assert isinstance(info.value, CoordinationError) and isinstance(info.value, MabeamError)
