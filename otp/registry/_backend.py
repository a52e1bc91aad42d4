"""Storage interface of the name registry: the protocol and the shared rules
(its errors are :mod:`otp.registry._errors`, re-exported here).

The registry *process* (a ZeroMQ ROUTER server) owns exactly one backend and
does every read and write through it; there is no second store on the side.
The system we replace had a backend abstraction and then bypassed it with a
hybrid of two tables, so its metadata index drifted out of sync with its data.
Here the rules that must not differ between backends (validation, unique
versus duplicate keys, dropping the entries of dead processes) live once, in
:class:`BaseBackend`, and a backend supplies only storage primitives.

Backends are synchronous and single-threaded by design: the registry process
serialises every request, so nothing here locks.  Calling one backend from
two threads at once is a bug of the caller.

Liveness: a backend is given ``is_alive(pid)``.  Reads never return an entry
whose process is dead; the first read that meets a dead process drops
everything that process held.  A pid is never reused (its ``uid`` is random
and 64 bits wide), so a pid once dead stays dead.
"""

from __future__ import annotations

import abc
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from .._pid import Pid
from ._errors import (
    AlreadyRegistered,
    BackendClosed,
    BackendUnavailable,
    InvalidKey,
    InvalidMetadata,
    InvalidPid,
    InvalidValue,
    MalformedRequest,
    NotFound,
    PidNotAlive,
    PidNotLocal,
    RegistryDown,
    RegistryError,
    RegistryFull,
    UnknownOperation,
    short_repr,
)

__all__ = [
    "Key", "Mode", "MODES", "Entry", "RegistryBackend", "MembershipStore", "BaseBackend",
    "RegistryError", "AlreadyRegistered", "NotFound", "PidNotAlive", "PidNotLocal", "InvalidKey",
    "InvalidPid", "InvalidMetadata", "InvalidValue", "BackendUnavailable", "BackendClosed",
    "MalformedRequest", "UnknownOperation", "RegistryFull", "RegistryDown",
]  # fmt: skip

#: A registry key: ``str``, ``int`` (not ``bool``), ``bytes``, or a tuple of keys.
Key = str | int | bytes | tuple
Mode = Literal["unique", "duplicate"]
MODES: tuple[str, ...] = ("unique", "duplicate")
#: Tuples nest at most this deep, so no key can exhaust the recursion limit.
MAX_KEY_DEPTH = 32
_UINT64 = 1 << 64
_INT64 = 1 << 63


# --- values -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One registration.  In duplicate mode a key has one entry per ``register``.

    ``metadata`` is the caller's own copy: mutating it does not touch the store."""

    key: Key
    pid: Pid
    value: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)


class _Keep:
    """Marker for "leave this column as it is" in :meth:`BaseBackend._raw_update`."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()
#: What :func:`index_form` returns for a value the metadata index cannot hold.
UNINDEXABLE: Any = type("Unindexable", (), {"__repr__": lambda self: "UNINDEXABLE"})()


def canonical_key(key: object, _depth: int = 0) -> Key:
    """``key`` made of exact ``str``/``int``/``bytes``/``tuple``, or :class:`InvalidKey`.

    Subclasses (``IntEnum``, ``StrEnum``, named tuples) equal their base value,
    so they are stored as it: a key comes back from the store as it would from
    the wire.  ``bool`` is refused because ``True == 1`` would make it alias
    the key ``1`` silently (Erlang's ``true`` and ``1`` are different terms)."""
    t = type(key)
    if t is str or t is int or t is bytes:
        return key  # type: ignore[return-value]
    if isinstance(key, tuple):
        if _depth >= MAX_KEY_DEPTH:
            raise InvalidKey(f"key tuples nest at most {MAX_KEY_DEPTH} deep")
        return tuple([canonical_key(k, _depth + 1) for k in key])
    if isinstance(key, bool):
        raise InvalidKey(f"bool is not a registry key ({key!r} would alias {int(key)})")
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, int):
        return int.__int__(key)
    if isinstance(key, bytes):
        return bytes(memoryview(key))
    raise InvalidKey(f"registry keys are str, int, bytes or tuples of those, not {t.__name__}: {short_repr(key)}")


