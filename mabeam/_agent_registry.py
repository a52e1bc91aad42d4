"""The agent registry: what agents exist, their configuration and status.

One :class:`otp.Service` owns the records (a single writer, so an update is
atomic) and stores them through the otp registry's backend interface
(memory or sqlite, chosen at start).  Capabilities, status and metadata are
fields of the backend's metadata index, so queries do not scan.

Status is driven by the agent supervisor's events, never guessed:
``'registered'`` (no process: an agent can be registered without running),
``'running'`` (with its pid), ``'completed'`` (exited normally),
``'stopped'`` (shutdown), ``'crashed'`` (anything else).  A restart by the
supervisor moves the record back to ``'running'`` with the new pid in one
update.

Running agents are found by pid through their registered names (see
:mod:`mabeam._comms`), not through this process.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

import otp
from otp.registry import open_backend

from ._agent import AgentConfig, agent_name
from ._errors import (
    AgentAlreadyRegistered,
    AgentAlreadyRunning,
    AgentNotRunning,
    AgentStartFailed,
    AgentStillRunning,
    MabeamError,
    UnknownAgent,
)

__all__ = [
    "AgentRecord",
    "AgentRegistry",
    "AgentStatus",
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
]

REGISTRY = "mabeam.agent_registry"
AGENT_SUPERVISOR = "mabeam.agents"
#: How long a client waits for the registry's answer (seconds).
DEFAULT_TIMEOUT = 5.0

#: Where an agent is in its life (see the module documentation).
AgentStatus = Literal["registered", "running", "completed", "stopped", "crashed"]


@dataclass(frozen=True)
class AgentRecord:
    """What the registry knows about one agent."""

    config: AgentConfig
    status: AgentStatus = "registered"
    pid: otp.Pid | None = None
    #: Restarts by the agent supervisor (crashes it recovered from).
    restarts: int = 0
    #: The exit reason of its last process, if it had one.
    last_reason: Any = None
    #: ``time.time()`` of the last change.
    updated: float = 0.0

    @property
    def agent_id(self) -> Hashable:
        return self.config.agent_id


def _status_for(reason: Any) -> AgentStatus:
    if reason == "normal":
        return "completed"
    if otp.is_shutdown(reason):
        return "stopped"
    return "crashed"


def _index(record: AgentRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {"status": record.status}
    fields.update({f"cap:{c}": True for c in record.config.capabilities})
    fields.update({f"meta:{k}": v for k, v in record.config.metadata.items()})
    return fields


def _key(agent_id: Hashable) -> tuple[str, Hashable]:
    return ("agent", agent_id)


class AgentRegistry(otp.Service):
    """The registry process; start it with ``AgentRegistry.start_link(backend)``."""

    errors: ClassVar[tuple[type[BaseException], ...]] = (MabeamError,)

    def init(self, backend: Any) -> None:
        # Records are owned by the registry, not by the agents: they outlive
        # the processes they describe.
        self.store = open_backend(backend or "memory", is_alive=lambda pid: True, mode="unique")
        self.me = otp.self()
        self.waiters: dict[tuple[Hashable, str], list[tuple]] = {}  # callers of await_status
        otp.supervisor.subscribe(AGENT_SUPERVISOR)
        for entry in self.store.list_all():  # after a restart: who runs now?
            record = entry.value
            pid = otp.whereis(agent_name(record.agent_id))
            if pid is not None and pid != record.pid:
                self._put(replace(record, status="running", pid=pid))
            elif pid is None and record.status == "running":
                self._put(replace(record, status="crashed", pid=None, last_reason="lost"))

    # ------------------------------------------------------- operations

    @otp.operation
    def register(self, config: AgentConfig) -> None:
        if self._get(config.agent_id) is not None:
            raise AgentAlreadyRegistered(config.agent_id)
        self._put(AgentRecord(config))

    @otp.operation
    def get_record(self, agent_id: Hashable) -> AgentRecord:
        record = self._get(agent_id)
        if record is None:
            raise UnknownAgent(agent_id)
        return record

    @otp.operation
    def await_status(self, agent_id: Hashable, status: str) -> Any:
        """The record once it has ``status`` (deferred until then)."""
        record = self._get(agent_id)
        if record is not None and record.status == status:
            return record
        assert self.caller is not None  # set while an operation runs
        self.waiters.setdefault((agent_id, status), []).append(self.caller)
        return otp.DEFER

    @otp.operation
    def unregister(self, agent_id: Hashable) -> None:
        record = self._get(agent_id)
        if record is not None and record.status == "running":
            raise AgentStillRunning(agent_id)
        self.store.unregister(_key(agent_id))

    @otp.operation
    def record_stop(self, agent_id: Hashable, pid: otp.Pid, reason: Any) -> None:
        """The process ``pid`` of the agent exited with ``reason`` (unless
        the record moved on to another process meanwhile)."""
        record = self._get(agent_id)
        if record is not None and record.pid == pid:
            self._put(replace(record, status=_status_for(reason), pid=None, last_reason=reason))

    @otp.operation
    def find_ids(self, capabilities: tuple[str, ...], status: str | None, metadata: dict[str, Any]) -> list[Hashable]:
        queries: list[tuple[str, Any]] = [(f"cap:{c}", True) for c in capabilities]
        if status is not None:
            queries.append(("status", status))
        queries += [(f"meta:{k}", v) for k, v in metadata.items()]
        if not queries:
            return [e.value.agent_id for e in self.store.list_all()]
        ids: list[Hashable] | None = None
        for field, value in queries:  # intersect the index's answers
            found = [e.value.agent_id for e in self.store.match(field, value)]
            ids = found if ids is None else [i for i in ids if i in set(found)]
        return ids or []

    @otp.operation
    def list_records(self) -> list[AgentRecord]:
        return [e.value for e in self.store.list_all()]

    @otp.operation
    def health(self) -> dict[str, Any]:
        """The backend's health check, with ``agents_by_status``."""
        health = dict(self.store.health_check())
        statuses: dict[str, int] = {}
        for entry in self.store.list_all():
            statuses[entry.value.status] = statuses.get(entry.value.status, 0) + 1
        health["agents_by_status"] = statuses
        return health

    # ------------------------------------------------------- the records

    def _put(self, record: AgentRecord) -> None:
        record = replace(record, updated=time.time())
        for caller in self.waiters.pop((record.agent_id, record.status), []):
            self.answer(caller, record)
        key = _key(record.agent_id)
        if self.store.lookup(key):
            self.store.update_value(key, self.me, record)
            self.store.update_metadata(key, _index(record))
        else:
            self.store.register(key, self.me, record, _index(record))

    def _get(self, agent_id: Hashable) -> AgentRecord | None:
        entries = self.store.lookup(_key(agent_id))
        return entries[0].value if entries else None

    def handle_info(self, msg: Any, state: Any) -> otp.NoReply:
        """The agent supervisor's events: a child started or exited."""
        if type(msg) is tuple and len(msg) >= 5 and msg[0] == "$supervisor":
            event, agent_id = msg[2], msg[3]
            record = self._get(agent_id)
            if record is not None:
                if event == "started":
                    restarts = record.restarts + (1 if record.status in ("crashed", "running") else 0)
                    self._put(replace(record, status="running", pid=msg[4], restarts=restarts))
                elif event == "exited" and record.pid == msg[4]:
                    reason = msg[5]
                    self._put(replace(record, status=_status_for(reason), pid=None, last_reason=reason))
        return otp.NoReply(state)

    def terminate(self, reason: Any, state: Any) -> None:
        self.store.close()


