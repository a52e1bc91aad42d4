"""The telemetry process: one ``MetricStore``, one ``EventBus`` and the
performance alerts, behind an :class:`otp.Service`.

* Writes are casts (``record_metric``, ``emit_event``,
  ``record_agent_metrics``): an emitter never waits and never fails because
  of telemetry; a refused write is logged here and dropped.
* Handlers run in this process, in attach order.  A handler that raises is
  detached (``EventBus`` semantics) and reported: kept in a bounded list of
  failures, logged, and told to the process that attached it as
  ``('$telemetry', 'handler_failed', handler_id, event, error_repr)``.
  Handlers receive read-only mappings: ``dict()`` them before sending.
* Every emitted event also counts in the store under ``('event', *event)``,
  so "how many X in the last minute" is a query.
* Alerts are sent to alert subscribers as ``('$alert', 'raised'|'cleared',
  Alert)`` and emitted as events ``('mabeam', 'alert', 'raised'|'cleared')``.

Memory is bounded: the store by ``max_series`` and fixed slots per tier,
failures by ``failure_limit``, alerts by ``max_alerts`` (oldest dropped).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import otp

from .._common import ServerOptions, Subscribers
from ._alerts import DEFAULT_THRESHOLDS, Alert, AlertChange, AlertDirection, Threshold
from ._emit import TELEMETRY
from ._events import EventBus, EventName, Handler, HandlerFailure
from ._metrics import MetricKind, MetricName, MetricStore, StoreStats, Summary

log = logging.getLogger("mabeam.telemetry")

__all__ = [
    "TelemetryServer",
    "TelemetryOptions",
    "TelemetryStats",
    "AttachedHandler",
    "FailedHandler",
    "as_name",
    "child_spec",
    "set_server_options",
]


@dataclass(frozen=True)
class TelemetryOptions:
    """How large the telemetry server's memory may grow."""

    max_series: int = 5_000
    failure_limit: int = 100
    max_alerts: int = 10_000


@dataclass(frozen=True)
class TelemetryStats:
    """The telemetry server's sizes (``get_stats``)."""

    store: StoreStats
    handlers: int
    alerts: int
    failures: int
    alert_subscribers: int


class AttachedHandler(NamedTuple):
    """A handler attached in the telemetry server, in call order."""

    handler_id: Hashable
    prefixes: tuple[EventName, ...]


class FailedHandler(NamedTuple):
    """A handler detached because it raised ``error`` (its repr) on ``event``."""

    handler_id: Hashable
    event: EventName
    error: str


def as_name(name: str | Iterable[str]) -> tuple[str, ...]:
    """A metric or event name as a tuple: a bare string is a one-part name."""
    return (name,) if isinstance(name, str) else tuple(name)


def _tag(agent_id: Hashable) -> str | int | float | bool:
    return agent_id if isinstance(agent_id, (str, int, float, bool)) else repr(agent_id)


