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

The tables and what each signal does to them are
:class:`otp._signal_tables.SignalTables`; here are the socket, the sends and
the thread.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable

import zmq

from ._codec import WAKE_FRAME, DecodeError
from ._dist_wire import encode_forward
from ._oslib import fd_readable as _readable
from ._pid import Pid, Ref
from ._signal_records import (
    Dead,
    InfoReply,
    InfoRequest,
    Link,
    Monitor,
    ProcessState,
    Signal,
    decode_signal,
    encode_signal,
)
from ._signal_tables import FATAL_GRACE, GATEWAY, INTERRUPT_SIGNAL, SignalTables
from ._transport import KernelContext, KernelSocket

log = logging.getLogger("otp")

__all__ = ["SignalPort", "FATAL_GRACE", "SIGNAL_SEND_TIMEOUT", "INTERRUPT_SIGNAL"]

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

_MAX_REFS_PER_DATAGRAM = 512

_DEAD_CLOSE = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTCONN, errno.EPIPE)


class SignalPort(SignalTables):
    """The signal socket, its sends and the thread that serves it, over the
    tables of :class:`~otp._signal_tables.SignalTables`."""

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
        SignalTables.__init__(self, pid, address_of=address_of, node_up=node_up, gateway_pid_path=gateway_pid_path)
        # Processes of other nodes: their signals go to the gateway's socket
        # (None: the node has no gateway).
        self._gateway_address = gateway_address
        # Signals handed to the gateway so far: each frame for another node
        # carries the count (see otp._dist_wire), so the gateway never lets
        # a frame overtake a signal this process sent before it.
        self.remote_signals = 0
        self.address = address
        self.root = root
        # The main thread blocks in a plain recv on its mailbox (the cheapest
        # wait ZeroMQ has); the thread wakes it with a one-byte frame on an
        # inproc connection to the same mailbox.
        self._ctx = ctx
        self._wake_endpoint = wake_endpoint
        self._wake_sock: KernelSocket | None = None
        self._ctl_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._stop = False
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

    # ---------------------------------------------------------- to the main

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
                            if uid == GATEWAY:
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
