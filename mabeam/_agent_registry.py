"""The agent registry: what agents exist, their configuration and status.

One gen_server owns the records (a single writer, so an update is atomic)
and stores them through the otp registry's backend interface (memory or
sqlite, chosen at start).  Capabilities, status and metadata are fields of
the backend's metadata index, so queries do not scan.

Status is driven by the agent supervisor's events, never guessed:
``'registered'`` (no process, AC-11), ``'running'`` (with its pid),
``'completed'`` (exited normally), ``'stopped'`` (shutdown), ``'crashed'``
(anything else).  A restart by the supervisor moves the record back to
``'running'`` with the new pid in one update.

Running agents are found by pid through their registered names (see
:mod:`mabeam._comms`), not through this process.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import otp
from otp.registry import NotFound, open_backend

from ._agent import AgentConfig, AgentError, agent_name

__all__ = [
    "AgentRecord",
    "AgentRegistry",
    "register_agent",
    "unregister_agent",
    "start_agent",
    "stop_agent",
    "get_agent",
    "agent_status",
    "await_status",
    "find_agents",
    "list_agents",
    "REGISTRY",
    "AGENT_SUPERVISOR",
]

REGISTRY = "mabeam.agent_registry"
AGENT_SUPERVISOR = "mabeam.agents"


@dataclass(frozen=True)
class AgentRecord:
    config: AgentConfig
    status: str = "registered"
    pid: otp.Pid | None = None
    restarts: int = 0
    last_reason: Any = None
    updated: float = 0.0

    @property
    def agent_id(self) -> Any:
        return self.config.agent_id


def _status_for(reason: Any) -> str:
    if reason == "normal":
        return "completed"
    if otp.is_shutdown(reason):
        return "stopped"
    return "crashed"


def _index(record: AgentRecord) -> dict:
    fields = {"status": record.status}
    fields.update({f"cap:{c}": True for c in record.config.capabilities})
    fields.update({f"meta:{k}": v for k, v in record.config.metadata.items()})
    return fields


class AgentRegistry(otp.GenServer):
    """The registry process; start it with ``AgentRegistry.start_link(backend)``."""

    def init(self, backend: Any) -> Any:
        # Records are owned by the registry, not by the agents: they outlive
        # the processes they describe.
        self.store = open_backend(backend or "memory", is_alive=lambda pid: True, mode="unique")
        self.me = otp.self()
        self.waiters: dict = {}  # (agent id, status) -> callers waiting for it
        otp.supervisor.subscribe(AGENT_SUPERVISOR)
        for entry in self.store.list_all():  # after a restart: who runs now?
            record = entry.value
            pid = otp.whereis(agent_name(record.agent_id))
            if pid is not None and pid != record.pid:
                self._put(replace(record, status="running", pid=pid))
            elif pid is None and record.status == "running":
                self._put(replace(record, status="crashed", pid=None, last_reason="lost"))
        return self

    def _put(self, record: AgentRecord) -> None:
        record = replace(record, updated=time.time())
        for from_ in self.waiters.pop((record.agent_id, record.status), []):
            otp.reply(from_, ("ok", record))
        key = ("agent", record.agent_id)
        if self.store.lookup(key):
            self.store.update_value(key, self.me, record)
            self.store.update_metadata(key, _index(record))
        else:
            self.store.register(key, self.me, record, _index(record))

    def _get(self, agent_id: Any) -> AgentRecord | None:
        entries = self.store.lookup(("agent", agent_id))
        return entries[0].value if entries else None

    def handle_call(self, request: tuple, from_: tuple, state: Any) -> Any:
        op = request[0]
        if op == "register":
            config = request[1]
            if self._get(config.agent_id) is not None:
                return otp.Reply(("error", AgentError(config.agent_id, "already_registered")), state)
            self._put(AgentRecord(config))
            return otp.Reply(("ok", None), state)
        if op == "get":
            return otp.Reply(("ok", self._get(request[1])), state)
        if op == "await":
            _, agent_id, status = request
            record = self._get(agent_id)
            if record is not None and record.status == status:
                return otp.Reply(("ok", record), state)
            self.waiters.setdefault((agent_id, status), []).append(from_)
            return otp.NoReply(state)
        if op == "unregister":
            record = self._get(request[1])
            if record is not None and record.status == "running":
                return otp.Reply(("error", AgentError(request[1], "running")), state)
            self.store.unregister(("agent", request[1]))
            return otp.Reply(("ok", None), state)
        if op == "stopped":
            _, agent_id, pid, reason = request
            record = self._get(agent_id)
            if record is not None and record.pid == pid:
                self._put(replace(record, status=_status_for(reason), pid=None, last_reason=reason))
            return otp.Reply(("ok", None), state)
        if op == "find":
            return otp.Reply(("ok", self._find(*request[1:])), state)
        if op == "list":
            return otp.Reply(("ok", [e.value for e in self.store.list_all()]), state)
        if op == "health":
            health = dict(self.store.health_check())
            statuses: dict = {}
            for entry in self.store.list_all():
                statuses[entry.value.status] = statuses.get(entry.value.status, 0) + 1
            health["agents_by_status"] = statuses
            return otp.Reply(("ok", health), state)
        return otp.Reply(("error", AgentError(None, ("unknown_call", op))), state)

    def _find(self, capabilities: tuple, status: str | None, metadata: dict) -> list:
        queries = [(f"cap:{c}", True) for c in capabilities]
        if status is not None:
            queries.append(("status", status))
        queries += [(f"meta:{k}", v) for k, v in metadata.items()]
        if not queries:
            return [e.value.agent_id for e in self.store.list_all()]
        ids = None
        for field, value in queries:  # intersect the index's answers
            found = [e.value.agent_id for e in self.store.match(field, value)]
            ids = found if ids is None else [i for i in ids if i in set(found)]
        return ids or []

    def handle_info(self, msg: Any, state: Any) -> Any:
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


def _ask(*request: Any, timeout: float = 5.0) -> Any:
    status, value = otp.call(REGISTRY, request, timeout)
    if status == "error":
        raise value
    return value


def register_agent(config: AgentConfig) -> None:
    """Record an agent without starting it (it has no process yet)."""
    _ask("register", config)


def unregister_agent(agent_id: Any) -> None:
    _ask("unregister", agent_id)


def get_agent(agent_id: Any) -> AgentRecord:
    record = _ask("get", agent_id)
    if record is None:
        raise NotFound(("agent", agent_id))
    return record


def agent_status(agent_id: Any) -> str:
    return get_agent(agent_id).status


def await_status(agent_id: Any, status: str, timeout: float = 5.0) -> AgentRecord:
    """Wait until the agent's record has ``status`` (answered by the
    registry when it gets there: no polling); raises ``otp.CallTimeout``."""
    return _ask("await", agent_id, status, timeout=timeout)


def find_agents(capabilities: Iterable[str] = (), status: str | None = None, metadata: dict | None = None) -> list:
    """Ids of agents with all ``capabilities``, the ``status`` and every
    ``metadata`` field given (indexed lookups, intersected)."""
    return _ask("find", tuple(capabilities), status, dict(metadata or {}))


def list_agents() -> list[AgentRecord]:
    return _ask("list")


def start_agent(agent_id: Any, timeout: float = 30.0) -> otp.Pid:
    """Start a registered agent under the agent supervisor; returns its pid
    once its ``setup`` ran.  Raises ``otp.CallTimeout`` if that takes more
    than ``timeout`` seconds (the supervisor finishes the start anyway)."""
    record = get_agent(agent_id)
    try:
        pid = otp.supervisor.start_child(AGENT_SUPERVISOR, record.config.child_spec(), timeout)
    except otp.SupervisorError as exc:
        reason = exc.reason
        if isinstance(reason, tuple) and reason and reason[0] == "already_started":
            raise AgentError(agent_id, "already_running") from None
        raise AgentError(agent_id, reason) from None
    return pid


def stop_agent(agent_id: Any, timeout: float = 60.0) -> None:
    """Stop a running agent; returns after its OS process is gone and its
    record says ``'stopped'``.  The supervisor gives it its ``shutdown``
    seconds, then kills it; ``timeout`` bounds the whole wait."""
    pid = otp.whereis(agent_name(agent_id))
    if pid is None:
        raise AgentError(agent_id, "not_running")
    try:
        otp.supervisor.terminate_child(AGENT_SUPERVISOR, pid, timeout)
    except otp.SupervisorError as exc:
        if exc.reason != "not_found":
            raise
    _ask("stopped", agent_id, pid, "shutdown")
