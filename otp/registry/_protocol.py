"""Requests to a registry process and its replies: the records, the wire,
and the one place where a request is checked before a handler sees it.

On the wire a request is one ZeroMQ frame holding the pickle of the tuple
``(req_id, op, args)``, a reply one frame holding ``(req_id, status, value,
registry pid, version)``, encoded like mailbox frames
(:func:`otp._codec.encode_frame`: under the forkserver start method what
names a class of the script's ``__main__`` travels by value).  Plain tuples,
not the records: pickling a named tuple costs about 7 times more, and every
request pays it.  Pickling a pid costs about a microsecond (the pickler
looks its class up again every time), and a registry answers tens of
thousands of requests a second: the registry pid travels as its own pickle
(:func:`encode_pid`), made once by the registry and unpickled by a client
only when it differs from the last one it saw, and a value that is a pid
(``whereis``) as its fields, with the status ``"pid"`` (see
:func:`decode_reply`).

The change feed.  Every change to the registry's table is published as
``(version, change)``, ``change`` one of the :data:`Change` records
(:class:`EntryAdded`, :class:`EntryRemoved`...); a :class:`SyncToken` goes
out with version None.  (The messages a registry sends to its listeners and
pg monitors are other records: :mod:`otp.registry._events`.)  Records here: a change costs one write, and
replicas tell the kinds apart by type.

The stamp.  Beside its PUB socket a registry keeps one 64-bit word in a
file of the node directory (:func:`stamp_path`), mapped in memory by the
registry and by the replicas that read it: the registry's *generation* (one
more than its predecessor's on the same endpoint, so a successor, which
numbers its changes from 0 again, never writes a word its predecessor
wrote) and the version of its last change (:func:`stamp_of`), written after
the change is published and before the request that made it is answered.
A replica whose own stamp equals the word has every change the registry has
made: one memory load, no system call, tells it that it may answer from
memory.

Who may send what.  Our clients connect a DEALER (the ROUTER sees
``[identity, body]``); a plain REQ socket adds an empty delimiter
(``[identity, b"", body]``), answered the same way with the delimiter
echoed.  Any other envelope, a body that does not unpickle, or one without
an ``int`` request id cannot be answered: it is dropped (see
:class:`Unanswerable`).  Everything else is answered: a wrong arity, an
unknown op or an argument of the wrong type gets a typed
:class:`~otp.registry.RegistryError` (``MalformedRequest``,
``UnknownOperation``, ``InvalidPid``, ``InvalidKey``, ``InvalidMetadata``,
``InvalidValue``) instead of reaching a handler.

What the checks guarantee handlers: every pid is an exact :class:`Pid`
with int fields; every key and pg group is in canonical key form (str, int,
bytes, tuples of those), so no code of the caller's runs in the registry
when it hashes or compares them; every value the registry will store and
publish can be encoded again.  pg groups are keys: a group holding an
arbitrary object is refused with ``InvalidKey`` (Erlang's groups are any
term, but a Python object's ``__hash__`` and ``__eq__`` would run inside
the registry, and a raising one would take every group down with it).
An argument whose own methods raise while it is checked (a mapping's
``items``) makes the request ``MalformedRequest``.
"""

from __future__ import annotations

import mmap
import os
import pickle
from collections.abc import Callable
from typing import Any, NamedTuple

from .._codec import PROTOCOL, dumps, encode_frame
from .._errors import EncodeError
from .._pid import Pid, Ref
from ._backend import (
    InvalidPid,
    InvalidValue,
    MalformedRequest,
    RegistryError,
    UnknownOperation,
    canonical_key,
    check_metadata,
    check_metadata_key,
    check_pid,
)

__all__ = [
    "Request",
    "Reply",
    "EntryAdded",
    "EntryRemoved",
    "ValueUpdated",
    "MetadataUpdated",
    "Joined",
    "Left",
    "LeftAll",
    "Change",
    "SyncToken",
    "Snapshot",
    "PgMonitorEnded",
    "OpSpec",
    "OPS",
    "READ_OPS",
    "Unanswerable",
    "Refused",
    "encode_request",
    "decode_request",
    "encode_pid",
    "encode_reply",
    "decode_reply",
    "StampFile",
    "stamp_of",
    "stamp_path",
    "next_generation",
]

#: The delimiter frame a REQ socket puts before its body.
_REQ_DELIMITER = b""
_dumps = pickle.dumps
#: Builds a record from a tuple of its fields without the generated
#: ``__new__`` (a third of the cost: these are built once per request).
_record = tuple.__new__


class Request(NamedTuple):
    req_id: int
    op: str
    args: tuple


