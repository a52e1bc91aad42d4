"""Timeouts (otp._timeouts): None and math.inf wait forever; nan, negative
values, bools and strings raise before anything is sent; a finite timeout
works however large.

"Nothing was sent" is shown by what the receiver saw afterwards: a request
that had gone out would precede the next one (messages from one process
arrive in order); "nothing was spawned" by the root process's list of
top-level processes."""

from __future__ import annotations

import math

import pytest
from helpers import down_of

import otp
from otp import _process
from otp import supervisor as sup_api
from otp._timeouts import MAX_WAIT_MS, check_timeout, wait_ms

BAD = [(math.nan, ValueError), (-1, ValueError), (-math.inf, ValueError), (True, TypeError), ("5", TypeError)]
THIRTY_DAYS = 30 * 86400


class Seen(otp.GenServer):
    """Replies to every call with the list of requests it has seen."""

    def init(self, args):
        return []

    def handle_call(self, request, from_, seen):
        seen = [*seen, request]
        return otp.Reply(seen, seen)


class Patient(otp.GenServer):
    """Serves calls while waiting with the action timeout it was given;
    ``('set', action)`` changes it."""

    def init(self, action):
        return otp.NoReply(action, action)

    def handle_call(self, request, from_, action):
        if isinstance(request, tuple) and request[0] == "set":
            return otp.Reply("set", request[1], request[1])
        return otp.Reply(request, action, action)

    def handle_info(self, msg, action):
        return otp.NoReply(action, action)


def answer(x):
    return x


def wait_for_go(x):
    otp.receive(None, lambda m: m == "go")
    return x


def sender(dest, msg):
    otp.send(dest, msg)


def spawned_count() -> int:
    return len(_process.current().spawned)


# ------------------------------------------------------------- the helper


def test_check_timeout_meanings():
    assert check_timeout(None) is None and check_timeout(math.inf) is None
    assert check_timeout(0) == 0.0 and check_timeout(2.5) == 2.5
    assert check_timeout(10**400) is None  # finite, beyond any float: forever in practice
    for bad, error in BAD:
        with pytest.raises(error):
            check_timeout(bad)


def test_wait_ms_slices_every_wait():
    assert wait_ms(None) == -1 and wait_ms(0) == 0 and wait_ms(-1) == 0 and wait_ms(0.0001) == 1
    assert wait_ms(THIRTY_DAYS) == MAX_WAIT_MS
    assert wait_ms(math.inf) == MAX_WAIT_MS


# ---------------------------------------------------------------- receive


@pytest.mark.parametrize("bad,error", BAD)
def test_receive_rejects_a_bad_timeout_and_keeps_the_mailbox(node, bad, error):
    otp.send(otp.self(), "kept")
    with pytest.raises(error):
        otp.receive(bad)
    with pytest.raises(error):
        otp.receive(bad, lambda m: m == "kept")
    assert otp.receive(0) == "kept"


def test_receive_inf_waits_for_another_process(node):
    otp.spawn(sender, otp.self(), ("from", "other"))
    assert otp.receive(math.inf, lambda m: isinstance(m, tuple) and m[0] == "from") == ("from", "other")


def test_receive_thirty_days_waits_for_another_process(node):
    otp.spawn(sender, otp.self(), ("from", "far"))
    assert otp.receive(THIRTY_DAYS, lambda m: isinstance(m, tuple) and m[0] == "from") == ("from", "far")


# ------------------------------------------------------------- gen_server


@pytest.mark.parametrize("bad,error", BAD)
def test_call_multi_call_stop_reject_a_bad_timeout_before_sending(node, bad, error):
    server = Seen.start_link()
    with pytest.raises(error):
        otp.call(server, "bad", timeout=bad)
    with pytest.raises(error):
        otp.multi_call([(server, "bad")], timeout=bad)
    with pytest.raises(error):
        otp.stop(server, timeout=bad)
    assert otp.call(server, "good") == ["good"]  # it saw nothing else, and lives
    otp.stop(server)


def test_call_multi_call_stop_with_inf_and_thirty_days(node):
    server = Seen.start_link()
    assert otp.call(server, "a", timeout=math.inf) == ["a"]
    assert otp.call(server, "b", timeout=THIRTY_DAYS) == ["a", "b"]
    assert otp.multi_call([(server, "c")], timeout=math.inf) == [("ok", ["a", "b", "c"])]
    otp.stop(server, timeout=math.inf)


@pytest.mark.parametrize("bad,error", BAD)
def test_start_rejects_a_bad_timeout_before_spawning(node, bad, error):
    before = spawned_count()
    for start in (Seen.start, Seen.start_link, otp.Supervisor.start, otp.Supervisor.start_link):
        args = ([],) if start.__self__ is otp.Supervisor else ()
        with pytest.raises(error):
            start(*args, timeout=bad)
    for start in (otp.DynamicSupervisor.start, otp.DynamicSupervisor.start_link, otp.TaskSupervisor.start_link):
        with pytest.raises(error):
            start(timeout=bad)
    assert spawned_count() == before


def test_start_with_inf(node):
    otp.trap_exit(True)
    assert otp.call(Seen.start_link(timeout=math.inf), "x") == ["x"]
    assert sup_api.which_children(otp.Supervisor.start_link([], timeout=math.inf)) == []
    assert sup_api.which_children(otp.TaskSupervisor.start_link(timeout=THIRTY_DAYS)) == []


