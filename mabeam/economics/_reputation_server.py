"""The reputation service: one named server (``mabeam.reputation``), the
single writer of every agent's reputation.

Each change is a :mod:`mabeam.economics.reputation` function: recency
weighting (``0.95**index`` over the newest 100 records), decay toward the
prior, penalties.  The rules' anti-gaming checks (a replayed record, an
implausibly perfect one) raise ``DuplicateRecord`` / ``ImplausibleRecord``
in the caller, and the refusal is counted in the agent's snapshot
(``refused``) so that gaming attempts are visible.  Every change is written
to the economics board.  State is in memory (a restart of the service
starts empty).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import otp

from . import _board
from .reputation import (
    DuplicateRecord,
    ImplausibleRecord,
    InvalidRecord,
    PerformanceRecord,
    Reputation,
    ReputationError,
    apply_decay,
    apply_penalty,
    new_reputation,
    rankings,
    record_outcome,
    reputation_score,
)

__all__ = ["REPUTATION", "ReputationServer", "ReputationSnapshot", "reputation_key", "child_spec"]

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


class ReputationServer(otp.Service):
    errors: ClassVar[tuple[type[BaseException], ...]] = (ReputationError,)

    def init(self, args: Any) -> None:
        self.reps: dict[Any, Reputation] = {}
        self.refused: dict[Any, int] = {}
        self.seq = 0

    @otp.operation
    def view(self, key: tuple) -> ReputationSnapshot | None:
        """The current snapshot of a board entry of this service (read-your-writes)."""
        rep = self.reps.get(key[1])
        return None if rep is None else self._snapshot(rep)

    @otp.operation
    def set_prior(self, agent: Any, prior: float) -> ReputationSnapshot:
        rep = self.reps.get(agent)
        return self._store(new_reputation(agent, prior) if rep is None else replace(rep, prior=prior))

    @otp.operation
    def record(self, agent: Any, record: PerformanceRecord) -> ReputationSnapshot:
        if not isinstance(record, PerformanceRecord):
            raise InvalidRecord(f"not a PerformanceRecord: {record!r}")
        rep = self._get(agent)
        try:
            return self._store(record_outcome(rep, record))
        except (DuplicateRecord, ImplausibleRecord):
            self.refused[agent] = self.refused.get(agent, 0) + 1
            self._store(rep)  # the refusal count is part of the published state
            raise

    @otp.operation
    def penalize(self, agent: Any, violation: str | float) -> ReputationSnapshot:
        return self._store(apply_penalty(self._get(agent), violation))

    @otp.operation
    def decay(self, agent: Any, factor: float, periods: int) -> list[ReputationSnapshot]:
        """Decay one agent, or every agent with ``agent=None``."""
        agents = list(self.reps) if agent is None else [agent]
        return [self._store(apply_decay(self._get(a), factor, periods)) for a in agents]

    @otp.operation
    def rankings(self, task_type: str | None, limit: int | None) -> list[tuple[Any, float]]:
        return rankings(self.reps, task_type=task_type, limit=limit)

    def _get(self, agent: Any) -> Reputation:
        rep = self.reps.get(agent)
        return new_reputation(agent) if rep is None else rep

    def _snapshot(self, rep: Reputation) -> ReputationSnapshot:
        types = sorted({r.task_type for r in rep.records if r.task_type is not None}, key=str)
        return ReputationSnapshot(
            agent_id=rep.agent_id,
            score=reputation_score(rep),
            by_task_type={t: reputation_score(rep, t) for t in types},
            records=len(rep.records),
            penalty=rep.penalty,
            prior=rep.prior,
            staleness=rep.staleness,
            refused=self.refused.get(rep.agent_id, 0),
            seq=self.seq,
        )

    def _store(self, rep: Reputation) -> ReputationSnapshot:
        self.reps[rep.agent_id] = rep
        self.seq += 1
        snapshot = self._snapshot(rep)
        _board.post(reputation_key(rep.agent_id), snapshot)
        return snapshot


def child_spec() -> otp.ChildSpec:
    return ReputationServer.child_spec(None, id=REPUTATION, name=REPUTATION)
