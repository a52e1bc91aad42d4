"""The signal port's tables (links, monitors, call watches, the monitors
others hold, the pidfds on peers) and what each signal does to them: the
state the port's thread and the process's main thread share under
``lock``, apart from the port itself (:mod:`otp._signals`: its socket, its
sends and the thread that reads it and calls these handlers).

Every method here runs with ``lock`` held, except :meth:`SignalTables.exited`
and :meth:`SignalTables.raise_fatal`, and none of them sends a signal (see
:mod:`otp._signals`, "Locking").
"""

from __future__ import annotations

import collections
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

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
    InfoRequest,
    Link,
    Monitor,
    Named,
    Signal,
    Unlink,
)

__all__ = ["SignalTables", "Watch", "FATAL_GRACE", "INTERRUPT_SIGNAL", "GATEWAY"]

#: Seconds the main thread has to unwind after a fatal exit signal before the
#: signal thread ends the process itself.  Long enough for ``finally`` blocks
#: that do real work, short enough that a process stuck in C code does not
#: delay its supervisor's restart noticeably.
FATAL_GRACE = 1.0

#: The signal that interrupts the main thread for a fatal exit signal.
INTERRUPT_SIGNAL = signal.SIGUSR2

#: The key of the gateway's watch in ``SignalPort.watches`` (never a uid).
GATEWAY = 0


class Watch:
    """A pidfd on a peer."""

    __slots__ = ("pid", "fd")

    def __init__(self, pid: Pid, fd: int) -> None:
        self.pid = pid
        self.fd = fd


class SignalTables:
    """The tables of a :class:`otp._signals.SignalPort` and the handlers of
    the signals it reads."""

    # The port's, used here.
    _epoll: select.epoll
    _ctl_fd: int
    _thread: threading.Thread
    _info_requests: list[InfoRequest]

    if TYPE_CHECKING:

        def wake(self) -> None: ...

        def _drain(self) -> None: ...

    def __init__(
        self,
        pid: Pid,
        *,
        address_of: Callable[[int], str] | None,
        node_up: Callable[[str], bool] | None,
        gateway_pid_path: str | None,
    ) -> None:
        self.pid = pid
        # node_up(name) says whether the gateway is connected to that node
        # (for sweeps).
        self._node_up = node_up
        self._gateway_pid_path = gateway_pid_path  # "ospid start" of the gateway
        # While this process waits for a spawn on another node (see
        # Process.spawn): that node, and the 'dead' notices that came from a
        # process of it we do not know yet (the new one, dying before the
        # spawn returned).
        self.spawning: str | None = None
        self.spawn_stash: list[Dead] = []
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
        self.watches: dict[int, Watch] = {}
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
        self.wake_pending = False
        self.main_thread_id = threading.get_ident()
        self.interrupt_installed = False

    # ----------------------------------------------------- the gateway's watch

    def _watch_gateway(self) -> None:
        """Watch the gateway (a pidfd) once this process has a link or
        monitor across it: if the gateway dies, nobody is left to tell this
        process that those connections are gone, so it tells itself
        (:meth:`_gateway_gone`).  Lock held."""
        if GATEWAY in self.watches or self._gateway_pid_path is None:
            return
        try:
            with open(self._gateway_pid_path) as f:
                ospid, start = (int(x) for x in f.read().split())
        except (OSError, ValueError):
            return
        fd = open_verified_pidfd(ospid, start)
        if fd is None:
            return
        w = Watch(Pid(self.pid.node, GATEWAY, ospid, start), fd)
        self.watches[GATEWAY] = w
        self._fd_uid[fd] = GATEWAY
        self._epoll.register(fd, select.EPOLLIN)
        # If it is gone already, the epoll reports it at once.

    def _gateway_gone(self, w: Watch) -> None:
        """The gateway died: every link and monitor to a process of another
        node is gone with its connection (``'noconnection'``), as the
        gateway would have said on a node down.  Lock held."""
        self._close_watch(GATEWAY, w)
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
            if GATEWAY not in self.watches:
                self._watch_gateway()
            return True
        fd = open_verified_pidfd(pid.ospid, pid.start)
        if fd is None:
            return False
        if _readable(fd):  # exited, not yet reaped
            os.close(fd)
            return False
        self.watches[pid.uid] = Watch(pid, fd)
        self._fd_uid[fd] = pid.uid
        self._epoll.register(fd, select.EPOLLIN)
        return True

    def drain_and_settle(self, pid: Pid) -> None:
        """``pid`` is gone: read its notices, then settle what they left."""
        self._drain()
        self.settle_dead(pid)

    def _close_watch(self, uid: int, w: Watch) -> None:
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

    # --------------------------------------------------------------- signals

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

    def _peer_gone(self, uid: int, w: Watch) -> None:
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
