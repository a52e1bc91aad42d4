"""The reputation API: agents' reputations from performance records.

Writes go to the reputation service (``mabeam.reputation``, see
``_reputation_server``); :func:`get_reputation` and :func:`get_reputation_info`
read the economics board from the caller's replica (auctions use it for
``min_reputation``) and never queue behind the service.
"""

from __future__ import annotations

from typing import Any

import otp

from . import _board
from ._errors import NotStarted
from ._reputation_server import REPUTATION, ReputationSnapshot, reputation_key
from .reputation import DEFAULT_SCORE, RECENCY_WEIGHT, PerformanceRecord, new_reputation

__all__ = [
    "init_reputation",
    "record_performance",
    "get_reputation",
    "get_reputation_info",
    "decay_reputation",
    "penalize",
    "list_reputation_rankings",
]


def _service_missing() -> NotStarted:
    return NotStarted("the reputation service is not running")


def _write(op: str, *args: Any) -> ReputationSnapshot:
    """Run ``op`` in the reputation service and remember the ``seq`` of its
    answer, so that this process reads its own write."""
    with _board.absent_as(_service_missing()):
        snapshot: ReputationSnapshot = otp.ask(REPUTATION, op, *args)
    _board.note_seq(reputation_key(snapshot.agent_id), snapshot.seq)
    return snapshot


def init_reputation(agent_id: Any, initial_score: float = DEFAULT_SCORE) -> ReputationSnapshot:
    """Set the agent's prior (its score before any record; default 0.5)."""
    new_reputation(agent_id, initial_score)  # validated here: InvalidRecord in the caller
    return _write("set_prior", agent_id, initial_score)


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
    return _write("record", agent_id, record)


def get_reputation(agent_id: Any, task_type: str | None = None) -> float:
    """The agent's score from the board (the caller's replica): 0.5 for an
    agent nobody has rated; with ``task_type``, the score over that type's
    records (the overall score if it has none)."""
    snap = get_reputation_info(agent_id)
    if snap is None:
        return DEFAULT_SCORE
    if task_type is not None:
        return snap.by_task_type.get(task_type, snap.score)
    return snap.score


def get_reputation_info(agent_id: Any) -> ReputationSnapshot | None:
    """The agent's reputation snapshot from the board, or None if nobody rated it."""
    snapshot: ReputationSnapshot | None = _board.read(reputation_key(agent_id))
    return snapshot


def decay_reputation(
    agent_id: Any = None, factor: float = RECENCY_WEIGHT, periods: int = 1
) -> list[ReputationSnapshot]:
    """Age the evidence of one agent (or of all with None) by ``periods``:
    scores move toward their prior."""
    with _board.absent_as(_service_missing()):
        snapshots: list[ReputationSnapshot] = otp.ask(REPUTATION, "decay", agent_id, factor, periods)
    for snapshot in snapshots:
        _board.note_seq(reputation_key(snapshot.agent_id), snapshot.seq)
    return snapshots


def penalize(agent_id: Any, violation: str | float) -> ReputationSnapshot:
    """Sanction the agent (a violation name of the rules' table, or an amount)."""
    return _write("penalize", agent_id, violation)


def list_reputation_rankings(task_type: str | None = None, limit: int | None = 10) -> list[tuple[Any, float]]:
    """``(agent_id, score)`` best first (computed by the service)."""
    with _board.absent_as(_service_missing()):
        rows: list[tuple[Any, float]] = otp.ask(REPUTATION, "rankings", task_type, limit)
    return rows
