"""The MABEAM application: its supervision tree.

``mabeam.start()`` starts, under the caller, a one_for_one supervisor
named ``mabeam.sup`` with (in start order):

* ``mabeam.topics``: a keyed registry (duplicate keys) for pub/sub topics;
* ``mabeam.agents``: the dynamic supervisor every agent runs under;
* ``mabeam.agent_registry``: agent records and status (it follows the agent
  supervisor's events, so it starts after it);
* ``mabeam.coordination`` and ``mabeam.economics``: dynamic supervisors for
  sessions, auctions and markets, one process each (AC-10, AC-23);
* ``mabeam.tasks``: a task supervisor for short helper work;
* the services registered in :data:`SERVICES` by the modules that provide
  them (reputation, budgets, load balancer, telemetry, variables, quotas).

Every long-lived process of MABEAM is in this tree (AC-8, AC-12).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import otp

from ._agent_registry import AGENT_SUPERVISOR, REGISTRY, AgentRegistry

__all__ = ["start", "stop", "SERVICES", "COORDINATION", "ECONOMICS", "TASKS", "APP"]

APP = "mabeam.sup"
COORDINATION = "mabeam.coordination"
ECONOMICS = "mabeam.economics"
TASKS = "mabeam.tasks"

#: ``name -> () -> ChildSpec`` of further services, in start order.  Modules
#: that provide a service add themselves here when imported.
SERVICES: dict[str, Callable[[], otp.ChildSpec]] = {}


def _dynamic(name: str, intensity: int, period: float) -> otp.ChildSpec:
    def start(name=name, intensity=intensity, period=period):
        return otp.DynamicSupervisor.start_link(name=name, intensity=intensity, period=period)

    return otp.child_spec(name, start=start, type="supervisor")


def children(agent_backend: Any = "memory", agent_intensity: int = 50, agent_period: float = 10.0) -> list:
    """The application's child specs (see the module doc)."""
    specs = [
        otp.Registry.child_spec(keys="duplicate", name="mabeam.topics", id="mabeam.topics"),
        _dynamic(AGENT_SUPERVISOR, agent_intensity, agent_period),
        AgentRegistry.child_spec(agent_backend, id=REGISTRY, name=REGISTRY),
        _dynamic(COORDINATION, 100, 10.0),
        _dynamic(ECONOMICS, 100, 10.0),
        otp.child_spec(TASKS, start=_start_tasks, type="supervisor"),
    ]
    specs += [make() for make in SERVICES.values()]
    return specs


def _start_tasks() -> otp.Pid:
    return otp.TaskSupervisor.start_link(name=TASKS)


def start(agent_backend: Any = "memory", agent_intensity: int = 50, agent_period: float = 10.0) -> otp.Pid:
    """Start MABEAM under the calling process; returns the app supervisor.

    ``agent_intensity`` restarts within ``agent_period`` seconds are allowed
    across all agents before the agent supervisor gives up (the seed used
    10 in 60 s for Foundation; agents under chaos need more)."""
    _load_services()
    return otp.Supervisor.start_link(
        children(agent_backend, agent_intensity, agent_period),
        strategy="one_for_one",
        intensity=10,
        period=60,
        name=APP,
    )


def stop(sup: Any = APP) -> None:
    """Stop the application and everything under it."""
    pid = sup if isinstance(sup, otp.Pid) else otp.whereis(sup)
    if pid is None:
        return
    ref = otp.monitor(pid)
    otp.unlink(pid)  # its 'shutdown' must not take the caller down
    otp.exit(pid, "shutdown")
    otp.receive(60, lambda m: isinstance(m, otp.DOWN) and m.ref == ref)


def _load_services() -> None:
    """Import the modules that register services (each adds itself)."""
    import importlib

    for module in ("mabeam.economics", "mabeam.coordination", "mabeam.services"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
