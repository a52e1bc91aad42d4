"""Exit reasons and the two signal messages, ``EXIT`` and ``DOWN``.

Reasons are plain data, exactly OTP's vocabulary: ``'normal'``,
``'shutdown'``, ``('shutdown', term)``, ``'kill'`` (only ever *sent*),
``'killed'``, ``'noproc'``; an uncaught exception becomes a :class:`Crash`.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import NamedTuple

from ._pid import Pid, Ref

__all__ = [
    "EXIT",
    "DOWN",
    "NodeUp",
    "NodeDown",
    "Response",
    "Crash",
    "format_reason",
    "is_normal",
    "is_shutdown",
    "is_clean",
]


class EXIT(NamedTuple):
    """A trapped exit signal: ``pid`` exited, or sent an exit, with ``reason``."""

    pid: Pid
    reason: object


class DOWN(NamedTuple):
    """The monitored process ``pid`` (monitor ``ref``) exited with ``reason``."""

    ref: Ref
    pid: Pid
    reason: object


class NodeUp(NamedTuple):
    """The connection to ``node`` is up (``otp.net_kernel.monitor_nodes``)."""

    node: str


class NodeDown(NamedTuple):
    """The connection to ``node`` is lost, or could not be made
    (``otp.monitor_node``, ``otp.net_kernel.monitor_nodes``).  ``reason``:
    ``'connection_closed'`` (the peer closed it, or died: its host closed
    its sockets), ``'net_tick_timeout'`` (nothing heard within the tick
    time), ``'disconnect'`` (``otp.disconnect_node`` here or there),
    ``'connect_failed'`` (no connection could be set up within the set-up
    timeout, or the node is not a member), ``'handshake_failed'`` (the CURVE
    handshake failed: a key that does not match), ``('refused', why)`` (the
    node refused our HELLO), ``'restarted'`` (a new incarnation of the node
    connected).  A process that links to or monitors processes of other
    nodes also learns when this node's gateway itself dies: every such link
    and monitor fires ``'noconnection'``."""

    node: str
    reason: object


class Response(NamedTuple):
    """The answer ``value`` to the request ``ref`` (``otp.send_request``),
    delivered as a message while ``ref`` is an alias of the receiver
    (OTP's ``{[alias|Ref], Reply}``)."""

    ref: Ref
    value: object


@dataclass(frozen=True)
class Crash:
    """Exit reason of a process that raised: exception type, message, traceback.

    ``exc_type`` is the qualified class name (``'builtins.ValueError'``) so
    that the reason travels to processes that cannot import the class.
    """

    exc_type: str
    message: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException) -> Crash:
        t = type(exc)
        return cls(
            f"{t.__module__}.{t.__qualname__}",
            str(exc),
            "".join(traceback.format_exception(t, exc, exc.__traceback__)),
        )

    @property
    def type_name(self) -> str:
        return self.exc_type.rsplit(".", 1)[-1]

    def __repr__(self) -> str:
        return f"Crash({self.type_name}: {self.message})"

    def format(self) -> str:
        """The exception as Python prints it: the traceback taken in the
        process that raised, else ``type: message``."""
        if self.traceback:
            return self.traceback.rstrip()
        return f"{self.exc_type}: {self.message}"


def _crashes(term: object, depth: int = 0) -> list[Crash]:
    # Error terms nest crashes in tuples (('shutdown', ('failed_to_start_child',
    # id, Crash))); a bound on depth keeps a self-referencing term harmless.
    if isinstance(term, Crash):
        return [term]
    if depth > 8 or not isinstance(term, (tuple, list)):
        return []
    return [c for item in term for c in _crashes(item, depth + 1)]


def format_reason(reason: object) -> str:
    """``repr(reason)``, then the traceback of every :class:`Crash` in it,
    indented, so an error raised far from the process that failed still
    shows where it failed."""
    try:
        text = repr(reason)
    except Exception:  # noqa: BLE001 - a user's term with a broken __repr__ still gets reported
        text = f"<{type(reason).__qualname__} object>"
    for crash in _crashes(reason):
        body = "\n".join("    " + line for line in crash.format().splitlines())
        text += f"\n\n  in the process that failed:\n{body}"
    return text


def is_normal(reason: object) -> bool:
    """True for the exit reason ``'normal'`` (a linked process that does not
    trap exits survives it)."""
    return isinstance(reason, str) and reason == "normal"


def is_shutdown(reason: object) -> bool:
    """True for ``'shutdown'`` and ``('shutdown', term)``: a supervisor's
    orderly stop, which no restart policy treats as a failure."""
    if isinstance(reason, str):
        return reason == "shutdown"
    return isinstance(reason, tuple) and len(reason) == 2 and reason[0] == "shutdown"


def is_clean(reason: object) -> bool:
    """normal, shutdown or ('shutdown', _): no crash report, no transient restart."""
    return is_normal(reason) or is_shutdown(reason)
