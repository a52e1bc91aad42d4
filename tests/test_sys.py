"""otp.sys: OTP's sys module, served by the gen_server loop as system
messages (get_state, replace_state, get_status, suspend/resume,
statistics, trace)."""

from __future__ import annotations

import logging
import threading

import pytest

import otp
import otp.sys


class Journal(otp.GenServer):
    """Keeps the list of what it was told, in order."""

    def init(self, entries):
        return list(entries)

    def handle_call(self, request, from_, entries):
        if request == "entries":
            return otp.Reply(entries, entries)
        return otp.Reply(("noted", request), [*entries, request])

    def handle_cast(self, request, entries):
        return otp.NoReply([*entries, request])


class Tally(otp.Service):
    def init(self, start):
        self.total = start

    @otp.operation
    def add(self, n):
        self.total += n
        return self.total


def _boom(state):
    raise KeyError("not in this state")


def _double_total(tally):
    tally.total *= 2
    return tally


def test_get_state_and_replace_state(node):
    """sys:get_state/1 returns the gen_server's state; sys:replace_state/2
    runs the function in the server and returns the new state, which the
    server keeps."""
    server = Journal.start_link(["a"])
    otp.cast(server, "b")
    assert otp.sys.get_state(server) == ["a", "b"]
    assert otp.sys.replace_state(server, lambda entries: entries[::-1]) == ["b", "a"]
    assert otp.call(server, "entries") == ["b", "a"]
    otp.stop(server)


def test_replace_state_with_a_failing_function_keeps_the_state(node):
    """sys:replace_state/2: a StateFun that raises leaves the state as it
    was and the caller gets {callback_failed, ...} (here CallbackFailed,
    with the exception's Crash); the server carries on."""
    server = Journal.start_link(["kept"])
    with pytest.raises(otp.sys.CallbackFailed) as info:
        otp.sys.replace_state(server, _boom)
    assert info.value.reason.type_name == "KeyError"
    assert isinstance(info.value, otp.OTPError)
    assert otp.sys.get_state(server) == ["kept"]
    assert otp.call(server, "entries") == ["kept"]
    otp.stop(server)


def test_a_service_state_is_its_instance(node):
    """sys:get_state/1 and sys:replace_state/2 on an otp.Service: the state
    is the instance (its attributes)."""
    pid = Tally.start_link(5)
    otp.ask(pid, "add", 2)
    state = otp.sys.get_state(pid)
    assert type(state) is Tally and state.total == 7
    assert otp.sys.replace_state(pid, _double_total).total == 14
    assert otp.ask(pid, "add", 1) == 15
    with pytest.raises(otp.sys.CallbackFailed):
        otp.sys.replace_state(pid, lambda tally: "not a Tally")
    assert otp.ask(pid, "add", 0) == 15
    otp.stop(pid)


def test_get_status_fields(node):
    """sys:get_status/1: {status, Pid, {module, Mod}, [PDict, SysState,
    Parent, Debug, Misc]}, here a SysStatus record with the gen_server's own
    fields (module, name, state) and the queue length."""
    me = otp.self()
    server = Journal.start_link(["x"], name="journal-status")
    status = otp.sys.get_status("journal-status")
    assert status.pid == server
    assert status.behaviour == "gen_server"
    assert status.status is otp.sys.SysState.RUNNING
    assert status.parent == me
    assert status.debug == otp.sys.DebugFlags(trace=False, statistics=False)
    assert status.behaviour_status == {"module": f"{__name__}.Journal", "name": "journal-status", "state": ["x"]}
    assert status.message_queue_len == 0
    otp.sys.statistics(server, True)
    otp.sys.trace(server, True)
    assert otp.sys.get_status(server).debug == otp.sys.DebugFlags(trace=True, statistics=True)
    otp.stop(server)


def test_suspended_server_queues_calls_answers_system_messages_and_resumes_in_order(node):
    """sys:suspend/1 and sys:resume/1: a suspended process answers only
    system messages; calls wait (and time out as usual), and after resume
    everything queued is handled in the order it came."""
    server = Journal.start_link([])
    otp.sys.suspend(server)
    otp.cast(server, 1)
    otp.cast(server, 2)
    with pytest.raises(otp.CallTimeout):
        otp.call(server, 3, timeout=0.2)
    pending = otp.send_request(server, "entries")
    status = otp.sys.get_status(server)
    assert status.status is otp.sys.SysState.SUSPENDED
    assert status.message_queue_len == 4  # the casts, the call that timed out, the request
    assert otp.sys.get_state(server) == []
    otp.sys.resume(server)
    assert otp.receive_response(pending) == [1, 2, 3]
    assert otp.sys.get_status(server).status is otp.sys.SysState.RUNNING
    otp.stop(server)


