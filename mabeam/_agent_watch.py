"""Following the agents of the agent supervisor, across its restarts.

Processes that keep state about running agents (the agent registry, the
quota manager, the load balancer, elections) learn that an agent started or
exited from the agent supervisor's events (``otp.supervisor.subscribe``).
A subscription lives as long as the supervisor process it was made to:
``mabeam.sup`` restarts the agent supervisor (one_for_one) as a new process,
and a watcher that subscribed once, in its ``init``, hears nothing from the
new one.  :class:`AgentWatch` is a subscription that survives the restart
(an example of its use ends this documentation).

How.  The watch subscribes to the application supervisor ``mabeam.sup``,
whose ``started`` event names each new agent supervisor, and to the agent
supervisor itself, which it monitors.  When a new agent supervisor starts,
the watch subscribes to it and lists its children (``which_children``, then
``get_childspec`` for the id of each child it did not hear of), so an agent
started before the subscription took effect is reported all the same: an
agent is reported started once, from its ``started`` event or from the
listing, whichever comes first.  Every request is asynchronous
(``otp.send_request``, answers taken in ``handle``): a watcher never blocks
on a supervisor, which may be waiting for an agent's ``setup``, which may be
asking the watcher something.  (In particular a child of ``mabeam.sup`` may
create its watch in ``init``, while ``mabeam.sup`` is still starting its
children: that subscription is answered when the supervisor is done.)

Exits.  Each agent's exit is reported once, with its exit reason.  With
``monitor_agents=True`` the watch monitors every agent it reports started,
so exits are known from the agent's own death, and :meth:`AgentWatch.settle`
can take an exit that the kernel shows but whose ``DOWN`` is still on its
way (the agent registry answers only after it did, so nothing it says
contradicts an agent's death that someone has already seen).  Otherwise
exits come from the supervisor's ``exited`` events; the agents of a lost
supervisor are monitored then, and their ``DOWN`` s report them.

The events, in the order they happen for one agent: :class:`AgentStarted`,
then :class:`AgentExited`.  :class:`SupervisorDown` says the agent
supervisor the watch followed is gone (its agents' exits follow, as they
are seen); :class:`SupervisorUp` that the watch follows a new one and has
listed its agents.

Adopting it in a watcher that subscribed once::

    def init(self, args):
        self.agents = AgentWatch()           # instead of otp.supervisor.subscribe(AGENT_SUPERVISOR)

    def handle_info(self, msg, state):
        events = self.agents.handle(msg)     # first: its DOWNs are messages too
        if events is not None:
            for event in events:
                if isinstance(event, AgentStarted):
                    ...                      # what the 'started' event did
            return otp.NoReply(state)
        ...                                  # the watcher's own messages
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import otp

from ._names import APP

log = logging.getLogger("mabeam")

__all__ = [
    "AGENT_SUPERVISOR",
    "AgentWatch",
    "AgentEvent",
    "AgentStarted",
    "AgentExited",
    "SupervisorUp",
    "SupervisorDown",
]

#: The registered name of the dynamic supervisor every agent runs under.
AGENT_SUPERVISOR = "mabeam.agents"

#: How long :meth:`AgentWatch.settle` waits for the DOWN of an agent the
#: kernel shows dead (it is on its way; the bound only guards against a bug).
SETTLE_TIMEOUT = 5.0


@dataclass(frozen=True)
class AgentStarted:
    """The agent ``agent_id`` runs as ``pid``."""

    agent_id: Hashable
    pid: otp.Pid


@dataclass(frozen=True)
class AgentExited:
    """The process ``pid`` of the agent ``agent_id`` exited with ``reason``."""

    agent_id: Hashable
    pid: otp.Pid
    reason: Any


@dataclass(frozen=True)
class SupervisorUp:
    """The watch follows the agent supervisor ``pid``: it is subscribed to
    its events and listed its agents; ``agents`` are those running under it
    then (each also reported by an :class:`AgentStarted`; none when the
    watch was created with ``report_running=False``)."""

    pid: otp.Pid
    agents: Mapping[Hashable, otp.Pid] = field(default_factory=dict)


@dataclass(frozen=True)
class SupervisorDown:
    """The agent supervisor ``pid`` is gone, and every agent under it with
    it (their exits are reported as they are seen)."""

    pid: otp.Pid


AgentEvent = AgentStarted | AgentExited | SupervisorUp | SupervisorDown


# What each asynchronous request of the watch was for.
class _AppSubscribed(NamedTuple):
    pass


class _Subscribed(NamedTuple):
    sup: otp.Pid


class _Listed(NamedTuple):
    sup: otp.Pid


class _Spec(NamedTuple):
    sup: otp.Pid
    pid: otp.Pid


_Purpose = _AppSubscribed | _Subscribed | _Listed | _Spec


def _down_of(ref: otp.Ref) -> Callable[[Any], bool]:
    """A receive's match for the DOWN of the monitor ``ref``."""
    return lambda m: isinstance(m, otp.DOWN) and m.ref == ref


class _Agent(NamedTuple):
    agent_id: Hashable
    sup: otp.Pid


