"""The name registry: its storage layer (backends and their interface) and
the errors of the registry process and its clients."""

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
    Mode,
    NotFound,
    PidNotAlive,
    RegistryBackend,
    RegistryDown,
    RegistryError,
    RegistryFull,
    UnknownOperation,
)
from ._backends import BACKENDS, open_backend
from ._memory import MemoryBackend
from ._sqlite import SQLiteBackend

__all__ = [
    "RegistryBackend",
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
]
