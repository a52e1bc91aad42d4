"""Vector clocks as pure functions over mappings of node -> counter.

A clock is any ``Mapping[str, int]``; a missing entry counts as 0, so
``{}`` and ``{"a": 0}`` are the same clock (:func:`compare` says ``equal``).
Functions never mutate their arguments and return plain ``dict``\\ s, so a
clock can be stored in frozen data or sent in a message as is.

Pure: no processes, no I/O.  Every error derives from
:class:`VectorClockError` (a :class:`~mabeam.coordination.CoordinationError`
and a ``ValueError``).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from ._errors import CoordinationError

__all__ = [
    "VectorClockError",
    "InvalidClock",
    "Ordering",
    "new_clock",
    "increment",
    "merge",
    "compare",
    "happened_before",
    "concurrent",
    "normalize",
]


class VectorClockError(CoordinationError, ValueError):
    """Base class of every error raised by the vector-clock functions."""


class InvalidClock(VectorClockError):
    """A counter is not a non-negative int, or a node name is empty."""


class Ordering(str, Enum):
    """How two clocks (two events) relate causally."""

    BEFORE = "before"
    AFTER = "after"
    CONCURRENT = "concurrent"
    EQUAL = "equal"


def _check(clock: Mapping[str, int]) -> None:
    for node, count in clock.items():
        if not node:
            raise InvalidClock("node names must be non-empty")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidClock(f"counter of {node!r} must be an int >= 0, got {count!r}")


def new_clock() -> dict[str, int]:
    """The clock of a node that has seen no events."""
    return {}


def normalize(clock: Mapping[str, int]) -> dict[str, int]:
    """The same clock without zero entries (a canonical form for equality and storage)."""
    _check(clock)
    return {node: c for node, c in clock.items() if c}


def increment(clock: Mapping[str, int], node: str) -> dict[str, int]:
    """``node`` records a local event (or a send): its own counter goes up by one."""
    _check(clock)
    if not node:
        raise InvalidClock("node names must be non-empty")
    return {**clock, node: clock.get(node, 0) + 1}


def merge(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    """Pointwise maximum: the knowledge of both. On receive, merge then :func:`increment`."""
    _check(a)
    _check(b)
    merged = dict(a)
    for node, count in b.items():
        merged[node] = max(count, merged.get(node, 0))
    return merged


def compare(a: Mapping[str, int], b: Mapping[str, int]) -> Ordering:
    """``BEFORE`` if ``a`` happened before ``b``, ``AFTER`` if after, else ``EQUAL`` or ``CONCURRENT``."""
    _check(a)
    _check(b)
    a_le_b = b_le_a = True
    for node in a.keys() | b.keys():
        x, y = a.get(node, 0), b.get(node, 0)
        if x > y:
            a_le_b = False
        elif y > x:
            b_le_a = False
    if a_le_b and b_le_a:
        return Ordering.EQUAL
    if a_le_b:
        return Ordering.BEFORE
    if b_le_a:
        return Ordering.AFTER
    return Ordering.CONCURRENT


def happened_before(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """True if the event stamped ``a`` causally precedes the one stamped ``b``."""
    return compare(a, b) is Ordering.BEFORE


def concurrent(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """True if neither event happened before the other."""
    return compare(a, b) is Ordering.CONCURRENT
