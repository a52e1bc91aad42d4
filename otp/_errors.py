"""Exceptions of the kernel, named by cause.

``ProcessExit`` derives from :class:`BaseException` so that ``except
Exception`` in user code cannot swallow the death of its process (the same
reason trio's ``Cancelled`` and Python's ``KeyboardInterrupt`` do).
"""

from __future__ import annotations

from ._reasons import format_reason

__all__ = [
    "OTPError",
    "Timeout",
    "CallError",
    "CallTimeout",
    "NoProc",
    "CalleeExit",
    "NoConnection",
    "StartError",
    "EncodeError",
    "NotAProcess",
    "SpawnError",
    "NodeError",
    "UnknownOperation",
    "BadArguments",
    "ProcessExit",
]


class OTPError(Exception):
    """Base class of every error the kernel raises."""


class Timeout(OTPError, TimeoutError):
    """``receive`` (or another wait) reached its timeout."""


class CallError(OTPError):
    """A request to another process failed; ``reason`` says why (OTP's term).

    ``server`` is what the caller addressed (pid or name).
    """

    def __init__(self, reason: object, server: object = None, request: object = None) -> None:
        super().__init__(reason, server)
        self.reason = reason
        self.server = server
        self.request = request

    def __str__(self) -> str:
        return f"{self.reason!r} (server {self.server!r})"


class CallTimeout(CallError, Timeout):
    """No reply within the timeout; a reply arriving later is dropped."""

    def __init__(self, server: object = None, request: object = None) -> None:
        super().__init__("timeout", server, request)


class NoProc(CallError):
    """The target process does not exist (never did, or is dead)."""

    def __init__(self, server: object = None, request: object = None) -> None:
        super().__init__("noproc", server, request)


class CalleeExit(CallError):
    """The server exited while the caller waited; ``reason`` is its exit reason."""


class NoConnection(CalleeExit):
    """The server is on another node, which could not be reached or whose
    connection was lost while the caller waited (OTP's ``noconnection``).
    The server itself may still run."""

    def __init__(self, server: object = None, request: object = None) -> None:
        super().__init__("noconnection", server, request)


class StartError(OTPError):
    """A behaviour's synchronous start failed; ``reason`` is OTP's error term.

    Its text shows the reason and, when ``init`` raised (the reason is, or
    holds, an :class:`otp.Crash`), the traceback taken in the new process.
    """

    def __init__(self, reason: object) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return format_reason(self.reason)


class EncodeError(OTPError, TypeError):
    """A message could not be serialised (raised in the sender)."""


class NotAProcess(OTPError, RuntimeError):
    """An OTP call was made from a thread that is not an OTP process."""


class SpawnError(OTPError):
    """The OS process for a new OTP process could not be started."""


class NodeError(OTPError, RuntimeError):
    """The node runtime could not start or is not running."""


class UnknownOperation(OTPError, LookupError):
    """A request named an operation the service does not have
    (:func:`otp.ask`); the service carries on."""

    def __init__(self, service: str, op: object) -> None:
        super().__init__(service, op)
        self.service = service
        self.op = op

    def __str__(self) -> str:
        return f"{self.service} has no operation {self.op!r}"


class BadArguments(OTPError, TypeError):
    """A request's arguments do not fit the operation's signature
    (:func:`otp.ask`); ``why`` is Python's message.  The service carries on."""

    def __init__(self, service: str, op: str, why: str) -> None:
        super().__init__(service, op, why)
        self.service = service
        self.op = op
        self.why = why

    def __str__(self) -> str:
        return f"{self.service}.{self.op}: {self.why}"


class ProcessExit(BaseException):
    """Unwinds the current process: it exits with ``reason``.

    Raised by the kernel when an exit signal kills the process, and may be
    raised by user code as Erlang's ``exit(Reason)``.
    """

    def __init__(self, reason: object = "normal") -> None:
        super().__init__(reason)
        self.reason = reason
