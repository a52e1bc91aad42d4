"""Counters, gauges, log-bucket histograms, and a bounded, time-windowed ``MetricStore``.

Everything here is plain data plus arithmetic: no clock reads, no threads, no I/O.
Callers pass ``now`` (seconds, any monotonic origin), so a gen_server can own a store
and tests can replay hours of traffic without sleeping.

Why log-scale buckets rather than a reservoir.  A reservoir keeps a random sample, so a
p99 read from 1,024 samples rests on about ten points and its error has no bound (it
depends on the data and on luck).  Log-scale buckets (the DDSketch construction) give a
*guaranteed* relative error, are deterministic (tests are reproducible), and merge
exactly (two slots of a window add bucket by bucket), which a reservoir cannot do.

Error bound, stated once and tested by property: with relative accuracy ``a``,
``percentile(q)`` returns a value within ``a * x`` of ``x = sorted(values)[floor(q * (n - 1))]``
whenever ``x >= min_value`` and ``x`` lies above the collapsed floor (see below).  Values
below ``min_value`` share one "zero" bucket: absolute error below ``min_value``.  Memory
is at most ``max_buckets`` counters: when a new bucket would exceed it, the two lowest
buckets merge, so accuracy is given up at the low end (p0..), never at p50/p95/p99.

Memory is bounded everywhere: every series has a fixed number of slots per resolution
tier, the store has a series cap, and time is one unit (seconds) throughout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from .._errors import MabeamError

__all__ = [
    "MetricError",
    "InvalidMetricName",
    "InvalidObservation",
    "MetricKindMismatch",
    "IncompatibleHistograms",
    "WindowTooLong",
    "Counter",
    "Gauge",
    "Histogram",
    "MetricKind",
    "Tier",
    "DEFAULT_TIERS",
    "LAST_MINUTE",
    "LAST_HOUR",
    "LAST_DAY",
    "LAST_WEEK",
    "Summary",
    "StoreStats",
    "MetricStore",
]

LAST_MINUTE = 60.0
LAST_HOUR = 3_600.0
LAST_DAY = 86_400.0
LAST_WEEK = 604_800.0

MetricName = tuple[str, ...]
TagValue = str | int | float | bool
Tags = tuple[tuple[str, TagValue], ...]
TagsIn = Mapping[str, TagValue] | None


class MetricError(MabeamError):
    """Base class of the metric errors."""


class InvalidMetricName(MetricError, ValueError):
    """A name is not a non-empty tuple of non-empty strings."""


class InvalidObservation(MetricError, ValueError):
    """A value is NaN/infinite, a histogram value is negative, or a counter would decrease."""


class MetricKindMismatch(MetricError, TypeError):
    """A series recorded as one kind (say a counter) was written as another (say a histogram)."""


class IncompatibleHistograms(MetricError, ValueError):
    """Two histograms with different bucket layouts cannot be merged exactly."""


class WindowTooLong(MetricError, ValueError):
    """The asked window is longer than the longest tier the store retains."""


def _finite(value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise InvalidObservation(f"not a finite number: {value!r}")
    return value


class Counter:
    """A monotonically increasing total: decreases are rejected, not clamped, so bugs show."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        amount = _finite(amount)
        if amount < 0:
            raise InvalidObservation(f"counter increment must be >= 0, got {amount}")
        self.value += amount


class Gauge:
    """The latest value of something that goes up and down (queue length, RSS)."""

    __slots__ = ("value",)

    def __init__(self, value: float = 0.0) -> None:
        self.value = _finite(value)

    def set(self, value: float) -> None:
        self.value = _finite(value)

    def inc(self, amount: float = 1.0) -> None:
        self.value += _finite(amount)

    def dec(self, amount: float = 1.0) -> None:
        self.value -= _finite(amount)


