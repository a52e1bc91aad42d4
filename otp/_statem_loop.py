"""The gen_statem machine (:mod:`otp._gen_statem`): the loop that takes
events (messages, calls, casts, timeouts, inserted and postponed events) in
order, runs the state callbacks, applies their results and actions, keeps
the timers, and answers ``otp.sys``.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Callable
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from . import _process, _sys
from ._behaviour import ServerName, exit_after_terminate
from ._errors import ProcessExit, Timeout
from ._gen_server import reply
from ._pid import Pid
from ._reasons import EXIT, Crash
from ._server_records import HIBERNATE, Stop
from ._statem_records import (
    _ACTIONS,
    _EVENT_TYPES_OF_NEXT_EVENT,
    _KEEP_DATA,
    _TIMER_ACTIONS,
    Call,
    CallbackMode,
    CancelTimeout,
    EventKind,
    EventTimeout,
    EventType,
    KeepState,
    KeepStateAndData,
    NamedTimeout,
    NextEvent,
    NextState,
    PendingTimeout,
    Postpone,
    RepeatState,
    RepeatStateAndData,
    ReplyTo,
    StateTimeout,
    StopAndReply,
    TimeoutKind,
    UpdateTimeout,
)
from ._timeouts import check_timeout

if TYPE_CHECKING:
    from ._gen_statem import GenStatem

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


class Loop:
    """The event loop of one machine; also the host of its ``sys`` support."""

    def __init__(
        self,
        machine: GenStatem,
        proc: _process.Process,
        parent: Pid,
        name: ServerName | None,
        state: Any,
        data: Any,
        reserved: frozenset[str],
    ) -> None:
        self.machine = machine
        self.reserved = reserved
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
        if type(state) is str and not state.startswith("_") and state not in self.reserved:
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
        machine, state, data = self.machine, self.state, self.data
        exit_after_terminate(
            machine,
            lambda why: machine.terminate(why, state, data),
            reason,
            (("last event", self.last), ("state", self.state)),
        )


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
