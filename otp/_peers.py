"""Peer sockets: the sending side of mailboxes.

A process keeps a :class:`Peer` per process it sends to, with a ZeroMQ PUSH
socket to its mailbox.  Open sockets are capped and the idle ones closed
while the process waits (:meth:`PeersMixin.peer_wait_ms`), so that the
descriptors a process holds, and those it costs its receivers, stay bounded
(see :mod:`otp._transport`); a closed socket reopens on its next frame, and
frames that find no descriptor wait in the peer's backlog.

Since a sender closes and reopens sockets, its frames can reach a mailbox
over two connections, out of order: the receiving side sets aside a frame
that comes before its predecessors and takes it in at its turn
(:mod:`otp._frame_order`).

Processes of other nodes (frames through the gateway, liveness) are
:mod:`otp._remote_peers`.

Mixed into :class:`otp._process.Process`; runs in the process's main thread.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import resource
import time
from collections.abc import Callable

import zmq

from . import _oslib
from ._codec import WAKE_FRAME
from ._frame_order import FrameOrderMixin
from ._pid import Pid, Ref
from ._remote_peers import RemotePeersMixin, base_send
from ._transport import (
    EXIT_LINGER_MS,
    FLUSH_LINGER_MS,
    PEER_IDLE_S,
    RECONNECT_IVL_MS,
    KernelSocket,
    peer_socket_cap,
)

log = logging.getLogger("otp")

__all__ = ["Peer", "PeersMixin"]

_SWEEP_MIN = 256

#: Seconds between attempts to open a socket for frames that wait for a
#: descriptor (the process is at its descriptor limit).
_BACKLOG_RETRY_S = 0.01
_NO_DESCRIPTOR = (errno.EMFILE, errno.ENFILE)
_monotonic = time.monotonic


class Peer:
    """What a process keeps about a process it sends to.

    ``send`` is what ``Process.send`` calls with a frame: pyzmq's send on the
    open socket, :meth:`send_closed` while the socket is closed (evicted,
    or no descriptor was free: the next frame opens one), None once the peer
    is known dead.  ``seq`` counts every frame ever sent to the peer, over
    all its sockets: the receiver restores the order of frames that two
    sockets delivered out of order (see ``FrameOrderMixin._out_of_order``)."""

    __slots__ = ("pid", "sock", "send", "seq", "call_ref", "dead", "proc", "mark", "marked", "backlog")

    def __init__(self, pid: Pid, sock: KernelSocket | None, proc: PeersMixin) -> None:
        self.pid = pid
        self.sock = sock
        self.send: Callable[[bytes], object] | None = None if sock is None else base_send.__get__(sock)
        self.seq = 0  # frames sent to it so far
        self.call_ref: Ref | None = None
        self.dead: object = None if sock is not None else "noproc"
        self.proc = proc
        self.mark = 0  # seq when last looked at: unchanged since means unused since (see _evict_peers)
        self.marked = 0.0  # when the last look found it used (or it was opened)
        self.backlog: list[bytes] | None = None  # frames waiting for a free descriptor

    def send_closed(self, frame: bytes) -> None:
        self.proc._send_closed(self, frame)


def _stopped(pid: Pid) -> bool:
    """True if ``pid`` is stopped (SIGSTOP, a tracer): it reads nothing."""
    try:
        st = _oslib.proc_state(pid.ospid)
    except OSError:  # no descriptor to read /proc with: assume it runs
        return False
    return st is not None and st[0] in ("T", "t") and st[1] == pid.start


class PeersMixin(FrameOrderMixin, RemotePeersMixin):
    """The peer sockets of a :class:`otp._process.Process`."""

    def _init_peers(self) -> None:
        """Set up the peer state; after the descriptor limit was raised."""
        self.peers = {}
        self._sweep_at = _SWEEP_MIN
        # Peers with an open socket, least recently opened or seen used first.
        self._open: dict[int, Peer] = {}
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self._peer_cap = peer_socket_cap(1 << 20 if limit == resource.RLIM_INFINITY else limit)
        # When open sockets, backlogs and set-aside frames are next looked at.
        self._idle_scan_at: float | None = None
        # Peers whose frames wait for a descriptor; the first one adds the
        # exit hook that flushes them.
        self._backlogged: dict[int, Peer] = {}
        self._backlog_hooked = False
        self._init_frame_order()
        self._idle_closers: list[Callable[[float], bool]] = []  # see on_idle
        self.peers_forgotten_seq = 0  # frames sent to the peers _sweep_peers forgot
        self.peer_reopens = 0  # sockets opened again for a peer whose socket was closed (a statistic)
        self._flushing: collections.deque[float] = (
            collections.deque()
        )  # when the lingers of closed sockets end, in order
        # A PUSH socket made ahead of need (see warm_peer_sockets).
        self._spare_socket: KernelSocket | None = None
        self._init_remote_peers()

    def peer(self, pid: Pid) -> Peer:
        p = self.peers.get(pid.uid)
        if p is not None:
            return p
        if not isinstance(pid, Pid):
            raise TypeError(f"expected a Pid, got {type(pid).__name__}")
        p = Peer(pid, None, self)
        if not self.node.is_local(pid.node):
            self._remote_peer(p)
        elif os.path.exists(self.node.mailbox_path(pid.uid)):
            p.dead = None
            self._open_peer(p)
        self.peers[pid.uid] = p
        if len(self.peers) > self._sweep_at:
            self._sweep_peers()
        return p

    def _sweep_peers(self) -> None:
        """Forget peers that are dead (their mailbox file is gone, or the
        connection to their node)."""
        watched = set(p.uid for p in self.sig.call_watches.values())
        for uid, p in list(self.peers.items()):
            if uid in watched or uid in self.held:
                continue
            if p.dead is not None or not self.peer_may_live(p.pid):
                self._close_peer(p)
                del self.peers[uid]
                self.peers_forgotten_seq += p.seq
        self._sweep_at = max(_SWEEP_MIN, 2 * len(self.peers))

    def _close_peer(self, p: Peer) -> None:
        """The peer is dead: drop what is queued for it, send nothing more."""
        if p.sock is not None:
            self._open.pop(p.pid.uid, None)
            p.sock.close(linger=0)
            p.sock = None
        p.send = None
        p.backlog = None
        if self._backlogged:
            self._backlogged.pop(p.pid.uid, None)

    def _open_peer(self, p: Peer) -> Callable[[bytes], object] | None:
        """Open a socket to ``p``, first closing the least recently used ones
        if the process is at its cap, and return its send.  None if no
        descriptor was free even then: its frames wait in ``p.backlog``
        (sent in order once one is)."""
        open_ = self._open
        if len(open_) >= self._peer_cap:
            # A sixteenth at once, so that a process talking to more peers
            # than its cap looks through its sockets once per 16 reopens.
            self._evict_peers(len(open_) - self._peer_cap + 1 + self._peer_cap // 16)
        sock = self._push_socket()
        if sock is None:
            self._backlog(p)
            if not self._backlog_hooked:
                self._backlog_hooked = True
                self.exit_hooks.append(self._flush_backlogs_at_exit)
            self._backlogged[p.pid.uid] = p
            p.send = p.send_closed
            at = _monotonic() + _BACKLOG_RETRY_S
            if self._idle_scan_at is None or self._idle_scan_at > at:
                self._idle_scan_at = at
            return None
        sock.connect(self.node.mailbox_endpoint(p.pid.uid))
        p.sock = sock
        send = p.send = base_send.__get__(sock)
        p.mark = p.seq
        p.marked = _monotonic()
        open_[p.pid.uid] = p
        if self._idle_scan_at is None:
            self._idle_scan_at = p.marked + PEER_IDLE_S
        return send

    @staticmethod
    def _backlog(p: Peer) -> list[bytes]:
        """The frames to ``p`` that wait for a descriptor."""
        if p.backlog is None:
            p.backlog = []
        return p.backlog

    def _push_socket(self) -> KernelSocket | None:
        """A new PUSH socket, or None if none could be had within about 60 ms
        (no descriptor left, or the context's MAX_SOCKETS reached).

        A closed socket keeps its descriptors and its slot in the context
        until libzmq has flushed it in its own threads: a process closing
        sockets faster than they flush (a loop sending to thousands of
        peers) waits here for them, which bounds what it holds.  Then it
        closes sockets itself: half, then all it may close."""
        spare = self._spare_socket
        if spare is not None:
            self._spare_socket = None
            return spare
        for attempt in range(7):
            try:
                sock = self.ctx.kernel_socket(zmq.PUSH)
            except zmq.ZMQError as exc:
                if exc.errno not in _NO_DESCRIPTOR:
                    raise
                if attempt == 2:
                    self._evict_peers(len(self._open) // 2)
                elif attempt == 4:
                    self._evict_peers(len(self._open), urgent=True)
                time.sleep(0.0005 * (1 << attempt))
                continue
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.setsockopt(zmq.LINGER, EXIT_LINGER_MS)
            sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
            return sock
        return None

    def warm_peer_sockets(self, timeout_ms: int = 50) -> None:
        """Make the first send of a new process cheap, while it waits for its
        function: send one wake frame to its own mailbox over a peer socket
        (and read it), then keep a fresh PUSH socket for the first peer.

        A process forked from the zygote shares the zygote's pages until it
        writes them, and libzmq's first socket, connection and handshake in
        it touch fresh memory: measured, the first ``otp.send`` of a new
        process took twice as long as the second, most of it page faults in
        ``connect``.  The memory this rehearsal touches is freed and reused
        by the real connection.  The spare costs a descriptor (its eventfd)
        until it is used or the process first looks at its idle sockets."""
        sock = self._push_socket()
        if sock is None:
            return
        try:
            sock.connect(self.node.mailbox_endpoint(self.uid))
            base_send(sock, WAKE_FRAME)
            inbox = self.inbox
            with self._socket_lock:
                if inbox.poll(timeout_ms, zmq.POLLIN):
                    # A wake from the signal thread looks the same: whichever
                    # comes first is taken in as one.
                    self._accept(inbox.recv(zmq.NOBLOCK))
        finally:
            sock.close(linger=0)
        self._spare_socket = self._push_socket()
        # Given back at the first look at idle sockets if still unused: a
        # process that never sends over a peer socket (a registry answering
        # through its ROUTER) must not hold its descriptor.
        at = _monotonic() + PEER_IDLE_S
        if self._idle_scan_at is None or self._idle_scan_at > at:
            self._idle_scan_at = at

    def _evict_peers(self, want: int, urgent: bool = False) -> int:
        """Close up to ``want`` open peer sockets, least recently used first,
        approximately (CLOCK: a socket used since it was last looked at goes
        to the back once).  Never the socket of a call in flight (its
        server is about to be used again), nor of a stopped receiver (SIGSTOP:
        frames may still wait in our queue, and a close gives up on them
        after the linger).  ``urgent`` (no descriptor left) gives no second
        chance.  Returns how many were closed."""
        open_ = self._open
        if not open_ or want <= 0:
            return 0
        busy = {p.pid.uid for p in self.active_calls.values()} if self.active_calls else ()
        done = 0
        now = _monotonic()
        for _ in range(2):
            for uid, p in list(open_.items()):
                if done >= want:
                    return done
                if uid in busy:
                    continue
                if p.seq != p.mark and not urgent:
                    p.mark = p.seq
                    p.marked = now
                    del open_[uid]
                    open_[uid] = p
                    continue
                if _stopped(p.pid):
                    continue
                self._evict(p, now)
                done += 1
        return done

    def _evict(self, p: Peer, now: float) -> None:
        """Close ``p``'s socket (its receiver runs: see _evict_peers); its
        next frame opens another.  What is still queued on it is flushed in
        the background, for up to FLUSH_LINGER_MS (microseconds on an open
        connection; a new one waits for the receiver's handshake).

        A socket seen in use less than PEER_IDLE_S ago may still be
        delivering when the process exits: close_peers_at_exit counts its
        linger.  One unused for longer has delivered what it had."""
        del self._open[p.pid.uid]
        sock = p.sock
        p.sock = None
        p.send = p.send_closed
        if sock is not None:
            sock.close(linger=FLUSH_LINGER_MS)
        if now - p.marked >= PEER_IDLE_S:
            return
        flushing = self._flushing
        while flushing and flushing[0] <= now:
            flushing.popleft()
        flushing.append(now + FLUSH_LINGER_MS / 1000)

    def close_peers_at_exit(self) -> int | None:
        """Close every peer socket for the exit, each with the linger its
        receiver deserves: none for a dead one (its frames would hold the
        exit for nothing), EXIT_LINGER_MS for a stopped one, FLUSH_LINGER_MS
        for a running one (a reconnect storm at the end of a run takes
        seconds).  Returns the shortest linger still running, those of
        sockets closed earlier included (None: none), so that the exit can
        tell whether everything was delivered: it was if the context ended
        before that."""
        shortest = None
        gateway = self._gateway_sock
        if gateway is not None:
            self._gateway_sock = None
            linger = FLUSH_LINGER_MS if os.path.exists(self.node.gateway_signals()) else 0
            gateway.close(linger=linger)
            if linger:
                shortest = linger
        flushing = self._flushing
        if flushing:
            now = _monotonic()
            while flushing and flushing[0] <= now:
                flushing.popleft()
            if flushing:
                left = max(1, int((flushing[0] - now) * 1000))
                shortest = left if shortest is None else min(shortest, left)
        for uid, p in self.peers.items():
            sock = p.sock
            if sock is None:
                continue
            if p.dead is not None or not os.path.exists(self.node.mailbox_path(uid)):
                linger = 0
            elif _stopped(p.pid):
                linger = EXIT_LINGER_MS
            else:
                linger = FLUSH_LINGER_MS
            sock.close(linger=linger)
            p.sock = None
            p.send = None
            if linger and (shortest is None or linger < shortest):
                shortest = linger
        return shortest

    def _send_closed(self, p: Peer, frame: bytes) -> None:
        """Send ``frame`` to a live peer whose socket is closed."""
        if p.backlog is None:
            if not os.path.exists(self.node.mailbox_path(p.pid.uid)):
                p.send = None  # it has exited: sending to it does nothing
                return
            send = self._open_peer(p)
            if send is not None:
                self.peer_reopens += 1
                send(frame)
                return
        # Retried when the process next waits (_scan_peers) or exits.
        self._backlog(p).append(frame)

    def _flush_backlog(self, p: Peer) -> bool:
        """Send the frames waiting for a descriptor, in order; False if there
        is still none."""
        if not os.path.exists(self.node.mailbox_path(p.pid.uid)):
            self._close_peer(p)
            return True
        send = p.send if p.sock is not None else None
        if send is None:
            # _open_peer keeps the backlog if it fails again.
            self._backlogged.pop(p.pid.uid, None)
            send = self._open_peer(p)
            if send is None:
                return False
        frames = self._backlog(p)
        p.backlog = None
        self._backlogged.pop(p.pid.uid, None)
        for frame in frames:
            send(frame)
        return True

    def _flush_backlogs_at_exit(self, reason: object) -> None:
        """Exit hook: frames still waiting for a descriptor get one now, at
        the cost of every other peer socket (the exit flushes those too)."""
        for p in list(self._backlogged.values()):
            if not self._flush_backlog(p):
                self._evict_peers(len(self._open), urgent=True)
                if not self._flush_backlog(p):
                    log.error(
                        "%r exits with %d frames to %r it found no descriptor for",
                        self.pid,
                        len(self._backlog(p)),
                        p.pid,
                    )

    def peer_wait_ms(self, ms: int) -> int:
        """Called by the main thread before it waits ``ms`` milliseconds (-1:
        forever) for its mailbox: closes the peer sockets left unused for
        ``PEER_IDLE_S`` (what bounds the descriptors of the processes this
        one talks to, see otp._transport) and returns how long to wait so
        that the next look is not missed."""
        at = self._idle_scan_at
        if at is None:
            return ms
        now = _monotonic()
        if now >= at:
            self._scan_peers(now)
            at = self._idle_scan_at
            if at is None:
                return ms
        # In steps of 10 ms: pump sets the mailbox's receive timeout only when
        # the value changes (a socket option costs about a microsecond).
        until = int((at - now) * 100 + 1) * 10
        return until if ms < 0 or ms > until else ms

    def _scan_peers(self, now: float) -> None:
        """Close sockets unused since the last look, retry backlogs, settle
        frames set aside for senders that are gone; plan the next look."""
        nxt = None
        if self._spare_socket is not None:
            self._spare_socket.close(linger=0)
            self._spare_socket = None
        open_ = self._open
        if open_:
            busy = {p.pid.uid for p in self.active_calls.values()} if self.active_calls else ()
            for uid, p in list(open_.items()):
                if p.seq == p.mark and uid not in busy and not _stopped(p.pid):
                    self._evict(p, now)
                elif p.seq != p.mark:
                    p.mark = p.seq
                    p.marked = now
            if open_:
                nxt = now + PEER_IDLE_S
        if self._backlogged:
            for p in list(self._backlogged.values()):
                if not self._flush_backlog(p):
                    break  # no descriptor: the others would not get one either
            if self._backlogged:
                nxt = now + _BACKLOG_RETRY_S
        if self._early:
            self._settle_early(now)
            if self._early and (nxt is None or nxt > now + PEER_IDLE_S):
                nxt = now + PEER_IDLE_S
        if self._idle_closers:
            keep = []
            for close in self._idle_closers:
                try:
                    if close(now):
                        keep.append(close)
                except Exception:
                    log.exception("%r: idle closer %r failed", self.pid, close)
            self._idle_closers = keep
            if keep and (nxt is None or nxt > now + PEER_IDLE_S):
                nxt = now + PEER_IDLE_S
        self._idle_scan_at = nxt

    def on_idle(self, close: Callable[[float], bool]) -> None:
        """Call ``close(now)`` at each look at idle sockets (every
        ``PEER_IDLE_S`` while the process waits) until it returns False.

        For the sockets a process keeps beside its mailbox: each holds a
        descriptor in the process it connects to, as a peer socket does (a
        registry client's DEALER holds one in the registry), so it should
        close when it was not used since the previous call."""
        self._idle_closers.append(close)
        at = _monotonic() + PEER_IDLE_S
        if self._idle_scan_at is None or self._idle_scan_at > at:
            self._idle_scan_at = at

    def seq_to(self, uid: int) -> int:
        p = self.peers.get(uid)
        return 0 if p is None else p.seq
