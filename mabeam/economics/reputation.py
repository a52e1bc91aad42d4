"""Agent reputation from performance records, as pure functions over frozen data.

The score is the recency-weighted average, with weight ``0.95**index``
(index 0 = newest), of ``(quality_score + client_satisfaction) / 2`` over the
newest 100 records, and 0.5 for an agent nobody has rated. Two anti-gaming
checks (a replayed record, an implausibly perfect one) raise typed errors
instead of silently dropping the record.

* **Decay pulls toward the prior, not toward zero.** Decaying the score
  itself would leave an idle agent *below* a brand-new identity, which
  rewards abandoning an identity and starting over (whitewashing). Decay
  shrinks the evidence toward the agent's prior instead:
  ``score = prior + staleness * (raw - prior)``, with ``staleness`` multiplied
  by the decay factor per period and reset to 1 when a new record arrives
  (fresh evidence makes the history current again).
* **Penalties are separate from evidence.** A sanction (collusion, fraud; see
  :data:`VIOLATION_PENALTIES`) is subtracted after the average and is not
  undone by decay or by new records; the final score is clamped to ``[0, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from ._errors import EconomicsError

__all__ = [
    "DEFAULT_SCORE",
    "RECENCY_WEIGHT",
    "HISTORY_LIMIT",
    "SUSPICIOUS_COMPLETION_MS",
    "VIOLATION_PENALTIES",
    "ReputationError",
    "InvalidRecord",
    "DuplicateRecord",
    "ImplausibleRecord",
    "PerformanceRecord",
    "Reputation",
    "new_reputation",
    "check_record",
    "record_outcome",
    "weighted_score",
    "reputation_score",
    "score_of",
    "apply_decay",
    "apply_penalty",
    "rankings",
]

DEFAULT_SCORE = 0.5
RECENCY_WEIGHT = 0.95
HISTORY_LIMIT = 100
SUSPICIOUS_COMPLETION_MS = 100.0

VIOLATION_PENALTIES: Mapping[str, float] = {
    "quality_fraud": 0.3,
    "task_abandonment": 0.1,
    "collusion_detected": 0.2,
    "effort_manipulation": 0.25,
    "performance_failure": 0.15,
}
"""The reputation penalty per violation; any other violation costs 0.05."""
_OTHER_VIOLATION_PENALTY = 0.05


class ReputationError(EconomicsError, ValueError):
    """Base class of every error raised by the reputation rules."""


class InvalidRecord(ReputationError):
    """A record or parameter is out of range (scores must lie in [0, 1])."""


class DuplicateRecord(ReputationError):
    """The same task was already recorded with identical scores (replayed to inflate the average)."""


class ImplausibleRecord(ReputationError):
    """All scores perfect and completion under 100 ms: the signature of a faked record."""


def _unit(value: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise InvalidRecord(f"{what} must be a number in [0, 1], got {value!r}")


@dataclass(frozen=True)
class PerformanceRecord:
    """How one task went. ``cost_efficiency`` is a ratio around 1.0 (it may exceed 1)."""

    task_id: str
    quality_score: float
    client_satisfaction: float
    completion_time_ms: float
    cost_efficiency: float = 1.0
    task_type: str | None = None

    def __post_init__(self) -> None:
        if not self.task_id:
            raise InvalidRecord("task_id must be non-empty")
        _unit(self.quality_score, "quality_score")
        _unit(self.client_satisfaction, "client_satisfaction")
        for what, v in (("completion_time_ms", self.completion_time_ms), ("cost_efficiency", self.cost_efficiency)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise InvalidRecord(f"{what} must be a finite number >= 0, got {v!r}")

    @property
    def outcome(self) -> float:
        """The per-record value averaged into the score."""
        return (self.quality_score + self.client_satisfaction) / 2

    def same_scores(self, other: PerformanceRecord) -> bool:
        return (
            self.task_id == other.task_id
            and self.quality_score == other.quality_score
            and self.client_satisfaction == other.client_satisfaction
            and self.cost_efficiency == other.cost_efficiency
            and self.completion_time_ms == other.completion_time_ms
        )


@dataclass(frozen=True)
class Reputation:
    """An agent's reputation: its newest records first, plus prior, staleness and penalty."""

    agent_id: str
    records: tuple[PerformanceRecord, ...] = ()
    prior: float = DEFAULT_SCORE
    staleness: float = 1.0
    penalty: float = 0.0

    def __post_init__(self) -> None:
        _unit(self.prior, "prior")
        _unit(self.staleness, "staleness")
        if isinstance(self.penalty, bool) or not isinstance(self.penalty, (int, float)) or not self.penalty >= 0:
            raise InvalidRecord(f"penalty must be >= 0, got {self.penalty!r}")

    @property
    def score(self) -> float:
        return reputation_score(self)