def index_form(value: object, _depth: int = 0) -> Any:
    """The form under which the metadata index files ``value``, or :data:`UNINDEXABLE`.

    The index must find every stored value ``== value``, so equal values must
    have equal forms: ``True``, ``1`` and ``1.0`` all become ``1``.  Values with
    no such form (lists, NaN, arbitrary objects) are kept on a per-field side
    list that ``match`` compares one by one."""
    t = type(value)
    if t is str or t is int or t is bytes or value is None:
        return value
    if isinstance(value, float):
        value = float(value)
        if value != value:  # NaN equals nothing, so no lookup can hit it
            return UNINDEXABLE
        return int(value) if value.is_integer() else value
    if isinstance(value, tuple):
        if _depth >= MAX_KEY_DEPTH:
            return UNINDEXABLE
        parts = [index_form(v, _depth + 1) for v in value]
        return UNINDEXABLE if any(p is UNINDEXABLE for p in parts) else tuple(parts)
    if isinstance(value, (str, int, bytes)):  # bool, IntEnum, StrEnum: equal to their base value
        return canonical_key(value) if not isinstance(value, bool) else int(value)
    return UNINDEXABLE


def values_equal(a: object, b: object) -> bool:
    """``a == b``, False when the comparison raises or is not a truth value (arrays)."""
    try:
        return bool(a == b)
    except Exception:
        return False


def check_pid(pid: object) -> Pid:
    """``pid`` if it is a well-formed :class:`Pid`, else :class:`InvalidPid`.

    The bounds are those a persistent store can hold (uid unsigned 64 bits,
    OS pid and start time signed 64 bits); every backend enforces them so that
    swapping backends never changes what is accepted."""
    if not isinstance(pid, Pid):
        raise InvalidPid(f"expected an otp.Pid, got {type(pid).__name__}: {short_repr(pid)}")
    uid, ospid, start = pid.uid, pid.ospid, pid.start
    if not (
        isinstance(pid.node, str)
        and isinstance(uid, int) and 0 <= uid < _UINT64
        and isinstance(ospid, int) and -_INT64 <= ospid < _INT64
        and isinstance(start, int) and -_INT64 <= start < _INT64
    ):  # fmt: skip
        raise InvalidPid(f"malformed Pid {pid.node!r}/{uid!r}/{ospid!r}/{start!r}")
    return pid


