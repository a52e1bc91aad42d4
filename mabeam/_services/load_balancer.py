"""The load balancer: agents join it, tasks are assigned among them with the
strategies of :mod:`mabeam.balancing`.

What the seed got wrong and this does instead (seed §1.B.11, §5):

* Joining MONITORS the agent's process.  A dead agent leaves at its DOWN;
  before then, an assignment never goes to an agent this process can see is
  dead (the chosen pid is checked), and ``load_stats`` counts only live ones.
* A restarted agent re-joins: ``lb_register`` again, or automatically when
  it joined with ``rejoin=True`` (the default): the balancer follows the
  agent supervisor's ``started`` events and monitors the new pid.
* No test-mode agents, no dummy pids: an agent that is not running cannot
  join (``AgentError(agent_id, 'not_running')``).

Load figures come from ``update_metrics`` (a cast, forwarded to telemetry
for alerts), from ``task_completed`` (active tasks and an exponential moving
average of durations), and optionally from psutil: with
``lb_configure(measure_period=s)`` the balancer samples every joined agent's
RSS and CPU with :func:`mabeam.quotas.measure` on that period (deadline
timers, see ``_common``).  CPU is a fraction of one core (psutil's percent
/ 100), as the strategies expect.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import otp

from .. import balancing
from .._agent import AgentError
from .._agent_registry import AGENT_SUPERVISOR
from ._common import LOAD_BALANCER, TELEMETRY, Timers, ask, emit

log = logging.getLogger("mabeam.load_balancer")

__all__ = [
    "LoadBalancer",
    "lb_register",
    "lb_unregister",
    "assign_task",
    "task_completed",
    "update_metrics",
    "load_stats",
    "lb_agents",
    "set_strategy",
    "lb_configure",
]

DURATION_ALPHA = 0.3  # weight of the newest task duration in the moving average


def _key(agent_id: Any) -> str:
    """The strategies sort and compare ids as strings; other ids get a prefix
    that cannot clash with a string id."""
    return agent_id if isinstance(agent_id, str) else "\x00" + repr(agent_id)


@dataclass
class _Member:
    agent_id: Any
    pid: otp.Pid
    ref: otp.Ref
    load: balancing.AgentLoad
    rejoin: bool
    usage: Any = None  # the last quotas.Usage sample


class LoadBalancer(otp.GenServer):
    def init(self, opts: Any) -> Any:
        opts = dict(opts or {})
        self.members: dict[str, _Member] = {}
        self.by_ref: dict[otp.Ref, str] = {}
        self.sticky: dict[Any, tuple] = {}  # agent_id -> capabilities, for rejoin
        self.strategy = balancing.Strategy(opts.get("strategy", "resource_aware"))
        self.thresholds = opts.get("thresholds", balancing.OverloadThresholds())
        self.cursor: str | None = None
        self.assigned = 0
        self.measure_period: float | None = opts.get("measure_period")
        self.timers = Timers()
        try:
            otp.supervisor.subscribe(AGENT_SUPERVISOR)
        except Exception as exc:  # started outside the app: no automatic rejoin
            log.info("load balancer: no agent supervisor events (%r)", exc)
        return self

    def _next(self) -> float | None:
        return self.timers.timeout()

    def _reply(self, value: Any) -> otp.Reply:
        return otp.Reply(("ok", value), self, self._next())

    # ------------------------------------------------------------ joining

    def _join(self, agent_id: Any, pid: otp.Pid, capabilities: frozenset, rejoin: bool) -> None:
        key = _key(agent_id)
        old = self.members.get(key)
        if old is not None:
            if old.pid == pid:
                old.load = replace(old.load, capabilities=capabilities)
                old.rejoin = rejoin
                return
            self._leave(key, "replaced")
        ref = otp.monitor(pid)
        load = balancing.AgentLoad(key, capabilities)
        self.members[key] = _Member(agent_id, pid, ref, load, rejoin)
        self.by_ref[ref] = key
        if rejoin:
            self.sticky[agent_id] = capabilities
        if self.measure_period and not self.timers.scheduled("measure"):
            self.timers.schedule("measure", time.monotonic())
        emit(("mabeam", "load_balancer", "joined"), {"agents": len(self.members)}, {"agent_id": agent_id})

    def _leave(self, key: str, why: str) -> None:
        member = self.members.pop(key, None)
        if member is None:
            return
        self.by_ref.pop(member.ref, None)
        otp.demonitor(member.ref, flush=True)
        emit(
            ("mabeam", "load_balancer", "left"),
            {"agents": len(self.members)},
            {"agent_id": member.agent_id, "reason": why},
        )

    def _prune(self) -> None:
        """Leave at once for agents known dead whose DOWN is still queued."""
        for key in [k for k, m in self.members.items() if not otp.is_alive(m.pid)]:
            self._leave(key, "dead")

    # ------------------------------------------------------------ calls

    def handle_call(self, request: tuple, from_: tuple, state: Any) -> Any:
        self._tick()
        op = request[0]
        if op == "register":
            _, agent_id, pid, capabilities, rejoin = request
            self._join(agent_id, pid, frozenset(capabilities), rejoin)
            return self._reply(None)
        if op == "unregister":
            self.sticky.pop(request[1], None)
            self._leave(_key(request[1]), "unregistered")
            return self._reply(None)
        if op == "assign":
            return self._assign(*request[1:])
        if op == "stats":
            self._prune()
            loads = [m.load for m in self.members.values()]
            stats = balancing.load_stats(loads, self.thresholds)
            out = dict(vars(stats))
            out.update(total_tasks_assigned=self.assigned, strategy=self.strategy.value)
            return self._reply(out)
        if op == "agents":
            self._prune()
            return self._reply({m.agent_id: replace(m.load, agent_id=m.agent_id) for m in self.members.values()})
        if op == "strategy":
            self.strategy = balancing.Strategy(request[1])
            return self._reply(None)
        if op == "configure":
            self.measure_period = request[1]
            if self.measure_period:
                self.timers.schedule("measure", time.monotonic())
            else:
                self.timers.cancel("measure")
            return self._reply(None)
        return otp.Reply(("error", ValueError(f"unknown load balancer request {op!r}")), self, self._next())

    def _assign(self, required: tuple, strategy: Any, preferred: tuple) -> otp.Reply:
        strategy = self.strategy if strategy is None else balancing.Strategy(strategy)
        while True:
            loads = [m.load for m in self.members.values()]
            try:
                choice = balancing.select(
                    strategy, loads, required, cursor=self.cursor, preferred=preferred, thresholds=self.thresholds
                )
            except balancing.NoSuitableAgent as exc:
                return self._reply(("none", (tuple(exc.required), exc.total, exc.dead, exc.missing, exc.overloaded)))
            member = self.members[choice.agent.agent_id]
            if otp.is_alive(member.pid):
                break
            self._leave(choice.agent.agent_id, "dead")  # its DOWN has not arrived yet
        self.cursor = choice.cursor
        member.load = replace(member.load, active_tasks=member.load.active_tasks + 1)
        self.assigned += 1
        return self._reply(("ok", (member.agent_id, member.pid)))

    # ------------------------------------------------------------ casts

    def handle_cast(self, request: tuple, state: Any) -> Any:
        self._tick()
        op = request[0]
        member = self.members.get(_key(request[1]))
        if member is None:
            return otp.NoReply(self, self._next())
        try:
            if op == "metrics":
                fields = {k: v for k, v in request[2].items() if v is not None}
                member.load = replace(member.load, **fields)
                telemetry = {"cpu": fields.get("cpu"), "memory": fields.get("memory_bytes")}
                otp.cast(TELEMETRY, ("agent_metrics", member.agent_id, telemetry))
            elif op == "done":
                duration = float(request[2])
                old = member.load
                avg = (
                    duration
                    if old.avg_task_duration == 0
                    else (DURATION_ALPHA * duration + (1 - DURATION_ALPHA) * old.avg_task_duration)
                )
                member.load = replace(old, active_tasks=max(0, old.active_tasks - 1), avg_task_duration=avg)
        except (balancing.InvalidLoadRecord, TypeError, ValueError) as exc:
            log.warning("load balancer: rejected %r: %s", request, exc)
        return otp.NoReply(self, self._next())

    # ------------------------------------------------------------ info

    def handle_info(self, msg: Any, state: Any) -> Any:
        if isinstance(msg, otp.DOWN):
            key = self.by_ref.get(msg.ref)
            if key is not None:
                self._leave(key, msg.reason)
        elif type(msg) is tuple and len(msg) >= 5 and msg[0] == "$supervisor" and msg[2] == "started":
            agent_id, pid = msg[3], msg[4]
            if agent_id in self.sticky:
                self._join(agent_id, pid, self.sticky[agent_id], True)
        self._tick()
        return otp.NoReply(self, self._next())

    def _tick(self) -> None:
        now = time.monotonic()
        if "measure" not in self.timers.pop_due(now):
            return
        from ..quotas import MeasureError, measure  # psutil: imported only when measuring

        for member in list(self.members.values()):
            try:
                usage = measure(member.pid.ospid, member.usage)
            except MeasureError:
                continue  # gone: its DOWN is on the way
            cpu = usage.cpu_percent / 100.0 if member.usage is not None else member.load.cpu
            member.usage = usage
            member.load = replace(member.load, cpu=cpu, memory_bytes=usage.rss)
        if self.measure_period and self.members:
            self.timers.schedule("measure", now + self.measure_period)


# ------------------------------------------------------------------ client


def lb_register(agent_id: Any, capabilities: Any = None, *, rejoin: bool = True) -> None:
    """Join a running agent (capabilities default to its registry record's).
    With ``rejoin`` it joins again by itself whenever its supervisor restarts it."""
    from .._agent_registry import get_agent
    from .._comms import agent_pid

    pid = agent_pid(agent_id)
    if pid is None:
        raise AgentError(agent_id, "not_running")
    if capabilities is None:
        try:
            capabilities = get_agent(agent_id).config.capabilities
        except LookupError:
            capabilities = ()
    ask(LOAD_BALANCER, ("register", agent_id, pid, tuple(capabilities), rejoin))


def lb_unregister(agent_id: Any) -> None:
    ask(LOAD_BALANCER, ("unregister", agent_id))


def assign_task(required_capabilities: Any = (), strategy: Any = None, preferred: Any = ()) -> tuple:
    """``(agent_id, pid)`` of the agent chosen for a task needing
    ``required_capabilities`` (strategy default: the balancer's, initially
    resource aware).  Raises ``balancing.NoSuitableAgent`` with the counts."""
    status, value = ask(LOAD_BALANCER, ("assign", tuple(required_capabilities), strategy, tuple(preferred)))
    if status == "none":
        required, total, dead, missing, overloaded = value
        raise balancing.NoSuitableAgent(
            frozenset(required), total=total, dead=dead, missing=missing, overloaded=overloaded
        )
    return value


def task_completed(agent_id: Any, duration: float) -> None:
    """A task assigned to ``agent_id`` finished after ``duration`` seconds (a cast)."""
    otp.cast(LOAD_BALANCER, ("done", agent_id, duration))


def update_metrics(
    agent_id: Any,
    cpu: float | None = None,
    memory: int | None = None,
    active_tasks: int | None = None,
    avg_duration: float | None = None,
) -> None:
    """Report an agent's load (a cast; omitted figures are kept)."""
    fields = {"cpu": cpu, "memory_bytes": memory, "active_tasks": active_tasks, "avg_task_duration": avg_duration}
    otp.cast(LOAD_BALANCER, ("metrics", agent_id, fields))


def load_stats() -> dict:
    """``balancing.LoadStats`` fields plus ``total_tasks_assigned`` and ``strategy``."""
    return ask(LOAD_BALANCER, ("stats",))


def lb_agents() -> dict:
    """``{agent_id: AgentLoad}`` of the joined, live agents."""
    return ask(LOAD_BALANCER, ("agents",))


def set_strategy(strategy: Any) -> None:
    ask(LOAD_BALANCER, ("strategy", balancing.Strategy(strategy).value))


def lb_configure(measure_period: float | None = None) -> None:
    """Sample joined agents' RSS and CPU with psutil every ``measure_period``
    seconds (None: off, the default; figures then come from ``update_metrics``)."""
    ask(LOAD_BALANCER, ("configure", measure_period))
