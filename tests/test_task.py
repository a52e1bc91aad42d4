"""Elixir's Task without a supervisor: otp.Task.async_, await_, yield_,
yield_many, await_many, shutdown; under both start methods."""

from __future__ import annotations

import os

import pytest
from helpers import down_of, exit_of, recv

import otp

Task = otp.Task


@pytest.fixture
def node(start_method, node):
    return node


def double(x):
    return 2 * x


def fail(x):
    raise ValueError(f"bad {x}")


def when_told(me, tag):
    """Wait for ('go', tag), then answer tag; says ('waiting', tag) first."""
    otp.send(me, ("waiting", tag))
    otp.receive(None, lambda m: m == ("go", tag))
    return tag


def started(task, tag):
    recv(lambda m: m == ("waiting", tag))
    return task


def test_async_and_await(node):
    """Task.async/1 runs fun in a new process linked to and monitored by the
    caller; Task.await/2 returns its result (also as task.await_())."""
    task = Task.async_(double, 21)
    assert isinstance(task, Task) and task.owner == otp.self()
    assert Task.await_(task) == 42
    other = Task.async_(os.getpid)
    assert other.await_() != os.getpid()


def test_await_timeout_leaves_the_task_running(node):
    """Task.await/2 after timeout: Elixir exits the caller; here otp.Timeout
    is raised (as otp.call raises where gen_server:call exits) and, the
    exit caught, the task keeps running and a later await gets the result."""
    me = otp.self()
    task = started(Task.async_(when_told, me, "t"), "t")
    with pytest.raises(otp.Timeout):
        Task.await_(task, timeout=0.05)
    assert otp.is_alive(task.pid)
    otp.send(task.pid, ("go", "t"))
    assert Task.await_(task) == "t"


def test_a_crash_reaches_a_trapping_caller_and_await_raises(node):
    """Task.async/1 links the task: a crash arrives as an EXIT (trapping
    caller) and Task.await/2 exits with the task's reason (TaskExit)."""
    otp.trap_exit(True)
    task = Task.async_(fail, 1)
    assert exit_of(task.pid).reason.message == "bad 1"
    with pytest.raises(otp.TaskExit) as info:
        Task.await_(task)
    assert info.value.reason.message == "bad 1"


def crash_through_the_link():
    Task.async_(fail, 2)
    otp.receive()  # only the link can end this process


def test_a_crash_kills_a_caller_that_does_not_trap(node):
    """Task.async/1: the link takes a caller that does not trap exits down
    with the task's reason."""
    pid, ref = otp.spawn_monitor(crash_through_the_link)
    reason = down_of(ref).reason
    assert isinstance(reason, otp.Crash) and reason.message == "bad 2"


def test_only_the_owner_can_await(node):
    """Task.await/2 and Task.yield/2 in a process that is not the task's
    owner are refused (Elixir raises ArgumentError)."""
    task = Task.async_(double, 1)
    foreign = task._replace(owner=otp.spawn(otp.receive))
    with pytest.raises(otp.CallError) as info:
        Task.await_(foreign)
    assert info.value.reason == "not_owner"
    with pytest.raises(otp.CallError):
        Task.yield_(foreign, 0)
    assert Task.await_(task) == 2


def test_yield_returns_none_then_the_result(node):
    """Task.yield/2: nil while the task runs (it keeps running), then
    {:ok, result}; {:exit, reason} for a task that died."""
    otp.trap_exit(True)
    me = otp.self()
    task = started(Task.async_(when_told, me, "y"), "y")
    assert Task.yield_(task, 0.05) is None
    otp.send(task.pid, ("go", "y"))
    assert task.yield_(5) == ("ok", "y")
    dead = Task.async_(fail, 3)
    status, reason = Task.yield_(dead, 5)
    assert status == "exit" and reason.message == "bad 3"


def test_yield_many_gives_outcomes_in_input_order(node):
    """Task.yield_many/2: a list of {task, result} in the order of the given
    tasks, whatever order they finish in; nil for those still running."""
    otp.trap_exit(True)
    me = otp.self()
    tasks = [started(Task.async_(when_told, me, tag), tag) for tag in ("a", "b", "c")]
    crashed = Task.async_(fail, 4)
    for tag in ("c", "a"):  # finish in another order than asked
        otp.send(tasks["abc".index(tag)].pid, ("go", tag))
    outcomes = Task.yield_many([*tasks, crashed], timeout=2.0)
    assert [task for task, _ in outcomes] == [*tasks, crashed]
    assert [outcome for _, outcome in outcomes][:3] == [("ok", "a"), None, ("ok", "c")]
    assert outcomes[3][1][0] == "exit" and outcomes[3][1][1].message == "bad 4"
    otp.send(tasks[1].pid, ("go", "b"))
    assert Task.yield_many([tasks[1]], timeout=5) == [(tasks[1], ("ok", "b"))]


def test_await_many(node):
    """Task.await_many/2: every result in the order of the tasks; a task
    that dies makes it exit (TaskExit), so does the timeout (otp.Timeout)."""
    otp.trap_exit(True)
    me = otp.self()
    assert Task.await_many([Task.async_(double, i) for i in range(4)]) == [0, 2, 4, 6]
    with pytest.raises(otp.TaskExit) as info:
        Task.await_many([Task.async_(fail, 5), Task.async_(double, 1)])
    assert info.value.reason.message == "bad 5"
    waiting = started(Task.async_(when_told, me, "w"), "w")
    with pytest.raises(otp.Timeout):
        Task.await_many([Task.async_(double, 1), waiting], timeout=0.1)
    Task.shutdown(waiting)


def test_shutdown(node):
    """Task.shutdown/2: nil for a task it stopped (unlinked first: the caller
    gets no exit signal), {:ok, result} if the result had come, {:exit,
    reason} for a task that had died."""
    otp.trap_exit(True)
    me = otp.self()
    running = started(Task.async_(when_told, me, "s"), "s")
    assert running.shutdown() is None
    assert not otp.is_alive(running.pid)
    done = Task.async_(double, 4)
    assert exit_of(done.pid).reason == "normal"  # its result was sent before
    assert Task.shutdown(done) == ("ok", 8)
    dead = Task.async_(fail, 6)
    exit_of(dead.pid)
    status, reason = Task.shutdown(dead)
    assert status == "exit" and reason.message == "bad 6"
