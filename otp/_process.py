"""The runtime of one OTP process: mailbox, sends, receive, links, exit.

One :class:`Process` exists per OS process (and one for the thread that
entered a :class:`~otp.Node`).  The main thread owns the mailbox and the
ZeroMQ sockets; the :class:`~otp._signals.SignalPort` thread owns signals and
death detection and hands their effects over through ``sig.inbox``.

Mailbox.  A PULL socket bound at the process's ipc address receives frames
from one PUSH socket per sender (so frames of one sender stay in order).
``receive`` moves frames into ``mailbox`` (a deque) and scans it; messages a
``match`` rejects stay queued in order (Erlang's selective receive).

Replies to calls carry their call's reference and go to ``replies`` rather
than the mailbox; a reply whose call is no longer waiting (it timed out) is
dropped where it arrives, so it never reaches the mailbox (OTP 24 aliases).
"""

from __future__ import annotations

import collections
import logging
import math
import os
import pickle
import signal
import threading
import time

import zmq

from . import _oslib
from ._codec import WAKE_FRAME, encode_frame
from ._errors import NoProc, NotAProcess, ProcessExit, Timeout
from ._lifecycle import LifecycleMixin
from ._links import LinksMixin
from ._pid import Pid, Ref
from ._signals import INTERRUPT_SIGNAL, LIVE, SignalPort
from ._transport import BACKLOG, EXIT_LINGER_MS, RECONNECT_IVL_MS, NodeInfo

log = logging.getLogger("otp")

__all__ = ["Process", "current", "current_or_none"]

_SWEEP_MIN = 256
_DEAD_SEEN_MAX = 2048
_loads = pickle.loads
_base_send = zmq.Socket.__mro__[1].send

_current: Process | None = None
_get_ident = threading.get_ident


def current() -> Process:
    """The process of the calling thread; :class:`NotAProcess` otherwise."""
    p = _current
    if p is None or (p.root and _get_ident() != p.thread_id):
        raise NotAProcess(
            "this thread is not an OTP process (enter an otp.Node first; only the thread that entered it is one)"
        )
    return p


def send(dest: object, msg: object) -> None:
    """``otp.send``: see :func:`otp._api.send` (kept here, flat, for speed)."""
    p = _current
    if p is None or (p.root and _get_ident() != p.thread_id):
        current()
    if type(dest) is not Pid:
        from ._api import resolve

        dest = resolve(dest)
    p.send(dest, msg)


def current_or_none() -> Process | None:
    return _current


class Peer:
    """What a process keeps about a process it sends to."""

    __slots__ = ("pid", "sock", "send", "seq", "call_ref", "dead")

    def __init__(self, pid: Pid, sock: zmq.Socket | None) -> None:
        self.pid = pid
        self.sock = sock
        # pyzmq's base-class send, skipping the sugar layer's draft-socket
        # argument handling (a third of the per-message cost of a send).
        self.send = None if sock is None else _base_send.__get__(sock)
        self.seq = 0  # frames sent to it so far
        self.call_ref: Ref | None = None
        self.dead: object = None if sock is not None else "noproc"


