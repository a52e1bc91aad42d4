"""The telemetry service: metrics with windows, isolated event handlers,
alerts that clear, bounded memory."""

from __future__ import annotations

import pytest
from helpers import recv, recv_tagged
from service_agents import failing_handler, forward_events

import mabeam
import otp
from mabeam import telemetry
from mabeam._errors import MabeamError


@pytest.fixture
def small_app(node):
    otp.trap_exit(True)
    telemetry.set_server_options(telemetry.TelemetryOptions(max_series=5, failure_limit=2, max_alerts=3))
    try:
        sup = mabeam.start()
    finally:
        telemetry.set_server_options(telemetry.TelemetryOptions())
    yield sup
    mabeam.stop(sup)


def test_errors_are_mabeam_errors_and_builtins():
    assert issubclass(telemetry.MetricError, MabeamError)
    assert issubclass(telemetry.EventBusError, MabeamError)
    assert issubclass(telemetry.InvalidObservation, ValueError)
    assert issubclass(telemetry.DuplicateHandler, ValueError)


def test_record_and_query(app):
    for value in (1.0, 5.0, 3.0):
        telemetry.record_metric(("jobs", "queue"), value, {"pool": "a"})
    for _ in range(4):
        telemetry.record_metric("done", 1, kind="counter")
    for ms in (10, 20, 30, 40):
        telemetry.record_metric(("latency",), ms, kind="histogram")
    gauge = telemetry.query_metric(("jobs", "queue"), {"pool": "a"}, window=60)  # casts first, then this call
    assert (gauge.count, gauge.value, gauge.max) == (3, 3.0, 5.0)
    assert telemetry.query_metric("done", window=60).value == 4
    latency = telemetry.query_metric("latency")
    assert latency.count == 4 and latency.p50 == pytest.approx(20, rel=0.02)
    assert telemetry.query_metric(("jobs", "queue"), {"pool": "b"}) is None
    assert (("jobs", "queue"), (("pool", "a"),)) in telemetry.list_series(("jobs",))
    telemetry.record_metric("done", -1, kind="counter")  # invalid: dropped, the service lives on
    assert telemetry.query_metric("done").value == 4
    with pytest.raises(ValueError):
        telemetry.record_metric("x", 1, kind="meter")


def test_failing_handler_is_detached_and_reported(app):
    me = otp.self()
    telemetry.attach_handler("good", ("app",), forward_events(me))
    telemetry.attach_handler("bad", ("app", "job"), failing_handler)
    with pytest.raises(telemetry.DuplicateHandler):
        telemetry.attach_handler("good", ("app",), forward_events(me))
    telemetry.emit_event(("app", "job", "done"), {"ms": 12}, {"id": 1})
    assert recv_tagged("event") == ("event", ("app", "job", "done"), {"ms": 12}, {"id": 1})
    _, what, handler_id, event, error = recv_tagged("$telemetry")
    assert (what, handler_id, event) == ("handler_failed", "bad", ("app", "job", "done"))
    assert "handler broke" in error
    assert [h for h, _ in telemetry.list_handlers()] == ["good"]
    assert telemetry.list_handler_failures()[0][0] == "bad"
    telemetry.emit_event(("app", "job", "done"), {"ms": 13})  # the emitter never noticed; the good handler still runs
    assert recv_tagged("event")[2] == {"ms": 13}
    assert telemetry.query_metric(("event", "app", "job", "done")).value == 2  # events are counted
    assert telemetry.detach_handler("good") is True and telemetry.detach_handler("good") is False


def test_alerts_raise_and_clear(app):
    telemetry.subscribe_alerts()
    assert telemetry.get_alert_thresholds()["cpu"] == ("above", 0.9)
    telemetry.record_agent_metrics("a1", cpu=0.95, memory=1024, error_rate=0.0)
    _, what, alert = recv_tagged("$alert")
    assert (what, alert.agent_id, alert.metric, alert.value, alert.limit) == ("raised", "a1", "cpu", 0.95, 0.9)
    telemetry.record_agent_metrics("a1", cpu=0.97)  # still high: no second alert
    telemetry.record_agent_metrics("a1", memory=3 * 1024**3, error_rate=0.2)
    raised = {recv_tagged("$alert")[2].metric for _ in range(2)}
    assert raised == {"memory", "error_rate"}
    assert sorted(a.metric for a in telemetry.list_alerts()) == ["cpu", "error_rate", "memory"]
    telemetry.record_agent_metrics("a1", cpu=0.5)
    _, what, alert = recv_tagged("$alert")
    assert (what, alert.metric, alert.value) == ("cleared", "cpu", 0.5)
    assert sorted(a.metric for a in telemetry.list_alerts()) == ["error_rate", "memory"]
    telemetry.set_alert_threshold("throughput", 1.0, direction="below")
    telemetry.record_agent_metrics("a2", throughput=0.5)
    assert recv_tagged("$alert")[2].metric == "throughput"
    assert telemetry.query_metric(("mabeam", "agent", "cpu"), {"agent": "a1"}).value == 0.5


def test_alert_events_reach_handlers(app):
    telemetry.attach_handler("alerts", ("mabeam", "alert"), forward_events(otp.self()))
    telemetry.record_agent_metrics("a", error_rate=0.5)
    _, event, measurements, metadata = recv_tagged("event")
    assert event == ("mabeam", "alert", "raised") and metadata == {"agent_id": "a", "metric": "error_rate"}


def test_memory_is_bounded(small_app):
    for i in range(50):
        telemetry.record_metric("m", i, {"i": i})
    telemetry.attach_handler("bad", (), failing_handler)
    for i in range(3):
        telemetry.attach_handler(f"bad{i}", (), failing_handler)
    telemetry.emit_event(("x",))
    for i in range(10):
        telemetry.record_agent_metrics(f"a{i}", cpu=1.0)
    stats = telemetry.get_stats()
    assert stats.store.series == 5 and stats.store.rejected_series > 0
    assert stats.failures == 2 and stats.alerts == 3
    assert stats.handlers == 0


def test_dead_alert_subscriber_is_dropped(app):
    me = otp.self()

    pid = otp.spawn(lambda: (telemetry.subscribe_alerts(), otp.send(me, "subscribed"), otp.receive()))
    recv(lambda m: m == "subscribed")
    assert telemetry.get_stats().alert_subscribers == 1
    ref = otp.monitor(pid)
    otp.exit(pid, "kill")
    recv(lambda m: isinstance(m, otp.DOWN) and m.ref == ref)
    assert telemetry.get_stats().alert_subscribers == 0
