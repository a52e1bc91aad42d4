"""The quota manager: per-agent resource quotas enforced on real OS
processes, as an :class:`otp.Service` registered as ``mabeam.quotas``.

A quota is by agent id (running or not): when the agent supervisor starts
or restarts the agent, the new process is watched with a fresh escalation
state.  Every ``period`` seconds (1.0 by default) the manager measures each
watched process with :func:`mabeam.quotas.measure` (RSS, CPU percent
between samples), feeds the agent's :class:`~mabeam.quotas.Escalator` (at
the sample's own time, so that its CPU window covers what was measured), and
carries out its decision.

Timing is otp timers (:func:`otp.start_timer` to the manager itself,
handled in ``handle_info``): one for the next measurement, re-armed after
each, and one per throttled agent for the next edge of its duty cycle.
Each timer's :class:`otp.TimerRef` is kept where it belongs; a
``TimeoutMsg`` whose ref is not the one kept (a timer that fired while it
was being cancelled or replaced) is stale and dropped.

How each action is carried out:

* ``warn``: a log record and the telemetry event ``('mabeam','quota','warn')``.
* ``throttle``: a SIGSTOP/SIGCONT duty cycle: in every ``throttle_slice``
  (0.1 s) the process runs for ``factor`` of the slice and is stopped for the
  rest (factor is the share of speed to keep, 0.5..0.9).  Lowering the CPU
  priority as well is optional (``configure_enforcement(throttle_nice=10)``),
  off by default because an unprivileged process cannot raise it back.
* ``suspend``: SIGSTOP; the manager waits (briefly, bounded) until the kernel
  reports the process stopped ('T'), so the record says whether it worked.
  The process stays stopped until it is terminated, its quota is set again
  or removed, or its memory falls under soft for the calm period (its CPU
  is judged at what it was when suspended).
* ``resume``: SIGCONT; the throttle duty cycle ends.
* ``terminate``: SIGCONT (a stopped process cannot act on an exit signal),
  then, in a task under ``mabeam.tasks`` so the manager never blocks, the
  agent is stopped through the agent registry (``stop_agent``: its
  ``teardown`` runs, or it is killed once its ``shutdown`` seconds are out,
  as a hook that computes forever is; either way its record says
  ``stopped`` and it is not restarted); a process that is not a running
  agent is killed.  The record and notification follow once the process is
  gone.

Every action is recorded as an :class:`Enforcement` in a bounded per-agent
history, emitted as telemetry, and sent to subscribers as ``('$quota',
agent_id, action)``.  Reads of an agent's quota state do not go through the
manager: its :class:`QuotaStatus` is published in the ``mabeam.tables``
registry.  When the manager stops it resumes every process it stopped (if
it is killed, they stay stopped).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import otp
from otp._oslib import proc_state

from .._agent import agent_name
from .._agent_registry import stop_agent
from .._agent_watch import AgentStarted, AgentWatch
from .._common import TABLES, ServerOptions, Subscribers
from .._errors import AgentNotRunning, UnknownAgent
from .._names import TASKS
from ..telemetry import emit_event
from ._measure import MeasureError, Usage, measure
from ._policy import (
    Action,
    EnforcementRecord,
    EscalationPolicy,
    Escalator,
    QuotaSpec,
    Resume,
    Suspend,
    Terminate,
    Throttle,
    Warn,
)

log = logging.getLogger("mabeam.quotas")

__all__ = ["QUOTAS", "QuotaManager", "QuotaOptions", "Enforcement", "QuotaStatus", "child_spec", "set_server_options"]

#: The quota manager's registered name.
QUOTAS = "mabeam.quotas"

#: How long the manager waits for the kernel to show a signalled process stopped.
STOP_WAIT = 0.5


@dataclass(frozen=True)
class QuotaOptions:
    """The quota manager's settings (``configure_enforcement`` changes them
    at run time)."""

    period: float = 1.0  # seconds between measurements
    throttle_slice: float = 0.1  # seconds of one throttle duty cycle
    throttle_nice: int | None = None  # nice value applied when throttling (None: off)
    policy: EscalationPolicy = EscalationPolicy()  # for quotas set without one
    history_limit: int = 200  # enforcements kept per agent
    history_agents: int = 1_000  # agents whose enforcements are kept


@dataclass(frozen=True)
class Enforcement:
    """One action carried out on an agent's process."""

    agent_id: Hashable
    at: float  # time.time()
    action: str  # warn, throttle, suspend, resume, terminate
    resource: str
    violation: str
    usage: float
    limit: float
    stage_before: str
    stage_after: str
    success: bool
    details: str


@dataclass(frozen=True)
class QuotaStatus:
    """An agent's quota state, as published in the tables registry."""

    agent_id: Hashable
    tier: str
    running: bool
    stage: str  # normal, warned, throttled, suspended, terminated
    throttle: float | None
    degradation: str


