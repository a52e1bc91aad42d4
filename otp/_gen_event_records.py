"""gen_event's handler side: :class:`EventHandler`, the callbacks a handler
defines, and the typed values that pass between a handler and its manager
(what callbacks return, what ``terminate`` receives, what a supervising
process is sent, what the caller gets raised).

Apart from the manager (:mod:`otp._gen_event`) because these are the
vocabulary of the behaviour, read by handlers and callers alike, while the
manager is one process's logic.
"""

from __future__ import annotations

import logging
from enum import Enum
from typing import Any, NamedTuple

from ._errors import OTPError
from ._pid import Pid
from ._reasons import format_reason

log = logging.getLogger("otp")

__all__ = [
    "EventHandler",
    "HandlerRef",
    "RemoveHandler",
    "SwapHandler",
    "SwapArgs",
    "HandlerRemoved",
    "Swapped",
    "HandlerExit",
    "OwnerExited",
    "HandlerFailed",
    "HandlerNotFound",
    "HandlerError",
]


class EventHandler:
    """Base class of event handlers.  Every callback has a documented default."""

    def init(self, args: Any) -> Any:
        """Set up; return the handler's state (default: ``args``).  Raising
        refuses the handler: ``add_handler`` raises :class:`HandlerError`.
        After a swap, ``args`` is a :class:`SwapArgs`."""
        return args

    def handle_event(self, event: Any, state: Any) -> Any:
        """An event from ``notify``/``sync_notify``: return the new state,
        :class:`RemoveHandler` or :class:`SwapHandler`.  Default: keep the state."""
        return state

    def handle_call(self, request: Any, state: Any) -> Any:
        """A request from :meth:`GenEvent.call`: return
        ``otp.Reply(reply, state)``, ``RemoveHandler(reply)`` or
        ``SwapHandler(..., reply=reply)``.  Default: the handler fails (a
        handler without the clause)."""
        raise NotImplementedError(f"{type(self).__name__} does not handle calls ({request!r})")

    def handle_info(self, msg: Any, state: Any) -> Any:
        """Any other message the manager receives (an ``EXIT`` of a
        supervising process included); returns as ``handle_event``.
        Default: log a warning, keep the state (OTP's default)."""
        log.warning("%s: unexpected message %r", type(self).__name__, msg)
        return state

    def terminate(self, arg: Any, state: Any) -> Any:
        """The handler is removed.  ``arg`` is ``delete_handler``'s or a
        swap's argument, :class:`OwnerExited`, a :class:`HandlerExit` or
        :class:`HandlerFailed`.  The value returned is ``delete_handler``'s
        result, or goes to the next handler of a swap.  Default: None."""
        return None


#: A handler: its class, or ``(class, id)``.
HandlerRef = type[EventHandler] | tuple[type[EventHandler], Any]


class RemoveHandler(NamedTuple):
    """Callback result: remove this handler (``terminate`` gets
    ``HandlerExit.REMOVE_HANDLER``); ``reply`` answers a call."""

    reply: Any = None


class SwapHandler(NamedTuple):
    """Callback result: replace this handler by ``handler``: this one's
    ``terminate(args1, state)`` runs, then ``handler``'s
    ``init(SwapArgs(args2, what terminate returned))``; ``reply`` answers
    a call."""

    args1: Any
    state: Any
    handler: HandlerRef
    args2: Any
    reply: Any = None


class SwapArgs(NamedTuple):
    """What ``init`` of a handler swapped in receives: the swap's ``args``
    and ``term``, what the old handler's ``terminate`` returned (a
    :class:`HandlerFailed` if it raised, a :class:`HandlerNotFound` if no
    such handler was installed)."""

    args: Any
    term: Any


class HandlerExit(Enum):
    """Arguments of ``terminate`` for removals the manager decides."""

    #: The manager is terminating.
    STOP = "stop"
    #: A callback returned :class:`RemoveHandler`.
    REMOVE_HANDLER = "remove_handler"


class OwnerExited(NamedTuple):
    """``terminate``'s argument when the process supervising the handler
    exited with ``reason`` (OTP's ``{stop, Reason}``)."""

    reason: Any


class HandlerFailed(NamedTuple):
    """``terminate``'s argument when a callback raised (``reason`` an
    :class:`otp.Crash`) or returned a bad value (``('bad_return_value',
    value)``)."""

    reason: Any


class Swapped(NamedTuple):
    """:class:`HandlerRemoved` reason: the handler was replaced by
    ``handler``, now supervised by ``owner`` (None: by no one)."""

    handler: HandlerRef
    owner: Pid | None


class HandlerRemoved(NamedTuple):
    """Sent to the supervising process when its handler is removed (OTP's
    ``{gen_event_EXIT, Handler, Reason}``).  ``reason``: ``'normal'``
    (deleted, or it returned :class:`RemoveHandler`), ``'shutdown'`` (the
    manager is terminating), :class:`Swapped`, or what the callback failed
    with (an :class:`otp.Crash`, or ``('bad_return_value', value)``)."""

    manager: Pid
    handler: HandlerRef
    reason: Any


class HandlerNotFound(OTPError, LookupError):
    """No such handler is installed in the manager."""

    def __init__(self, handler: object) -> None:
        super().__init__(handler)
        self.handler = handler

    def __str__(self) -> str:
        return f"no handler {self.handler!r} is installed"


class HandlerError(OTPError):
    """A handler's callback raised (``reason`` an :class:`otp.Crash`) or
    returned a bad value (``('bad_return_value', value)``); the handler is
    not installed (anymore)."""

    def __init__(self, handler: object, reason: object) -> None:
        super().__init__(handler, reason)
        self.handler = handler
        self.reason = reason

    def __str__(self) -> str:
        return f"handler {self.handler!r} failed: {format_reason(self.reason)}"
