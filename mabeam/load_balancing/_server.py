"""The load balancer: agents join it, tasks are assigned among them with the
strategies of ``_strategies``; an :class:`otp.Service` registered as
``mabeam.load_balancer``.

* Joining monitors the agent's process, and a dead agent leaves at its
  DOWN.  Before then, every answer agrees with the kernel as soon as the
  agent is doomed (:func:`otp.is_alive` counts a process SIGKILLed a
  moment ago as dead from the kill on): an assignment checks the chosen pid and never goes to
  a dead agent, the stats and the list prune dead agents first, and a dead
  pid cannot join (``AgentNotRunning``).  An agent found dead is dropped
  at once, so the next answer already does without it; its ``left``
  telemetry event waits for the DOWN, whose reason is the one that counts.
* A restarted agent joins again: by hand, or by itself when it joined with
  ``rejoin=True`` (the default): the balancer follows the agent
  supervisor's ``started`` events and monitors the new pid.
* An agent that is not running cannot join (``AgentNotRunning``).

Load figures come from ``update_load`` (a cast, forwarded to telemetry for
alerts), from ``complete_task`` (active tasks and an exponential moving
average of durations), and optionally from psutil: with
``set_measure_period(s)`` the balancer samples every joined agent's RSS and
CPU with :func:`mabeam.quotas.measure` at once, then on an ``otp.start_timer``
timer armed again after each sample (taken in ``handle_info``, so it fires
whatever the traffic of requests), for as long as agents are joined; the
next join starts it again.  The ``TimeoutMsg`` carries its timer's ref, so
one that fired just before being cancelled or replaced is recognised as
stale and ignored.  A timer lost with the node's timer server (it restarts
empty) stops the sampling until the period is set again.  CPU is a
fraction of one core (psutil's percent / 100), as the strategies expect.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import otp

from .._agent_watch import AgentStarted, AgentWatch
from .._common import ServerOptions
from .._errors import AgentNotRunning
from ..telemetry import TELEMETRY, emit_event
from ._strategies import AgentLoad, LoadStats, OverloadThresholds, Strategy, load_stats, select

if TYPE_CHECKING:
    from ..quotas import Usage

log = logging.getLogger("mabeam.load_balancer")

__all__ = ["LOAD_BALANCER", "LoadBalancer", "LoadBalancerOptions", "BalancerStats", "child_spec", "set_server_options"]

#: The load balancer's registered name.
LOAD_BALANCER = "mabeam.load_balancer"

DURATION_ALPHA = 0.3  # weight of the newest task duration in the moving average

_MEASURE = "measure"  # the message of the measurement timer


@dataclass(frozen=True)
class LoadBalancerOptions:
    """The load balancer's settings at start."""

    strategy: Strategy = Strategy.RESOURCE_AWARE
    thresholds: OverloadThresholds = OverloadThresholds()
    measure_period: float | None = None  # seconds between psutil samples (None: off)


@dataclass(frozen=True)
class BalancerStats(LoadStats):
    """Load figures over the joined live agents (:class:`LoadStats`), the
    tasks assigned so far and the current default strategy."""

    total_tasks_assigned: int
    strategy: Strategy


def _key(agent_id: Hashable) -> str:
    """The strategies sort and compare ids as strings; other ids get a prefix
    that cannot clash with a string id."""
    return agent_id if isinstance(agent_id, str) else "\x00" + repr(agent_id)


@dataclass
class _Member:
    agent_id: Hashable
    pid: otp.Pid
    ref: otp.Ref
    load: AgentLoad
    rejoin: bool
    usage: Usage | None = None  # the last psutil sample


