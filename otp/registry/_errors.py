"""The errors of the name registry: of its storage (every backend raises the
same ones, named by cause), of the registry process's protocol, and of a
request whose registry died.  Apart from the storage interface
(:mod:`otp.registry._backend`, which re-exports them): the registry
process, its clients and its protocol raise them too."""

from __future__ import annotations

import reprlib
from typing import TYPE_CHECKING

from .._errors import CalleeExit, OTPError
from .._pid import Pid

if TYPE_CHECKING:
    from ._backend import Key

__all__ = [
    "RegistryError", "AlreadyRegistered", "NotFound", "PidNotAlive", "PidNotLocal", "InvalidKey",
    "InvalidPid", "InvalidMetadata", "InvalidValue", "BackendUnavailable", "BackendClosed",
    "MalformedRequest", "UnknownOperation", "RegistryFull", "RegistryDown", "short_repr",
]  # fmt: skip

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
#: ``repr`` cut to 60 characters: a key or value in an error message.
short_repr = _short.repr


class RegistryError(OTPError):
    """Base class of every error the registry storage raises."""


class AlreadyRegistered(RegistryError):
    """A unique key is held by another live process (``existing_pid``)."""

    def __init__(self, key: Key, existing_pid: Pid) -> None:
        super().__init__(key, existing_pid)
        self.key = key
        self.existing_pid = existing_pid

    def __str__(self) -> str:
        return f"{short_repr(self.key)} is already registered by {self.existing_pid!r}"


class NotFound(RegistryError, LookupError):
    """No live entry for ``key`` (held by ``pid``, when one was given)."""

    def __init__(self, key: Key, pid: Pid | None = None) -> None:
        super().__init__(key, pid)
        self.key = key
        self.pid = pid

    def __str__(self) -> str:
        by = f" held by {self.pid!r}" if self.pid is not None else ""
        return f"no registration of {short_repr(self.key)}{by}"


class PidNotAlive(RegistryError):
    """``register`` was asked to store a process that is already dead."""

    def __init__(self, pid: Pid) -> None:
        super().__init__(pid)
        self.pid = pid

    def __str__(self) -> str:
        return f"{self.pid!r} is not alive"


class PidNotLocal(RegistryError):
    """pg's ``join`` or ``leave`` was given a process of another node: only a
    node's own processes join its scope, as in OTP (the scope on that node
    tells the others)."""

    def __init__(self, pid: Pid) -> None:
        super().__init__(pid)
        self.pid = pid

    def __str__(self) -> str:
        return f"{self.pid!r} is a process of another node: only local processes join or leave a pg group here"


class InvalidKey(RegistryError, TypeError):
    """The key is not a str, int, bytes, or a tuple of those."""


class InvalidPid(RegistryError, TypeError):
    """The pid is not a well-formed :class:`otp.Pid`."""


class InvalidMetadata(RegistryError, TypeError):
    """Metadata is not a mapping with str keys, or (persistent backends) cannot be pickled."""


class InvalidValue(RegistryError, TypeError):
    """A value a persistent backend cannot pickle."""


class BackendUnavailable(RegistryError):
    """The backend cannot work: unknown name, unopenable or corrupt store, I/O failure.

    Raised at construction rather than degrading to another store: a
    registry that silently lost its persistence would be worse than none."""


class BackendClosed(BackendUnavailable):
    """The backend was used after :meth:`close`."""


class MalformedRequest(RegistryError, ValueError):
    """A request to the registry process that is not ``(request id, op,
    args)`` with ``args`` a tuple of the arity ``op`` takes.  The registry
    answers it with this error (or drops it, logged, when it cannot even read
    the request id) and goes on serving."""


class UnknownOperation(MalformedRequest):
    """The request names no operation of the registry process."""


class RegistryFull(RegistryError):
    """The registry watches as many processes as its descriptor limit allows
    (a pidfd each; Erlang's ``system_limit``): this process was not
    registered or joined.  Raise ``ulimit -n`` for more (see README, limits)."""

    def __init__(self, pid: Pid, watched: int) -> None:
        super().__init__(pid, watched)
        self.pid = pid
        self.watched = watched

    def __str__(self) -> str:
        return (
            f"the registry cannot watch {self.pid!r}: it already watches {self.watched} processes, "
            "what its descriptor limit allows"
        )


class RegistryDown(RegistryError, CalleeExit):
    """The registry process died while your request was in flight: it may or
    may not have been applied.

    What OTP's ``gen_server:call`` does when the server dies (an exit with
    the server's reason, ``reason`` here: ``'killed'`` for a SIGKILL); the
    request is not sent again, because a request that killed the registry
    would kill its successor too.  A write that matters can be checked (a
    lookup) and repeated by the caller, who knows whether repeating it is
    safe.  The node's name registry is restarted by its supervisor on the
    same endpoint: the next request goes to the successor; a keyed
    registry's endpoint dies with it: the next request raises ``NoProc``.
    Also a :class:`otp.CalleeExit`."""

    def __str__(self) -> str:
        return (
            f"the registry {self.server!r} died with reason {self.reason!r} while a request was in flight "
            f"({self.request}): it may or may not have been applied"
        )
