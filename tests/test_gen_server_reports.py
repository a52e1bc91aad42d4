"""The crash report of a gen_server and of a gen_statem that terminate with
an unclean reason (OTP's "** Generic server terminating" and "** State
machine terminating" reports): what the loop last saw, and the reason,
which is the crash of ``terminate`` when ``terminate`` itself raises.
Both behaviours end through one function (otp._behaviour), so the report
of each is pinned here, under both start methods."""

from __future__ import annotations

import pytest
from crash_reports import crash_reports
from helpers import down_of

import otp


@pytest.fixture
def node(start_method, node):
    return node


@pytest.fixture
def reports():
    with crash_reports() as handler:
        yield handler


class Fragile(otp.GenServer):
    """Crashes on the call 'crash'; stops normally on 'stop', and then its
    terminate raises if the state says so."""

    def handle_call(self, request, from_, state):
        if request == "crash":
            raise ValueError("crash in handle_call")
        return otp.Stop("normal", state, "stopping")

    def terminate(self, reason, state):
        if state == "fail in terminate":
            raise RuntimeError("crash in terminate")


class Lamp(otp.GenStatem):
    """In 'lit' until the cast 'crash', which raises; 'stop' stops it
    normally, and its terminate raises if the data says so."""

    callback_mode = "handle_event_function"

    def init(self, data):
        return "lit", data

    def handle_event(self, event_type, content, state, data):
        if content == "crash":
            raise ValueError("crash in handle_event")
        return otp.Stop("normal")

    def terminate(self, reason, state, data):
        if data == "fail in terminate":
            raise RuntimeError("crash in terminate")


def test_a_crashed_server_reports_its_last_message_and_reason(node, reports):
    server = Fragile.start(None)
    with pytest.raises(otp.CalleeExit):
        otp.call(server, "crash")
    record = reports.wait_for(lambda r: r.otp_pid == server)
    lines = record.getMessage().split("\n")
    assert lines[0] == f"Fragile {server!r} terminating"
    assert lines[1].startswith("** last message: ('$gen_call', (") and lines[1].endswith("'crash')")
    assert lines[2] == "** reason: Traceback (most recent call last):"
    assert lines[-1] == "ValueError: crash in handle_call"
    assert isinstance(record.otp_reason, otp.Crash) and record.otp_reason.message == "crash in handle_call"


def test_a_server_whose_terminate_raises_exits_with_that_crash(node, reports):
    server = Fragile.start("fail in terminate")
    ref = otp.monitor(server)
    assert otp.call(server, "stop") == "stopping"
    reason = down_of(ref).reason
    assert isinstance(reason, otp.Crash) and reason.message == "crash in terminate"
    record = reports.wait_for(lambda r: r.otp_pid == server)
    assert record.getMessage().endswith("RuntimeError: crash in terminate")
    assert record.otp_reason == reason


def test_a_crashed_machine_reports_its_last_event_state_and_reason(node, reports):
    machine = Lamp.start(None)
    ref = otp.monitor(machine)
    otp.cast(machine, "crash")
    assert down_of(ref).reason.message == "crash in handle_event"
    record = reports.wait_for(lambda r: r.otp_pid == machine)
    lines = record.getMessage().split("\n")
    assert lines[0] == f"Lamp {machine!r} terminating"
    assert lines[1].startswith("** last event: ") and "'crash'" in lines[1] and "cast" in lines[1]
    assert lines[2] == "** state: 'lit'"
    assert lines[3] == "** reason: Traceback (most recent call last):"
    assert lines[-1] == "ValueError: crash in handle_event"


def test_a_machine_whose_terminate_raises_exits_with_that_crash(node, reports):
    machine = Lamp.start("fail in terminate")
    ref = otp.monitor(machine)
    otp.cast(machine, "stop")
    reason = down_of(ref).reason
    assert isinstance(reason, otp.Crash) and reason.message == "crash in terminate"
    record = reports.wait_for(lambda r: r.otp_pid == machine)
    assert record.getMessage().endswith("RuntimeError: crash in terminate")
