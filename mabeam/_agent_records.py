"""Agent records: what the agent registry stores about each agent, and the
pure rules it applies to them (status after an exit, whether an exit is
restarted, the backend's metadata index).  No process here: the registry
(:mod:`mabeam._agent_registry`) is their one writer."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Literal

import otp

from ._agent import AgentConfig, RestartPolicy

__all__ = ["AgentStatus", "AgentRecord", "RegistryOptions", "status_for", "is_restarted", "index_fields", "record_key"]

#: Where an agent is in its life (see the module documentation).
AgentStatus = Literal["registered", "running", "completed", "stopped", "crashed", "failed"]


@dataclass(frozen=True)
class AgentRecord:
    """What the registry knows about one agent."""

    config: AgentConfig
    status: AgentStatus = "registered"
    pid: otp.Pid | None = None
    #: Restarts by the registry (crashes it recovered from).
    restarts: int = 0
    #: The exit reason of its last process (or why its last restart did
    #: not start), if it had one.
    last_reason: Any = None
    #: ``time.time()`` of the last change.
    updated: float = 0.0

    @property
    def agent_id(self) -> Hashable:
        return self.config.agent_id

    @property
    def node(self) -> str | None:
        """The node its process runs on (None: it has none)."""
        return None if self.pid is None else otp.node(self.pid)


@dataclass(frozen=True)
class RegistryOptions:
    """How the registry starts: its backend, and the restart budget of
    agents whose config sets none (``max_restarts`` within
    ``restart_period`` seconds)."""

    backend: Any = "memory"
    max_restarts: int = 50
    restart_period: float = 10.0


def status_for(reason: Any) -> AgentStatus:
    if otp.is_normal(reason):
        return "completed"
    if otp.is_shutdown(reason):
        return "stopped"
    return "crashed"


def is_restarted(policy: RestartPolicy, reason: Any) -> bool:
    """Whether an exit with ``reason`` is followed by a restart."""
    if policy == "permanent":
        return not otp.is_shutdown(reason)
    if policy == "transient":
        return not otp.is_clean(reason)
    return False


def index_fields(record: AgentRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {"status": record.status}
    fields.update({f"cap:{c}": True for c in record.config.capabilities})
    fields.update({f"meta:{k}": v for k, v in record.config.metadata.items()})
    return fields


def record_key(agent_id: Hashable) -> tuple[str, Hashable]:
    return ("agent", agent_id)
