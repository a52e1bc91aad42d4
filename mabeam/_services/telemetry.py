"""The telemetry service: one process owning a bounded ``MetricStore`` and an
``EventBus``, plus the performance monitor's alerts (seed §1.B.12/13).

* Writes are casts (``record``, ``emit``, ``record_agent_metrics``): an
  emitter never waits and never fails because of telemetry.
* ``attach(handler_id, prefix, fn)`` ships ``fn`` (cloudpickle) to this
  process; handlers run here, in attach order.  A handler that raises is
  detached (``EventBus`` semantics) and reported: kept in a bounded list of
  failures, logged, and told to the process that attached it as
  ``('$telemetry', 'handler_failed', handler_id, event, error_repr)``.
  Handlers receive read-only mappings: ``dict()`` them before sending.
* Every emitted event also counts in the store under ``('event', *event)``,
  so "how many X in the last minute" is a query.
* Alerts: ``record_agent_metrics(agent_id, cpu=..., memory=..., ...)`` sets
  gauges ``('mabeam', 'agent', metric)`` tagged ``agent=...`` and checks
  thresholds (defaults: cpu above 0.9, memory above 2 GiB, error_rate above
  0.1; the seed's throughput-below-1.0 is available, off by default).  An
  alert is raised once when a value crosses its threshold and cleared when a
  later value is back on the right side; both are sent to alert subscribers
  (``('$alert', 'raised'|'cleared', Alert)``) and emitted as events
  ``('mabeam', 'alert', 'raised'|'cleared')``.

Memory is bounded: the store by ``max_series`` and fixed slots per tier,
failures by ``failure_limit``, alerts by ``max_alerts`` (oldest dropped).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import otp

from ..telemetry import EventBus, HandlerFailure, MetricStore
from ._common import TELEMETRY, Subscribers, ask

log = logging.getLogger("mabeam.telemetry")

__all__ = [
    "TelemetryServer",
    "Alert",
    "DEFAULT_THRESHOLDS",
    "record",
    "emit",
    "attach",
    "detach",
    "handlers",
    "handler_failures",
    "query",
    "series",
    "record_agent_metrics",
    "set_alert_threshold",
    "alert_thresholds",
    "active_alerts",
    "subscribe_alerts",
    "telemetry_stats",
]

GIB = 1024**3
#: metric -> (direction, limit): the seed's PerformanceMonitor defaults.
DEFAULT_THRESHOLDS: dict[str, tuple[str, float]] = {
    "cpu": ("above", 0.9),
    "memory": ("above", 2 * GIB),
    "error_rate": ("above", 0.1),
}
_KINDS = ("gauge", "counter", "histogram")


@dataclass(frozen=True)
class Alert:
    agent_id: Any
    metric: str
    value: float
    limit: float
    direction: str  # 'above' or 'below': the wrong side of the limit
    since: float  # time.time() when raised


def _name(name: Any) -> tuple:
    return (name,) if isinstance(name, str) else tuple(name)


def _tag(agent_id: Any) -> Any:
    return agent_id if isinstance(agent_id, (str, int, float, bool)) else repr(agent_id)


class TelemetryServer(otp.GenServer):
    def init(self, opts: Any) -> Any:
        opts = dict(opts or {})
        self.store = MetricStore(max_series=opts.get("max_series", 5_000))
        self.bus = EventBus(failure_limit=opts.get("failure_limit", 100), on_failure=self._failed)
        self.owners: dict = {}  # handler id -> pid that attached it
        self.thresholds = dict(DEFAULT_THRESHOLDS)
        self.alerts: OrderedDict = OrderedDict()  # (agent_id, metric) -> Alert
        self.max_alerts = opts.get("max_alerts", 10_000)
        self.alert_subs = Subscribers()
        return self

    # ------------------------------------------------------------ casts

    def handle_cast(self, request: tuple, state: Any) -> Any:
        try:
            op = request[0]
            now = time.monotonic()
            if op == "record":
                _, name, value, tags, kind = request
                self._write(kind, _name(name), value, tags, now)
            elif op == "emit":
                _, event, measurements, metadata = request
                event = _name(event)
                self.store.increment(("event", *event), 1.0, None, now=now)
                self.bus.emit(event, measurements, metadata)
            elif op == "agent_metrics":
                self._agent_metrics(request[1], request[2], now)
            else:
                log.warning("telemetry: unknown cast %r", request)
        except Exception as exc:  # a bad write must not take the service down
            log.warning("telemetry: dropped %r: %r", request[:2], exc)
        return otp.NoReply(self)

    def _write(self, kind: str, name: tuple, value: float, tags: Any, now: float) -> None:
        if kind == "gauge":
            self.store.set_gauge(name, value, tags, now=now)
        elif kind == "counter":
            self.store.increment(name, value, tags, now=now)
        elif kind == "histogram":
            self.store.observe(name, value, tags, now=now)
        else:
            raise ValueError(f"kind must be one of {_KINDS}, not {kind!r}")

    def _agent_metrics(self, agent_id: Any, metrics: dict, now: float) -> None:
        for metric, value in metrics.items():
            if value is None:
                continue
            self.store.set_gauge(("mabeam", "agent", metric), value, {"agent": _tag(agent_id)}, now=now)
            self._check_alert(agent_id, metric, float(value))

    def _check_alert(self, agent_id: Any, metric: str, value: float) -> None:
        key = (agent_id, metric)
        threshold = self.thresholds.get(metric)
        bad = threshold is not None and (value > threshold[1] if threshold[0] == "above" else value < threshold[1])
        current = self.alerts.get(key)
        if bad and current is None:
            alert = Alert(agent_id, metric, value, threshold[1], threshold[0], time.time())
            self.alerts[key] = alert
            while len(self.alerts) > self.max_alerts:
                self.alerts.popitem(last=False)
            self._announce("raised", alert)
        elif not bad and current is not None:
            del self.alerts[key]
            self._announce("cleared", Alert(agent_id, metric, value, current.limit, current.direction, current.since))

    def _announce(self, what: str, alert: Alert) -> None:
        self.alert_subs.send(("$alert", what, alert))
        self.store.increment(("event", "mabeam", "alert", what), 1.0, None, now=time.monotonic())
        self.bus.emit(
            ("mabeam", "alert", what),
            {"value": alert.value, "limit": alert.limit},
            {"agent_id": alert.agent_id, "metric": alert.metric},
        )

    def _failed(self, failure: HandlerFailure) -> None:
        owner = self.owners.pop(failure.handler_id, None)
        if owner is not None:
            otp.send(owner, ("$telemetry", "handler_failed", failure.handler_id, failure.event, repr(failure.error)))

    # ------------------------------------------------------------ calls

    def handle_call(self, request: tuple, from_: tuple, state: Any) -> Any:
        try:
            value = self._call(request, from_)
        except Exception as exc:
            return otp.Reply(("error", exc), self)
        return otp.Reply(("ok", value), self)

    def _call(self, request: tuple, from_: tuple) -> Any:
        op = request[0]
        if op == "attach":
            _, handler_id, prefixes, fn = request
            self.bus.attach_many(handler_id, [_name(p) for p in prefixes], fn)
            self.owners[handler_id] = from_[0]
            return None
        if op == "detach":
            self.owners.pop(request[1], None)
            return self.bus.detach(request[1])
        if op == "handlers":
            return [(h.handler_id, h.prefixes) for h in self.bus.handlers()]
        if op == "failures":
            return [(f.handler_id, f.event, repr(f.error)) for f in self.bus.failures]
        if op == "query":
            _, name, tags, window = request
            if window is None:
                return self.store.current(_name(name), tags)
            return self.store.query(_name(name), tags, window=window, now=time.monotonic())
        if op == "series":
            return self.store.series(_name(request[1]))
        if op == "threshold":
            _, metric, limit, direction = request
            if direction not in ("above", "below"):
                raise ValueError(f"direction must be 'above' or 'below', not {direction!r}")
            if limit is None:
                self.thresholds.pop(metric, None)
            else:
                self.thresholds[metric] = (direction, float(limit))
            return None
        if op == "thresholds":
            return dict(self.thresholds)
        if op == "alerts":
            return list(self.alerts.values())
        if op == "subscribe_alerts":
            self.alert_subs.add(request[1])
            return None
        if op == "stats":
            self.alert_subs.prune()
            return {
                "store": self.store.stats(),
                "handlers": len(self.bus.handlers()),
                "alerts": len(self.alerts),
                "failures": len(self.bus.failures),
                "alert_subscribers": len(self.alert_subs),
            }
        raise ValueError(f"unknown telemetry request {op!r}")

    def handle_info(self, msg: Any, state: Any) -> Any:
        if isinstance(msg, otp.DOWN):
            self.alert_subs.down(msg)
        return otp.NoReply(self)


# ------------------------------------------------------------------ client


def record(name: Any, value: float, tags: dict | None = None, kind: str = "gauge") -> None:
    """Record ``value`` in series ``(name, tags)``: ``kind`` 'gauge' (latest
    value), 'counter' (add, >= 0) or 'histogram' (observe, >= 0).  A cast."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, not {kind!r}")
    otp.cast(TELEMETRY, ("record", name, value, dict(tags) if tags else None, kind))


