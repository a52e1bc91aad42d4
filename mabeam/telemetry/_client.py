"""The telemetry service's client functions (run in the caller's process)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import otp

from ._alerts import Alert, AlertDirection, Threshold
from ._emit import TELEMETRY
from ._events import EventName, Handler
from ._metrics import MetricKind, MetricName, Summary
from ._server import AttachedHandler, FailedHandler, TelemetryStats, as_name

__all__ = [
    "record_metric",
    "record_agent_metrics",
    "attach_handler",
    "detach_handler",
    "list_handlers",
    "list_handler_failures",
    "query_metric",
    "list_series",
    "set_alert_threshold",
    "get_alert_thresholds",
    "list_alerts",
    "subscribe_alerts",
    "get_stats",
]


def record_metric(
    name: str | Iterable[str], value: float, tags: Mapping[str, Any] | None = None, kind: str = "gauge"
) -> None:
    """Record ``value`` in series ``(name, tags)``: ``kind`` 'gauge' (latest
    value), 'counter' (add, >= 0) or 'histogram' (observe, >= 0).  A cast:
    an invalid value is logged by the server and dropped."""
    otp.tell(TELEMETRY, "record_metric", as_name(name), value, dict(tags) if tags else None, MetricKind(kind))


def record_agent_metrics(agent_id: Hashable, **metrics: float | None) -> None:
    """The performance monitor's input: gauges ``('mabeam', 'agent', metric)``
    tagged ``agent=agent_id``, checked against the alert thresholds (a cast).
    E.g. ``cpu=0.5, memory=2**30, error_rate=0.01``."""
    otp.tell(TELEMETRY, "record_agent_metrics", agent_id, metrics)


def attach_handler(handler_id: Hashable, prefix: EventName | list[EventName], fn: Handler) -> None:
    """Run ``fn(event, measurements, metadata)`` in the telemetry process for
    every event starting with ``prefix`` (a tuple, or a list of tuples).
    Raises ``DuplicateHandler`` if ``handler_id`` is attached already."""
    prefixes = list(prefix) if isinstance(prefix, list) else [prefix]
    otp.ask(TELEMETRY, "attach_handler", handler_id, prefixes, fn)


def detach_handler(handler_id: Hashable) -> bool:
    """Detach a handler; False if it was not attached."""
    return otp.ask(TELEMETRY, "detach_handler", handler_id)


def list_handlers() -> list[AttachedHandler]:
    """The attached handlers, in call order."""
    return otp.ask(TELEMETRY, "list_handlers")


def list_handler_failures() -> list[FailedHandler]:
    """The handlers detached because they raised (the most recent, bounded)."""
    return otp.ask(TELEMETRY, "list_handler_failures")


def query_metric(
    name: str | Iterable[str], tags: Mapping[str, Any] | None = None, window: float | None = None
) -> Summary | None:
    """A ``Summary`` of the series over the last ``window`` seconds (all time
    if None), or None if the series does not exist."""
    return otp.ask(TELEMETRY, "query_metric", as_name(name), dict(tags) if tags else None, window)


def list_series(prefix: str | Iterable[str] = ()) -> list[tuple[MetricName, tuple]]:
    """The ``(name, tags)`` keys of the series whose name starts with ``prefix``."""
    return otp.ask(TELEMETRY, "list_series", as_name(prefix))


def set_alert_threshold(metric: str, limit: float | None, direction: str = "above") -> None:
    """Alert when ``metric`` is ``direction`` ('above' or 'below') ``limit``;
    ``limit=None`` removes the threshold."""
    otp.ask(TELEMETRY, "set_alert_threshold", metric, limit, AlertDirection(direction))


def get_alert_thresholds() -> dict[str, Threshold]:
    """``{metric: Threshold(direction, limit)}``."""
    return otp.ask(TELEMETRY, "get_alert_thresholds")


def list_alerts() -> list[Alert]:
    """The active alerts, oldest first."""
    return otp.ask(TELEMETRY, "list_alerts")


def subscribe_alerts() -> None:
    """Receive ``('$alert', 'raised'|'cleared', Alert)``; the caller is monitored."""
    otp.ask(TELEMETRY, "subscribe_alerts", otp.self())


def get_stats() -> TelemetryStats:
    """The telemetry server's sizes: series, handlers, alerts, failures, subscribers."""
    return otp.ask(TELEMETRY, "get_stats")
