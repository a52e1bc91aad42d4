"""The runtime of one OTP process: the process object and its sends.

One :class:`Process` exists per OS process (and one for the thread that
entered a :class:`~otp.Node`).  The main thread owns the mailbox and the
ZeroMQ sockets; the :class:`~otp._signals.SignalPort` thread owns signals and
death detection and hands their effects over through ``sig.inbox``.  The
other parts of a process are mixed in: receiving (frame intake, waits,
the signal thread's hand-over: :mod:`otp._receive`), its peer sockets
(:mod:`otp._peers`), links, monitors and calls (:mod:`otp._links`), spawn
and exit (:mod:`otp._lifecycle`).  What stays here: the process's state,
its sends, the log of malformed frames, and what it says of itself
(``state``).

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
from types import FrameType

import zmq

from . import _naming, _oslib
from ._codec import WAKE_FRAME, dumps, encode_frame
from ._dist_wire import NAMED_UID, ROUTE, pack_name
from ._errors import NotAProcess
from ._lifecycle import LifecycleMixin
from ._links import LinksMixin
from ._pid import Pid, Ref
from ._process_base import KernelCode
from ._reasons import Response
from ._receive import SWEEP_MIN, ReceiveMixin, has_frames
from ._signal_records import ProcessState
from ._signals import INTERRUPT_SIGNAL, SignalPort
from ._transport import BACKLOG, KernelContext, NodeInfo, context_socket_limit

log = logging.getLogger("otp")

__all__ = ["Process", "current", "current_or_none"]

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


class Process(ReceiveMixin, LinksMixin, LifecycleMixin):
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
        self._init_links()
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
        self._recv_sweep_at = SWEEP_MIN
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
                    while has_frames(sock):
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


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    p = _current
    if p is None or p.kernel_code.depth:
        return
    sig = p.sig
    if sig.fatal is not None and not sig.exiting and not sig.fatal_raised:
        sig.raise_fatal()
