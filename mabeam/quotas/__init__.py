"""Per-agent resource quotas: limits, tiers, the escalation state machine,
measurement, and the quota manager that enforces them on OS processes.

Naming.  A function that talks to a MABEAM process is named verb_noun,
or a bare verb when its object is its first argument (``create_auction``,
``get_budget``, ``list_agents``, ``acquire(lock)``, ``publish(topic,
...)``); a pure function is named for what it computes (``jaccard``,
``tier``, ``agent_name``); a predicate is ``is_x`` or ``has_x``.

The escalation ladder (every number an ``EscalationPolicy`` or tier
parameter; the defaults here).  An agent whose usage goes over its soft
limit is warned at once, throttled after 30 s (a SIGSTOP/SIGCONT duty
cycle keeping 50-90% of its speed), suspended (SIGSTOP) after 5 min and
terminated (stopped through the agent registry, not restarted) after 10 min,
counted from the first measurement over soft; usage back under soft for
60 s resumes it and ends the episode.  Over its hard limit it reaches the
limit's ``hard_stage`` at once (warn, throttle or suspend: never
termination); over burst (twice hard in the tiers) it is throttled at once
and terminated once it has stayed over burst for 60 s.  Termination always
comes after a warning and a throttle, and only for a violation sustained
that long.

CPU is judged on its mean over the last 30 s (``cpu_window``), not sample
by sample: one core busy for 2 s is 6.7%, at most a warning in any tier,
and a computation shorter than 30 s is never terminated by the burst rule.
While an agent is suspended its CPU is judged at the mean it had when
suspended, so its own suspension does not count as calm.  Bounds: a
process that keeps wanting more than twice its CPU soft limit is warned
within 15 s, and terminated within 615 s (``cpu_window / 2 +
terminate_after``) plus two measurement periods, sooner above burst; a
suspension, for CPU or memory (a stopped process cannot free memory), ends in
termination unless the quota is changed (``set_quota``, ``remove_quota``
resume the process).  :mod:`mabeam.quotas._policy` states each rule.

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
