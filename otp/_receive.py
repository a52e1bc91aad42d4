"""The receiving side of a process: frames taken in from the mailbox
socket, the waits (``pump``, ``receive``, ``poll_sockets``), and the
signals the signal thread hands over.  Apart from :mod:`otp._process`,
which holds the process object and its sends, because this is the code
every wait runs.  Mixed into :class:`otp._process.Process`; runs in the
process's main thread.

Mailbox.  A PULL socket bound at the process's ipc address receives frames
from one PUSH socket per sender (so frames of one sender stay in order).
``receive`` moves frames into ``mailbox`` (a deque) and scans it; messages a
``match`` rejects stay queued in order (Erlang's selective receive).

Frames from processes of other nodes come through the node's gateway with a
prefix naming the sender's node (:mod:`otp._dist_wire`), which makes them
fail the plain decode; :meth:`ReceiveMixin._accept` takes them in with the
same checks and the same order bookkeeping, and remembers the sender's node
(``remote_senders``) so that sweeps do not take it for dead while its node
is connected.

Replies to calls carry their call's reference and go to ``replies`` rather
than the mailbox; replies to an alias (``aliases``: the refs of
``otp.send_request``) reach the mailbox as :class:`~otp._reasons.Response`
messages; a reply whose call is no longer waiting (it timed out) or whose
alias is gone is dropped where it arrives, so it never reaches the mailbox
(OTP 24 aliases).

A frame of any other shape than :mod:`otp._codec` documents is dropped,
counted and logged (see ``Process._drop_frame``).
"""

from __future__ import annotations

import collections
import logging
import pickle
import time
from collections.abc import Callable
from typing import Any, cast

import zmq

from ._codec import WAKE_FRAME, is_frame
from ._dist_wire import REMOTE_MARK, parse_remote_prefix
from ._errors import Timeout
from ._peers import PeersMixin
from ._pid import Pid, Ref
from ._reasons import DOWN, EXIT, Response
from ._signal_records import Action, Complete
from ._timeouts import wait_ms
from ._transport import KernelSocket

log = logging.getLogger("otp")

__all__ = ["ReceiveMixin", "has_frames", "SWEEP_MIN"]

#: Senders counted in ``recv_seq`` before the first sweep of the gone ones.
SWEEP_MIN = 256
_DEAD_SEEN_MAX = 2048
_loads = pickle.loads


class ReceiveMixin(PeersMixin):
    """What a process does to take frames and signals in (see the module
    docstring)."""

    _recv_sweep_at: int
    _received_forgotten: int
    _intercepted: list[bytes]
    _rcvtimeo: int
    waiting: bool
    aliases: set[Ref]
    _poller: tuple[tuple[zmq.Socket, ...], zmq.Poller] | None

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
        self._recv_sweep_at = max(SWEEP_MIN, 2 * len(self.recv_seq))

    # --------------------------------------------------------------- intake

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
            t = self._undecoded(frame, exc)
            if t is None:
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

    def _undecoded(self, frame: bytes, exc: Exception) -> tuple | None:
        """What :meth:`_accept` makes of a frame that does not unpickle: the
        tuple of a frame from a process of another node (see the module
        docstring), its sender's node noted; None for the wake frame, and
        for a frame dropped as undecodable or malformed."""
        if frame == WAKE_FRAME:
            self.sig.wake_pending = False
            return None
        head = parse_remote_prefix(frame) if frame[:1] == REMOTE_MARK else None
        if head is None:
            self._drop_frame(None, _undecodable(frame, exc))
            self._skip_undecodable(frame)
            return None
        node, _, offset = head
        body = memoryview(frame)[offset:]
        try:
            t = _loads(body)
        except Exception as err:
            self._drop_frame(None, _undecodable(frame, err))
            self._skip_undecodable(bytes(body))
            return None
        if not is_frame(t):
            self._drop_frame(_sender(t), _shape(t))
            self._skip_malformed(t)
            return None
        if t[0] not in self.remote_senders:
            self.remote_senders[t[0]] = node
        return t

    def _drain_inbox(self) -> None:
        """Take in every frame already queued, without waiting."""
        sock = self.inbox
        with self._socket_lock:
            if self._intercepted:
                self._take_intercepted()
            while has_frames(sock):
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
            while len(mb) <= limit and has_frames(sock):
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
            self.peer_died(pid, cast("DOWN | EXIT", payload).reason)
        elif action is Action.PEER_DEAD:
            p = self.peers.get(pid.uid)
            if p is not None:
                p.dead = payload
                p.call_ref = None
                if payload != "noconnection":
                    self._close_peer(p)
                # else its node may come back: the next call asks again
                # (see LinksMixin.call_peer), frames go on to the gateway.

    def peer_died(self, pid: Pid, reason: object) -> None:
        """``pid`` is known dead (the DOWN or EXIT of its death): close the
        socket to it, whose connection ZeroMQ's I/O thread would otherwise
        try again every ``RECONNECT_IVL_MS`` until an idle scan closed it,
        and make sends to it no-ops.  Not for ``'noconnection'``: its node
        may come back, and frames to it go on to the gateway."""
        p = self.peers.get(pid.uid)
        if p is None or p.send is None or reason == "noconnection":
            return
        if p.dead is None:
            p.dead = reason
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


def has_frames(sock: zmq.Socket | KernelSocket) -> bool:
    """True if a frame waits on ``sock`` (read without blocking)."""
    return bool(cast(int, sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN)


def _undecodable(frame: bytes, exc: Exception) -> str:
    why = f"undecodable ({len(frame)} bytes): {exc!r}"
    if "__main__" in str(exc):
        why += " (define message classes in an importable module, or use start_method='fork')"
    return why


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
