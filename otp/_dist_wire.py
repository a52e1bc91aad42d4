"""Wire formats of distribution: between a process and its node's gateway,
and between the gateways of two nodes (see :mod:`otp._gateway`).

Process -> gateway.  A frame for a process of another node is pushed to the
gateway's intake (``NodeInfo.gateway_intake``) as one ZeroMQ message: a
*route* (:func:`pack_route`: the target's node name, then the target's uid
and creation, the sender's uid, the frame's sequence number and how many
signals the sender sent the gateway before it) followed by the *remote
frame*: the ordinary mailbox frame (:mod:`otp._codec`) behind a prefix
naming the sender's node (:func:`remote_prefix`).  The receiver needs that
name (its sweeps must not take a process of a connected node for dead, see
:mod:`otp._peers`); the prefix starts with :data:`REMOTE_MARK`, a byte that
no pickle starts with, so a receiver decodes local frames exactly as before
and meets the prefix only where a local frame fails to load.  The gateways
read the route, never the frame: uid and sequence number let them keep, per
pair of processes with a link or monitor between them, the number of the
last frame they passed on, which the exit signals they make up
(``'noconnection'``, ``'killed'``) carry so that they come after those
frames, as a process's own exit signal does.

A frame for a *name* on another node (``otp.RemoteName``) is pushed the
same way, with a route whose target uid is 0 (never a process's: see
:func:`otp._pid.new_uid`) and sequence number 0, and between the route and
the remote frame the name (:func:`pack_name`): the gateway of that node
resolves the name there and hands the remote frame to the process it names
(dropped, as Erlang drops it, if nobody holds the name).  The frame inside
is numbered 0, which a receiver takes in at once without counting it (see
``FrameOrderMixin._out_of_order``): the sender cannot number it in its sequence
to a process it does not know.  Its order comes from its path: one socket
from the sender to its gateway, one connection between the gateways, one
socket from the gateway to the receiver, the path of every frame from that
sender to that receiver.  A signal the sender sends afterwards (its exit)
may overtake it: a receiver holds a signal until the frames numbered
before it are in, and this one has no number.

A signal for a process of another node is one datagram to the gateway's
signal socket (``NodeInfo.gateway_signals``): :func:`encode_forward`, the
target pid and the signal datagram of :mod:`otp._signal_records`.  A
datagram (not the intake) because a process sends its ``Dead`` notices
after its ZeroMQ context has ended, and because a datagram is in the
gateway's queue when ``sendto`` returns: when the gateway sees the process
gone (pidfd), every notice it sent is there to read first, so the gateway
tells a missing notice from a late one exactly as a local watcher does.

Gateway -> gateway.  Each node has one DEALER per node it talks to, which
connects to that node's ROUTER; everything a node sends to another goes on
its own DEALER, so one connection carries one direction, in order.  Messages
(ZeroMQ multipart, first part the kind):

* ``HELLO json`` (first on every connection) -> answered ``WELCOME json``
  or ``REFUSED text`` on the same connection: name, creation, endpoint;
* ``MSGS batch``: the frames for that node the gateway took in one go, each
  as it came from the intake (route and remote frame) behind its length
  (:func:`pack_batch`, :func:`iter_batch`): one ZeroMQ message, so one
  encryption and one system call for many frames;
* ``SIG pid datagram``: ``pid`` the pickled target pid;
* ``CTL record``: a pickled :class:`SpawnRequest`, :class:`SpawnReply`,
  :class:`AliveRequest`, :class:`AliveReply`, :class:`WhereisRequest` or
  :class:`WhereisReply`;
* ``TICK``: nothing, sent every quarter tick time (see
  :data:`otp._gateway.NET_TICKTIME`);
* ``BYE``: "you are down to me" (sent on the ROUTER to a connection the
  node no longer counts as up; the receiver then counts the sender down too).

Pickles from another node are only loaded after the CURVE handshake
authenticated it (ZAP) and its HELLO named the node its key belongs to.
"""

from __future__ import annotations

import json
import pickle
import struct
from typing import Any, NamedTuple

from ._keys import check_key
from ._pid import Pid, Ref

__all__ = [
    "GATEWAY_NAME",
    "REMOTE_MARK",
    "ROUTE",
    "remote_prefix",
    "parse_remote_prefix",
    "pack_route",
    "encode_forward",
    "decode_forward",
    "encode_hello",
    "decode_hello",
    "HELLO",
    "WELCOME",
    "REFUSED",
    "MSGS",
    "pack_batch",
    "iter_batch",
    "parse_route",
    "SIG",
    "CTL",
    "BYE",
    "TICK",
    "NodeAddress",
    "SpawnRequest",
    "SpawnReply",
    "AliveRequest",
    "AliveReply",
    "WhereisRequest",
    "WhereisReply",
    "NAMED_UID",
    "pack_name",
    "parse_name",
    "WIRE_VERSION",
]

