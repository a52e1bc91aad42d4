"""Between the web server's event loop and its OTP process.

The web server is one OTP process with two threads: the process's main
thread, which alone may use ``otp`` (its mailbox is not shared), and a
thread running uvicorn's asyncio loop.  A handler that needs the
collector submits a job (a deque and a byte on a pipe); the main thread
waits in ``poll_sockets`` on that pipe and its mailbox at once, so it
neither polls nor sleeps.  It sends the collector the request with
``otp.send_request`` and hands the answer back to the loop
(``call_soon_threadsafe``) when its ``Response`` arrives; an action that
may block (a supervisor restarting a child) runs in a short-lived process
of its own.  The collector's events go out to every event-stream client,
coalesced per batch of messages: at most one ``tree`` and one ``round``
notice each time the main thread wakes.

Panels are read by one runner process per panel (:func:`._panels.run_runner`),
kept between reads: a read a second costs no fork.  A read that outlives
the panel's timeout kills its runner (the next read starts another); reads
asked while one is in flight share its answer.  The timeouts are deadlines
of the main thread's own wait, not timers: a timer is a cast to the node's
timer server and a cancel a call to it, per read, which measured as much
CPU as the runner's read itself.

The collector is held (it keeps running while the server does) and
watched only while at least one event-stream client is connected.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import _api, _process
from .._errors import CallError, OTPError, Timeout
from .._pid import Pid, Ref
from .._reasons import DOWN, Response
from .._requests import RequestId, check_response, send_request
from .._service import Failed, Ok, Request, ask, tell
from ._client import ensure_collector
from ._errors import PanelFailed, PanelTimeout, UnknownPanel
from ._json import log_json, text
from ._panels import MAX_TIMEOUT, RUN, find_panel, is_answer, run_runner
from ._records import LogAdded, ProcessesRefreshed, TreeChanged

log = logging.getLogger("otp.observer")

__all__ = ["Bridge"]

#: Log entries one wake sends out at most (a storm of reports is cut).
_LOGS_PER_BATCH = 50
#: Events queued per event-stream client before it is sent a ``reset``.
_CLIENT_QUEUE = 256
_ACTION_DONE = "$observer_action_done"
#: ``(WHERE, pid, ref)`` asks the server where it listens: ``(ref, host, port)``.
WHERE = "$observer_web_where"


@dataclass
class _Runner:
    """A panel's runner process, and the read in flight (``token``)."""

    pid: Pid
    ref: Ref
    token: Ref | None = None
    futures: list[asyncio.Future[Any]] = field(default_factory=list)
    deadline: float = 0.0  # of the read in flight, on the monotonic clock
    timeout: float = 0.0


def _run_action(reply_to: Pid, token: Ref, fn: Callable[..., Any], args: tuple) -> None:
    """Body of an action process: run ``fn(*args)``, send back the outcome."""
    try:
        outcome: tuple[bool, Any] = (True, fn(*args))
    except Exception as exc:  # noqa: BLE001 - the outcome is the error, for the web client
        outcome = (False, f"{type(exc).__name__}: {exc}")
    _api.send(reply_to, (_ACTION_DONE, token, outcome))