class LoadBalancer(otp.Service):
    """The load balancer process (see the module documentation)."""

    def init(self, options: LoadBalancerOptions) -> None:
        self.members: dict[str, _Member] = {}
        self.by_ref: dict[otp.Ref, str] = {}
        self.dropped: dict[otp.Ref, Hashable] = {}  # found dead before their DOWN: agent ids
        self.sticky: dict[Hashable, frozenset[str]] = {}  # agent_id -> capabilities, for rejoin
        self.strategy = options.strategy
        self.thresholds = options.thresholds
        self.cursor: str | None = None
        self.assigned = 0
        self.measure_period = options.measure_period
        self.measure_timer: otp.TimerRef | None = None  # armed while measuring with agents joined
        # restarted agents rejoin, also after a restart of the agent supervisor
        # (started outside the app: no automatic rejoin)
        self.agents = AgentWatch(report_running=False)

    # ------------------------------------------------------------ joining

    @otp.operation
    def register_agent(self, agent_id: Hashable, pid: otp.Pid, capabilities: frozenset[str], rejoin: bool) -> None:
        self._join(agent_id, pid, frozenset(capabilities), rejoin)

    @otp.operation
    def unregister_agent(self, agent_id: Hashable) -> None:
        self.sticky.pop(agent_id, None)
        self._leave(_key(agent_id), "unregistered")

    def _join(self, agent_id: Hashable, pid: otp.Pid, capabilities: frozenset[str], rejoin: bool) -> None:
        """Raises ``AgentNotRunning`` if ``pid`` is already dead."""
        if not otp.is_alive(pid):
            raise AgentNotRunning(agent_id)
        key = _key(agent_id)
        old = self.members.get(key)
        if old is not None:
            if old.pid == pid:
                old.load = replace(old.load, capabilities=capabilities)
                old.rejoin = rejoin
                return
            self._leave(key, "replaced")
        ref = otp.monitor(pid)
        self.members[key] = _Member(agent_id, pid, ref, AgentLoad(key, capabilities), rejoin)
        self.by_ref[ref] = key
        if rejoin:
            self.sticky[agent_id] = capabilities
        emit_event(("mabeam", "load_balancer", "joined"), {"agents": len(self.members)}, {"agent_id": agent_id})
        if self.measure_period and self.measure_timer is None:
            self._measure(self.measure_period)

    def _leave(self, key: str, why: Any) -> None:
        member = self.members.pop(key, None)
        if member is None:
            return
        self.by_ref.pop(member.ref, None)
        otp.demonitor(member.ref, flush=True)
        self._emit_left(member.agent_id, why)

    def _emit_left(self, agent_id: Hashable, why: Any) -> None:
        emit_event(
            ("mabeam", "load_balancer", "left"),
            {"agents": len(self.members)},
            {"agent_id": agent_id, "reason": why},
        )

    def _drop(self, key: str) -> None:
        """Forget at once an agent found dead whose DOWN is still on its way
        (its ``left`` event waits for the DOWN's reason)."""
        member = self.members.pop(key)
        del self.by_ref[member.ref]
        self.dropped[member.ref] = member.agent_id

    def _prune(self) -> None:
        """Drop the agents found dead (see :meth:`_drop`)."""
        for key in [k for k, m in self.members.items() if not otp.is_alive(m.pid)]:
            self._drop(key)

    # ------------------------------------------------------------ tasks

    @otp.operation
    def assign_task(
        self, required: tuple[str, ...], strategy: Strategy | None, preferred: tuple[str, ...]
    ) -> tuple[Hashable, otp.Pid]:
        """Raises ``NoSuitableAgent`` (answered to the caller) when no agent fits."""
        chosen = self.strategy if strategy is None else strategy
        while True:
            loads = [m.load for m in self.members.values()]
            choice = select(
                chosen, loads, required, cursor=self.cursor, preferred=preferred, thresholds=self.thresholds
            )
            member = self.members[choice.agent.agent_id]
            if otp.is_alive(member.pid):
                break
            self._drop(choice.agent.agent_id)
        self.cursor = choice.cursor
        member.load = replace(member.load, active_tasks=member.load.active_tasks + 1)
        self.assigned += 1
        return member.agent_id, member.pid

    @otp.operation
    def complete_task(self, agent_id: Hashable, duration: float) -> None:
        member = self.members.get(_key(agent_id))
        if member is None:
            return
        duration = float(duration)
        old = member.load
        avg = (
            duration
            if old.avg_task_duration == 0
            else (DURATION_ALPHA * duration + (1 - DURATION_ALPHA) * old.avg_task_duration)
        )
        member.load = replace(old, active_tasks=max(0, old.active_tasks - 1), avg_task_duration=avg)

    @otp.operation
    def update_load(
        self,
        agent_id: Hashable,
        cpu: float | None,
        memory_bytes: int | None,
        active_tasks: int | None,
        avg_task_duration: float | None,
    ) -> None:
        member = self.members.get(_key(agent_id))
        if member is None:
            return
        old = member.load
        member.load = replace(
            old,
            cpu=old.cpu if cpu is None else cpu,
            memory_bytes=old.memory_bytes if memory_bytes is None else memory_bytes,
            active_tasks=old.active_tasks if active_tasks is None else active_tasks,
            avg_task_duration=old.avg_task_duration if avg_task_duration is None else avg_task_duration,
        )
        otp.tell(TELEMETRY, "record_agent_metrics", member.agent_id, {"cpu": cpu, "memory": memory_bytes})

    # ------------------------------------------------------------ reads and settings

    @otp.operation
    def get_stats(self) -> BalancerStats:
        self._prune()
        stats = load_stats([m.load for m in self.members.values()], self.thresholds)
        return BalancerStats(**vars(stats), total_tasks_assigned=self.assigned, strategy=self.strategy)

    @otp.operation
    def list_agents(self) -> dict[Hashable, AgentLoad]:
        self._prune()
        return {m.agent_id: replace(m.load, agent_id=m.agent_id) for m in self.members.values()}  # type: ignore[arg-type]  # AgentLoad's id is the caller's own id here, not the strategies' string key

    @otp.operation
    def set_strategy(self, strategy: Strategy) -> None:
        self.strategy = strategy

    @otp.operation
    def set_measure_period(self, period: float | None) -> None:
        """Raises ValueError or TypeError (``otp.start_timer``'s) for a
        period no timer takes, before anything changes."""
        timer = otp.start_timer(period, otp.self(), _MEASURE) if period else None
        if self.measure_timer is not None:
            otp.cancel_timer(self.measure_timer)
        self.measure_period, self.measure_timer = period, timer
        if timer is not None:
            self._measure_all()

    # ------------------------------------------------------------ messages

    def handle_info(self, msg: Any, state: Any) -> Any:
        events = self.agents.handle(msg)  # first: its DOWNs and answers are messages too
        if events is not None:
            for event in events:
                if isinstance(event, AgentStarted) and event.agent_id in self.sticky:
                    try:
                        self._join(event.agent_id, event.pid, self.sticky[event.agent_id], True)
                    except AgentNotRunning:
                        pass  # died again already; its next start rejoins it
        elif isinstance(msg, otp.TimeoutMsg):
            if msg.ref == self.measure_timer:  # else stale: cancelled or replaced after it fired
                self.measure_timer = None
                if self.measure_period and self.members:
                    self._measure(self.measure_period)
        elif isinstance(msg, otp.DOWN):
            key = self.by_ref.get(msg.ref)
            if key is not None:
                self._leave(key, msg.reason)
            elif msg.ref in self.dropped:
                self._emit_left(self.dropped.pop(msg.ref), msg.reason)
        return otp.NoReply(state)

    def _measure(self, period: float) -> None:
        """Sample every joined agent now, then arm the timer of the next
        sample (``period`` after this one ended, so sampling never crowds
        out requests)."""
        self._measure_all()
        self.measure_timer = otp.start_timer(period, otp.self(), _MEASURE)

    def _measure_all(self) -> None:
        from ..quotas import MeasureError, measure  # psutil: loaded only when measuring is on

        for member in list(self.members.values()):
            try:
                usage = measure(member.pid.ospid, member.usage)
            except MeasureError:
                continue  # gone: its DOWN is on the way
            cpu = usage.cpu_percent / 100.0 if member.usage is not None else member.load.cpu
            member.usage = usage
            member.load = replace(member.load, cpu=cpu, memory_bytes=usage.rss)


_options = ServerOptions(LoadBalancer, LOAD_BALANCER, LoadBalancerOptions())
set_server_options = _options.set_server_options
child_spec = _options.child_spec
