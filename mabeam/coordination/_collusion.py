"""Collusion-resistant consensus: estimates, suspicion, payments, reputations.

Apart from the tallies of :mod:`.voting` (which re-exports it) because it
is a rule of its own: it settles *estimates* once the true value is known,
where the tallies count votes for a decision.  Pure: no processes, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ._voting_errors import DuplicateVote, InvalidVote, InvalidVotingParameter, check_fraction

__all__ = [
    "ConsensusReport",
    "PaymentStructure",
    "CollusionResult",
    "suspected_colluders",
    "resolve_collusion_resistant_consensus",
]


@dataclass(frozen=True)
class ConsensusReport:
    """An agent's estimate. ``confidence_level`` is carried for callers; the consensus mean ignores it."""

    agent_id: str
    estimated_value: float
    confidence_level: float = 1.0
    information_quality: float = 1.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.estimated_value):
            raise InvalidVote(f"estimate must be finite, got {self.estimated_value!r}")
        check_fraction(self.confidence_level, "confidence_level")
        check_fraction(self.information_quality, "information_quality")


@dataclass(frozen=True)
class PaymentStructure:
    """Payments of collusion-resistant consensus: a base, a bonus per unit of
    accuracy, and a penalty for a suspected colluder."""

    base_payment: float = 50.0
    accuracy_bonus_rate: float = 2.0
    collusion_penalty: float = 100.0


@dataclass(frozen=True)
class CollusionResult:
    consensus_value: float
    naive_consensus: float
    suspected_colluders: frozenset[str]
    collusion_detected: bool
    accuracy: Mapping[str, float]
    payments: Mapping[str, float]
    reputations: Mapping[str, float]


def _bucket(value: float, width: float) -> float:
    return math.floor(value / width) * width


def suspected_colluders(reports: Iterable[ConsensusReport], bucket_width: float = 5.0) -> frozenset[str]:
    """A heuristic: agents whose estimates share a ``bucket_width`` bucket with another agent.

    Buckets are ``floor(v / w) * w`` (truncating instead would merge the
    two buckets either side of 0). It is a coarse signal: honest agents with
    close estimates are flagged too, and colluders who spread out by more
    than a bucket are not; callers should treat it as suspicion, not proof.
    """
    if not bucket_width > 0:
        raise InvalidVotingParameter(f"bucket_width must be > 0, got {bucket_width!r}")
    members: dict[float, set[str]] = {}
    for r in reports:
        members.setdefault(_bucket(r.estimated_value, bucket_width), set()).add(r.agent_id)
    return frozenset(a for group in members.values() if len(group) > 1 for a in group)


def _weighted_mean(reports: list[ConsensusReport]) -> float:
    total = sum(r.information_quality for r in reports)
    if total == 0:
        return sum(r.estimated_value for r in reports) / len(reports)
    return sum(r.information_quality * r.estimated_value for r in reports) / total


def resolve_collusion_resistant_consensus(
    reports: Iterable[ConsensusReport],
    true_value: float,
    *,
    payment: PaymentStructure | None = None,
    bucket_width: float = 5.0,
    reputations: Mapping[str, float] | None = None,
    default_reputation: float = 0.5,
    reputation_penalty: float = 0.2,
) -> CollusionResult:
    """Consensus, collusion suspicion, payments and reputations once the true value is known.

    * ``naive_consensus``: information-quality-weighted mean of all estimates
      (the naive consensus); ``consensus_value``: the same over agents not
      suspected (all of them if everyone is suspected), which is what makes
      it collusion-*resistant*.
    * accuracy ``= 1 - |estimate - true| / |true|``;
      payment ``= max(0, base + accuracy * bonus_rate - penalty if suspected)``.
    * suspected agents lose ``reputation_penalty`` (default 0.2), floored
      at 0; unlisted agents start at ``default_reputation``.

    ``payment`` defaults to :class:`PaymentStructure`'s defaults.
    """
    payment = payment or PaymentStructure()
    reports = list(reports)
    if not reports:
        raise InvalidVotingParameter("no reports")
    if len({r.agent_id for r in reports}) != len(reports):
        raise DuplicateVote("an agent reported twice")
    if not math.isfinite(true_value) or true_value == 0:
        raise InvalidVotingParameter("true_value must be finite and non-zero (accuracy is relative to it)")
    suspects = suspected_colluders(reports, bucket_width)
    trusted = [r for r in reports if r.agent_id not in suspects] or reports
    accuracy = {r.agent_id: 1 - abs(r.estimated_value - true_value) / abs(true_value) for r in reports}
    payments = {
        a: max(
            0.0,
            payment.base_payment
            + acc * payment.accuracy_bonus_rate
            - (payment.collusion_penalty if a in suspects else 0.0),
        )
        for a, acc in accuracy.items()
    }
    given = reputations or {}
    reps = {
        r.agent_id: max(
            0.0, given.get(r.agent_id, default_reputation) - (reputation_penalty if r.agent_id in suspects else 0.0)
        )
        for r in reports
    }
    return CollusionResult(
        consensus_value=_weighted_mean(trusted),
        naive_consensus=_weighted_mean(reports),
        suspected_colluders=suspects,
        collusion_detected=bool(suspects),
        accuracy=MappingProxyType(accuracy),
        payments=MappingProxyType(payments),
        reputations=MappingProxyType(reps),
    )
