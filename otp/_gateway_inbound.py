"""The gateway's side facing other nodes: what arrives on its ROUTER (see
:mod:`otp._gateway` for the protocol), delivered to local processes as if
their remote senders had sent it themselves, and the signals and control
records it sends to other nodes.

A connection is looked at only once it said HELLO with the name of the
member whose key the CURVE handshake proved (:meth:`InboundMixin._hello`);
until then whatever it sends is counted and dropped unread.  Signals to
local processes are delivered with a non-blocking ``sendto``: a full queue
(a stopped process) keeps them here, in order, retried for as long as a
local sender would wait (``SIGNAL_SEND_TIMEOUT``), so one stopped process
never holds the whole node's traffic.

A frame for a name of this node (``otp.RemoteName``, see
:mod:`otp._dist_wire`) is delivered to the process the node's name
service resolves the name to, when it arrives; a ``WhereisRequest`` is
answered the same way.
"""

from __future__ import annotations

import logging
import pickle
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import zmq
import zmq.utils.z85

from . import _naming, _oslib, _process
from ._dist_wire import (
    BYE,
    CTL,
    HELLO,
    MSGS,
    NAMED_UID,
    REFUSED,
    ROUTE,
    SIG,
    WELCOME,
    NodeAddress,
    decode_hello,
    encode_hello,
    iter_batch,
    parse_name,
)
from ._gateway_links import Relations
from ._pid import Pid
from ._signal_records import Dead, Demonitor, Exit, Link, Monitor, Signal, Unlink, decode_signal, encode_signal
from ._signals import SIGNAL_SEND_TIMEOUT

if TYPE_CHECKING:
    from ._gateway_conns import Conn

log = logging.getLogger("otp.dist")

__all__ = ["InboundMixin"]

#: Messages taken from the ROUTER before the other sockets are looked at.
_BATCH = 512
_NOBLOCK = int(zmq.NOBLOCK)
_PROTOCOL = 5
#: The signals that cross nodes.
_CROSSING = (Link, Unlink, Monitor, Demonitor, Exit, Dead)


