"""The agent registry: what agents exist, their configuration, status and
restarts.

One :class:`otp.Service` owns the records (a single writer, so an update is
atomic) and stores them through the otp registry's backend interface
(memory or sqlite, chosen at start).  Capabilities, status and metadata are
fields of the backend's metadata index, so queries do not scan.

Status follows the agents' processes, never guessed:

* ``'registered'``: no process (an agent can be registered without running);
* ``'running'``: with its pid;
* ``'completed'``: its process exited normally;
* ``'stopped'``: it was stopped (``stop_agent``, a quota, the application's
  stop: an exit ``'shutdown'``);
* ``'crashed'``: any other exit.  A permanent or transient agent is
  restarted, within its budget; a temporary one stays crashed;
* ``'failed'``: it crashed more often than its restart budget allows, and
  is not restarted (``start_agent`` starts it again, with a fresh budget).

Restarts.  Each agent has its own budget: at most ``max_restarts`` restarts
within ``restart_period`` seconds (its :class:`AgentConfig`'s, by default
the application's ``agent_intensity`` and ``agent_period``).  The registry
restarts agents, not the agent supervisor: agents are temporary children
of it, so no agent's crashes count against a budget the others share (a
crash loop would exhaust the supervisor's intensity and take every agent
down with it).  A permanent agent is restarted after any exit but a
shutdown, a transient one after a crash; a restart whose start fails (its
``setup`` raised) counts as another crash.  An exit ``'shutdown'`` is never
restarted, permanent or not: it is how agents are stopped.  A restart moves
the record to ``'running'`` with the new pid and one more ``restarts`` in
one update.

Starting and stopping go through the registry, which asks the agent
supervisor without waiting for it (``otp.send_request``) and answers the
caller once the supervisor has: the record says so before the caller hears
it, a stop cancels a pending restart, and the registry never blocks on a
supervisor that is waiting for an agent's ``setup``.

Deaths.  The registry monitors every running agent
(:class:`mabeam._agent_watch.AgentWatch`), and before it answers about
agents it takes the exits the kernel already shows but whose ``DOWN`` is
still on its way: an agent that anyone has seen die is never reported
running.  The watch also follows the agent supervisor across its restarts:
the agents that died with the old one are crashes (``'killed'``), restarted
under the new one within their budgets, and agents started under the new
one are tracked like any other.

Agents of other nodes (``AgentConfig.node``) are followed the same way:
their pids are remote pids, monitored across the gateway.  When their node
goes down each one exits with ``'noconnection'``: a crash, restarted on the
next node of its list that is up (the rule is :class:`AgentConfig`'s, applied
by the agent's start function in the agent supervisor).

Running agents are found by pid through their registered names (see
:mod:`mabeam._comms`), not through this process; an agent of another node
is registered on this node too.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Hashable
from dataclasses import replace
from typing import Any, ClassVar

import otp
from otp.registry import open_backend

from ._agent import AgentConfig
from ._agent_jobs import PendingJob, StartJob, StopJob, failure_reason, read_reply
from ._agent_records import (
    AgentRecord,
    RegistryOptions,
    index_fields,
    is_restarted,
    record_key,
    status_for,
)
from ._agent_watch import (
    AGENT_SUPERVISOR,
    AgentEvent,
    AgentExited,
    AgentStarted,
    AgentWatch,
    SupervisorUp,
)
from ._common import already_started_pid
from ._errors import (
    AgentAlreadyRegistered,
    AgentAlreadyRunning,
    AgentNotRunning,
    AgentStartFailed,
    AgentStillRunning,
    MabeamError,
    UnknownAgent,
)

__all__ = ["AgentRegistry", "REGISTRY", "AGENT_SUPERVISOR", "DEFAULT_TIMEOUT"]

REGISTRY = "mabeam.agent_registry"
#: How long a client waits for the registry's answer (seconds).
DEFAULT_TIMEOUT = 5.0


class AgentRegistry(otp.Service):
    """The registry process; start it with ``AgentRegistry.start_link(RegistryOptions(...))``."""

    errors: ClassVar[tuple[type[BaseException], ...]] = (MabeamError,)

    def init(self, options: RegistryOptions) -> None:
        self.options = options
        # Records are owned by the registry, not by the agents: they outlive
        # the processes they describe.
        self.store = open_backend(options.backend or "memory", is_alive=lambda pid: True, mode="unique")
        self.me = otp.self()
        self.waiters: dict[tuple[Hashable, str], list[tuple]] = {}  # callers of await_status
        self.budgets: dict[Hashable, deque[float]] = {}  # monotonic times of recent restarts
        self.starts: dict[Hashable, StartJob] = {}
        self.stops: dict[Hashable, StopJob] = {}
        self.pending: dict[otp.Ref, PendingJob] = {}
        self.after_death: dict[otp.Ref, tuple[Hashable, StartJob]] = {}  # restarts waiting for a name
        # After a restart of the registry (with a persistent backend) the
        # watch lists who runs now; SupervisorUp reconciles the records.
        self.watch = AgentWatch(monitor_agents=True)

    # ------------------------------------------------------- operations

    @otp.operation
    def register(self, config: AgentConfig) -> None:
        if self._get(config.agent_id) is not None:
            raise AgentAlreadyRegistered(config.agent_id)
        self._put(AgentRecord(config))

    @otp.operation
    def get_record(self, agent_id: Hashable) -> AgentRecord:
        return self._settled(agent_id)

    @otp.operation
    def await_status(self, agent_id: Hashable, status: str) -> Any:
        """The record once it has ``status`` (deferred until then)."""
        record = self._get(agent_id)
        if record is not None:
            record = self._settled(agent_id)
            if record.status == status:
                return record
        assert self.caller is not None  # set while an operation runs
        self.waiters.setdefault((agent_id, status), []).append(self.caller)
        return otp.DEFER

    @otp.operation
    def unregister(self, agent_id: Hashable) -> None:
        record = self._get(agent_id)
        if record is None:
            return
        record = self._settled(agent_id)
        if record.status == "running" or agent_id in self.starts:
            raise AgentStillRunning(agent_id)
        self.budgets.pop(agent_id, None)
        self.store.unregister(record_key(agent_id))

    @otp.operation
    def start_agent(self, agent_id: Hashable) -> Any:
        """Start the agent (deferred: answered with its pid once its
        ``setup`` ran); a start by hand gives it a fresh restart budget."""
        record = self._settled(agent_id)
        if record.status == "running":
            raise AgentAlreadyRunning(agent_id)
        assert self.caller is not None
        self.budgets.pop(agent_id, None)
        start = self.starts.get(agent_id)
        if start is not None:  # a restart is under way: its outcome answers
            start.callers.append(self.caller)
            return otp.DEFER
        self._start(agent_id, StartJob(restart=False, callers=[self.caller]))
        return otp.DEFER

    @otp.operation
    def stop_agent(self, agent_id: Hashable, pid: otp.Pid | None) -> Any:
        """Stop the agent (only if it runs as ``pid``, when given); deferred
        until its process is gone and its record says ``'stopped'``."""
        record = self._settled(agent_id)
        assert self.caller is not None
        stop = self.stops.get(agent_id)
        if stop is not None and (pid is None or pid == stop.pid):
            stop.callers.append(self.caller)
            return otp.DEFER
        start = self.starts.get(agent_id)
        if start is not None and pid is None and record.status != "running":
            if start.req is None:  # waiting for an agent supervisor: never started
                del self.starts[agent_id]
                for caller in start.callers:
                    self.answer_error(caller, AgentStartFailed(agent_id, "stopped"))
                self._put(replace(record, status="stopped", pid=None))
                return None
            start.stoppers.append(self.caller)  # stopped as soon as it runs
            return otp.DEFER
        if record.status != "running" or record.pid is None or (pid is not None and pid != record.pid):
            raise AgentNotRunning(agent_id)
        self._stop(agent_id, record.pid, [self.caller])
        return otp.DEFER

    @otp.operation
    def record_stop(self, agent_id: Hashable, pid: otp.Pid, reason: Any) -> None:
        """The process ``pid`` of the agent exited with ``reason`` after
        someone stopped it (unless the record moved on to another process
        meanwhile): the record says ``'stopped'`` and it is not restarted."""
        record = self._get(agent_id)
        if record is not None and record.pid == pid:
            self._exited(agent_id, pid, reason, stopped=True)

    @otp.operation
    def find_ids(self, capabilities: tuple[str, ...], status: str | None, metadata: dict[str, Any]) -> list[Hashable]:
        if status is not None:
            self._settle()
        queries: list[tuple[str, Any]] = [(f"cap:{c}", True) for c in capabilities]
        if status is not None:
            queries.append(("status", status))
        queries += [(f"meta:{k}", v) for k, v in metadata.items()]
        if not queries:
            return [e.value.agent_id for e in self.store.list_all()]
        ids: list[Hashable] | None = None
        for field_, value in queries:  # intersect the index's answers
            found = [e.value.agent_id for e in self.store.match(field_, value)]
            ids = found if ids is None else [i for i in ids if i in set(found)]
        return ids or []

    @otp.operation
    def list_records(self) -> list[AgentRecord]:
        self._settle()
        return [e.value for e in self.store.list_all()]

    @otp.operation
    def health(self) -> dict[str, Any]:
        """The backend's health check, with ``agents_by_status``."""
        self._settle()
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
        key = record_key(record.agent_id)
        entries = self.store.lookup(key)
        if entries and entries[0].pid == self.me:
            self.store.update_value(key, self.me, record)
            self.store.update_metadata(key, index_fields(record))
        else:  # new, or written by the registry this one restarted (a persistent backend)
            if entries:
                self.store.unregister(key)
            self.store.register(key, self.me, record, index_fields(record))

    def _get(self, agent_id: Hashable) -> AgentRecord | None:
        entries = self.store.lookup(record_key(agent_id))
        return entries[0].value if entries else None

    def _settled(self, agent_id: Hashable) -> AgentRecord:
        """The record, once an exit of its process that the kernel already
        shows is taken in; :class:`UnknownAgent` if there is none."""
        record = self._get(agent_id)
        if record is None:
            raise UnknownAgent(agent_id)
        if record.pid is not None:
            self._settle([record])
            record = self._get(agent_id)
            assert record is not None
        return record

    def _settle(self, records: list[AgentRecord] | None = None) -> None:
        """Take in the exits of the processes of ``records`` (default: every
        record with a process) that the kernel already shows, before their
        ``DOWN`` comes in; a dead process the watch does not follow was
        recorded by the registry this one restarted, and is lost."""
        if records is None:
            records = [e.value for e in self.store.list_all() if e.value.pid is not None]
        watched = []
        for record in records:
            pid = record.pid
            if pid is None:
                continue
            if self.watch.is_watched(pid):
                watched.append(pid)
            elif not otp.is_alive(pid):
                self._exited(record.agent_id, pid, "lost")
        self._apply(self.watch.settle(watched))

    # ------------------------------------------------------- lifecycle

    def _apply(self, events: list[AgentEvent]) -> None:
        for event in events:
            if isinstance(event, AgentStarted):
                self._started(event.agent_id, event.pid)
            elif isinstance(event, AgentExited):
                self._exited(event.agent_id, event.pid, event.reason)
            elif isinstance(event, SupervisorUp):
                self._reconcile()

    def _started(self, agent_id: Hashable, pid: otp.Pid, restart: bool | None = None) -> None:
        """The agent runs as ``pid``; ``restart``: whether that is a restart
        (None: the start under way says)."""
        record = self._get(agent_id)
        if record is None or (record.status == "running" and record.pid == pid):
            return
        if restart is None:
            start = self.starts.get(agent_id)
            restart = start is not None and start.restart
        self._put(replace(record, status="running", pid=pid, restarts=record.restarts + restart))

    def _exited(self, agent_id: Hashable, pid: otp.Pid, reason: Any, stopped: bool = False) -> None:
        record = self._get(agent_id)
        if record is None or record.pid != pid:
            return
        stopped = stopped or agent_id in self.stops
        status = "stopped" if stopped else status_for(reason)
        record = replace(record, status=status, pid=None, last_reason=reason)
        if stopped or not is_restarted(record.config.restart, reason):
            self._put(record)
        else:
            self._crashed(record)

    def _crashed(self, record: AgentRecord, start: StartJob | None = None) -> None:
        """A restart (``start``, when a restart that failed is tried again),
        if the agent's budget allows one, else ``'failed'``."""
        agent_id, config = record.agent_id, record.config
        limit = self.options.max_restarts if config.max_restarts is None else config.max_restarts
        period = self.options.restart_period if config.restart_period is None else config.restart_period
        now = time.monotonic()
        times = self.budgets.setdefault(agent_id, deque())
        times.append(now)
        while times and times[0] < now - period:
            times.popleft()
        if len(times) > limit:
            del self.budgets[agent_id]
            self._put(replace(record, status="failed"))
            return
        self._put(record)
        self._start(agent_id, start or StartJob(restart=True))

    def _reconcile(self) -> None:
        """The watch follows a new agent supervisor and listed its agents:
        records that say running as a process the watch does not know (the
        registry restarted meanwhile, with a persistent backend) lost it;
        starts that waited for a supervisor go to this one."""
        watched = self.watch.running()
        for entry in self.store.list_all():
            record = entry.value
            pid = record.pid
            if record.status == "running" and pid is not None and watched.get(record.agent_id) != pid:
                self._exited(record.agent_id, pid, "lost")
        for agent_id, start in list(self.starts.items()):
            if start.req is None:
                self._start(agent_id, start)

    def _start(self, agent_id: Hashable, start: StartJob) -> None:
        self.starts[agent_id] = start
        record = self._get(agent_id)
        sup = self.watch.supervisor
        if record is None or sup is None:
            start.req = None  # sent when the watch follows an agent supervisor again
            return
        start.req = otp.send_request(sup, otp.Request("start_child", (record.config.child_spec(),), {}))
        self.pending[start.req.ref] = PendingJob(agent_id, start.req, start)

    def _stop(self, agent_id: Hashable, pid: otp.Pid, callers: list[tuple]) -> None:
        stop = self.stops[agent_id] = StopJob(pid, callers)
        sup = self.watch.supervisor
        if sup is None:  # between two agent supervisors: it dies with the old one
            stop.req = None
            return
        stop.req = otp.send_request(sup, otp.Request("terminate_child", (pid,), {}))
        self.pending[stop.req.ref] = PendingJob(agent_id, stop.req, stop)

    def _start_answered(self, agent_id: Hashable, start: StartJob, reply: otp.Ok | otp.Failed) -> None:
        current = self.starts.get(agent_id) is start
        if type(reply) is otp.Failed and isinstance(reply.error, otp.CallError):
            self._start_again(agent_id, start, reply.error)
            return
        sup = start.req.server if start.req is not None else None
        if (
            current
            and type(reply) is otp.Ok
            and isinstance(reply.value, otp.Pid)
            and sup != self.watch.supervisor
            and not self.watch.is_watched(reply.value)
        ):  # started under a supervisor that is gone since: it died with it
            self._start_again(agent_id, start, otp.CalleeExit("shutdown", sup))
            return
        reason = failure_reason(reply) if type(reply) is otp.Failed else "ignore"
        holder = already_started_pid(reason)
        if current and start.restart and holder is not None and otp.is_alive(holder):
            # its previous process, dying with a lost supervisor, still has the name
            self.after_death[otp.monitor(holder)] = (agent_id, start)
            start.req = None
            return
        if current:
            del self.starts[agent_id]
        if type(reply) is otp.Ok and isinstance(reply.value, otp.Pid):
            pid = reply.value
            if current:
                self._started(agent_id, pid, start.restart)  # (its event came first: nothing to do)
            for caller in start.callers:
                self.answer(caller, pid)
            self._stop_after(agent_id, pid, start.stoppers)
            return
        if holder is not None:
            for caller in start.callers:  # started by someone else, meanwhile
                self.answer_error(caller, AgentAlreadyRunning(agent_id))
            self._stop_after(agent_id, holder, start.stoppers)
            return
        for caller in start.callers:
            self.answer_error(caller, AgentStartFailed(agent_id, reason))
        record = self._get(agent_id)
        if record is None or not current:
            self._stop_after(agent_id, None, start.stoppers)
        elif start.stoppers:
            self._put(replace(record, status="stopped", pid=None))
            self._stop_after(agent_id, None, start.stoppers)
        elif start.restart:  # a restart that did not start is another crash
            start.callers = []
            self._crashed(replace(record, status="crashed", pid=None, last_reason=reason), start)

    def _start_again(self, agent_id: Hashable, start: StartJob, error: otp.CallError) -> None:
        """The agent supervisor asked to start the agent died first: the
        one that follows starts it (now, if the watch follows it already)."""
        dead = start.req.server if start.req is not None else None
        start.req = None
        current = self.starts.get(agent_id)
        if current is not start:  # superseded meanwhile: the start under way answers for it
            if current is not None:
                current.callers += start.callers
                current.stoppers += start.stoppers
            else:
                for caller in start.callers:
                    self.answer_error(caller, AgentStartFailed(agent_id, error.reason))
                self._stop_after(agent_id, None, start.stoppers)
        elif self.watch.supervisor is not None and self.watch.supervisor != dead:
            self._start(agent_id, start)
        # else: sent on the watch's next SupervisorUp

    def _stop_after(self, agent_id: Hashable, pid: otp.Pid | None, stoppers: list[tuple]) -> None:
        """The ``stop_agent`` callers who came while a start was under way:
        the process it started is stopped (if it still is the agent's), or
        they wait for the start under way now, or nothing runs."""
        if not stoppers:
            return
        record = self._get(agent_id)
        start = self.starts.get(agent_id)
        if record is not None and pid is not None and record.pid == pid and record.status == "running":
            stop = self.stops.get(agent_id)
            if stop is not None:
                stop.callers += stoppers
            else:
                self._stop(agent_id, pid, stoppers)
        elif start is not None:
            start.stoppers += stoppers
        else:
            for caller in stoppers:
                self.answer(caller, None)

    def _stop_answered(self, agent_id: Hashable, stop: StopJob, reply: otp.Ok | otp.Failed) -> None:
        if self.stops.get(agent_id) is not stop:
            return
        if type(reply) is otp.Failed and isinstance(reply.error, otp.CallError):
            stop.req = None  # the supervisor died, and the agent with it
        self._stopped_when_gone(agent_id)

    def _stopped_when_gone(self, agent_id: Hashable) -> None:
        """Answer the stop of ``agent_id`` once its process is gone."""
        stop = self.stops.get(agent_id)
        if stop is None or stop.req is not None and stop.req.ref in self.pending:
            return
        record = self._get(agent_id)
        if record is not None and record.pid == stop.pid:
            self._apply(self.watch.settle([stop.pid]))  # terminate_child answers after the death
            record = self._get(agent_id)
            if record is not None and record.pid == stop.pid:
                if otp.is_alive(stop.pid):
                    return  # it dies with its supervisor: its DOWN answers
                self._exited(agent_id, stop.pid, "shutdown", stopped=True)
        del self.stops[agent_id]
        for caller in stop.callers:
            self.answer(caller, None)

    # ------------------------------------------------------- messages

    def handle_info(self, msg: Any, state: Any) -> otp.NoReply:
        """The watch's news of agents and supervisors, and the agent
        supervisor's answers to starts and stops."""
        events = self.watch.handle(msg)
        if events is not None:
            self._apply(events)
            for agent_id in [a for a, stop in self.stops.items() if stop.req is None]:
                self._stopped_when_gone(agent_id)
        elif isinstance(msg, otp.DOWN) and msg.ref in self.after_death:
            agent_id, start = self.after_death.pop(msg.ref)
            if self.starts.get(agent_id) is start:
                self._start(agent_id, start)
        elif isinstance(msg, (otp.Response, otp.DOWN)) and msg.ref in self.pending:
            pending = self.pending.pop(msg.ref)
            reply = read_reply(msg, pending.req)
            if isinstance(pending.job, StartJob):
                self._start_answered(pending.agent_id, pending.job, reply)
            else:
                self._stop_answered(pending.agent_id, pending.job, reply)
        return otp.NoReply(state)

    def terminate(self, reason: Any, state: Any) -> None:
        self.store.close()
