"""Session hosts: a few long-lived processes that run every coordination
session as state, not as a process each.

The hosts are the partitions of an :class:`otp.PartitionSupervisor`
registered as :data:`._session.HOSTS` (one per core, at least two); a
caller places its sessions on the host of its partition (see
:mod:`._session`).  A host
is an :class:`otp.Service` that never waits: everything it does is a
reaction to one message in ``handle_info``.

* ``run_session(start)`` (a call: the blocking functions) or a
  :class:`StartSession` message (the ``*_async`` functions): the host calls
  the body, a generator function (see :mod:`._session`), and runs it to
  its first yield.  Each yielded :class:`AskAgents` becomes one
  asynchronous request per agent (:mod:`._host_asks`: a cast, answered by
  a message, with one monitor per agent asked, not per request).
* An agent's answer, or its ``DOWN``: the answer settles that agent only
  (a ``DOWN`` every request open to it); once every agent of the step is
  settled the body resumes with the outcomes, and runs to its next yield
  or its end.  At its end the outcome answers the caller's call
  (``run_session``, or ``await_session`` from ``Session.result``), or,
  with no call waiting, goes to the caller as a :class:`SessionOutcome`
  message, which ``Session.result`` takes from its mailbox.
* Deadlines: each step's deadline goes on a heap the host checks after
  every message; an idle host wakes for the earliest one with the
  gen_server timeout.  At the deadline the requests still open are
  withdrawn (an answer that comes later matches none and is dropped) and
  the body resumes with ``'timeout'`` for them.  (A timer from
  ``otp.start_timer`` per step would cost a message to the timer server
  and one back, and cancelling it a call; a timer server restart would
  lose it and leave the session waiting forever.  The heap costs one clock
  read per message.)
* The caller's ``DOWN``: the host monitors each caller (one monitor per
  caller process, kept while it has sessions here, and for the last
  :data:`IDLE_CALLERS` idle callers, so that a caller running one session
  after another costs no monitor each); a dead caller's sessions are
  dropped, their requests abandoned.
* :class:`CancelSession`: the caller gave up (``Session.cancel``, or its
  wait timed out): the session is dropped the same way.

Faults.  A body that raises a typed error (a :class:`CoordinationError`,
``ValueError``, an ``otp.OTPError``) answers its caller with it; any other
exception is a bug in that session: it is logged and the caller gets
:class:`SessionCrashed` with the ``otp.Crash``; the host and its other
sessions go on.  A host that dies (SIGKILL) loses the sessions it held:
their callers, waiting in a call to it, get :class:`SessionHostDown` at
once, and the partition supervisor starts a new, empty host in its place.

So sessions never block one another: a slow agent delays only the session
that asked it, and only up to that step's deadline.  What a host cannot
contain is a body that computes for long between two yields (the other
sessions of that host wait meanwhile): bodies tally, they do not work.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Generator
from typing import Any

import otp

from ._agent_calls import Outcome
from ._errors import CoordinationError, SessionCrashed, UnsendableResult
from ._host_asks import AgentReply, Asker, Step
from ._kept_monitors import KeptMonitors
from ._session import HOSTS, AskAgents, CancelSession, Context, SessionInfo, SessionOutcome, StartSession

__all__ = ["SessionHost", "child_specs", "TYPED_ERRORS", "IDLE_CALLERS"]

log = logging.getLogger("mabeam.coordination")

#: What a body raises as its answer; anything else is a crash of that session.
TYPED_ERRORS = (CoordinationError, ValueError, otp.OTPError)
#: Idle callers (no session here) whose monitor the host keeps.
IDLE_CALLERS = 256


class _Hosted:
    """One session on this host: its body, the step it waits on, and the
    caller's call waiting for its outcome."""

    __slots__ = ("ctx", "body", "step", "steps", "waiter")

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.body: Generator[Any, list[Outcome], Any] | None = None
        self.step: Step | None = None  # the step waiting on agents, if any
        self.steps = 0  # numbers the steps, so that a stale deadline is recognised
        self.waiter: tuple | None = None  # the from_ of the call waiting for the outcome