class Reply(NamedTuple):
    req_id: int
    status: str  # "ok" or "error" (on the wire also "pid": see decode_reply)
    value: Any  # the operation's result, or its RegistryError
    registry: Pid  # who answered: clients watch it
    version: int  # the registry's change count after this request


# -------------------------------------------------------------- the change feed


class EntryAdded(NamedTuple):
    """``pid`` registered ``key`` with ``value`` and ``metadata``."""

    key: Any
    pid: Pid
    value: Any
    metadata: dict[str, Any]


class EntryRemoved(NamedTuple):
    """``pid`` no longer holds ``key``."""

    key: Any
    pid: Pid


class ValueUpdated(NamedTuple):
    """The value of ``pid``'s entry under ``key`` is now ``value``."""

    key: Any
    pid: Pid
    value: Any


class MetadataUpdated(NamedTuple):
    """The metadata of ``pid``'s entry under ``key`` is now ``metadata``."""

    key: Any
    pid: Pid
    metadata: dict[str, Any]


class Joined(NamedTuple):
    """``pid`` joined ``group`` (once more)."""

    group: Any
    pid: Pid


class Left(NamedTuple):
    """``pid`` left ``group`` once."""

    group: Any
    pid: Pid


class LeftAll(NamedTuple):
    """``pid`` left ``group`` altogether (it died)."""

    group: Any
    pid: Pid


Change = EntryAdded | EntryRemoved | ValueUpdated | MetadataUpdated | Joined | Left | LeftAll


class SyncToken(NamedTuple):
    """Published on request (``sync``): a subscriber that sees its token
    knows its subscription is live."""

    token: Any


class Snapshot(NamedTuple):
    """The answer to ``snapshot``: the table after change ``version`` of
    incarnation ``generation`` of the registry (see :func:`stamp_of`)."""

    version: int
    entries: list[EntryAdded]
    groups: dict[Any, list[Pid]]
    mode: str
    generation: int


class PgMonitorEnded(NamedTuple):
    """Sent by the registry to the process that ended the pg monitor
    ``ref``, after every notification of that monitor: the caller of
    ``otp.pg.demonitor`` flushes its notifications up to this one (they
    travel by mailbox, the reply by another socket)."""

    ref: Ref


class Unanswerable(Exception):
    """A frame that cannot be answered (no envelope or request id to answer
    to): the registry drops it and logs ``reason``."""


class Refused(Exception):
    """A request that is answered with ``error`` instead of reaching its handler."""

    def __init__(self, envelope: list, req_id: int, error: Exception) -> None:
        super().__init__(req_id, error)
        self.envelope = envelope
        self.req_id = req_id
        self.error = error


# --------------------------------------------------------------- arguments


def _pid(arg: object) -> Pid:
    if type(arg) is not Pid:
        raise InvalidPid(f"expected an otp.Pid, got {type(arg).__name__}")
    return check_pid(arg)


def _pid_or_none(arg: object) -> Pid | None:
    return None if arg is None else _pid(arg)


def _pids(arg: object) -> tuple[Pid, ...]:
    """A pid or a list (tuple) of pids, as pg's join and leave take them."""
    if type(arg) is Pid:
        return (check_pid(arg),)
    if isinstance(arg, (list, tuple)) and type(arg) in (list, tuple):  # no subclass: its iteration is caller code
        return tuple([_pid(p) for p in arg])
    raise InvalidPid(f"expected an otp.Pid or a list of them, got {type(arg).__name__}")


def _remote_changes(arg: object) -> tuple[tuple[bool, Any, tuple[Pid, ...]], ...]:
    """``pg_remote``'s list of ``(joined, group, pids)``."""
    if type(arg) not in (list, tuple):
        raise MalformedRequest(f"expected a list of (joined, group, pids), got {type(arg).__name__}")
    changes = []
    for change in arg:  # type: ignore[attr-defined]
        if type(change) is not tuple or len(change) != 3 or type(change[0]) is not bool:
            raise MalformedRequest(f"expected (joined, group, pids), got {change!r:.80}")
        changes.append((change[0], canonical_key(change[1]), _pids(change[2])))
    return tuple(changes)


def _ref(arg: object) -> Ref:
    if type(arg) is not Ref or type(arg.id) is not int:  # an id of another type would compare by its own code
        raise MalformedRequest(f"expected an otp.Ref, got {type(arg).__name__}")
    return arg


def _term(arg: object) -> Any:
    """A value the registry stores and publishes: it must encode again."""
    if arg is None or type(arg) in (str, int, bytes, float):
        return arg
    try:
        dumps(arg)
    except EncodeError as exc:
        raise InvalidValue(f"the registry cannot encode this value again: {exc}") from None
    return arg


