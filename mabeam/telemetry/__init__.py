"""Telemetry for MABEAM: bounded metrics and a prefix-matching event bus.

Both halves are pure objects that take explicit timestamps; a gen_server wraps them to
make them shared.  See ``_metrics`` for the histogram's error bound and memory cap, and
``_events`` for the handler-isolation rules.
"""

from __future__ import annotations

from ._emit import TELEMETRY, emit_event
from ._events import (
    DuplicateHandler,
    EventBus,
    EventBusError,
    EventName,
    Handler,
    HandlerFailure,
    HandlerInfo,
    InvalidEventName,
    UndeclaredEvent,
    UnknownEventPrefix,
)
from ._metrics import (
    DEFAULT_TIERS,
    LAST_DAY,
    LAST_HOUR,
    LAST_MINUTE,
    LAST_WEEK,
    Counter,
    Gauge,
    Histogram,
    IncompatibleHistograms,
    InvalidMetricName,
    InvalidObservation,
    MetricError,
    MetricKind,
    MetricKindMismatch,
    MetricStore,
    StoreStats,
    Summary,
    Tier,
    WindowTooLong,
)

__all__ = [
    "TELEMETRY",
    "emit_event",
    # metrics
    "Counter",
    "Gauge",
    "Histogram",
    "MetricKind",
    "MetricStore",
    "Summary",
    "StoreStats",
    "Tier",
    "DEFAULT_TIERS",
    "LAST_MINUTE",
    "LAST_HOUR",
    "LAST_DAY",
    "LAST_WEEK",
    "MetricError",
    "InvalidMetricName",
    "InvalidObservation",
    "MetricKindMismatch",
    "IncompatibleHistograms",
    "WindowTooLong",
    # events
    "EventBus",
    "EventName",
    "Handler",
    "HandlerInfo",
    "HandlerFailure",
    "EventBusError",
    "InvalidEventName",
    "DuplicateHandler",
    "UndeclaredEvent",
    "UnknownEventPrefix",
]
