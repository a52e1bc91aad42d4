"""Coordination sessions, the caller's side: placing a session on a host,
waiting for its result, and what a session body is.

A session (a consensus, a refinement, a hierarchy...) is not a process:
it is state held by one of a few long-lived *session hosts*
(:mod:`._host`), the partitions of the ``mabeam.coordination.hosts``
partition supervisor.  An OS process per session cost milliseconds and
megabytes per call; a host serves thousands of sessions at once, none
waiting on another.

A *body* is a generator function ``body(ctx, *args)`` that yields each
wait on agents and gets their outcomes back::

    def _consensus_body(ctx, ids, proposal, timeout):
        outcomes = yield ctx.ask_all(ids, proposal, "vote", timeout)
        return tally(outcomes)

so the code of a session reads as the sequence of its steps while the host
runs it as a state machine: a yield is where the session waits, and the
host serves other sessions meanwhile.  (The alternatives were a state
machine per kind of session written out by hand, unreadable for the
multi-round ones, or a thread per session, which gives up the one-thread
host that makes a body's exception and a caller's death simple to contain.)
A body that needs no agent may be a plain function: its return value is
the result.  Between two yields a body must not block: it runs in the
host, and every other session of that host waits while it computes.

The caller never monitors a host: it waits in an ``otp.call`` to it,
which raises at once when the host dies (the kernel watches a called
process for the caller's life, with no monitor per call), and the host
answers that call when the session ends.  :func:`run_session` (the
blocking functions: ``run_consensus``...) is one call that starts the
session and waits for its outcome: one message to the host and one back.
:func:`start_session` (the ``*_async`` functions) sends the session to its
host and returns a :class:`Session` at once; a session that ends before
anyone waits for it sends its outcome to its caller as a message
(:class:`SessionOutcome`), and ``Session.result`` takes it from the
mailbox, or else calls the host, which answers when the session ends.  A
host that dies (SIGKILL) fails its sessions' waiting callers at once with
:class:`SessionHostDown`, not at their timeout.

Placement: by the caller.  A caller's sessions go to the host of its
partition (the CRC-32 of its pid's uid), or to the first live host after
it (``otp.is_alive``, which counts a SIGKILLed process dead at once: a
host killed a moment ago may still hold its name; :func:`run_session`
leaves that to its call, which refuses such a host with ``NoProc`` by
itself); callers spread over the hosts.  (By session id, one caller's
sessions alternate between hosts, each woken in turn with its caches
cold: measured on two cores, one caller's consensus rounds ran about a
quarter slower that way, one at a time and eight in flight.)  A host
found gone by the call itself (``NoProc``: the call never reached it) is
skipped and the session placed on the next one.

Why a call and not a monitor: a monitor costs two signals to the host (set
up, taken down) and a pidfd per session, about as much as the session's
own messages; the call's watch of the host is set up once per caller and
host.
"""

from __future__ import annotations

import inspect
import time
import zlib
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, NamedTuple, ParamSpec, TypeVar

import otp
from otp import partition_supervisor

from ._agent_calls import AgentRequest
from ._errors import ResultTaken, SessionFailed, SessionHostDown, SessionTimeout

__all__ = [
    "HOSTS",
    "GRACE",
    "AskAgents",
    "Context",
    "Session",
    "SessionInfo",
    "StartSession",
    "CancelSession",
    "SessionOutcome",
    "run_session",
    "start_session",
    "list_sessions",
    "SessionCall",
    "session_functions",
    "paired_functions",
]

#: The name of the partition supervisor of the session hosts; partition
#: ``i``'s host is registered as ``(HOSTS, i)``.
HOSTS = "mabeam.coordination.hosts"
#: Seconds a session's caller waits beyond the agents' own timeout
#: (messages to and from the host, tallying).
GRACE = 5.0


# ------------------------------------------------------------------ what a body sees


class AskAgents(NamedTuple):
    """A body's step: ask every agent of ``requests`` at once (one
    asynchronous request each) and resume with their outcomes, in the order
    of ``requests``, once all are settled or ``timeout`` seconds passed
    (``'timeout'`` for those still open)."""

    requests: Sequence[AgentRequest]
    timeout: float


class Context:
    """What a session body gets: its id, kind, caller, and the steps it yields."""

    __slots__ = ("id", "kind", "caller", "started")

    def __init__(self, session_id: otp.Ref, kind: str, caller: otp.Pid) -> None:
        self.id, self.kind, self.caller = session_id, kind, caller
        self.started = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the host started the session."""
        return time.monotonic() - self.started

    @staticmethod
    def ask_agents(requests: Sequence[AgentRequest], timeout: float) -> AskAgents:
        """The step asking each agent its own request (yield it)."""
        return AskAgents(list(requests), timeout)

    @staticmethod
    def ask_all(agent_ids: Sequence[Hashable], payload: Any, kind: str, timeout: float) -> AskAgents:
        """The step asking every agent's ``kind`` hook about ``payload`` (yield it)."""
        return AskAgents([AgentRequest(agent_id, kind, payload) for agent_id in agent_ids], timeout)