def _metadata(arg: object) -> dict:
    metadata = check_metadata(arg)
    _term(metadata)
    return metadata


def _any(arg: object) -> Any:
    return arg


class OpSpec(NamedTuple):
    """An operation's arguments: one check per position (each returns the
    argument as the handler gets it, or raises a RegistryError), the first
    ``required`` of them mandatory; ``write`` if it changes the store."""

    checks: tuple[Callable[[object], Any], ...]
    required: int
    write: bool


def _spec(*checks, required: int | None = None, write: bool = False) -> OpSpec:
    return OpSpec(checks, len(checks) if required is None else required, write)


#: Every operation of a registry process (the handler of ``op`` is the
#: server's ``op_<op>``).
OPS: dict[str, OpSpec] = {
    "register": _spec(canonical_key, _pid, _term, _metadata, required=2, write=True),
    "unregister": _spec(canonical_key, _pid_or_none, required=1, write=True),
    "unregister_pid": _spec(_pid, write=True),
    "update_value": _spec(canonical_key, _pid, _term, write=True),
    "update_metadata": _spec(canonical_key, _metadata, write=True),
    "pg_join": _spec(canonical_key, _pids, write=True),
    "pg_leave": _spec(canonical_key, _pids, write=True),
    "pg_remote": _spec(_remote_changes, write=True),
    "pg_monitor_scope": _spec(_pid),
    "pg_monitor": _spec(_pid, canonical_key),
    "pg_demonitor": _spec(_ref),
    "lookup": _spec(canonical_key),
    "lookup_entries": _spec(canonical_key),
    "whereis": _spec(canonical_key),
    "registered": _spec(),
    "keys": _spec(_pid),
    "count": _spec(),
    "match_metadata": _spec(check_metadata_key, _any),
    "health": _spec(),
    "sync": _spec(_term),
    "snapshot": _spec(),
    "pg_members": _spec(canonical_key),
    "pg_groups": _spec(),
    "pg_local_groups": _spec(),
}

#: Operations whose one argument is a key, and the key types that are their
#: own canonical form: a request of that shape is checked inline.
_KEY_OPS: frozenset[str] = frozenset(op for op, spec in OPS.items() if spec.checks == (canonical_key,))
_PLAIN = (str, int, bytes)
#: Operations that change nothing (the others clear the server's lookup cache).
READ_OPS: frozenset[str] = frozenset(op for op, spec in OPS.items() if not spec.write)


# ------------------------------------------------------------------ decode


def decode_request(parts: list) -> tuple[list, Request]:
    """``(envelope, request)`` of the frames a ROUTER received, with the
    request's arguments checked (see the module doc).  The envelope is what
    goes before the reply's body.  Raises :class:`Unanswerable` or
    :class:`Refused`."""
    if len(parts) == 2:
        envelope = parts[:1]
    elif len(parts) == 3 and parts[1] == _REQ_DELIMITER:
        envelope = parts[:2]
    else:
        raise Unanswerable(f"a request of {len(parts) - 1} frames")
    try:
        t = pickle.loads(parts[-1])
    except Exception as exc:  # noqa: BLE001 - unpickling raises anything
        raise Unanswerable(f"an undecodable request ({type(exc).__name__}: {exc})") from None
    if type(t) is not tuple or not t or type(t[0]) is not int:
        raise Unanswerable(f"a {type(t).__name__} without a request id")
    if len(t) == 3:  # most requests: one plain key, which every check would pass as it is
        op, args = t[1], t[2]
        if type(op) is str and op in _KEY_OPS and type(args) is tuple and len(args) == 1 and type(args[0]) in _PLAIN:
            return envelope, _record(Request, t)
    try:
        return envelope, _checked(t)
    except RegistryError as exc:
        raise Refused(envelope, t[0], exc) from None


def _checked(t: tuple) -> Request:
    if len(t) != 3:
        raise MalformedRequest(f"a request is (request id, op, args), not a tuple of {len(t)}")
    req_id, op, args = t
    spec = OPS.get(op) if type(op) is str else None
    if spec is None:
        raise UnknownOperation(f"no registry operation {_name(op)}")
    if type(args) is not tuple:
        raise MalformedRequest(f"the arguments of {op!r} are a tuple, not {type(args).__name__}")
    checks = spec.checks
    if not spec.required <= len(args) <= len(checks):
        arity = spec.required if spec.required == len(checks) else f"{spec.required} to {len(checks)}"
        raise MalformedRequest(f"{op!r} takes {arity} arguments, not {len(args)}")
    try:
        if len(args) == 1:  # most requests: a key
            return _record(Request, (req_id, op, (checks[0](args[0]),)))
        return _record(Request, (req_id, op, tuple([check(arg) for check, arg in zip(checks, args)])))
    except RegistryError:
        raise
    except Exception as exc:  # noqa: BLE001 - the caller's own code, run by a check
        # An argument is the caller's object, decoded here: its methods (a
        # mapping's items, a tuple subclass's iteration) may raise anything.
        raise MalformedRequest(f"an argument of {op!r}: {type(exc).__name__}: {exc}") from None