class Histogram:
    """Log-bucket histogram with a relative-error guarantee and a hard memory cap (see module doc)."""

    __slots__ = (
        "relative_accuracy",
        "min_value",
        "max_buckets",
        "_gamma",
        "_log_gamma",
        "_buckets",
        "_floor",
        "zero_count",
        "count",
        "sum",
        "min",
        "max",
    )

    def __init__(self, relative_accuracy: float = 0.01, *, min_value: float = 1e-9, max_buckets: int = 2048) -> None:
        if not 0.0 < relative_accuracy < 1.0:
            raise ValueError(f"relative_accuracy must be in (0, 1), got {relative_accuracy}")
        if not (min_value > 0 and math.isfinite(min_value)):
            raise ValueError(f"min_value must be a positive finite number, got {min_value}")
        if max_buckets < 2:
            raise ValueError(f"max_buckets must be >= 2, got {max_buckets}")
        self.relative_accuracy, self.min_value, self.max_buckets = relative_accuracy, min_value, max_buckets
        self._gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._log_gamma = math.log(self._gamma)
        self._buckets: dict[int, int] = {}
        self._floor: int | None = None  # keys below it were collapsed into it
        self.zero_count, self.count, self.sum, self.min, self.max = 0, 0, 0.0, math.inf, -math.inf

    @property
    def bucket_count(self) -> int:
        return len(self._buckets) + (1 if self.zero_count else 0)

    @property
    def accurate_above(self) -> float:
        """Percentiles whose exact value exceeds this keep the relative-error bound."""
        return self.min_value if self._floor is None else math.exp(self._floor * self._log_gamma)

    def _key(self, value: float) -> int:
        key = math.ceil(math.log(value) / self._log_gamma)
        return key if self._floor is None or key > self._floor else self._floor

    def _representative(self, key: int) -> float:
        # Bucket ``key`` holds (gamma**(key-1), gamma**key]; this point is within ``a`` of both ends.
        return 2.0 * math.exp(key * self._log_gamma) / (self._gamma + 1.0)

    def observe(self, value: float, times: int = 1) -> None:
        value = _finite(value)
        if value < 0:
            raise InvalidObservation(f"histogram values must be >= 0, got {value}")
        if times < 1:
            raise InvalidObservation(f"times must be >= 1, got {times}")
        if value < self.min_value:
            self.zero_count += times
        else:
            key = self._key(value)
            self._buckets[key] = self._buckets.get(key, 0) + times
            self._collapse()
        self.count, self.sum = self.count + times, self.sum + value * times
        self.min, self.max = min(self.min, value), max(self.max, value)

    def _collapse(self) -> None:
        """Merge the lowest buckets until the cap holds: p50/p95/p99 keep their guarantee."""
        while len(self._buckets) > self.max_buckets:
            low = min(self._buckets)
            moved = self._buckets.pop(low)
            nxt = min(self._buckets)
            self._buckets[nxt] += moved
            self._floor = nxt

    def merge(self, other: Histogram) -> None:
        """Add ``other`` into this histogram; exact because both use the same bucket edges."""
        if (other.relative_accuracy, other.min_value) != (self.relative_accuracy, self.min_value):
            raise IncompatibleHistograms("histograms differ in relative_accuracy or min_value")
        if other.count == 0:
            return
        if other._floor is not None and (self._floor is None or other._floor > self._floor):
            self._floor = other._floor
            for key in [k for k in self._buckets if k < self._floor]:
                self._buckets[self._floor] = self._buckets.get(self._floor, 0) + self._buckets.pop(key)
        for key, n in other._buckets.items():
            key = key if self._floor is None or key > self._floor else self._floor
            self._buckets[key] = self._buckets.get(key, 0) + n
        self._collapse()
        self.zero_count, self.count, self.sum = (
            self.zero_count + other.zero_count,
            self.count + other.count,
            self.sum + other.sum,
        )
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)

    def percentile(self, q: float) -> float | None:
        """The value at rank ``floor(q * (count - 1))``, within the documented error; None if empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q}")
        if self.count == 0:
            return None
        rank = math.floor(q * (self.count - 1))
        seen = self.zero_count
        estimate = 0.0
        if rank >= seen:
            for key in sorted(self._buckets):
                seen += self._buckets[key]
                if rank < seen:
                    estimate = self._representative(key)
                    break
        # Clamping to the exact extremes can only move the estimate towards the true value.
        return min(max(estimate, self.min), self.max)

    def percentiles(self) -> dict[str, float | None]:
        return {"p50": self.percentile(0.50), "p95": self.percentile(0.95), "p99": self.percentile(0.99)}


class MetricKind(str, Enum):
    """What a series records: a running total, the latest value, or a distribution."""

    COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"


@dataclass(frozen=True)
class Tier:
    """One resolution of retained history: ``slots`` buckets of ``slot_seconds`` each."""

    slot_seconds: float
    slots: int

    def __post_init__(self) -> None:
        if not (self.slot_seconds > 0 and math.isfinite(self.slot_seconds)) or self.slots < 1:
            raise ValueError(f"invalid tier {self!r}")

    @property
    def span(self) -> float:
        return self.slot_seconds * self.slots


# 1 s x 60, 1 min x 60, 1 h x 24, 1 day x 7: last_minute .. last_week with 151 slots a series.
DEFAULT_TIERS: tuple[Tier, ...] = (Tier(1.0, 60), Tier(60.0, 60), Tier(3_600.0, 24), Tier(86_400.0, 7))


@dataclass(frozen=True)
class Summary:
    """What a query returns; fields that make no sense for the kind are None.

    ``value`` is the counter's total increase in the window, or the gauge's latest value.
    Windows are resolved to slot boundaries: they may include up to one slot of older data.
    """

    kind: MetricKind
    window: float | None
    count: int
    value: float | None
    sum: float
    min: float | None
    max: float | None
    mean: float | None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    rate: float | None = None


@dataclass(frozen=True)
class StoreStats:
    """Size and loss counters: ``slots``/``buckets`` are the live memory, the rest what was refused."""

    series: int
    max_series: int
    slots: int
    buckets: int
    rejected_series: int
    late_dropped: int


class _Agg:
    """Per-slot aggregate for counters (increments) and gauges (sets)."""

    __slots__ = ("count", "sum", "min", "max", "last", "last_at")

    def __init__(self) -> None:
        self.count, self.sum, self.min, self.max = 0, 0.0, math.inf, -math.inf
        self.last, self.last_at = 0.0, -math.inf

    def add(self, value: float, at: float) -> None:
        self.count += 1
        self.sum += value
        self.min, self.max = min(self.min, value), max(self.max, value)
        if at >= self.last_at:
            self.last, self.last_at = value, at

    def merge(self, other: _Agg) -> None:
        self.count += other.count
        self.sum += other.sum
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)
        if other.last_at >= self.last_at:
            self.last, self.last_at = other.last, other.last_at


Slot = _Agg | Histogram


class _Series:
    __slots__ = ("kind", "total", "slots", "newest", "last_at")

    def __init__(self, kind: MetricKind, tiers: int, total: Slot) -> None:
        self.kind = kind
        self.total = total
        self.slots: list[dict[int, Slot]] = [{} for _ in range(tiers)]
        self.newest = [-(2**62)] * tiers
        self.last_at = -math.inf


def _name(name: MetricName) -> MetricName:
    if not (isinstance(name, tuple) and name and all(isinstance(p, str) and p for p in name)):
        raise InvalidMetricName(f"metric names are non-empty tuples of non-empty strings, got {name!r}")
    return name


def _tags(tags: TagsIn) -> Tags:
    if not tags:
        return ()
    if not all(isinstance(k, str) for k in tags):
        raise InvalidMetricName(f"tag keys must be strings, got {list(tags)!r}")
    return tuple(sorted(tags.items()))


class MetricStore:
    """Series keyed by ``(name, tags)``; bounded by ``max_series`` and by fixed slots per tier.

    A write that would create a series beyond the cap first prunes expired series; if the
    store is still full the write is refused (returns False) and counted in ``stats()``
    rather than raised, because the usual writer is an event handler and a raising handler
    is detached -- one cardinality burst must not silence all metrics.
    """

    def __init__(
        self,
        *,
        max_series: int = 5_000,
        tiers: tuple[Tier, ...] = DEFAULT_TIERS,
        relative_accuracy: float = 0.01,
        max_buckets: int = 512,
    ) -> None:
        if max_series < 1:
            raise ValueError(f"max_series must be >= 1, got {max_series}")
        if not tiers:
            raise ValueError("at least one tier is needed")
        self.max_series = max_series
        self.tiers = tuple(sorted(tiers, key=lambda t: t.span))
        self.retention = self.tiers[-1].span
        self._relative_accuracy = relative_accuracy
        self._max_buckets = max_buckets
        self._new_histogram()  # validate once, here, not on the first observation
        self._series: dict[tuple[MetricName, Tags], _Series] = {}
        self._rejected = 0
        self._late = 0

    # -- writes ---------------------------------------------------------------------------
    def increment(self, name: MetricName, amount: float = 1.0, tags: TagsIn = None, *, now: float) -> bool:
        """Add ``amount`` (>= 0) to a counter; returns False if the series cap refused it."""
        return self._record(MetricKind.COUNTER, name, tags, amount, now)

    def set_gauge(self, name: MetricName, value: float, tags: TagsIn = None, *, now: float) -> bool:
        """Set a gauge; a window's ``value`` is the latest set in it."""
        return self._record(MetricKind.GAUGE, name, tags, value, now)

    def observe(self, name: MetricName, value: float, tags: TagsIn = None, *, now: float) -> bool:
        """Add a (>= 0) observation to a histogram series."""
        return self._record(MetricKind.HISTOGRAM, name, tags, value, now)

    def _new_slot(self, kind: MetricKind) -> Slot:
        return self._new_histogram() if kind is MetricKind.HISTOGRAM else _Agg()

    def _new_histogram(self) -> Histogram:
        return Histogram(self._relative_accuracy, max_buckets=self._max_buckets)

    def _record(self, kind: MetricKind, name: MetricName, tags: TagsIn, value: float, now: float) -> bool:
        key = (_name(name), _tags(tags))
        value, now = _finite(value), _finite(now)
        if kind is not MetricKind.GAUGE and value < 0:
            raise InvalidObservation(f"a {kind.value} takes values >= 0, got {value}")
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= self.max_series:
                self.prune(now)
            if len(self._series) >= self.max_series:
                self._rejected += 1
                return False
            series = self._series[key] = _Series(kind, len(self.tiers), self._new_slot(kind))
        elif series.kind is not kind:
            raise MetricKindMismatch(f"{key[0]!r} is a {series.kind.value}, not a {kind.value}")
        self._add(series.total, value, now)
        series.last_at = max(series.last_at, now)
        late = True
        for i, tier in enumerate(self.tiers):
            idx = math.floor(now / tier.slot_seconds)
            slots = series.slots[i]
            if idx <= series.newest[i] - tier.slots - 1:
                continue  # older than this tier keeps
            late = False
            if idx > series.newest[i]:
                series.newest[i] = idx
                for old in [k for k in slots if k <= idx - tier.slots - 1]:
                    del slots[old]
            slot = slots.get(idx)
            if slot is None:
                slot = slots[idx] = self._new_slot(kind)
            self._add(slot, value, now)
        self._late += late
        return True

    @staticmethod
    def _add(slot: Slot, value: float, now: float) -> None:
        if isinstance(slot, Histogram):
            slot.observe(value)
        else:
            slot.add(value, now)

    def prune(self, now: float) -> int:
        """Drop series with no write within the retention (the longest tier); returns how many."""
        horizon = now - self.retention
        dead = [k for k, s in self._series.items() if s.last_at < horizon]
        for key in dead:
            del self._series[key]
        return len(dead)

    def clear(self) -> None:
        self._series.clear()

    # -- reads ----------------------------------------------------------------------------
    def series(self, prefix: MetricName = ()) -> list[tuple[MetricName, Tags]]:
        """The keys whose name starts with ``prefix``."""
        return [k for k in self._series if k[0][: len(prefix)] == prefix]

    def __len__(self) -> int:
        return len(self._series)

    def stats(self) -> StoreStats:
        slots = [x for s in self._series.values() for x in (s.total, *(v for d in s.slots for v in d.values()))]
        buckets = sum(x.bucket_count for x in slots if isinstance(x, Histogram))
        return StoreStats(len(self._series), self.max_series, len(slots), buckets, self._rejected, self._late)

    def current(self, name: MetricName, tags: TagsIn = None) -> Summary | None:
        """All-time summary of a series, or None if it was never written (or was pruned)."""
        series = self._series.get((_name(name), _tags(tags)))
        return None if series is None else self._summary(series.kind, series.total, None)

    def query(self, name: MetricName, tags: TagsIn = None, *, window: float, now: float) -> Summary | None:
        """Summary of the writes in ``(now - window, now]``, resolved to slot boundaries."""
        series = self._series.get((_name(name), _tags(tags)))
        if series is None:
            return None
        if not window > 0:
            raise ValueError(f"window must be > 0, got {window}")
        i = next((i for i, t in enumerate(self.tiers) if t.span >= window), None)
        if i is None:
            raise WindowTooLong(f"window {window}s exceeds the retention of {self.retention}s")
        tier = self.tiers[i]
        start = now - window
        acc = self._new_slot(series.kind)
        for idx, slot in series.slots[i].items():
            if (idx + 1) * tier.slot_seconds > start and idx * tier.slot_seconds <= now:
                acc.merge(slot)  # type: ignore[arg-type]
        return self._summary(series.kind, acc, window)

    def last_minute(self, name: MetricName, tags: TagsIn = None, *, now: float) -> Summary | None:
        return self.query(name, tags, window=LAST_MINUTE, now=now)

    def last_hour(self, name: MetricName, tags: TagsIn = None, *, now: float) -> Summary | None:
        return self.query(name, tags, window=LAST_HOUR, now=now)

    def last_day(self, name: MetricName, tags: TagsIn = None, *, now: float) -> Summary | None:
        return self.query(name, tags, window=LAST_DAY, now=now)

    def last_week(self, name: MetricName, tags: TagsIn = None, *, now: float) -> Summary | None:
        return self.query(name, tags, window=LAST_WEEK, now=now)

    @staticmethod
    def _summary(kind: MetricKind, slot: Slot, window: float | None) -> Summary:
        if slot.count == 0:
            return Summary(
                kind,
                window,
                0,
                0.0 if kind is MetricKind.COUNTER else None,
                0.0,
                None,
                None,
                None,
                rate=0.0 if kind is MetricKind.COUNTER and window else None,
            )
        mean = slot.sum / slot.count
        if isinstance(slot, Histogram):
            return Summary(kind, window, slot.count, None, slot.sum, slot.min, slot.max, mean, **slot.percentiles())
        if kind is MetricKind.COUNTER:
            return Summary(
                kind,
                window,
                slot.count,
                slot.sum,
                slot.sum,
                slot.min,
                slot.max,
                mean,
                rate=slot.sum / window if window else None,
            )
        return Summary(kind, window, slot.count, slot.last, slot.sum, slot.min, slot.max, mean)
