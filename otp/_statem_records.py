"""gen_statem's records: callback modes, event types, what a state
callback returns (results) and what it asks for (actions), as typed values
(see :mod:`otp._gen_statem` for what each means to the machine).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

__all__ = [
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