@dataclass
class _Watch:
    agent_id: Hashable
    pid: otp.Pid
    ref: otp.Ref
    escalator: Escalator
    usage: Usage | None = None
    throttle: float | None = None
    stopped: bool = False  # SIGSTOPped by us right now
    duty_timer: otp.TimerRef | None = None  # the next edge of the throttle duty cycle
    suspended: bool = False
    terminating: bool = False
    degradation: str = "none"


class _Quota(NamedTuple):
    spec: QuotaSpec
    policy: EscalationPolicy


class _Termination(NamedTuple):
    """A terminate decision being carried out by a task."""

    agent_id: Hashable
    pid: otp.Pid
    record: EnforcementRecord


class _Terminated(NamedTuple):
    """What the termination task reports: how the agent went, and its exit reason."""

    how: str
    reason: Any


@dataclass(frozen=True)
class _DutyCycle:
    """The message of an agent's throttle duty cycle timer."""

    agent_id: Hashable


_MEASURE = "measure"  # the message of the measurement timer


def _wait_state(ospid: int, stopped: bool, timeout: float = STOP_WAIT) -> bool:
    """Wait until the kernel shows the process stopped (or not); bounded."""
    deadline = time.monotonic() + timeout
    while True:
        state = proc_state(ospid)
        if state is None or (state[0] in ("T", "t")) == stopped:
            return state is not None
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.0005)  # sleep-ok: the signal is delivered asynchronously


def _terminate_agent(agent_id: Hashable, pid: otp.Pid) -> _Terminated:
    """Runs in a task: stop the agent through the agent registry, which
    records it ``stopped`` and does not restart it however it exits (or
    kill a process that is not the agent running as ``pid``)."""
    ref = otp.monitor(pid)
    try:
        stop_agent(agent_id, pid=pid)
        how = "stopped through the agent registry"
    except (UnknownAgent, AgentNotRunning) as exc:
        otp.exit(pid, "kill")
        how = f"killed ({exc!r})"
    except otp.CallTimeout:
        otp.exit(pid, "kill")
        how = "killed: its stop did not finish in time"
    down = otp.receive(30, lambda m: isinstance(m, otp.DOWN) and m.ref == ref)
    return _Terminated(how, down.reason)


