"""Coordination sessions: one supervised OS process per session.

A session is started under the ``mabeam.coordination`` dynamic supervisor
(``restart='temporary'``: a session that crashed is reported, never rerun)
and runs a *body* function.  The caller gets a :class:`Session` handle and
the result arrives as a message; sessions never wait on each other and no
coordination process serialises them (AC-10, AC-23).

Inside the session every step that waits on agents runs in a task under
``mabeam.tasks``, linked to the session, while the session waits for either
the task's answer or the ``DOWN`` of its caller: a session whose caller dies
stops at once (reason ``('shutdown', 'caller_down')``) and takes its task
with it, even in the middle of a slow vote.  Every wait has a timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import otp
from mabeam._agent import AgentError
from mabeam._app import COORDINATION, TASKS
from mabeam._comms import CommsError, multi_request

__all__ = [
    "CoordinationError",
    "InvalidParameter",
    "SessionFailed",
    "SessionTimeout",
    "Session",
    "start_session",
    "active_sessions",
    "multi_request",
    "failure_reason",
    "SESSIONS_GROUP",
    "GRACE",
]

#: The process group every running session joins (``active_sessions``).
SESSIONS_GROUP = "mabeam.coordination.sessions"
#: Seconds a session or its caller waits beyond the agents' own timeout
#: (starting the task, messages, tallying).
GRACE = 5.0


class CoordinationError(Exception):
    """Base class of the coordination errors."""


class InvalidParameter(CoordinationError, ValueError):
    """A coordination parameter is out of range (raised in the caller)."""


class SessionFailed(CoordinationError):
    """The session process exited before answering; ``reason`` is its exit reason."""

    def __init__(self, reason: Any, session: Any = None) -> None:
        super().__init__(reason, session)
        self.reason = reason
        self.session = session


class SessionTimeout(CoordinationError, TimeoutError):
    """The session did not answer in time (it is stopped)."""


# ------------------------------------------------------------------ caller side


class Session:
    """Handle of a running session: ``result(timeout)`` waits for its answer."""

    __slots__ = ("pid", "ref", "kind", "monitor", "started", "_done")

    def __init__(self, pid: otp.Pid, ref: otp.Ref, kind: str, monitor: otp.Ref) -> None:
        self.pid, self.ref, self.kind, self.monitor = pid, ref, kind, monitor
        self.started = time.monotonic()
        self._done = False

    def __repr__(self) -> str:
        return f"<Session {self.kind} {self.pid!r}>"

    def result(self, timeout: float = 60.0) -> Any:
        """The session's result; raises what the session raised,
        :class:`SessionFailed` if it died, :class:`SessionTimeout` after
        ``timeout`` seconds (the session is then stopped).  Returns once the
        session process is gone."""
        if self._done:
            raise CoordinationError("the result of this session was already taken")
        ref, mon = self.ref, self.monitor

        def answer(m: Any) -> bool:
            return (type(m) is tuple and len(m) == 4 and m[0] == "$coord_result" and m[1] == ref) or (
                isinstance(m, otp.DOWN) and m.ref == mon
            )

        try:
            msg = otp.receive(timeout, answer)
        except otp.Timeout:
            self.cancel(("shutdown", "caller_timeout"))
            raise SessionTimeout(f"{self.kind} session {self.pid!r} did not answer within {timeout} s") from None
        self._done = True
        gone = isinstance(msg, otp.DOWN)
        if gone and msg.reason == "noproc":
            # The session ended before it was monitored (a quick session on a
            # loaded machine): its result, sent before it ended, may still be
            # on its way, since nothing orders a 'noproc' DOWN after it.
            try:
                msg = otp.receive(GRACE, lambda m: type(m) is tuple and len(m) == 4 and m[:2] == ("$coord_result", ref))
            except otp.Timeout:
                raise SessionFailed("noproc", self.pid) from None
        if isinstance(msg, otp.DOWN):
            raise SessionFailed(msg.reason, self.pid)
        try:  # the session exits right after answering: return once it is gone
            if not gone:
                otp.receive(GRACE, lambda m: isinstance(m, otp.DOWN) and m.ref == mon)
        except otp.Timeout:
            otp.demonitor(mon, flush=True)
        _, _, status, value = msg
        if status == "ok":
            return value
        raise value

    def cancel(self, reason: Any = "shutdown") -> None:
        """Stop the session (its result, if any, is dropped)."""
        self._done = True
        otp.exit(self.pid, reason)
        otp.demonitor(self.monitor, flush=True)
        try:  # a result already queued must not linger in the mailbox
            otp.receive(0, lambda m: type(m) is tuple and len(m) == 4 and m[0] == "$coord_result" and m[1] == self.ref)
        except otp.Timeout:
            pass


def start_session(kind: str, body: Callable, args: tuple) -> Session:
    """Start ``body(ctx, *args)`` as a session process under the
    coordination supervisor; its return value (or raised exception) is the
    session's result."""
    caller = otp.self()
    ref = otp.make_ref()
    spec = otp.child_spec(
        ("session", kind),
        start=(otp.spawn_link, (_session_main, caller, ref, kind, body, args)),
        restart="temporary",
        shutdown=5.0,
    )
    pid = otp.supervisor.start_child(COORDINATION, spec)
    return Session(pid, ref, kind, otp.monitor(pid))