def test_suspended_server_still_terminates_on_its_parents_exit(node):
    """sys's suspend loop: a suspended process that traps exits still
    terminates when its parent exits (handle_system_msg's parent EXIT)."""
    otp.trap_exit(True)
    server = TrappingJournal.start_link([])
    otp.sys.suspend(server)
    ref = otp.monitor(server)
    otp.exit(server, "shutdown")  # from its parent: us
    assert otp.receive(10, lambda m: isinstance(m, otp.DOWN) and m.ref == ref).reason == "shutdown"
    assert otp.receive(10, lambda m: isinstance(m, otp.EXIT) and m.pid == server).reason == "shutdown"


class TrappingJournal(Journal):
    def init(self, entries):
        otp.trap_exit(True)
        return list(entries)


def test_statistics(node):
    """sys:statistics/2: true starts collecting, get returns start time,
    current time, the work done (here: events handled) and the messages in
    and out counted by the loop, false stops (get then says no_statistics,
    here None)."""
    server = Journal.start_link([])
    assert otp.sys.statistics(server, "get") is None
    otp.sys.statistics(server, True)
    otp.call(server, "a")
    otp.cast(server, "b")
    otp.call(server, "c")
    stats = otp.sys.statistics(server, "get")
    assert stats is not None
    assert (stats.messages_in, stats.messages_out) == (3, 2)
    assert stats.events == 6  # each message in, and each reply or new state
    assert stats.start_time <= stats.current_time
    otp.sys.statistics(server, False)
    assert otp.sys.statistics(server, "get") is None
    with pytest.raises(ValueError):
        otp.sys.statistics(server, "sometimes")
    otp.stop(server)


def test_trace_logs_each_event_in_sys_words(caplog):
    """sys:trace/2: each event is printed as '*DBG* Name got call Req from
    Pid', '... sent Reply to Pid, new state S', '... got cast C', '... new
    state S'; here logged at INFO on the otp.sys logger (the node forwards
    every process's records to the root, whose logging caplog is)."""
    caplog.set_level(logging.INFO, logger="otp.sys")  # before the node: its processes take the levels at start
    with otp.Node():
        me = otp.self()
        server = Journal.start_link([], name="traced")
        otp.call(server, "untraced")
        otp.sys.trace(server, True)
        otp.call(server, "hello")
        otp.cast(server, "c")
        otp.sys.trace(server, False)
        otp.call(server, "after")
        otp.stop(server)
    lines = [r.getMessage() for r in caplog.records if r.name == "otp.sys"]
    assert lines == [
        f"*DBG* 'traced' got call 'hello' from {me!r}",
        f"*DBG* 'traced' sent ('noted', 'hello') to {me!r}, new state ['untraced', 'hello']",
        "*DBG* 'traced' got cast 'c'",
        "*DBG* 'traced' new state ['untraced', 'hello', 'c']",
    ]
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "otp.sys")


def test_system_calls_fail_as_calls_do(node):
    """sys's requests are calls: to a process that does not exist they
    raise noproc, to one that never answers they time out."""
    server = Journal.start([])
    otp.stop(server)
    with pytest.raises(otp.NoProc):
        otp.sys.get_state(server)
    plain = otp.spawn(_wait_for_stop)
    with pytest.raises(otp.CallTimeout):
        otp.sys.get_state(plain, timeout=0.1)
    otp.send(plain, "stop")


def _wait_for_stop() -> None:
    """A process that is no behaviour: it leaves system messages queued."""
    otp.receive(None, lambda m: m == "stop")


class Locked(otp.GenServer):
    def init(self, _):
        return {"lock": threading.Lock()}

    def handle_call(self, request, from_, state):
        return otp.Reply(request, state)


def test_a_state_that_cannot_travel_is_refused_not_fatal(node):
    """sys:get_state/1 copies the state to the caller; one that cannot be
    serialised raises EncodeError in the caller and the server carries on
    (in Erlang every term can be copied: no counterpart)."""
    server = Locked.start_link(None)
    with pytest.raises(otp.EncodeError):
        otp.sys.get_state(server)
    assert otp.call(server, "alive") == "alive"
    otp.stop(server)
