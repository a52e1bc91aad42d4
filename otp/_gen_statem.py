"""gen_statem: a process that runs a state machine, OTP's gen_statem.

Subclass :class:`GenStatem`, say how events reach your code
(``callback_mode``), start it with ``MyMachine.start_link(args)``, talk to it
with ``otp.call`` / ``otp.cast`` / ``otp.send`` as to a gen_server::

    class Switch(otp.GenStatem):
        callback_mode = "state_functions"

        def init(self, args):
            return "off", 0                     # (state, data)

        def off(self, event_type, content, flips):
            if isinstance(event_type, otp.Call) and content == "flip":
                return otp.NextState("on", flips + 1, [otp.ReplyTo(event_type.from_, "on")])
            return otp.KeepStateAndData()

        def on(self, event_type, content, flips):
            ...

Callback modes (:class:`CallbackMode`)
    ``"state_functions"``: the state is a str and the method of that name
    handles its events, ``method(event_type, content, data)``;
    ``"handle_event_function"``: any state, one method
    ``handle_event(event_type, content, state, data)``.  With
    ``state_enter = True`` the same callback also gets an *enter call*
    (event type ``ENTER``, the previous state as content) after every state
    change, on ``RepeatState``, and for the initial state (whose previous
    state is itself).

Event types
    :class:`Call` ``(from_)`` for ``otp.call``, and :class:`EventType`'s
    ``CAST``, ``INFO`` (any other message), ``INTERNAL`` (from
    :class:`NextEvent`), ``TIMEOUT`` (the event timeout),
    ``STATE_TIMEOUT``; :class:`NamedTimeout` ``(name)`` for a generic
    timeout.  ``EventType`` members equal their OTP names as str
    (``EventType.CAST == "cast"``).

Results
    :class:`NextState`, :class:`KeepState`, :class:`KeepStateAndData`,
    :class:`RepeatState`, :class:`RepeatStateAndData` (each with a list of
    actions), ``otp.Stop(reason[, data])`` and :class:`StopAndReply`.
    ``init`` returns ``(state, data)``, ``(state, data, actions)``,
    ``otp.Ignore`` or ``otp.Stop(reason)``.

Actions, run in order
    :class:`ReplyTo`, :class:`Postpone`, :class:`NextEvent`,
    ``otp.HIBERNATE``, :class:`EventTimeout`, :class:`StateTimeout`,
    :class:`GenericTimeout`, :class:`CancelTimeout`, :class:`UpdateTimeout`.
    An enter call may not postpone nor insert events, nor change the state.

Semantics follow OTP: a postponed event is retried after the next state
change, in order; events inserted by ``NextEvent`` are handled next, in
list order, before retried postponed events and before any message; an
event timeout is cancelled by any event, a state timeout by a state change,
a generic timeout only by a new one of the same name or ``CancelTimeout``;
a time of None or ``math.inf`` (OTP's infinity) cancels the timer.
Timeouts are the loop's own receive timeout (no timer process): a timeout
that has expired is handled before messages still in the mailbox (OTP
queues it behind messages that arrived before it expired, which a Python
process cannot tell apart), after inserted and retried events.  Start,
names, ``terminate`` and ``otp.stop`` behave as for :class:`otp.GenServer`.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import Any, ClassVar, NamedTuple, NoReturn

from . import _logging, _process, _sys
from ._child_spec import ChildSpec
from ._errors import ProcessExit, Timeout
from ._gen_server import (
    DEFAULT_CALL_TIMEOUT,
    HIBERNATE,
    Ignore,
    ServerName,
    Starter,
    Stop,
    behaviour_child_spec,
    reply,
    start_behaviour,
)
from ._pid import Pid, Ref
from ._reasons import EXIT, Crash, is_clean
from ._start_result import IGNORED, Started
from ._timeouts import check_timeout

log = logging.getLogger("otp")

__all__ = [
    "GenStatem",
    "CallbackMode",
    "EventType",
    "Call",
    "NamedTimeout",
    "NextState",
    "KeepState",
    "KeepStateAndData",
    "RepeatState",
    "RepeatStateAndData",
    "StopAndReply",
    "ReplyTo",
    "Postpone",
    "NextEvent",
    "EventTimeout",
    "StateTimeout",
    "GenericTimeout",
    "CancelTimeout",
    "UpdateTimeout",
    "PendingTimeout",
]


class CallbackMode(str, Enum):
    """How events reach the machine's code (OTP's callback_mode)."""

    STATE_FUNCTIONS = "state_functions"
    HANDLE_EVENT_FUNCTION = "handle_event_function"

    def __str__(self) -> str:
        return str(self.value)


class EventType(str, Enum):
    """The event types without a parameter; each equals its OTP name."""

    CAST = "cast"
    INFO = "info"
    INTERNAL = "internal"
    TIMEOUT = "timeout"  # the event timeout
    STATE_TIMEOUT = "state_timeout"
    ENTER = "enter"  # a state enter call, not an event

    def __str__(self) -> str:
        return str(self.value)


class Call(NamedTuple):
    """The event type of an ``otp.call``: answer ``from_`` with
    :class:`ReplyTo` or ``otp.reply``."""

    from_: tuple


class NamedTimeout(NamedTuple):
    """The event type of the generic timeout ``name`` (OTP's
    ``{timeout, Name}``)."""

    name: Any


#: An event's type: ``Call(from_)``, an :class:`EventType` or ``NamedTimeout(name)``.
EventKind = EventType | Call | NamedTimeout
#: What names a timer: ``EventType.TIMEOUT``, ``EventType.STATE_TIMEOUT`` or ``NamedTimeout(name)``.
TimeoutKind = EventType | NamedTimeout


# ------------------------------------------------------------------ results


@dataclass(frozen=True, slots=True)
class NextState:
    """Go to ``state`` (maybe the same one) with ``data``."""

    state: Any
    data: Any
    actions: Iterable[Any] = ()


@dataclass(frozen=True, slots=True)
class KeepState:
    """Stay in the state, with ``data``."""

    data: Any
    actions: Iterable[Any] = ()


@dataclass(frozen=True, slots=True)
class KeepStateAndData:
    """Stay in the state, keep the data; only run ``actions``."""

    actions: Iterable[Any] = ()


@dataclass(frozen=True, slots=True)
class RepeatState:
    """Stay in the state with ``data``, and repeat its enter call (with
    ``state_enter``)."""

    data: Any
    actions: Iterable[Any] = ()


@dataclass(frozen=True, slots=True)
class RepeatStateAndData:
    """Stay in the state, keep the data, repeat its enter call."""

    actions: Iterable[Any] = ()


class _KeepData:
    def __repr__(self) -> str:
        return "<keep data>"


_KEEP_DATA: Any = _KeepData()


@dataclass(frozen=True, slots=True)
class StopAndReply:
    """Send ``replies`` (:class:`ReplyTo` s), then stop with ``reason``
    (``terminate`` gets ``data`` if given, else the current data)."""

    reason: Any
    replies: Iterable[ReplyTo]
    data: Any = _KEEP_DATA


# ------------------------------------------------------------------ actions


@dataclass(frozen=True, slots=True)
class ReplyTo:
    """Answer the call ``from_`` with ``value`` (now, during the transition)."""

    from_: tuple
    value: Any


@dataclass(frozen=True, slots=True)
class Postpone:
    """Keep the current event and retry it after the next state change."""


@dataclass(frozen=True, slots=True)
class NextEvent:
    """Handle the event ``(type, content)`` next, before any queued message
    (``type`` is usually ``EventType.INTERNAL``)."""

    type: Any
    content: Any = None


@dataclass(frozen=True, slots=True)
class EventTimeout:
    """An event of type ``TIMEOUT`` with ``content`` after ``time`` seconds
    unless an event comes first.  ``absolute``: ``time`` is a
    ``time.monotonic()`` instant."""

    time: float | None
    content: Any = None
    absolute: bool = False


@dataclass(frozen=True, slots=True)
class StateTimeout:
    """An event of type ``STATE_TIMEOUT`` with ``content`` after ``time``
    seconds unless the state changes first; replaces the running one."""

    time: float | None
    content: Any = None
    absolute: bool = False


@dataclass(frozen=True, slots=True)
class GenericTimeout:
    """An event of type ``NamedTimeout(name)`` with ``content`` after
    ``time`` seconds; replaces the running one of that name."""

    name: Any
    time: float | None
    content: Any = None
    absolute: bool = False


@dataclass(frozen=True, slots=True)
class CancelTimeout:
    """Cancel the timer ``kind`` (``EventType.TIMEOUT``,
    ``EventType.STATE_TIMEOUT`` or ``NamedTimeout(name)``), if it runs."""

    kind: Any


@dataclass(frozen=True, slots=True)
class UpdateTimeout:
    """Give the running timer ``kind`` a new ``content``; if it is not
    running, it fires at once with that content (OTP's update)."""

    kind: Any
    content: Any


class PendingTimeout(NamedTuple):
    """A running timer, as the machine's sys status shows it."""

    kind: TimeoutKind
    seconds_left: float
    content: Any


_TIMER_ACTIONS = (EventTimeout, StateTimeout, GenericTimeout, CancelTimeout, UpdateTimeout)
_ACTIONS = (ReplyTo, Postpone, NextEvent, *_TIMER_ACTIONS)
_EVENT_TYPES_OF_NEXT_EVENT = frozenset(EventType) - {EventType.ENTER}


# --------------------------------------------------------------- behaviour


class GenStatem:
    """Base class of state machines; see the module documentation."""

    #: ``"state_functions"`` or ``"handle_event_function"`` (required).
    callback_mode: ClassVar[CallbackMode | str | None] = None
    #: Call the state callback with ``ENTER`` after each state change.
    state_enter: ClassVar[bool] = False

    def init(self, args: Any) -> Any:
        """Return ``(state, data)``, ``(state, data, actions)``,
        ``otp.Ignore`` or ``otp.Stop(reason)``."""
        raise NotImplementedError(f"{type(self).__name__} has no init")

    def handle_event(self, event_type: Any, content: Any, state: Any, data: Any) -> Any:
        """The state callback in ``"handle_event_function"`` mode."""
        raise NotImplementedError(f"{type(self).__name__} does not handle {event_type!r} events in {state!r}")

    def terminate(self, reason: Any, state: Any, data: Any) -> None:
        """Clean up before the process exits.  Not guaranteed: an exit signal
        the machine does not trap ends it without ``terminate``."""

    # ------------------------------------------------------------- starting

    @classmethod
    def start(
        cls,
        args: Any = None,
        *,
        name: ServerName | None = None,
        timeout: float | None = DEFAULT_CALL_TIMEOUT,
        max_mailbox: int | None = None,
    ) -> Pid | None:
        """Start a machine (not linked); as :meth:`otp.GenServer.start`: its
        pid once ``init`` returned, None after ``Ignore``, StartError for a
        failed ``init``, a name clash (``('already_started', pid)``) or a
        start that took longer than ``timeout``."""
        return _start(cls, args, name, timeout, False, max_mailbox)

    @classmethod
    def start_link(
        cls,
        args: Any = None,
        *,
        name: ServerName | None = None,
        timeout: float | None = DEFAULT_CALL_TIMEOUT,
        max_mailbox: int | None = None,
    ) -> Pid | None:
        """Like :meth:`start`, linked to the caller (a failed start never
        kills the caller through the link)."""
        return _start(cls, args, name, timeout, True, max_mailbox)

    @classmethod
    def child_spec(
        cls,
        args: Any = None,
        id: Any = None,  # noqa: A002
        *,
        name: ServerName | None = None,
        max_mailbox: int | None = None,
        **kw: Any,
    ) -> ChildSpec:
        """A child spec running ``cls.start_link(args, name=name,
        max_mailbox=max_mailbox)`` (id defaults to the class name); ``kw``
        are child_spec's keywords."""
        return behaviour_child_spec(cls.start_link, cls.__name__, args, id, name, max_mailbox, kw)


def _start(
    cls: type, args: Any, name: ServerName | None, timeout: float | None, link: bool, max_mailbox: int | None
) -> Pid | None:
    if not (isinstance(cls, type) and issubclass(cls, GenStatem)):
        raise TypeError(f"{cls!r} is not a GenStatem subclass")
    return start_behaviour(_statem_main, cls, args, name, timeout, link, max_mailbox)


def _statem_main(cls: type, args: Any, name: ServerName | None, parent: Pid, ack: Ref, linked: bool) -> None:
    started = _StatemStarter(cls, name, parent, ack, linked).start_machine(args)
    if started is not None:
        machine, state, data, actions = started
        _Loop(machine, _process.current(), parent, name, state, data).run(actions)


class _StatemStarter(Starter):
    """gen_server's start protocol (name, answer, unlink on failure) around
    gen_statem's ``init``."""

    def start_machine(self, args: Any) -> tuple[GenStatem, Any, Any, Any] | None:
        """``(machine, state, data, actions)``, or None after ``Ignore``;
        raises ProcessExit after a failure was answered."""
        self.register()
        try:
            machine = self.cls()
            result = machine.init(args)
        except ProcessExit:
            raise
        except Exception as exc:
            self.fail(Crash.from_exception(exc), log_it=True)
        if result is Ignore:
            self.release()
            self.answer(IGNORED)
            return None
        if isinstance(result, Stop):
            self.fail(result.reason, log_it=False)
        if type(result) is not tuple or len(result) not in (2, 3):
            self.fail(("bad_return_from_init", result), log_it=True)
        self.answer(Started(self.proc.pid))
        return machine, result[0], result[1], result[2] if len(result) == 3 else ()


# ------------------------------------------------------------------ machine


class _Event(NamedTuple):
    type: Any
    content: Any


class _Timer(NamedTuple):
    deadline: float
    seq: int
    content: Any


class _TimerVerb(Enum):
    SET = "set"
    CANCEL = "cancel"
    UPDATE = "update"


class _TimerOp(NamedTuple):
    kind: TimeoutKind
    verb: _TimerVerb
    seconds: float | None  # SET: None never fires, i.e. cancels
    absolute: bool
    content: Any


class _Plan:
    """What one transition's actions asked for, beyond the replies (sent at once)."""

    __slots__ = ("postpone", "next_events", "timers", "hibernate")

    def __init__(self) -> None:
        self.postpone = False
        self.next_events: list[_Event] = []
        self.timers: list[_TimerOp] = []
        self.hibernate = False


class _BadAction(Exception):
    """An action a transition may not carry (caught inside this module)."""


class _Loop:
    """The event loop of one machine; also the host of its ``sys`` support."""

    def __init__(
        self, machine: GenStatem, proc: _process.Process, parent: Pid, name: ServerName | None, state: Any, data: Any
    ) -> None:
        self.machine = machine
        self.proc = proc
        self.parent = parent
        self.state = state
        self.data = data
        self.enter_calls = bool(type(machine).state_enter)
        self.queue: deque[_Event] = deque()  # inserted and retried events, handled before messages
        self.postponed: list[_Event] = []
        self.timers: dict[TimeoutKind, _Timer] = {}
        self.timer_seq = 0
        self.hibernate = False
        self.last: Any = None
        self.sys_debug = _sys.SysDebug()
        self.sys_debug.name = name
        self.callback: Callable[[Any, Any], Any] = self.call_handle_event

    # ---------------------------------------------------------------- sys

    def sys_get_state(self) -> tuple[Any, Any]:
        return (self.state, self.data)

    def sys_replace_state(self, fn: Callable[[tuple[Any, Any]], Any]) -> tuple[Any, Any]:
        new = fn((self.state, self.data))
        if type(new) is not tuple or len(new) != 2:
            raise TypeError(f"a gen_statem's state is (state, data), not {new!r}")
        self.state, self.data = new
        return new

    def sys_status(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "behaviour": "gen_statem",
            "parent": self.parent,
            "module": type(self.machine).__name__,
            "state": self.state,
            "data": self.data,
            "postponed": len(self.postponed),
            "timeouts": [
                PendingTimeout(kind, max(0.0, t.deadline - now), t.content)
                for kind, t in sorted(self.timers.items(), key=lambda kt: (kt[1].deadline, kt[1].seq))
            ],
        }

    # --------------------------------------------------------------- loop

    def run(self, init_actions: Any) -> NoReturn:
        try:
            mode = CallbackMode(type(self.machine).callback_mode)
        except ValueError:
            self.exit(("bad_callback_mode", type(self.machine).callback_mode))
        if mode is CallbackMode.STATE_FUNCTIONS:
            self.callback = self.call_state_function
        # The initial state is entered as after a state change: its enter
        # call sees the state itself as the previous one.
        self.transition(None, NextState(self.state, self.data, init_actions), entering=True)
        while True:
            event = self.next_event()
            self.timers.pop(EventType.TIMEOUT, None)  # any event cancels the event timeout
            if self.sys_debug.active:
                _sys.trace_event(self, event.type, event.content, self.state)
            self.last = event
            result = self.invoke(partial(self.callback, event.type, event.content))
            self.transition(event, result, entering=False)

    def next_event(self) -> _Event:
        proc = self.proc
        while True:
            if self.sys_debug.suspended:
                # Only system messages, and the parent's exit signal when
                # trapping exits (it terminates); the rest waits, in order.
                self.event_of(proc.receive(None, _sys.suspended_match(self.parent, proc.sig.trap_exit)))
                continue
            if self.queue:
                return self.queue.popleft()
            wait = None
            if self.timers:
                kind, timer = min(self.timers.items(), key=lambda kt: (kt[1].deadline, kt[1].seq))
                wait = timer.deadline - time.monotonic()
                if wait <= 0:
                    del self.timers[kind]
                    return _Event(kind, timer.content)
            if self.hibernate:
                self.hibernate = False
                gc.collect()
            try:
                msg = proc.receive(wait)
            except Timeout:
                continue
            event = self.event_of(msg)
            if event is not None:
                return event

    def event_of(self, msg: Any) -> _Event | None:
        """The event a message is; None for a system message (served here)."""
        if type(msg) is tuple and msg:
            tag = msg[0]
            if tag == _sys.SYSTEM and len(msg) == 3:
                _sys.handle_system_message(self, msg[1], msg[2])
                return None
            self.sys_debug.count_in()
            if tag == "$gen_call" and len(msg) == 3:
                return _Event(Call(msg[1]), msg[2])
            if tag == "$gen_cast" and len(msg) == 2:
                return _Event(EventType.CAST, msg[1])
            if tag == "$gen_stop" and len(msg) == 2:
                self.last = msg
                self.exit(msg[1])
        else:
            self.sys_debug.count_in()
        if isinstance(msg, EXIT) and msg.pid == self.parent and self.proc.sig.trap_exit:
            self.last = msg
            self.exit(msg.reason)
        return _Event(EventType.INFO, msg)

    # ---------------------------------------------------------- callbacks

    def call_handle_event(self, event_type: Any, content: Any) -> Any:
        return self.machine.handle_event(event_type, content, self.state, self.data)

    def call_state_function(self, event_type: Any, content: Any) -> Any:
        state = self.state
        fn = None
        # A state names a method of the machine's own class, never one of
        # the behaviour's (init, terminate, start...) nor a private one.
        if type(state) is str and not state.startswith("_") and not hasattr(GenStatem, state):
            fn = getattr(self.machine, state, None)
        if not callable(fn):
            raise NotImplementedError(f"{type(self.machine).__name__} has no state function for the state {state!r}")
        return fn(event_type, content, self.data)

    def invoke(self, callback: Callable[[], Any]) -> Any:
        try:
            return callback()
        except ProcessExit as exc:
            if self.proc.sig.fatal is not None:
                raise  # killed by an exit signal it does not trap: no terminate
            self.exit(exc.reason)
        except Exception as exc:
            self.exit(Crash.from_exception(exc))

    # --------------------------------------------------------- transition

    def transition(self, event: _Event | None, result: Any, *, entering: bool) -> None:
        """Apply what a state callback returned for ``event`` (None: the
        transition into the initial state, after ``init``)."""
        plan = _Plan()
        state, data, repeat, actions = self.outcome(result, enter=False)
        self.plan(actions, plan, enter=False, init=event is None)
        previous = self.state
        changed = state != previous
        if plan.postpone and event is not None:
            self.postponed.append(event)
        self.state, self.data = state, data
        if changed:
            # Postponed events are retried, oldest first, in the new state.
            self.queue.extendleft(reversed(self.postponed))
            self.postponed.clear()
            self.timers.pop(EventType.STATE_TIMEOUT, None)
        self.queue.extendleft(reversed(plan.next_events))
        if self.enter_calls and (changed or repeat or entering):
            self.enter(previous, plan)
        self.start_timers(plan.timers)
        if self.queue:
            self.timers.pop(EventType.TIMEOUT, None)  # the next queued event would cancel it
        self.hibernate = plan.hibernate

    def enter(self, previous: Any, plan: _Plan) -> None:
        while True:
            result = self.invoke(partial(self.callback, EventType.ENTER, previous))
            _, self.data, repeat, actions = self.outcome(result, enter=True)
            self.plan(actions, plan, enter=True, init=False)
            if not repeat:
                return

    def outcome(self, result: Any, *, enter: bool) -> tuple[Any, Any, bool, Any]:
        """``(state, data, repeat, actions)`` of a callback's result; stops
        the machine for ``Stop``, ``StopAndReply`` and a bad result."""
        kind = type(result)
        if kind is NextState:
            if enter and result.state != self.state:
                self.exit(("bad_state_enter_return_from_state_function", result))
            return result.state, result.data, False, result.actions
        if kind is KeepState:
            return self.state, result.data, False, result.actions
        if kind is KeepStateAndData:
            return self.state, self.data, False, result.actions
        if kind is RepeatState:
            return self.state, result.data, True, result.actions
        if kind is RepeatStateAndData:
            return self.state, self.data, True, result.actions
        if kind is Stop and result.reply is Stop._field_defaults["reply"]:
            if result.state is not None:
                self.data = result.state
            self.exit(result.reason)
        if kind is StopAndReply:
            try:
                replies = _action_list(result.replies)
                if not all(type(r) is ReplyTo and _is_from(r.from_) for r in replies):
                    raise _BadAction(result.replies)
            except (_BadAction, TypeError):
                self.exit(("bad_return_from_state_function", result))
            for r in replies:
                self.reply(r.from_, r.value)
            if result.data is not _KEEP_DATA:
                self.data = result.data
            self.exit(result.reason)
        self.exit(("bad_state_enter_return_from_state_function" if enter else "bad_return_from_state_function", result))

    def plan(self, actions: Any, plan: _Plan, *, enter: bool, init: bool) -> None:
        """Run ``actions`` in order: replies now, the rest into ``plan``."""
        try:
            items = _action_list(actions)
        except _BadAction as exc:
            self.exit(("bad_action_from_state_function", exc.args[0]))
        for action in items:
            kind = type(action)
            try:
                if kind is ReplyTo:
                    if not _is_from(action.from_):
                        raise _BadAction(action)
                    self.reply(action.from_, action.value)
                elif action is HIBERNATE:
                    plan.hibernate = True
                elif kind in _TIMER_ACTIONS:
                    plan.timers.append(_timer_op(action))
                elif enter:
                    raise _BadAction(action)  # an enter call may not postpone nor insert events
                elif kind is Postpone and not init:
                    plan.postpone = True
                elif kind is NextEvent:
                    plan.next_events.append(_Event(_next_event_type(action), action.content))
                else:
                    raise _BadAction(action)
            except (_BadAction, TypeError, ValueError):
                why = "bad_state_enter_action_from_state_function" if enter else "bad_action_from_state_function"
                self.exit((why, action))

    def reply(self, from_: tuple, value: Any) -> None:
        reply(from_, value)
        self.sys_debug.count_out()

    def start_timers(self, ops: list[_TimerOp]) -> None:
        now = time.monotonic()
        timers = self.timers
        for op in ops:
            if op.verb is _TimerVerb.CANCEL or (op.verb is _TimerVerb.SET and op.seconds is None):
                timers.pop(op.kind, None)
                continue
            self.timer_seq += 1
            if op.verb is _TimerVerb.UPDATE:
                running = timers.get(op.kind)
                deadline = now if running is None else running.deadline
            else:
                assert op.seconds is not None
                deadline = op.seconds if op.absolute else now + op.seconds
            timers[op.kind] = _Timer(deadline, self.timer_seq, op.content)

    def exit(self, reason: Any) -> NoReturn:
        try:
            self.machine.terminate(reason, self.state, self.data)
        except ProcessExit:
            raise
        except Exception as exc:
            reason = Crash.from_exception(exc)
        if not is_clean(reason):
            log.error(
                "%s %r terminating\n** last event: %r\n** state: %r\n** reason: %s",
                type(self.machine).__name__,
                self.proc.pid,
                self.last,
                self.state,
                reason.traceback.rstrip() if isinstance(reason, Crash) else repr(reason),
                extra=_logging.report("crash", pid=self.proc.pid, reason=reason),
            )
        raise ProcessExit(reason)


def _action_list(actions: Any) -> list[Any]:
    """``actions`` as a list: one action alone, or an iterable of them."""
    if isinstance(actions, _ACTIONS) or actions is HIBERNATE:
        return [actions]
    if isinstance(actions, (str, bytes)):
        raise _BadAction(actions)
    try:
        return list(actions)
    except TypeError:
        raise _BadAction(actions) from None


def _is_from(from_: Any) -> bool:
    return type(from_) is tuple and len(from_) == 2 and isinstance(from_[0], Pid)


def _next_event_type(action: NextEvent) -> EventKind:
    kind = action.type
    if isinstance(kind, (Call, NamedTimeout)):
        if isinstance(kind, Call) and not _is_from(kind.from_):
            raise _BadAction(action)
        return kind
    if not isinstance(kind, str):
        raise _BadAction(action)
    event_type = EventType(kind)  # ValueError for an unknown one
    if event_type not in _EVENT_TYPES_OF_NEXT_EVENT:
        raise _BadAction(action)
    return event_type


def _timeout_kind(kind: Any) -> TimeoutKind:
    if isinstance(kind, NamedTimeout):
        return kind
    if isinstance(kind, str) and kind in (EventType.TIMEOUT, EventType.STATE_TIMEOUT):
        return EventType(kind)
    raise _BadAction(kind)


def _timer_op(action: Any) -> _TimerOp:
    """The timer operation an action asks for; ValueError or TypeError for
    a bad time, _BadAction for a bad kind."""
    kind = type(action)
    if kind is CancelTimeout:
        return _TimerOp(_timeout_kind(action.kind), _TimerVerb.CANCEL, None, False, None)
    if kind is UpdateTimeout:
        return _TimerOp(_timeout_kind(action.kind), _TimerVerb.UPDATE, None, False, action.content)
    seconds = check_timeout(action.time, "a gen_statem timeout")
    if type(action.absolute) is not bool:
        raise _BadAction(action)
    if kind is EventTimeout:
        which: TimeoutKind = EventType.TIMEOUT
    elif kind is StateTimeout:
        which = EventType.STATE_TIMEOUT
    else:
        which = NamedTimeout(action.name)
        hash(which)  # TypeError for a name no dict can hold
    return _TimerOp(which, _TimerVerb.SET, seconds, action.absolute, action.content)
