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

__all__ = ["EXIT", "DOWN", "Crash", "is_normal", "is_shutdown", "is_clean"]


class EXIT(NamedTuple):
    """A trapped exit signal: ``pid`` exited, or sent an exit, with ``reason``."""

    pid: Pid
    reason: object


class DOWN(NamedTuple):
    """The monitored process ``pid`` (monitor ``ref``) exited with ``reason``."""

    ref: Ref
    pid: Pid
    reason: object


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


def is_normal(reason: object) -> bool:
    return isinstance(reason, str) and reason == "normal"


def is_shutdown(reason: object) -> bool:
    if isinstance(reason, str):
        return reason == "shutdown"
    return isinstance(reason, tuple) and len(reason) == 2 and reason[0] == "shutdown"


def is_clean(reason: object) -> bool:
    """normal, shutdown or ('shutdown', _): no crash report, no transient restart."""
    return is_normal(reason) or is_shutdown(reason)
