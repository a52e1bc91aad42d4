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

import logging
from typing import Any, ClassVar

from . import _process
from ._child_spec import ChildSpec
from ._gen_server import (
    DEFAULT_CALL_TIMEOUT,
    ServerName,
    Starter,
    behaviour_child_spec,
    start_behaviour,
)
from ._pid import Pid, Ref
from ._start_result import Started
from ._statem_loop import Loop
from ._statem_records import (
    Call,
    CallbackMode,
    CancelTimeout,
    EventTimeout,
    EventType,
    GenericTimeout,
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
    UpdateTimeout,
)

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


#: What a state may not be called: the behaviour's own attributes.
_BEHAVIOUR_NAMES = frozenset(dir(GenStatem))


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
        Loop(machine, _process.current(), parent, name, state, data, _BEHAVIOUR_NAMES).run(actions)


class _StatemStarter(Starter):
    """gen_server's start protocol (name, answer, unlink on failure) around
    gen_statem's ``init``."""

    def start_machine(self, args: Any) -> tuple[GenStatem, Any, Any, Any] | None:
        """``(machine, state, data, actions)``, or None after ``Ignore``;
        raises ProcessExit after a failure was answered."""
        ran = self.run_init(args)
        if ran is None:
            return None
        machine, result = ran
        if type(result) is not tuple or len(result) not in (2, 3):
            self.fail(("bad_return_from_init", result), log_it=True)
        self.answer(Started(self.proc.pid))
        return machine, result[0], result[1], result[2] if len(result) == 3 else ()
