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

A frame of any other shape than :mod:`otp._codec` documents is dropped,
counted in ``frames_dropped`` and logged, at most one line per sender per
:data:`DROP_LOG_INTERVAL`.  A message to oneself is pickled and unpickled
like any other, so it is a copy and an unpicklable one raises EncodeError.

Bounded mailboxes (opt-in, ``max_mailbox``; Erlang's ``max_heap_size`` for
queues): see :class:`Process`.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import pickle
import resource
import signal
import threading
import time

import zmq

from . import _oslib
from ._codec import WAKE_FRAME, dumps, encode_frame, is_frame
from ._errors import NoProc, NotAProcess, ProcessExit, Timeout
from ._lifecycle import LifecycleMixin
from ._links import LinksMixin
from ._pid import Pid, Ref
from ._signals import INTERRUPT_SIGNAL, LIVE, SignalPort
from ._timeouts import wait_ms
from ._transport import (
    BACKLOG,
    EXIT_LINGER_MS,
    FLUSH_LINGER_MS,
    PEER_IDLE_S,
    RECONNECT_IVL_MS,
    NodeInfo,
    context_socket_limit,
    peer_socket_cap,
)

log = logging.getLogger("otp")

__all__ = ["Process", "current", "current_or_none"]

_SWEEP_MIN = 256
_DEAD_SEEN_MAX = 2048
_loads = pickle.loads
_base_send = zmq.Socket.__mro__[1].send

#: Seconds between two log lines about malformed frames from one sender (the
#: second says how many were dropped since the first): a sender pushing
#: garbage in a loop must not turn every frame into a log line.
DROP_LOG_INTERVAL = 1.0
#: Senders the drop log tells apart; beyond, frames go to the bucket of the
#: senders that cannot be read (made-up uids must not grow the table).
_DROP_SENDERS_MAX = 256
_drop_clock = time.monotonic  # the drop log's own clock, which a test can freeze
_DROPPED = object()  # what a copy to oneself that cannot be decoded yields

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
    """What a process keeps about a process it sends to.

    ``send`` is what ``Process.send`` calls with a frame: pyzmq's send on the
    open socket, :meth:`send_closed` while the socket is closed (evicted,
    or no descriptor was free: the next frame opens one), None once the peer
    is known dead.  ``seq`` counts every frame ever sent to the peer, over
    all its sockets: the receiver restores the order of frames that two
    sockets delivered out of order (see ``Process._out_of_order``)."""

    __slots__ = ("pid", "sock", "send", "seq", "call_ref", "dead", "proc", "mark", "marked", "backlog")

    def __init__(self, pid: Pid, sock: zmq.Socket | None, proc: Process | None = None) -> None:
        self.pid = pid
        self.sock = sock
        # pyzmq's base-class send, skipping the sugar layer's draft-socket
        # argument handling (a third of the per-message cost of a send).
        self.send = None if sock is None else _base_send.__get__(sock)
        self.seq = 0  # frames sent to it so far
        self.call_ref: Ref | None = None
        self.dead: object = None if sock is not None else "noproc"
        self.proc = proc
        self.mark = 0  # seq when last looked at: unchanged since means unused since (see _evict_peers)
        self.marked = 0.0  # when the last look found it used (or it was opened)
        self.backlog: list | None = None  # frames waiting for a free descriptor

    def send_closed(self, frame: bytes) -> None:
        self.proc._send_closed(self, frame)


#: Seconds between attempts to open a socket for frames that wait for a
#: descriptor (the process is at its descriptor limit).
_BACKLOG_RETRY_S = 0.01
_NO_DESCRIPTOR = (errno.EMFILE, errno.ENFILE)
_SKIPPED = object()  # set aside in place of a frame that was dropped: only its number counts
_monotonic = time.monotonic


def _stopped(pid: Pid) -> bool:
    """True if ``pid`` is stopped (SIGSTOP, a tracer): it reads nothing."""
    try:
        st = _oslib.proc_state(pid.ospid)
    except OSError:  # no descriptor to read /proc with: assume it runs
        return False
    return st is not None and st[0] in ("T", "t") and st[1] == pid.start