def active_sessions() -> list:
    """Pids of the sessions running now (from the caller's pg replica)."""
    return list(dict.fromkeys(otp.pg.get_members(SESSIONS_GROUP)))


# ------------------------------------------------------------------ session side


class Context:
    """What a session body gets: its caller, id and the ``gather`` step."""

    def __init__(self, caller: otp.Pid, ref: otp.Ref, kind: str) -> None:
        self.caller, self.ref, self.kind = caller, ref, kind
        self.caller_monitor = otp.monitor(caller)
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def gather(self, fn: Callable, *args: Any, timeout: float) -> Any:
        """Run ``fn(*args)`` in a task linked to this session and return its
        result; stops the session if the caller dies meanwhile.  Raises
        :class:`SessionTimeout` if the task is not done ``timeout + GRACE``
        seconds later (it is then stopped)."""
        self.check_caller()
        task = otp.TaskSupervisor.async_(TASKS, fn, *args, shutdown="brutal_kill")
        tref, cref = task.ref, self.caller_monitor

        def answer(m: Any) -> bool:
            if type(m) is tuple and len(m) == 3 and m[0] == "$task" and m[1] == tref:
                return True
            return isinstance(m, otp.DOWN) and m.ref in (tref, cref)

        try:
            msg = otp.receive(timeout + GRACE, answer)
        except otp.Timeout:
            otp.TaskSupervisor.shutdown_task(task, 0)
            raise SessionTimeout(f"a {self.kind} step did not finish within {timeout + GRACE} s") from None
        if isinstance(msg, otp.DOWN):
            if msg.ref == cref:
                raise otp.ProcessExit(("shutdown", "caller_down"))
            raise SessionFailed(msg.reason, task.pid)
        otp.demonitor(tref, flush=True)
        return msg[2]

    def check_caller(self) -> None:
        """Exit if the caller is gone (between steps)."""
        try:
            otp.receive(0, lambda m: isinstance(m, otp.DOWN) and m.ref == self.caller_monitor)
        except otp.Timeout:
            return
        raise otp.ProcessExit(("shutdown", "caller_down"))


def _session_main(caller: otp.Pid, ref: otp.Ref, kind: str, body: Callable, args: tuple) -> None:
    ctx = Context(caller, ref, kind)
    otp.pg.join(SESSIONS_GROUP)
    try:
        outcome = ("ok", body(ctx, *args))
    except otp.ProcessExit:
        raise
    except (CoordinationError, ValueError, otp.OTPError) as exc:  # typed errors go back to the caller
        outcome = ("error", exc)
    try:
        otp.send(caller, ("$coord_result", ref, *outcome))
    except otp.EncodeError as exc:
        otp.send(caller, ("$coord_result", ref, "error", CoordinationError(f"result cannot be sent: {exc}")))


# ------------------------------------------------------------------ talking to agents


def failure_reason(exc: BaseException) -> Any:
    """Why an agent gave no answer: ``'not_running'``, ``'timeout'``, its
    exit reason (``'killed'``...), or ``('hook_raised', reason)``."""
    if isinstance(exc, CommsError):
        return exc.reason
    if isinstance(exc, AgentError):
        return ("hook_raised", exc.reason)
    return ("error", exc)