class InboundMixin:
    """The ROUTER side of :class:`otp._gateway.Gateway`."""

    proc: _process.Process
    name: str
    creation: int
    endpoint: str
    zap: zmq.Socket
    allowed: dict[bytes, str]
    refused_keys: set[bytes]
    router: zmq.Socket
    tx: socket.socket
    peers: dict[str, NodeAddress]
    inbound: dict[bytes, str]
    inbound_creation: dict[str, int]
    rids_of: dict[str, set[bytes]]
    stale: set[bytes]
    last_heard: dict[str, float]
    max_silence: dict[str, float]
    refused: int
    unauthenticated_dropped: int
    sig_backlog: dict[int, list[tuple[float, bytes]]]
    relations: Relations
    conns: dict[str, Conn]
    _ensure_conn: Callable[[str], Conn | None]
    _node_down: Callable[[str, object], None]
    _control: Callable[[str, bytes], None]
    names_unknown: int

    def _zap(self) -> None:
        """Answer the ZAP requests of the CURVE handshakes (RFC 27): a member's
        key is allowed, with its name as user id; any other is refused."""
        zap = self.zap
        while True:
            try:
                frames = zap.recv_multipart(_NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 6:
                continue  # not a ZAP request: nothing to answer
            version, request_id, _domain, address, _identity, mechanism = frames[:6]
            key = zmq.utils.z85.encode(frames[6]) if mechanism == b"CURVE" and len(frames) > 6 else b""
            name = self.allowed.get(key)
            if name is not None:
                zap.send_multipart([version, request_id, b"200", b"OK", name.encode(), b""])
                continue
            zap.send_multipart([version, request_id, b"400", b"unknown key", b"", b""])
            self.refused += 1
            if key not in self.refused_keys and len(self.refused_keys) < 4096:
                self.refused_keys.add(key)
                log.warning(
                    "%s refused a connection from %s: its key %s is not a member's (logged once per key)",
                    self.name,
                    address.decode(errors="replace"),
                    key.decode(errors="replace") or "(not CURVE)",
                )

    def _from_router(self) -> None:
        router = self.router
        inbound = self.inbound
        heard: set[str] = set()
        for _ in range(_BATCH):
            try:
                rid = router.recv(_NOBLOCK)
            except zmq.Again:
                break
            node = inbound.get(rid)
            if node is None:
                self._unknown_rid(rid, router.recv_multipart(copy=False))
                continue
            parts = router.recv_multipart()
            heard.add(node)
            kind = parts[0]
            try:
                if kind == MSGS and len(parts) == 2:
                    self._deliver_batch(parts[1])
                elif kind == SIG and len(parts) == 3:
                    self._deliver_signal(node, parts[1], parts[2])
                elif kind == CTL and len(parts) == 2:
                    self._control(node, parts[1])
            except Exception:
                log.exception("%s dropped a message of kind %r from %s", self.name, kind, node)
        if heard:
            now = time.monotonic()
            last, longest = self.last_heard, self.max_silence
            for node in heard:
                gap = now - last.get(node, now)
                if gap > longest.get(node, 0.0):
                    longest[node] = gap
                last[node] = now

    def _unknown_rid(self, rid: bytes, frames: list[zmq.Frame]) -> None:
        """A message from a connection that has not said HELLO (or that was
        counted down): a HELLO is checked against the key the handshake
        proved; anything else is dropped unread."""
        if rid in self.stale:
            self._send_router(rid, [BYE])
            return
        if len(frames) == 2 and frames[0].bytes == HELLO:
            user_id = frames[0].get("User-Id")
            self._hello(rid, user_id if isinstance(user_id, str) else "", frames[1].bytes)
            return
        self.unauthenticated_dropped += 1

    def _send_router(self, rid: bytes, parts: list[bytes]) -> None:
        try:
            self.router.send_multipart([rid, *parts], _NOBLOCK)
        except zmq.ZMQError:
            pass

    def _hello(self, rid: bytes, user_id: str, body: bytes) -> None:
        try:
            name, creation, endpoint = decode_hello(body)
        except ValueError as exc:
            self._refuse_hello(rid, f"malformed hello: {exc}")
            return
        if name != user_id:
            self._refuse_hello(rid, f"hello names {name!r}, its key belongs to {user_id!r}")
            return
        if name == self.name:
            self._refuse_hello(rid, "that is this node's own name")
            return
        known = self.inbound_creation.get(name)
        if known is not None and known != creation and name in self.conns:
            self._node_down(name, "restarted")
        self.inbound[rid] = name
        self.inbound_creation[name] = creation
        self.rids_of.setdefault(name, set()).add(rid)
        self.last_heard[name] = time.monotonic()
        if endpoint:
            addr = self.peers.get(name)
            if addr is not None and addr.endpoint is None:
                self.peers[name] = addr._replace(endpoint=endpoint)
        self._send_router(rid, [WELCOME, encode_hello(self.name, self.creation, self.endpoint)])
        self._ensure_conn(name)  # the other direction

    def _refuse_hello(self, rid: bytes, why: str) -> None:
        self.refused += 1
        log.warning("%s refused a connection: %s", self.name, why)
        self._send_router(rid, [REFUSED, why.encode()])

    def _deliver_batch(self, batch: bytes) -> None:
        """Frames from processes of another node, for ours (see
        :func:`otp._dist_wire.pack_batch`)."""
        proc = self.proc
        peers = proc.peers
        creation = self.creation
        frame_in = self.relations.frame_in
        unpack = ROUTE.unpack_from
        head = ROUTE.size + 1
        for msg in iter_batch(batch):
            n = msg[0]
            tuid, tcreation, suid, seq, _ = unpack(msg, 1 + n)
            if tuid == NAMED_UID:
                self._deliver_named(msg[head + n :])
                continue
            if tcreation and tcreation != creation:
                continue  # for a process of an earlier incarnation of this node
            p = peers.get(tuid) or proc.peer(Pid(self.name, tuid, 0, 0, creation))
            if p.send is not None:
                p.send(cast(bytes, msg[head + n :]))  # a memoryview: zmq copies it once
            frame_in(suid, tuid, seq)

    def _deliver_named(self, body: memoryview) -> None:
        """A frame for a name of this node: to the process holding it now,
        dropped (and counted) if none does."""
        try:
            name, offset = parse_name(body)
        except ValueError as exc:
            log.warning("%s dropped a frame for a malformed name: %s", self.name, exc)
            return
        pid = self._whereis(name)
        if pid is None:
            self.names_unknown += 1
            return
        proc = self.proc
        p = proc.peers.get(pid.uid) or proc.peer(pid)
        if p.send is not None:
            p.send(cast(bytes, body[offset:]))

    def _whereis(self, name: object) -> Pid | None:
        """The local process registered as ``name``, or None (a name the
        name service cannot take is nobody's)."""
        try:
            return _naming.resolve(name)
        except Exception:  # noqa: BLE001 - NoProc, or a name of the wrong shape
            return None

    def _deliver_signal(self, node: str, pid_bytes: bytes, data: bytes) -> None:
        target = pickle.loads(pid_bytes)
        sig = decode_signal(data)
        if type(target) is not Pid or target.node != self.name or sig.sender.node != node:
            log.warning("%s dropped a signal from %s that names the wrong nodes", self.name, node)
            return
        if target.creation and target.creation != self.creation:
            delivered = False
        elif isinstance(sig, Exit) and sig.reason == "kill":
            if target.ospid:
                _oslib.pidfd_kill(target.ospid, target.start)
            return
        elif not isinstance(sig, _CROSSING):
            return  # process_info questions and registry notes stay on their node
        else:
            delivered = self._sendto(target.uid, data)
        if delivered:
            self.relations.inbound(sig, target)
        elif isinstance(sig, Link):
            self._signal_remote(sig.sender, Dead(target, 0, "noproc", True, [], True))
        elif isinstance(sig, Monitor):
            self._signal_remote(sig.sender, Dead(target, 0, "noproc", False, [sig.ref], True))

    def _sendto(self, uid: int, data: bytes) -> bool:
        """Deliver a signal datagram to local process ``uid``, in order with
        those before it; False if it does not exist.  A full queue (a stopped
        process) does not hold the gateway: the datagram waits here, retried
        until ``SIGNAL_SEND_TIMEOUT``, as a local sender would wait."""
        waiting = self.sig_backlog.get(uid)
        if waiting is not None:
            waiting.append((time.monotonic() + SIGNAL_SEND_TIMEOUT, data))
            return True
        try:
            self.tx.sendto(data, self.proc.node.signal_address(uid))
            return True
        except (BlockingIOError, InterruptedError):
            self.sig_backlog[uid] = [(time.monotonic() + SIGNAL_SEND_TIMEOUT, data)]
            return True
        except OSError:
            return False

    def _retry_backlog(self, now: float) -> None:
        for uid, waiting in list(self.sig_backlog.items()):
            address = self.proc.node.signal_address(uid)
            while waiting:
                deadline, data = waiting[0]
                try:
                    self.tx.sendto(data, address)
                except (BlockingIOError, InterruptedError):
                    if now < deadline:
                        break
                    log.error("%s dropped a signal for uid %x: its port did not drain", self.name, uid)
                except OSError:
                    waiting.clear()
                    break
                waiting.pop(0)
            if not waiting:
                del self.sig_backlog[uid]

    def _to_local(self, pid: Pid, sig: Signal) -> None:
        self._sendto(pid.uid, encode_signal(sig))

    def _signal_remote(self, target: Pid, sig: Signal) -> None:
        """Send a signal the gateway makes up to a process of another node."""
        conn = self._ensure_conn(target.node)
        if conn is not None:
            conn.dealer.send_multipart([SIG, pickle.dumps(target, _PROTOCOL), encode_signal(sig)])

    def _control_to(self, node: str, record: object) -> bool:
        conn = self._ensure_conn(node)
        if conn is None:
            return False
        conn.dealer.send_multipart([CTL, pickle.dumps(record, _PROTOCOL)])
        return True
