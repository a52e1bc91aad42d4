"""Per-agent resource quotas: limits, tiers, the escalation state machine,
measurement, and the quota manager that enforces them on OS processes.

Naming.  A function that talks to a MABEAM process is named verb_noun,
or a bare verb when its object is its first argument (``create_auction``,
``get_budget``, ``list_agents``, ``acquire(lock)``, ``publish(topic,
...)``); a pure function is named for what it computes (``jaccard``,
``tier``, ``agent_name``); a predicate is ``is_x`` or ``has_x``.

``_policy`` is pure (explicit timestamps, no OS access) and holds every
rule; ``_measure`` is the small psutil reader; ``_server`` is the quota
manager (registered as ``mabeam.quotas``): measure, ``observe``, then carry
out the returned actions; ``_client`` holds the functions other processes
call.

:func:`child_spec` is the manager's spec; the application lists it
(:mod:`mabeam._app`), after the tables registry it publishes into.
"""

from __future__ import annotations

from ._client import (
    configure_enforcement,
    get_quota,
    list_enforcements,
    list_quotas,
    remove_quota,
    set_quota,
    subscribe_enforcements,
    unsubscribe_enforcements,
)
from ._measure import MeasureError, MeasurementDenied, ProcessGone, ProcessReplaced, Usage, measure
from ._policy import (
    GB,
    MB,
    TIERS,
    Action,
    AgentTerminated,
    ClockWentBackwards,
    Decision,
    Degradation,
    EnforcementRecord,
    EscalationPolicy,
    Escalator,
    InvalidMeasurement,
    InvalidQuota,
    QuotaError,
    QuotaSpec,
    Resource,
    ResourceLimit,
    Resume,
    Stage,
    Suspend,
    Terminate,
    Throttle,
    UnknownTier,
    Violation,
    Warn,
    degradation_level,
    degradation_strategies,
    throttle_factor,
    tier,
)
from ._server import QUOTAS, Enforcement, QuotaManager, QuotaOptions, QuotaStatus, child_spec, set_server_options

__all__ = [
    # the quota manager
    "QUOTAS",
    "QuotaManager",
    "QuotaOptions",
    "QuotaStatus",
    "Enforcement",
    "child_spec",
    "set_server_options",
    "set_quota",
    "remove_quota",
    "get_quota",
    "list_quotas",
    "configure_enforcement",
    "list_enforcements",
    "subscribe_enforcements",
    "unsubscribe_enforcements",
    # limits and tiers
    "MB",
    "GB",
    "Resource",
    "ResourceLimit",
    "QuotaSpec",
    "TIERS",
    "tier",
    # escalation
    "EscalationPolicy",
    "Escalator",
    "Stage",
    "Violation",
    "Degradation",
    "Decision",
    "EnforcementRecord",
    "Action",
    "Warn",
    "Throttle",
    "Suspend",
    "Resume",
    "Terminate",
    "degradation_level",
    "degradation_strategies",
    "throttle_factor",
    # measurement
    "Usage",
    "measure",
    # errors
    "QuotaError",
    "InvalidQuota",
    "UnknownTier",
    "InvalidMeasurement",
    "ClockWentBackwards",
    "AgentTerminated",
    "MeasureError",
    "ProcessGone",
    "ProcessReplaced",
    "MeasurementDenied",
]
