"""The quota manager's client functions (run in the caller's process)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import otp

from .._common import TABLES
from .._comms import whereis_agent
from ._policy import EscalationPolicy, QuotaSpec, tier
from ._server import QUOTAS, Enforcement, QuotaStatus

__all__ = [
    "set_quota",
    "remove_quota",
    "get_quota",
    "list_quotas",
    "configure_enforcement",
    "list_enforcements",
    "subscribe_enforcements",
    "unsubscribe_enforcements",
]

_EVERY_AGENT: Any = object()


def set_quota(agent_id: Hashable, quota: str | QuotaSpec, policy: EscalationPolicy | None = None) -> None:
    """Give ``agent_id`` a quota: a tier name ('lightweight', 'standard',
    'heavy') or a :class:`QuotaSpec`; ``policy`` sets the escalation timings
    (default: the manager's, warn at once, throttle after 30 s, suspend
    after 5 min, terminate after 10 min, or after 60 s over burst; CPU
    judged on its mean over 30 s).  Setting a quota again restarts the
    agent's escalation (a process the manager stopped is resumed).  Raises
    ``UnknownTier``, or ``TypeError`` for a quota that is neither."""
    spec = tier(quota) if isinstance(quota, str) else quota
    if not isinstance(spec, QuotaSpec):
        raise TypeError(f"a quota is a tier name or a QuotaSpec, not {quota!r}")
    otp.ask(QUOTAS, "set_quota", agent_id, spec, policy, whereis_agent(agent_id))


def remove_quota(agent_id: Hashable) -> None:
    """Stop watching the agent (a process the manager stopped is resumed)."""
    otp.ask(QUOTAS, "remove_quota", agent_id)


def get_quota(agent_id: Hashable) -> QuotaStatus | None:
    """The agent's quota state from the caller's replica of the tables
    registry (None: no quota, or the replica has not caught up yet)."""
    rows = otp.Registry.lookup(TABLES, ("quota", agent_id))
    return rows[0][1] if rows else None


def list_quotas() -> dict[Hashable, QuotaStatus]:
    """``{agent_id: QuotaStatus}`` of every quota (asked of the manager)."""
    return otp.ask(QUOTAS, "list_quotas")


def configure_enforcement(**changes: Any) -> None:
    """Change fields of the manager's ``QuotaOptions`` at run time: the
    measurement ``period``, the ``throttle_slice``, the ``throttle_nice``
    value (None: off), the default ``policy``.  ``TypeError`` for a field
    that does not exist."""
    otp.ask(QUOTAS, "configure_enforcement", changes)


def list_enforcements(agent_id: Hashable = _EVERY_AGENT) -> list[Enforcement]:
    """The recorded :class:`Enforcement` items of ``agent_id`` (every agent
    if omitted), oldest first; bounded per agent."""
    if agent_id is _EVERY_AGENT:
        return otp.ask(QUOTAS, "list_all_enforcements")
    return otp.ask(QUOTAS, "list_enforcements", agent_id)


def subscribe_enforcements() -> None:
    """Receive ``('$quota', agent_id, action)`` for every enforcement; the
    caller is monitored."""
    otp.ask(QUOTAS, "subscribe_enforcements", otp.self())


def unsubscribe_enforcements() -> None:
    """Stop receiving enforcement notifications."""
    otp.ask(QUOTAS, "unsubscribe_enforcements", otp.self())
