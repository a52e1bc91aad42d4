"""The reputation service: agents' reputations from performance records.

One named gen_server (``mabeam.reputation``), the single writer of every
reputation; each change is a :mod:`mabeam.rules.reputation` function:
recency weighting (``0.95**index`` over the newest 100 records), decay
toward the prior, penalties.  The anti-gaming checks of the rules (a
replayed record, an implausibly perfect one) raise ``DuplicateRecord`` /
``ImplausibleRecord`` in the caller, and the refusal is counted in the
agent's snapshot (``refused``) so that gaming attempts are visible.

Every change is written to the economics board: :func:`reputation` reads a
score from the caller's replica (auctions use it for ``min_reputation``)
and never queues behind the service.  State is in memory (a restart of the
service starts empty).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import otp

from ..rules import reputation as rules
from ..rules.reputation import DEFAULT_SCORE, RECENCY_WEIGHT, PerformanceRecord, ReputationError
from . import _wire

__all__ = [
    "REPUTATION",
    "ReputationServer",
    "ReputationSnapshot",
    "init_reputation",
    "record_performance",
    "reputation",
    "reputation_info",
    "decay_reputation",
    "penalize",
    "reputation_rankings",
    "child_spec",
]

REPUTATION = "mabeam.reputation"


@dataclass(frozen=True)
class ReputationSnapshot:
    """An agent's reputation as of ``seq``: its score, the score per task
    type it has records of, how many records are kept, the accumulated
    penalty and how many records were refused as gaming."""

    agent_id: Any
    score: float
    by_task_type: dict
    records: int
    penalty: float
    prior: float
    staleness: float
    refused: int
    seq: int


def reputation_key(agent_id: Any) -> tuple:
    return ("reputation", agent_id)


class ReputationServer(otp.GenServer):
    def init(self, _args: Any) -> Any:
        self.reps: dict[Any, rules.Reputation] = {}
        self.refused: dict[Any, int] = {}
        self.seq = 0
        return None

    def _snapshot(self, rep: rules.Reputation) -> ReputationSnapshot:
        types = sorted({r.task_type for r in rep.records if r.task_type is not None}, key=str)
        return ReputationSnapshot(
            agent_id=rep.agent_id,
            score=rules.reputation_score(rep),
            by_task_type={t: rules.reputation_score(rep, t) for t in types},
            records=len(rep.records),
            penalty=rep.penalty,
            prior=rep.prior,
            staleness=rep.staleness,
            refused=self.refused.get(rep.agent_id, 0),
            seq=self.seq,
        )

    def handle_call(self, request: tuple, from_: tuple, state: Any) -> Any:
        op = request[0]
        try:
            if op == "$view":
                rep = self.reps.get(request[1][1])
                return otp.Reply(_wire.ok(None if rep is None else self._snapshot(rep)), state)
            if op == "rankings":
                rows = rules.rankings(self.reps, task_type=request[1], limit=request[2])
                return otp.Reply(_wire.ok(rows), state)
            if op == "decay":
                _, agent, factor, periods = request
                agents = list(self.reps) if agent is None else [agent]
                for a in agents:
                    self._store(rules.apply_decay(self._get(a), factor, periods))
                return otp.Reply(_wire.ok([self._snapshot(self.reps[a]) for a in agents]), state)
            agent = request[1]
            if op == "init":
                rep = self.reps.get(agent)
                new = rules.new_reputation(agent, request[2]) if rep is None else _with_prior(rep, request[2])
            elif op == "record":
                new = self._record(agent, request[2])
            elif op == "penalize":
                new = rules.apply_penalty(self._get(agent), request[2])
            else:
                raise ReputationError(f"unknown reputation operation {op!r}")
        except ReputationError as exc:
            return otp.Reply(_wire.err(exc), state)
        return otp.Reply(_wire.ok(self._store(new)), state)

    def _get(self, agent: Any) -> rules.Reputation:
        rep = self.reps.get(agent)
        return rules.new_reputation(agent) if rep is None else rep

    def _record(self, agent: Any, record: PerformanceRecord) -> rules.Reputation:
        if not isinstance(record, PerformanceRecord):
            raise rules.InvalidRecord(f"not a PerformanceRecord: {record!r}")
        rep = self._get(agent)
        try:
            return rules.record_outcome(rep, record)
        except (rules.DuplicateRecord, rules.ImplausibleRecord):
            self.refused[agent] = self.refused.get(agent, 0) + 1
            self._store(rep)  # the refusal count is part of the published state
            raise

    def _store(self, rep: rules.Reputation) -> ReputationSnapshot:
        self.reps[rep.agent_id] = rep
        self.seq += 1
        snapshot = self._snapshot(rep)
        _wire.post(reputation_key(rep.agent_id), snapshot)
        return snapshot


def _with_prior(rep: rules.Reputation, prior: float) -> rules.Reputation:
    from dataclasses import replace

    return replace(rep, prior=prior)


def child_spec() -> otp.ChildSpec:
    return ReputationServer.child_spec(None, id=REPUTATION, name=REPUTATION)


def _ask(*request: Any, timeout: float | None = 5.0) -> Any:
    value = _wire.ask(REPUTATION, request, timeout, missing=_wire.NotStarted("the reputation service is not running"))
    for snap in value if isinstance(value, list) else [value]:
        if isinstance(snap, ReputationSnapshot):
            _wire.note_seq(reputation_key(snap.agent_id), snap.seq)
    return value


def init_reputation(agent_id: Any, initial_score: float = DEFAULT_SCORE) -> ReputationSnapshot:
    """Set the agent's prior (its score before any record; default 0.5)."""
    rules.new_reputation(agent_id, initial_score)  # validated here: InvalidRecord in the caller
    return _ask("init", agent_id, initial_score)


