"""gen_server: start, call, cast, info, timeout and continue actions,
terminate, stop."""

from __future__ import annotations

import gc
import os
import signal

import pytest
from helpers import down_of, exit_of, nothing_matching, recv_tagged, wait_dead
from procs import Echo, FailingInit, Reporter

import otp


def test_start_call_cast(node):
    server = Echo.start_link("initial")
    assert otp.call(server, "state") == "initial"
    assert otp.call(server, {"any": "request"}) == {"any": "request"}
    otp.cast(server, "new state")
    assert otp.call(server, "state") == "new state"
    otp.send(server, "plain")
    assert otp.call(server, "state") == ("info", "plain")
    otp.stop(server)


def test_start_without_link_does_not_link(node):
    server = Echo.start(None)
    otp.exit(server, "kill")
    assert wait_dead(server) in ("killed", "noproc")
    assert otp.is_alive(otp.self())


def test_deferred_reply(node):
    server = Echo.start_link(None)
    assert otp.call(server, "defer") == "deferred"
    otp.stop(server)


def test_call_timeout_and_late_reply_is_dropped(node):
    server = Echo.start_link(None)
    with pytest.raises(otp.CallTimeout) as info:
        otp.call(server, ("sleep", 0.3), timeout=0.05)
    assert isinstance(info.value, otp.Timeout)
    # The reply arrives after the timeout; the next call sees its own answer
    # and the mailbox never holds the stray one.
    assert otp.call(server, "after") == "after"
    assert nothing_matching(lambda m: True, timeout=0)
    otp.stop(server)


def test_call_to_dead_server_raises_noproc(node):
    server = Echo.start(None)
    otp.stop(server)
    with pytest.raises(otp.NoProc):
        otp.call(server, "hello")


def _report_down(server, to):
    ref = otp.monitor(server)
    otp.send(to, ("watching", server))
    otp.send(to, ("down", otp.receive(30, lambda m: isinstance(m, otp.DOWN) and m.ref == ref).reason))


def test_call_to_a_server_someone_saw_die_raises_noproc_though_called_before(node):
    """This process called the server before (its call monitor stays), then
    another process sees it die: a call now finds it gone ('noproc', as a
    fresh OTP monitor would), not CalleeExit with the reason this process
    may not have read yet."""
    me = otp.self()
    for _ in range(20):
        server = Echo.start(None)
        assert otp.call(server, "hello") == "hello"
        otp.spawn(_report_down, server, me)
        recv_tagged("watching")
        os.kill(server.ospid, signal.SIGKILL)
        assert recv_tagged("down") == ("down", "killed")
        with pytest.raises(otp.NoProc):
            otp.call(server, "hello")


def test_call_to_server_that_crashes_mid_call_raises_callee_exit(node):
    otp.trap_exit(True)
    server = Echo.start_link(None)
    with pytest.raises(otp.CalleeExit) as info:
        otp.call(server, "crash", timeout=10)
    assert isinstance(info.value.reason, otp.Crash)
    assert "crash in handle_call" in info.value.reason.message
    exit_of(server)


def test_call_to_server_killed_mid_call_raises_promptly(node):
    server = Echo.start(None)
    me = otp.self()

    def killer():
        otp.receive(match=lambda m: m == "sleeping")
        os.kill(server.ospid, signal.SIGKILL)

    k = otp.spawn(killer)
    # The server sleeps 30 s inside the call; the kill must end the call now.
    with pytest.raises(otp.CalleeExit) as info:
        otp.call(server, ("notify_sleep", k, 30), timeout=20)
    assert info.value.reason == "killed"
    wait_dead(k)
    del me


def test_call_self_is_an_error(node):
    with pytest.raises(otp.CallError) as info:
        otp.call(otp.self(), "x")
    assert info.value.reason == "calling_self"


def test_cast_to_dead_server_does_not_fail(node):
    server = Echo.start(None)
    otp.stop(server)
    otp.cast(server, "anything")


def test_init_exception_raises_start_error_and_does_not_kill_starter(node):
    with pytest.raises(otp.StartError) as info:
        FailingInit.start_link("raise")
    assert isinstance(info.value.reason, otp.Crash)
    assert info.value.reason.type_name == "KeyError"
    assert otp.is_alive(otp.self())
    assert nothing_matching(lambda m: isinstance(m, otp.EXIT))


