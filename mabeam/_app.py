"""The MABEAM application: its supervision tree.

MABEAM is an OTP application, :data:`APPLICATION` (``'mabeam'``, callback
:class:`MabeamApp`).  ``mabeam.start()`` starts it (temporary, as
``application:start/1``: if its supervisor gives up, the exit is logged and
the node carries on); ``mabeam.stop()`` stops it.  Its ``start`` starts a
one_for_one supervisor named ``mabeam.sup`` with these children, in start
order (the list in :func:`children` is the whole tree: nothing joins it by
being imported):

* ``mabeam.topics``: a keyed registry (duplicate keys) for pub/sub topics;
* ``mabeam.agents``: the dynamic supervisor every agent runs under, as a
  temporary child (it never restarts one, so its intensity is nobody's
  budget);
* ``mabeam.agent_registry``: agent records and status, and the restarts of
  agents, each within its own budget (it follows the agent supervisor, so
  it starts after it, and follows it across its restarts: see
  :mod:`mabeam._agent_watch`);
* ``mabeam.coordination``: the dynamic supervisor of the coordination
  primitives (barriers, locks, counters: one process each, started on
  demand);
* ``mabeam.coordination.hosts``: the session hosts, a partition supervisor
  of one host per core (at least two) holding every coordination session
  as state (see :mod:`mabeam.coordination._host`);
* ``mabeam.economics``: the dynamic supervisor of economics processes
  started on demand;
* ``mabeam.tasks``: a task supervisor for short helper work;
* the economics services: the board (a keyed registry every economics
  process publishes its state into), reputation, budgets;
* ``mabeam.tables``, the registry the services below publish read-mostly
  state into, then telemetry, the load balancer, variables and quotas.

Every long-lived process of MABEAM is in this tree.

Why one_for_one and not rest_for_one around the agent supervisor and the
processes that watch it: a restart of the agent supervisor would then
restart the agent registry (every registered agent forgotten with the
memory backend), the quota manager (quotas and their histories), the load
balancer (its members) and every coordination session.  They follow the
agent supervisor across its restarts instead
(:class:`mabeam._agent_watch.AgentWatch`) and keep their state.

``mabeam.start()`` builds the child specs in the calling process, so the
options set there (``telemetry.set_server_options``...) apply, and hands
them to the application in its environment (key ``child_specs``); started
otherwise (``otp.application.start(mabeam.APPLICATION)``), the application
builds them from its environment's ``agent_backend``, ``agent_intensity``
and ``agent_period``.
"""

from __future__ import annotations

from typing import Any

import otp
from otp import application
from otp.application import Application, AppSpec

from . import coordination, economics, load_balancing, quotas, telemetry, variables
from ._agent_registry import AGENT_SUPERVISOR, REGISTRY, AgentRegistry, RegistryOptions
from ._common import tables_child_spec
from ._names import APP, COORDINATION, ECONOMICS, TASKS, TOPICS

__all__ = ["start", "stop", "children", "MabeamApp", "APPLICATION", "APP", "COORDINATION", "ECONOMICS", "TASKS"]

#: The application's name, and the environment key of the child specs
#: ``start`` hands over.
NAME = "mabeam"
_CHILD_SPECS = "child_specs"


def _dynamic(name: str, intensity: int = 3, period: float = 5.0) -> otp.ChildSpec:
    def start() -> otp.Pid:
        return otp.DynamicSupervisor.start_link(name=name, intensity=intensity, period=period)

    return otp.child_spec(name, start=start, type="supervisor")


def _start_tasks() -> otp.Pid:
    return otp.TaskSupervisor.start_link(name=TASKS)


def children(
    agent_backend: Any = "memory", agent_intensity: int = 50, agent_period: float = 10.0
) -> list[otp.ChildSpec]:
    """The application's child specs, in start order (see the module doc);
    ``agent_intensity`` restarts within ``agent_period`` seconds is the
    restart budget of each agent whose config sets none."""
    options = RegistryOptions(agent_backend, agent_intensity, agent_period)
    return [
        otp.Registry.child_spec(keys="duplicate", name=TOPICS, id=TOPICS),
        _dynamic(AGENT_SUPERVISOR),
        AgentRegistry.child_spec(options, id=REGISTRY, name=REGISTRY),
        _dynamic(COORDINATION, 100, 10.0),
        *coordination.child_specs(),
        _dynamic(ECONOMICS, 100, 10.0),
        otp.child_spec(TASKS, start=_start_tasks, type="supervisor"),
        *economics.child_specs(),
        tables_child_spec(),
        telemetry.child_spec(),
        load_balancing.child_spec(),
        variables.child_spec(),
        quotas.child_spec(),
    ]


class MabeamApp(Application):
    """The application callback: starts the supervision tree."""

    def start(self, start_type: str, args: Any) -> otp.Pid:
        specs = application.get_env(NAME, _CHILD_SPECS)
        if specs is None:
            env = application.get_all_env(NAME)
            specs = children(env["agent_backend"], env["agent_intensity"], env["agent_period"])
        pid = otp.Supervisor.start_link(specs, strategy="one_for_one", intensity=10, period=60, name=APP)
        if pid is None:  # a supervisor with children never ignores its start
            raise otp.StartError("ignore")
        return pid


APPLICATION = AppSpec(
    NAME,
    "MABEAM: multi-agent coordination",
    "1.0",
    env={"agent_backend": "memory", "agent_intensity": 50, "agent_period": 10.0},
    mod=(MabeamApp, None),
)


def start(agent_backend: Any = "memory", agent_intensity: int = 50, agent_period: float = 10.0) -> otp.Pid:
    """Start the MABEAM application (temporary); returns its supervisor.

    ``agent_intensity`` restarts within ``agent_period`` seconds are each
    agent's restart budget, unless its ``AgentConfig`` sets its own
    (``max_restarts``, ``restart_period``): an agent that crashes more often
    is ``'failed'`` and not restarted, and the other agents are not
    affected.  Raises ``otp.application.AlreadyStarted`` if MABEAM runs,
    ``StartFailed`` if its tree does not start."""
    application.set_env(NAME, _CHILD_SPECS, children(agent_backend, agent_intensity, agent_period))
    try:
        application.start(APPLICATION)
    finally:
        application.unset_env(NAME, _CHILD_SPECS)  # the specs were for this start only
    pid = application.get_supervisor(NAME)
    if pid is None:  # it stopped already: its supervisor gave up at once
        raise application.NotStarted(NAME)
    return pid


def stop(sup: otp.Pid | str = APP) -> None:
    """Stop the application and everything under it (``sup``, its
    supervisor's pid or name as :func:`start` returned it, names the
    application to stop); nothing if it does not run."""
    try:
        application.stop(NAME)
    except application.NotStarted:
        pass