#: The name the gateway registers under (Erlang's net_kernel).
GATEWAY_NAME = "net_kernel"

#: The first byte of a remote frame: not an opcode of any pickle protocol,
#: so ``pickle.loads`` of a remote frame fails at once and a local frame
#: never starts with it.
REMOTE_MARK = b"\xfe"
_MARK = REMOTE_MARK[0]
#: Target uid, target creation, sender uid, sequence number, and how many
#: signals the sender had handed the gateway before this frame (see
#: Gateway._from_intake: a frame never overtakes a signal sent before it).
ROUTE = struct.Struct("<QIQQQ")
_CREATION = struct.Struct("<I")
#: The target uid of a route to a name (see the module docstring).
NAMED_UID = 0
#: Bumped when gateways of one version could not understand another's.
WIRE_VERSION = 1

HELLO = b"H"
WELCOME = b"W"
REFUSED = b"X"
MSGS = b"M"
SIG = b"S"
CTL = b"C"
BYE = b"D"
TICK = b"T"

_PROTOCOL = 5


def remote_prefix(node: str, creation: int) -> bytes:
    """What a process puts before each frame it sends to another node."""
    name = node.encode("utf-8")
    if len(name) > 255:
        raise ValueError(f"node name longer than 255 bytes: {node!r}")
    return REMOTE_MARK + bytes((len(name),)) + name + _CREATION.pack(creation)


def parse_remote_prefix(frame: bytes) -> tuple[str, int, int] | None:
    """``(node, creation, offset of the frame)`` of a remote frame, None if
    ``frame`` is not one."""
    if len(frame) < 7 or frame[0] != _MARK:
        return None
    n = frame[1]
    end = 2 + n
    if len(frame) < end + 4:
        return None
    try:
        node = frame[2:end].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return node, _CREATION.unpack_from(frame, end)[0], end + 4


def pack_route(target: Pid, sender_uid: int, seq: int, signals: int) -> bytes:
    """The route of a frame for ``target``, ``seq``-th from the sender,
    which had handed the gateway ``signals`` signals before it."""
    node = target.node.encode("utf-8")
    return bytes((len(node),)) + node + ROUTE.pack(target.uid, target.creation, sender_uid, seq, signals)


def parse_route(message: bytes | memoryview) -> tuple[bytes, tuple[int, int, int, int, int], int]:
    """``(node name, (target uid, target creation, sender uid, seq,
    signals), offset of the remote frame)`` of an intake message."""
    n = message[0]
    return bytes(message[1 : 1 + n]), ROUTE.unpack_from(message, 1 + n), 1 + n + ROUTE.size


_LENGTH = struct.Struct("<I")


