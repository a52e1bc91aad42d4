"""Per-agent resource quotas: limits, tiers, the escalation state machine, and measurement.

``_policy`` is pure (explicit timestamps, no OS access) and holds every rule; ``_measure``
is the small psutil reader.  A quota gen_server combines them: measure, ``observe``, then
carry out the returned actions.
"""

from __future__ import annotations

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

__all__ = [
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
