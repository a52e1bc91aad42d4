"""Coordination sessions: one supervised OS process per session.

A session is started under the ``mabeam.coordination`` dynamic supervisor
(``restart='temporary'``: a session that crashed is reported, never rerun)
and runs a *body* function.  The caller gets a :class:`Session` handle and
the result arrives as a message; sessions never wait on each other and no
coordination process serialises them.

A session is not a server: it answers no named operations, it sends one
:class:`SessionOutcome` to the one process that started it and exits.

Start handshake.  The session does nothing until its caller has monitored
it: the supervisor starts it, the caller monitors the pid it got back and
only then sends :class:`SessionGo`; the session waits for that message (or
its caller's ``DOWN``) before it runs the body.  So the caller's monitor
always exists before the session can exit: its outcome is always received
before its ``DOWN`` (the kernel delivers a process's messages before the
``DOWN`` of a monitor set up earlier), and a ``'noproc'`` DOWN can only
mean that the session died before it started.  The kernel's tasks start
the same way.  (Spawning with ``otp.spawn_monitor`` would give the same
guarantee, but the session would then not be a child of the coordination
supervisor.)

Inside the session every step that waits on agents sends its requests
itself (:meth:`Context.ask_agents`: one asynchronous request per agent,
:class:`._agent_calls.AgentCalls`) and takes the answers as they arrive in
the same receive that watches its caller: a session whose caller dies
stops at once (reason ``('shutdown', 'caller_down')``), even in the middle
of a slow vote, and the answers that come after it are dropped.  No helper
process stands between a session and its agents.  Every wait on agents has
a timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple

import otp
from mabeam._names import COORDINATION

from ._agent_calls import AgentCalls, AgentRequest, Outcome
from ._errors import CoordinationError, ResultTaken, SessionFailed, SessionTimeout, UnsendableResult

__all__ = [
    "Session",
    "SessionGo",
    "SessionOutcome",
    "Context",
    "start_session",
    "list_sessions",
    "SESSIONS_GROUP",
    "GRACE",
    "CALLER_DOWN",
]

#: The process group every running session joins (``list_sessions``).
SESSIONS_GROUP = "mabeam.coordination.sessions"
#: Seconds a session's caller waits beyond the agents' own timeout
#: (starting the session, messages, tallying).
GRACE = 5.0
#: The exit reason of a session whose caller died.
CALLER_DOWN = ("shutdown", "caller_down")


class SessionGo(NamedTuple):
    """Caller -> session: the caller monitors the session; run the body."""

    ref: otp.Ref


class SessionOutcome(NamedTuple):
    """Session -> caller: the body's value (``otp.Ok``) or the typed error
    it raised (``otp.Failed``, which carries the error by its fields)."""

    ref: otp.Ref
    reply: otp.Ok | otp.Failed


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

    def _outcome(self, m: object) -> bool:
        return type(m) is SessionOutcome and m.ref == self.ref

    def result(self, timeout: float = 60.0) -> Any:
        """The session's result; raises what the session raised,
        :class:`SessionFailed` if it died, :class:`SessionTimeout` after
        ``timeout`` seconds (the session is then stopped),
        :class:`ResultTaken` if it was already taken.  Returns once the
        session process is gone."""
        if self._done:
            raise ResultTaken(f"the result of {self!r} was already taken")
        mon = self.monitor
        try:
            msg = otp.receive(timeout, lambda m: self._outcome(m) or (isinstance(m, otp.DOWN) and m.ref == mon))
        except otp.Timeout:
            self.cancel(("shutdown", "caller_timeout"))
            raise SessionTimeout(f"{self.kind} session {self.pid!r} did not answer within {timeout} s") from None
        self._done = True
        if isinstance(msg, otp.DOWN):
            raise SessionFailed(msg.reason, self.pid)
        try:  # the session exits right after answering: return once it is gone
            otp.receive(GRACE, lambda m: isinstance(m, otp.DOWN) and m.ref == mon)
        except otp.Timeout:
            otp.demonitor(mon, flush=True)
        reply = msg.reply
        if type(reply) is otp.Failed:
            raise reply.error
        return reply.value

    def cancel(self, reason: Any = "shutdown") -> None:
        """Stop the session (its result, if any, is dropped)."""
        self._done = True
        otp.exit(self.pid, reason)
        otp.demonitor(self.monitor, flush=True)
        try:  # a result already queued must not linger in the mailbox
            otp.receive(0, self._outcome)
        except otp.Timeout:
            pass


def start_session(kind: str, body: Callable[..., Any], args: tuple) -> Session:
    """Start ``body(ctx, *args)`` as a session process under the
    coordination supervisor; its return value (or the typed error it
    raised) is the session's result."""
    caller = otp.self()
    ref = otp.make_ref()
    spec = otp.child_spec(
        ("session", kind),
        start=(otp.spawn_link, (_session_main, caller, ref, kind, body, args)),
        restart="temporary",
        shutdown=5.0,
    )
    pid = otp.supervisor.start_child(COORDINATION, spec)
    if pid is None:  # spawn_link always returns a pid; the supervisor's type allows 'ignore'
        raise SessionFailed("ignore")
    session = Session(pid, ref, kind, otp.monitor(pid))
    otp.send(pid, SessionGo(ref))
    return session