# ------------------------------------------------------------------ the messages


class StartSession(NamedTuple):
    """Caller -> host: run ``body(ctx, *args)`` as the session ``ref`` (a
    message, or the argument of the host's ``run_session`` operation)."""

    ref: otp.Ref
    caller: otp.Pid
    kind: str
    body: Callable[..., Any]
    args: tuple


class CancelSession(NamedTuple):
    """Caller -> host: drop the session ``ref`` (its result is not wanted:
    ``Session.cancel``, or a caller that stopped waiting)."""

    ref: otp.Ref


class SessionOutcome(NamedTuple):
    """Host -> caller, when no call waits for it: the session's result
    (``otp.Ok``) or the typed error it raised (``otp.Failed``)."""

    ref: otp.Ref
    reply: otp.Ok | otp.Failed


class SessionInfo(NamedTuple):
    """A running session, as :func:`list_sessions` reports it: ``waiting``
    is how many agents it waits on now."""

    id: otp.Ref
    kind: str
    host: otp.Pid
    caller: otp.Pid
    elapsed: float
    waiting: int


# ------------------------------------------------------------------ the caller's side


def _live_hosts(caller: otp.Pid, skip: Sequence[otp.Pid] = (), look: bool = True) -> Iterator[otp.Pid]:
    """The hosts to try, from the caller's partition on: live ones only
    if ``look`` (``otp.is_alive``, a read of ``/proc``); without it, the
    registered ones, for a call, which finds a dead host itself."""
    try:
        count = partition_supervisor.partitions(HOSTS)
    except otp.NoProc:  # no application running, or its hosts are restarting
        return
    first = zlib.crc32(b"%d" % caller.uid) % count
    for i in range(count):
        host = otp.whereis((HOSTS, (first + i) % count))
        if host is not None and host not in skip and (not look or otp.is_alive(host)):
            yield host


def _outcome(reply: otp.Ok | otp.Failed) -> Any:
    if isinstance(reply, otp.Failed):
        raise reply.error
    return reply.value


def _timed_out(host: otp.Pid, start: StartSession, timeout: float) -> SessionTimeout:
    otp.send(host, CancelSession(start.ref))
    return SessionTimeout(f"{start.kind} session {start.ref!r} did not answer within {timeout} s")


def run_session(kind: str, body: Callable[..., Any], args: tuple, timeout: float) -> Any:
    """Run ``body(ctx, *args)`` as a session on a host and wait for its
    result (at most ``timeout`` seconds: then :class:`SessionTimeout`, and
    the host drops it).  Raises what the body raised (a typed error),
    :class:`SessionCrashed` for a bug in it, :class:`SessionHostDown` if its
    host died, ``otp.EncodeError`` if ``args`` cannot be sent."""
    start = StartSession(otp.make_ref(), otp.self(), kind, body, args)
    tried: list[otp.Pid] = []
    while True:
        # No look at the host's process: the call raises NoProc for a host
        # that has exited, SIGKILLed a moment ago included (the kernel's
        # watch of a called process sees its exit at once), as is_alive
        # would have said, and the next host is tried.
        host = next(_live_hosts(start.caller, tried, look=False), None)
        if host is None:
            raise SessionHostDown("no_host", start.ref, tried[-1] if tried else None)
        tried.append(host)
        try:
            return _outcome(otp.ask(host, "run_session", start, timeout=timeout))
        except otp.NoProc:  # gone before the call reached it: the session never ran
            continue
        except otp.CallTimeout:
            raise _timed_out(host, start, timeout) from None
        except otp.CalleeExit as exc:
            raise SessionHostDown(exc.reason, start.ref, host) from None


class Session:
    """Handle of a session started by :func:`start_session`:
    ``result(timeout)`` waits for its answer, ``cancel()`` drops it (both
    in the process that started it: the outcome is sent to that process).
    ``id`` names it on its ``host``."""

    __slots__ = ("id", "kind", "host", "started", "_start", "_done")

    def __init__(self, start: StartSession, host: otp.Pid) -> None:
        self.id, self.kind, self.host = start.ref, start.kind, host
        self._start = start
        self._done = False
        self.started = time.monotonic()

    def __repr__(self) -> str:
        return f"<Session {self.kind} {self.id!r} on {self.host!r}>"

    def _is_outcome(self, m: object) -> bool:
        return type(m) is SessionOutcome and m.ref == self.id

    def _queued_outcome(self, timeout: float) -> Any:
        msg = otp.receive(timeout, self._is_outcome)
        return _outcome(msg.reply)

    def result(self, timeout: float = 60.0) -> Any:
        """The session's result; raises the typed error the session raised,
        :class:`SessionCrashed` if its body raised anything else,
        :class:`SessionHostDown` at once if its host died,
        :class:`SessionTimeout` after ``timeout`` seconds (the host then
        drops the session), :class:`ResultTaken` if it was already taken."""
        if self._done:
            raise ResultTaken(f"the result of {self!r} was already taken")
        self._done = True
        try:
            return self._queued_outcome(0)
        except otp.Timeout:
            pass
        try:
            reply = otp.ask(self.host, "await_session", self.id, timeout=timeout)
        except otp.CallTimeout:
            self._flush()
            raise _timed_out(self.host, self._start, timeout) from None
        except otp.CallError as exc:  # NoProc: it died after the session was sent
            raise SessionHostDown(getattr(exc, "reason", "noproc"), self.id, self.host) from None
        if reply is not None:
            return _outcome(reply)
        try:  # it ended meanwhile: its outcome was sent before the host's answer
            return self._queued_outcome(GRACE)
        except otp.Timeout:
            raise SessionFailed("lost", self.id) from None

    def _flush(self) -> None:
        try:  # an outcome already queued must not linger in the mailbox
            otp.receive(0, self._is_outcome)
        except otp.Timeout:
            pass

    def cancel(self) -> None:
        """Drop the session: its host forgets it, and an outcome already
        sent is taken out of the mailbox."""
        self._done = True
        otp.send(self.host, CancelSession(self.id))
        self._flush()