def test_init_stop_and_ignore(node):
    with pytest.raises(otp.StartError) as info:
        FailingInit.start_link("stop")
    assert info.value.reason == "bad_config"
    assert FailingInit.start_link("ignore") is None
    assert FailingInit.start_link("fine") is not None


def test_start_timeout(node):
    with pytest.raises(otp.StartError) as info:
        FailingInit.start_link("slow", timeout=0.2)
    assert info.value.reason == "timeout"


def test_handle_continue_runs_before_any_message(node):
    me = otp.self()
    server = Reporter.start_link((me, False, otp.Continue("warm-up")))
    otp.send(server, "first")
    assert recv_tagged("init")[0] == "init"
    assert recv_tagged("continue") == ("continue", "warm-up")
    assert recv_tagged("info") == ("info", "first")
    otp.stop(server)


def test_timeout_action_fires_only_without_messages(node):
    me = otp.self()
    server = Reporter.start_link((me, False, None))
    otp.send(server, "set_timeout")
    assert recv_tagged("info") == ("info", "set_timeout")
    assert recv_tagged("info") == ("info", "timeout")
    otp.stop(server)


def test_terminate_on_stop_with_reason(node):
    me = otp.self()
    server = Reporter.start((me, False, None))  # linked, ('shutdown', _) would take us down too
    otp.stop(server, ("shutdown", "bye"))
    assert recv_tagged("terminate") == ("terminate", ("shutdown", "bye"))


def test_terminate_on_stop_return(node):
    me = otp.self()
    otp.trap_exit(True)
    server = Reporter.start_link((me, False, None))
    otp.cast(server, "stop")
    assert recv_tagged("terminate") == ("terminate", ("shutdown", "asked"))
    assert exit_of(server).reason == ("shutdown", "asked")


def test_terminate_on_bad_return(node):
    me = otp.self()
    otp.trap_exit(True)
    server = Reporter.start_link((me, False, None))
    otp.cast(server, "bad")
    reason = recv_tagged("terminate")[1]
    assert reason == ("bad_return_value", "not a valid return")
    assert exit_of(server).reason == reason


def test_terminate_runs_on_parent_exit_when_trapping(node):
    me = otp.self()
    otp.trap_exit(True)  # its 'shutdown' exit comes back to us through the link
    server = Reporter.start_link((me, True, None))
    recv_tagged("init")
    otp.exit(server, "shutdown")  # from the parent (we started it)
    assert recv_tagged("terminate") == ("terminate", "shutdown")


def test_terminate_not_run_when_killed_or_not_trapping(node):
    me = otp.self()
    for trap, reason in ((False, "shutdown"), (True, "kill")):
        server = Reporter.start((me, trap, None))
        recv_tagged("init")
        ref = otp.monitor(server)
        otp.exit(server, reason)
        down_of(ref)
        assert nothing_matching(lambda m: isinstance(m, tuple) and m[0] == "terminate")


def test_exit_signal_from_non_parent_is_info_when_trapping(node):
    me = otp.self()
    server = Reporter.start((me, True, None))
    recv_tagged("init")
    other = otp.spawn(lambda s: otp.exit(s, "hello"), server)
    assert recv_tagged("info") == ("info", otp.EXIT(other, "hello"))
    otp.stop(server)


def test_stop_returns_after_exit_and_reports_other_reasons(node):
    server = Echo.start(None)
    ref = otp.monitor(server)
    otp.stop(server, "normal")
    assert down_of(ref, timeout=0.5).reason == "normal"
    with pytest.raises(otp.NoProc):
        otp.stop(server)


def test_stop_reply_is_delivered(node):
    server = Echo.start(None)
    assert otp.call(server, "stop") == "stopping"
    wait_dead(server)


def test_process_exit_inside_callback_runs_terminate(node):
    otp.trap_exit(True)
    server = Echo.start_link(None)
    with pytest.raises(otp.CalleeExit) as info:
        otp.call(server, ("exit_now", ("shutdown", "x")))
    assert info.value.reason == ("shutdown", "x")


def test_start_requires_a_genserver_subclass(node):
    with pytest.raises(TypeError):
        otp.GenServer.start_link.__func__(int, None)