class Process(LinksMixin, LifecycleMixin):
    """The OTP process living in the calling OS process (or root thread)."""

    def __init__(self, node: NodeInfo, uid: int, *, root: bool) -> None:
        self.node = node
        self.uid = uid
        self.root = root
        self.thread_id = threading.get_ident()
        ospid = os.getpid()
        self.pid = Pid(node.name, uid, ospid, _oslib.proc_start_time(ospid) or 0)
        self.ctx = zmq.Context(io_threads=1)
        self.ctx.set(zmq.MAX_SOCKETS, max(1024, _oslib.raise_fd_limit()))
        self.inbox = self.ctx.socket(zmq.PULL)
        self.inbox.setsockopt(zmq.RCVHWM, 0)
        self.inbox.setsockopt(zmq.BACKLOG, BACKLOG)
        self.inbox.setsockopt(zmq.LINGER, 0)
        self.inbox.bind(node.mailbox_endpoint(uid))
        wake = f"inproc://wake-{uid:016x}"
        self.inbox.bind(wake)
        self._rcvtimeo = -1
        self.sig = SignalPort(
            self.pid,
            node.signal_address(uid),
            root=root,
            wake_endpoint=wake,
            ctx=self.ctx,
            address_of=node.signal_address,
        )
        self.sig.on_forced_exit = self._forced_exit
        self.mailbox: collections.deque = collections.deque()
        self.peers: dict[int, Peer] = {}
        self.recv_seq: dict[int, int] = {}
        self.held: dict[int, collections.deque] = {}
        self.replies: dict[Ref, object] = {}
        self.active_calls: dict[Ref, Peer] = {}
        self.dead_seen: dict[int, bool] = {}  # uids whose death we saw (insertion-ordered, bounded)
        self.exit_hooks: list = []  # called with the reason when exit begins
        self.spawned: list[Pid] = []  # root only: top-level processes, in order
        self.rt = 0  # >0 while the main thread runs kernel code
        self._sweep_at = _SWEEP_MIN
        self._recv_sweep_at = _SWEEP_MIN
        self._zygote = None
        self._poller = None  # (sockets, zmq.Poller) of the last poll_sockets
        # Under forkserver no other process has this one's __main__: a frame
        # naming a class or function of __main__ is re-encoded by value
        # (cloudpickle), so scripts can send instances of their own classes.
        # Under fork the receivers share __main__ and references keep types
        # identical.  (The check is a substring search of the frame.)
        self._main_by_value = node.start_method == "forkserver"
        self._exited = False

    # ------------------------------------------------------------ activation

    def activate(self) -> None:
        global _current
        _current = self
        if threading.current_thread() is threading.main_thread():
            signal.signal(INTERRUPT_SIGNAL, _on_interrupt)
            self.sig.interrupt_installed = True
        self.sig.start()

    # ----------------------------------------------------------------- peers

    def peer(self, pid: Pid) -> Peer:
        p = self.peers.get(pid.uid)
        if p is not None:
            return p
        if not isinstance(pid, Pid):
            raise TypeError(f"expected a Pid, got {type(pid).__name__}")
        if not self.node.is_local(pid.node):
            raise NoProc(pid)  # remote nodes: not connected (no transport yet)
        sock = None
        if os.path.exists(self.node.mailbox_path(pid.uid)):
            sock = self.ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.setsockopt(zmq.LINGER, EXIT_LINGER_MS)
            sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
            sock.connect(self.node.mailbox_endpoint(pid.uid))
        p = self.peers[pid.uid] = Peer(pid, sock)
        if len(self.peers) > self._sweep_at:
            self._sweep_peers()
        return p

    def _sweep_peers(self) -> None:
        """Forget peers that are dead (their mailbox file is gone)."""
        watched = set(p.uid for p in self.sig.call_watches.values())
        for uid, p in list(self.peers.items()):
            if uid in watched or uid in self.held:
                continue
            if p.dead is not None or not os.path.exists(self.node.mailbox_path(uid)):
                self._close_peer(p)
                del self.peers[uid]
        self._sweep_at = max(_SWEEP_MIN, 2 * len(self.peers))

    def _sweep_recv_seq(self) -> None:
        """Forget the frame counts of senders that are gone: a server called
        by thousands of short-lived processes must not keep one entry each.

        A count is needed as long as a signal from that sender may still be
        held behind its frames: while a link, monitor or call watch refers
        to it (its 'dead' notice may be on the way) or an item of it waits
        in the signal inbox.  Dropping it earlier would hold that notice
        forever."""
        sig = self.sig
        with sig.lock:
            pending = {item[0].uid for item in sig.inbox}
            for uid in [u for u in self.recv_seq if u not in self.peers and u not in self.held]:
                if uid in sig.refs or uid in pending:
                    continue
                if not os.path.exists(self.node.mailbox_path(uid)):
                    del self.recv_seq[uid]
        self._recv_sweep_at = max(_SWEEP_MIN, 2 * len(self.recv_seq))

    @staticmethod
    def _close_peer(p: Peer) -> None:
        if p.sock is not None:
            p.sock.close(linger=0)
            p.sock = None
            p.send = None

    def seq_to(self, uid: int) -> int:
        p = self.peers.get(uid)
        return 0 if p is None else p.seq

    # ------------------------------------------------------------------ send

    def send(self, dest: Pid, msg: object) -> None:
        if dest.uid == self.uid:
            self.mailbox.append(msg)
            return
        p = self.peers.get(dest.uid) or self.peer(dest)
        if p.send is None:
            return  # dead: a no-op, as in Erlang
        seq = p.seq + 1
        frame = encode_frame((self.uid, seq, msg), self._main_by_value)
        # Count the frame only once it is sent: an exit that interrupts us
        # here must not announce a frame nobody will ever receive.
        p.send(frame)
        p.seq = seq

    def send_reply(self, dest: Pid, ref: Ref, value: object) -> None:
        if dest.uid == self.uid:
            if ref in self.active_calls:
                self.replies[ref] = value
            return
        p = self.peers.get(dest.uid) or self.peer(dest)
        if p.send is None:
            return
        seq = p.seq + 1
        p.send(encode_frame((self.uid, seq, ref, value), self._main_by_value))
        p.seq = seq

    # --------------------------------------------------------------- receive

    def _accept(self, frame: bytes) -> None:
        """Take one mailbox frame in (see :mod:`otp._codec` for the format)."""
        try:
            t = _loads(frame)
            uid = t[0]
            seq = t[1]
            if len(t) == 3:
                self.mailbox.append(t[2])
            else:
                if t[2] in self.active_calls:
                    self.replies[t[2]] = t[3]
        except Exception as exc:
            if frame == WAKE_FRAME:
                self.sig.wake_pending = False
            elif "__main__" in str(exc):
                log.warning(
                    "%r dropped a message it cannot decode: %s (define message classes in an importable "
                    "module, or use start_method='fork')",
                    self.pid,
                    exc,
                )
            else:
                log.warning("%r dropped a malformed frame (%d bytes): %r", self.pid, len(frame), exc)
            return
        recv_seq = self.recv_seq
        if uid not in recv_seq and len(recv_seq) >= self._recv_sweep_at:
            self._sweep_recv_seq()
        recv_seq[uid] = seq
        if uid in self.held:
            self._release_held(uid, seq)

    def _drain_inbox(self) -> None:
        """Take in every frame already queued, without waiting."""
        sock = self.inbox
        while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._accept(sock.recv(zmq.NOBLOCK))

    def pump(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds (None: forever) for one frame or a
        signal and take it in.  Raises ProcessExit if a fatal exit signal
        came in."""
        sig = self.sig
        if sig.inbox:
            self.integrate()
        else:
            ms = -1 if timeout is None else max(0, math.ceil(timeout * 1000))
            if ms != self._rcvtimeo:
                self.inbox.setsockopt(zmq.RCVTIMEO, ms)
                self._rcvtimeo = ms
            try:
                frame = self.inbox.recv()
            except zmq.Again:
                frame = None
            if frame is not None:
                self._accept(frame)
            if sig.inbox:
                self.integrate()
        if sig.fatal is not None and not sig.exiting:
            raise ProcessExit(sig.fatal)

    def poll_sockets(self, sockets: list, timeout: float | None) -> list:
        """Wait for any of ``sockets`` (ZeroMQ sockets this process owns) to be
        readable, or for a mailbox frame or signal, up to ``timeout``; take in
        what reached the mailbox and return the readable sockets.

        For processes that serve a socket of their own beside the mailbox
        (the registry's ROUTER).  Raises ProcessExit on a fatal signal."""
        self.rt += 1
        try:
            if self.sig.inbox:
                self.integrate()
            key = tuple(sockets)
            cached = self._poller
            if cached is not None and len(cached[0]) == len(key) and all(a is b for a, b in zip(cached[0], key)):
                poller = cached[1]
            else:  # a server polls the same sockets every time: build once
                poller = zmq.Poller()
                poller.register(self.inbox, zmq.POLLIN)
                for sock in sockets:
                    poller.register(sock, zmq.POLLIN)
                self._poller = (key, poller)
            ms = -1 if timeout is None else max(0, math.ceil(timeout * 1000))
            ready = dict(poller.poll(ms))
            if self.inbox in ready:
                self._drain_inbox()
            if self.sig.inbox:
                self.integrate()
            if self.sig.fatal is not None and not self.sig.exiting:
                raise ProcessExit(self.sig.fatal)
            return [s for s in sockets if s in ready]
        finally:
            self.rt -= 1

    def receive(self, timeout: float | None = None, match=None):
        mb = self.mailbox
        if match is None and mb:
            return mb.popleft()
        self.rt += 1
        try:
            if self.sig.inbox:
                self.integrate()
            scanned = 0
            deadline = None if timeout is None else time.monotonic() + timeout
            looked = False
            while True:
                if match is None:
                    if mb:
                        return mb.popleft()
                else:
                    n = len(mb)
                    for i in range(scanned, n):
                        m = mb[i]
                        if match(m):
                            del mb[i]
                            return m
                    scanned = n
                if deadline is None:
                    self.pump(None)
                    continue
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    self.pump(remaining)
                elif looked:
                    raise Timeout(f"no matching message within {timeout}s")
                else:
                    # One look at what has already arrived (receive(timeout=0)).
                    looked = True
                    self._drain_inbox()
                    self.pump(0)
        finally:
            self.rt -= 1

    # ------------------------------------------------- signals from the port

    def integrate(self) -> None:
        """Take in what the signal thread handed over, in OTP order."""
        q = self.sig.inbox
        while q:
            pid, seq, complete, action, payload = q.popleft()
            uid = pid.uid
            if action == "release" or not complete:
                self._release_held(uid, None)
                if action == "release":
                    continue
            if complete and self.recv_seq.get(uid, 0) < seq:
                h = self.held.get(uid)
                if h is None:
                    with self.sig.lock:
                        # A live sender is watched while we wait for its
                        # messages; if it is gone already, we cannot know
                        # whether they will come, and deliver now.
                        if complete == LIVE and not self.sig.watch(pid):
                            self._apply(pid, action, payload)
                            continue
                        self.sig.hold(pid)
                    h = self.held[uid] = collections.deque()
                h.append((seq, pid, action, payload))
            else:
                self._apply(pid, action, payload)

    def _release_held(self, uid: int, upto: int | None) -> None:
        h = self.held.get(uid)
        if not h:
            return
        while h and (upto is None or h[0][0] <= upto):
            _, pid, action, payload = h.popleft()
            self._apply(pid, action, payload)
        if not h:
            del self.held[uid]
            with self.sig.lock:
                self.sig.release(uid)

    def _apply(self, pid: Pid, action: str, payload: object) -> None:
        if action == "msg":
            self.mailbox.append(payload)
            return
        self.remember_dead(pid)
        if action == "death":
            self.mailbox.append(payload)
        elif action == "peer_dead":
            p = self.peers.get(pid.uid)
            if p is not None:
                p.dead = payload
                p.call_ref = None
                self._close_peer(p)

    def remember_dead(self, pid: Pid) -> None:
        """Note that this process learned of ``pid``'s death (a DOWN, an
        EXIT, a failed call), so that nothing it asks afterwards (a name, a
        cached lookup) returns the dead pid."""
        dead = self.dead_seen
        dead[pid.uid] = True
        if len(dead) > _DEAD_SEEN_MAX:
            del dead[next(iter(dead))]

    def seen_dead(self, pid: Pid) -> bool:
        """True if this process has learned that ``pid`` exited."""
        if pid.uid in self.dead_seen:
            return True
        p = self.peers.get(pid.uid)
        return p is not None and p.dead is not None


def _on_interrupt(signum, frame) -> None:
    p = _current
    if p is not None and p.sig.fatal is not None and p.rt == 0 and not p.sig.exiting:
        raise ProcessExit(p.sig.fatal)