def list_sessions() -> list[otp.Pid]:
    """Pids of the sessions running now (from the caller's pg replica)."""
    return list(dict.fromkeys(otp.pg.get_members(SESSIONS_GROUP)))


# ------------------------------------------------------------------ session side


class Context:
    """What a session body gets: its caller, id and the ``ask_agents`` step."""

    def __init__(self, caller: otp.Pid, ref: otp.Ref, kind: str) -> None:
        self.caller, self.ref, self.kind = caller, ref, kind
        self.caller_monitor = otp.monitor(caller)
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _caller_down(self, m: object) -> bool:
        return isinstance(m, otp.DOWN) and m.ref == self.caller_monitor

    def wait_for_go(self) -> None:
        """Wait until the caller monitors this session (its :class:`SessionGo`);
        exit if the caller dies first."""
        ref = self.ref
        msg = otp.receive(None, lambda m: (type(m) is SessionGo and m.ref == ref) or self._caller_down(m))
        if isinstance(msg, otp.DOWN):
            raise otp.ProcessExit(CALLER_DOWN)
        self.started = time.monotonic()

    def ask_agents(self, requests: Sequence[AgentRequest], timeout: float) -> list[Outcome]:
        """Ask the agents (see :class:`AgentCalls`) and take their answers
        as they arrive, for at most ``timeout`` seconds; the outcomes in
        the order of ``requests``.  Stops the session if the caller dies
        meanwhile."""
        self.check_caller()
        calls = AgentCalls(requests, timeout)
        if calls.wait_or(self._caller_down) is not None:
            raise otp.ProcessExit(CALLER_DOWN)
        return calls.outcomes

    def ask_all(self, agent_ids: Sequence[Hashable], payload: Any, kind: str, timeout: float) -> list[Outcome]:
        """:meth:`ask_agents` with one payload for every agent."""
        return self.ask_agents([AgentRequest(agent_id, kind, payload) for agent_id in agent_ids], timeout)

    def check_caller(self) -> None:
        """Exit if the caller is gone (between steps)."""
        try:
            otp.receive(0, self._caller_down)
        except otp.Timeout:
            return
        raise otp.ProcessExit(CALLER_DOWN)


def _session_main(caller: otp.Pid, ref: otp.Ref, kind: str, body: Callable[..., Any], args: tuple) -> None:
    ctx = Context(caller, ref, kind)
    ctx.wait_for_go()
    otp.pg.join(SESSIONS_GROUP)
    reply: otp.Ok | otp.Failed
    try:
        reply = otp.Ok(body(ctx, *args))
    except (CoordinationError, ValueError, otp.OTPError) as exc:  # typed errors go back to the caller
        reply = otp.Failed(exc)
    try:
        otp.send(caller, SessionOutcome(ref, reply))
    except otp.EncodeError as exc:
        otp.send(caller, SessionOutcome(ref, otp.Failed(UnsendableResult(f"the result cannot be sent: {exc}"))))