class QuotaManager(otp.Service):
    """The quota manager process (see the module documentation)."""

    def init(self, options: QuotaOptions) -> None:
        otp.trap_exit(True)  # so that terminate() resumes stopped processes
        self.options = options
        self.quotas: dict[Hashable, _Quota] = {}
        self.watched: dict[Hashable, _Watch] = {}
        self.by_ref: dict[otp.Ref, Hashable] = {}
        self.history: OrderedDict[Hashable, deque[Enforcement]] = OrderedDict()
        self.subscribers = Subscribers()
        self.measure_timer: otp.TimerRef | None = None
        self.terminations: dict[otp.Ref, _Termination] = {}
        self.published: dict[Hashable, QuotaStatus] = {}
        # agents (re)started, also after a restart of the agent supervisor
        self.agents = AgentWatch(report_running=False)

    # ------------------------------------------------------------ operations

    @otp.operation
    def set_quota(
        self, agent_id: Hashable, spec: QuotaSpec, policy: EscalationPolicy | None, pid: otp.Pid | None
    ) -> None:
        self.quotas[agent_id] = _Quota(spec, policy or self.options.policy)
        pid = pid or otp.whereis(agent_name(agent_id))
        if pid is not None:
            self._watch(agent_id, pid)
        self._publish(agent_id)

    @otp.operation
    def remove_quota(self, agent_id: Hashable) -> None:
        self._unwatch(agent_id)
        self.quotas.pop(agent_id, None)
        self._publish(agent_id)

    @otp.operation
    def configure_enforcement(self, changes: dict[str, Any]) -> None:
        self.options = replace(self.options, **changes)
        if self.watched:
            self._arm_measure(self.options.period)

    @otp.operation
    def list_enforcements(self, agent_id: Hashable) -> list[Enforcement]:
        return list(self.history.get(agent_id, ()))

    @otp.operation
    def list_all_enforcements(self) -> list[Enforcement]:
        return [e for history in self.history.values() for e in history]

    @otp.operation
    def subscribe_enforcements(self, pid: otp.Pid) -> None:
        self.subscribers.add(pid)

    @otp.operation
    def unsubscribe_enforcements(self, pid: otp.Pid) -> None:
        self.subscribers.remove(pid)

    @otp.operation
    def list_quotas(self) -> dict[Hashable, QuotaStatus]:
        for w in [w for w in self.watched.values() if not otp.is_alive(w.pid)]:
            self._unwatch(w.agent_id)  # dead, its DOWN still on the way
            self._publish(w.agent_id)
        return dict(self.published)

    # ------------------------------------------------------------ watching

    def _watch(self, agent_id: Hashable, pid: otp.Pid) -> None:
        self._unwatch(agent_id)
        if otp.node(pid) != otp.node():
            # Measured and signalled by its OS pid, which means something on
            # this host only: an agent of another node is left alone.
            log.warning("quota of agent %r not enforced: it runs on node %s", agent_id, otp.node(pid))
            return
        quota = self.quotas[agent_id]
        ref = otp.monitor(pid)
        self.watched[agent_id] = _Watch(agent_id, pid, ref, Escalator(agent_id, quota.spec, quota.policy))
        self.by_ref[ref] = agent_id
        if self.measure_timer is None:
            self._arm_measure(0)
        self._publish(agent_id)

    def _unwatch(self, agent_id: Hashable) -> None:
        w = self.watched.pop(agent_id, None)
        if w is None:
            return
        self.by_ref.pop(w.ref, None)
        otp.demonitor(w.ref, flush=True)
        self._cancel_duty(w)
        if w.stopped:
            self._signal(w, signal.SIGCONT)

    def _signal(self, w: _Watch, sig: int) -> bool:
        if not otp.is_alive(w.pid):  # never signal a reused OS pid
            return False
        try:
            os.kill(w.pid.ospid, sig)
        except ProcessLookupError:
            return False
        w.stopped = sig == signal.SIGSTOP
        return True

    def _publish(self, agent_id: Hashable) -> None:
        quota = self.quotas.get(agent_id)
        if quota is None:
            if self.published.pop(agent_id, None) is not None:
                otp.Registry.unregister(TABLES, ("quota", agent_id))
            return
        w = self.watched.get(agent_id)
        status = QuotaStatus(
            agent_id,
            quota.spec.name,
            w is not None,
            w.escalator.stage.name.lower() if w else "normal",
            w.throttle if w else None,
            w.degradation if w else "none",
        )
        old = self.published.get(agent_id)
        if old == status:
            return
        self.published[agent_id] = status
        if old is None:
            otp.Registry.register(TABLES, ("quota", agent_id), status)
        else:
            otp.Registry.update_value(TABLES, ("quota", agent_id), lambda _: status)

    # ------------------------------------------------------------ timers

    def _arm_measure(self, delay: float) -> None:
        """Measure in ``delay`` seconds (replacing the measurement armed, if any)."""
        if self.measure_timer is not None:
            otp.cancel_timer(self.measure_timer)
        self.measure_timer = otp.start_timer(delay, otp.self(), _MEASURE)

    def _arm_duty(self, w: _Watch, delay: float) -> None:
        """The next edge of ``w``'s duty cycle in ``delay`` seconds."""
        self._cancel_duty(w)
        w.duty_timer = otp.start_timer(delay, otp.self(), _DutyCycle(w.agent_id))

    def _cancel_duty(self, w: _Watch) -> None:
        if w.duty_timer is not None:
            otp.cancel_timer(w.duty_timer)
            w.duty_timer = None

    def _timeout(self, msg: otp.TimeoutMsg) -> None:
        if msg.msg == _MEASURE:
            if msg.ref != self.measure_timer:
                return  # replaced by configure_enforcement while it fired
            self.measure_timer = None
            self._measure_all()
            if self.watched:
                self._arm_measure(self.options.period)
        elif isinstance(msg.msg, _DutyCycle):
            w = self.watched.get(msg.msg.agent_id)
            if w is not None and w.duty_timer == msg.ref:
                w.duty_timer = None
                self._duty(w)

    def _measure_all(self) -> None:
        for w in list(self.watched.values()):
            if w.terminating:
                continue
            try:
                usage = measure(w.pid.ospid, w.usage)
            except MeasureError:
                continue  # gone (its DOWN is on the way) or not ours to read
            w.usage = usage  # the first sample's cpu_percent is 0.0 and covers no time
            decision = w.escalator.observe(usage.at, usage.rss, usage.cpu_percent)
            w.degradation = decision.degradation.name.lower()
            if decision.actions:
                records = w.escalator.history[-len(decision.actions) :]
                for action, record in zip(decision.actions, records):
                    self._enforce(w, action, record)
            self._publish(w.agent_id)

    def _duty(self, w: _Watch) -> None:
        if w.throttle is None or w.suspended or w.terminating:
            return
        slice_ = self.options.throttle_slice
        if w.stopped:
            self._signal(w, signal.SIGCONT)
            self._arm_duty(w, w.throttle * slice_)
        else:
            self._signal(w, signal.SIGSTOP)
            self._arm_duty(w, (1 - w.throttle) * slice_)

    # ------------------------------------------------------------ enforcing

    def _enforce(self, w: _Watch, action: Action, record: EnforcementRecord) -> None:
        ospid = w.pid.ospid
        if isinstance(action, Warn):
            log.warning(
                "agent %r over its %s quota: %.0f > %.0f", w.agent_id, action.resource.value, action.usage, action.limit
            )
            self._record(record, "warn", True, f"{action.resource.value} {action.usage:.0f} over {action.limit:.0f}")
        elif isinstance(action, Throttle):
            w.throttle = action.factor
            slice_, nice = self.options.throttle_slice, self.options.throttle_nice
            details = f"duty cycle: runs {action.factor:.0%} of every {slice_}s"
            if nice is not None:
                try:
                    os.setpriority(os.PRIO_PROCESS, ospid, nice)
                    details += f"; nice {nice}"
                except OSError as exc:
                    details += f"; setpriority failed: {exc}"
            if not w.suspended:
                self._arm_duty(w, action.factor * slice_)
            self._record(record, "throttle", otp.is_alive(w.pid), details)
        elif isinstance(action, Suspend):
            self._cancel_duty(w)
            ok = self._signal(w, signal.SIGSTOP) and _wait_state(ospid, True)
            w.suspended = True
            self._record(record, "suspend", ok, "SIGSTOP")
        elif isinstance(action, Resume):
            self._cancel_duty(w)
            ok = self._signal(w, signal.SIGCONT)
            w.throttle, w.suspended = None, False
            self._record(record, "resume", ok, f"SIGCONT; lifted {action.lifted.name.lower()}")
        elif isinstance(action, Terminate):
            self._cancel_duty(w)
            if w.stopped:
                self._signal(w, signal.SIGCONT)
            w.terminating = True
            task = otp.TaskSupervisor.async_nolink(TASKS, _terminate_agent, w.agent_id, w.pid)
            self.terminations[task.ref] = _Termination(w.agent_id, w.pid, record)

    def _record(self, record: EnforcementRecord, action: str, success: bool, details: str) -> None:
        agent_id = record.agent_id
        entry = Enforcement(
            agent_id,
            time.time(),
            action,
            record.resource.value,
            record.violation.name.lower(),
            record.usage,
            record.limit,
            record.stage_before.name.lower(),
            record.stage_after.name.lower(),
            success,
            details,
        )
        history = self.history.get(agent_id)
        if history is None:
            history = self.history[agent_id] = deque(maxlen=self.options.history_limit)
            while len(self.history) > self.options.history_agents:
                self.history.popitem(last=False)
        self.history.move_to_end(agent_id)
        history.append(entry)
        emit_event(
            ("mabeam", "quota", action),
            {"usage": entry.usage, "limit": entry.limit},
            {"agent_id": agent_id, "resource": entry.resource, "success": success},
        )
        self.subscribers.send(("$quota", agent_id, action))

    # ------------------------------------------------------------ messages

    def handle_info(self, msg: Any, state: Any) -> Any:
        events = self.agents.handle(msg)  # first: its DOWNs and answers are messages too
        if events is not None:
            for event in events:
                if isinstance(event, AgentStarted):
                    w = self.watched.get(event.agent_id)
                    if event.agent_id in self.quotas and (w is None or w.pid != event.pid):
                        self._watch(event.agent_id, event.pid)
        elif isinstance(msg, otp.TimeoutMsg):
            self._timeout(msg)
        elif isinstance(msg, otp.DOWN):
            self._down(msg)
        elif type(msg) is tuple and len(msg) == 3 and msg[0] == "$task" and msg[1] in self.terminations:
            otp.demonitor(msg[1], flush=True)
            termination = self.terminations.pop(msg[1])
            how, reason = msg[2]
            self._record(termination.record, "terminate", True, f"{how}; exit reason {reason!r}")
        return otp.NoReply(state)

    def _down(self, msg: otp.DOWN) -> None:
        termination = self.terminations.pop(msg.ref, None)
        if termination is not None:
            otp.exit(termination.pid, "kill")
            details = f"termination task failed: {msg.reason!r}; killed"
            self._record(termination.record, "terminate", False, details)
        elif msg.ref in self.by_ref:
            agent_id = self.by_ref[msg.ref]
            self._unwatch(agent_id)
            self._publish(agent_id)
        else:
            self.subscribers.down(msg)

    def terminate(self, reason: Any, state: Any) -> None:
        for w in self.watched.values():
            if w.stopped:
                self._signal(w, signal.SIGCONT)


_options = ServerOptions(QuotaManager, QUOTAS, QuotaOptions())
set_server_options = _options.set_server_options
child_spec = _options.child_spec
