"""The coordination errors (pure: no processes, no I/O).

Every error of this package derives from :class:`CoordinationError`, a
:class:`mabeam._errors.MabeamError`; each cause is its own class, so
callers catch by type.  Errors of input a caller got wrong also derive from
the matching built-in (``ValueError``, ``LookupError``, ``TimeoutError``).
The pure tallies (:mod:`.voting`, :mod:`.vector_clock`) derive their own
bases from :class:`CoordinationError` and ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Hashable

from mabeam._errors import MabeamError

__all__ = [
    "CoordinationError",
    "InvalidParameter",
    "InsufficientAgentsForHierarchy",
    "SessionFailed",
    "SessionCrashed",
    "SessionHostDown",
    "SessionTimeout",
    "ResultTaken",
    "UnsendableResult",
    "PrimitiveError",
    "UnknownPrimitive",
    "PrimitiveFailed",
    "AlreadyHeld",
    "NotHolder",
    "LockTimeout",
    "BarrierTimeout",
    "NoLeader",
    "check_timeout",
]


class CoordinationError(MabeamError):
    """Base class of the coordination errors."""


class InvalidParameter(CoordinationError, ValueError):
    """A coordination parameter is out of range (raised in the caller)."""


def check_timeout(timeout: float) -> None:
    """Raise :class:`InvalidParameter` unless ``timeout`` is a number > 0."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise InvalidParameter(f"timeout must be a number > 0, got {timeout!r}")


class InsufficientAgentsForHierarchy(InvalidParameter):
    """A hierarchy needs at least ``minimum`` agents; ``n`` were given."""

    def __init__(self, minimum: int, n: int) -> None:
        super().__init__(minimum, n)
        self.minimum, self.n = minimum, n

    def __str__(self) -> str:
        return f"a hierarchy needs at least {self.minimum} agents, got {self.n}"


# ------------------------------------------------------------------ sessions


class SessionFailed(CoordinationError):
    """The session ended without a result; ``reason`` says why (a term of
    the kernel, such as ``'killed'`` or an ``otp.Crash``), ``session`` is
    its id.  The subclasses name the cause."""

    def __init__(self, reason: object, session: object = None) -> None:
        super().__init__(reason, session)
        self.reason = reason
        self.session = session


class SessionCrashed(SessionFailed):
    """The session's body raised an exception that is not a typed error (a
    bug): ``reason`` is the ``otp.Crash`` (type, message, traceback).  The
    host logged it and serves its other sessions on."""


class SessionHostDown(SessionFailed):
    """The host process holding the session exited: the session is lost.
    ``reason`` is its exit reason, ``'noproc'`` if it was gone already when
    the caller came to wait for the session, ``'no_host'`` if no host was
    running to take it; ``host`` is the host's pid."""

    def __init__(self, reason: object, session: object = None, host: object = None) -> None:
        super().__init__(reason, session)
        self.args = (reason, session, host)
        self.host = host


class SessionTimeout(CoordinationError, TimeoutError):
    """The session did not answer in time (its host drops it)."""


class ResultTaken(CoordinationError):
    """``Session.result`` was called again after it returned, raised or the
    session was cancelled."""


class UnsendableResult(CoordinationError):
    """The session's result cannot be sent to its caller (it cannot be encoded)."""


# ------------------------------------------------------------------ primitives


class PrimitiveError(CoordinationError):
    """A primitive (lock, barrier, counter, election) refused a request or
    could not serve it; ``name`` is its registered name."""

    def __init__(self, name: Hashable, *details: object) -> None:
        super().__init__(name, *details)
        self.name = name

    def __str__(self) -> str:
        return f"{type(self).__name__}: {self.name!r}"


class UnknownPrimitive(PrimitiveError, LookupError):
    """No such primitive is running."""

    def __str__(self) -> str:
        return f"no primitive {self.name!r} is running"


class PrimitiveFailed(PrimitiveError):
    """The primitive could not be started, or exited while serving the
    request; ``reason`` is the kernel's term for it (an exit reason)."""

    def __init__(self, name: Hashable, reason: object) -> None:
        super().__init__(name, reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.name!r} failed: {self.reason!r}"


class AlreadyHeld(PrimitiveError):
    """The caller asked for a lock it holds already (locks are not reentrant)."""

    def __str__(self) -> str:
        return f"the caller already holds {self.name!r}"


class NotHolder(PrimitiveError):
    """The caller released a lock it does not hold."""

    def __str__(self) -> str:
        return f"the caller does not hold {self.name!r}"


class LockTimeout(CoordinationError, TimeoutError):
    """The lock was not granted within the timeout."""


class BarrierTimeout(CoordinationError, TimeoutError):
    """The barrier did not release within the timeout; ``waiting`` is how
    many (including the caller) were waiting when it withdrew."""

    def __init__(self, message: str, waiting: int) -> None:
        super().__init__(message, waiting)
        self.waiting = waiting

    def __str__(self) -> str:
        return str(self.args[0])


class NoLeader(CoordinationError, TimeoutError):
    """No leader (or no new term) within the timeout."""