def new_reputation(agent_id: str, initial_score: float = DEFAULT_SCORE) -> Reputation:
    """A reputation with no records; ``initial_score`` is its prior."""
    return Reputation(agent_id, prior=initial_score)


def check_record(reputation: Reputation, record: PerformanceRecord) -> None:
    """Raise if ``record`` looks like gaming (a replay, or all perfect in under 100 ms); return None otherwise."""
    if any(record.same_scores(old) for old in reputation.records):
        raise DuplicateRecord(f"task {record.task_id!r} is already recorded with identical scores")
    if (
        record.quality_score == 1.0
        and record.client_satisfaction == 1.0
        and record.cost_efficiency == 1.0
        and record.completion_time_ms < SUSPICIOUS_COMPLETION_MS
    ):
        raise ImplausibleRecord(
            f"task {record.task_id!r}: all scores perfect and completed in "
            f"{record.completion_time_ms} ms < {SUSPICIOUS_COMPLETION_MS} ms"
        )


def record_outcome(reputation: Reputation, record: PerformanceRecord) -> Reputation:
    """Check and prepend ``record``; keep the newest :data:`HISTORY_LIMIT`; reset staleness."""
    check_record(reputation, record)
    records = (record, *reputation.records)[:HISTORY_LIMIT]
    return replace(reputation, records=records, staleness=1.0)


def weighted_score(
    records: Iterable[PerformanceRecord],
    *,
    recency_weight: float = RECENCY_WEIGHT,
    window: int = HISTORY_LIMIT,
    default: float = DEFAULT_SCORE,
) -> float:
    """Recency-weighted mean of record outcomes, newest first; ``default`` if there are none."""
    if not 0 < recency_weight <= 1:
        raise InvalidRecord(f"recency_weight must be in (0, 1], got {recency_weight!r}")
    total = norm = 0.0
    for index, record in enumerate(records):
        if index >= window:
            break
        w = recency_weight**index
        total += w * record.outcome
        norm += w
    return default if norm == 0 else total / norm


def reputation_score(reputation: Reputation, task_type: str | None = None) -> float:
    """The agent's score, optionally over records of one ``task_type`` only (a domain ranking)."""
    records: Iterable[PerformanceRecord] = reputation.records
    if task_type is not None:
        records = [r for r in reputation.records if r.task_type == task_type]
    raw = weighted_score(records, default=reputation.prior)
    score = reputation.prior + reputation.staleness * (raw - reputation.prior) - reputation.penalty
    return min(1.0, max(0.0, score))


def score_of(reputations: Mapping[str, Reputation], agent_id: str, task_type: str | None = None) -> float:
    """Score of ``agent_id``, or :data:`DEFAULT_SCORE` for an agent nobody has rated."""
    rep = reputations.get(agent_id)
    return DEFAULT_SCORE if rep is None else reputation_score(rep, task_type)


def apply_decay(reputation: Reputation, factor: float = RECENCY_WEIGHT, periods: int = 1) -> Reputation:
    """Age the evidence by ``periods`` (e.g. days): the score moves toward the prior."""
    if not 0 < factor <= 1:
        raise InvalidRecord(f"decay factor must be in (0, 1], got {factor!r}")
    if isinstance(periods, bool) or not isinstance(periods, int) or periods < 0:
        raise InvalidRecord(f"periods must be an int >= 0, got {periods!r}")
    return replace(reputation, staleness=reputation.staleness * factor**periods)


def apply_penalty(reputation: Reputation, violation: str | float) -> Reputation:
    """Sanction the agent: a violation name from :data:`VIOLATION_PENALTIES` or an amount."""
    if isinstance(violation, str):
        amount = VIOLATION_PENALTIES.get(violation, _OTHER_VIOLATION_PENALTY)
    else:
        amount = violation
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 <= amount <= 1:
        raise InvalidRecord(f"a penalty must be in [0, 1], got {amount!r}")
    return replace(reputation, penalty=reputation.penalty + amount)


def rankings(
    reputations: Iterable[Reputation] | Mapping[str, Reputation],
    *,
    task_type: str | None = None,
    limit: int | None = 10,
) -> list[tuple[str, float]]:
    """``(agent_id, score)`` best first; equal scores are ordered by agent id for determinism.

    With ``task_type``, only agents with at least one record of that type are ranked.
    """
    if isinstance(reputations, Mapping):
        reputations = reputations.values()
    rows = [
        (rep.agent_id, reputation_score(rep, task_type))
        for rep in reputations
        if task_type is None or any(r.task_type == task_type for r in rep.records)
    ]
    rows.sort(key=lambda row: (-row[1], row[0]))
    return rows if limit is None else rows[:limit]