class Bridge:
    def __init__(self) -> None:
        self._r, self._w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._jobs: collections.deque[tuple[Any, ...]] = collections.deque()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._clients: set[asyncio.Queue[dict[str, Any] | None]] = set()
        # main thread only:
        self._asks: dict[Ref, tuple[RequestId, asyncio.Future[Any]]] = {}
        self._actions: dict[Ref, asyncio.Future[Any]] = {}
        self._action_monitors: dict[Ref, Ref] = {}
        self._collector: Pid | None = None
        self._collector_ref: Ref | None = None
        self._watching = False
        self._runners: dict[str, _Runner] = {}
        #: (host, port) the server listens on.
        self.where: tuple[str, int] | None = None

    # ---------------------------------------------------------- loop side

    def _submit(self, job: tuple[Any, ...]) -> None:
        self._jobs.append(job)
        try:
            os.write(self._w, b"j")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    async def ask(self, op: str, *args: Any, timeout: float = 15.0) -> Any:
        """Run the collector operation ``op`` and return its value (or
        raise its error)."""
        self.loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = self.loop.create_future()
        self._submit(("ask", op, args, future))
        return await asyncio.wait_for(future, timeout)

    async def act(self, fn: Callable[..., Any], *args: Any, timeout: float = 60.0) -> Any:
        """Run ``fn(*args)`` in a process of its own; its value, or
        OTPError with the text of what it raised."""
        self.loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = self.loop.create_future()
        self._submit(("act", fn, args, future))
        return await asyncio.wait_for(future, timeout)

    async def panel(self, name: str) -> Any:
        """The panel ``name`` of this node, read by its runner (see the
        module docstring); raises what :func:`._panels.read_panel` raises."""
        self.loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = self.loop.create_future()
        self._submit(("panel", name, future))
        return await asyncio.wait_for(future, MAX_TIMEOUT + 15.0)

    async def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        """A queue of events for one event-stream client, returned once the
        collector counts this server among its watchers (so that nothing
        that happens after it returns is missed)."""
        self.loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(_CLIENT_QUEUE)
        self._clients.add(queue)
        watching: asyncio.Future[Any] = self.loop.create_future()
        self._submit(("watch", True, watching))
        try:
            await asyncio.wait_for(watching, 15.0)
        except BaseException:
            self.unsubscribe(queue)
            raise
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._clients.discard(queue)
        if not self._clients:
            self._submit(("watch", False, None))

    def _publish(self, events: list[dict[str, Any]]) -> None:
        for queue in list(self._clients):
            for event in events:
                try:
                    queue.put_nowait(event)
                except asyncio.QueueFull:  # a client that does not read: start it over
                    while not queue.empty():
                        queue.get_nowait()
                    queue.put_nowait({"type": "reset"})
                    break

    @staticmethod
    def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
        if future.done():
            return  # its handler gave up (timeout, client gone)
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value if isinstance(value, BaseException) else OTPError(str(value)))

    def _resolve(self, future: asyncio.Future[Any], ok: bool, value: Any) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._settle, future, ok, value)

    # ---------------------------------------------------------- main thread

    def start(self) -> None:
        """Hold the collector (main thread, before serving)."""
        self._attach()

    def _attach(self) -> None:
        pid = ensure_collector()
        ask(pid, "hold", _api.self_(), timeout=15.0)
        if self._watching:
            ask(pid, "watch", _api.self_(), timeout=15.0)
        self._collector = pid
        self._collector_ref = _api.monitor(pid)

    def serve_forever(self) -> None:
        """The main thread's loop: jobs from handlers, messages from the
        collector and action processes.  Ends only with the process."""
        proc = _process.current()
        while True:
            self._take_messages()
            self._expire_panels()
            proc.poll_sockets([self._r], self._next_deadline())  # type: ignore[list-item]  # a raw fd polls too
            try:
                os.read(self._r, 4096)
            except BlockingIOError:
                pass
            while self._jobs:
                self._run(self._jobs.popleft())

    def _run(self, job: tuple[Any, ...]) -> None:
        kind = job[0]
        if kind == "ask":
            _, op, args, future = job
            if self._collector is None:
                self._reattach()
            if self._collector is None:
                self._resolve(future, False, OTPError("the observer's collector does not run"))
                return
            request = send_request(self._collector, Request(op, args, {}))
            self._asks[request.ref] = (request, future)
        elif kind == "act":
            _, fn, args, future = job
            token = _api.make_ref()
            _, mref = _api.spawn_monitor(_run_action, _api.self_(), token, fn, args)
            self._actions[token] = future
            self._action_monitors[mref] = token
        elif kind == "panel":
            _, name, future = job
            self._read_panel(name, [future])
        elif kind == "watch":
            _, on, future = job
            self._watching = bool(on) or bool(self._clients)
            if self._collector is None:
                self._reattach()
            elif not on:
                if not self._clients:
                    tell(self._collector, "unwatch", _api.self_())
            else:
                try:
                    ask(self._collector, "watch", _api.self_(), timeout=10.0)
                except OTPError as exc:
                    log.warning("observer web server: watching the collector failed: %r", exc)
            if future is not None:
                self._resolve(future, True, None)

    def _take_messages(self) -> None:
        events: list[dict[str, Any]] = []
        tree = rounds = False
        logs = 0
        while True:
            try:
                msg = _api.receive(0)
            except Timeout:
                break
            if isinstance(msg, TreeChanged):
                tree = True
            elif isinstance(msg, ProcessesRefreshed):
                rounds = True
            elif isinstance(msg, LogAdded):
                logs += 1
                if logs <= _LOGS_PER_BATCH:
                    events.append({"type": "log", "entry": log_json(msg.entry)})
            elif is_answer(msg):
                self._panel_answer(msg)
            elif isinstance(msg, (Response, DOWN)) and msg.ref in self._asks:
                self._answered(msg)
            elif isinstance(msg, DOWN):
                self._down(msg)
            elif type(msg) is tuple and len(msg) == 3 and msg[0] == _ACTION_DONE:
                future = self._actions.pop(msg[1], None)
                if future is not None:
                    self._resolve(future, *msg[2])
            elif type(msg) is tuple and len(msg) == 3 and msg[0] == WHERE and self.where is not None:
                _api.send(msg[1], (msg[2], *self.where))
        if tree:
            events.append({"type": "tree"})
        if rounds:
            events.append({"type": "round"})
        if logs > _LOGS_PER_BATCH:
            events.append({"type": "logs_cut", "count": logs - _LOGS_PER_BATCH})
        if events and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._publish, events)

    def _answered(self, msg: Response | DOWN) -> None:
        request, future = self._asks.pop(msg.ref)
        try:
            value = check_response(msg, request)
        except CallError as exc:
            self._resolve(future, False, exc)
            return
        if isinstance(value, Ok):
            self._resolve(future, True, value.value)
        elif isinstance(value, Failed):
            self._resolve(future, False, value.error)
        else:
            self._resolve(future, True, value)

    # ---------------------------------------------------------- panels

    def _read_panel(self, name: str, futures: list[asyncio.Future[Any]]) -> None:
        runner = self._runners.get(name)
        if runner is not None and runner.token is not None:
            runner.futures += futures  # the read in flight answers these too
            return
        try:
            spec = find_panel(name)
        except UnknownPanel as exc:
            for future in futures:
                self._resolve(future, False, exc)
            return
        if runner is None:
            pid, ref = _api.spawn_monitor(run_runner, _api.self_())
            runner = self._runners[name] = _Runner(pid, ref)
        runner.token = _api.make_ref()
        runner.futures = list(futures)
        runner.timeout = spec.timeout
        runner.deadline = time.monotonic() + spec.timeout
        _api.send(runner.pid, (RUN, runner.token, spec.provider))

    def _panel_answer(self, msg: tuple) -> None:
        _, token, ok, value = msg
        for runner in self._runners.values():
            if runner.token == token:
                break
        else:
            return  # the answer of a read given up (its runner was killed)
        futures, runner.futures, runner.token = runner.futures, [], None
        for future in futures:
            self._resolve(future, ok, value if ok else PanelFailed(value))

    def _next_deadline(self) -> float | None:
        """Seconds until the first read in flight is due, None if none is."""
        due = [r.deadline for r in self._runners.values() if r.token is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _expire_panels(self) -> None:
        """Kill the runners whose read is past its deadline; their reads
        fail with :class:`PanelTimeout`."""
        now = time.monotonic()
        for name, runner in list(self._runners.items()):
            if runner.token is None or runner.deadline > now:
                continue
            del self._runners[name]
            _api.demonitor(runner.ref, flush=True)
            _api.exit(runner.pid, "kill")
            for future in runner.futures:
                self._resolve(
                    future, False, PanelTimeout(f"the panel {name!r} did not answer within {runner.timeout:g}s")
                )

    def _runner_down(self, msg: DOWN) -> bool:
        found = next(((n, r) for n, r in self._runners.items() if r.ref == msg.ref), None)
        if found is None:
            return False
        name, runner = found
        del self._runners[name]
        if runner.token is None:
            return True  # it idled out between reads
        if msg.reason == "normal":  # it idled out as the read was sent: a new runner reads it
            self._read_panel(name, runner.futures)
            return True
        for future in runner.futures:
            self._resolve(future, False, PanelFailed(f"the panel's process exited: {text(msg.reason)}"))
        return True

    def _down(self, msg: DOWN) -> None:
        if self._runner_down(msg):
            return
        if msg.ref in self._action_monitors:
            token = self._action_monitors.pop(msg.ref)
            future = self._actions.pop(token, None)
            if future is not None:
                self._resolve(future, False, OTPError(f"the action's process exited: {msg.reason!r}"))
        elif msg.ref == self._collector_ref:
            self._collector = None
            self._collector_ref = None
            self._reattach()
            if self.loop is not None and not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self._publish, [{"type": "reset"}])

    def _reattach(self) -> None:
        try:
            self._attach()
        except OTPError as exc:
            log.warning("observer web server: the collector could not be started again: %r", exc)