class AgentWatch:
    """The agents of the agent supervisor, followed across its restarts
    (see the module documentation).  Create it in the watching process
    (its ``init``); hand it every message with :meth:`handle`.

    ``app`` and ``supervisor`` are the registered names of the application
    supervisor and of the agent supervisor (a watch outside MABEAM's tree
    follows what it is given).  Without an application supervisor the watch
    cannot see restarts; without an agent supervisor it waits for one to be
    started by the application supervisor.

    ``report_running=False``: the agents already running when the watch is
    created are not listed nor reported (a watcher that only reacts to
    starts saves a request per agent); agents found under a later agent
    supervisor always are, since their starts were not heard.

    Hand it every message the process receives before looking at the
    message yourself: its answers and ``DOWN`` s are ordinary messages
    (``otp.send_request``, monitors), and it returns None for whatever is
    not its own, ``DOWN`` s of other monitors included."""

    def __init__(
        self,
        *,
        monitor_agents: bool = False,
        report_running: bool = True,
        app: Any = APP,
        supervisor: Any = AGENT_SUPERVISOR,
    ) -> None:
        self.monitor_agents = monitor_agents
        self.supervisor_name = supervisor
        self.me = otp.self()
        #: The agent supervisor followed now (None: between two).
        self.supervisor: otp.Pid | None = None
        self._sup_ref: otp.Ref | None = None
        self._listing = True  # whether the supervisor followed is being listed
        self._past: set[otp.Pid] = set()  # supervisors followed before
        self._agents: dict[otp.Pid, _Agent] = {}  # reported started, not yet exited
        self._monitors: dict[otp.Ref, otp.Pid] = {}
        self._monitor_of: dict[otp.Pid, otp.Ref] = {}
        self._requests: dict[otp.Ref, tuple[_Purpose, otp.RequestId]] = {}
        self._unlisted: dict[otp.Pid, set[otp.Pid]] = {}  # supervisor -> children whose id is asked
        self.app = otp.whereis(app)
        if self.app is not None:
            self._send(self.app, "subscribe", (self.me,), _AppSubscribed())
        else:
            log.info("agent watch: no application supervisor %r, restarts of %r are not followed", app, supervisor)
        sup = otp.whereis(supervisor)
        if sup is not None:
            self._follow(sup, listing=report_running)

    # ------------------------------------------------------------ queries

    def running(self) -> dict[Hashable, otp.Pid]:
        """The agents reported started and not yet exited."""
        return {a.agent_id: pid for pid, a in self._agents.items()}

    def is_watched(self, pid: otp.Pid) -> bool:
        """True if ``pid`` is an agent reported started and not yet exited."""
        return pid in self._agents

    def settle(self, pids: Any = None) -> list[AgentEvent]:
        """With ``monitor_agents``: the exits of the agents among ``pids``
        (default: every agent reported running) that the kernel already
        shows dead, taken now rather than when their ``DOWN`` comes in.
        A process that answers about agents calls it before it answers."""
        if not self.monitor_agents:
            return []
        events: list[AgentEvent] = []
        for pid in list(self._agents) if pids is None else list(pids):
            ref = self._monitor_of.get(pid)
            if ref is None or otp.is_alive(pid):
                continue
            try:
                down = otp.receive(SETTLE_TIMEOUT, _down_of(ref))
            except otp.Timeout:
                log.error("agent watch: no DOWN of the dead agent %r within %s s", pid, SETTLE_TIMEOUT)
                continue
            del self._monitors[ref]
            events += self._exited(pid, down.reason)
        return events

    # ------------------------------------------------------------ messages

    def handle(self, msg: Any) -> list[AgentEvent] | None:
        """The events ``msg`` means, or None if it is not the watch's
        message (an empty list: it was, and says nothing new)."""
        if isinstance(msg, (otp.Response, otp.DOWN)):
            request = self._requests.pop(msg.ref, None)
            if request is not None:
                return self._answered(request[0], request[1], msg)
            if isinstance(msg, otp.DOWN):
                return self._down(msg)
            return None
        if type(msg) is tuple and len(msg) >= 4 and msg[0] == "$supervisor":
            sender = msg[1]
            if sender == self.supervisor:
                return self._event(msg)
            if sender == self.app:
                if msg[2] == "started" and msg[3] == self.supervisor_name and len(msg) >= 5:
                    return self._switch(msg[4])
                return []
            if sender in self._past:
                if msg[2] == "exited" and len(msg) >= 6:
                    return self._exited(msg[4], msg[5])
                return []  # a lost supervisor's late news: its agents died with it
        return None

    def _down(self, msg: otp.DOWN) -> list[AgentEvent] | None:
        if msg.ref == self._sup_ref:
            return self._lose()
        pid = self._monitors.pop(msg.ref, None)
        if pid is not None:
            return self._exited(pid, msg.reason)
        return None

    def _event(self, msg: tuple) -> list[AgentEvent]:
        """An event of the agent supervisor followed now."""
        event = msg[2]
        if event == "started" and len(msg) >= 5:
            return self._started(msg[3], msg[4])
        if event == "exited" and len(msg) >= 6:
            return self._exited(msg[4], msg[5])
        return []

    # ------------------------------------------------------------ agents

    def _started(self, agent_id: Hashable, pid: otp.Pid) -> list[AgentEvent]:
        assert self.supervisor is not None  # only the followed supervisor starts agents
        if pid in self._agents:
            return []
        self._agents[pid] = _Agent(agent_id, self.supervisor)
        if self.monitor_agents:
            self._monitor(pid)
        return [AgentStarted(agent_id, pid)]

    def _exited(self, pid: otp.Pid, reason: Any) -> list[AgentEvent]:
        agent = self._agents.pop(pid, None)
        if agent is None:
            return []
        ref = self._monitor_of.pop(pid, None)
        if ref is not None:
            self._monitors.pop(ref, None)
            otp.demonitor(ref, flush=True)
        return [AgentExited(agent.agent_id, pid, reason)]

    def _monitor(self, pid: otp.Pid) -> None:
        if pid not in self._monitor_of:
            ref = otp.monitor(pid)
            self._monitors[ref] = pid
            self._monitor_of[pid] = ref

    # ------------------------------------------------------------ supervisors

    def _follow(self, sup: otp.Pid, listing: bool = True) -> None:
        """Subscribe to the agent supervisor ``sup`` and list its children
        (in this order, so that every agent is in one or the other)."""
        self.supervisor = sup
        self._sup_ref = otp.monitor(sup)
        self._listing = listing
        self._send(sup, "subscribe", (self.me,), _Subscribed(sup))
        if listing:
            self._send(sup, "which_children", (), _Listed(sup))

    def _switch(self, sup: otp.Pid) -> list[AgentEvent]:
        """``sup`` is the agent supervisor now."""
        if sup == self.supervisor or sup in self._past:
            return []
        events = self._lose() if self.supervisor is not None else []
        self._follow(sup)
        return events

    def _lose(self) -> list[AgentEvent]:
        """The agent supervisor followed is gone: its agents are dying with
        it, and each one's DOWN will say how."""
        old = self.supervisor
        assert old is not None and self._sup_ref is not None
        otp.demonitor(self._sup_ref, flush=True)
        self.supervisor = self._sup_ref = None
        self._past.add(old)
        self._unlisted.pop(old, None)
        for pid, agent in self._agents.items():
            if agent.sup == old:
                self._monitor(pid)
        return [SupervisorDown(old)]

    def _send(self, server: otp.Pid, op: str, args: tuple, purpose: _Purpose) -> None:
        req = otp.send_request(server, otp.Request(op, args, {}))
        self._requests[req.ref] = (purpose, req)

    def _answered(self, purpose: _Purpose, req: otp.RequestId, msg: Any) -> list[AgentEvent]:
        try:
            reply = otp.check_response(msg, req)
        except otp.CallError as exc:  # the supervisor died: its DOWN is handled on its own
            reply = otp.Failed(exc)
        if isinstance(purpose, _AppSubscribed):
            return self._resync(reply)
        if isinstance(purpose, _Listed):
            return self._listed(purpose.sup, reply)
        if isinstance(purpose, _Spec):
            return self._specified(purpose, reply)
        if purpose.sup == self.supervisor and not self._listing and type(reply) is otp.Ok:
            return [SupervisorUp(purpose.sup)]  # (a refusal means the supervisor died)
        return []

    def _resync(self, reply: Any) -> list[AgentEvent]:
        """Subscribed to the application supervisor: a restart of the agent
        supervisor from now on is an event; one that happened before is
        seen by asking the name registry (not a replica) who holds it."""
        if type(reply) is not otp.Ok:
            log.warning("agent watch: cannot follow the application supervisor (%r)", reply)
            self.app = None
            return []
        sup = otp.whereis(self.supervisor_name, cached=False)
        if sup is None or not otp.is_alive(sup):
            return []  # being restarted: its 'started' event will come
        return self._switch(sup)

    def _listed(self, sup: otp.Pid, reply: Any) -> list[AgentEvent]:
        if sup != self.supervisor or type(reply) is not otp.Ok:
            return []
        unlisted = self._unlisted[sup] = set()
        for child in reply.value:
            pid = child.pid
            if isinstance(pid, otp.Pid) and pid not in self._agents:
                unlisted.add(pid)
                self._send(sup, "get_childspec", (pid,), _Spec(sup, pid))
        return self._up(sup)

    def _specified(self, purpose: _Spec, reply: Any) -> list[AgentEvent]:
        sup, pid = purpose.sup, purpose.pid
        unlisted = self._unlisted.get(sup)
        if unlisted is None or sup != self.supervisor:
            return []
        unlisted.discard(pid)
        events: list[AgentEvent] = []
        if type(reply) is otp.Ok:  # else not_found: it exited before it was asked about
            events += self._started(reply.value.id, pid)
        return events + self._up(sup)

    def _up(self, sup: otp.Pid) -> list[AgentEvent]:
        """The listing of ``sup`` is complete once no child's id is awaited."""
        if self._unlisted.get(sup):
            return []
        del self._unlisted[sup]
        agents = {a.agent_id: pid for pid, a in self._agents.items() if a.sup == sup}
        return [SupervisorUp(sup, agents)]