class TelemetryServer(otp.Service):
    """The telemetry process (see the module documentation)."""

    def init(self, options: TelemetryOptions) -> None:
        self.store = MetricStore(max_series=options.max_series)
        self.bus = EventBus(failure_limit=options.failure_limit, on_failure=self._handler_failed)
        self.owners: dict[Hashable, otp.Pid] = {}  # handler id -> the process that attached it
        self.thresholds: dict[str, Threshold] = dict(DEFAULT_THRESHOLDS)
        self.alerts: OrderedDict[tuple[Hashable, str], Alert] = OrderedDict()
        self.max_alerts = options.max_alerts
        self.alert_subscribers = Subscribers()

    # ------------------------------------------------------------ writes

    @otp.operation
    def record_metric(self, name: MetricName, value: float, tags: Mapping[str, Any] | None, kind: MetricKind) -> None:
        now = time.monotonic()
        if kind is MetricKind.GAUGE:
            self.store.set_gauge(name, value, tags, now=now)
        elif kind is MetricKind.COUNTER:
            self.store.increment(name, value, tags, now=now)
        else:
            self.store.observe(name, value, tags, now=now)

    @otp.operation
    def emit_event(self, event: EventName, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        event = as_name(event)
        self.store.increment(("event", *event), 1.0, None, now=time.monotonic())
        self.bus.emit(event, measurements, metadata)

    @otp.operation
    def record_agent_metrics(self, agent_id: Hashable, metrics: Mapping[str, float | None]) -> None:
        now = time.monotonic()
        for metric, value in metrics.items():
            if value is None:
                continue
            self.store.set_gauge(("mabeam", "agent", metric), value, {"agent": _tag(agent_id)}, now=now)
            self._check_alert(agent_id, metric, float(value))

    # ------------------------------------------------------------ handlers

    @otp.operation
    def attach_handler(self, handler_id: Hashable, prefixes: list[EventName], fn: Handler) -> None:
        assert self.caller is not None  # an operation always runs for a caller
        self.bus.attach_many(handler_id, [as_name(p) for p in prefixes], fn)
        self.owners[handler_id] = self.caller[0]

    @otp.operation
    def detach_handler(self, handler_id: Hashable) -> bool:
        self.owners.pop(handler_id, None)
        return self.bus.detach(handler_id)

    @otp.operation
    def list_handlers(self) -> list[AttachedHandler]:
        return [AttachedHandler(h.handler_id, h.prefixes) for h in self.bus.handlers()]

    @otp.operation
    def list_handler_failures(self) -> list[FailedHandler]:
        return [FailedHandler(f.handler_id, f.event, repr(f.error)) for f in self.bus.failures]

    def _handler_failed(self, failure: HandlerFailure) -> None:
        owner = self.owners.pop(failure.handler_id, None)
        if owner is not None:
            otp.send(owner, ("$telemetry", "handler_failed", failure.handler_id, failure.event, repr(failure.error)))

    # ------------------------------------------------------------ reads

    @otp.operation
    def query_metric(self, name: MetricName, tags: Mapping[str, Any] | None, window: float | None) -> Summary | None:
        if window is None:
            return self.store.current(name, tags)
        return self.store.query(name, tags, window=window, now=time.monotonic())

    @otp.operation
    def list_series(self, prefix: MetricName) -> list[tuple[MetricName, tuple]]:
        return self.store.series(prefix)

    @otp.operation
    def get_stats(self) -> TelemetryStats:
        self.alert_subscribers.prune()
        return TelemetryStats(
            self.store.stats(),
            len(self.bus.handlers()),
            len(self.alerts),
            len(self.bus.failures),
            len(self.alert_subscribers),
        )

    # ------------------------------------------------------------ alerts

    @otp.operation
    def set_alert_threshold(self, metric: str, limit: float | None, direction: AlertDirection) -> None:
        if limit is None:
            self.thresholds.pop(metric, None)
        else:
            self.thresholds[metric] = Threshold(direction, float(limit))

    @otp.operation
    def get_alert_thresholds(self) -> dict[str, Threshold]:
        return dict(self.thresholds)

    @otp.operation
    def list_alerts(self) -> list[Alert]:
        return list(self.alerts.values())

    @otp.operation
    def subscribe_alerts(self, pid: otp.Pid) -> None:
        self.alert_subscribers.add(pid)

    def _check_alert(self, agent_id: Hashable, metric: str, value: float) -> None:
        key = (agent_id, metric)
        threshold = self.thresholds.get(metric)
        current = self.alerts.get(key)
        if threshold is not None and threshold.violated_by(value):
            if current is None:
                alert = Alert(agent_id, metric, value, threshold.limit, threshold.direction, time.time())
                self.alerts[key] = alert
                while len(self.alerts) > self.max_alerts:
                    self.alerts.popitem(last=False)
                self._announce(AlertChange.RAISED, alert)
        elif current is not None:
            del self.alerts[key]
            cleared = Alert(agent_id, metric, value, current.limit, current.direction, current.since)
            self._announce(AlertChange.CLEARED, cleared)

    def _announce(self, change: AlertChange, alert: Alert) -> None:
        self.alert_subscribers.send(("$alert", change.value, alert))
        event = ("mabeam", "alert", change.value)
        self.store.increment(("event", *event), 1.0, None, now=time.monotonic())
        self.bus.emit(
            event, {"value": alert.value, "limit": alert.limit}, {"agent_id": alert.agent_id, "metric": alert.metric}
        )

    def handle_info(self, msg: Any, state: Any) -> Any:
        if isinstance(msg, otp.DOWN):
            self.alert_subscribers.down(msg)
        return otp.NoReply(state)


_options = ServerOptions(TelemetryServer, TELEMETRY, TelemetryOptions())
set_server_options = _options.set_server_options
child_spec = _options.child_spec
