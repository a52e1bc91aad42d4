"""The runtime of one OTP process: mailbox intake, receive, and the
signals the signal thread hands over.

One :class:`Process` exists per OS process (and one for the thread that
entered a :class:`~otp.Node`).  The main thread owns the mailbox and the
ZeroMQ sockets; the :class:`~otp._signals.SignalPort` thread owns signals and
death detection and hands their effects over through ``sig.inbox``.  The
other parts of a process are mixed in: its peer sockets
(:mod:`otp._peers`), links, monitors and calls (:mod:`otp._links`), spawn
and exit (:mod:`otp._lifecycle`).

Mailbox.  A PULL socket bound at the process's ipc address receives frames
from one PUSH socket per sender (so frames of one sender stay in order).
``receive`` moves frames into ``mailbox`` (a deque) and scans it; messages a
``match`` rejects stay queued in order (Erlang's selective receive).

Frames from processes of other nodes come through the node's gateway with a
prefix naming the sender's node (:mod:`otp._dist_wire`), which makes them
fail the plain decode; :meth:`Process._accept_remote` takes them in, with
the same checks and the same order bookkeeping, and remembers the sender's
node (``remote_senders``) so that sweeps do not take it for dead while its
node is connected.

Replies to calls carry their call's reference and go to ``replies`` rather
than the mailbox; replies to an alias (``aliases``: the refs of
``otp.send_request``) reach the mailbox as :class:`~otp._reasons.Response`
messages; a reply whose call is no longer waiting (it timed out) or whose
alias is gone is dropped where it arrives, so it never reaches the mailbox
(OTP 24 aliases).

A frame of any other shape than :mod:`otp._codec` documents is dropped,
counted in ``frames_dropped`` and logged, at most one line per sender per
:data:`DROP_LOG_INTERVAL`.  A message to oneself is pickled and unpickled
like any other, so it is a copy and an unpicklable one raises EncodeError.

Bounded mailboxes (opt-in, ``max_mailbox``; Erlang's ``max_heap_size`` for
queues): see :class:`Process`.
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, cast

import zmq

from . import _naming, _oslib
from ._codec import WAKE_FRAME, dumps, encode_frame, is_frame
from ._dist_wire import NAMED_UID, REMOTE_MARK, ROUTE, pack_name, parse_remote_prefix
from ._errors import NotAProcess, Timeout
from ._lifecycle import LifecycleMixin
from ._links import LinksMixin
from ._peers import PeersMixin
from ._pid import Pid, Ref
from ._process_base import KernelCode
from ._reasons import Response
from ._signal_records import Action, Complete, ProcessState
from ._signals import INTERRUPT_SIGNAL, SignalPort
from ._timeouts import wait_ms
from ._transport import BACKLOG, KernelContext, KernelSocket, NodeInfo, context_socket_limit

log = logging.getLogger("otp")

__all__ = ["Process", "current", "current_or_none"]

_SWEEP_MIN = 256
_DEAD_SEEN_MAX = 2048
_loads = pickle.loads

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


def send(dest: Pid | object, msg: object) -> None:
    """Send ``msg`` to ``dest``: a pid, or a name of the node's name service
    (a registered name, ``otp.via(...)``).

    Never blocks, and never fails for a dead pid (a no-op, as in Erlang).
    The message is a copy, also to oneself.  Raises :class:`otp.EncodeError`
    if ``msg`` cannot be serialised, :class:`otp.NoProc` for a name nobody
    holds, and :class:`otp.NotAProcess` outside a process.  An
    :class:`otp.RemoteName` is resolved on its node, by its node's gateway
    (see :meth:`Process.send_to_name`): nothing is raised for a name nobody
    holds there, as in Erlang."""
    p = _current
    if p is None or (p.root and _get_ident() != p.thread_id):
        p = current()
    if type(dest) is not Pid:
        if type(dest) is _naming.RemoteName:
            p.send_to_name(dest, msg)
            return
        dest = _naming.resolve(dest)
    p.send(dest, msg)


def current_or_none() -> Process | None:
    """The process of the calling OS process, whichever thread asks."""
    return _current


class Process(PeersMixin, LinksMixin, LifecycleMixin):
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
        self.pid = Pid(node.name, uid, ospid, _oslib.proc_start_time(ospid) or 0, node.creation)
        self.ctx = KernelContext(io_threads=1)
        self.ctx.set(zmq.MAX_SOCKETS, context_socket_limit(_oslib.raise_fd_limit()))
        self.inbox = self.ctx.kernel_socket(zmq.PULL)
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
            on_forced_exit=self._forced_exit,
            address_of=node.signal_address,
            state=self.state,
            info_address_of=node.info_address,
            gateway_address=node.gateway_signals() if node.gateway else None,
            node_up=self.node_up,
            gateway_pid_path=node.gateway_pid_path() if node.gateway else None,
        )
        self.mailbox = collections.deque()
        self._init_peers()
        self.recv_seq = {}
        self.held = {}
        self.replies = {}
        self.active_calls = {}
        # Refs whose replies are delivered to the mailbox as Response
        # messages (OTP's process aliases, used by otp.send_request); a
        # reply to a ref in neither table is dropped where it arrives.
        self.aliases: set[Ref] = set()
        self.dead_seen = {}  # uids whose death we saw (insertion-ordered, bounded)
        self.exit_hooks = []  # called with the reason when exit begins
        self.spawned = []  # root only: top-level processes, in order
        self.kernel_code = KernelCode()
        self._recv_sweep_at = _SWEEP_MIN
        self._zygote = None
        # (sockets, zmq.Poller) of the last poll_sockets.
        self._poller: tuple[tuple[zmq.Socket, ...], zmq.Poller] | None = None
        # Under forkserver no other process has this one's __main__: a frame
        # naming a class or function of __main__ is re-encoded by value
        # (cloudpickle), so scripts can send instances of their own classes.
        # Under fork the receivers share __main__ and references keep types
        # identical.  (The check is a substring search of the frame.)
        self._main_by_value = node.start_method == "forkserver"
        self._exited = False
        self.max_mailbox: int | None = None  # set by spawn(max_mailbox=...) in the new process
        self.frames_dropped = 0  # malformed frames dropped so far
        # The mailbox socket is read by the main thread, and by the signal
        # thread when it answers an InfoRequest while the main thread does
        # something else (see state): whoever holds this lock.  The main
        # thread holds it through its waits, so it is free exactly while the
        # main thread runs outside the kernel's receive.
        self._socket_lock = threading.Lock()
        self._intercepted: list[bytes] = []  # frames the signal thread read, not yet taken in
        self.waiting = False  # the main thread waits in the mailbox socket
        self._received_forgotten = 0  # frames counted in recv_seq entries swept since
        self._self_sent = 0  # messages sent to oneself
        self.info_socket: socket.socket | None = None  # bound on the first process_info (see otp._process_info)
        self._drop_log = {}  # sender uid or None -> [dropped since its last line, time of that line, why]

    # ------------------------------------------------------------ activation

    def activate(self) -> None:
        global _current
        _current = self
        if threading.current_thread() is threading.main_thread():
            signal.signal(INTERRUPT_SIGNAL, _on_interrupt)
            self.sig.interrupt_installed = True
        self.sig.start()

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
            pending = {item.sender.uid for item in sig.inbox}
            for uid in [u for u in self.recv_seq if u not in self.peers and u not in self.held]:
                if uid in sig.refs or uid in pending:
                    continue
                if not self.sender_may_live(uid):
                    self._received_forgotten += self.recv_seq.pop(uid)
                    self.remote_senders.pop(uid, None)
        self._recv_sweep_at = max(_SWEEP_MIN, 2 * len(self.recv_seq))

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

    def send_to_name(self, dest: _naming.RemoteName, msg: object) -> None:
        """Send ``msg`` to the process registered as ``dest.name`` on node
        ``dest.node``: handed to our gateway behind a route to a name (see
        :mod:`otp._dist_wire`), resolved by that node's gateway.  Dropped
        when this node does not listen (nothing can reach that node); on
        this node's own name, the local name."""
        if self.node.is_local(dest.node):
            self.send(_naming.resolve(dest.name), msg)
            return
        if not self.node.gateway:
            return
        frame = encode_frame((self.uid, 0, msg), self._main_by_value)
        node = dest.node.encode("utf-8")
        if len(node) > 255:
            raise ValueError(f"node name longer than 255 bytes: {dest.node!r}")
        send = self.gateway_socket().send
        route = ROUTE.pack(NAMED_UID, 0, self.uid, 0, self.sig.remote_signals)
        send(b"".join((bytes((len(node),)), node, route, pack_name(dest.name), self._remote_prefix, frame)))

    def send_reply(self, dest: Pid, ref: Ref, value: object) -> None:
        if dest.uid == self.uid:
            value = self._copy_to_self(value)
            if value is _DROPPED:
                return
            if ref in self.active_calls:
                self.replies[ref] = value
            elif ref in self.aliases:
                self.mailbox.append(Response(ref, value))
                if self.max_mailbox is not None:
                    self.check_mailbox_bound()
            return
        p = self.peers.get(dest.uid) or self.peer(dest)
        if p.send is None:
            return
        seq = p.seq + 1
        p.send(encode_frame((self.uid, seq, ref, value), self._main_by_value))
        p.seq = seq

    def _send_self(self, msg: object) -> None:
        msg = self._copy_to_self(msg)
        self._self_sent += 1
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
            elif frame[:1] == REMOTE_MARK and self._accept_remote(frame):
                pass
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
        if seq != last + 1:
            self._out_of_order(uid, seq, t)
            return
        if len(t) == 3:
            self.mailbox.append(msg)
        elif ref in self.active_calls:
            self.replies[ref] = value
        elif ref in self.aliases:
            self.mailbox.append(Response(ref, value))
        recv_seq[uid] = seq
        if uid in self.held:
            self._release_held(uid, seq)
        if self._early and uid in self._early:
            self._take_early(uid)

    def _accept_remote(self, frame: bytes) -> bool:
        """Take in a frame from a process of another node (see the module
        docstring); False if ``frame`` is not one (it is dropped as any
        undecodable frame)."""
        head = parse_remote_prefix(frame)
        if head is None:
            return False
        node, _, offset = head
        body = memoryview(frame)[offset:]
        try:
            t = _loads(body)
        except Exception as exc:
            self._drop_frame(None, self._undecodable(frame, exc))
            self._skip_undecodable(bytes(body))
            return True
        if not is_frame(t):
            self._drop_frame(_sender(t), _shape(t))
            self._skip_malformed(t)
            return True
        uid, seq = t[0], t[1]
        if uid not in self.remote_senders:
            self.remote_senders[uid] = node
        recv_seq = self.recv_seq
        last = recv_seq.get(uid)
        if last is None:
            last = 0
            if len(recv_seq) >= self._recv_sweep_at:
                self._sweep_recv_seq()
        if seq != last + 1:
            self._out_of_order(uid, seq, t)
            return True
        if len(t) == 3:
            self.mailbox.append(t[2])
        elif t[2] in self.active_calls:
            self.replies[t[2]] = t[3]
        elif t[2] in self.aliases:
            self.mailbox.append(Response(t[2], t[3]))
        recv_seq[uid] = seq
        if uid in self.held:
            self._release_held(uid, seq)
        if self._early and uid in self._early:
            self._take_early(uid)
        return True

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
        with self._socket_lock:
            if self._intercepted:
                self._take_intercepted()
            while _has_frames(sock):
                self._accept(sock.recv(zmq.NOBLOCK))

    def _take_intercepted(self) -> None:
        """Take in the frames the signal thread read off the mailbox socket
        (socket lock held): they came before anything still in it."""
        frames, self._intercepted = self._intercepted, []
        for frame in frames:
            self._accept(frame)

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
            with self._socket_lock:
                if self._intercepted:
                    self._take_intercepted()
                else:
                    if ms != self._rcvtimeo:
                        self.inbox.setsockopt(zmq.RCVTIMEO, ms)
                        self._rcvtimeo = ms
                    self.waiting = True
                    try:
                        frame = self.inbox.recv()
                    except zmq.Again:
                        frame = None
                    finally:
                        self.waiting = False
                    if frame is not None:
                        self._accept(frame)
            if sig.inbox:
                self.integrate()
        if self.max_mailbox is not None:
            self._bounded_intake(self.max_mailbox)
        if sig.fatal is not None and not sig.exiting:
            sig.raise_fatal()

    def _bounded_intake(self, limit: int) -> None:
        """The end of ``pump`` for a process with ``max_mailbox``: take in the
        frames already there (one past the bound at most), so that a consumer
        slower than its senders meets its bound instead of growing in
        ZeroMQ's queue, which nothing counts; then check the bound."""
        mb = self.mailbox
        sock = self.inbox
        with self._socket_lock:
            if self._intercepted:
                self._take_intercepted()
            while len(mb) <= limit and _has_frames(sock):
                self._accept(sock.recv(zmq.NOBLOCK))
        self.check_mailbox_bound()

    def check_mailbox_bound(self) -> None:
        """Exit with ``('max_mailbox', N)`` if the queue exceeds ``max_mailbox``
        (none without it).  An exiting process is past caring."""
        limit = self.max_mailbox
        if limit is None:
            return
        queued = len(self.mailbox)
        if self.held:
            queued += sum(len(h) for h in self.held.values())
        if queued <= limit or self.sig.exiting:
            return
        reason = ("max_mailbox", limit)
        log.error("%r exits with reason %r: %d messages queued, max_mailbox=%d", self.pid, reason, queued, reason[1])
        sig = self.sig
        with sig.lock:
            # Like a kill: fatal stays set, so nothing (not a gen_server's
            # terminate, not a caught ProcessExit) receives again.
            if sig.fatal is None:
                sig.fatal = reason
        sig.raise_fatal()

    def poll_sockets(self, sockets: list[zmq.Socket], timeout: float | None) -> list[zmq.Socket]:
        """Wait for any of ``sockets`` (ZeroMQ sockets this process owns) to be
        readable, or for a mailbox frame or signal, up to ``timeout``; take in
        what reached the mailbox and return the readable sockets.

        For processes that serve a socket of their own beside the mailbox
        (the registry's ROUTER).  Raises ProcessExit on a fatal signal."""
        with self.kernel_code:
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
            ms = self.peer_wait_ms(wait_ms(timeout))  # one slice of a long wait: callers loop
            with self._socket_lock:
                if self._intercepted:
                    self._take_intercepted()
                    ms = 0
                self.waiting = True
                try:
                    ready = dict(poller.poll(ms))
                finally:
                    self.waiting = False
            if self.inbox in ready:
                self._drain_inbox()
            if self.max_mailbox is not None:
                self.check_mailbox_bound()
            if self.sig.inbox:
                self.integrate()
            if self.sig.fatal is not None and not self.sig.exiting:
                self.sig.raise_fatal()
            return [s for s in sockets if s in ready]

    def receive(self, timeout: float | None = None, match: Callable[[Any], bool] | None = None) -> Any:
        """The first message ``match`` accepts (any, without ``match``),
        waiting up to ``timeout`` seconds (None: forever); see
        :func:`otp.receive`."""
        mb = self.mailbox
        if match is None and mb:
            return mb.popleft()
        with self.kernel_code:
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

    # ------------------------------------------------------------ its state

    def state(self) -> ProcessState:
        """What this process says of itself to ``otp.process_info``; called
        by the signal thread (for an InfoRequest) or the main thread (about
        itself).

        Messages still in the mailbox socket are counted too: if the main
        thread is not reading the socket (it runs a callback), the caller
        reads them off into ``_intercepted``, which the main thread takes in
        before anything else; if it is, it waits there, so nothing is left
        in the socket but what arrives this instant."""
        if self._socket_lock.acquire(blocking=False):
            try:
                intercepted = self._intercepted  # the main thread swaps it under the lock
                sock = self.inbox
                if not sock.closed:
                    while _has_frames(sock):
                        intercepted.append(sock.recv(zmq.NOBLOCK))
                queued = sum(1 for frame in intercepted if frame != WAKE_FRAME)
            finally:
                self._socket_lock.release()
        else:
            queued = 0
        held = list(self.held.values())
        queued += len(self.mailbox) + sum(len(h) for h in held)
        sig = self.sig
        with sig.lock:
            links = tuple(sig.links.values())
            monitors = tuple(sig.monitors.values())
            monitored_by = tuple(sig.monitored_by.values())
            trap_exit, exiting, named = sig.trap_exit, sig.exiting, sig.named
        # list() of a dict's values is atomic under the GIL: the main thread
        # may add peers meanwhile.
        sent = self._self_sent + sum(p.seq for p in list(self.peers.values())) + self.peers_forgotten_seq
        received = self._self_sent + self._received_forgotten + sum(list(self.recv_seq.values()))
        return ProcessState(
            message_queue_len=queued,
            links=links,
            monitors=monitors,
            monitored_by=monitored_by,
            trap_exit=trap_exit,
            waiting=self.waiting,
            exiting=exiting,
            named=named,
            messages_received=received,
            messages_sent=sent,
            current_function=self._current_function(),
        )

    def _current_function(self) -> str | None:
        """``module.function`` the main thread runs: its innermost frame
        outside the kernel's own modules (None for the root's thread when it
        cannot be seen)."""
        frame = sys._current_frames().get(self.thread_id)
        while frame is not None:
            module = frame.f_globals.get("__name__", "")
            if not (isinstance(module, str) and module.startswith("otp._")):
                code = frame.f_code
                return f"{module}.{getattr(code, 'co_qualname', code.co_name)}"
            frame = frame.f_back
        return None

    # ------------------------------------------------- signals from the port

    def integrate(self) -> None:
        """Take in what the signal thread handed over, in OTP order: an item
        whose sender's frames are not all in yet is held behind them."""
        q = self.sig.inbox
        while q:
            item = q.popleft()
            sender = item.sender
            uid = sender.uid
            complete = item.complete
            if complete is Complete.NO:
                self._release_held(uid, None)
                if item.action is Action.RELEASE:
                    continue
            elif self.recv_seq.get(uid, 0) < item.seq:
                h = self.held.get(uid)
                if h is None:
                    with self.sig.lock:
                        # A live sender is watched while we wait for its
                        # messages; if it is gone already, we cannot know
                        # whether they will come, and deliver now.
                        if complete is Complete.LIVE and not self.sig.watch(sender):
                            self._apply(sender, item.action, item.payload)
                            continue
                        self.sig.hold(sender)
                    h = self.held[uid] = collections.deque()
                h.append(item)
                continue
            self._apply(sender, item.action, item.payload)

    def _release_held(self, uid: int, upto: int | None) -> None:
        """Apply the items held behind ``uid``'s frames up to frame ``upto``
        (None: all of them)."""
        h = self.held.get(uid)
        if not h:
            return
        while h and (upto is None or h[0].seq <= upto):
            item = h.popleft()
            self._apply(item.sender, item.action, item.payload)
        if not h:
            del self.held[uid]
            with self.sig.lock:
                self.sig.release(uid)

    def _apply(self, pid: Pid, action: Action, payload: object) -> None:
        if action is Action.MESSAGE:
            self.mailbox.append(payload)
            return
        self.remember_dead(pid)
        if action is Action.DEATH:
            self.mailbox.append(payload)
        elif action is Action.PEER_DEAD:
            p = self.peers.get(pid.uid)
            if p is not None:
                p.dead = payload
                p.call_ref = None
                if payload != "noconnection":
                    self._close_peer(p)
                # else its node may come back: the next call asks again
                # (see LinksMixin.call_peer), frames go on to the gateway.

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


def _has_frames(sock: zmq.Socket | KernelSocket) -> bool:
    """True if a frame waits on ``sock`` (read without blocking)."""
    return bool(cast(int, sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN)


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


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    p = _current
    if p is None or p.kernel_code.depth:
        return
    sig = p.sig
    if sig.fatal is not None and not sig.exiting and not sig.fatal_raised:
        sig.raise_fatal()
