"""Tasks: one function run in its own OS process (Elixir's Task and
Task.Supervisor).

``Task.async_(fn, *args)`` spawns the task from the caller, linked to it and
monitored by it (Elixir's ``Task.async``).  Under a :class:`TaskSupervisor`
every task is instead a temporary child of the supervisor (never
restarted): ``async_`` links it to the caller, ``async_nolink`` only
monitors it.  Either way a crash in a linked task takes a non-trapping
caller down, as in Elixir, and ``await_`` gets the result or raises
:class:`TaskExit` with the task's exit reason.

Where Elixir's ``await`` exits the caller (the task died, or the timeout
passed), ``await_`` raises, as :func:`otp.call` raises where
``gen_server:call`` exits: :class:`TaskExit`, or :class:`otp.Timeout`.
Uncaught, the exception ends the caller and the link then ends the task,
as in Elixir; caught, the task keeps running, as when an Elixir caller
catches the exit (:meth:`Task.shutdown` stops it).

The task waits for a go message from its owner before it runs, so the
owner's monitor is in place first: a result is always received before the
task's DOWN.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from . import _api, _process
from ._child_spec import Shutdown, child_spec
from ._errors import CallError, Timeout
from ._gen_server import ServerRef
from ._pid import Pid, Ref
from ._reasons import DOWN
from ._supervisor import DynamicSupervisor, start_child
from ._timeouts import check_timeout

__all__ = [
    "Task",
    "TaskSupervisor",
    "TaskExit",
    "async_",
    "async_nolink",
    "await_",
    "yield_",
    "shutdown_task",
    "async_stream",
    "yield_many",
    "await_many",
]

#: Elixir's default await timeout (5000 ms).
DEFAULT_TIMEOUT = 5.0


class TaskExit(CallError):
    """The task exited before producing its result; ``reason`` says why."""


class Task(NamedTuple):
    """A running task: its pid, the reference its result is tagged with
    (also the owner's monitor), and the owner.

    The class also holds Elixir's ``Task`` functions for tasks without a
    supervisor: ``Task.async_(fn, *args)``, ``Task.await_(task)`` (or
    ``task.await_()``), ``yield_``, ``yield_many``, ``await_many``,
    ``shutdown``; they work on supervised tasks too."""

    pid: Pid
    ref: Ref
    owner: Pid

    @staticmethod
    def async_(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Task:
        """Run ``fn(*args, **kwargs)`` in a new process linked to the caller
        and monitored by it (Elixir's ``Task.async``); its result goes to
        the caller only, who collects it with :meth:`await_` or
        :meth:`yield_`."""
        return _async_linked(fn, args, kwargs)

    def await_(self, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        """The task's result (Elixir's ``Task.await``); see :func:`await_`."""
        return await_(self, timeout)

    def yield_(self, timeout: float | None = DEFAULT_TIMEOUT) -> tuple[str, Any] | None:
        """``('ok', result)``, ``('exit', reason)`` or None (Elixir's
        ``Task.yield``); see :func:`yield_`."""
        return yield_(self, timeout)

    def shutdown(self, timeout: float | None = DEFAULT_TIMEOUT) -> tuple[str, Any] | None:
        """Stop the task (Elixir's ``Task.shutdown``); see :func:`shutdown_task`."""
        return shutdown_task(self, timeout)

    @staticmethod
    def yield_many(
        tasks: Iterable[Task], timeout: float | None = DEFAULT_TIMEOUT
    ) -> list[tuple[Task, tuple[str, Any] | None]]:
        """Elixir's ``Task.yield_many``; see :func:`yield_many`."""
        return yield_many(tasks, timeout)

    @staticmethod
    def await_many(tasks: Iterable[Task], timeout: float | None = DEFAULT_TIMEOUT) -> list[Any]:
        """Elixir's ``Task.await_many``; see :func:`await_many`."""
        return await_many(tasks, timeout)


class _Go(NamedTuple):
    """The owner's go to its task, once it monitors the task with ``ref``."""

    ref: Ref


def _task_main(owner: Pid, link: bool, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> None:
    owner_ref = _api.monitor(owner)
    msg = _api.receive(None, lambda m: type(m) is _Go or (isinstance(m, DOWN) and m.ref == owner_ref))
    if isinstance(msg, DOWN):
        return  # the owner went away before it could tell us to start
    _api.demonitor(owner_ref, flush=True)
    if link:
        _api.link(owner)
    result = fn(*args, **kwargs)
    # A plain tuple: owners that wait for several tasks (mabeam's servers)
    # match it in their handle_info.
    _api.send(owner, ("$task", msg.ref, result))


def _async_linked(fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Task:
    p = _process.current()
    owner = p.pid
    # Spawned linked and monitored at once: the go message then only carries
    # the ref the result is tagged with, as for a supervised task.
    pid, ref = p.spawn(
        _task_main,
        (owner, True, fn, args, kwargs),
        {},
        link=True,
        monitor=True,
        module=getattr(fn, "__module__", None),
    )
    p.send(pid, _Go(ref))
    return Task(pid, ref, owner)


def _spawn_task(owner: Pid, link: bool, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Pid:
    # The task runs fn: the zygote should preload fn's module, not this one.
    return _process.current().spawn(
        _task_main, (owner, link, fn, args, kwargs), {}, link=True, module=getattr(fn, "__module__", None)
    )


def _start(
    sup: ServerRef, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any], link: bool, shutdown: Shutdown
) -> Task:
    owner = _api.self_()
    spec = child_spec(
        "task",
        start=(_spawn_task, (owner, link, fn, args, kwargs)),
        restart="temporary",
        shutdown=shutdown,
    )
    pid = start_child(sup, spec)
    assert pid is not None  # _spawn_task returns a pid: a task is never ignored
    ref = _api.monitor(pid)
    _api.send(pid, _Go(ref))
    return Task(pid, ref, owner)


def async_(sup: ServerRef, fn: Callable[..., Any], *args: Any, shutdown: Shutdown = 5.0, **kwargs: Any) -> Task:
    """Run ``fn(*args, **kwargs)`` in a task linked to the caller."""
    return _start(sup, fn, args, kwargs, True, shutdown)


def async_nolink(sup: ServerRef, fn: Callable[..., Any], *args: Any, shutdown: Shutdown = 5.0, **kwargs: Any) -> Task:
    """Run ``fn`` in a task the caller only monitors."""
    return _start(sup, fn, args, kwargs, False, shutdown)


def _answer(task: Task) -> Callable[[object], bool]:
    ref = task.ref
    return lambda m: (
        (type(m) is tuple and len(m) == 3 and m[0] == "$task" and m[1] == ref) or (isinstance(m, DOWN) and m.ref == ref)
    )


def _answer_of_any(refs: dict[Ref, int]) -> Callable[[object], bool]:
    return lambda m: (
        (type(m) is tuple and len(m) == 3 and m[0] == "$task" and m[1] in refs)
        or (isinstance(m, DOWN) and m.ref in refs)
    )


def _check_owner(task: Task) -> None:
    # Only the owner receives the result: another process would wait in vain.
    if task.owner != _api.self_():
        raise CallError("not_owner", task.pid)


def _outcome(msg: Any) -> tuple[str, Any]:
    """``('ok', result)`` for a result message (its monitor dropped),
    ``('exit', reason)`` for the task's DOWN."""
    if isinstance(msg, DOWN):
        return ("exit", msg.reason)
    _api.demonitor(msg[1], flush=True)
    return ("ok", msg[2])


def await_(task: Task, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
    """The task's result.  Raises :class:`TaskExit` if it exited first and
    :class:`otp.Timeout` after ``timeout`` (the task keeps running; see
    :func:`shutdown_task`); ``CallError('not_owner')`` in a process other
    than the task's owner."""
    timeout = check_timeout(timeout)
    _check_owner(task)
    msg = _api.receive(timeout, _answer(task))
    if isinstance(msg, DOWN):
        raise TaskExit(msg.reason, task.pid)
    _api.demonitor(task.ref, flush=True)
    return msg[2]


def yield_(task: Task, timeout: float | None = DEFAULT_TIMEOUT) -> tuple[str, Any] | None:
    """``('ok', result)``, ``('exit', reason)``, or None if nothing came
    within ``timeout`` (the task may still answer a later yield);
    ``CallError('not_owner')`` in a process other than the task's owner."""
    timeout = check_timeout(timeout)
    _check_owner(task)
    try:
        msg = _api.receive(timeout, _answer(task))
    except Timeout:
        return None
    return _outcome(msg)


def _arrivals(tasks: list[Task], timeout: float | None) -> Iterator[tuple[int, Any]]:
    """``(index in tasks, result message or DOWN)`` as they arrive, until
    every task answered or ``timeout`` (in all) passed."""
    for task in tasks:
        _check_owner(task)
    waiting = {task.ref: i for i, task in enumerate(tasks)}
    deadline = None if timeout is None else time.monotonic() + timeout
    while waiting:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            msg = _api.receive(wait, _answer_of_any(waiting))
        except Timeout:
            return
        yield waiting.pop(msg.ref if isinstance(msg, DOWN) else msg[1]), msg


def yield_many(
    tasks: Iterable[Task], timeout: float | None = DEFAULT_TIMEOUT
) -> list[tuple[Task, tuple[str, Any] | None]]:
    """Wait up to ``timeout`` (in all) for several tasks: a list, in the
    order of ``tasks``, of ``(task, outcome)`` where outcome is
    ``('ok', result)``, ``('exit', reason)``, or None for a task that has
    not answered yet (it keeps running and may answer a later yield), as
    Elixir's ``Task.yield_many``.  Returns as soon as every task answered."""
    timeout = check_timeout(timeout)
    tasks = list(tasks)
    outcomes = {i: _outcome(msg) for i, msg in _arrivals(tasks, timeout)}
    return [(task, outcomes.get(i)) for i, task in enumerate(tasks)]


def await_many(tasks: Iterable[Task], timeout: float | None = DEFAULT_TIMEOUT) -> list[Any]:
    """The results of several tasks, in the order of ``tasks`` (Elixir's
    ``Task.await_many``): waits up to ``timeout`` in all.  Raises
    :class:`TaskExit` as soon as one task exits without a result, and
    :class:`otp.Timeout` if they have not all answered in time (the others
    keep running, as after :func:`await_`)."""
    timeout = check_timeout(timeout)
    tasks = list(tasks)
    results: dict[int, Any] = {}
    for i, msg in _arrivals(tasks, timeout):
        status, value = _outcome(msg)
        if status == "exit":
            raise TaskExit(value, tasks[i].pid)
        results[i] = value
    if len(results) < len(tasks):
        raise Timeout(f"{len(tasks) - len(results)} of {len(tasks)} tasks did not answer in time")
    return [results[i] for i in range(len(tasks))]


def shutdown_task(task: Task, timeout: float | None = 5.0) -> tuple[str, Any] | None:
    """Stop a task (Elixir's ``Task.shutdown``): ``('ok', result)`` if it
    finished meanwhile, ``('exit', reason)`` if it had exited on its own
    with ``reason``, else None.  The task is unlinked from the caller, then
    killed if it has not exited ``timeout`` seconds after ``'shutdown'``
    (None or ``math.inf``: wait as long as it takes)."""
    timeout = check_timeout(timeout)
    _api.unlink(task.pid)
    _api.exit(task.pid, "shutdown")
    try:
        msg = _api.receive(timeout, _answer(task))
    except Timeout:
        _api.exit(task.pid, "kill")
        msg = _api.receive(None, lambda m: isinstance(m, DOWN) and m.ref == task.ref)
    if isinstance(msg, DOWN):
        # 'shutdown' and 'killed' are this call's doing: no outcome to report.
        return None if msg.reason in ("shutdown", "killed") else ("exit", msg.reason)
    _api.demonitor(task.ref, flush=True)
    return ("ok", msg[2])


def async_stream(
    sup: ServerRef,
    items: Iterable[Any],
    fn: Callable[[Any], Any],
    *,
    max_concurrency: int | None = None,
    ordered: bool = True,
    timeout: float | None = DEFAULT_TIMEOUT,
    on_timeout: str = "exit",
) -> Iterator[tuple[str, Any]]:
    """Run ``fn(item)`` for every item in at most ``max_concurrency`` tasks
    (default: the number of CPUs), yielding ``('ok', result)`` or
    ``('exit', reason)`` per item, in input order if ``ordered``.  A task
    exceeding ``timeout`` raises :class:`otp.Timeout` (``on_timeout='exit'``)
    or is killed and yields ``('exit', 'timeout')`` (``'kill_task'``)."""
    if on_timeout not in ("exit", "kill_task"):
        raise ValueError(f"on_timeout must be 'exit' or 'kill_task', not {on_timeout!r}")
    # Checked now, not at the first next(): a bad call fails where it is made.
    timeout = check_timeout(timeout)
    return _stream(sup, items, fn, max_concurrency or os.cpu_count() or 2, ordered, timeout, on_timeout)


def _stream(
    sup: ServerRef,
    items: Iterable[Any],
    fn: Callable[[Any], Any],
    limit: int,
    ordered: bool,
    timeout: float | None,
    on_timeout: str,
) -> Iterator[tuple[str, Any]]:
    source = iter(items)
    running: dict[Ref, tuple[int, Task, float]] = {}
    done: dict[int, tuple[str, Any]] = {}
    next_index, next_out, exhausted = 0, 0, False
    try:
        while True:
            while not exhausted and len(running) < limit:
                try:
                    item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                task = async_nolink(sup, fn, item)
                running[task.ref] = (next_index, task, time.monotonic())
                next_index += 1
            if ordered:
                while next_out in done:
                    yield done.pop(next_out)
                    next_out += 1
            if not running:
                if exhausted and not done:
                    return
                if exhausted:
                    continue
            wait = None
            if timeout is not None and running:
                oldest = min(started for _, _, started in running.values())
                wait = max(0.0, oldest + timeout - time.monotonic())
            try:
                msg = _api.receive(
                    wait,
                    lambda m: (
                        (type(m) is tuple and len(m) == 3 and m[0] == "$task" and m[1] in running)
                        or (isinstance(m, DOWN) and m.ref in running)
                    ),
                )
            except Timeout:
                if timeout is None:  # no wait was bounded: cannot time out
                    raise
                now = time.monotonic()
                for ref, (index, task, started) in list(running.items()):
                    if now - started >= timeout:
                        if on_timeout == "exit":
                            raise
                        shutdown_task(task, 0)
                        del running[ref]
                        done[index] = ("exit", "timeout")
                continue
            if isinstance(msg, DOWN):
                index, _, _ = running.pop(msg.ref)
                done[index] = ("exit", msg.reason)
            else:
                index, task, _ = running.pop(msg[1])
                _api.demonitor(task.ref, flush=True)
                done[index] = ("ok", msg[2])
            if not ordered:
                for index in list(done):
                    yield done.pop(index)
    finally:
        for _, task, _ in running.values():
            shutdown_task(task, 0)


class TaskSupervisor(DynamicSupervisor):
    """A dynamic supervisor for tasks.  ``TaskSupervisor.start_link(
    max_children=None, name=None)``; the task functions are also its static
    methods (``TaskSupervisor.async_(sup, fn, *args)``)."""

    async_ = staticmethod(async_)
    async_nolink = staticmethod(async_nolink)
    await_ = staticmethod(await_)
    yield_ = staticmethod(yield_)
    shutdown_task = staticmethod(shutdown_task)
    async_stream = staticmethod(async_stream)
    yield_many = staticmethod(yield_many)
    await_many = staticmethod(await_many)
