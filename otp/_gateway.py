"""The node's gateway (Erlang's ``net_kernel`` and distribution controller):
the one process of a listening node that talks to other nodes.

Why one gateway per node rather than a connection per process.  A process's
mailbox is an ipc socket and its signals are Unix datagrams, with local
guarantees built on them (a ``sendto`` queued before the sender's pidfd
turns readable, see :mod:`otp._signals`); none of that crosses a host.  One
process per node that owns the tcp side keeps every local fast path as it
is, holds one authenticated connection per pair of nodes (not one per pair
of processes: a node of 1,000 processes talking to another would otherwise
hold 1,000 CURVE handshakes and 2,000 descriptors), and is where a node can
know every link and monitor that crosses it (:mod:`otp._gateway_links`),
which is what ``'noconnection'`` needs.  The cost is two more hops per
message (process -> gateway -> gateway -> process), measured in
``stress/dist_bench.py``.

Sockets, all in the gateway's ZeroMQ context:

* a ROUTER bound on the node's tcp endpoint, a CURVE *server*: every node
  that connects proves its key in the handshake, and the ZAP handler here
  (:meth:`Gateway._zap`, a REP socket on ``inproc://zeromq.zap.01``, bound
  before the ROUTER, since CURVE with no ZAP handler accepts any key)
  allows only the keys of the cluster's members (the static peer list),
  answering each with the member's name as ZAP user id.  A refused key is
  counted and logged once per key.  A connection must then say HELLO with
  the name its key belongs to before anything it sends is looked at, so a
  frame from a peer that did not authenticate is never unpickled;
* one DEALER per node this node talks to, a CURVE *client* holding that
  node's public key (a server with another key fails the handshake): the
  one ordered channel from this node to that one (:mod:`otp._dist_wire`);
  a node is *up* once its WELCOME answers our HELLO;
* the intake (PULL, ipc) and signal socket (Unix datagram) where local
  processes hand frames and signals for other nodes;
* the pidfds of the local processes with links or monitors across it.

Liveness (Erlang's ``net_ticktime``, one setting, :data:`NET_TICKTIME`).
Each DEALER runs ZMTP heartbeats (PING every ``T/4``, the connection closed
when no traffic answers within ``3T/4``), which libzmq's I/O thread answers
whatever the Python side is doing; a gateway also sends a TICK every
``T/4`` and counts a node down when nothing came from it for ``T``.  So a
silent node (stopped, cut off) is down within ``T`` of its silence, never
before ``3T/4`` of it.  A node whose process dies closes its sockets (the
host's kernel does it), which is seen at once as a disconnect.

A connection down (either way) is down both ways: a node that counts
another down closes its DEALER to it and answers anything still arriving
from it with BYE, which makes the other side count it down too; the next
use sets up fresh connections.  Nothing sent while a connection was down is
delivered later (frames queued in a closed DEALER are dropped), as in
Erlang.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import time
import urllib.parse
from typing import Any, NamedTuple

import zmq

from . import _naming, _process
from ._dist_wire import (
    GATEWAY_NAME,
    MSGS,
    ROUTE,
    SIG,
    NodeAddress,
    decode_forward,
    pack_batch,
)
from ._gateway_conns import Conn, ConnsMixin
from ._gateway_inbound import InboundMixin
from ._gateway_links import Relations
from ._gateway_requests import RequestsMixin
from ._keys import KeyPair
from ._pid import Pid, Ref
from ._signal_records import Dead, Demonitor, Exit, Link, Monitor, Signal, Unlink, decode_signal
from ._start_handshake import start_linked
from ._start_result import StartAck, Started, StartFailed

log = logging.getLogger("otp.dist")

__all__ = ["GatewayConfig", "Gateway", "NET_TICKTIME", "SETUP_TIMEOUT", "start_link", "advertised_endpoint"]

#: Seconds of silence after which a node is counted down (Erlang's
#: net_ticktime; see the module docstring for the bound).  Erlang's 60 s is
#: for WANs and for a runtime whose ticks need its schedulers; here the ZMTP
#: PINGs are answered by libzmq's I/O thread whatever Python does, and the
#: gateways' own TICKs only need their loop to run.  Measured on the 2-core
#: reference machine with a load average of 4 to 6 (other test suites
#: running): over 60 s, the longest an idle live peer went unheard was 2.12 s,
#: with TICKs due every 2 s (``otp.net_kernel.info()['max_silence']``): its
#: loop was late by 0.12 s at most.  8 s leaves a margin of almost four times
#: the longest silence seen, and notices a stopped or cut-off node within 8 s.
NET_TICKTIME = 8.0
#: Seconds a connection may take to be set up (tcp connect, CURVE handshake,
#: HELLO and WELCOME) before the node counts as unreachable (Erlang's
#: net_setuptime is 7 s).
SETUP_TIMEOUT = 7.0
#: Messages taken from one socket before the others are looked at.
_BATCH = 512
#: Bytes of frames for one node sent as one message at most.
_BATCH_BYTES = 1 << 20
_NOBLOCK = int(zmq.NOBLOCK)
# pyzmq's base-class send and recv, without the sugar layer's argument
# handling (see otp._peers).
_base_recv: Any = getattr(zmq.Socket.__mro__[1], "recv")  # noqa: B009
_SNDMORE = int(zmq.SNDMORE)
_RCVMORE = int(zmq.RCVMORE)
_PROTOCOL = 5
_START_TIMEOUT = 30.0
#: The signals that cross nodes.
_CROSSING = (Link, Unlink, Monitor, Demonitor, Exit, Dead)


class GatewayConfig(NamedTuple):
    """What a node's gateway starts with."""

    listen: str
    keys: KeyPair
    peers: dict[str, NodeAddress]
    net_ticktime: float = NET_TICKTIME
    advertise: str | None = None
    setup_timeout: float = SETUP_TIMEOUT


