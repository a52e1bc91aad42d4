"""The load balancer's client functions (run in the caller's process)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import otp

from .._agent_registry import get_agent
from .._comms import whereis_agent
from .._errors import AgentNotRunning
from ._server import LOAD_BALANCER, BalancerStats
from ._strategies import AgentLoad, Strategy

__all__ = [
    "register_agent",
    "unregister_agent",
    "assign_task",
    "complete_task",
    "update_load",
    "get_stats",
    "list_agents",
    "set_strategy",
    "set_measure_period",
]


def register_agent(agent_id: Hashable, capabilities: Iterable[str] | None = None, *, rejoin: bool = True) -> None:
    """Join a running agent (capabilities default to its registry record's).
    With ``rejoin`` it joins again by itself whenever its supervisor
    restarts it.  Raises ``AgentNotRunning`` if it has no process."""
    pid = whereis_agent(agent_id)
    if pid is None:
        raise AgentNotRunning(agent_id)
    if capabilities is None:
        try:
            capabilities = get_agent(agent_id).config.capabilities
        except LookupError:
            capabilities = ()
    otp.ask(LOAD_BALANCER, "register_agent", agent_id, pid, frozenset(capabilities), rejoin)


def unregister_agent(agent_id: Hashable) -> None:
    """Leave the balancer (and stop joining again on restarts)."""
    otp.ask(LOAD_BALANCER, "unregister_agent", agent_id)


def assign_task(
    required_capabilities: Iterable[str] = (), strategy: str | None = None, preferred: Iterable[str] = ()
) -> tuple[Hashable, otp.Pid]:
    """``(agent_id, pid)`` of the agent chosen for a task needing
    ``required_capabilities``, counted as one more active task of it
    (strategy default: the balancer's, initially resource aware).  Raises
    ``NoSuitableAgent`` with the counts of agents rejected and why."""
    chosen = None if strategy is None else Strategy(strategy)
    return otp.ask(LOAD_BALANCER, "assign_task", tuple(required_capabilities), chosen, tuple(preferred))


def complete_task(agent_id: Hashable, duration: float) -> None:
    """A task assigned to ``agent_id`` finished after ``duration`` seconds (a cast)."""
    otp.tell(LOAD_BALANCER, "complete_task", agent_id, duration)


def update_load(
    agent_id: Hashable,
    cpu: float | None = None,
    memory: int | None = None,
    active_tasks: int | None = None,
    avg_duration: float | None = None,
) -> None:
    """Report an agent's load (a cast; omitted figures are kept).  CPU and
    memory are also checked against the telemetry alert thresholds."""
    otp.tell(LOAD_BALANCER, "update_load", agent_id, cpu, memory, active_tasks, avg_duration)


def get_stats() -> BalancerStats:
    """Load figures over the joined agents, tasks assigned, the default strategy."""
    return otp.ask(LOAD_BALANCER, "get_stats")


def list_agents() -> dict[Hashable, AgentLoad]:
    """``{agent_id: AgentLoad}`` of the joined, live agents."""
    return otp.ask(LOAD_BALANCER, "list_agents")


def set_strategy(strategy: str) -> None:
    """The default strategy of ``assign_task`` from now on."""
    otp.ask(LOAD_BALANCER, "set_strategy", Strategy(strategy))


def set_measure_period(period: float | None) -> None:
    """Sample joined agents' RSS and CPU with psutil every ``period`` seconds,
    the first time at once (None: off, the default; figures then come from
    ``update_load``)."""
    otp.ask(LOAD_BALANCER, "set_measure_period", period)
