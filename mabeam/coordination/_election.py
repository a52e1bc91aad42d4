"""Leader election with terms, one election process per group.

``election(group, candidates)`` starts (or finds) a gen_server named
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

The election itself runs in a task under ``mabeam.tasks``, so the election
process keeps answering while candidates are asked.  With no candidate
standing it waits for a candidate to be (re)started by the agent
supervisor, and also retries every ``RETRY`` seconds.  Each election is
published on the topic ``('mabeam.election', group)`` as ``('elected',
term, leader)``.  ``leader(group)`` blocks (up to its timeout) while there
is no leader; ``await_new_term(group, term)`` blocks until a later term.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import otp
from mabeam._agent_registry import AGENT_SUPERVISOR, get_agent
from mabeam._app import TASKS
from mabeam._comms import agent_pid, broadcast, publish

from ._primitives import PREFIXES, ask, ensure
from ._session import CoordinationError, InvalidParameter

__all__ = [
    "NoLeader",
    "ElectionServer",
    "election",
    "leader",
    "await_new_term",
    "election_info",
    "election_topic",
    "RULES",
]

RULES = ("ask", "priority")
#: Seconds between attempts while no candidate stands.
RETRY = 0.5


class NoLeader(CoordinationError, TimeoutError):
    """No leader (or no new term) within the timeout."""


def election_topic(group: Any) -> tuple:
    return (PREFIXES["election"], group)


def _priority(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def run_election(group: Any, candidates: list, term: int, rule: str, timeout: float) -> tuple | None:
    """One election (runs in a task): ``(winner, pid, {candidate: priority})`` or None."""
    standing: dict = {}
    if rule == "ask":
        answers = broadcast(candidates, ("election", {"group": group, "term": term}), timeout, "coordinate")
        for candidate, (status, value) in zip(candidates, answers):
            if status == "ok" and _priority(value):
                standing[candidate] = value
    else:
        from otp.registry import NotFound

        for candidate in candidates:
            if agent_pid(candidate) is None:
                continue
            try:
                value = get_agent(candidate).config.metadata.get("priority", 0)
            except NotFound:
                continue
            if _priority(value):
                standing[candidate] = value
    for candidate in sorted(standing, key=lambda c: (-standing[c], repr(c))):
        pid = agent_pid(candidate)
        if pid is not None and otp.is_alive(pid):
            return (candidate, pid, standing)
    return None


class ElectionServer(otp.GenServer):
    def init(self, params: tuple) -> Any:
        self.group, self.candidates, self.rule, self.timeout = params
        self.term = 0
        self.leader = self.leader_pid = self.leader_ref = None
        self.task = None
        self.waiters: list = []  # (from_, after_term); after_term None: any leader
        self.history: list = []  # (term, leader, priorities)
        otp.supervisor.subscribe(AGENT_SUPERVISOR)
        return otp.NoReply(self, otp.Continue("elect"))

    def _next(self) -> otp.NoReply:
        if self.leader is None and self.task is None:
            return otp.NoReply(self, RETRY)  # 'timeout' comes if nothing else does
        return otp.NoReply(self)

    def _elect(self) -> None:
        if self.task is None and self.leader is None:
            self.task = otp.TaskSupervisor.async_nolink(
                TASKS,
                run_election,
                self.group,
                self.candidates,
                self.term + 1,
                self.rule,
                self.timeout,
                shutdown="brutal_kill",
            )

    def _elected(self, winner: Any, pid: otp.Pid, standing: dict) -> None:
        self.term += 1
        self.leader, self.leader_pid = winner, pid
        self.leader_ref = otp.monitor(pid)
        self.history.append((self.term, winner, standing))
        keep = []
        for from_, after in self.waiters:
            if after is None or self.term > after:
                otp.reply(from_, ("ok", (self.term, winner)))
            else:
                keep.append((from_, after))
        self.waiters = keep
        publish(election_topic(self.group), ("elected", self.term, winner))

    def handle_continue(self, term: Any, state: Any) -> Any:
        self._elect()
        return self._next()

    def handle_call(self, request: tuple, from_: tuple, state: Any) -> Any:
        op = request[0]
        if op == "leader":
            after = request[1]
            if self.leader is not None and (after is None or self.term > after):
                return otp.Reply(("ok", (self.term, self.leader)), self)
            self.waiters.append((from_, after))
            return self._next()
        if op == "info":
            info = {
                "group": self.group,
                "term": self.term,
                "leader": self.leader,
                "leader_pid": self.leader_pid,
                "candidates": list(self.candidates),
                "rule": self.rule,
                "electing": self.task is not None,
                "history": [(t, w) for t, w, _ in self.history],
            }
            return otp.Reply(("ok", info), self)
        return otp.Reply(("error", ("unknown_call", request)), self)

    def handle_info(self, msg: Any, state: Any) -> Any:
        task = self.task
        if type(msg) is tuple and len(msg) == 3 and msg[0] == "$task" and task is not None and msg[1] == task.ref:
            otp.demonitor(task.ref, flush=True)
            self.task = None
            if msg[2] is not None:
                self._elected(*msg[2])
        elif isinstance(msg, otp.DOWN) and task is not None and msg.ref == task.ref:
            self.task = None  # the election task crashed: try again later
        elif isinstance(msg, otp.DOWN) and msg.ref == self.leader_ref:
            self.leader = self.leader_pid = self.leader_ref = None
            self._elect()
        elif type(msg) is tuple and len(msg) >= 5 and msg[0] == "$supervisor" and msg[2] == "started":
            if msg[3] in self.candidates:
                self._elect()
        elif msg == "timeout":
            self._elect()
        return self._next()


def election(group: Any, candidates: Iterable[Hashable], *, rule: str = "ask", timeout: float = 2.0) -> otp.Pid:
    """Get or create the election of ``group`` among ``candidates`` (agent
    ids); ``timeout`` bounds how long candidates are asked.  An existing
    election keeps its own candidates and rule."""
    ids = list(candidates)
    if not ids or len(set(ids)) != len(ids):
        raise InvalidParameter("candidates must be distinct and not empty")
    if rule not in RULES:
        raise InvalidParameter(f"rule must be one of {RULES}, not {rule!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise InvalidParameter(f"timeout must be > 0, got {timeout!r}")
    return ensure("election", group, ElectionServer, (group, ids, rule, float(timeout)))


def _wait(group: Any, after: int | None, timeout: float) -> tuple:
    try:
        return ask("election", group, ("leader", after), timeout)
    except otp.CallTimeout:
        what = "no leader" if after is None else f"no term after {after}"
        raise NoLeader(f"election {group!r}: {what} within {timeout} s") from None


def leader(group: Any, timeout: float = 5.0) -> tuple:
    """``(term, agent_id)`` of the current leader; waits up to ``timeout``
    while there is none (raises :class:`NoLeader`, or
    :class:`UnknownPrimitive` if the group has no election)."""
    return _wait(group, None, timeout)


def await_new_term(group: Any, after_term: int, timeout: float = 5.0) -> tuple:
    """Wait until a leader with a term greater than ``after_term`` is elected."""
    return _wait(group, after_term, timeout)


def election_info(group: Any, timeout: float = 5.0) -> dict:
    """Term, leader, candidates, rule and the history of ``(term, leader)``."""
    return ask("election", group, ("info",), timeout)
