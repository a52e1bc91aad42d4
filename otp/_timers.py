"""Timers: Erlang's ``erlang:send_after/3``, ``erlang:start_timer/3``,
``erlang:cancel_timer/1``, ``erlang:read_timer/1`` and ``timer:send_interval/3``.

::

    tref = otp.send_after(0.5, otp.self(), "tick")      # "tick" in 0.5 s
    tref = otp.start_timer(0.5, otp.self(), "tick")     # TimeoutMsg(tref, "tick")
    otp.read_timer(tref)                                # seconds left, or False
    otp.cancel_timer(tref)                              # seconds left, or False
    tref = otp.send_interval(1.0, "logger", "flush")    # every second, until cancelled

One timer server per node (:class:`TimerServer`, a :class:`otp.Service`
started by the node's kernel supervisor under the reserved name
:data:`TIMER_SERVER`) holds every timer in a heap of deadlines on the
monotonic clock, and waits on its mailbox with a timeout equal to the next
deadline: timers never poll.  Arming is a cast (no round trip; the
deadline is taken in the caller, so the time a request spends queued
counts); cancelling and reading are calls, so that once
:func:`cancel_timer` has returned the message is never delivered.

Semantics, as Erlang's:

* a delay is checked as every timeout of the kernel
  (:func:`otp._timeouts.check_timeout`): ``nan`` or a negative number raise
  ValueError, a bool or a non-number TypeError, in the caller; ``0`` sends
  at once (from the caller, so the timer has fired when the call returns:
  ``cancel_timer`` of it is False).  A timer needs a finite delay: ``None``
  and ``math.inf`` raise ValueError (``erlang:send_after(infinity, ...)`` is
  a badarg);
* ``dest`` is a pid or a registered name; a name is resolved when the
  timer fires, and nothing is sent if nobody holds it then;
* a timer to a pid is dropped when that process exits, or at once if it
  is not alive: the server monitors each destination pid while it has
  timers armed for it, so a dead destination's timers cost nothing until
  their deadlines.  (Past a quarter of the server's descriptor limit,
  destinations are not monitored: their timers are checked when they fire
  instead, and dropped then if their destination is dead.);
* timers are not linked to the process that armed them: its death does
  not cancel them (``erlang:send_after/3``);
* :func:`send_interval` sends every ``seconds`` until cancelled or until its
  destination exits (for a name: the process holding the name when the
  interval is armed, as ``timer:send_interval/3`` monitors it; a name
  nobody holds then arms nothing); its ticks are due at fixed multiples of
  the interval from the call, so a late tick is caught up rather than
  shifting the later ones.  Its interval must be > 0 (Erlang accepts 0 and
  sends flat out; here that would tie up the node's one timer server).

Differences forced by the design.  Erlang's timers live in the runtime and
are never lost; here they live in a process.  The server validates
nothing the caller has not validated already, so nothing a caller passes
can crash it; if it dies all the same, its supervisor restarts it empty:
the timers it held are lost (never delivered), :func:`cancel_timer` and
:func:`read_timer` of them return False, and a timer armed while it
restarts (between its death and its successor's registration) raises
``NoProc(TIMER_SERVER)`` or is lost with the rest.  Times are seconds as
floats, not integer milliseconds.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import resource
import time
from dataclasses import dataclass, field
from time import monotonic
from typing import Any, Literal, NamedTuple

from . import _api, _naming, _process
from ._errors import CalleeExit, NoProc
from ._gen_server import NoReply, ServerName
from ._pid import Pid, Ref, make_ref
from ._reasons import DOWN
from ._service import Service, ask, operation
from ._timeouts import check_timeout

log = logging.getLogger("otp")

__all__ = [
    "TIMER_SERVER",
    "TimerRef",
    "TimeoutMsg",
    "TimerServer",
    "send_after",
    "start_timer",
    "send_interval",
    "cancel_timer",
    "read_timer",
]

#: The reserved name the node's timer server is registered under.
TIMER_SERVER = "$otp_timer_server"

#: Seconds before a deadline at which the server stops waiting on its mailbox
#: and sleeps until the deadline instead: a mailbox wait counts whole
#: milliseconds (ZeroMQ's clock), which alone would make every timer up to
#: two milliseconds late.  The server sleeps only when its mailbox was idle,
#: so a call is never kept waiting for a sleep.
_LAST_STRETCH = 0.002

#: Destinations the server monitors at most, as a share of its descriptor
#: limit (each monitor holds a pidfd; the rest is for its sockets).
_WATCH_SHARE = 4


class TimerRef(NamedTuple):
    """What arming a timer returns (Erlang's TimerRef): the argument of
    :func:`cancel_timer` and :func:`read_timer`, and the ``ref`` of the
    :class:`TimeoutMsg` a :func:`start_timer` timer delivers."""

    ref: Ref
    #: The timer server holding the timer; None for a timer that fired when
    #: it was armed (a zero delay).
    server: Pid | None

    def __repr__(self) -> str:
        return f"TimerRef({self.ref!r})"


class TimeoutMsg(NamedTuple):
    """The message of a :func:`start_timer` timer: Erlang's
    ``{timeout, TimerRef, Msg}``."""

    ref: TimerRef
    msg: Any


# ------------------------------------------------------------------ client


def send_after(seconds: float, dest: Pid | ServerName, msg: object) -> TimerRef:
    """Send ``msg`` to ``dest`` (a pid or a registered name) in ``seconds``
    (``erlang:send_after/3``); see the module documentation.  Raises, in
    the caller: ValueError or TypeError for a bad delay or destination,
    ``EncodeError`` for a message that cannot be pickled,
    ``NoProc(TIMER_SERVER)`` if the node has no timer server."""
    return _arm(seconds, dest, msg, wrap=False, repeat=False)


def start_timer(seconds: float, dest: Pid | ServerName, msg: object) -> TimerRef:
    """Like :func:`send_after`, delivering ``TimeoutMsg(tref, msg)`` where
    ``tref`` is the returned reference (``erlang:start_timer/3``)."""
    return _arm(seconds, dest, msg, wrap=True, repeat=False)


def send_interval(seconds: float, dest: Pid | ServerName, msg: object) -> TimerRef:
    """Send ``msg`` to ``dest`` every ``seconds`` until :func:`cancel_timer`
    or the exit of the destination (``timer:send_interval/3``);
    ``seconds`` must be > 0.  Raises as :func:`send_after`."""
    return _arm(seconds, dest, msg, wrap=False, repeat=True)


def cancel_timer(tref: TimerRef) -> float | Literal[False]:
    """Cancel the timer: the seconds it had left, or False if it had fired,
    was cancelled, or was lost (its destination or its server died).
    Synchronous (``erlang:cancel_timer/1``): once it returns, the message
    is never delivered.  Waits for the timer server's answer however long
    it takes, never past its death.  TypeError if ``tref`` is not a
    :class:`TimerRef`."""
    return _ask_about(tref, "cancel")


def read_timer(tref: TimerRef) -> float | Literal[False]:
    """The seconds left before the timer fires, or False if it fired, was
    cancelled or was lost (``erlang:read_timer/1``).  TypeError if ``tref``
    is not a :class:`TimerRef`."""
    return _ask_about(tref, "read")


class Arm(NamedTuple):
    """A timer to arm, as the server reads it.  On the wire it is a plain
    tuple ``(ARM, ref_id, deadline, pid_fields, name, msg, interval, wrap)``:
    pickle writes a class by name, which for a record class, a Ref or a Pid
    costs more than the rest of the message, so none travels."""

    ref_id: int  # the id of the timer's Ref
    deadline: float  # on the monotonic clock
    #: The destination pid's (node, uid, ospid, start), or None for a name.
    pid_fields: tuple[str, int, int, int, int] | None
    name: ServerName | None  # the destination name, or None for a pid
    msg: Any
    interval: float | None  # None: a one-shot timer
    wrap: bool  # deliver TimeoutMsg(tref, msg) (start_timer)


#: The tag of an arm request, the first item of its tuple.
ARM = "$timer_arm"

_cached_server: tuple[_process.Process, Pid] | None = None


def _server(proc: _process.Process) -> Pid:
    """The timer server's pid, looked up once per server: a process keeps
    it while the server lives (an internal monitor, the one a call sets up,
    tells it of the server's death; then it looks the name up again)."""
    global _cached_server
    cached = _cached_server
    if cached is not None and cached[0] is proc:
        peer = proc.peers.get(cached[1].uid)
        if peer is not None and peer.dead is None:
            return cached[1]
    server = _naming.resolve(TIMER_SERVER)
    with proc.kernel_code:
        peer = proc.call_peer(server, pin=True)
    if peer.dead is not None:
        raise NoProc(TIMER_SERVER)
    _cached_server = (proc, server)
    return server


def _arm(seconds: object, dest: object, msg: object, *, wrap: bool, repeat: bool) -> TimerRef:
    now = monotonic()
    delay = check_timeout(seconds, "a timer's delay")
    if delay is None:
        raise ValueError(f"a timer's delay must be finite, not {seconds!r}")
    dest = _checked_dest(dest)
    if repeat and delay == 0:
        raise ValueError("an interval must be > 0 seconds")
    proc = _process.current()
    ref = make_ref()
    if delay == 0:
        tref = TimerRef(ref, None)
        try:
            _process.send(dest, TimeoutMsg(tref, msg) if wrap else msg)
        except NoProc:
            pass  # a name nobody holds when the timer fires: nothing is sent
        return tref
    server = _server(proc)
    if type(dest) is Pid:
        pid_fields, name = (dest.node, dest.uid, dest.ospid, dest.start, dest.creation), None
    else:
        pid_fields, name = None, dest
    interval = delay if repeat else None
    proc.send(server, ("$gen_cast", (ARM, ref.id, now + delay, pid_fields, name, msg, interval, wrap)))
    return TimerRef(ref, server)


def _checked_dest(dest: object) -> Pid | ServerName:
    if isinstance(dest, (Pid, str, bytes, tuple)) or (isinstance(dest, int) and not isinstance(dest, bool)):
        return dest
    raise TypeError(f"a timer's destination is a pid or a registered name, not {dest!r}")


def _ask_about(tref: object, op: str) -> float | Literal[False]:
    if type(tref) is not TimerRef:
        raise TypeError(f"not a TimerRef: {tref!r}")
    if tref.server is None:
        return False
    try:
        left: float | Literal[False] = ask(tref.server, op, tref.ref, timeout=None)
    except (NoProc, CalleeExit):
        return False  # its server is gone, and the timers it held with it
    return left


# ------------------------------------------------------------------ server


@dataclass(slots=True)
class _Timer:
    deadline: float
    dest: Pid | ServerName
    msg: Any
    interval: float | None
    #: The pid whose exit drops the timer; None for a name's one-shot timer.
    watched: Pid | None


@dataclass(slots=True)
class _Watch:
    """The monitor on one destination pid and the timers it guards."""

    mref: Ref | None  # None: over the monitor cap, checked when a timer fires
    timers: set[Ref] = field(default_factory=set)


class TimerServer(Service):
    """The node's timer server (see the module documentation).  Started by
    the node's kernel supervisor as ``TimerServer.child_spec(name=TIMER_SERVER)``."""

    errors = (TypeError, ValueError)

    def init(self, args: Any) -> None:
        self.timers: dict[Ref, _Timer] = {}
        #: (deadline, arming order, ref); cancelled entries are dropped when
        #: they reach the top, or all at once when they are the majority.
        self.heap: list[tuple[float, int, Ref]] = []
        self.order = itertools.count()
        self.watches: dict[Pid, _Watch] = {}
        self.watched_by: dict[Ref, Pid] = {}  # monitor ref -> destination
        self.watch_cap = max(16, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // _WATCH_SHARE)
        self.pid = _api.self_()

    # ------------------------------------------------------------ operations

    def handle_other_cast(self, request: Any) -> None:
        """An arm request (see :class:`Arm`); anything else is logged."""
        if type(request) is not tuple or len(request) != 8 or request[0] != ARM:
            log.warning("%s received an unexpected cast: %r", type(self).__name__, request)
            return
        arm = Arm._make(request[1:])
        interval = arm.interval
        if (
            type(arm.ref_id) is not int
            or type(arm.deadline) is not float
            or not (interval is None or (type(interval) is float and interval > 0))
            or (arm.pid_fields is None) == (arm.name is None)
        ):
            log.warning("%s received a malformed timer: %r", type(self).__name__, request)
            return
        ref = Ref(arm.ref_id)
        dest: Pid | ServerName
        if arm.pid_fields is not None:
            dest = Pid(*arm.pid_fields)
        elif arm.name is not None:
            dest = arm.name
        msg = arm.msg
        if arm.wrap:
            msg = TimeoutMsg(TimerRef(ref, self.pid), msg)
        watched: Pid | None = dest if type(dest) is Pid else None
        if watched is None and interval is not None:
            watched = _resolve_or_none(dest)
            if watched is None:
                return  # an interval to a name nobody holds: as its monitor's immediate DOWN
        self.timers[ref] = _Timer(arm.deadline, dest, msg, interval, watched)
        heapq.heappush(self.heap, (arm.deadline, next(self.order), ref))
        if watched is not None:
            self._watch(watched, ref)

    @operation
    def cancel(self, ref: Ref) -> float | Literal[False]:
        timer = self.timers.pop(ref, None)
        if timer is None:
            return False
        self._unwatch(timer, ref)
        if len(self.heap) > 64 and len(self.heap) > 2 * len(self.timers):
            self.heap = [entry for entry in self.heap if entry[2] in self.timers]
            heapq.heapify(self.heap)
        return max(0.0, timer.deadline - monotonic())

    @operation
    def read(self, ref: Ref) -> float | Literal[False]:
        timer = self.timers.get(ref)
        return False if timer is None else max(0.0, timer.deadline - monotonic())

    @operation
    def armed(self) -> int:
        """How many timers are armed (for tests and benchmarks)."""
        return len(self.timers)

    # ------------------------------------------------------------ firing

    def next_action(self) -> float | None:
        """Fire what is due; wait on the mailbox until :data:`_LAST_STRETCH`
        before the next deadline (the rest is slept in :meth:`handle_info`)."""
        heap = self.heap
        if not heap:
            return None
        now = monotonic()
        if heap[0][0] <= now:
            self._fire(now)
            if not heap:
                return None
        return max(0.0, heap[0][0] - now - _LAST_STRETCH)

    def _fire(self, now: float) -> None:
        heap, timers = self.heap, self.timers
        while heap and heap[0][0] <= now:
            deadline, _, ref = heapq.heappop(heap)
            timer = timers.get(ref)
            if timer is None:
                continue  # cancelled
            if not self._deliver(timer):
                del timers[ref]
                self._unwatch(timer, ref)
            elif timer.interval is None:
                del timers[ref]
                if timer.watched is not None:
                    self._unwatch(timer, ref)
            else:
                timer.deadline = deadline + timer.interval
                heapq.heappush(heap, (timer.deadline, next(self.order), ref))

    def _deliver(self, timer: _Timer) -> bool:
        """Send the timer's message; False if its destination is dead."""
        dest = timer.dest
        if type(dest) is Pid:
            watch = self.watches.get(dest)
            if watch is not None and watch.mref is None and not _api.is_alive(dest):
                return False
            _process.send(dest, timer.msg)
            return True
        try:
            _process.send(dest, timer.msg)
        except NoProc:
            pass  # nobody holds the name now: nothing is sent
        return True

    # ------------------------------------------------------ destinations

    def _watch(self, pid: Pid, ref: Ref) -> None:
        watch = self.watches.get(pid)
        if watch is None:
            mref = None
            if len(self.watched_by) < self.watch_cap:
                try:
                    mref = _api.monitor(pid)
                except OSError:  # no descriptor left for its pidfd: checked when it fires
                    mref = None
            watch = self.watches[pid] = _Watch(mref)
            if mref is not None:
                self.watched_by[mref] = pid
        watch.timers.add(ref)

    def _unwatch(self, timer: _Timer, ref: Ref) -> None:
        pid = timer.watched
        if pid is None:
            return
        watch = self.watches.get(pid)
        if watch is None:
            return
        watch.timers.discard(ref)
        if not watch.timers:
            del self.watches[pid]
            if watch.mref is not None:
                del self.watched_by[watch.mref]
                _api.demonitor(watch.mref, flush=True)

    def handle_info(self, msg: Any, state: Any) -> NoReply:
        if isinstance(msg, DOWN):
            pid = self.watched_by.pop(msg.ref, None)
            watch = self.watches.pop(pid, None) if pid is not None else None
            if watch is not None:
                for ref in watch.timers:
                    self.timers.pop(ref, None)
        elif msg == "timeout":
            wait = self.heap[0][0] - monotonic() if self.heap else 0.0
            if 0.0 < wait <= _LAST_STRETCH:
                time.sleep(wait)  # the mailbox's wait counts whole milliseconds; a sleep does not
        else:
            log.warning("%s received an unexpected message: %r", type(self).__name__, msg)
        return NoReply(state, self.next_action())


def _resolve_or_none(dest: object) -> Pid | None:
    try:
        return _naming.resolve(dest)
    except (NoProc, TypeError):
        return None
