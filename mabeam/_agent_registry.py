"""The agent registry's client functions, and its names.

The registry itself, a Service that owns the records, is
:mod:`mabeam._agent_registry_server` (its docstring says how status,
restarts and deaths are followed); the records and their rules are
:mod:`mabeam._agent_records`.  Every function here is one request to it,
with :data:`DEFAULT_TIMEOUT` unless it takes a ``timeout``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import otp

from ._agent import AgentConfig
from ._agent_records import AgentRecord, AgentStatus, RegistryOptions
from ._agent_registry_server import AGENT_SUPERVISOR, DEFAULT_TIMEOUT, REGISTRY, AgentRegistry

__all__ = [
    "AgentRecord",
    "AgentRegistry",
    "AgentStatus",
    "RegistryOptions",
    "register_agent",
    "unregister_agent",
    "start_agent",
    "stop_agent",
    "get_agent",
    "get_agent_status",
    "await_status",
    "find_agents",
    "list_agents",
    "record_stop",
    "REGISTRY",
    "AGENT_SUPERVISOR",
    "DEFAULT_TIMEOUT",
]


def register_agent(config: AgentConfig) -> None:
    """Record an agent without starting it (it has no process yet); raises
    :class:`AgentAlreadyRegistered` for an id that is registered."""
    otp.ask(REGISTRY, "register", config, timeout=DEFAULT_TIMEOUT)


def unregister_agent(agent_id: Hashable) -> None:
    """Forget an agent that is not running (:class:`AgentStillRunning` if
    it is, or is being started); an unknown id is not an error."""
    otp.ask(REGISTRY, "unregister", agent_id, timeout=DEFAULT_TIMEOUT)


def get_agent(agent_id: Hashable) -> AgentRecord:
    """The agent's record, or :class:`UnknownAgent`."""
    record: AgentRecord = otp.ask(REGISTRY, "get_record", agent_id, timeout=DEFAULT_TIMEOUT)
    return record


def get_agent_status(agent_id: Hashable) -> AgentStatus:
    """The agent's status (:class:`UnknownAgent` if it is not registered)."""
    return get_agent(agent_id).status


def await_status(agent_id: Hashable, status: AgentStatus, timeout: float = 5.0) -> AgentRecord:
    """Wait until the agent's record has ``status`` (answered by the
    registry when it gets there: no polling); raises ``otp.CallTimeout``."""
    record: AgentRecord = otp.ask(REGISTRY, "await_status", agent_id, status, timeout=timeout)
    return record


def find_agents(
    capabilities: Iterable[str] = (), status: AgentStatus | None = None, metadata: Mapping[str, Any] | None = None
) -> list[Hashable]:
    """Ids of agents with all ``capabilities``, the ``status`` and every
    ``metadata`` field given (indexed lookups, intersected)."""
    ids: list[Hashable] = otp.ask(
        REGISTRY, "find_ids", tuple(capabilities), status, dict(metadata or {}), timeout=DEFAULT_TIMEOUT
    )
    return ids


def list_agents() -> list[AgentRecord]:
    """Every agent's record."""
    records: list[AgentRecord] = otp.ask(REGISTRY, "list_records", timeout=DEFAULT_TIMEOUT)
    return records


def record_stop(agent_id: Hashable, pid: otp.Pid, reason: Any = "shutdown") -> None:
    """Tell the registry that someone stopped the process ``pid`` of the
    agent, which exited with ``reason``: the record says ``'stopped'`` (not
    restarted) before the caller returns."""
    otp.ask(REGISTRY, "record_stop", agent_id, pid, reason, timeout=DEFAULT_TIMEOUT)


def start_agent(agent_id: Hashable, timeout: float = 30.0) -> otp.Pid:
    """Start a registered agent under the agent supervisor; returns its pid
    once its ``setup`` ran and its record says ``'running'``, with a fresh
    restart budget.  Raises :class:`UnknownAgent`,
    :class:`AgentAlreadyRunning`, :class:`AgentStartFailed` (its ``setup``
    raised, ...), or ``otp.CallTimeout`` if the start takes more than
    ``timeout`` seconds (the supervisor finishes it anyway)."""
    pid: otp.Pid = otp.ask(REGISTRY, "start_agent", agent_id, timeout=timeout)
    return pid


def stop_agent(agent_id: Hashable, timeout: float = 60.0, *, pid: otp.Pid | None = None) -> None:
    """Stop a running agent (:class:`AgentNotRunning` if it is not, or, with
    ``pid``, if it does not run as that process); returns after its OS
    process is gone and its record says ``'stopped'``.  It is not
    restarted, and a restart under way is cancelled.  The agent's
    ``teardown`` runs; the supervisor gives it its ``shutdown`` seconds,
    then kills it; ``timeout`` bounds the whole wait."""
    otp.ask(REGISTRY, "stop_agent", agent_id, pid, timeout=timeout)