def advertised_endpoint(bound: str, node: str) -> str:
    """The endpoint other nodes should connect to, from the one bound: a
    wildcard address is replaced by the host part of the node's name."""
    parts = urllib.parse.urlsplit(bound)
    host = parts.hostname or ""
    if host in ("0.0.0.0", "::", "*", "") and "@" in node:
        return f"{parts.scheme}://{node.rsplit('@', 1)[1]}:{parts.port}"
    return bound


class Gateway(InboundMixin, ConnsMixin, RequestsMixin):
    """The gateway's state and main loop (one per listening node)."""

    def __init__(self, proc: _process.Process, config: GatewayConfig) -> None:
        self.proc = proc
        node = proc.node
        self.name = node.name
        self.creation = node.creation
        self.keys = config.keys
        self.ticktime = float(config.net_ticktime)
        self.setup_timeout = float(config.setup_timeout)
        self.peers: dict[str, NodeAddress] = dict(config.peers)
        self.allowed: dict[bytes, str] = {a.public_key: n for n, a in self.peers.items()}
        self.relations = Relations()
        self.conns: dict[str, Conn] = {}
        self.conns_by_route: dict[bytes, Conn] = {}
        self.inbound: dict[bytes, str] = {}  # rid -> node, after its HELLO
        self.inbound_creation: dict[str, int] = {}
        self.rids_of: dict[str, set[bytes]] = {}
        self.stale: set[bytes] = set()  # rids of connections counted down
        self.last_heard: dict[str, float] = {}
        # The longest a node that was up went unheard (ticks come every
        # quarter tick time): what NET_TICKTIME's margin is measured with.
        self.max_silence: dict[str, float] = {}
        self.refused = 0  # handshakes refused (unknown key), HELLOs refused
        self.refused_keys: set[bytes] = set()
        self.unauthenticated_dropped = 0
        self.sig_backlog: dict[int, list[tuple[float, bytes]]] = {}
        # Local process uid -> signals read from it (see _from_intake).
        self.signals_seen: dict[int, int] = {}
        self._signals_sweep_at = 1024
        self._init_requests()
        # Before any socket: a process that reaches our sockets finds the
        # gateway it must watch (see SignalPort._watch_gateway).
        pid_path = node.gateway_pid_path()
        with open(pid_path + ".new", "w") as f:
            f.write(f"{proc.pid.ospid} {proc.pid.start}\n")
        os.replace(pid_path + ".new", pid_path)
        ctx = proc.ctx
        up_dir = os.path.dirname(node.node_up_path("x"))
        os.makedirs(up_dir, mode=0o700, exist_ok=True)
        for leftover in os.listdir(up_dir):  # a predecessor's (this gateway restarted)
            os.unlink(os.path.join(up_dir, leftover))
        # ZAP first: a CURVE server with no ZAP handler accepts every key.
        self.zap = ctx.socket(zmq.REP)
        self.zap.setsockopt(zmq.LINGER, 0)
        self.zap.bind("inproc://zeromq.zap.01")
        router = self.router = ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.CURVE_SERVER, 1)
        router.setsockopt(zmq.CURVE_PUBLICKEY, self.keys.public)
        router.setsockopt(zmq.CURVE_SECRETKEY, self.keys.secret)
        router.setsockopt(zmq.ZAP_DOMAIN, b"otp")
        router.setsockopt(zmq.RCVHWM, 0)
        router.setsockopt(zmq.SNDHWM, 0)
        router.setsockopt(zmq.LINGER, 0)
        self._heartbeats(router)
        saved = os.path.join(node.dir, "gw.endpoint")
        listen = config.listen
        try:
            with open(saved) as f:  # a restarted gateway keeps its port
                listen = f.read().strip() or listen
        except OSError:
            pass
        router.bind(listen)
        bound = router.getsockopt_string(zmq.LAST_ENDPOINT)
        with open(saved, "w") as f:
            f.write(bound)
        self.endpoint = config.advertise or advertised_endpoint(bound, self.name)
        self.intake = ctx.socket(zmq.PULL)
        self.intake.setsockopt(zmq.RCVHWM, 0)
        self.intake.setsockopt(zmq.LINGER, 0)
        self.intake.bind(node.gateway_intake())
        self._intake_recv = _base_recv.__get__(self.intake)
        self._batched: list[Conn] = []  # connections with frames waiting in their batch
        self.fwd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            os.unlink(node.gateway_signals())
        except FileNotFoundError:
            pass
        self.fwd.bind(node.gateway_signals())
        self.fwd.setblocking(False)
        self.tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.tx.setblocking(False)
        self._socks: list[Any] = []
        self._rebuild_socks()

    def _heartbeats(self, sock: zmq.Socket) -> None:
        t = self.ticktime
        sock.setsockopt(zmq.HEARTBEAT_IVL, max(1, int(t * 250)))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(1, int(t * 750)))
        sock.setsockopt(zmq.HEARTBEAT_TTL, max(100, int(t * 1000)))

    def _rebuild_socks(self) -> None:
        socks: list[Any] = [self.zap, self.router, self.intake, self.fwd.fileno(), self.relations.epoll.fileno()]
        for conn in self.conns.values():
            socks += [conn.dealer, conn.monitor]
        self._socks = socks

    # ------------------------------------------------------------ the loop

    def serve(self, parent: Pid) -> None:
        proc = self.proc
        zap, router, intake = self.zap, self.router, self.intake
        fwd_fd, deaths_fd = self.fwd.fileno(), self.relations.epoll.fileno()
        while True:
            ready = proc.poll_sockets(self._socks, self._wait())
            if proc.mailbox:
                # A request comes after the signals its caller sent before it
                # (a monitor, then disconnect_node): they are in our queue.
                self._from_fwd()
                self._mailbox(parent)
            if ready:
                if zap in ready:
                    self._zap()
                if router in ready:
                    self._from_router()
                if intake in ready:
                    self._from_intake()
                if fwd_fd in ready:
                    self._from_fwd()
                if deaths_fd in ready:
                    self._deaths()
                for conn in list(self.conns.values()):
                    if conn.monitor in ready:
                        self._events(conn)
                    if conn.dealer in ready and conn.name in self.conns:
                        self._from_dealer(conn)
            if self.relations.gone:
                self._settle_gone()
            self._timers()

    def _wait(self) -> float | None:
        """Seconds until the next timer (ticks, set-up deadlines, signal retries)."""
        if self.sig_backlog:
            return 0.01
        if not self.conns:
            return None
        return max(0.01, self.ticktime / 8)

    # ------------------------------------------------- from local processes

    def _from_intake(self, limit: int = _BATCH) -> None:
        """Frames of local processes for processes of other nodes, sent on
        in one batch per node (see :func:`otp._dist_wire.pack_batch`)."""
        recv = self._intake_recv
        conns = self.conns_by_route
        frame_out = self.relations.frame_out
        unpack = ROUTE.unpack_from
        head = ROUTE.size + 1
        signals_seen = self.signals_seen
        batched = self._batched
        try:
            for _ in range(limit):
                try:
                    msg = recv(_NOBLOCK)
                except zmq.Again:
                    return
                n = msg[0]
                if len(msg) < head + n:
                    continue  # not a route: not from a process of ours
                tuid, tcreation, suid, seq, signals = unpack(msg, 1 + n)
                if signals and signals_seen.get(suid, 0) < signals:
                    # Signals it sent before this frame: in our queue already
                    # (or read by a predecessor of this gateway, if it
                    # restarted: then the count is caught up).
                    self._flush_batches()
                    self._from_fwd()
                    if signals_seen.get(suid, 0) < signals:
                        signals_seen[suid] = signals
                node = msg[1 : 1 + n]
                conn = conns.get(node)
                if conn is None:
                    conn = self._ensure_conn(node.decode("utf-8", "replace"))
                    if conn is None:
                        continue  # unreachable: dropped, as Erlang drops it
                if tcreation and conn.creation and tcreation != conn.creation:
                    continue  # a process of an earlier incarnation of that node
                if not conn.batch:
                    batched.append(conn)
                conn.batch.append(msg)
                conn.batch_bytes += len(msg)
                if conn.batch_bytes > _BATCH_BYTES:
                    self._flush_batches()
                frame_out(suid, tuid, seq)
        finally:
            if batched:
                self._flush_batches()

    def _flush_batches(self) -> None:
        """Send the frames taken in so far, one message per node."""
        for conn in self._batched:
            if conn.batch and self.conns.get(conn.name) is conn:
                send = conn.send
                send(MSGS, _SNDMORE)
                send(pack_batch(conn.batch))
            conn.batch = []
            conn.batch_bytes = 0
        self._batched.clear()  # in place: _from_intake holds it

    def _from_fwd(self) -> None:
        """Signals of local processes for processes of other nodes."""
        while True:
            try:
                data = self.fwd.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            try:
                target, datagram = decode_forward(data)
                sig = decode_signal(datagram)
            except ValueError as exc:
                log.warning("%s dropped a malformed signal from a local process: %s", self.name, exc)
                continue
            seen = self.signals_seen
            uid = sig.sender.uid
            seen[uid] = seen.get(uid, 0) + 1
            if len(seen) > self._signals_sweep_at:
                self._sweep_signals_seen()
            self._forward_signal(target, sig, datagram)

    def _sweep_signals_seen(self) -> None:
        """Forget the signal counts of local processes that are gone."""
        node = self.proc.node
        for uid in [u for u in self.signals_seen if not os.path.exists(node.mailbox_path(u))]:
            del self.signals_seen[uid]
        self._signals_sweep_at = max(1024, 2 * len(self.signals_seen))

    def _forward_signal(self, target: Pid, sig: Signal, datagram: bytes) -> None:
        conn = self._ensure_conn(target.node)
        if conn is None:
            answer = "noconnection"
        elif target.creation and conn.creation and target.creation != conn.creation:
            answer = "noproc"
        else:
            self.relations.outbound(sig, target)
            conn.dealer.send_multipart([SIG, pickle.dumps(target, _PROTOCOL), datagram])
            return
        if isinstance(sig, Link):
            self._to_local(sig.sender, Dead(target, 0, answer, True, [], True))
        elif isinstance(sig, Monitor):
            self._to_local(sig.sender, Dead(target, 0, answer, False, [sig.ref], True))

    def _deaths(self) -> None:
        dead = self.relations.dead_uids()
        if dead:
            self._drain_local()
            for uid in dead:
                self._local_gone(uid)

    def _settle_gone(self) -> None:
        gone, self.relations.gone = self.relations.gone, []
        self._drain_local()
        for uid in gone:
            self._local_gone(uid)

    def _drain_local(self) -> None:
        """Everything local processes handed over so far (read before a
        death is settled: its last frames and notices come first)."""
        self._from_intake(1 << 30)
        self._from_fwd()

    def _local_gone(self, uid: int) -> None:
        for remote, sig in self.relations.local_gone(uid):
            self._signal_remote(remote, sig)

    # --------------------------------------------------------------- timers

    def _timers(self) -> None:
        now = time.monotonic()
        if self.sig_backlog:
            self._retry_backlog(now)
        self._tick(now)

    def close(self) -> None:
        """At exit: nothing of ours is left for the processes to find."""
        node = self.proc.node
        for path in (node.gateway_signals(),):
            try:
                os.unlink(path)
            except OSError:
                pass
        for name in list(self.conns):
            try:
                os.unlink(node.node_up_path(name))
            except OSError:
                pass
        self.fwd.close()
        self.tx.close()
        self.relations.close()


# ------------------------------------------------------------------ start


def start_link(config: GatewayConfig) -> Pid:
    """Start the node's gateway linked to the caller (a kernel child);
    returns once it listens and is registered as ``net_kernel``."""
    return start_linked(_main, config, _START_TIMEOUT)


def _main(config: GatewayConfig, parent: Pid, ack: Ref) -> None:
    proc = _process.current()
    proc.trap_exit(True)
    try:
        gateway = Gateway(proc, config)
        names = _naming.service()
        if names is not None:
            names.register_server(GATEWAY_NAME, proc.pid)
    except Exception as exc:
        proc.unlink(parent)
        proc.send(parent, StartAck(ack, StartFailed(("gateway_init", repr(exc)))))
        raise
    proc.send(parent, StartAck(ack, Started(proc.pid)))
    try:
        gateway.serve(parent)
    finally:
        gateway.close()