def _frame_header(frame: bytes) -> tuple[int, int] | None:
    """(sender uid, sequence number) of a frame that cannot be unpickled (a
    message naming a class this process lacks), read from the pickle's
    opcodes without executing it: the header is the tuple's first two
    items, pushed before the message (see :mod:`otp._codec`)."""
    import pickletools

    ints = []
    try:
        for op, arg, _ in pickletools.genops(frame):
            if op.name in ("PROTO", "FRAME", "MARK"):
                continue
            if type(arg) is not int or op.name not in ("BININT", "BININT1", "BININT2", "LONG1", "LONG4"):
                return None
            ints.append(arg)
            if len(ints) == 2:
                return ints[0], ints[1]
    except Exception:
        return None
    return None


class Process(LinksMixin, LifecycleMixin):
    """The OTP process living in the calling OS process (or root thread).

    ``max_mailbox`` (None: unbounded, the default, as in Erlang) bounds the
    queue: the messages received and not yet taken by ``receive``
    (``mailbox``, plus the exit signals and DOWNs ``held`` for order).
    When the queue exceeds it the process exits with reason
    ``('max_mailbox', N)``, untrappable like a kill (a gen_server's
    ``terminate`` does not run), and logs an error naming itself and N.
    The bound is checked each time frames are taken in; a bounded process
    then takes in every frame already there (up to one past the bound), so
    a consumer slower than its senders meets its bound instead of growing
    in ZeroMQ's queue, which nothing counts.  A process that never enters
    ``receive`` (or a call) takes nothing in and is not checked.
    """

    def __init__(self, node: NodeInfo, uid: int, *, root: bool) -> None:
        self.node = node
        self.uid = uid
        self.root = root
        self.thread_id = threading.get_ident()
        ospid = os.getpid()
        self.pid = Pid(node.name, uid, ospid, _oslib.proc_start_time(ospid) or 0)
        self.ctx = zmq.Context(io_threads=1)
        self.ctx.set(zmq.MAX_SOCKETS, context_socket_limit(_oslib.raise_fd_limit()))
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
        self.max_mailbox: int | None = None  # set by spawn(max_mailbox=...) in the new process
        self.frames_dropped = 0  # malformed frames dropped so far
        self._drop_log: dict = {}  # sender uid or None -> [dropped since its last line, time of that line, why]

    # ------------------------------------------------------------ activation

    def activate(self) -> None:
        global _current
        _current = self
        if threading.current_thread() is threading.main_thread():
            signal.signal(INTERRUPT_SIGNAL, _on_interrupt)
            self.sig.interrupt_installed = True
        self.sig.start()

    # ----------------------------------------------------------------- peers
    #
    # Descriptors (see otp._transport): open peer sockets are capped and the
    # idle ones closed while the process waits (peer_wait_ms); a closed one
    # reopens on its next frame.  The state below lives on the instance from
    # the first socket a process opens.

    _open: dict[int, Peer] | None = None  # peers with an open socket, least recently opened or seen used first
    _peer_cap = 0
    _idle_scan_at: float | None = None  # when open sockets, backlogs and set-aside frames are next looked at
    _backlogged: dict[int, Peer] | None = None  # peers whose frames wait for a descriptor
    _early: dict[int, dict] | None = None  # sender uid -> {seq: frame tuple} that came before its turn
    _early_gone: dict[int, float] | None = None  # senders of _early seen gone: since when
    _idle_closers: list | None = None  # see on_idle
    peer_reopens = 0  # sockets opened again for a peer whose socket was closed (a statistic)
    _flushing: collections.deque | None = None  # when the lingers of closed sockets end, in order

    def peer(self, pid: Pid) -> Peer:
        p = self.peers.get(pid.uid)
        if p is not None:
            return p
        if not isinstance(pid, Pid):
            raise TypeError(f"expected a Pid, got {type(pid).__name__}")
        if not self.node.is_local(pid.node):
            raise NoProc(pid)  # remote nodes: not connected (no transport yet)
        p = Peer(pid, None, self)
        if os.path.exists(self.node.mailbox_path(pid.uid)):
            p.dead = None
            self._open_peer(p)
        self.peers[pid.uid] = p
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

    def _close_peer(self, p: Peer) -> None:
        """The peer is dead: drop what is queued for it, send nothing more."""
        if p.sock is not None:
            if self._open is not None:
                self._open.pop(p.pid.uid, None)
            p.sock.close(linger=0)
            p.sock = None
        p.send = None
        p.backlog = None
        if self._backlogged:
            self._backlogged.pop(p.pid.uid, None)

    def _open_peer(self, p: Peer) -> bool:
        """Open a socket to ``p``, first closing the least recently used ones
        if the process is at its cap.  False if no descriptor was free even
        then: its frames wait in ``p.backlog`` (sent in order once one is)."""
        open_ = self._open
        if open_ is None:
            open_ = self._open = {}
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            self._peer_cap = peer_socket_cap(1 << 20 if limit == resource.RLIM_INFINITY else limit)
        if len(open_) >= self._peer_cap:
            # A sixteenth at once, so that a process talking to more peers
            # than its cap looks through its sockets once per 16 reopens.
            self._evict_peers(len(open_) - self._peer_cap + 1 + self._peer_cap // 16)
        sock = self._push_socket()
        if sock is None:
            if p.backlog is None:
                p.backlog = []
            if self._backlogged is None:
                self._backlogged = {}
                self.exit_hooks.append(self._flush_backlogs_at_exit)
            self._backlogged[p.pid.uid] = p
            p.send = p.send_closed
            at = _monotonic() + _BACKLOG_RETRY_S
            if self._idle_scan_at is None or self._idle_scan_at > at:
                self._idle_scan_at = at
            return False
        sock.connect(self.node.mailbox_endpoint(p.pid.uid))
        p.sock = sock
        p.send = _base_send.__get__(sock)
        p.mark = p.seq
        p.marked = _monotonic()
        open_[p.pid.uid] = p
        if self._idle_scan_at is None:
            self._idle_scan_at = p.marked + PEER_IDLE_S
        return True

    def _push_socket(self) -> zmq.Socket | None:
        """A new PUSH socket, or None if none could be had within about 60 ms
        (no descriptor left, or the context's MAX_SOCKETS reached).

        A closed socket keeps its descriptors and its slot in the context
        until libzmq has flushed it in its own threads: a process closing
        sockets faster than they flush (a loop sending to thousands of
        peers) waits here for them, which bounds what it holds.  Then it
        closes sockets itself: half, then all it may close."""
        for attempt in range(7):
            try:
                sock = self.ctx.socket(zmq.PUSH)
            except zmq.ZMQError as exc:
                if exc.errno not in _NO_DESCRIPTOR:
                    raise
                if attempt == 2:
                    self._evict_peers(len(self._open or ()) // 2)
                elif attempt == 4:
                    self._evict_peers(len(self._open or ()), urgent=True)
                time.sleep(0.0005 * (1 << attempt))
                continue
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.setsockopt(zmq.LINGER, EXIT_LINGER_MS)
            sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
            return sock
        return None

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
        sock.close(linger=FLUSH_LINGER_MS)
        if now - p.marked >= PEER_IDLE_S:
            return
        flushing = self._flushing
        if flushing is None:
            flushing = self._flushing = collections.deque()
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
        flushing = self._flushing
        if flushing:
            now = _monotonic()
            while flushing and flushing[0] <= now:
                flushing.popleft()
            if flushing:
                shortest = max(1, int((flushing[0] - now) * 1000))
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
            if self._open_peer(p):
                self.peer_reopens += 1
                p.send(frame)
                return
        # Retried when the process next waits (_scan_peers) or exits.
        p.backlog.append(frame)

    def _flush_backlog(self, p: Peer) -> bool:
        """Send the frames waiting for a descriptor, in order; False if there
        is still none."""
        if not os.path.exists(self.node.mailbox_path(p.pid.uid)):
            self._close_peer(p)
            return True
        if p.sock is None:
            # _open_peer keeps the backlog if it fails again.
            self._backlogged.pop(p.pid.uid, None)
            if not self._open_peer(p):
                return False
        frames = p.backlog
        p.backlog = None
        self._backlogged.pop(p.pid.uid, None)
        for frame in frames:
            p.send(frame)
        return True

    def _flush_backlogs_at_exit(self, reason: object) -> None:
        """Exit hook: frames still waiting for a descriptor get one now, at
        the cost of every other peer socket (the exit flushes those too)."""
        for p in list((self._backlogged or {}).values()):
            if not self._flush_backlog(p):
                self._evict_peers(len(self._open or ()), urgent=True)
                if not self._flush_backlog(p):
                    log.error(
                        "%r exits with %d frames to %r it found no descriptor for", self.pid, len(p.backlog), p.pid
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

    def on_idle(self, close) -> None:
        """Call ``close(now)`` at each look at idle sockets (every
        ``PEER_IDLE_S`` while the process waits) until it returns False.

        For the sockets a process keeps beside its mailbox: each holds a
        descriptor in the process it connects to, as a peer socket does (a
        registry client's DEALER holds one in the registry), so it should
        close when it was not used since the previous call."""
        if self._idle_closers is None:
            self._idle_closers = []
        self._idle_closers.append(close)
        at = _monotonic() + PEER_IDLE_S
        if self._idle_scan_at is None or self._idle_scan_at > at:
            self._idle_scan_at = at

    # Receiving side of the order across sockets.  Process._accept calls
    # _out_of_order for a frame whose number is not the next one expected from
    # its sender, _skip_frame for a frame it drops (its number still counts),
    # and _take_early after it took a frame in from a sender in _early.

    def _out_of_order(self, uid: int, seq: int, t: tuple) -> bool:
        """Deal with a frame numbered ``seq`` from ``uid`` that is not the next
        one expected; False if ``_accept`` should take it in as usual.

        Frames of one sender arrive in order on one socket, but a sender
        closes sockets and opens new ones, and the mailbox reads its
        connections in turn: a frame on the new connection can come while
        the old one still holds earlier frames.  It is set aside until they
        are in.  A frame numbered at or below what was taken in is late (it
        was set aside and settled, see _settle_early): taken in, the count
        unchanged.

        A sender never heard from starts at 0, even if it has exited: its
        first frames may still be on their way on another connection (a
        sender often exits before its receiver reads).  (A late frame of a
        sender whose count _sweep_recv_seq forgot waits for _settle_early.)"""
        last = self.recv_seq.get(uid, 0)
        if seq <= last:
            self._take_in(t)
            return True
        self._set_aside(uid, seq, t)
        return True

    def _skip_frame(self, uid: int, seq: int) -> None:
        """Frame ``seq`` of ``uid`` was dropped (undecodable, malformed): count
        it, so that its successors are not held for it."""
        last = self.recv_seq.get(uid, 0)
        if seq == last + 1:
            self.recv_seq[uid] = seq
            if uid in self.held:
                self._release_held(uid, seq)
            if self._early is not None and uid in self._early:
                self._take_early(uid)
        elif seq > last:
            self._set_aside(uid, seq, _SKIPPED)

    def _skip_undecodable(self, frame: bytes) -> None:
        """A frame that does not unpickle: count it by its header, if any."""
        header = _frame_header(frame)
        if header is not None:
            self._skip_frame(*header)

    def _skip_malformed(self, t: object) -> None:
        """A frame of the wrong shape: count it if it names a sender and a number."""
        if type(t) is tuple and len(t) >= 2 and type(t[0]) is int and type(t[1]) is int:
            self._skip_frame(t[0], t[1])

    def _set_aside(self, uid: int, seq: int, t: object) -> None:
        early = self._early
        if early is None:
            early = self._early = {}
        pending = early.get(uid)
        if pending is None:
            pending = early[uid] = {}
            at = _monotonic() + PEER_IDLE_S
            if self._idle_scan_at is None or self._idle_scan_at > at:
                self._idle_scan_at = at
        pending[seq] = t

    def _take_early(self, uid: int) -> None:
        """Take in the frames set aside from ``uid`` that are now next."""
        pending = self._early[uid]
        recv_seq = self.recv_seq
        seq = recv_seq[uid]
        while pending:
            t = pending.pop(seq + 1, None)
            if t is None:
                break
            seq += 1
            if t is not _SKIPPED:
                self._take_in(t)
            recv_seq[uid] = seq
            if uid in self.held:
                self._release_held(uid, seq)
        if not pending:
            del self._early[uid]

    def _take_in(self, t: tuple) -> None:
        if len(t) == 3:
            self.mailbox.append(t[2])
        elif type(t[2]) is Ref and t[2] in self.active_calls:
            self.replies[t[2]] = t[3]

    def _settle_early(self, now: float) -> None:
        """Frames set aside for a sender that exited more than its exit flush
        ago (EXIT_LINGER_MS: everything it sent is in by then) are taken in
        without the predecessors still missing: those were lost in the sender
        (killed with frames in its queue, or it gave up on a frozen us)."""
        gone = self._early_gone or {}
        still = {}
        for uid in list(self._early):
            if os.path.exists(self.node.mailbox_path(uid)):
                continue
            since = gone.get(uid, now)
            if now - since < EXIT_LINGER_MS / 1000 + 0.5:
                still[uid] = since
                continue
            pending = self._early.pop(uid)
            recv_seq = self.recv_seq
            for seq in sorted(pending):
                t = pending[seq]
                if t is not _SKIPPED:
                    self._take_in(t)
                if seq > recv_seq.get(uid, 0):
                    recv_seq[uid] = seq
                    if uid in self.held:
                        self._release_held(uid, seq)
        self._early_gone = still

    def seq_to(self, uid: int) -> int:
        p = self.peers.get(uid)
        return 0 if p is None else p.seq

    # ------------------------------------------------------------------ send

    def send(self, dest: Pid, msg: object) -> None:
        if dest.uid == self.uid:
            self._send_self(msg)
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
            value = self._copy_to_self(value)
            if value is not _DROPPED and ref in self.active_calls:
                self.replies[ref] = value
            return
        p = self.peers.get(dest.uid) or self.peer(dest)
        if p.send is None:
            return
        seq = p.seq + 1
        p.send(encode_frame((self.uid, seq, ref, value), self._main_by_value))
        p.seq = seq

    def _send_self(self, msg: object) -> None:
        msg = self._copy_to_self(msg)
        if msg is not _DROPPED:
            self.mailbox.append(msg)
            if self.max_mailbox is not None:
                self.check_mailbox_bound()

    def _copy_to_self(self, obj: object) -> object:
        """``obj`` as another process would receive it: a message to oneself
        must not share objects with the sender, nor skip the EncodeError an
        unpicklable one raises anywhere else.  :data:`_DROPPED` (logged) if
        the copy cannot be decoded, as a frame would be dropped."""
        frame = dumps(obj)
        try:
            return _loads(frame)
        except Exception as exc:
            self._drop_frame(self.uid, f"undecodable ({len(frame)} bytes): {exc!r}")
            return _DROPPED

    # --------------------------------------------------------------- receive

    def _accept(self, frame: bytes) -> None:
        """Take one mailbox frame in (see :mod:`otp._codec` for the format).

        The shape is checked before any part is used: a frame of another
        shape would reach the mailbox as garbage, and a 'uid' or 'seq' that
        is not an int would break the order bookkeeping below.  (Messages
        are checked inline, replies by :func:`otp._codec.is_frame`: a
        message costs three type checks more, a reply one call.)"""
        try:
            t = _loads(frame)
        except Exception as exc:
            if frame == WAKE_FRAME:
                self.sig.wake_pending = False
            else:
                self._drop_frame(None, self._undecodable(frame, exc))
                self._skip_undecodable(frame)
            return
        if type(t) is tuple and len(t) == 3:
            uid, seq, msg = t
            if type(uid) is not int or type(seq) is not int:
                self._drop_frame(_sender(t), _shape(t))
                return
        elif is_frame(t):
            uid, seq, ref, value = t
        else:
            self._drop_frame(_sender(t), _shape(t))
            self._skip_malformed(t)
            return
        recv_seq = self.recv_seq
        last = recv_seq.get(uid)
        if last is None:
            last = 0
            if len(recv_seq) >= self._recv_sweep_at:
                self._sweep_recv_seq()
        if seq != last + 1 and self._out_of_order(uid, seq, t):
            return
        if len(t) == 3:
            self.mailbox.append(msg)
        elif ref in self.active_calls:
            self.replies[ref] = value
        recv_seq[uid] = seq
        if uid in self.held:
            self._release_held(uid, seq)
        if self._early is not None and uid in self._early:
            self._take_early(uid)

    @staticmethod
    def _undecodable(frame: bytes, exc: Exception) -> str:
        why = f"undecodable ({len(frame)} bytes): {exc!r}"
        if "__main__" in str(exc):
            why += " (define message classes in an importable module, or use start_method='fork')"
        return why

    def _drop_frame(self, uid: int | None, why: str) -> None:
        """Count a frame that is not a mailbox frame and log it, at most one
        line per sender (``None``: senders that cannot be read) per
        :data:`DROP_LOG_INTERVAL`, which says how many were dropped since
        the previous one: a flood of garbage must not flood the log too."""
        self.frames_dropped += 1
        senders = self._drop_log
        now = _drop_clock()
        entry = senders.get(uid)
        if entry is None:
            if len(senders) >= _DROP_SENDERS_MAX:
                self.flush_dropped(now)
                if len(senders) >= _DROP_SENDERS_MAX:
                    uid = None
            entry = senders.setdefault(uid, [0, None, why])
        entry[0] += 1
        entry[2] = why
        if entry[1] is None or now - entry[1] >= DROP_LOG_INTERVAL:
            self._log_dropped(uid, entry[0], why)
            entry[0] = 0
            entry[1] = now

    def flush_dropped(self, now: float | None = None) -> None:
        """Log the frames dropped and not yet reported for every sender whose
        last line is :data:`DROP_LOG_INTERVAL` old (every sender if ``now``
        is None: at exit), and forget those senders."""
        for uid, (count, at, why) in list(self._drop_log.items()):
            if now is None or at is None or now - at >= DROP_LOG_INTERVAL:
                if count:
                    self._log_dropped(uid, count, why)
                del self._drop_log[uid]

    def _log_dropped(self, uid: int | None, count: int, why: str) -> None:
        log.warning(
            "%r dropped %d malformed mailbox frame(s) from %s since its previous line about them (latest: %s)",
            self.pid,
            count,
            "senders that cannot be read" if uid is None else f"sender uid {uid:#x}",
            why,
        )

    def _drain_inbox(self) -> None:
        """Take in every frame already queued, without waiting."""
        sock = self.inbox
        while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._accept(sock.recv(zmq.NOBLOCK))

    def pump(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds (None: forever) for one frame or a
        signal and take it in.  Raises ProcessExit if a fatal exit signal
        came in, or the queue exceeds ``max_mailbox``."""
        sig = self.sig
        if sig.inbox:
            self.integrate()
        else:
            # One slice of a long wait (callers loop on their deadline); a
            # server's wait forever skips the call.
            ms = self.peer_wait_ms(-1 if timeout is None else wait_ms(timeout))
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
        if self.max_mailbox is not None:
            self._bounded_intake()
        if sig.fatal is not None and not sig.exiting:
            raise ProcessExit(sig.fatal)

    def _bounded_intake(self) -> None:
        """The end of ``pump`` for a process with ``max_mailbox``: take in the
        frames already there (one past the bound at most), so that a consumer
        slower than its senders meets its bound instead of growing in
        ZeroMQ's queue, which nothing counts; then check the bound."""
        limit = self.max_mailbox
        mb = self.mailbox
        sock = self.inbox
        while len(mb) <= limit and sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._accept(sock.recv(zmq.NOBLOCK))
        self.check_mailbox_bound()

    def check_mailbox_bound(self) -> None:
        """Exit with ``('max_mailbox', N)`` if the queue exceeds ``max_mailbox``
        (which must be set).  An exiting process is past caring."""
        queued = len(self.mailbox)
        if self.held:
            queued += sum(len(h) for h in self.held.values())
        if queued <= self.max_mailbox or self.sig.exiting:
            return
        reason = ("max_mailbox", self.max_mailbox)
        log.error("%r exits with reason %r: %d messages queued, max_mailbox=%d", self.pid, reason, queued, reason[1])
        sig = self.sig
        with sig.lock:
            # Like a kill: fatal stays set, so nothing (not a gen_server's
            # terminate, not a caught ProcessExit) receives again.
            if sig.fatal is None:
                sig.fatal = reason
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
            ready = dict(poller.poll(self.peer_wait_ms(wait_ms(timeout))))  # one slice of a long wait: callers loop
            if self.inbox in ready:
                self._drain_inbox()
            if self.max_mailbox is not None:
                self.check_mailbox_bound()
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


def _sender(t: object) -> int | None:
    """The sender uid of a frame that is not a mailbox frame, if it has one."""
    return t[0] if type(t) is tuple and t and type(t[0]) is int else None


def _shape(t: object) -> str:
    """What a frame that is not a mailbox frame held, for the log (types
    only: its values may be huge, or fail to print)."""
    if type(t) is not tuple:
        return f"a {type(t).__name__}, not a tuple"
    inner = ", ".join(type(x).__name__ for x in t[:5]) + (", ..." if len(t) > 5 else "")
    return f"tuple({inner}), not (int, int, msg) or (int, int, Ref, value)"


def _on_interrupt(signum, frame) -> None:
    p = _current
    if p is not None and p.sig.fatal is not None and p.rt == 0 and not p.sig.exiting:
        raise ProcessExit(p.sig.fatal)