def pack_name(name: object) -> bytes:
    """A name for a frame to a name of another node: its pickle behind its
    length."""
    data = pickle.dumps(name, _PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def parse_name(body: bytes | memoryview) -> tuple[object, int]:
    """``(name, offset of what follows)`` of :func:`pack_name`'s output at
    the start of ``body``; ValueError if malformed."""
    if len(body) < 4:
        raise ValueError("named frame cut short")
    (n,) = _LENGTH.unpack_from(body, 0)
    if len(body) < 4 + n:
        raise ValueError("named frame cut short")
    try:
        name = pickle.loads(body[4 : 4 + n])
    except Exception as exc:
        raise ValueError(f"malformed name: {exc!r}") from exc
    return name, 4 + n


def pack_batch(messages: list[bytes]) -> bytes:
    """Intake messages as one batch (each behind its length)."""
    parts: list[bytes] = []
    pack = _LENGTH.pack
    for message in messages:
        parts.append(pack(len(message)))
        parts.append(message)
    return b"".join(parts)


def iter_batch(batch: bytes) -> list[memoryview]:
    """The intake messages of a batch; ValueError if it is cut short."""
    view = memoryview(batch)
    out = []
    offset, end = 0, len(batch)
    unpack = _LENGTH.unpack_from
    while offset < end:
        if end - offset < 4:
            raise ValueError("batch cut short")
        (n,) = unpack(batch, offset)
        offset += 4
        if end - offset < n:
            raise ValueError("batch cut short")
        out.append(view[offset : offset + n])
        offset += n
    return out


def encode_forward(target: Pid, datagram: bytes) -> bytes:
    """A signal datagram for a process of another node, as the gateway reads it."""
    return pickle.dumps((target, datagram), _PROTOCOL)


def decode_forward(data: bytes) -> tuple[Pid, bytes]:
    """``(target, datagram)`` of :func:`encode_forward`; ValueError if malformed."""
    try:
        target, datagram = pickle.loads(data)
    except Exception as exc:
        raise ValueError(f"malformed forwarded signal: {exc!r}") from exc
    if type(target) is not Pid or type(datagram) is not bytes:
        raise ValueError("malformed forwarded signal")
    return target, datagram


def encode_hello(name: str, creation: int, endpoint: str | None) -> bytes:
    """The body of HELLO and WELCOME: JSON, not a pickle (it is read before
    the peer has proved which node it is)."""
    return json.dumps({"v": WIRE_VERSION, "name": name, "creation": creation, "endpoint": endpoint}).encode()


def decode_hello(data: bytes) -> tuple[str, int, str | None]:
    """``(name, creation, endpoint)``; ValueError if malformed."""
    try:
        obj: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed hello: {exc}") from None
    if not isinstance(obj, dict) or obj.get("v") != WIRE_VERSION:
        raise ValueError(f"hello of another wire version: {obj.get('v') if isinstance(obj, dict) else obj!r}")
    name, creation, endpoint = obj.get("name"), obj.get("creation"), obj.get("endpoint")
    if not isinstance(name, str) or not name or type(creation) is not int or not 0 < creation < 1 << 32:
        raise ValueError("malformed hello")
    if endpoint is not None and not isinstance(endpoint, str):
        raise ValueError("malformed hello endpoint")
    return name, creation, endpoint


class NodeAddress(NamedTuple):
    """Where a node listens (None: not known yet, learnt from its HELLO when
    it connects) and the CURVE public key it proves itself with: an entry of
    a static peer list, in the shape a cluster store publishes
    (:meth:`to_json`)."""

    endpoint: str | None
    public_key: bytes

    @classmethod
    def of(cls, value: object) -> NodeAddress:
        """A NodeAddress from itself or an ``(endpoint, public_key)`` pair;
        ValueError for anything else (a key that is not Z85 included)."""
        if isinstance(value, tuple) and len(value) == 2:
            endpoint, key = value
            if endpoint is not None and not isinstance(endpoint, str):
                raise ValueError(f"a peer's endpoint must be a str or None, not {endpoint!r}")
            return cls(endpoint, check_key(key, "a peer's public key"))
        raise ValueError(f"a peer is (endpoint, public_key), not {value!r}")

    def record(self) -> dict[str, Any]:
        """The address as JSON-ready data: what a node publishes about
        itself in a cluster store (``otp.cluster.ClusterConfig.info``),
        with ``otp.net_kernel.info()``'s ``endpoint`` and ``public_key``."""
        return {"endpoint": self.endpoint, "public_key": self.public_key.decode()}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> NodeAddress:
        """The address in :meth:`record`'s data; ValueError if malformed."""
        if not isinstance(record, dict):
            raise ValueError(f"a node record is a dict, not {record!r}")
        return cls.of((record.get("endpoint"), record.get("public_key", "")))

    def to_json(self, name: str) -> str:
        return json.dumps({"name": name, **self.record()})

    @classmethod
    def from_json(cls, text: str | bytes) -> tuple[str, NodeAddress]:
        obj = json.loads(text)
        return obj["name"], cls.from_record(obj)


class SpawnRequest(NamedTuple):
    """Spawn ``blob`` (pickled ``(fn, args, kwargs)``) for ``parent``, linked
    to it if ``link``, monitored by it under ``ref`` if not None."""

    req: int
    parent: Pid
    link: bool
    ref: Ref | None
    module: str | None
    path: list[str]
    blob: bytes


class SpawnReply(NamedTuple):
    """The pid of :class:`SpawnRequest` ``req``, or None and why not."""

    req: int
    pid: Pid | None
    error: str | None


class AliveRequest(NamedTuple):
    """Is ``pid`` (of the receiving node) alive?"""

    req: int
    pid: Pid


class AliveReply(NamedTuple):
    req: int
    alive: bool


class WhereisRequest(NamedTuple):
    """Which process holds ``name`` on the receiving node?"""

    req: int
    name: object


class WhereisReply(NamedTuple):
    """The pid holding the name of :class:`WhereisRequest` ``req``, or None."""

    req: int
    pid: Pid | None


CONTROL_RECORDS = (SpawnRequest, SpawnReply, AliveRequest, AliveReply, WhereisRequest, WhereisReply)
