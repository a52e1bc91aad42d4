"""Leader election with terms, one election process per group.

``start_election(group, candidates)`` starts (or finds) a service named
``('mabeam.election', group)`` under the coordination supervisor.  It
elects a leader among the candidates that are alive, monitors it, and when
the leader exits elects again; every elected leader gets the next term
(1, 2, 3...), so terms only grow and ``(term, leader)`` names one reign.

The rule (deterministic, documented):

* ``rule='ask'`` (default): every candidate is asked at once with
  ``kind='coordinate'`` and payload ``('election', {'group': g, 'term':
  t})``; the agent's ``handle_coordination`` answers its priority (a
  number) to stand, or None to decline.  Candidates that are not running,
  raise, or do not answer within ``timeout`` do not stand.
* ``rule='priority'``: no messages; the priority is the ``'priority'``
  field of the agent's registry metadata (default 0), among candidates
  that are running.

The highest priority wins; a tie goes to the smallest ``repr(agent_id)``.

The election process asks the candidates itself, as a session host does
(:mod:`._host_asks`: one cast each, answered by a message, its deadline
the gen_server timeout), so it keeps answering while they are asked and
no process is started per election.  With no candidate standing it waits
for a candidate to be (re)started by the agent supervisor, and also
retries every ``RETRY`` seconds.  Each election is
published on the topic ``('mabeam.election', group)`` as ``('elected',
term, leader)``.  ``get_leader(group)`` blocks (up to its timeout) while there
is no leader; ``await_new_term(group, term)`` blocks until a later term.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable
from enum import Enum
from typing import Any, NamedTuple

import otp
from mabeam._agent_registry import get_agent
from mabeam._agent_watch import AgentStarted, AgentWatch
from mabeam._comms import publish, whereis_agent
from mabeam._errors import UnknownAgent

from ._agent_calls import AgentRequest, Answer, Outcome
from ._errors import CoordinationError, InvalidParameter, NoLeader, check_timeout
from ._host_asks import AgentReply, Asker, Step
from ._primitives import Primitive, ensure, reaching

__all__ = [
    "ElectionRule",
    "ElectionServer",
    "Leadership",
    "start_election",
    "get_leader",
    "await_new_term",
    "get_election_info",
    "election_topic",
    "RULES",
]


class ElectionRule(str, Enum):
    """How candidates stand (see the module doc)."""

    ASK = "ask"
    PRIORITY = "priority"


RULES = tuple(rule.value for rule in ElectionRule)
#: Seconds between attempts while no candidate stands.
RETRY = 0.5


class Leadership(NamedTuple):
    """One reign: the term and the leader's agent id."""

    term: int
    leader: Hashable


class ElectionParams(NamedTuple):
    group: Any
    candidates: list
    rule: ElectionRule
    timeout: float


class Elected(NamedTuple):
    """The outcome of one election."""

    winner: Hashable
    pid: otp.Pid
    standing: dict  # candidate -> priority


class Reign(NamedTuple):
    term: int
    leader: Hashable
    pid: otp.Pid
    monitor: otp.Ref


class LeaderWaiter(NamedTuple):
    caller: tuple
    after_term: int | None  # None: any leader


def election_topic(group: Any) -> tuple:
    """The pub/sub topic the election of ``group`` publishes on."""
    return (Primitive.ELECTION.value, group)


