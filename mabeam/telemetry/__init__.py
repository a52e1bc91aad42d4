"""Telemetry for MABEAM: bounded metrics, a prefix-matching event bus,
performance alerts, and the telemetry server that shares them.

Naming.  A function that talks to a MABEAM process is named verb_noun,
or a bare verb when its object is its first argument (``create_auction``,
``get_budget``, ``list_agents``, ``acquire(lock)``, ``publish(topic,
...)``); a pure function is named for what it computes (``jaccard``,
``tier``, ``agent_name``); a predicate is ``is_x`` or ``has_x``.

``_metrics`` and ``_events`` are pure objects that take explicit
timestamps (see ``_metrics`` for the histogram's error bound and memory
cap, ``_events`` for the handler-isolation rules); ``_alerts`` holds the
alert thresholds; ``_server`` is the process (registered as
``mabeam.telemetry``) and ``_client`` the functions other processes call.
Every process reports events with :func:`emit_event`.

:func:`child_spec` is the server's spec; the application lists it
(:mod:`mabeam._app`).
"""

from __future__ import annotations

from ._alerts import DEFAULT_THRESHOLDS, Alert, AlertChange, AlertDirection, Threshold
from ._client import (
    attach_handler,
    detach_handler,
    get_alert_thresholds,
    get_stats,
    list_alerts,
    list_handler_failures,
    list_handlers,
    list_series,
    query_metric,
    record_agent_metrics,
    record_metric,
    set_alert_threshold,
    subscribe_alerts,
)
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
from ._server import (
    AttachedHandler,
    FailedHandler,
    TelemetryOptions,
    TelemetryServer,
    TelemetryStats,
    child_spec,
    set_server_options,
)

__all__ = [
    "TELEMETRY",
    "emit_event",
    # the server
    "TelemetryServer",
    "TelemetryOptions",
    "TelemetryStats",
    "child_spec",
    "set_server_options",
    "record_metric",
    "record_agent_metrics",
    "attach_handler",
    "detach_handler",
    "list_handlers",
    "list_handler_failures",
    "AttachedHandler",
    "FailedHandler",
    "query_metric",
    "list_series",
    "get_stats",
    # alerts
    "Alert",
    "AlertChange",
    "AlertDirection",
    "Threshold",
    "DEFAULT_THRESHOLDS",
    "set_alert_threshold",
    "get_alert_thresholds",
    "list_alerts",
    "subscribe_alerts",
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
