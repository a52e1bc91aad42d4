"""TaskSupervisor: async/await, nolink, yield, async_stream, shutdown."""

from __future__ import annotations

import time

import pytest
from helpers import exit_of, recv

import otp

TS = otp.TaskSupervisor


def double(x):
    return 2 * x


def fail(x):
    raise ValueError(f"bad {x}")


def slow(seconds):
    time.sleep(seconds)  # sleep-ok: a slow task is the subject
    return seconds


@pytest.fixture
def tasks(node):
    otp.trap_exit(True)
    return TS.start_link()


def test_async_await(tasks):
    task = TS.async_(tasks, double, 21)
    assert isinstance(task, otp.Task) and task.owner == otp.self()
    assert TS.await_(task) == 42


def test_tasks_are_separate_os_processes(tasks):
    import os

    assert TS.await_(TS.async_(tasks, os.getpid)) != os.getpid()


def test_await_of_a_task_that_died_raises_with_its_reason(tasks):
    task = TS.async_nolink(tasks, fail, 1)
    with pytest.raises(otp.TaskExit) as info:
        TS.await_(task)
    assert isinstance(info.value.reason, otp.Crash) and info.value.reason.message == "bad 1"


def test_async_links_the_caller(tasks):
    task = TS.async_(tasks, fail, 2)
    assert exit_of(task.pid).reason.message == "bad 2"  # we trap, so it is a message


def test_await_timeout_and_yield(tasks):
    task = TS.async_nolink(tasks, slow, 0.5)
    with pytest.raises(otp.Timeout):
        TS.await_(task, timeout=0.01)
    assert TS.yield_(task, timeout=0.01) is None
    assert TS.yield_(task, timeout=5) == ("ok", 0.5)


def test_yield_of_dead_task(tasks):
    task = TS.async_nolink(tasks, fail, 3)
    status, reason = TS.yield_(task, timeout=5)
    assert status == "exit" and reason.message == "bad 3"


def test_shutdown_task(tasks):
    task = TS.async_nolink(tasks, slow, 30)
    assert TS.shutdown_task(task) is None
    assert not otp.is_alive(task.pid)


def test_tasks_are_temporary_children(tasks):
    otp.supervisor.subscribe(tasks)
    task = TS.async_nolink(tasks, fail, 4)
    with pytest.raises(otp.TaskExit):
        TS.await_(task)
    # Our DOWN and the supervisor's EXIT are two signals to two processes,
    # in no set order: the supervisor may not have seen the exit yet.
    recv(lambda m: type(m) is tuple and m[:3] == ("$supervisor", tasks, "exited") and m[4] == task.pid)
    assert otp.supervisor.count_children(tasks)["active"] == 0


def test_async_stream_ordered_with_concurrency(tasks):
    results = list(TS.async_stream(tasks, range(10), double, max_concurrency=3))
    assert results == [("ok", 2 * i) for i in range(10)]


def test_async_stream_unordered_reports_exits(tasks):
    def maybe_fail(x):
        if x == 3:
            raise RuntimeError("three")
        return x

    results = list(TS.async_stream(tasks, range(6), maybe_fail, ordered=False, max_concurrency=2))
    oks = sorted(r[1] for r in results if r[0] == "ok")
    exits = [r for r in results if r[0] == "exit"]
    assert oks == [0, 1, 2, 4, 5] and len(exits) == 1 and exits[0][1].message == "three"


def test_async_stream_timeouts(tasks):
    with pytest.raises(otp.Timeout):
        list(TS.async_stream(tasks, [0.0, 30.0], slow, timeout=3))
    results = list(TS.async_stream(tasks, [0.0, 30.0], slow, timeout=3, on_timeout="kill_task"))
    assert results == [("ok", 0.0), ("exit", "timeout")]


def test_max_children(node):
    otp.trap_exit(True)
    sup = TS.start_link(max_children=1)
    first = TS.async_nolink(sup, slow, 30)
    with pytest.raises(otp.SupervisorError) as info:
        TS.async_nolink(sup, double, 1)
    assert info.value.reason == "max_children"
    TS.shutdown_task(first)