def test_multi_call_runs_calls_concurrently_and_reports_each_failure(node):
    servers = [Echo.start(None) for _ in range(3)]
    dead = Echo.start(None)
    otp.stop(dead)
    results = otp.multi_call([(s, ("span", 0.3)) for s in servers] + [(dead, "x"), ("nobody", "y")], timeout=5)
    spans = [r[1] for r in results[:3]]
    assert all(r[0] == "ok" for r in results[:3])
    # Concurrent: every server was already busy before the first one finished.
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    assert results[3][0] == "error" and isinstance(results[3][1], otp.NoProc)
    assert results[4][0] == "error" and isinstance(results[4][1], otp.NoProc)
    timed = otp.multi_call([(servers[0], ("sleep", 1.0))], timeout=0.1)
    assert isinstance(timed[0][1], otp.CallTimeout)


class Sleeper(otp.GenServer):
    """Counts the full garbage collections of its process (gc.callbacks)."""

    def init(self, action):
        counts = {"full": 0}

        def count(phase, info):
            if phase == "stop" and info["generation"] == 2:
                counts["full"] += 1

        gc.callbacks.append(count)
        self.counts = counts
        return otp.NoReply(None, action) if action is not None else None

    def handle_call(self, request, from_, state):
        if request == "full_collections":
            return otp.Reply(self.counts["full"], state)
        if request == "hibernate":
            return otp.Reply("sleeping", state, otp.HIBERNATE)
        if request == "infinity":
            return otp.Reply("forever", state, "infinity")
        return otp.Reply(request, state)

    def handle_cast(self, request, state):
        return otp.NoReply(state, "infinity")


def test_hibernate_collects_garbage_and_keeps_serving(node):
    """gen_server's hibernate return: the process shrinks (here: a full
    garbage collection) before it waits, then serves the next message as
    usual."""
    server = Sleeper.start_link(None)
    before = otp.call(server, "full_collections")
    assert otp.call(server, "hibernate") == "sleeping"
    assert otp.call(server, "full_collections") > before
    assert otp.call(server, "still there") == "still there"
    otp.stop(server)


def test_infinity_timeout_action_is_no_timeout(node):
    """A callback returning the timeout infinity (OTP's atom, here the string
    "infinity") waits for the next message without a timeout: the server
    carries on and no 'timeout' message is made up."""
    me = otp.self()
    server = Reporter.start_link((me, False, "infinity"))
    recv_tagged("init")
    sleeper = Sleeper.start_link("infinity")
    assert otp.call(sleeper, "infinity") == "forever"
    otp.cast(sleeper, "again")
    assert otp.call(sleeper, "alive") == "alive"
    otp.send(server, "ping")
    assert recv_tagged("info") == ("info", "ping")
    otp.stop(server)
    otp.stop(sleeper)


def test_bad_timeout_action_runs_terminate(node):
    """A callback returning a timeout that is no timeout is a bad return
    value: the server terminates (terminate runs) with {bad_return_value,
    Result}."""
    me = otp.self()
    otp.trap_exit(True)
    server = ActionTaker.start_link(me)
    otp.send(server, "tomorrow")
    reason = otp.receive(10, lambda m: isinstance(m, tuple) and m[0] == "terminate")[1]
    assert reason == ("bad_return_value", otp.NoReply(me, "tomorrow"))
    assert exit_of(server).reason == reason


class ActionTaker(otp.GenServer):
    """Returns each message it gets as its timeout action."""

    def handle_info(self, msg, parent):
        return otp.NoReply(parent, msg)

    def terminate(self, reason, parent):
        otp.send(parent, ("terminate", reason))


def test_reply_from_a_worker_process(node):
    """gen_server:reply/2 may be called by any process holding From: the
    server hands From to a worker, which answers the caller."""
    server = Delegator.start_link(None)
    assert otp.call(server, 21) == 42
    assert otp.call(server, 5) == 10
    otp.stop(server)


class Delegator(otp.GenServer):
    def handle_call(self, request, from_, state):
        otp.spawn(_double_for, from_, request)
        return otp.NoReply(state)


def _double_for(caller, n) -> None:
    otp.reply(caller, 2 * n)
