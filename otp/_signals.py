"""The signal port: links, monitors, exit signals and death detection.

Every process owns a Unix datagram socket (its *signal port*) and a thread
that serves it.  Signals (link, unlink, monitor, demonitor, exit, and the
``dead`` notice a process sends when it exits) travel here, out of band from
the ZeroMQ mailbox, for two reasons:

* A ``sendto`` on a Unix datagram socket returns only once the datagram is in
  the receiver's queue.  A process sends its ``dead`` notices before it ends,
  so when a watcher's pidfd of that process becomes readable, every notice it
  sent is already queued: a watcher that finds none knows the process died
  without a word (SIGKILL, a crash in C) and reports ``'killed'``.  No timer,
  no guess.
* The thread reacts while the main thread is busy in user code: an exit
  signal that must kill the process interrupts it (``SIGUSR2``, then
  :class:`ProcessExit` raised in the main thread), and if the main thread
  does not unwind within :data:`FATAL_GRACE` (stuck in C code), the thread
  sends the ``dead`` notices itself and ends the process.

Order.  A signal never overtakes a message its sender sent before it.  Each signal carries the sender's count of mailbox frames sent
to the receiver so far.  Signals that become mailbox entries (``EXIT``,
``DOWN``) or end a call are held by the main thread until that many frames
from the sender have arrived, so an exit signal never overtakes a message the
same process sent before it.

Processes of other nodes.  A signal to a process of another node goes to the
node's gateway (:mod:`otp._gateway`) as one datagram on its signal socket,
by the same ``send``; the gateway passes it on and answers for the peer:
``'noproc'`` if it does not exist, ``'killed'`` if it dies without a word
(the remote gateway watches it with a pidfd), ``'noconnection'`` for every
link and monitor across a connection that is lost, each as the ``Dead``
notice the peer would have sent.  So nothing here watches a remote process
itself (:meth:`SignalPort.watch` says yes to it); without a gateway (a node
that does not listen) a link or monitor to a remote process is answered
``'noconnection'`` at once, here.

Locking.  ``lock`` guards the tables below.  Nobody sends while holding it:
a datagram send may block until the receiver's thread drains its queue, and
that thread needs its own lock.  The thread itself never sends, except when
it ends the process and when it answers an :class:`InfoRequest` (lock
released, without waiting: a requester that does not read loses its answer).
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import NoReturn

import zmq

from ._codec import WAKE_FRAME, DecodeError
from ._dist_wire import encode_forward
from ._errors import ProcessExit
from ._oslib import fd_readable as _readable
from ._oslib import open_verified_pidfd
from ._pid import Pid, Ref
from ._reasons import DOWN, EXIT
from ._signal_records import (
    Action,
    Complete,
    Dead,
    Demonitor,
    Exit,
    InboxItem,
    InfoReply,
    InfoRequest,
    Link,
    Monitor,
    Named,
    ProcessState,
    Signal,
    Unlink,
    decode_signal,
    encode_signal,
)
from ._transport import KernelContext, KernelSocket

log = logging.getLogger("otp")

__all__ = ["SignalPort", "FATAL_GRACE", "SIGNAL_SEND_TIMEOUT"]

#: Seconds the main thread has to unwind after a fatal exit signal before the
#: signal thread ends the process itself.  Long enough for ``finally`` blocks
#: that do real work, short enough that a process stuck in C code does not
#: delay its supervisor's restart noticeably.
FATAL_GRACE = 1.0

#: Seconds a signal send may wait for the receiver's queue
#: (``net.unix.max_dgram_qlen`` is often 10 datagrams).  The receiving thread
#: drains continuously, so this is only reached if the receiver is frozen
#: (SIGSTOP); the signal is then dropped and logged.
SIGNAL_SEND_TIMEOUT = 5.0

#: The same for the 'dead' notices of an exiting process.  Longer: when a
#: thousand processes exit at once, a receiver's signal thread needs CPU time
#: to drain them all, and a notice given up would turn a 'normal' exit into
#: a 'killed' one at the receiver.
NOTICE_SEND_TIMEOUT = 60.0

#: The signal that interrupts the main thread for a fatal exit signal.
INTERRUPT_SIGNAL = signal.SIGUSR2

_MAX_REFS_PER_DATAGRAM = 512

_DEAD_CLOSE = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTCONN, errno.EPIPE)

#: The key of the gateway's watch in ``SignalPort.watches`` (never a uid).
_GATEWAY = 0


class _Watch:
    """A pidfd on a peer."""

    __slots__ = ("pid", "fd")

    def __init__(self, pid: Pid, fd: int) -> None:
        self.pid = pid
        self.fd = fd


class SignalPort:
    """Signal tables and the thread that serves the signal socket."""

    def __init__(
        self,
        pid: Pid,
        address: str,
        *,
        root: bool,
        wake_endpoint: str,
        ctx: KernelContext,
        on_forced_exit: Callable[[object], None],
        address_of: Callable[[int], str] | None = None,
        state: Callable[[], ProcessState] | None = None,
        info_address_of: Callable[[int], str] | None = None,
        gateway_address: str | None = None,
        node_up: Callable[[str], bool] | None = None,
        gateway_pid_path: str | None = None,
    ) -> None:
        self.pid = pid
        # Processes of other nodes: their signals go to the gateway's socket
        # (None: the node has no gateway); node_up(name) says whether the
        # gateway is connected to that node (for sweeps).
        self._gateway_address = gateway_address
        self._node_up = node_up
        self._gateway_pid_path = gateway_pid_path  # "ospid start" of the gateway
        # Signals handed to the gateway so far: each frame for another node
        # carries the count (see otp._dist_wire), so the gateway never lets
        # a frame overtake a signal this process sent before it.
        self.remote_signals = 0
        # While this process waits for a spawn on another node (see
        # Process.spawn): that node, and the 'dead' notices that came from a
        # process of it we do not know yet (the new one, dying before the
        # spawn returned).
        self.spawning: str | None = None
        self.spawn_stash: list[Dead] = []
        self.address = address
        self.root = root
        self.lock = threading.Lock()
        # Tables (under lock).
        self.links: dict[int, Pid] = {}
        self.monitors: dict[Ref, Pid] = {}  # monitors this process holds
        self.call_watches: dict[Ref, Pid] = {}  # internal monitors used by calls
        self.monitored_by: dict[Ref, Pid] = {}  # monitors others hold on us
        self._address_of = address_of  # uid -> signal address (for sweeps)
        self._monitored_sweep_at = 256
        # How many links, monitors, call watches and ordering holds refer to
        # each peer; its pidfd is open while the count is positive.
        self.refs: dict[int, int] = {}
        self.watches: dict[int, _Watch] = {}
        self._fd_uid: dict[int, int] = {}
        self._maybe_dead: list[Pid] = []
        # Peers whose 'dead' notice arrived (kept while they are referred to).
        self._notified: set[int] = set()
        self.trap_exit = False
        self.named = False
        self.exiting = False
        self.fatal: object = None
        # True once the main thread raised ProcessExit for ``fatal``: the
        # interrupt exists to get it out of code that never waits, so an
        # interrupt that lands after (the wake frame can win the race with
        # SIGUSR2) must not raise a second time in whatever the process, or
        # the root that caught it, runs next.  Waits still raise it again.
        self.fatal_raised = False
        self._fatal_deadline: float | None = None
        # Items for the main thread.
        self.inbox: collections.deque[InboxItem] = collections.deque()
        # The main thread blocks in a plain recv on its mailbox (the cheapest
        # wait ZeroMQ has); the thread wakes it with a one-byte frame on an
        # inproc connection to the same mailbox.
        self._ctx = ctx
        self._wake_endpoint = wake_endpoint
        self._wake_sock: KernelSocket | None = None
        self.wake_pending = False
        self._ctl_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._stop = False
        self.main_thread_id = threading.get_ident()
        self.interrupt_installed = False
        # Ends the process with the fatal reason when its main thread did
        # not unwind in time (see _run).
        self.on_forced_exit = on_forced_exit
        # InfoRequests to answer once the lock is released (an answer is a
        # send), with what ``state()`` says, at ``info_address_of(uid)``.
        self._state = state
        self._info_address_of = info_address_of
        self._info_requests: list[InfoRequest] = []
        # Sockets: one bound (receive), one unbound (send).
        self.rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.rx.bind(address)
        self.rx.setblocking(False)
        self.tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.tx.setblocking(False)
        self._epoll = select.epoll()
        self._epoll.register(self.rx.fileno(), select.EPOLLIN)
        self._epoll.register(self._ctl_fd, select.EPOLLIN)
        self._thread = threading.Thread(target=self._run, name=f"otp-signals-{pid.uid:x}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # ------------------------------------------------------------------ send

    def send(self, target: Pid, signal: Signal, address: str, timeout: float = SIGNAL_SEND_TIMEOUT) -> bool:
        """Send a signal; False if the target's port is gone (it is dead or exiting).

        The fast path is one non-blocking ``sendto``.  If the receiver's queue
        is full, the wait happens on a socket *connected* to it: only then
        does the kernel wake the sender when the receiver drains (an
        unconnected socket polls writable at once, and a thousand exiting
        processes spinning on it starve the very receiver they wait for).

        Raises what pickle raises for a field that cannot be pickled."""
        data = encode_signal(signal)
        if target.node != self.pid.node:
            return self._send_remote(target, signal, data, timeout)
        try:
            self.tx.sendto(data, address)
            return True
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) or exc.errno in _DEAD_CLOSE:
                return False
            raise
        return self._send_waiting(target, signal, data, address, timeout)

    def _send_remote(self, target: Pid, signal: Signal, data: bytes, timeout: float) -> bool:
        """Hand a signal for a process of another node to the gateway.
        Without a gateway (or with a gateway gone) the link or monitor it
        asks for is answered ``'noconnection'`` at once, as a lost
        connection's would be."""
        address = self._gateway_address
        if address is not None:
            packet = encode_forward(target, data)
            sent = False
            try:
                self.tx.sendto(packet, address)
                sent = True
            except (BlockingIOError, InterruptedError):
                sent = self._send_waiting(target, signal, packet, address, timeout)
            except OSError as exc:
                if not (isinstance(exc, FileNotFoundError) or exc.errno in _DEAD_CLOSE):
                    raise
            if sent:
                self.remote_signals += 1
                return True
        if isinstance(signal, (Link, Monitor)):
            refs = [signal.ref] if isinstance(signal, Monitor) else []
            with self.lock:
                self._handle(Dead(target, 0, "noconnection", isinstance(signal, Link), refs, True))
        return True

    def _watch_gateway(self) -> None:
        """Watch the gateway (a pidfd) once this process has a link or
        monitor across it: if the gateway dies, nobody is left to tell this
        process that those connections are gone, so it tells itself
        (:meth:`_gateway_gone`).  Lock held."""
        if _GATEWAY in self.watches or self._gateway_pid_path is None:
            return
        try:
            with open(self._gateway_pid_path) as f:
                ospid, start = (int(x) for x in f.read().split())
        except (OSError, ValueError):
            return
        fd = open_verified_pidfd(ospid, start)
        if fd is None:
            return
        w = _Watch(Pid(self.pid.node, _GATEWAY, ospid, start), fd)
        self.watches[_GATEWAY] = w
        self._fd_uid[fd] = _GATEWAY
        self._epoll.register(fd, select.EPOLLIN)
        # If it is gone already, the epoll reports it at once.

    def _gateway_gone(self, w: _Watch) -> None:
        """The gateway died: every link and monitor to a process of another
        node is gone with its connection (``'noconnection'``), as the
        gateway would have said on a node down.  Lock held."""
        self._close_watch(_GATEWAY, w)
        local = self.pid.node
        for uid, pid in [(u, p) for u, p in self.links.items() if p.node != local]:
            del self.links[uid]
            self.release(uid)
            self._link_exit(pid, "noconnection", 0, Complete.NO)
        for ref, pid in [(r, p) for r, p in self.monitors.items() if p.node != local]:
            del self.monitors[ref]
            self.release(pid.uid)
            self.post(pid, 0, Complete.NO, Action.DEATH, DOWN(ref, pid, "noconnection"))
        for ref, pid in [(r, p) for r, p in self.call_watches.items() if p.node != local]:
            del self.call_watches[ref]
            self.release(pid.uid)
            self.post(pid, 0, Complete.NO, Action.PEER_DEAD, "noconnection")

    def _send_waiting(self, target: Pid, signal: Signal, data: bytes, address: str, timeout: float) -> bool:
        """The slow path of a send to a full queue (see :meth:`send`)."""
        waiter = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            waiter.settimeout(timeout)
            waiter.connect(address)
            waiter.send(data)
            return True
        except (TimeoutError, BlockingIOError):
            log.error(
                "signal %s to %r dropped: its port did not drain within %ss", type(signal).__name__, target, timeout
            )
            return False
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) or exc.errno in _DEAD_CLOSE:
                return False
            raise
        finally:
            waiter.close()

    # ------------------------------------------------------- watches (locked)
    #
    # Every table entry about a peer holds one count in ``refs`` (``hold``
    # when it is added, ``release`` when it is removed).  The pidfd is opened
    # separately (``watch``), after the request that made the entry was sent:
    # a process that is already gone when we look is settled only after the
    # notices queued on our port have been read (``drain_and_settle``), so a
    # real exit reason is never replaced by a guessed one.

    def hold(self, pid: Pid) -> None:
        self.refs[pid.uid] = self.refs.get(pid.uid, 0) + 1

    def release(self, uid: int) -> None:
        n = self.refs.get(uid, 0) - 1
        if n > 0:
            self.refs[uid] = n
            return
        self.refs.pop(uid, None)
        self._notified.discard(uid)
        w = self.watches.get(uid)
        if w is not None:
            self._close_watch(uid, w)

    def exited(self, uid: int) -> bool:
        """Whether the watched process ``uid`` has exited (its pidfd turned
        readable), though this thread may not have settled its death yet."""
        with self.lock:
            w = self.watches.get(uid)
            return w is not None and _readable(w.fd)

    def watch(self, pid: Pid) -> bool:
        """Make sure a pidfd watches ``pid``; False if it has exited.  A
        process of another node is watched by the gateways (see the module
        docstring): True."""
        if pid.uid in self.watches:
            return True
        if pid.node != self.pid.node:
            if _GATEWAY not in self.watches:
                self._watch_gateway()
            return True
        fd = open_verified_pidfd(pid.ospid, pid.start)
        if fd is None:
            return False
        if _readable(fd):  # exited, not yet reaped
            os.close(fd)
            return False
        self.watches[pid.uid] = _Watch(pid, fd)
        self._fd_uid[fd] = pid.uid
        self._epoll.register(fd, select.EPOLLIN)
        return True

    def drain_and_settle(self, pid: Pid) -> None:
        """``pid`` is gone: read its notices, then settle what they left."""
        self._drain()
        self.settle_dead(pid)

    def _close_watch(self, uid: int, w: _Watch) -> None:
        del self.watches[uid]
        self._fd_uid.pop(w.fd, None)
        try:
            self._epoll.unregister(w.fd)
        except (OSError, ValueError):
            pass
        os.close(w.fd)

    # ---------------------------------------------------------- to the main

    def post(self, pid: Pid, seq: int, complete: Complete, action: Action, payload: object) -> None:
        self.inbox.append(InboxItem(pid, seq, complete, action, payload))
        self.wake()

    def wake(self) -> None:
        """Make the main thread's mailbox wait return (signal thread only;
        the main thread looks at ``inbox`` before it waits)."""
        if self._wake_sock is None or self.wake_pending:
            return
        if threading.get_ident() == self._thread.ident:
            self.wake_pending = True
            try:
                self._wake_sock.send(WAKE_FRAME, zmq.NOBLOCK)
            except zmq.ZMQError:  # the mailbox is closing
                pass

    def _set_fatal(self, reason: object) -> None:
        if self.fatal is not None or self.exiting:
            return
        self.fatal = reason
        self.fatal_raised = False
        self._fatal_deadline = time.monotonic() + FATAL_GRACE
        self.wake()
        if self.interrupt_installed:
            try:
                signal.pthread_kill(self.main_thread_id, INTERRUPT_SIGNAL)
            except (ProcessLookupError, OSError):  # pragma: no cover
                pass

    def raise_fatal(self) -> NoReturn:
        """Raise ProcessExit for ``fatal`` in the main thread."""
        self.fatal_raised = True
        raise ProcessExit(self.fatal)

    def _link_exit(self, pid: Pid, reason: object, seq: int, complete: Complete) -> None:
        """The death of a linked process: an ``EXIT`` message if this one
        traps exits, else death unless the reason is ``'normal'``.  Lock held."""
        if self.trap_exit:
            self.post(pid, seq, complete, Action.DEATH, EXIT(pid, reason))
        elif reason != "normal":
            self._set_fatal(reason)

    # ----------------------------------------------------------- the thread

    def _run(self) -> None:
        wake_sock = self._wake_sock = self._ctx.kernel_socket(zmq.PUSH)
        wake_sock.setsockopt(zmq.LINGER, 0)
        wake_sock.connect(self._wake_endpoint)
        try:
            while not self._stop:
                timeout = -1.0
                if self._fatal_deadline is not None and not self.root:
                    timeout = max(0.0, self._fatal_deadline - time.monotonic())
                events = self._epoll.poll(timeout)
                with self.lock:
                    if self._stop:
                        return
                    dead = []
                    for fd, _ in events:
                        if fd == self.rx.fileno():
                            self._drain()
                        elif fd == self._ctl_fd:
                            try:
                                os.eventfd_read(self._ctl_fd)
                            except BlockingIOError:
                                pass
                        else:
                            uid = self._fd_uid.get(fd)
                            if uid is not None:
                                dead.append(uid)
                    if dead:
                        # Notices a dead process sent are queued before its
                        # pidfd turned readable: read them first.
                        self._drain()
                        for uid in dead:
                            w = self.watches.get(uid)
                            if w is None or not _readable(w.fd):
                                continue
                            if uid == _GATEWAY:
                                self._gateway_gone(w)
                            else:
                                self._peer_gone(uid, w)
                    if (
                        self._fatal_deadline is not None
                        and not self.root
                        and not self.exiting
                        and time.monotonic() >= self._fatal_deadline
                    ):
                        self.exiting = True
                        forced = True
                    else:
                        forced = False
                if self._info_requests:
                    self._answer_info_requests()
                if forced:
                    self._close_wake()
                    log.warning("process %r did not unwind within %.1fs; ending it", self.pid, FATAL_GRACE)
                    self.on_forced_exit(self.fatal)
                    return
        except Exception:  # pragma: no cover - a bug here must be loud
            log.exception("signal thread of %r failed", self.pid)
            if not self.root:
                os._exit(70)
        finally:
            self._close_wake()

    def _answer_info_requests(self) -> None:
        """Answer the InfoRequests read so far (lock not held).  A requester
        whose info socket is gone or full gave up: no answer is sent, and
        none waits (non-blocking send)."""
        requests, self._info_requests = self._info_requests, []
        if self._state is None or self._info_address_of is None:
            return
        state = self._state()
        for request in requests:
            data = encode_signal(InfoReply(self.pid, 0, request.ref, state))
            try:
                self.tx.sendto(data, self._info_address_of(request.sender.uid))
            except OSError:
                pass

    def _close_wake(self) -> None:
        if self._wake_sock is not None:
            self._wake_sock.close(linger=0)
            self._wake_sock = None

    def stop(self) -> None:
        self._stop = True
        os.eventfd_write(self._ctl_fd, 1)
        if threading.get_ident() != self._thread.ident and self._thread.is_alive():
            self._thread.join(5.0)

    def drain_unlocked(self) -> list[Signal]:
        """Read every queued signal without handling it (used at exit)."""
        out: list[Signal] = []
        while True:
            try:
                data = self.rx.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError:
                return out
            try:
                out.append(decode_signal(data))
            except DecodeError as exc:
                log.warning("dropped malformed signal: %s", exc)

    def drain(self) -> None:
        """Handle every signal queued on the port now (the caller holds
        ``lock``): for code that must see a notice before it acts."""
        self._drain()

    def _drain(self) -> None:
        for sig in self.drain_unlocked():
            try:
                self._handle(sig)
            except Exception:
                log.exception("dropped signal %s", type(sig).__name__)
        while self._maybe_dead:
            self.settle_dead(self._maybe_dead.pop())

    def handle(self, sig: Signal) -> None:
        """Handle ``sig`` as if it came in on the port (lock held): for
        notices held aside (``spawn_stash``) or made up for a process of
        another node that cannot be reached."""
        self._handle(sig)

    def _handle(self, sig: Signal) -> None:
        sender = sig.sender
        uid = sender.uid
        if isinstance(sig, Exit):
            reason = sig.reason
            if self.trap_exit:
                self.post(sender, sig.seq, Complete.LIVE, Action.MESSAGE, EXIT(sender, reason))
            elif reason != "normal":
                self._set_fatal(reason)
        elif isinstance(sig, Dead):
            if self.spawning is not None and sender.node == self.spawning and uid not in self.refs:
                self.spawn_stash.append(sig)  # perhaps the new process: see Process.spawn
                return
            complete = Complete.YES if sig.flushed else Complete.NO
            if uid in self.refs:
                self._notified.add(uid)
            if sig.linked and uid in self.links:
                del self.links[uid]
                self.release(uid)
                self._link_exit(sender, sig.reason, sig.seq, complete)
            for ref in sig.refs:
                if self.monitors.pop(ref, None) is not None:
                    self.release(uid)
                    self.post(sender, sig.seq, complete, Action.DEATH, DOWN(ref, sender, sig.reason))
                elif self.call_watches.pop(ref, None) is not None:
                    self.release(uid)
                    self.post(sender, sig.seq, complete, Action.PEER_DEAD, sig.reason)
        elif isinstance(sig, Link):
            if uid not in self.links:
                self.links[uid] = sender
                self.hold(sender)
                if not self.watch(sender):
                    self._maybe_dead.append(sender)
        elif isinstance(sig, Unlink):
            if self.links.pop(uid, None) is not None:
                self.release(uid)
        elif isinstance(sig, Monitor):
            self.monitored_by[sig.ref] = sender
            if len(self.monitored_by) >= self._monitored_sweep_at:
                self._sweep_monitored_by()
        elif isinstance(sig, Demonitor):
            self.monitored_by.pop(sig.ref, None)
        elif isinstance(sig, Named):
            self.named = True  # a registry holds a name for us (see otp.registry)
        elif isinstance(sig, InfoRequest):
            self._info_requests.append(sig)
            if threading.get_ident() != self._thread.ident:
                os.eventfd_write(self._ctl_fd, 1)  # the thread answers: wake it

    def _sweep_monitored_by(self) -> None:
        """Forget monitors held by processes that are gone (every caller of a
        server monitors it; a long-lived server outlives most of them)."""
        if self._address_of is not None:
            local, node_up = self.pid.node, self._node_up
            for ref, pid in list(self.monitored_by.items()):
                if pid.node == local:
                    if not os.path.exists(self._address_of(pid.uid)):
                        del self.monitored_by[ref]
                elif node_up is None or not node_up(pid.node):
                    del self.monitored_by[ref]
        self._monitored_sweep_at = max(256, 2 * len(self.monitored_by))

    def _peer_gone(self, uid: int, w: _Watch) -> None:
        """A watched process ended: settle what its notices did not."""
        self._close_watch(uid, w)
        self.settle_dead(w.pid)

    def settle_dead(self, pid: Pid) -> None:
        """``pid`` has exited: deliver an exit reason for every link and
        monitor still on it.  Lock held.

        If its 'dead' notice arrived, what is left are requests it never
        saw: ``'noproc'``; the messages it sent before the notice are on
        their way, so signals held behind them stay held.  Without a notice
        it died without a word (SIGKILL, a crash in C): ``'killed'``, and
        nothing more will come from it, so held signals are released.
        """
        uid = pid.uid
        w = self.watches.get(uid)
        if w is not None:
            self._close_watch(uid, w)
        if uid not in self.refs:
            return
        notified = uid in self._notified
        reason = "noproc" if notified else "killed"
        # Complete.YES with sequence 0: delivered at once, without flushing
        # what is held behind the notice; Complete.NO flushes it.
        complete = Complete.YES if notified else Complete.NO
        if self.links.pop(uid, None) is not None:
            self.release(uid)
            self._link_exit(pid, reason, 0, complete)
        for ref in [r for r, p in self.monitors.items() if p.uid == uid]:
            del self.monitors[ref]
            self.release(uid)
            self.post(pid, 0, complete, Action.DEATH, DOWN(ref, pid, reason))
        for ref in [r for r, p in self.call_watches.items() if p.uid == uid]:
            del self.call_watches[ref]
            self.release(uid)
            self.post(pid, 0, complete, Action.PEER_DEAD, reason)
        if not notified:
            self.post(pid, 0, Complete.NO, Action.RELEASE, None)

    # -------------------------------------------------------------- closing

    def close(self) -> None:
        for w in list(self.watches.values()):
            try:
                os.close(w.fd)
            except OSError:
                pass
        self.watches.clear()
        self._epoll.close()
        self.rx.close()
        self.tx.close()
        try:
            os.close(self._ctl_fd)
        except OSError:
            pass


def chunked_refs(refs: list[Ref]) -> list[list[Ref]]:
    if len(refs) <= _MAX_REFS_PER_DATAGRAM:
        return [refs]
    return [refs[i : i + _MAX_REFS_PER_DATAGRAM] for i in range(0, len(refs), _MAX_REFS_PER_DATAGRAM)]