# ------------------------------------------------------------------ client


def register_agent(config: AgentConfig) -> None:
    """Record an agent without starting it (it has no process yet); raises
    :class:`AgentAlreadyRegistered` for an id that is registered."""
    otp.ask(REGISTRY, "register", config, timeout=DEFAULT_TIMEOUT)


def unregister_agent(agent_id: Hashable) -> None:
    """Forget an agent that is not running (:class:`AgentStillRunning` if
    it is); an unknown id is not an error."""
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
    """Tell the registry that the process ``pid`` of the agent exited with
    ``reason``, for whoever stopped it and must see the record follow at
    once (the supervisor's event may come later)."""
    otp.ask(REGISTRY, "record_stop", agent_id, pid, reason, timeout=DEFAULT_TIMEOUT)


def start_agent(agent_id: Hashable, timeout: float = 30.0) -> otp.Pid:
    """Start a registered agent under the agent supervisor; returns its pid
    once its ``setup`` ran.  Raises :class:`UnknownAgent`,
    :class:`AgentAlreadyRunning`, :class:`AgentStartFailed` (its ``setup``
    raised, ...), or ``otp.CallTimeout`` if the start takes more than
    ``timeout`` seconds (the supervisor finishes it anyway)."""
    record = get_agent(agent_id)
    try:
        pid = otp.supervisor.start_child(AGENT_SUPERVISOR, record.config.child_spec(), timeout)
    except otp.SupervisorError as exc:
        reason = exc.reason
        if isinstance(reason, tuple) and reason and reason[0] == "already_started":
            raise AgentAlreadyRunning(agent_id) from None
        raise AgentStartFailed(agent_id, reason) from None
    if pid is None:  # only a start function that ignores its start does this; Agent.init never does
        raise AgentStartFailed(agent_id, "ignore")
    return pid


def stop_agent(agent_id: Hashable, timeout: float = 60.0) -> None:
    """Stop a running agent (:class:`AgentNotRunning` if it is not); returns
    after its OS process is gone and its record says ``'stopped'``.  The
    supervisor gives it its ``shutdown`` seconds, then kills it; ``timeout``
    bounds the whole wait."""
    pid = otp.whereis(agent_name(agent_id))
    if pid is None:
        raise AgentNotRunning(agent_id)
    try:
        otp.supervisor.terminate_child(AGENT_SUPERVISOR, pid, timeout)
    except otp.SupervisorError as exc:
        if exc.reason != "not_found":
            raise
    record_stop(agent_id, pid, "shutdown")