def _is_priority(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _asked_priorities(candidates: list, outcomes: list[Outcome]) -> dict:
    return {c: o.value for c, o in zip(candidates, outcomes) if isinstance(o, Answer) and _is_priority(o.value)}


def _registered_priorities(candidates: list) -> dict:
    standing = {}
    for candidate in candidates:
        if whereis_agent(candidate) is None:
            continue
        try:
            value = get_agent(candidate).config.metadata.get("priority", 0)
        except UnknownAgent:  # unregistered meanwhile
            continue
        if _is_priority(value):
            standing[candidate] = value
    return standing


def choose_leader(standing: dict) -> Elected | None:
    """The winner among the candidates that stand and are alive, or None."""
    for candidate in sorted(standing, key=lambda c: (-standing[c], repr(c))):
        pid = whereis_agent(candidate)
        if pid is not None and otp.is_alive(pid):
            return Elected(candidate, pid, standing)
    return None


class ElectionServer(otp.Service):
    errors = (CoordinationError,)

    def init(self, params: ElectionParams) -> Any:
        self.params = params
        self.term = 0
        self.reign: Reign | None = None
        self.asker = Asker()
        self.asking: Step | None = None  # the candidates asked now (rule 'ask')
        self.waiters: list[LeaderWaiter] = []
        self.history: list[tuple[int, Hashable, dict]] = []  # (term, leader, priorities)
        # candidates (re)started, also after a restart of the agent supervisor
        self.agents = AgentWatch(report_running=False)
        return otp.NoReply(None, otp.Continue("elect"))

    def next_action(self) -> Any:
        if self.asking is not None:  # 'timeout' at its deadline, if nothing else comes
            return max(0.0, self.asking.deadline - time.monotonic()) + 0.001
        if self.reign is None:
            return RETRY
        return None

    def _elect(self) -> None:
        if self.asking is not None or self.reign is not None:
            return
        params = self.params
        if params.rule is ElectionRule.PRIORITY:
            try:
                standing = _registered_priorities(params.candidates)
            except otp.CallError:  # the agent registry is restarting: the next retry will see
                return
            self._decide(choose_leader(standing))
            return
        payload = ("election", {"group": params.group, "term": self.term + 1})
        requests = [AgentRequest(c, "coordinate", payload) for c in params.candidates]
        step = self.asker.ask(None, requests, params.timeout)
        if step.left:
            self.asking = step
        else:
            self._count(step)

    def _count(self, step: Step) -> None:
        """Every candidate answered, or the deadline passed."""
        self.asking = None
        self.asker.withdraw(step)
        self._decide(choose_leader(_asked_priorities(self.params.candidates, step.outcomes)))

    def _decide(self, elected: Elected | None) -> None:
        if elected is not None:
            self._elected(elected)

    def _elected(self, elected: Elected) -> None:
        self.term += 1
        self.reign = Reign(self.term, elected.winner, elected.pid, otp.monitor(elected.pid))
        self.history.append((self.term, elected.winner, elected.standing))
        now = Leadership(self.term, elected.winner)
        keep = []
        for waiter in self.waiters:
            if waiter.after_term is None or self.term > waiter.after_term:
                self.answer(waiter.caller, now)
            else:
                keep.append(waiter)
        self.waiters = keep
        publish(election_topic(self.params.group), ("elected", self.term, elected.winner))

    def handle_continue(self, term: Any, state: Any) -> Any:
        self._elect()
        return otp.NoReply(state, self.next_action())

    @otp.operation
    def await_leader(self, after_term: int | None) -> Leadership:
        """The reign, once there is a leader with a term after ``after_term`` (deferred)."""
        reign = self.reign
        if reign is not None and (after_term is None or reign.term > after_term):
            return Leadership(reign.term, reign.leader)
        assert self.caller is not None  # set while an operation runs
        self.waiters.append(LeaderWaiter(self.caller, after_term))
        return otp.DEFER

    @otp.operation
    def info(self) -> dict:
        reign = self.reign
        return {
            "group": self.params.group,
            "term": self.term,
            "leader": reign.leader if reign else None,
            "leader_pid": reign.pid if reign else None,
            "candidates": list(self.params.candidates),
            "rule": self.params.rule.value,
            "electing": self.asking is not None,
            "history": [(t, w) for t, w, _ in self.history],
        }

    def handle_info(self, msg: Any, state: Any) -> Any:
        reign = self.reign
        events = self.agents.handle(msg)  # first: its DOWNs and answers are messages too
        done = self.asker.take(msg) if events is None and type(msg) in (AgentReply, otp.DOWN) else None
        if events is not None:
            candidates = self.params.candidates
            if any(isinstance(e, AgentStarted) and e.agent_id in candidates for e in events):
                self._elect()
        elif done is not None:
            if self.asking is not None and self.asking in done:
                self._count(self.asking)
        elif isinstance(msg, otp.DOWN) and reign is not None and msg.ref == reign.monitor:
            self.reign = None
            self._elect()
        elif msg == "timeout":
            if self.asking is not None and time.monotonic() >= self.asking.deadline:
                self._count(self.asking)
            else:
                self._elect()
        return otp.NoReply(state, self.next_action())


def start_election(group: Any, candidates: Iterable[Hashable], *, rule: str = "ask", timeout: float = 2.0) -> otp.Pid:
    """Get or create the election of ``group`` among ``candidates`` (agent
    ids); ``timeout`` bounds how long candidates are asked.  An existing
    election keeps its own candidates and rule."""
    ids = list(candidates)
    if not ids or len(set(ids)) != len(ids):
        raise InvalidParameter("candidates must be distinct and not empty")
    if rule not in RULES:
        raise InvalidParameter(f"rule must be one of {RULES}, not {rule!r}")
    check_timeout(timeout)
    params = ElectionParams(group, ids, ElectionRule(rule), float(timeout))
    return ensure(Primitive.ELECTION, group, ElectionServer, params)


def _wait(group: Any, after: int | None, timeout: float) -> Leadership:
    try:
        with reaching(Primitive.ELECTION, group) as pid:
            return otp.ask(pid, "await_leader", after, timeout=timeout)
    except otp.CallTimeout:
        what = "no leader" if after is None else f"no term after {after}"
        raise NoLeader(f"election {group!r}: {what} within {timeout} s") from None


def get_leader(group: Any, timeout: float = 5.0) -> Leadership:
    """``(term, agent_id)`` of the current leader; waits up to ``timeout``
    while there is none (raises :class:`NoLeader`, or
    :class:`UnknownPrimitive` if the group has no election)."""
    return _wait(group, None, timeout)


def await_new_term(group: Any, after_term: int, timeout: float = 5.0) -> Leadership:
    """Wait until a leader with a term greater than ``after_term`` is elected."""
    return _wait(group, after_term, timeout)


def get_election_info(group: Any, timeout: float = 5.0) -> dict:
    """Term, leader, candidates, rule and the history of ``(term, leader)``."""
    with reaching(Primitive.ELECTION, group) as pid:
        return otp.ask(pid, "info", timeout=timeout)