class SessionHost(otp.Service):
    """Runs the sessions placed on it (see the module doc)."""

    errors = (CoordinationError,)

    def init(self, args: Any = None) -> None:
        self.sessions: dict[otp.Ref, _Hosted] = {}
        self.asker = Asker()
        self.callers = KeptMonitors(IDLE_CALLERS)  # each caller's sessions here
        self.deadlines: list[tuple[float, int, otp.Ref, int]] = []  # (when, seq, session, step)
        self.seq = itertools.count()

    # ------------------------------------------------------------ operations

    @otp.operation
    def run_session(self, start: StartSession) -> otp.Ok | otp.Failed:
        """Start the session; its outcome answers the call when it ends."""
        self._start(start, self.caller)
        return otp.DEFER

    @otp.operation
    def await_session(self, ref: otp.Ref) -> otp.Ok | otp.Failed | None:
        """The outcome of the session ``ref`` when it ends; None if it is
        not here (ended: its outcome was sent as a message before this
        answer; or cancelled)."""
        hosted = self.sessions.get(ref)
        if hosted is None:
            return None
        hosted.waiter = self.caller
        return otp.DEFER

    @otp.operation
    def list_sessions(self) -> list[SessionInfo]:
        """The sessions running on this host."""
        me = otp.self()
        return [
            SessionInfo(h.ctx.id, h.ctx.kind, me, h.ctx.caller, h.ctx.elapsed(), h.step.left if h.step else 0)
            for h in self.sessions.values()
        ]

    # ------------------------------------------------------------ messages

    def next_action(self) -> float | None:
        """Settle the steps whose deadline has passed; the seconds until the
        next deadline (the gen_server timeout), or None."""
        self._expire_due()
        if not self.deadlines:
            return None
        return max(0.0, self.deadlines[0][0] - time.monotonic()) + 0.001

    def handle_info(self, msg: Any, state: Any) -> Any:
        kind = type(msg)
        if kind is AgentReply or kind is otp.DOWN:
            done = self.asker.take(msg)
            if done is None:
                self._caller_down(msg.ref)
            else:
                for step in done:
                    self._resume(step)
        elif kind is StartSession:
            self._start(msg, None)
        elif kind is CancelSession:
            self._drop(msg.ref)
        return otp.NoReply(state, self.next_action())  # anything else ('timeout' included): deadlines only

    # ------------------------------------------------------------ a session's life

    def _start(self, msg: StartSession, waiter: tuple | None) -> None:
        """Start the session, run it to its first wait (or its end)."""
        if msg.ref in self.sessions:
            return
        hosted = _Hosted(Context(msg.ref, msg.kind, msg.caller))
        hosted.waiter = waiter
        self.sessions[msg.ref] = hosted
        self.callers.add(msg.caller, msg.ref)
        try:
            run = msg.body(hosted.ctx, *msg.args)
        except Exception as exc:  # noqa: BLE001 - a bug in this session alone
            self._finish(hosted, self._failure(hosted, exc))
            return
        if not isinstance(run, Generator):
            self._finish(hosted, otp.Ok(run))
            return
        hosted.body = run
        self._advance(hosted, None)

    def _advance(self, hosted: _Hosted, value: list[Outcome] | None) -> None:
        """Resume the body with ``value`` and run it to its next wait on
        agents (asked now) or its end."""
        body = hosted.body
        assert body is not None
        while True:
            try:
                step = body.send(value)  # type: ignore[arg-type]  # the first send is None
            except StopIteration as stop:
                self._finish(hosted, otp.Ok(stop.value))
                return
            except Exception as exc:  # noqa: BLE001 - a bug in this session alone
                self._finish(hosted, self._failure(hosted, exc))
                return
            try:
                if type(step) is not AskAgents:
                    raise TypeError(f"a session body yields AskAgents steps, not {step!r}")
                asked = self.asker.ask(hosted, step.requests, step.timeout)
            except Exception as exc:  # noqa: BLE001 - a request that cannot be sent fails its session
                self._close(hosted)
                self._finish(hosted, self._failure(hosted, exc))
                return
            if not asked.left:  # no agent to wait for (none running, say)
                value = asked.outcomes
                continue
            hosted.step = asked
            hosted.steps += 1
            heapq.heappush(self.deadlines, (asked.deadline, next(self.seq), hosted.ctx.id, hosted.steps))
            return

    def _resume(self, step: Step) -> None:
        """Every agent of ``step`` is settled: its session goes on."""
        hosted: _Hosted = step.owner
        if hosted.step is step:
            hosted.step = None
            self._advance(hosted, step.outcomes)

    def _expire_due(self) -> None:
        heap = self.deadlines
        if not heap or heap[0][0] > time.monotonic():
            return
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            _, _, ref, number = heapq.heappop(heap)
            if not self._is_open(ref, number):
                continue  # that step was settled before its deadline
            hosted = self.sessions[ref]
            step, hosted.step = hosted.step, None
            assert step is not None
            self.asker.withdraw(step)
            self._advance(hosted, step.outcomes)
        if len(heap) > 64 and len(heap) > 4 * len(self.sessions):  # mostly settled steps: compact
            self.deadlines = [e for e in heap if self._is_open(e[2], e[3])]
            heapq.heapify(self.deadlines)

    def _is_open(self, ref: otp.Ref, number: int) -> bool:
        hosted = self.sessions.get(ref)
        return hosted is not None and hosted.steps == number and hosted.step is not None

    def _close(self, hosted: _Hosted) -> None:
        """Stop the body where it waits (its ``finally`` blocks run)."""
        if hosted.step is not None:
            self.asker.withdraw(hosted.step)
            hosted.step = None
        if hosted.body is not None:
            try:
                hosted.body.close()
            except Exception:  # noqa: BLE001 - a body that will not stop is still dropped
                log.exception("coordination session %r (%s): its body failed to close", hosted.ctx.id, hosted.ctx.kind)

    def _finish(self, hosted: _Hosted, reply: otp.Ok | otp.Failed) -> None:
        """The session ended: its outcome answers the waiting call, or goes
        to the caller as a message."""
        ctx = hosted.ctx
        del self.sessions[ctx.id]
        self.callers.discard(ctx.caller, ctx.id)
        try:
            self._send_outcome(hosted, reply)
        except otp.EncodeError as exc:
            self._send_outcome(hosted, otp.Failed(UnsendableResult(f"the result cannot be sent: {exc}")))

    @staticmethod
    def _send_outcome(hosted: _Hosted, reply: otp.Ok | otp.Failed) -> None:
        if hosted.waiter is not None:
            SessionHost.answer(hosted.waiter, reply)
        else:
            otp.send(hosted.ctx.caller, SessionOutcome(hosted.ctx.id, reply))

    def _failure(self, hosted: _Hosted, exc: Exception) -> otp.Failed:
        if isinstance(exc, TYPED_ERRORS):
            return otp.Failed(exc)
        crash = otp.Crash.from_exception(exc)
        log.error("coordination session %r (%s) crashed:\n%s", hosted.ctx.id, hosted.ctx.kind, crash.format())
        return otp.Failed(SessionCrashed(crash, hosted.ctx.id))

    def _drop(self, ref: otp.Ref) -> None:
        """The caller gave up on the session: forget it, answer nothing."""
        hosted = self.sessions.pop(ref, None)
        if hosted is not None:
            self._close(hosted)
            self.callers.discard(hosted.ctx.caller, ref)

    # ------------------------------------------------------------ callers

    def _caller_down(self, monitor: otp.Ref) -> None:
        """A caller died (if ``monitor`` is a caller's): its sessions are dropped."""
        down = self.callers.down(monitor)
        if down is None:
            return
        for ref in down[1]:
            hosted = self.sessions.pop(ref, None)
            if hosted is not None:
                self._close(hosted)


def child_specs() -> list[otp.ChildSpec]:
    """The coordination subtree's long-lived processes: the partition
    supervisor of the session hosts (``mabeam.coordination.hosts``).  A
    host that dies is restarted in place, empty; ten deaths within ten
    seconds are more than kills and bugs in bodies explain, and escalate."""
    return [
        otp.PartitionSupervisor.child_spec(
            SessionHost.child_spec(None, id="host"), name=HOSTS, intensity=10, period=10.0
        )
    ]