def record_performance(
    agent_id: Any,
    task_id: str,
    quality_score: float,
    client_satisfaction: float,
    completion_time_ms: float,
    cost_efficiency: float = 1.0,
    task_type: str | None = None,
) -> ReputationSnapshot:
    """Record how a task went and return the new reputation.  Raises
    ``InvalidRecord`` (bad values, here), ``DuplicateRecord`` (the same task
    with the same scores again) or ``ImplausibleRecord`` (all perfect in
    under 100 ms) from the service's anti-gaming checks."""
    record = PerformanceRecord(
        task_id, quality_score, client_satisfaction, completion_time_ms, cost_efficiency, task_type
    )
    return _ask("record", agent_id, record)


def reputation(agent_id: Any, task_type: str | None = None) -> float:
    """The agent's score from the board (the caller's replica): 0.5 for an
    agent nobody has rated; with ``task_type``, the score over that type's
    records (the overall score if it has none)."""
    snap = _wire.read(reputation_key(agent_id))
    if snap is None:
        return DEFAULT_SCORE
    if task_type is not None:
        return snap.by_task_type.get(task_type, snap.score)
    return snap.score


def reputation_info(agent_id: Any) -> ReputationSnapshot | None:
    return _wire.read(reputation_key(agent_id))


def decay_reputation(
    agent_id: Any = None, factor: float = RECENCY_WEIGHT, periods: int = 1
) -> list[ReputationSnapshot]:
    """Age the evidence of one agent (or of all with None) by ``periods``:
    scores move toward their prior."""
    return _ask("decay", agent_id, factor, periods)


def penalize(agent_id: Any, violation: str | float) -> ReputationSnapshot:
    """Sanction the agent (a violation name of the rules' table, or an amount)."""
    return _ask("penalize", agent_id, violation)


def reputation_rankings(task_type: str | None = None, limit: int | None = 10) -> list[tuple[Any, float]]:
    """``(agent_id, score)`` best first (computed by the service)."""
    return _ask("rankings", task_type, limit)