def start_session(kind: str, body: Callable[..., Any], args: tuple) -> Session:
    """Send ``body(ctx, *args)`` to a host as a session (see the module
    doc) and return its :class:`Session` at once.  Raises
    :class:`SessionHostDown` if no host is running, ``otp.EncodeError`` if
    ``args`` cannot be sent."""
    start = StartSession(otp.make_ref(), otp.self(), kind, body, args)
    host = next(_live_hosts(start.caller), None)
    if host is None:
        raise SessionHostDown("no_host", start.ref, None)
    otp.send(host, start)
    return Session(start, host)


def list_sessions(timeout: float = 5.0) -> list[SessionInfo]:
    """The sessions running now on every host (a host that is restarting
    has none to report); outcomes waiting to be taken are not listed."""
    try:
        hosts = [h for h in partition_supervisor.children(HOSTS) if h is not None]
    except otp.NoProc:
        return []
    out: list[SessionInfo] = []
    for status, answer in otp.multi_call([(h, otp.Request("list_sessions", (), {})) for h in hosts], timeout):
        if status == "ok" and type(answer) is otp.Ok:
            out.extend(answer.value)
    return out


# ------------------------------------------------------------------ the public pairs

P = ParamSpec("P")
C = TypeVar("C")
H = TypeVar("H")
R = TypeVar("R")


class SessionCall(NamedTuple):
    """A session a caller asked for, its arguments checked in the caller:
    ``body(ctx, *args)`` of ``kind``; the blocking call waits at most
    ``wait`` seconds for it."""

    kind: str
    body: Callable[..., Any]
    args: tuple
    wait: float


def _present(fn: Callable, name: str, signature: inspect.Signature, doc: str | None, module: str) -> None:
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    fn.__module__ = module
    setattr(fn, "__signature__", signature)  # noqa: B010 (mypy does not know the attribute)


def paired_functions(
    name: str,
    call: Callable[P, C],
    start: Callable[[C], H],
    finish: Callable[[C], R],
    handle: type[H],
    result: type[R],
    start_doc: str | None = None,
) -> tuple[Callable[P, H], Callable[P, R]]:
    """The public pair ``<name>_async`` (``start`` of what ``call``
    returns: a ``handle`` at once) and ``<name>`` (``finish`` of it: the
    ``result``, blocking), made from ``call``, which checks their arguments
    and says what to run.  The pair takes the same arguments, checked the
    same way, and differs only in how it waits, so ``call``'s signature and
    docstring are written once, and are the pair's."""
    signature = inspect.signature(call)

    def start_fn(*args: P.args, **kwargs: P.kwargs) -> H:
        return start(call(*args, **kwargs))

    def finish_fn(*args: P.args, **kwargs: P.kwargs) -> R:
        return finish(call(*args, **kwargs))

    doc = start_doc or (
        f"Start what :func:`{name}` runs and return its :class:`{handle.__name__}` at once: "
        f"its ``result()`` gives what :func:`{name}` returns."
    )
    module = call.__module__
    _present(start_fn, f"{name}_async", signature.replace(return_annotation=handle.__name__), doc, module)
    _present(finish_fn, name, signature.replace(return_annotation=result.__name__), call.__doc__, module)
    return start_fn, finish_fn


def _start(call: SessionCall) -> Session:
    return start_session(call.kind, call.body, call.args)


def _run(call: SessionCall) -> Any:
    return run_session(call.kind, call.body, call.args, call.wait)


def session_functions(
    name: str, call: Callable[P, SessionCall], result: type[R]
) -> tuple[Callable[P, Session], Callable[P, R]]:
    """The pair of one kind of session (:func:`paired_functions`):
    ``<name>_async`` sends it to a host (:func:`start_session`), ``<name>``
    is one call to the host (:func:`run_session`)."""
    return paired_functions(name, call, _start, _run, Session, result)
