"""What travels between the zygote, the processes that spawn, and embryos.

Requests.  Each OTP process connects a SOCK_SEQPACKET socket to
``<node dir>/zygote`` when it first spawns.  A request is one datagram, the
pickle of a plain tuple (``('spawn', learn)``, ``('list',)``, ``('stop',)``),
read back with an unpickler that refuses every global and checked in one
place, :func:`parse_request`, into a :class:`SpawnRequest`,
:class:`ListRequest` or :class:`StopRequest`.  The zygote serves the whole
node, so what it reads from a client must never make it import, build an
object of a class, or recurse without bound.

Spawning.  A spawn request carries, as SCM_RIGHTS, one end of a socketpair;
the spawner writes its :class:`SpawnSpec`, length first, into its own end
right after the request.  The zygote passes the other end to a ready embryo
(see :mod:`otp._embryo`) and writes that embryo's :class:`Identity` (which
the embryo told it when it became ready) to the spawner.  Then two things
happen at once: the spawner reads the identity and registers its link and
monitor on the new pid, while the embryo reads the spec and prepares (its
function unpickled, its socket to the spawner connected); the spawner's
:data:`RUN` byte tells the embryo the registration is done and it may run
the function.  Three hops, root to zygote to embryo and back, become two on
the critical path, and the embryo's preparation is off it.  When the zygote
cannot give the spawner a process it answers on that socketpair instead,
with an identity whose uid is :data:`REFUSED_UID` (never a process's, see
:func:`otp._pid.new_uid`) and whose ospid is an errno, followed by a length
and a UTF-8 text (:func:`error_answer`).

Listing.  A list request is answered with chunks ``(more, rows)`` of at most
:data:`LIST_CHUNK` rows ``(ospid, uid, spare)``, read as :class:`LiveProcess`.

Starting.  The root sends the zygote a :class:`ZygoteConfig`, length first,
over the socketpair it was started with, and reads back a
:class:`ZygoteReady` or a :class:`ZygoteFailed`.
"""

from __future__ import annotations

import io
import os
import pickle
import reprlib
import socket
import struct
from collections.abc import Iterable, Iterator
from typing import NamedTuple, NoReturn

from ._pid import Pid, Ref
from ._transport import NodeInfo

__all__ = [
    "IDENTITY",
    "LENGTH",
    "REFUSED_UID",
    "RUN",
    "MAX_REQUEST",
    "MAX_FDS",
    "MAX_ERROR_TEXT",
    "LIST_CHUNK",
    "Identity",
    "SpawnSpec",
    "SpawnRequest",
    "ListRequest",
    "StopRequest",
    "Request",
    "BadRequest",
    "LiveProcess",
    "ZygoteConfig",
    "ZygoteReady",
    "ZygoteFailed",
    "recv_exact",
    "parse_request",
    "encode_request",
    "error_answer",
    "list_answer",
    "parse_list_answer",
    "absolute_path",
]

IDENTITY = struct.Struct("<QIQ")  # uid, ospid, start time
LENGTH = struct.Struct("<I")
#: The uid of an identity that refuses a spawn (its ospid is an errno).
REFUSED_UID = 0
#: What the spawner sends its new process once its link and monitor are
#: registered: the process may run its function.
RUN = b"r"
MAX_REQUEST = 1 << 16
MAX_FDS = 4
MAX_ERROR_TEXT = 1 << 12
LIST_CHUNK = 2000


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes from the stream ``sock``; EOFError if it closes first."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("peer went away")
        buf += chunk
    return bytes(buf)


# --------------------------------------------------------------- spawning


class Identity(NamedTuple):
    """Who a new process is, as its embryo tells the spawner."""

    uid: int
    ospid: int
    start: int

    def pack(self) -> bytes:
        return IDENTITY.pack(self.uid, self.ospid, self.start)

    @classmethod
    def read(cls, sock: socket.socket) -> Identity:
        return cls(*IDENTITY.unpack(recv_exact(sock, IDENTITY.size)))


class SpawnSpec(NamedTuple):
    """What the spawner sends its new process: the spawner, whether it links,
    the ref of its monitor, its absolute ``sys.path``, and the pickled
    ``(fn, args, kwargs)``."""

    parent: Pid
    link: bool
    monitor_ref: Ref | None
    path: list[str]
    blob: bytes


def error_answer(code: int, text: str) -> bytes:
    """What a spawner the zygote has no process for reads instead of an
    identity: the errno ``code`` and ``text``, cut to :data:`MAX_ERROR_TEXT`."""
    body = text.encode("utf-8", "replace")[:MAX_ERROR_TEXT]
    return Identity(REFUSED_UID, code, 0).pack() + LENGTH.pack(len(body)) + body


def absolute_path(entries: Iterable[object]) -> list[str]:
    """``entries`` (a ``sys.path``) as absolute paths: ``''`` is the current
    directory, relative entries are resolved against it, non-str entries
    are left out.  What a spawner sends the zygote, which must never resolve
    a path against its own current directory."""
    return [os.path.abspath(entry) if entry else os.getcwd() for entry in entries if isinstance(entry, str)]


# --------------------------------------------------------------- requests


class SpawnRequest(NamedTuple):
    """Give me a process.  ``learn``: ``(module, absolute sys.path)`` the
    zygote should import so that later processes start with it, or None."""

    learn: tuple[str, tuple[str, ...]] | None = None


class ListRequest(NamedTuple):
    """Which processes are alive: answered with :class:`LiveProcess` rows."""