def _name(op: object) -> str:
    if type(op) is str:
        return repr(op[:60])
    return f"of type {type(op).__name__}"


# ------------------------------------------------------------------ encode


def encode_request(req_id: int, op: str, args: tuple, main_by_value: bool) -> bytes:
    """A request's frame; raises :class:`otp.EncodeError` before anything is sent."""
    request = (req_id, op, args)
    try:  # encode_frame's first step, inline: every request pays for the calls
        frame = _dumps(request, PROTOCOL)
    except Exception:  # noqa: BLE001 - encode_frame tries harder, or raises EncodeError
        return encode_frame(request, main_by_value)
    if main_by_value and b"__main__" in frame:
        return encode_frame(request, main_by_value)
    return frame


def encode_pid(pid: Pid) -> bytes:
    """A registry's pid as its replies carry it."""
    return pickle.dumps(pid, 5)


def encode_reply(req_id: int, status: str, value: Any, registry: bytes, version: int, main_by_value: bool) -> bytes:
    """The frame of a reply (``registry``: the registry's
    :func:`encode_pid`); a value that cannot be encoded becomes an
    ``InvalidValue`` error reply."""
    reply = (req_id, status, value, registry, version)
    try:
        try:  # encode_frame's first step, inline (as in encode_request)
            frame = _dumps(reply, PROTOCOL)
        except Exception:  # noqa: BLE001 - encode_frame tries harder, or raises EncodeError
            return encode_frame(reply, main_by_value)
        if main_by_value and b"__main__" in frame:
            return encode_frame(reply, main_by_value)
        return frame
    except EncodeError as exc:
        error = InvalidValue(f"the registry cannot encode its answer: {exc}")
        return encode_frame((req_id, "error", error, registry, version), main_by_value)


_last_registry: tuple[bytes, Pid | None] = (b"", None)  # (encoded, pid): the one a client talks to


def decode_reply(frame: bytes) -> Reply:
    """The reply in a frame from a registry (trusted: it is ours).  A value
    sent as a pid's fields (status ``"pid"``) is that pid, status ``"ok"``."""
    global _last_registry
    req_id, status, value, registry, version = pickle.loads(frame)
    if status == "pid":
        status, value = "ok", Pid(*value)
    last = _last_registry
    if registry == last[0]:
        pid = last[1]
    else:
        pid = pickle.loads(registry)
        _last_registry = (registry, pid)
    return _record(Reply, (req_id, status, value, pid, version))


# ------------------------------------------------------------------- the stamp

#: Low bits of a stamp: the version of the registry's last change.
VERSION_BITS = 40
_VERSION_MASK = (1 << VERSION_BITS) - 1
_GENERATION_MASK = (1 << (64 - VERSION_BITS)) - 1


def stamp_of(generation: int, version: int) -> int:
    """The stamp of change ``version`` of a registry of ``generation``."""
    return ((generation & _GENERATION_MASK) << VERSION_BITS) | (version & _VERSION_MASK)


def next_generation(stamp: int) -> int:
    """The generation of a registry that finds ``stamp`` left by its
    predecessor (0 for none: a new file) in the stamp file; never 0."""
    return ((stamp >> VERSION_BITS) + 1) & _GENERATION_MASK or 1


def stamp_path(publish_ep: str) -> str:
    """The stamp file of the registry that publishes on ``publish_ep`` (an
    ``ipc://`` endpoint in the node directory)."""
    return publish_ep[len("ipc://") :] + "-stamp"


class StampFile:
    """A registry's stamp file, mapped: ``word[0]`` is the stamp (read-only
    unless ``writable``).  Raises ``OSError`` (or ``ValueError``: shorter
    than a word) if it cannot be mapped."""

    def __init__(self, path: str, writable: bool = False) -> None:
        fd = os.open(path, (os.O_RDWR | os.O_CREAT if writable else os.O_RDONLY) | os.O_CLOEXEC, 0o600)
        try:
            if writable and os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)
            self._map = mmap.mmap(fd, 8, access=mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ)
        finally:
            os.close(fd)  # the mapping keeps its own
        self.path = path
        self.word = memoryview(self._map).cast("Q")

    def close(self) -> None:
        self.word.release()
        self._map.close()
