"""The gateway's connections to other nodes: set-up, up, down (see
:mod:`otp._gateway` for the protocol and the liveness rules).

A :class:`Conn` is this node's DEALER to one other node, a CURVE client
holding that node's public key, with a socket monitor that reports the
handshake and the disconnect.  It is made on first use (a frame, a signal,
``connect_node``, a spawn) or when that node says HELLO to us, starts with
our HELLO, and is *up* once that node's WELCOME arrives; until then what is
sent waits in it.  It goes down when libzmq reports it disconnected (the
peer died, or the heartbeats timed out), when its tcp connect is refused
(nothing listens there: the node is not running; Erlang's connect fails at
once too), when the set-up takes longer than the set-up timeout (a host
that does not answer), when nothing was heard from the node for the tick time,
or when either side says so; everything about that node is then settled at
once (:meth:`ConnsMixin._node_down`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from ._dist_wire import BYE, HELLO, REFUSED, TICK, WELCOME, NodeAddress, decode_hello, encode_hello
from ._gateway_links import Relations
from ._keys import KeyPair
from ._pid import Pid
from ._signal_records import Signal

if TYPE_CHECKING:
    from . import _process

log = logging.getLogger("otp.dist")

__all__ = ["Conn", "ConnsMixin"]

_NOBLOCK = int(zmq.NOBLOCK)
_base_send: Any = getattr(zmq.Socket.__mro__[1], "send")  # noqa: B009
_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_CLOSED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_CONNECT_RETRIED
)
_FAILED = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
#: Milliseconds between attempts of a tcp connect that was refused, while
#: the connection is being set up.
_RECONNECT_IVL_MS = 100


class Conn:
    """This node's connection to another node."""

    __slots__ = (
        "name",
        "dealer",
        "send",
        "monitor",
        "up",
        "creation",
        "deadline",
        "waiters",
        "next_tick",
        "batch",
        "batch_bytes",
    )

    def __init__(self, name: str, dealer: zmq.Socket, monitor: zmq.Socket, deadline: float) -> None:
        self.name = name
        self.dealer = dealer
        # pyzmq's base-class send (see otp._peers): the sugar costs more than
        # the send on a busy connection.
        self.send: Callable[..., Any] = _base_send.__get__(dealer)
        self.batch: list[bytes] = []  # intake messages to send as one (Gateway._from_intake)
        self.batch_bytes = 0
        self.monitor = monitor
        self.up = False
        self.creation: int | None = None  # the node's, from its WELCOME
        self.deadline = deadline  # of the set-up
        self.waiters: list[tuple[Pid, Any]] = []  # connect_node calls waiting for the outcome
        self.next_tick = 0.0