def test_action_timeout_inf_waits_forever(node):
    server = Patient.start(math.inf)
    ref = otp.monitor(server)
    otp.send(server, "info")
    assert otp.call(server, ("set", THIRTY_DAYS)) == "set"
    otp.send(server, "info")
    assert otp.call(server, "still here") == "still here"
    otp.stop(server)
    assert down_of(ref).reason == "normal"


@pytest.mark.parametrize("bad,error", BAD)
def test_bad_action_timeout_is_a_bad_return_value(node, bad, error):
    with pytest.raises(otp.StartError) as info:
        Patient.start(bad)
    assert info.value.reason[0] == "bad_return_value"
    server = Patient.start(None)
    ref = otp.monitor(server)
    with pytest.raises(otp.CalleeExit) as info:
        otp.call(server, ("set", bad))
    assert info.value.reason[0] == "bad_return_value"
    assert down_of(ref).reason[0] == "bad_return_value"


# ------------------------------------------------------------- supervisors


def worker_spec(child_id, **kw):
    return otp.child_spec(child_id, start=(Seen.start_link, (None,)), **kw)


@pytest.mark.parametrize("bad,error", BAD)
def test_supervisor_calls_reject_a_bad_timeout_before_sending(node, bad, error):
    otp.trap_exit(True)
    sup = otp.Supervisor.start_link([worker_spec("a")])
    a = sup_api.which_children(sup)[0].pid
    calls = [
        lambda: sup_api.start_child(sup, worker_spec("b"), timeout=bad),
        lambda: sup_api.terminate_child(sup, "a", timeout=bad),
        lambda: sup_api.restart_child(sup, "a", timeout=bad),
        lambda: sup_api.delete_child(sup, "a", timeout=bad),
        lambda: sup_api.which_children(sup, timeout=bad),
        lambda: sup_api.count_children(sup, timeout=bad),
        lambda: sup_api.get_childspec(sup, "a", timeout=bad),
        lambda: sup_api.subscribe(sup, timeout=bad),
    ]
    for c in calls:
        with pytest.raises(error):
            c()
    assert sup_api.which_children(sup) == [otp.ChildInfo("a", a, "worker")]


def test_supervisor_calls_with_inf(node):
    otp.trap_exit(True)
    sup = otp.Supervisor.start_link([])
    b = sup_api.start_child(sup, worker_spec("b"), timeout=math.inf)
    assert sup_api.which_children(sup, timeout=math.inf) == [otp.ChildInfo("b", b, "worker")]
    sup_api.terminate_child(sup, "b", timeout=THIRTY_DAYS)
    assert sup_api.count_children(sup, timeout=math.inf)["active"] == 0


def test_shutdown_inf_is_infinity():
    assert worker_spec("w", shutdown=math.inf).shutdown == "infinity"
    for bad in (math.nan, -1, -math.inf):
        with pytest.raises(otp.SupervisorError) as info:
            worker_spec("w", shutdown=bad)
        assert info.value.reason[0] == "invalid_shutdown"


def test_child_with_shutdown_inf_can_be_terminated(node):
    otp.trap_exit(True)
    sup = otp.Supervisor.start_link([worker_spec("w", shutdown=math.inf)])
    w = sup_api.which_children(sup)[0].pid
    ref = otp.monitor(w)
    sup_api.terminate_child(sup, "w")
    assert down_of(ref).reason == "shutdown"
    assert sup_api.which_children(sup) == [otp.ChildInfo("w", None, "worker")]


def test_period_nan_is_invalid(node):
    with pytest.raises(otp.StartError) as info:
        otp.Supervisor.start([], period=math.nan)
    assert info.value.reason == ("start_spec", ("invalid_period", info.value.reason[1][1]))
    assert math.isnan(info.value.reason[1][1])


# ------------------------------------------------------------------ tasks


@pytest.fixture
def tasks(node):
    otp.trap_exit(True)
    return otp.TaskSupervisor.start_link()


@pytest.mark.parametrize("bad,error", BAD)
def test_task_calls_reject_a_bad_timeout(tasks, bad, error):
    TS = otp.TaskSupervisor
    task = TS.async_nolink(tasks, wait_for_go, 7)
    with pytest.raises(error):
        TS.await_(task, bad)
    with pytest.raises(error):
        TS.yield_(task, bad)
    with pytest.raises(error):
        TS.shutdown_task(task, bad)
    before = spawned_count()
    with pytest.raises(error):
        TS.async_stream(tasks, [1], answer, timeout=bad)
    assert sup_api.count_children(tasks)["active"] == 1 and spawned_count() == before
    otp.send(task.pid, "go")
    assert TS.await_(task, math.inf) == 7


def test_task_calls_with_inf(tasks):
    TS = otp.TaskSupervisor
    assert TS.await_(TS.async_(tasks, answer, 1), math.inf) == 1
    assert TS.yield_(TS.async_(tasks, answer, 2), math.inf) == ("ok", 2)
    assert TS.await_(TS.async_(tasks, answer, 3, shutdown=math.inf), THIRTY_DAYS) == 3
    assert list(TS.async_stream(tasks, [4, 5], answer, timeout=math.inf)) == [("ok", 4), ("ok", 5)]
    task = TS.async_nolink(tasks, wait_for_go, 6)
    assert TS.shutdown_task(task, math.inf) is None
