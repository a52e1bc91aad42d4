"""System messages: OTP's ``sys`` module, served by the behaviour loops.

A system message is ``("$system", from_, request)``, with ``from_`` a
``(pid, ref)`` like a call's: the client (:mod:`otp.sys`) waits for the
answer as for a call, with the same timeout and death detection.  The
behaviour's loop (a host) recognises it with :func:`is_system_message` and
hands it to :func:`handle_system_message`, never to the user's callbacks.

A host provides:

* ``sys_debug``: its :class:`SysDebug` (suspension, tracing, statistics);
* ``sys_get_state()``: what ``otp.sys.get_state`` shows;
* ``sys_replace_state(fn)``: replace the state by ``fn(state)`` and return
  the new one; if ``fn`` raises, the state stays as it was;
* ``sys_status() -> dict``: the behaviour's own status fields for
  ``otp.sys.get_status``.  The keys ``"behaviour"`` (its name, e.g.
  ``"gen_server"``) and ``"parent"`` (the parent's pid) fill the record's
  fields of those names; the other keys are the behaviour's status.

The loop calls ``sys_debug.count_in()`` for every message it receives
(system messages excepted), ``sys_debug.count_out()`` for every message it
sends (replies), and :func:`trace_event` for every event it handles, which
logs the event while tracing and counts it while collecting statistics
(guard the call with ``sys_debug.active`` to skip it cheaply).  While
``sys_debug.suspended`` is true the loop takes in only system messages
(:func:`suspended_match`), and the exit signal of its parent when it traps
exits; everything else stays queued, in order, until ``resume``.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol, overload

from . import _api, _process
from ._errors import EncodeError, OTPError
from ._pid import Pid, Ref
from ._reasons import EXIT, Crash
from ._timeouts import check_timeout

__all__ = [
    "SYSTEM",
    "SysDebug",
    "SysHost",
    "SysState",
    "SysStatus",
    "DebugFlags",
    "Statistics",
    "CallbackFailed",
    "UnknownSystemRequest",
    "GetState",
    "ReplaceState",
    "GetStatus",
    "Suspend",
    "Resume",
    "SetStatistics",
    "GetStatistics",
    "SetTrace",
    "SysRefused",
    "is_system_message",
    "suspended_match",
    "handle_system_message",
    "trace_event",
    "system_message",
]

#: The tag of a system message: ``(SYSTEM, from_, request)``.
SYSTEM = "$system"

#: The logger ``otp.sys.trace`` writes to (at INFO).
trace_log = logging.getLogger("otp.sys")


class CallbackFailed(OTPError):
    """A function given to :func:`otp.sys.replace_state` raised in the
    server (OTP's ``{callback_failed, ...}``); the server's state is
    unchanged.  ``reason`` is the :class:`otp.Crash` of the exception."""

    def __init__(self, callback: str, reason: Crash) -> None:
        super().__init__(callback, reason)
        self.callback = callback
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.callback} failed: {self.reason.type_name}: {self.reason.message}"


class UnknownSystemRequest(OTPError):
    """A system message carried a request no process understands; the
    process carries on."""

    def __init__(self, request: object) -> None:
        super().__init__(request)
        self.request = request


# ------------------------------------------------------------ the requests


class GetState(NamedTuple):
    """sys:get_state."""


class ReplaceState(NamedTuple):
    """sys:replace_state: the state becomes ``fn(state)``."""

    fn: Callable[[Any], Any]


class GetStatus(NamedTuple):
    """sys:get_status."""


class Suspend(NamedTuple):
    """sys:suspend."""


class Resume(NamedTuple):
    """sys:resume."""


class SetStatistics(NamedTuple):
    """sys:statistics(Name, true | false): start afresh, or stop."""

    on: bool


class GetStatistics(NamedTuple):
    """sys:statistics(Name, get)."""


class SetTrace(NamedTuple):
    """sys:trace(Name, true | false)."""

    on: bool


SysRequest = GetState | ReplaceState | GetStatus | Suspend | Resume | SetStatistics | GetStatistics | SetTrace


class SysRefused(NamedTuple):
    """The answer to a system request that failed: ``error`` is raised in
    the caller."""

    error: OTPError


def system_message(from_: tuple[Pid, Ref], request: SysRequest) -> tuple[str, tuple[Pid, Ref], SysRequest]:
    """The message that carries ``request`` (answered to ``from_``)."""
    return (SYSTEM, from_, request)


def is_system_message(msg: object) -> bool:
    """True if ``msg`` is a system message (``("$system", from_, request)``)."""
    return type(msg) is tuple and len(msg) == 3 and msg[0] == SYSTEM


# ------------------------------------------------------------ debug state


class SysState(enum.Enum):
    """Whether a process serves its messages (sys's ``running``) or only
    system messages (``suspended``)."""

    RUNNING = "running"
    SUSPENDED = "suspended"


@dataclass(slots=True, frozen=True)
class Statistics:
    """What ``otp.sys.statistics(server, 'get')`` answers.

    ``start_time`` and ``current_time`` are wall-clock times
    (``time.time()``) when collection began and now; ``events`` counts the
    events the loop handled (the equivalent of sys's reductions: calls,
    casts, messages, timeouts, continues); ``messages_in`` the messages it
    received, ``messages_out`` the replies it sent."""

    start_time: float
    current_time: float
    events: int
    messages_in: int
    messages_out: int


@dataclass(slots=True, frozen=True)
class DebugFlags:
    """The debug options a process has on (sys's ``Debug`` list)."""

    trace: bool
    statistics: bool


@dataclass(slots=True, frozen=True)
class SysStatus:
    """What ``otp.sys.get_status`` answers (sys's ``{status, Pid,
    {module, Mod}, [PDict, SysState, Parent, Debug, Misc]}``).

    ``behaviour`` names the behaviour (``"gen_server"``, ...);
    ``behaviour_status`` holds its own fields (for a gen_server: its
    ``module``, ``name`` and ``state``); ``message_queue_len`` counts the
    messages the process has taken in and not yet handled (frames still in
    the socket are not counted: the process does not know of them yet)."""

    pid: Pid
    behaviour: str
    status: SysState
    parent: Pid | None
    debug: DebugFlags
    behaviour_status: dict[str, Any]
    message_queue_len: int


class _Counts:
    __slots__ = ("start_time", "events", "messages_in", "messages_out")

    def __init__(self) -> None:
        self.start_time = time.time()
        self.events = 0
        self.messages_in = 0
        self.messages_out = 0


class SysDebug:
    """The sys state of one process: suspended or not, tracing or not, and
    the statistics it collects (None when off).  ``name`` is what trace
    lines call the process (its registered name; None: its pid)."""

    __slots__ = ("suspended", "trace", "stats", "active", "name")

    def __init__(self) -> None:
        self.suspended = False
        self.trace = False
        self.stats: _Counts | None = None
        #: True while tracing or collecting statistics: the loop calls
        #: trace_event only then.
        self.active = False
        self.name: object = None

    def count_in(self) -> None:
        """A message was received."""
        if self.stats is not None:
            self.stats.messages_in += 1

    def count_out(self) -> None:
        """A message was sent."""
        if self.stats is not None:
            self.stats.messages_out += 1

    def statistics(self) -> Statistics | None:
        s = self.stats
        if s is None:
            return None
        return Statistics(s.start_time, time.time(), s.events, s.messages_in, s.messages_out)

    def flags(self) -> DebugFlags:
        return DebugFlags(self.trace, self.stats is not None)

    def set_trace(self, on: bool) -> None:
        self.trace = on
        self.active = on or self.stats is not None

    def set_statistics(self, on: bool) -> None:
        """Start collecting afresh (``on``), or stop and forget."""
        self.stats = _Counts() if on else None
        self.active = self.trace or on


class SysHost(Protocol):
    """What a behaviour loop offers :func:`handle_system_message`."""

    sys_debug: SysDebug

    def sys_get_state(self) -> Any: ...

    def sys_replace_state(self, fn: Callable[[Any], Any]) -> Any: ...

    def sys_status(self) -> dict[str, Any]: ...


# ------------------------------------------------------------- the server


def suspended_match(parent: Pid | None, trap_exit: bool) -> Callable[[object], bool]:
    """What a suspended loop takes in: system messages, and its parent's
    exit signal if it traps exits (it terminates then, suspended or not)."""

    def match(msg: object) -> bool:
        if type(msg) is tuple:
            return len(msg) == 3 and msg[0] == SYSTEM
        return trap_exit and type(msg) is EXIT and msg.pid == parent

    return match


def handle_system_message(host: SysHost, from_: tuple[Pid, Ref], request: object) -> None:
    """Serve ``request`` for ``host`` and answer ``from_``.  A request of an
    unknown kind is answered with ``SysRefused`` (the caller's mistake: the
    process carries on)."""
    dbg = host.sys_debug
    answer: object = None
    if isinstance(request, GetState):
        answer = host.sys_get_state()
    elif isinstance(request, ReplaceState):
        try:
            answer = host.sys_replace_state(request.fn)
        except Exception as exc:  # the caller's function failed: the state stays, the caller hears
            answer = SysRefused(CallbackFailed("replace_state", Crash.from_exception(exc)))
    elif isinstance(request, GetStatus):
        answer = _status(host)
    elif isinstance(request, Suspend):
        dbg.suspended = True
    elif isinstance(request, Resume):
        dbg.suspended = False
    elif isinstance(request, SetStatistics):
        dbg.set_statistics(bool(request.on))
    elif isinstance(request, GetStatistics):
        answer = dbg.statistics()
    elif isinstance(request, SetTrace):
        dbg.set_trace(bool(request.on))
    else:
        answer = SysRefused(UnknownSystemRequest(request))
    p = _process.current()
    try:
        p.send_reply(from_[0], from_[1], answer)
    except EncodeError as exc:
        # A state that cannot travel (a lock, a socket) is the caller's
        # problem to hear about, not a reason for the process to die.
        p.send_reply(from_[0], from_[1], SysRefused(EncodeError(str(exc))))


def _status(host: SysHost) -> SysStatus:
    fields = dict(host.sys_status())
    behaviour = fields.pop("behaviour", type(host).__name__)
    parent = fields.pop("parent", None)
    dbg = host.sys_debug
    p = _process.current()
    return SysStatus(
        pid=p.pid,
        behaviour=str(behaviour),
        status=SysState.SUSPENDED if dbg.suspended else SysState.RUNNING,
        parent=parent if isinstance(parent, Pid) else None,
        debug=dbg.flags(),
        behaviour_status=fields,
        message_queue_len=len(p.mailbox),
    )


def trace_event(host: SysHost, event_type: object, event_content: object, state: object) -> None:
    """One event the loop handled: counted while collecting statistics,
    logged at INFO on the ``otp.sys`` logger while tracing, in sys:trace's
    words.  Event types a gen_server produces: ``"in"`` (the message
    received, as sent: a call or cast is shown as such), ``"out"`` (content
    ``(reply, to)``), ``"noreply"``, ``"continue"`` (content: the term);
    any other type (a gen_statem's event types) is shown as ``receive
    <type> <content> in state <state>``."""
    dbg = host.sys_debug
    if dbg.stats is not None:
        dbg.stats.events += 1
    if dbg.trace:
        trace_log.info("%s", _format_event(dbg.name or _api.self_(), event_type, event_content, state))


def _format_event(name: object, event_type: object, content: object, state: object) -> str:
    if event_type == "in":
        if type(content) is tuple and len(content) == 3 and content[0] == "$gen_call":
            caller = content[1][0] if type(content[1]) is tuple and content[1] else content[1]
            return f"*DBG* {name!r} got call {content[2]!r} from {caller!r}"
        if type(content) is tuple and len(content) == 2 and content[0] == "$gen_cast":
            return f"*DBG* {name!r} got cast {content[1]!r}"
        return f"*DBG* {name!r} got {content!r}"
    if event_type == "out" and type(content) is tuple and len(content) == 2:
        return f"*DBG* {name!r} sent {content[0]!r} to {content[1]!r}, new state {state!r}"
    if event_type == "noreply":
        return f"*DBG* {name!r} new state {state!r}"
    if event_type == "continue":
        return f"*DBG* {name!r} continue {content!r}"
    kind = event_type.value if isinstance(event_type, enum.Enum) else event_type
    return f"*DBG* {name!r} receive {kind} {content!r} in state {state!r}"


# ------------------------------------------------------------- the client

#: sys's default timeout (5000 ms).
DEFAULT_TIMEOUT = 5.0


def _system_call(server: object, request: SysRequest, timeout: float | None) -> Any:
    """Send ``request`` as a system message and wait for the answer as a
    call does (raising what a call raises); raise a refused request's
    error."""
    timeout = check_timeout(timeout)
    p = _process.current()
    pid = _api.resolve(server)
    me = p.pid
    answer = p.call(pid, lambda ref: (SYSTEM, (me, ref), request), timeout, server, request)
    if type(answer) is SysRefused:
        raise answer.error
    return answer


def get_state(server: object, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
    """The state of ``server`` (sys:get_state): a gen_server's state, a
    Service's instance (its attributes are its state)."""
    return _system_call(server, GetState(), timeout)


def replace_state(server: object, fn: Callable[[Any], Any], timeout: float | None = DEFAULT_TIMEOUT) -> Any:
    """Replace the state of ``server`` by ``fn(state)``, run in the server;
    return the new state (sys:replace_state).  If ``fn`` raises, the state
    is unchanged and :class:`CallbackFailed` is raised here.  ``fn`` travels
    to the server (a lambda or closure is sent by value)."""
    return _system_call(server, ReplaceState(fn), timeout)


def get_status(server: object, timeout: float | None = DEFAULT_TIMEOUT) -> SysStatus:
    """The status of ``server`` (sys:get_status), as a :class:`SysStatus`."""
    status: SysStatus = _system_call(server, GetStatus(), timeout)
    return status


def suspend(server: object, timeout: float | None = DEFAULT_TIMEOUT) -> None:
    """Suspend ``server`` (sys:suspend): it answers only system messages;
    the rest (calls included: their callers wait, and time out as usual)
    stays queued until :func:`resume`."""
    _system_call(server, Suspend(), timeout)


def resume(server: object, timeout: float | None = DEFAULT_TIMEOUT) -> None:
    """Resume a suspended ``server`` (sys:resume): it handles what was
    queued meanwhile, in order."""
    _system_call(server, Resume(), timeout)


@overload
def statistics(server: object, flag: Literal["get"], timeout: float | None = ...) -> Statistics | None: ...


@overload
def statistics(server: object, flag: bool, timeout: float | None = ...) -> None: ...


def statistics(
    server: object, flag: bool | Literal["get"], timeout: float | None = DEFAULT_TIMEOUT
) -> Statistics | None:
    """sys:statistics: ``True`` starts collecting (afresh), ``False`` stops;
    ``'get'`` returns the :class:`Statistics` so far, or None if the server
    does not collect them (sys's ``no_statistics``).  Another flag raises
    ValueError before anything is sent."""
    if flag is True or flag is False:
        _system_call(server, SetStatistics(flag), timeout)
        return None
    if flag == "get":
        stats: Statistics | None = _system_call(server, GetStatistics(), timeout)
        return stats
    raise ValueError(f"flag must be True, False or 'get', not {flag!r}")


def trace(server: object, flag: bool, timeout: float | None = DEFAULT_TIMEOUT) -> None:
    """sys:trace: while on, ``server`` logs every event it handles at INFO
    on the ``otp.sys`` logger (``*DBG* <name> got call ... from ...``)."""
    if flag is not True and flag is not False:
        raise ValueError(f"flag must be True or False, not {flag!r}")
    _system_call(server, SetTrace(flag), timeout)