class ConnsMixin:
    """Connections of :class:`otp._gateway.Gateway`."""

    proc: _process.Process
    name: str
    creation: int
    keys: KeyPair
    endpoint: str
    ticktime: float
    setup_timeout: float
    peers: dict[str, NodeAddress]
    conns: dict[str, Conn]
    conns_by_route: dict[bytes, Conn]
    inbound: dict[bytes, str]
    rids_of: dict[str, set[bytes]]
    stale: set[bytes]
    last_heard: dict[str, float]
    relations: Relations
    _heartbeats: Callable[[zmq.Socket], None]
    _rebuild_socks: Callable[[], None]
    _from_router: Callable[[], None]
    _send_router: Callable[[bytes, list[bytes]], None]
    _to_local: Callable[[Pid, Signal], None]
    _node_down_requests: Callable[[str], None]
    _node_subscribers: Callable[[str, bool, object], None]

    def _ensure_conn(self, name: str) -> Conn | None:
        """The connection to ``name``, set up if there is none; None if
        ``name`` is not a member whose endpoint is known (or is this node)."""
        conn = self.conns.get(name)
        if conn is not None:
            return conn
        addr = self.peers.get(name)
        if addr is None or addr.endpoint is None or name == self.name:
            return None
        ctx = self.proc.ctx
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.CURVE_SERVERKEY, addr.public_key)
        dealer.setsockopt(zmq.CURVE_PUBLICKEY, self.keys.public)
        dealer.setsockopt(zmq.CURVE_SECRETKEY, self.keys.secret)
        dealer.setsockopt(zmq.SNDHWM, 0)
        dealer.setsockopt(zmq.RCVHWM, 0)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.RECONNECT_IVL, _RECONNECT_IVL_MS)
        dealer.setsockopt(zmq.HANDSHAKE_IVL, max(1, int(self.setup_timeout * 1000)))
        dealer.setsockopt(zmq.CONNECT_TIMEOUT, max(1, int(self.setup_timeout * 1000)))
        self._heartbeats(dealer)
        monitor = dealer.get_monitor_socket(_EVENTS)
        dealer.connect(addr.endpoint)
        dealer.send_multipart([HELLO, encode_hello(self.name, self.creation, self.endpoint)])
        conn = Conn(name, dealer, monitor, time.monotonic() + self.setup_timeout)
        self.conns[name] = conn
        self.conns_by_route[name.encode("utf-8")] = conn
        self._rebuild_socks()
        return conn

    def _from_dealer(self, conn: Conn) -> None:
        """What the other node answers on our connection: WELCOME (it is
        up), REFUSED, or BYE (it counts us down)."""
        while conn.name in self.conns:
            try:
                parts = conn.dealer.recv_multipart(_NOBLOCK)
            except zmq.Again:
                return
            kind = parts[0]
            if kind == WELCOME and len(parts) == 2 and not conn.up:
                try:
                    name, creation, _ = decode_hello(parts[1])
                except ValueError as exc:
                    self._node_down(conn.name, ("bad_welcome", str(exc)))
                    return
                if name != conn.name:
                    self._node_down(conn.name, ("wrong_node", name))
                    return
                conn.creation = creation
                self._node_up(conn)
            elif kind == REFUSED:
                why = parts[1].decode(errors="replace") if len(parts) > 1 else ""
                log.warning("%s: %s refused our connection: %s", self.name, conn.name, why)
                self._node_down(conn.name, ("refused", why))
                return
            elif kind == BYE:
                self._node_down(conn.name, "disconnect")
                return

    def _events(self, conn: Conn) -> None:
        """The socket monitor of ``conn``: a disconnect is a node down (after
        what the node sent before it is delivered), a failed handshake too."""
        while conn.name in self.conns:
            try:
                event: dict[str, Any] = recv_monitor_message(conn.monitor, _NOBLOCK)  # type: ignore[assignment]
            except zmq.Again:
                return
            kind = event["event"]
            if kind == zmq.EVENT_CONNECT_RETRIED:
                if not conn.up:  # refused: libzmq would only try again
                    self._node_down(conn.name, "connect_failed")
            elif kind & _FAILED:
                log.warning("%s: the handshake with %s failed (%s)", self.name, conn.name, _event_name(kind))
                self._node_down(conn.name, "handshake_failed")
            elif kind in (zmq.EVENT_DISCONNECTED, zmq.EVENT_CLOSED):
                self._from_router()  # what it sent before it went
                if conn.name not in self.conns:
                    return
                silent = time.monotonic() - self.last_heard.get(conn.name, 0.0)
                if conn.up and silent >= 0.75 * self.ticktime:
                    self._node_down(conn.name, "net_tick_timeout")
                elif conn.up:
                    self._node_down(conn.name, "connection_closed")
                # else: still setting up; libzmq retries until the deadline

    def _node_up(self, conn: Conn) -> None:
        conn.up = True
        now = time.monotonic()
        conn.next_tick = now
        self.last_heard[conn.name] = now
        path = self.proc.node.node_up_path(conn.name)
        with open(path, "w") as f:
            f.write(f"{conn.creation}\n")
        log.info("%s: node %s is up", self.name, conn.name)
        for pid, ref in conn.waiters:
            self.proc.send_reply(pid, ref, True)
        conn.waiters = []
        self._node_subscribers(conn.name, True, None)

    def _node_down(self, name: str, reason: object) -> None:
        """Settle everything about ``name``: close the connection, tell every
        local end of a link or monitor to it ``'noconnection'``, tell the
        node (if it still listens) that it is down to us, answer waiting
        requests and node monitors."""
        conn = self.conns.pop(name, None)
        self.conns_by_route.pop(name.encode("utf-8"), None)
        was_up = conn is not None and conn.up
        if conn is not None:
            try:
                conn.dealer.disable_monitor()
            except zmq.ZMQError:
                pass
            conn.monitor.close(linger=0)
            conn.dealer.close(linger=0)
            self._rebuild_socks()
            try:
                os.unlink(self.proc.node.node_up_path(name))
            except FileNotFoundError:
                pass
        for local, sig in self.relations.node_down(name):
            self._to_local(local, sig)
        for rid in self.rids_of.pop(name, ()):
            self._send_router(rid, [BYE])
            self.inbound.pop(rid, None)
            self.stale.add(rid)
        if len(self.stale) > 4096:
            self.stale.clear()  # libzmq never reuses a routing id: old ones only cost memory
        self.last_heard.pop(name, None)
        if was_up:
            log.info("%s: node %s is down (%r)", self.name, name, reason)
        if conn is not None:
            for pid, ref in conn.waiters:
                self.proc.send_reply(pid, ref, False)
        self._node_down_requests(name)
        self._node_subscribers(name, False, reason if was_up or conn is None else "connect_failed")

    def _tick(self, now: float) -> None:
        """Ticks out, silence and set-up deadlines in."""
        quarter = self.ticktime / 4
        for conn in list(self.conns.values()):
            if not conn.up:
                if now >= conn.deadline:
                    self._node_down(conn.name, "connect_failed")
                continue
            if now >= conn.next_tick:
                conn.dealer.send(TICK)
                conn.next_tick = now + quarter
            if now - self.last_heard.get(conn.name, now) > self.ticktime:
                self._node_down(conn.name, "net_tick_timeout")


def _event_name(kind: int) -> str:
    try:
        return zmq.Event(kind).name or str(kind)
    except ValueError:
        return str(kind)