def check_metadata_key(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidMetadata(f"metadata keys are str, not {type(name).__name__}: {short_repr(name)}")
    return name if type(name) is str else str.__str__(name)


def check_metadata(metadata: object) -> dict[str, Any]:
    """A fresh ``dict`` copy of ``metadata`` (``None`` is ``{}``), or :class:`InvalidMetadata`.

    Copying here means no caller can later mutate what the store and its
    index hold."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidMetadata(f"metadata is a dict, not {type(metadata).__name__}: {short_repr(metadata)}")
    return {check_metadata_key(k): v for k, v in metadata.items()}


# --- the interface ------------------------------------------------------------------------------


@runtime_checkable
class RegistryBackend(Protocol):
    """What the registry process needs from a store.  See :class:`BaseBackend` for semantics."""

    name: str
    mode: Mode

    def register(self, key: Key, pid: Pid, value: Any = None, metadata: Mapping[str, Any] | None = None) -> Entry: ...
    def lookup(self, key: Key) -> list[Entry]: ...
    def unregister(self, key: Key, pid: Pid | None = None) -> int: ...
    def unregister_pid(self, pid: Pid) -> list[Key]: ...
    def keys_of(self, pid: Pid) -> list[Key]: ...
    def list_all(self) -> list[Entry]: ...
    def count(self) -> int: ...
    def match(self, metadata_key: str, value: Any) -> list[Entry]: ...
    def select(self, predicate: Callable[[Entry], bool]) -> list[Entry]: ...
    def batch(self) -> contextlib.AbstractContextManager[None]: ...
    def update_value(self, key: Key, pid: Pid, value: Any) -> None: ...
    def update_metadata(self, key: Key, metadata: Mapping[str, Any], pid: Pid | None = None) -> None: ...
    def health_check(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


@runtime_checkable
class MembershipStore(Protocol):
    """What a persistent backend adds to keep process-group memberships
    across a restart of its registry process.

    The registry process keeps the groups in its memory and writes each
    change through to its store; at start it reads them back
    (:meth:`memberships`), drops those of dead processes and watches the
    others again.  A backend without this interface (the memory backend,
    which a restart empties anyway) keeps no memberships: the registry's
    table is their only copy.  Memberships are ``(group, pid)`` rows in join
    order, one per join; the arguments are checked by the caller."""

    def add_members(self, group: Key, pids: Sequence[Pid]) -> None:
        """One membership of ``group`` for each of ``pids`` (repeats count)."""
        ...

    def remove_members(self, group: Key, pids: Sequence[Pid]) -> None:
        """Remove one membership of ``group`` (the oldest) for each of ``pids``."""
        ...

    def remove_member_pid(self, pid: Pid) -> None:
        """Remove every membership of ``pid`` (it exited)."""
        ...

    def memberships(self) -> list[tuple[Key, Pid]]:
        """Every membership, in join order."""
        ...


Pairs = list[tuple[int, Entry]]  # (entry id, entry); ids grow with registration order


class BaseBackend(abc.ABC):
    """The registry semantics, once, over a backend's storage primitives (``_raw_*``).

    Every public operation validates its arguments before touching the store
    and runs in one :meth:`_transaction`, so a persistent backend never keeps
    half an operation.  Results are in registration order; re-registering a
    unique key with its own pid keeps the entry's place."""

    name = "abstract"

    def __init__(self, *, is_alive: Callable[[Pid], bool], mode: Mode = "unique") -> None:
        if mode not in MODES:
            raise ValueError(f"registry mode is 'unique' or 'duplicate', not {mode!r}")
        if not callable(is_alive):
            raise TypeError("is_alive must be a callable taking a Pid")
        self.mode: Mode = mode
        self._unique = mode == "unique"
        self._is_alive = is_alive
        self._closed = False
        self._last_cleanup: float | None = None
        self._dead_cleaned = 0

    def __enter__(self) -> BaseBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes --

    def register(self, key: Key, pid: Pid, value: Any = None, metadata: Mapping[str, Any] | None = None) -> Entry:
        """Store ``key -> pid``.  Unique mode: raise :class:`AlreadyRegistered` if a
        live other pid holds ``key``; same pid replaces value and metadata; a dead
        holder is replaced.  Duplicate mode: always add one more entry."""
        entry = Entry(canonical_key(key), check_pid(pid), value, check_metadata(metadata))
        with self._transaction():
            if not self._is_alive(pid):
                raise PidNotAlive(pid)
            if self._unique:
                for eid, held in self._alive(self._raw_lookup(entry.key)):
                    if held.pid != pid:
                        raise AlreadyRegistered(entry.key, held.pid)
                    self._raw_update(eid, pid=pid, value=value, metadata=entry.metadata)
                    return entry
            self._raw_insert(entry)
        return entry

    def unregister(self, key: Key, pid: Pid | None = None) -> int:
        """Remove ``key``'s entries (only ``pid``'s, if given); return how many.  Idempotent."""
        key = canonical_key(key)
        if pid is not None:
            check_pid(pid)
        with self._transaction():
            ids = [eid for eid, e in self._raw_lookup(key) if pid is None or e.pid == pid]
            if ids:
                self._raw_delete(ids)
        return len(ids)

    def unregister_pid(self, pid: Pid) -> list[Key]:
        """Remove all ``pid`` holds (it died); return its keys, each once, oldest first."""
        check_pid(pid)
        with self._transaction():
            return self._raw_delete_pid(pid)

    def update_value(self, key: Key, pid: Pid, value: Any) -> None:
        """Replace the value of ``pid``'s entries under ``key``, or :class:`NotFound`."""
        key = canonical_key(key)
        check_pid(pid)
        with self._transaction():
            for eid in self._targets(key, pid):
                self._raw_update(eid, value=value)

    def update_metadata(self, key: Key, metadata: Mapping[str, Any], pid: Pid | None = None) -> None:
        """Replace (never merge) the metadata of ``key``'s entries (only ``pid``'s, if
        given), or :class:`NotFound`.  The metadata index follows in the same step."""
        key = canonical_key(key)
        metadata = check_metadata(metadata)
        if pid is not None:
            check_pid(pid)
        with self._transaction():
            for eid in self._targets(key, pid):
                self._raw_update(eid, metadata=metadata)

    # -- reads (each drops the dead processes it meets) --

    def lookup(self, key: Key) -> list[Entry]:
        key = canonical_key(key)
        with self._read():
            pairs = self._raw_lookup(key)
        if pairs and not all(self._is_alive(e.pid) for _, e in pairs):
            with self._transaction():  # dead holders met: drop them atomically
                pairs = self._alive(self._raw_lookup(key))
        return [e for _, e in pairs]

    def keys_of(self, pid: Pid) -> list[Key]:
        """The keys ``pid`` holds, each once, oldest first; ``[]`` once it is dead."""
        check_pid(pid)
        with self._transaction():
            if not self._is_alive(pid):
                self._drop_dead([pid])
                return []
            return self._raw_keys_of(pid)

    def list_all(self) -> list[Entry]:
        with self._transaction():
            return [e for _, e in self._alive(self._raw_all())]

    def count(self) -> int:
        """Number of live entries (asks ``is_alive`` once per distinct pid)."""
        with self._transaction():
            counts = self._raw_pid_counts()
            dead = [pid for pid in counts if not self._is_alive(pid)]
            self._drop_dead(dead)
            return sum(counts.values()) - sum(counts[pid] for pid in dead)

    def match(self, metadata_key: str, value: Any) -> list[Entry]:
        """Live entries whose ``metadata[metadata_key] == value``, through the metadata
        index (a per-field scan only when ``value`` itself has no index form)."""
        metadata_key = check_metadata_key(metadata_key)
        with self._transaction():
            return [e for _, e in self._alive(self._raw_match(metadata_key, value))]

    def select(self, predicate: Callable[[Entry], bool]) -> list[Entry]:
        """Live entries for which ``predicate(entry)`` is true.  A full scan: O(entries)."""
        return [e for e in self.list_all() if predicate(e)]

    # -- lifecycle --

    def health_check(self) -> dict[str, Any]:
        """``status`` (healthy/unhealthy), ``registrations_count`` (stored entries,
        including dead ones not yet met), ``backend``, ``mode``, ``last_cleanup``
        (``time.time()`` of the last drop of a dead process, or None),
        ``dead_pids_cleaned``, plus the backend's own figures.  Reports, never raises."""
        report: dict[str, Any] = {
            "status": "healthy", "backend": self.name, "mode": self.mode, "registrations_count": 0,
            "last_cleanup": self._last_cleanup, "dead_pids_cleaned": self._dead_cleaned, "closed": self._closed,
        }  # fmt: skip
        if self._closed:
            report["status"] = "unhealthy"
            return report
        try:
            report["registrations_count"] = self._raw_count()
            report.update(self._stats())
        except Exception as exc:  # whatever broke the store, the health check is how we learn it
            report["status"] = "unhealthy"
            report["error"] = f"{type(exc).__name__}: {exc}"
        return report

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Run the operations of a ``with`` block under one commit.

        A persistent backend pays most of an operation in its commit (sqlite:
        ~130 us of a ~210 us ``register``), so the registry process applies a
        burst of requests in one batch.  Each operation stays atomic on its
        own: one that raises is undone alone, the others are kept, and they
        are kept too if an exception leaves the block (as in memory, where
        nothing is ever undone), so the two backends behave the same."""
        return self._transaction(keep_on_error=True)

    def close(self) -> None:
        """Release the store.  Idempotent; any later operation raises :class:`BackendClosed`."""
        if not self._closed:
            self._closed = True
            self._close()

    # -- shared machinery --

    def _targets(self, key: Key, pid: Pid | None) -> list[int]:
        ids = [eid for eid, e in self._alive(self._raw_lookup(key)) if pid is None or e.pid == pid]
        if not ids:
            raise NotFound(key, pid)
        return ids

    def _alive(self, pairs: Pairs) -> Pairs:
        """``pairs`` without entries of dead processes, which are dropped from the store."""
        if not pairs:
            return pairs
        verdict: dict[Pid, bool] = {}
        for _, e in pairs:
            if e.pid not in verdict:
                verdict[e.pid] = bool(self._is_alive(e.pid))
        dead = [pid for pid, ok in verdict.items() if not ok]
        if not dead:
            return pairs
        self._drop_dead(dead)
        return [(eid, e) for eid, e in pairs if verdict[e.pid]]

    def _drop_dead(self, pids: list[Pid]) -> None:
        for pid in pids:
            self._raw_delete_pid(pid)
            self._dead_cleaned += 1
            self._last_cleanup = time.time()

    def _read(self) -> contextlib.AbstractContextManager[None]:
        """A context for one read-only statement: a store whose single
        statements are atomic overrides it to skip the transaction (the hot
        path of lookups).  Raises :class:`BackendClosed`."""
        return self._transaction()

    def _transaction(self, *, keep_on_error: bool = False) -> contextlib.AbstractContextManager[None]:
        """One atomic step, nested ones atomic within it; with ``keep_on_error`` an
        exception keeps what completed (see :meth:`batch`).  Raises :class:`BackendClosed`."""
        if self._closed:
            raise BackendClosed(f"the {self.name} registry backend is closed")
        return contextlib.nullcontext()

    # -- storage primitives: no validation, no liveness, pairs in registration (id) order.
    # _raw_match returns the entries whose metadata[metadata_key] == value (values_equal),
    # found through the index; _raw_keys_of and _raw_delete_pid give each key once;
    # _audit lists every way the index disagrees with the entries (O(entries), for tests).

    @abc.abstractmethod
    def _raw_lookup(self, key: Key) -> Pairs: ...
    @abc.abstractmethod
    def _raw_all(self) -> Pairs: ...
    @abc.abstractmethod
    def _raw_match(self, metadata_key: str, value: Any) -> Pairs: ...
    @abc.abstractmethod
    def _raw_keys_of(self, pid: Pid) -> list[Key]: ...
    @abc.abstractmethod
    def _raw_pid_counts(self) -> dict[Pid, int]: ...
    @abc.abstractmethod
    def _raw_count(self) -> int: ...
    @abc.abstractmethod
    def _raw_insert(self, entry: Entry) -> int: ...
    @abc.abstractmethod
    def _raw_update(self, eid: int, *, pid: Pid | None = None, value: Any = KEEP, metadata: Any = KEEP) -> None: ...
    @abc.abstractmethod
    def _raw_delete(self, ids: list[int]) -> None: ...
    @abc.abstractmethod
    def _raw_delete_pid(self, pid: Pid) -> list[Key]: ...
    @abc.abstractmethod
    def _stats(self) -> dict[str, Any]: ...
    @abc.abstractmethod
    def _audit(self) -> list[str]: ...
    @abc.abstractmethod
    def _close(self) -> None: ...


def index_postings(metadata: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """``(field, index form)`` for each metadata item: what the index must hold for it."""
    for name, value in metadata.items():
        yield name, index_form(value)
