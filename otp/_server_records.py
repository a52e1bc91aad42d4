"""What a gen_server callback returns: ``Reply``, ``NoReply``, ``Stop``, the
``Continue`` and ``HIBERNATE`` actions and ``Ignore`` (see
:mod:`otp._gen_server` for what each means).

Apart from the server because every behaviour speaks some of them: an
``init`` of any behaviour may return ``Ignore`` or ``Stop`` (the start
protocol, :mod:`otp._behaviour`, reads them), a state machine stops with
``Stop`` and hibernates with ``HIBERNATE``, a gen_event handler answers a
call with ``Reply``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Reply", "NoReply", "Stop", "Continue", "Ignore", "HIBERNATE", "INFINITY", "NO_REPLY"]

#: ``Stop``'s reply when none is given (a call is not answered).
NO_REPLY: Any = object()


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name  # unpickles as the module's own instance: `is` works


class Continue(NamedTuple):
    """Action: run ``handle_continue(term, state)`` before any message."""

    term: Any


class Reply(NamedTuple):
    reply: Any
    state: Any
    action: Any = None


class NoReply(NamedTuple):
    state: Any
    action: Any = None


class Stop(NamedTuple):
    reason: Any
    state: Any = None
    reply: Any = NO_REPLY


Ignore = _Sentinel("Ignore")
#: A timeout action meaning none, as OTP's atom (same as None or math.inf).
INFINITY = "infinity"
HIBERNATE = _Sentinel("HIBERNATE")
