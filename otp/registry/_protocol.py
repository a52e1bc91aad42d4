"""Requests to a registry process and its replies: the records, the wire,
and the one place where a request is checked before a handler sees it.

On the wire a request is one ZeroMQ frame holding the pickle of the tuple
``(req_id, op, args)``, a reply one frame holding ``(req_id, status, value,
registry pid, version)``, encoded like mailbox frames
(:func:`otp._codec.encode_frame`: under the forkserver start method what
names a class of the script's ``__main__`` travels by value).  Plain tuples,
not the records: pickling a named tuple costs about 7 times more, and every
request pays it.

The change feed.  Every change to the registry's table is published as
``(version, change)``, ``change`` one of the :data:`Change` records
(:class:`EntryAdded`, :class:`EntryRemoved`...); a :class:`SyncToken` goes
out with version None.  (The messages a registry sends to its listeners and
pg monitors are other records: :mod:`otp.registry._events`.)  Records here: a change costs one write, and
replicas tell the kinds apart by type.

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

import pickle
from collections.abc import Callable
from typing import Any, NamedTuple

from .._codec import dumps, encode_frame
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
    "new_request",
    "new_reply",
    "encode_request",
    "decode_request",
    "encode_reply",
    "decode_reply",
]

#: The delimiter frame a REQ socket puts before its body.
_REQ_DELIMITER = b""
#: Builds a record from a tuple of its fields without the generated
#: ``__new__`` (a third of the cost: these are built once per request).
_record = tuple.__new__


class Request(NamedTuple):
    req_id: int
    op: str
    args: tuple


class Reply(NamedTuple):
    req_id: int
    status: str  # "ok" or "error"
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
    """The answer to ``snapshot``: the table after change ``version``."""

    version: int
    entries: list[EntryAdded]
    groups: dict[Any, list[Pid]]
    mode: str


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
}

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


def encode_request(request: Request, main_by_value: bool) -> bytes:
    """The request's frame; raises :class:`otp.EncodeError` before anything is sent."""
    return encode_frame(tuple(request), main_by_value)


def encode_reply(reply: Reply, main_by_value: bool) -> bytes:
    """The reply's frame; a value that cannot be encoded becomes an
    ``InvalidValue`` error reply."""
    try:
        return encode_frame(tuple(reply), main_by_value)
    except EncodeError as exc:
        error = InvalidValue(f"the registry cannot encode its answer: {exc}")
        return encode_frame((reply.req_id, "error", error, reply.registry, reply.version), main_by_value)


def new_request(req_id: int, op: str, args: tuple) -> Request:
    return _record(Request, (req_id, op, args))


def new_reply(req_id: int, status: str, value: Any, registry: Pid, version: int) -> Reply:
    return _record(Reply, (req_id, status, value, registry, version))


def decode_reply(frame: bytes) -> Reply:
    """The reply in a frame from a registry (trusted: it is ours)."""
    return _record(Reply, pickle.loads(frame))
