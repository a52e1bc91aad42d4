"""The name registry: its storage layer (backends and their interface), the
errors of the registry process and its clients, and the messages it sends
to listeners and pg monitors."""

from ._backend import (
    AlreadyRegistered,
    BackendClosed,
    BackendUnavailable,
    BaseBackend,
    Entry,
    InvalidKey,
    InvalidMetadata,
    InvalidPid,
    InvalidValue,
    Key,
    MalformedRequest,
    MembershipStore,
    Mode,
    NotFound,
    PidNotAlive,
    PidNotLocal,
    RegistryBackend,
    RegistryDown,
    RegistryError,
    RegistryFull,
    UnknownOperation,
)
from ._backends import BACKENDS, open_backend
from ._events import PgEvent, PgJoin, PgLeave, Registered, RegistryEvent, Unregistered
from ._memory import MemoryBackend
from ._sqlite import SQLiteBackend

__all__ = [
    "RegistryBackend",
    "MembershipStore",
    "BaseBackend",
    "MemoryBackend",
    "SQLiteBackend",
    "BACKENDS",
    "open_backend",
    "Entry",
    "Key",
    "Mode",
    "RegistryError",
    "AlreadyRegistered",
    "NotFound",
    "PidNotAlive",
    "PidNotLocal",
    "InvalidKey",
    "InvalidPid",
    "InvalidMetadata",
    "InvalidValue",
    "BackendUnavailable",
    "BackendClosed",
    "MalformedRequest",
    "UnknownOperation",
    "RegistryFull",
    "RegistryDown",
    "Registered",
    "Unregistered",
    "RegistryEvent",
    "PgJoin",
    "PgLeave",
    "PgEvent",
]