def emit(event: Any, measurements: dict | None = None, metadata: dict | None = None) -> None:
    """Emit an event to the attached handlers (a cast)."""
    otp.cast(TELEMETRY, ("emit", event, dict(measurements or {}), dict(metadata or {})))


def attach(handler_id: Any, prefix: Any, fn: Any) -> None:
    """Run ``fn(event, measurements, metadata)`` in the telemetry process for
    every event starting with ``prefix`` (a tuple, or a list of tuples)."""
    prefixes = list(prefix) if isinstance(prefix, list) else [prefix]
    ask(TELEMETRY, ("attach", handler_id, prefixes, fn))


def detach(handler_id: Any) -> bool:
    return ask(TELEMETRY, ("detach", handler_id))


def handlers() -> list:
    """``[(handler_id, prefixes)]`` in call order."""
    return ask(TELEMETRY, ("handlers",))


def handler_failures() -> list:
    """``[(handler_id, event, error_repr)]`` of detached handlers (bounded)."""
    return ask(TELEMETRY, ("failures",))


def query(name: Any, tags: dict | None = None, window: float | None = None) -> Any:
    """A ``telemetry.Summary`` of the series over the last ``window`` seconds
    (all time if None), or None if the series does not exist."""
    return ask(TELEMETRY, ("query", name, dict(tags) if tags else None, window))


def series(prefix: Any = ()) -> list:
    return ask(TELEMETRY, ("series", prefix))


def record_agent_metrics(agent_id: Any, **metrics: float) -> None:
    """The performance monitor's input: gauges per agent, checked against the
    alert thresholds (a cast).  E.g. ``cpu=0.5, memory=2**30, error_rate=0.01``."""
    otp.cast(TELEMETRY, ("agent_metrics", agent_id, metrics))


def set_alert_threshold(metric: str, limit: float | None, direction: str = "above") -> None:
    """Alert when ``metric`` is ``direction`` ``limit``; ``limit=None`` removes it."""
    ask(TELEMETRY, ("threshold", metric, limit, direction))


def alert_thresholds() -> dict:
    return ask(TELEMETRY, ("thresholds",))


def active_alerts() -> list:
    return ask(TELEMETRY, ("alerts",))


def subscribe_alerts() -> None:
    """Receive ``('$alert', 'raised'|'cleared', Alert)``; the caller is monitored."""
    ask(TELEMETRY, ("subscribe_alerts", otp.self()))


def telemetry_stats() -> dict:
    return ask(TELEMETRY, ("stats",))
