"""The MABEAM application: its supervision tree.

``mabeam.start()`` starts, under the caller, a one_for_one supervisor
named ``mabeam.sup`` with these children, in start order (the list in
:func:`children` is the whole tree: nothing joins it by being imported):

* ``mabeam.topics``: a keyed registry (duplicate keys) for pub/sub topics;
* ``mabeam.agents``: the dynamic supervisor every agent runs under;
* ``mabeam.agent_registry``: agent records and status (it follows the agent
  supervisor's events, so it starts after it);
* ``mabeam.coordination`` and ``mabeam.economics``: dynamic supervisors of
  sessions, primitives, auctions and markets (one process each, started
  on demand);
* ``mabeam.tasks``: a task supervisor for short helper work;
* the economics services: the board (a keyed registry every economics
  process publishes its state into), reputation, budgets;
* ``mabeam.tables``, the registry the services below publish read-mostly
  state into, then telemetry, the load balancer, variables and quotas.

Every long-lived process of MABEAM is in this tree.
"""

from __future__ import annotations

from typing import Any

import otp

from . import economics, load_balancing, quotas, telemetry, variables
from ._agent_registry import AGENT_SUPERVISOR, REGISTRY, AgentRegistry
from ._common import tables_child_spec
from ._names import APP, COORDINATION, ECONOMICS, TASKS, TOPICS

__all__ = ["start", "stop", "children", "APP", "COORDINATION", "ECONOMICS", "TASKS"]


def _dynamic(name: str, intensity: int, period: float) -> otp.ChildSpec:
    def start() -> otp.Pid:
        return otp.DynamicSupervisor.start_link(name=name, intensity=intensity, period=period)

    return otp.child_spec(name, start=start, type="supervisor")


def _start_tasks() -> otp.Pid:
    return otp.TaskSupervisor.start_link(name=TASKS)


def children(
    agent_backend: Any = "memory", agent_intensity: int = 50, agent_period: float = 10.0
) -> list[otp.ChildSpec]:
    """The application's child specs, in start order (see the module doc)."""
    return [
        otp.Registry.child_spec(keys="duplicate", name=TOPICS, id=TOPICS),
        _dynamic(AGENT_SUPERVISOR, agent_intensity, agent_period),
        AgentRegistry.child_spec(agent_backend, id=REGISTRY, name=REGISTRY),
        _dynamic(COORDINATION, 100, 10.0),
        _dynamic(ECONOMICS, 100, 10.0),
        otp.child_spec(TASKS, start=_start_tasks, type="supervisor"),
        *economics.child_specs(),
        tables_child_spec(),
        telemetry.child_spec(),
        load_balancing.child_spec(),
        variables.child_spec(),
        quotas.child_spec(),
    ]


def start(agent_backend: Any = "memory", agent_intensity: int = 50, agent_period: float = 10.0) -> otp.Pid:
    """Start MABEAM under the calling process; returns the app supervisor.

    ``agent_intensity`` restarts within ``agent_period`` seconds are allowed
    across all agents before the agent supervisor gives up (agents under
    chaos need more than the application's own 10 in 60 s)."""
    pid = otp.Supervisor.start_link(
        children(agent_backend, agent_intensity, agent_period),
        strategy="one_for_one",
        intensity=10,
        period=60,
        name=APP,
    )
    if pid is None:  # a supervisor with children never ignores its start
        raise otp.StartError("ignore")
    return pid


def stop(sup: otp.Pid | str = APP) -> None:
    """Stop the application and everything under it."""
    pid = sup if isinstance(sup, otp.Pid) else otp.whereis(sup)
    if pid is None:
        return
    ref = otp.monitor(pid)
    otp.unlink(pid)  # its 'shutdown' must not take the caller down
    otp.exit(pid, "shutdown")
    otp.receive(60, lambda m: isinstance(m, otp.DOWN) and m.ref == ref)
