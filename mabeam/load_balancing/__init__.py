"""Load balancing: strategies over agent load records, and the load
balancer that assigns tasks among the agents that joined it.

Naming.  A function that talks to a MABEAM process is named verb_noun,
or a bare verb when its object is its first argument (``create_auction``,
``get_budget``, ``list_agents``, ``acquire(lock)``, ``publish(topic,
...)``); a pure function is named for what it computes (``jaccard``,
``tier``, ``agent_name``); a predicate is ``is_x`` or ``has_x``.

``_strategies`` is pure (the strategies and their filters, as functions of
load records); ``_server`` is the process (registered as
``mabeam.load_balancer``); ``_client`` holds the functions other processes
call.

:func:`child_spec` is the balancer's spec; the application lists it
(:mod:`mabeam._app`).
"""

from __future__ import annotations

from ._client import (
    assign_task,
    complete_task,
    get_stats,
    list_agents,
    register_agent,
    set_measure_period,
    set_strategy,
    unregister_agent,
    update_load,
)
from ._server import LOAD_BALANCER, BalancerStats, LoadBalancer, LoadBalancerOptions, child_spec, set_server_options
from ._strategies import (
    GIB,
    AgentLoad,
    InvalidLoadRecord,
    LoadBalancingError,
    LoadStats,
    NoSuitableAgent,
    OverloadThresholds,
    ResourceWeights,
    Selection,
    Strategy,
    capability_based,
    eligible,
    is_overloaded,
    load_stats,
    performance_weighted,
    resource_aware,
    resource_score,
    round_robin,
    select,
)

__all__ = [
    # the load balancer
    "LOAD_BALANCER",
    "LoadBalancer",
    "LoadBalancerOptions",
    "BalancerStats",
    "child_spec",
    "set_server_options",
    "register_agent",
    "unregister_agent",
    "assign_task",
    "complete_task",
    "update_load",
    "get_stats",
    "list_agents",
    "set_strategy",
    "set_measure_period",
    # strategies
    "GIB",
    "AgentLoad",
    "OverloadThresholds",
    "ResourceWeights",
    "Strategy",
    "Selection",
    "LoadStats",
    "is_overloaded",
    "eligible",
    "resource_score",
    "round_robin",
    "resource_aware",
    "capability_based",
    "performance_weighted",
    "select",
    "load_stats",
    # errors
    "LoadBalancingError",
    "NoSuitableAgent",
    "InvalidLoadRecord",
]