class StopRequest(NamedTuple):
    """Kill every process of the node, remove its directory, exit."""


Request = SpawnRequest | ListRequest | StopRequest
_TAGS: dict[type[Request], str] = {SpawnRequest: "spawn", ListRequest: "list", StopRequest: "stop"}
_ARITY: dict[str, int] = {"spawn": 1, "list": 0, "stop": 0}


class BadRequest(ValueError):
    """A datagram on the zygote's channel that is not a well-formed request."""


def encode_request(request: Request) -> bytes:
    return pickle.dumps((_TAGS[type(request)], *request))


_PLAIN_SPAWN = SpawnRequest()
#: Nearly every request is this one.  Recognising its bytes spares the zygote
#: the unpickler: after each fork every page the zygote writes (a reference
#: count is a write) is copied first, and the unpickler's pages were the
#: largest part of the time a spawn request waited in the zygote.
_PLAIN_SPAWN_BYTES = encode_request(_PLAIN_SPAWN)


class _PlainUnpickler(pickle.Unpickler):
    """Builds tuples, lists, strings, numbers and None; refuses every global
    (no class is instantiated and no module imported in the zygote, which
    must stay single threaded)."""

    def find_class(self, module: str, name: str) -> NoReturn:
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def parse_request(data: bytes, nfds: int, flags: int = 0) -> Request:
    """The request in ``data`` (received with ``nfds`` descriptors and recvmsg
    ``flags``), or :class:`BadRequest` saying what is wrong with it.  A spawn
    request carries exactly one descriptor, the others none."""
    if data == _PLAIN_SPAWN_BYTES and nfds == 1 and not flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        return _PLAIN_SPAWN
    if flags & socket.MSG_TRUNC:
        raise BadRequest(f"longer than {MAX_REQUEST} bytes")
    if flags & socket.MSG_CTRUNC:
        raise BadRequest("its descriptors were cut off (more than allowed, or no descriptor left)")
    if not data:
        raise BadRequest("empty")
    msg = _plain_loads(data)
    if not isinstance(msg, tuple) or not msg or not isinstance(msg[0], str) or msg[0] not in _ARITY:
        raise BadRequest(f"not a request: {_summary(msg)}")
    tag = msg[0]
    if len(msg) - 1 != _ARITY[tag]:
        raise BadRequest(f"{tag!r} takes {_ARITY[tag]} argument(s), got {len(msg) - 1}")
    wanted = 1 if tag == "spawn" else 0
    if nfds != wanted:
        raise BadRequest(f"{tag!r} carries {wanted} descriptor(s), got {nfds}")
    if tag == "spawn":
        return SpawnRequest(_parse_learn(msg[1]))
    return ListRequest() if tag == "list" else StopRequest()


def _plain_loads(data: bytes) -> object:
    buf = io.BytesIO(data)
    try:
        msg = _PlainUnpickler(buf).load()
    except Exception as exc:  # noqa: BLE001 - any way a pickle can be broken
        raise BadRequest(f"not a plain pickle ({type(exc).__name__}: {exc})") from None
    if buf.tell() != len(data):
        raise BadRequest(f"{len(data) - buf.tell()} bytes after the pickle")
    return msg


def _parse_learn(learn: object) -> tuple[str, tuple[str, ...]] | None:
    if learn is None:
        return None
    if not (isinstance(learn, (tuple, list)) and len(learn) == 2):
        raise BadRequest(f"learn must be None or (module, path), not {_summary(learn)}")
    module, path = learn
    if not isinstance(module, str) or not module:
        raise BadRequest(f"learn's module must be a non-empty str, not {_summary(module)}")
    # A NUL in a sys.path entry makes every later import that reaches it
    # raise ValueError, in the zygote and in every process forked from it.
    if not isinstance(path, (tuple, list)) or not all(_is_clean_path(p) for p in path):
        raise BadRequest(f"learn's path must be absolute paths, not {_summary(path)}")
    return module, tuple(path)


def _is_clean_path(entry: object) -> bool:
    return isinstance(entry, str) and os.path.isabs(entry) and "\0" not in entry


_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60


def _summary(value: object) -> str:
    """A short repr, safe for any nesting depth (a deeply nested tuple in a
    request must not make the zygote recurse)."""
    return _repr.repr(value)


# ---------------------------------------------------------------- listing


class LiveProcess(NamedTuple):
    """A process of the node the zygote has not reaped; ``spare``: an embryo
    not yet handed a function."""

    ospid: int
    uid: int
    spare: bool


def list_answer(rows: list[LiveProcess]) -> Iterator[bytes]:
    """The datagrams answering a list request (one, empty, for no rows).  The
    rows travel as plain tuples."""
    for i in range(0, max(1, len(rows)), LIST_CHUNK):
        part = [tuple(row) for row in rows[i : i + LIST_CHUNK]]
        yield pickle.dumps((i + LIST_CHUNK < len(rows), part))


def parse_list_answer(data: bytes) -> tuple[bool, list[LiveProcess]]:
    """``(more to come, rows)`` of one answer datagram."""
    more, part = pickle.loads(data)
    return bool(more), [LiveProcess(*row) for row in part]


# --------------------------------------------------------------- starting


class ZygoteConfig(NamedTuple):
    """What the root tells the zygote it starts."""

    node: NodeInfo
    root_ospid: int
    root_start: int
    preload: tuple[str, ...]
    embryos: int


class ZygoteReady(NamedTuple):
    ospid: int


class ZygoteFailed(NamedTuple):
    detail: str
