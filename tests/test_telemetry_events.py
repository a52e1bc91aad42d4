"""The event bus: prefix matching, handler isolation, and the event-name drift guard."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.telemetry import (
    DuplicateHandler,
    EventBus,
    HandlerFailure,
    InvalidEventName,
    UndeclaredEvent,
    UnknownEventPrefix,
)


def recorder(log: list, tag: str):
    def handler(event, measurements, metadata):
        log.append((tag, event, dict(measurements), dict(metadata)))

    return handler


def test_prefix_matching_delivers_to_every_matching_handler_in_attach_order():
    bus, log = EventBus(), []
    bus.attach("agent", ("mabeam", "agent"), recorder(log, "agent"))
    bus.attach("all", (), recorder(log, "all"))
    bus.attach("exact", ("mabeam", "agent", "started"), recorder(log, "exact"))
    bus.attach("coord", ("mabeam", "coordination"), recorder(log, "coord"))
    n = bus.emit(("mabeam", "agent", "started"), {"count": 1}, {"agent_id": "a"})
    assert n == 3
    assert [tag for tag, *_ in log] == ["agent", "all", "exact"]
    assert log[0][1:] == (("mabeam", "agent", "started"), {"count": 1}, {"agent_id": "a"})


def test_a_prefix_matches_whole_elements_not_string_prefixes():
    bus, log = EventBus(), []
    bus.attach("h", ("mabeam", "agent"), recorder(log, "h"))
    assert bus.emit(("mabeam", "agents", "x")) == 0
    assert bus.emit(("mabeam",)) == 0
    assert log == []


def test_duplicate_ids_are_rejected_and_detach_frees_the_id():
    bus = EventBus()
    bus.attach("h", ("a",), lambda *_: None)
    with pytest.raises(DuplicateHandler):
        bus.attach("h", ("b",), lambda *_: None)
    assert bus.detach("h") is True
    assert bus.detach("h") is False
    bus.attach("h", ("b",), lambda *_: None)
    assert [i.prefixes for i in bus.handlers()] == [(("b",),)]


def test_a_raising_handler_is_detached_reported_and_never_breaks_the_emitter():
    reports: list[HandlerFailure] = []
    bus, log = EventBus(on_failure=reports.append), []

    def broken(event, measurements, metadata):
        raise RuntimeError("boom")

    bus.attach("first", ("e",), recorder(log, "first"))
    bus.attach("broken", ("e",), broken)
    bus.attach("last", ("e",), recorder(log, "last"))
    assert bus.emit(("e", "x")) == 2
    assert [t for t, *_ in log] == ["first", "last"]
    assert [h.handler_id for h in bus.handlers()] == ["first", "last"]
    (failure,) = bus.failures
    assert failure == reports[0]
    assert failure.handler_id == "broken" and failure.event == ("e", "x")
    assert isinstance(failure.error, RuntimeError) and "boom" in failure.traceback
    assert bus.emit(("e", "y")) == 2  # the broken one is gone for good
    assert len(bus.failures) == 1


def test_a_raising_failure_reporter_does_not_break_the_emitter_either():
    def bad_reporter(failure):
        raise ValueError("reporter broke")

    bus = EventBus(on_failure=bad_reporter)
    bus.attach("broken", ("e",), lambda *_: 1 / 0)
    assert bus.emit(("e",)) == 0
    assert len(bus.failures) == 1


def test_base_exceptions_are_not_swallowed():
    bus = EventBus()

    def quitter(*_):
        raise KeyboardInterrupt

    bus.attach("q", ("e",), quitter)
    with pytest.raises(KeyboardInterrupt):
        bus.emit(("e",))


def test_failures_are_bounded():
    bus = EventBus(failure_limit=3)
    for i in range(10):
        bus.attach(i, ("e",), lambda *_: 1 / 0)
    bus.emit(("e",))
    assert [f.handler_id for f in bus.failures] == [7, 8, 9]


def test_handlers_see_read_only_views():
    bus, log = EventBus(), []

    def mutator(event, measurements, metadata):
        measurements["count"] = 99

    bus.attach("mutator", ("e",), mutator)
    bus.attach("reader", ("e",), recorder(log, "reader"))
    source = {"count": 1}
    assert bus.emit(("e",), source) == 1
    assert log[0][2] == {"count": 1} and source == {"count": 1}
    assert bus.failures[0].handler_id == "mutator"


def test_handlers_may_attach_and_detach_during_emit():
    bus, log = EventBus(), []

    def detach_next(*_):
        bus.detach("victim")
        bus.detach("self_remover")

    bus.attach("self_remover", ("e",), detach_next)
    bus.attach("victim", ("e",), recorder(log, "victim"))
    assert bus.emit(("e",)) == 1
    assert log == [] and bus.handlers() == []

    def attach_new(*_):
        bus.attach("new", ("e",), recorder(log, "new"))

    bus.attach("adder", ("e",), attach_new)
    bus.emit(("e",))
    assert log == []  # attached mid-emit: takes effect from the next emit
    bus.emit(("e",))
    assert [t for t, *_ in log] == ["new"]


def test_attach_many_delivers_once_per_event():
    bus, log = EventBus(), []
    bus.attach_many("h", [("a",), ("a", "b"), ("c",)], recorder(log, "h"))
    bus.emit(("a", "b", "c"))
    bus.emit(("c",))
    assert len(log) == 2
    assert bus.detach("h")
    assert bus.handlers_for(("a", "b")) == []


def test_invalid_names_are_rejected():
    bus = EventBus()
    for bad in ((), ["a"], "a", ("a", ""), ("a", 3)):
        with pytest.raises(InvalidEventName):
            bus.emit(bad)
    with pytest.raises(InvalidEventName):
        bus.attach("h", ["a"], lambda *_: None)
    with pytest.raises(InvalidEventName):
        bus.attach_many("h", [], lambda *_: None)
    with pytest.raises(TypeError):
        bus.attach("h", ("a",), "not callable")


EMITTED = ("foundation", "mabeam", "agent", "agent_started")  # what an emitter names the event
MISSPELT = ("foundation", "mabeam", "agent", "started")  # what a handler listens for by mistake


def test_strict_mode_catches_event_name_drift_at_attach_time():
    bus = EventBus(strict=True, declared=[EMITTED])
    with pytest.raises(UnknownEventPrefix):
        bus.attach("telemetry", MISSPELT, lambda *_: None)
    bus.attach("telemetry", ("foundation", "mabeam", "agent"), lambda *_: None)  # a real prefix is fine
    with pytest.raises(UndeclaredEvent):
        bus.emit(MISSPELT)
    assert bus.emit(EMITTED) == 1


def test_lenient_mode_lists_handlers_no_declared_event_reaches():
    bus = EventBus(declared=[EMITTED])
    bus.attach("drifted", MISSPELT, lambda *_: None)
    bus.attach("fine", ("foundation", "mabeam"), lambda *_: None)
    assert [h.handler_id for h in bus.unmatched_handlers()] == ["drifted"]
    bus.declare(MISSPELT)
    assert bus.unmatched_handlers() == []
    assert MISSPELT in bus.declared


def test_concurrent_attach_detach_and_emit_do_not_corrupt_the_table():
    bus = EventBus()
    bus.attach("steady", ("e",), lambda *_: None)
    errors: list[BaseException] = []

    def churn(k: int) -> None:
        try:
            for i in range(300):
                bus.attach((k, i), ("e",), lambda *_: None)
                bus.emit(("e", "x"))
                bus.detach((k, i))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [h.handler_id for h in bus.handlers()] == ["steady"]
    assert bus.failures == ()


names = st.tuples(*[st.sampled_from("ab")] * 3).flatmap(lambda t: st.integers(0, 3).map(lambda n: t[:n]))
ops = st.lists(
    st.one_of(
        st.tuples(st.just("attach"), st.integers(0, 4), names),
        st.tuples(st.just("detach"), st.integers(0, 4), st.just(())),
        st.tuples(st.just("emit"), st.just(0), names.filter(bool)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops=ops)
def test_delivery_matches_a_model_of_prefix_subscriptions(ops):
    bus = EventBus()
    model: dict[int, tuple[str, ...]] = {}
    order: list[int] = []
    calls: list[int] = []
    for op, hid, name in ops:
        if op == "attach":
            if hid in model:
                with pytest.raises(DuplicateHandler):
                    bus.attach(hid, name, lambda *_: None)
            else:
                bus.attach(hid, name, lambda e, m, md, hid=hid: calls.append(hid))
                model[hid] = name
                order.append(hid)
        elif op == "detach":
            assert bus.detach(hid) == (hid in model)
            if hid in model:
                del model[hid]
                order.remove(hid)
        else:
            calls.clear()
            expected = [h for h in order if name[: len(model[h])] == model[h]]
            assert bus.emit(name) == len(expected)
            assert calls == expected
