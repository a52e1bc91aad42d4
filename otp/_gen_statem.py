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

from typing import Any, ClassVar

from . import _process, _statem_records
from ._behaviour import Behaviour, ServerName, Starter
from ._pid import Pid, Ref
from ._statem_loop import Loop
from ._statem_records import *  # noqa: F403 - the records are this module's API too
from ._statem_records import CallbackMode

__all__ = ["GenStatem"]
__all__ += _statem_records.__all__


# --------------------------------------------------------------- behaviour


class GenStatem(Behaviour):
    """Base class of state machines; see the module documentation.  Started
    as :class:`otp.GenServer` is: ``start``, ``start_link`` and
    ``child_spec`` take the same arguments and fail the same ways."""

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

    @classmethod
    def _process_main(cls, args: Any, name: ServerName | None, parent: Pid, ack: Ref, linked: bool) -> None:
        started = _start_machine(Starter(cls, name, parent, ack, linked), args)
        if started is not None:
            machine, state, data, actions = started
            Loop(machine, _process.current(), parent, name, state, data, _BEHAVIOUR_NAMES).run(actions)


#: What a state may not be called: the behaviour's own attributes.
_BEHAVIOUR_NAMES = frozenset(dir(GenStatem))


def _start_machine(starter: Starter, args: Any) -> tuple[GenStatem, Any, Any, Any] | None:
    """``(machine, state, data, actions)`` once ``init`` returned and the
    starter was answered, or None after ``Ignore``; raises ProcessExit
    after a failure was answered."""
    ran = starter.run_init(args)
    if ran is None:
        return None
    machine, result = ran
    if type(result) is not tuple or len(result) not in (2, 3):
        starter.fail(("bad_return_from_init", result), log_it=True)
    starter.started()
    return machine, result[0], result[1], result[2] if len(result) == 3 else ()
