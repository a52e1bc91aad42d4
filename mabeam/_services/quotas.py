"""The quota manager: per-agent resource quotas enforced on real OS
processes (AC-35, AC-36).

``set_quota(agent_id, 'standard' | QuotaSpec, policy=None)`` gives an agent
a quota (running or not: the quota is by agent id; when the agent supervisor
starts or restarts the agent, the new process is watched with a fresh
escalation state).  Every ``period`` seconds (1.0 by default, AC-36's
sampling) the manager measures each watched process with
:func:`mabeam.quotas.measure` (RSS, CPU percent between samples), feeds the
agent's :class:`~mabeam.quotas.Escalator`, and carries out its decision.
The period is a deadline timer returned as the gen_server timeout action
(see ``_common``), never a sleeping loop.

How each action is carried out:

* ``warn``: a log record and the telemetry event ``('mabeam','quota','warn')``.
* ``throttle``: a SIGSTOP/SIGCONT duty cycle: in every ``throttle_slice``
  (0.1 s) the process runs for ``factor`` of the slice and is stopped for the
  rest (factor is AC-36's share of speed to keep, 0.5..0.9).  Lowering the
  CPU priority as well is optional (``configure_quotas(throttle_nice=10)``),
  off by default because an unprivileged process cannot raise it back.
* ``suspend``: SIGSTOP; the manager waits (briefly, bounded) until the kernel
  reports the process stopped ('T'), so the record says whether it worked.
* ``resume``: SIGCONT; the throttle duty cycle ends.
* ``terminate``: SIGCONT (a stopped process cannot act on an exit signal),
  then, in a task under ``mabeam.tasks`` so the manager never blocks, the
  agent is stopped through the agent supervisor (it is not restarted; its
  record says ``stopped``); if it is not that supervisor's child it is
  killed.  The record and notification follow once the process is gone.

Every action is recorded as an :class:`Enforcement` in a bounded per-agent
history (``enforcements(agent_id)``), emitted as telemetry, and sent to
subscribers (``quota_subscribe()``, monitored) as ``('$quota', agent_id,
action)``.  Reads of an agent's quota state do not go through the manager:
its :class:`QuotaStatus` is published in the ``mabeam.tables`` registry
(``quota_status`` reads the caller's replica).  When the manager stops it
resumes every process it stopped (if it is killed, they stay stopped).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import otp

from .._agent import agent_name
from .._agent_registry import AGENT_SUPERVISOR
from .._app import TASKS
from ..quotas import (
    EnforcementRecord,
    EscalationPolicy,
    Escalator,
    MeasureError,
    QuotaSpec,
    Resume,
    Suspend,
    Terminate,
    Throttle,
    Usage,
    Warn,
    measure,
    tier,
)
from ._common import QUOTAS, TABLES, Subscribers, Timers, ask, emit

log = logging.getLogger("mabeam.quotas")

__all__ = [
    "QuotaManager",
    "Enforcement",
    "QuotaStatus",
    "set_quota",
    "remove_quota",
    "configure_quotas",
    "quota_subscribe",
    "quota_unsubscribe",
    "enforcements",
    "quota_status",
    "quotas",
]

_KEEP = object()


@dataclass(frozen=True)
class Enforcement:
    """One action carried out (AC-36's enforcement event)."""

    agent_id: Any
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
    agent_id: Any
    tier: str
    running: bool
    stage: str  # normal, warned, throttled, suspended, terminated
    throttle: float | None
    degradation: str


@dataclass
class _Watch:
    agent_id: Any
    pid: otp.Pid
    ref: otp.Ref
    escalator: Escalator
    usage: Usage | None = None
    throttle: float | None = None
    stopped: bool = False  # SIGSTOPped by us right now
    suspended: bool = False
    terminating: bool = False
    degradation: str = "none"


def _proc_state(ospid: int) -> str | None:
    try:
        with open(f"/proc/{ospid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _wait_state(ospid: int, stopped: bool, timeout: float = 0.5) -> bool:
    """Wait until the kernel shows the process stopped (or not); bounded."""
    deadline = time.monotonic() + timeout
    while True:
        state = _proc_state(ospid)
        if state is None or (state in ("T", "t")) == stopped:
            return state is not None
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.0005)  # sleep-ok: the signal is delivered asynchronously


def _terminate_agent(agent_id: Any, pid: otp.Pid) -> tuple:
    """Runs in a task: stop the agent through its supervisor (or kill it)."""
    from .._agent_registry import _ask

    ref = otp.monitor(pid)
    try:
        otp.supervisor.terminate_child(AGENT_SUPERVISOR, pid)
        how = "stopped through the agent supervisor"
    except Exception as exc:  # not its child, or no supervisor
        otp.exit(pid, "kill")
        how = f"killed ({exc!r})"
    try:
        down = otp.receive(30, lambda m: isinstance(m, otp.DOWN) and m.ref == ref)
    except otp.Timeout:
        otp.exit(pid, "kill")
        down = otp.receive(10, lambda m: isinstance(m, otp.DOWN) and m.ref == ref)
        how += "; killed after 30 s"
    try:
        _ask("stopped", agent_id, pid, "shutdown")
    except Exception:  # noqa: BLE001 - no registry record: nothing to update
        pass
    return how, down.reason


class QuotaManager(otp.GenServer):
    def init(self, opts: Any) -> Any:
        opts = dict(opts or {})
        otp.trap_exit(True)  # so that terminate() resumes stopped processes
        self.period = opts.get("period", 1.0)
        self.slice = opts.get("throttle_slice", 0.1)
        self.nice = opts.get("throttle_nice")
        self.policy = opts.get("policy", EscalationPolicy())
        self.history_limit = opts.get("history_limit", 200)
        self.history_agents = opts.get("history_agents", 1_000)
        self.quotas: dict[Any, tuple[QuotaSpec, EscalationPolicy]] = {}
        self.watched: dict[Any, _Watch] = {}
        self.by_ref: dict[otp.Ref, Any] = {}
        self.history: OrderedDict = OrderedDict()
        self.subs = Subscribers()
        self.timers = Timers()
        self.terminations: dict[otp.Ref, tuple] = {}
        self.published: dict[Any, QuotaStatus] = {}
        try:
            otp.supervisor.subscribe(AGENT_SUPERVISOR)
        except Exception as exc:
            log.info("quota manager: no agent supervisor events (%r)", exc)
        return self

    # ------------------------------------------------------------ watching

    def _watch(self, agent_id: Any, pid: otp.Pid) -> None:
        self._unwatch(agent_id)
        spec, policy = self.quotas[agent_id]
        ref = otp.monitor(pid)
        self.watched[agent_id] = _Watch(agent_id, pid, ref, Escalator(agent_id, spec, policy))
        self.by_ref[ref] = agent_id
        if not self.timers.scheduled("measure"):
            self.timers.schedule("measure", time.monotonic())
        self._publish(agent_id)

    def _unwatch(self, agent_id: Any) -> None:
        w = self.watched.pop(agent_id, None)
        if w is None:
            return
        self.by_ref.pop(w.ref, None)
        otp.demonitor(w.ref, flush=True)
        self.timers.cancel(("duty", agent_id))
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

    def _publish(self, agent_id: Any) -> None:
        if agent_id not in self.quotas:
            if self.published.pop(agent_id, None) is not None:
                otp.Registry.unregister(TABLES, ("quota", agent_id))
            return
        w = self.watched.get(agent_id)
        status = QuotaStatus(
            agent_id,
            self.quotas[agent_id][0].name,
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

    def _next(self) -> float | None:
        now = time.monotonic()
        for key in self.timers.pop_due(now):
            if key == "measure":
                self._measure_all(now)
                if self.watched:
                    self.timers.schedule("measure", now + self.period)
            else:
                self._duty(key[1], now)
        return self.timers.timeout()

    def _measure_all(self, now: float) -> None:
        for w in list(self.watched.values()):
            if w.terminating:
                continue
            try:
                usage = measure(w.pid.ospid, w.usage)
            except MeasureError:
                continue  # gone (its DOWN is on the way) or not ours to read
            first = w.usage is None
            w.usage = usage
            decision = w.escalator.observe(now, usage.rss, 0.0 if first else usage.cpu_percent)
            w.degradation = decision.degradation.name.lower()
            if decision.actions:
                records = w.escalator.history[-len(decision.actions) :]
                for action, record in zip(decision.actions, records):
                    self._enforce(w, action, record, now)
            self._publish(w.agent_id)

    def _duty(self, agent_id: Any, now: float) -> None:
        w = self.watched.get(agent_id)
        if w is None or w.throttle is None or w.suspended or w.terminating:
            return
        if w.stopped:
            self._signal(w, signal.SIGCONT)
            self.timers.schedule(("duty", agent_id), now + w.throttle * self.slice)
        else:
            self._signal(w, signal.SIGSTOP)
            self.timers.schedule(("duty", agent_id), now + (1 - w.throttle) * self.slice)

    # ------------------------------------------------------------ enforcing

    def _enforce(self, w: _Watch, action: Any, record: EnforcementRecord, now: float) -> None:
        ospid = w.pid.ospid
        if isinstance(action, Warn):
            log.warning(
                "agent %r over its %s quota: %.0f > %.0f", w.agent_id, action.resource.value, action.usage, action.limit
            )
            self._record(record, "warn", True, f"{action.resource.value} {action.usage:.0f} over {action.limit:.0f}")
        elif isinstance(action, Throttle):
            w.throttle = action.factor
            details = f"duty cycle: runs {action.factor:.0%} of every {self.slice}s"
            if self.nice is not None:
                try:
                    os.setpriority(os.PRIO_PROCESS, ospid, self.nice)
                    details += f"; nice {self.nice}"
                except OSError as exc:
                    details += f"; setpriority failed: {exc}"
            if not w.suspended:
                self.timers.schedule(("duty", w.agent_id), now + action.factor * self.slice)
            self._record(record, "throttle", otp.is_alive(w.pid), details)
        elif isinstance(action, Suspend):
            self.timers.cancel(("duty", w.agent_id))
            ok = self._signal(w, signal.SIGSTOP) and _wait_state(ospid, True)
            w.suspended = True
            self._record(record, "suspend", ok, "SIGSTOP")
        elif isinstance(action, Resume):
            self.timers.cancel(("duty", w.agent_id))
            ok = self._signal(w, signal.SIGCONT)
            w.throttle, w.suspended = None, False
            self._record(record, "resume", ok, f"SIGCONT; lifted {action.lifted.name.lower()}")
        elif isinstance(action, Terminate):
            self.timers.cancel(("duty", w.agent_id))
            if w.stopped:
                self._signal(w, signal.SIGCONT)
            w.terminating = True
            task = otp.TaskSupervisor.async_nolink(TASKS, _terminate_agent, w.agent_id, w.pid)
            self.terminations[task.ref] = (w.agent_id, w.pid, record)

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
            history = self.history[agent_id] = deque(maxlen=self.history_limit)
            while len(self.history) > self.history_agents:
                self.history.popitem(last=False)
        self.history.move_to_end(agent_id)
        history.append(entry)
        emit(
            ("mabeam", "quota", action),
            {"usage": entry.usage, "limit": entry.limit},
            {"agent_id": agent_id, "resource": entry.resource, "success": success},
        )
        self.subs.send(("$quota", agent_id, action))

    # ------------------------------------------------------------ messages

    def handle_call(self, request: tuple, from_: tuple, state: Any) -> Any:
        try:
            value = self._call(request)
        except Exception as exc:
            return otp.Reply(("error", exc), self, self._next())
        return otp.Reply(("ok", value), self, self._next())

    def _call(self, request: tuple) -> Any:
        op = request[0]
        if op == "set":
            _, agent_id, spec, policy, pid = request
            self.quotas[agent_id] = (spec, policy or self.policy)
            pid = pid or otp.whereis(agent_name(agent_id))
            if pid is not None:
                self._watch(agent_id, pid)
            self._publish(agent_id)
            return None
        if op == "remove":
            self._unwatch(request[1])
            self.quotas.pop(request[1], None)
            self._publish(request[1])
            return None
        if op == "configure":
            for key, value in request[1].items():
                setattr(self, {"throttle_slice": "slice", "throttle_nice": "nice"}.get(key, key), value)
            if self.watched:
                self.timers.schedule("measure", time.monotonic() + self.period)
            return None
        if op == "enforcements":
            if request[1] == _ALL:
                return [e for h in self.history.values() for e in h]
            return list(self.history.get(request[1], ()))
        if op == "subscribe":
            self.subs.add(request[1])
            return None
        if op == "unsubscribe":
            self.subs.remove(request[1])
            return None
        if op == "quotas":
            for w in [w for w in self.watched.values() if not otp.is_alive(w.pid)]:
                self._unwatch(w.agent_id)  # dead, its DOWN still on the way
                self._publish(w.agent_id)
            return dict(self.published)
        raise ValueError(f"unknown quota request {op!r}")

    def handle_info(self, msg: Any, state: Any) -> Any:
        if isinstance(msg, otp.DOWN):
            if msg.ref in self.terminations:
                agent_id, pid, record = self.terminations.pop(msg.ref)
                otp.exit(pid, "kill")
                self._record(record, "terminate", False, f"termination task failed: {msg.reason!r}; killed")
            elif msg.ref in self.by_ref:
                agent_id = self.by_ref[msg.ref]
                self._unwatch(agent_id)
                self._publish(agent_id)
            else:
                self.subs.down(msg)
        elif type(msg) is tuple and len(msg) == 3 and msg[0] == "$task" and msg[1] in self.terminations:
            otp.demonitor(msg[1], flush=True)
            agent_id, pid, record = self.terminations.pop(msg[1])
            how, reason = msg[2]
            self._record(record, "terminate", True, f"{how}; exit reason {reason!r}")
        elif type(msg) is tuple and len(msg) >= 5 and msg[0] == "$supervisor" and msg[2] == "started":
            w = self.watched.get(msg[3])
            if msg[3] in self.quotas and (w is None or w.pid != msg[4]):
                self._watch(msg[3], msg[4])
        return otp.NoReply(self, self._next())

    def terminate(self, reason: Any, state: Any) -> None:
        for w in self.watched.values():
            if w.stopped:
                self._signal(w, signal.SIGCONT)


_ALL = ("$all",)


# ------------------------------------------------------------------ client


def set_quota(agent_id: Any, quota: str | QuotaSpec, policy: EscalationPolicy | None = None) -> None:
    """Give ``agent_id`` a quota: a tier name ('lightweight', 'standard',
    'heavy') or a :class:`QuotaSpec`; ``policy`` sets the escalation timings
    (default: the manager's, AC-36's 30 s / 5 min / 10 min)."""
    from .._comms import agent_pid

    spec = tier(quota) if isinstance(quota, str) else quota
    if not isinstance(spec, QuotaSpec):
        raise TypeError(f"a quota is a tier name or a QuotaSpec, not {quota!r}")
    ask(QUOTAS, ("set", agent_id, spec, policy, agent_pid(agent_id)))


def remove_quota(agent_id: Any) -> None:
    """Stop watching the agent (a process it stopped is resumed)."""
    ask(QUOTAS, ("remove", agent_id))


def configure_quotas(
    *, period: Any = _KEEP, throttle_slice: Any = _KEEP, throttle_nice: Any = _KEEP, policy: Any = _KEEP
) -> None:
    """Change the measurement period, the throttle duty-cycle slice, the nice
    value applied when throttling (None: off) or the default policy."""
    given = {"period": period, "throttle_slice": throttle_slice, "throttle_nice": throttle_nice, "policy": policy}
    ask(QUOTAS, ("configure", {k: v for k, v in given.items() if v is not _KEEP}))


def quota_subscribe() -> None:
    """Receive ``('$quota', agent_id, action)`` for every enforcement; the
    caller is monitored."""
    ask(QUOTAS, ("subscribe", otp.self()))


def quota_unsubscribe() -> None:
    ask(QUOTAS, ("unsubscribe", otp.self()))


def enforcements(agent_id: Any = _ALL) -> list:
    """The recorded :class:`Enforcement` items of ``agent_id`` (all agents
    if omitted), oldest first; bounded per agent."""
    return ask(QUOTAS, ("enforcements", agent_id))


def quota_status(agent_id: Any) -> QuotaStatus | None:
    """The agent's quota state from the caller's replica (None: no quota)."""
    rows = otp.Registry.lookup(TABLES, ("quota", agent_id))
    return rows[0][1] if rows else None


def quotas() -> dict:
    """``{agent_id: QuotaStatus}`` of every quota (through the manager)."""
    return ask(QUOTAS, ("quotas",))
