"""Tallies for consensus over votes that are *given*, never generated.

Every function is a tally over real inputs: a caller collects the votes
(from agents, over messages, with timeouts) and passes them in.  Nothing is
drawn at random.  Ties and orders are deterministic: "first" always means
the first in the input's iteration order.

Contents: simple majority and unanimity with quorum checks; weighted voting
with expertise weights and a 50% cap on one agent's share; a Byzantine
tally with the 3f+1 admission rule; and collusion-resistant consensus with
its payments (kept in :mod:`._collusion`, re-exported here).

Pure: no processes, no I/O.  Every error derives from :class:`VotingError`
(a :class:`~mabeam.coordination.CoordinationError` and a ``ValueError``;
kept in :mod:`._voting_errors`, re-exported here).

The results hold read-only mappings (``types.MappingProxyType``), which the
standard pickle refuses; they travel from session hosts to callers, so this
module registers a pickle reducer for them (:func:`_readonly`): without it
every result falls back to cloudpickle, six times slower to encode.
"""

from __future__ import annotations

import copyreg
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ._collusion import (
    CollusionResult,
    ConsensusReport,
    PaymentStructure,
    resolve_collusion_resistant_consensus,
    suspected_colluders,
)
from ._voting_errors import (
    DuplicateVote,
    InsufficientAgents,
    InvalidVote,
    InvalidVotingParameter,
    QuorumNotMet,
    TooManyVotes,
    UnknownVoter,
    VotingError,
    check_fraction,
)


def _readonly(items: dict) -> MappingProxyType:
    """A read-only view of ``items`` (how a pickled mappingproxy is rebuilt)."""
    return MappingProxyType(items)


copyreg.pickle(MappingProxyType, lambda proxy: (_readonly, (dict(proxy),)))

__all__ = [
    "VotingError",
    "InvalidVotingParameter",
    "InvalidVote",
    "DuplicateVote",
    "UnknownVoter",
    "QuorumNotMet",
    "InsufficientAgents",
    "TooManyVotes",
    "MAJORITY_QUORUM",
    "quorum_met",
    "require_quorum",
    "Tally",
    "majority_tally",
    "unanimous_tally",
    "EXPERTISE_FACTORS",
    "WEIGHT_CAP",
    "STRONG_APPROVE",
    "APPROVE",
    "NEUTRAL",
    "REJECT",
    "NO_DECISION",
    "vote_value",
    "expertise_weight",
    "cap_weight_shares",
    "gini",
    "entropy",
    "WeightedVote",
    "WeightedTally",
    "weighted_tally",
    "min_agents",
    "max_faults",
    "byzantine_quorum",
    "ByzantineTally",
    "byzantine_tally",
    "ConsensusReport",
    "PaymentStructure",
    "CollusionResult",
    "suspected_colluders",
    "resolve_collusion_resistant_consensus",
]


#: The quorum that asks for more than half of the electorate (``quorum=None``):
#: :func:`~mabeam.coordination.run_consensus`'s default.
MAJORITY_QUORUM = None


# --------------------------------------------------------------------------- quorum, majority, unanimity


def quorum_met(cast: int, eligible: int, fraction: float | None) -> bool:
    """True when ``cast`` voters out of ``eligible`` reach ``fraction`` of
    the electorate (at least that share), or, for ``fraction`` None, are
    more than half of it (:data:`MAJORITY_QUORUM`; 0 of 0 meets both)."""
    if fraction is not None:
        check_fraction(fraction, "quorum fraction")
    if eligible < 0 or not 0 <= cast <= eligible:
        raise InvalidVotingParameter(f"need 0 <= cast <= eligible, got cast={cast}, eligible={eligible}")
    if fraction is None:
        return eligible == 0 or 2 * cast > eligible
    return cast >= fraction * eligible - 1e-9


def _describe_quorum(fraction: float | None, eligible: int) -> str:
    if fraction is None:
        return f"a majority ({eligible // 2 + 1} of {eligible})"
    return f"{fraction:.0%}"


def require_quorum(cast: int, eligible: int, fraction: float | None) -> None:
    """Raise :class:`QuorumNotMet` unless :func:`quorum_met`."""
    if not quorum_met(cast, eligible, fraction):
        raise QuorumNotMet(f"{cast} of {eligible} voted, quorum is {_describe_quorum(fraction, eligible)}")


@dataclass(frozen=True)
class Tally:
    """Outcome of a count. ``leader`` is the most voted option even when nothing was decided."""

    decision: Hashable | None
    reached: bool
    counts: Mapping[Hashable, int]
    votes_cast: int
    leader: Hashable | None
    confidence: float
    reason: str | None = None


def _count(votes: Mapping[Hashable, Hashable]) -> tuple[Mapping[Hashable, int], Hashable | None, int]:
    counts = Counter(votes.values())  # insertion order = first-seen order
    leader, top = None, 0
    for option, c in counts.items():
        if c > top:
            leader, top = option, c
    return MappingProxyType(dict(counts)), leader, top


def _quorum_failure(cast: int, eligible: int | None, quorum: float | None) -> str | None:
    if eligible is None or quorum_met(cast, eligible, quorum):
        return None
    return f"quorum not met: {cast} of {eligible} voted, quorum is {_describe_quorum(quorum, eligible)}"


def majority_tally(
    votes: Mapping[Hashable, Hashable], *, eligible: int | None = None, quorum: float | None = 0.0
) -> Tally:
    """Strict majority of the votes cast (more than half), subject to a quorum of ``eligible``.

    ``votes`` maps voter -> option. Confidence is the leader's share of votes
    cast; "consensus when confidence > 0.5" is the same strict-majority
    rule.  ``quorum`` is the share of ``eligible`` that must have voted,
    or :data:`MAJORITY_QUORUM` (None) for more than half of them: a strict
    majority of a few voters who are left is not a decision of the
    electorate.
    """
    counts, leader, top = _count(votes)
    cast = len(votes)
    confidence = top / cast if cast else 0.0
    failure = _quorum_failure(cast, eligible, quorum)
    if failure is None and not cast:
        failure = "no votes"
    if failure is None and 2 * top <= cast:
        failure = f"no strict majority: {top} of {cast} for the leader"
    reached = failure is None
    return Tally(leader if reached else None, reached, counts, cast, leader, confidence, failure)


def unanimous_tally(votes: Mapping[Hashable, Hashable], *, eligible: int | None = None) -> Tally:
    """Everyone agrees. With ``eligible`` given, an abstention breaks unanimity."""
    counts, leader, top = _count(votes)
    cast = len(votes)
    if eligible is not None and not 0 <= cast <= eligible:
        raise InvalidVotingParameter(f"need 0 <= cast <= eligible, got cast={cast}, eligible={eligible}")
    if not cast:
        failure: str | None = "no votes"
    elif len(counts) > 1:
        failure = f"{len(counts)} different options were voted"
    elif eligible is not None and cast < eligible:
        failure = f"only {cast} of {eligible} voted"
    else:
        failure = None
    reached = failure is None
    return Tally(leader if reached else None, reached, counts, cast, leader, top / cast if cast else 0.0, failure)


# --------------------------------------------------------------------------- weighted voting

EXPERTISE_FACTORS: Mapping[str, float] = MappingProxyType(
    {"accuracy": 0.3, "consistency": 0.2, "domain_knowledge": 0.3, "past_performance": 0.2}
)
"""The factor weights of :func:`expertise_weight`; a missing metric counts as 0.5."""
WEIGHT_CAP = 0.5
"""No agent may hold more than this share of the total weight."""

STRONG_APPROVE, APPROVE, NEUTRAL, REJECT, NO_DECISION = "strong_approve", "approve", "neutral", "reject", "no_decision"


def vote_value(value: object) -> float:
    """The vote scale: approve/True 1.0, reject/False 0.0, neutral 0.5, numbers in [0, 1].

    Anything else is an :class:`InvalidVote`, never neutral, because a garbled vote silently counted as neutral
    changes the outcome without anyone noticing.
    """
    if value is True or value == "approve":
        return 1.0
    if value is False or value == "reject":
        return 0.0
    if value == "neutral":
        return 0.5
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0:
        return float(value)
    raise InvalidVote(f"cannot interpret vote {value!r}")


def expertise_weight(metrics: Mapping[str, float]) -> float:
    """Expertise weight: factor-weighted raw score, scaled by band, clamped to [0.1, 3.0].

    raw >= 0.8 -> ``raw**0.7 * 2``; >= 0.6 -> ``raw * 1.5``; >= 0.4 -> ``raw * 1.2``;
    else ``raw``; the weight jumps at the band edges.
    """
    unknown = set(metrics) - set(EXPERTISE_FACTORS)
    if unknown:
        raise InvalidVotingParameter(f"unknown expertise metrics: {sorted(unknown)}")
    for name, v in metrics.items():
        check_fraction(v, name)
    raw = sum(w * metrics.get(name, 0.5) for name, w in EXPERTISE_FACTORS.items())
    if raw >= 0.8:
        scaled = raw**0.7 * 2
    elif raw >= 0.6:
        scaled = raw * 1.5
    elif raw >= 0.4:
        scaled = raw * 1.2
    else:
        scaled = raw
    return min(3.0, max(0.1, scaled))


def cap_weight_shares(weights: Mapping[Hashable, float], cap: float = WEIGHT_CAP) -> Mapping[Hashable, float]:
    """Normalise ``weights`` to shares summing to 1 with no share above ``cap``.

    Iterative capping ("water filling"): compute proportional shares of the
    mass not yet assigned; every agent whose share would exceed ``cap`` gets
    exactly ``cap`` and leaves the pool; repeat until nobody exceeds it. The
    others keep their relative proportions. If the uncapped agents all have
    weight 0 the rest is split equally among them. When the cap is infeasible
    (``cap * n < 1``, e.g. a single voter always holds 100%) every agent gets
    ``1/n``, the most even split possible.
    """
    if not 0.0 < cap <= 1.0:
        raise InvalidVotingParameter(f"cap must be in (0, 1], got {cap!r}")
    for who, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise InvalidVotingParameter(f"weight of {who!r} must be a finite number >= 0, got {w!r}")
    n = len(weights)
    if n == 0:
        return MappingProxyType({})
    if cap * n < 1:
        return MappingProxyType(dict.fromkeys(weights, 1.0 / n))
    shares: dict[Hashable, float] = {}
    free = dict(weights)
    mass = 1.0
    while True:
        total = sum(free.values())
        if total == 0:
            shares.update(dict.fromkeys(free, mass / len(free)))
            break
        over = [who for who, w in free.items() if mass * (w / total) > cap]
        if not over:
            shares.update({who: mass * (w / total) for who, w in free.items()})
            break
        for who in over:
            shares[who] = cap
            mass -= cap
            del free[who]
        if not free:
            break
    return MappingProxyType({who: shares[who] for who in weights})


def gini(shares: Iterable[float]) -> float:
    """Gini coefficient (0 = equal, towards 1 = concentrated); 0 for no or zero weight."""
    xs = list(shares)
    total = sum(xs)
    if not xs or total == 0:
        return 0.0
    diff = sum(abs(a - b) for a in xs for b in xs)
    return diff / (2 * len(xs) * total)


def entropy(shares: Iterable[float]) -> float:
    """Shannon entropy in bits of the normalised shares."""
    xs = [x for x in shares if x > 0]
    total = sum(xs)
    return -sum((x / total) * math.log2(x / total) for x in xs) if xs else 0.0


@dataclass(frozen=True)
class WeightedVote:
    voter: Hashable
    value: object
    confidence: float = 1.0


@dataclass(frozen=True)
class WeightedTally:
    """``score`` is the weighted mean vote in [0, 1] (None without usable votes)."""

    decision: str
    score: float | None
    shares: Mapping[Hashable, float]
    participation: float
    gini: float
    entropy: float
    reason: str | None = None


def _band(score: float) -> str:
    if score >= 0.7:
        return STRONG_APPROVE
    if score >= 0.5:
        return APPROVE
    if score >= 0.3:
        return NEUTRAL
    return REJECT


def weighted_tally(
    votes: Iterable[WeightedVote],
    weights: Mapping[Hashable, float],
    *,
    cap: float = WEIGHT_CAP,
    quorum: float | None = 0.0,
) -> WeightedTally:
    """Weighted vote over the electorate ``weights`` (e.g. from :func:`expertise_weight`).

    Shares are capped over the whole electorate (:func:`cap_weight_shares`),
    so an abstaining heavyweight does not inflate the others. Each vote
    contributes ``share * confidence * value``; the score is that sum over
    ``sum(share * confidence)``. ``participation`` is the share that voted
    and must reach ``quorum``; :data:`MAJORITY_QUORUM` (None) asks instead
    for more than half of the electorate's voters, counted by head (the
    cap lets two voters hold more than half of the weight). Bands: >= 0.7
    strong_approve, >= 0.5 approve, >= 0.3 neutral, else reject.
    """
    if quorum is not None:
        check_fraction(quorum, "quorum")
    shares = cap_weight_shares(weights, cap)
    seen: set[Hashable] = set()
    num = den = participation = 0.0
    for v in votes:
        if v.voter not in shares:
            raise UnknownVoter(f"{v.voter!r} is not in the electorate")
        if v.voter in seen:
            raise DuplicateVote(f"{v.voter!r} voted twice")
        seen.add(v.voter)
        if isinstance(v.confidence, bool) or not isinstance(v.confidence, (int, float)):
            raise InvalidVote(f"confidence must be a number, got {v.confidence!r}")
        if not 0.0 <= v.confidence <= 1.0:
            raise InvalidVote(f"confidence must be in [0, 1], got {v.confidence!r}")
        value = vote_value(v.value)
        share = shares[v.voter]
        num += share * v.confidence * value
        den += share * v.confidence
        participation += share
    g, h = gini(shares.values()), entropy(shares.values())
    if quorum is None and not quorum_met(len(seen), len(shares), MAJORITY_QUORUM):
        reason = f"quorum not met: {len(seen)} of {len(shares)} voted, quorum is {_describe_quorum(None, len(shares))}"
        return WeightedTally(NO_DECISION, None, shares, participation, g, h, reason)
    if quorum is not None and participation < quorum - 1e-9:
        reason = f"quorum not met: {participation:.0%} of the weight voted, quorum is {quorum:.0%}"
        return WeightedTally(NO_DECISION, None, shares, participation, g, h, reason)
    if den == 0:
        return WeightedTally(NO_DECISION, None, shares, participation, g, h, "no votes with weight")
    score = num / den
    return WeightedTally(_band(score), score, shares, participation, g, h)


# --------------------------------------------------------------------------- Byzantine


def min_agents(f: int) -> int:
    """Participants needed to tolerate ``f`` Byzantine ones: 3f + 1."""
    if f < 0:
        raise InvalidVotingParameter(f"f must be >= 0, got {f}")
    return 3 * f + 1


def max_faults(n: int) -> int:
    """Most Byzantine participants ``n`` can tolerate: floor((n - 1) / 3)."""
    return max(0, (n - 1) // 3)


def byzantine_quorum(n: int, f: int) -> int:
    """Votes needed to decide: ``ceil((n + f + 1) / 2)``, which is 2f + 1 when n = 3f + 1.

    With n > 3f + 1 a bare 2f + 1 is unsafe (for n = 5, f = 1 two quorums of 3
    can share only one voter, possibly the faulty one, and decide different
    values). This size makes any two quorums share at least f + 1 voters, so
    at least one honest voter is in both, and an honest voter votes once.
    """
    if n < min_agents(f):
        raise InsufficientAgents(min_agents(f), n)
    return (n + f) // 2 + 1


@dataclass(frozen=True)
class ByzantineTally:
    decided: bool
    value: Hashable | None
    quorum: int
    counts: Mapping[Hashable, int]
    n: int
    f: int


def byzantine_tally(votes: Mapping[Hashable, Hashable], n: int, f: int | None = None) -> ByzantineTally:
    """Decide a value once it has :func:`byzantine_quorum` votes out of ``n`` participants.

    ``votes`` maps voter -> value as received by this observer (a faulty voter
    may tell different observers different things, but each observer records
    one vote per voter). ``f`` defaults to :func:`max_faults`. Raises
    :class:`InsufficientAgents` (with ``minimum`` and ``n``) if ``n < 3f + 1``.
    """
    if f is None:
        f = max_faults(n)
    quorum = byzantine_quorum(n, f)
    if len(votes) > n:
        raise TooManyVotes(f"{len(votes)} votes from {n} participants")
    counts, leader, top = _count(votes)
    decided = top >= quorum
    return ByzantineTally(decided, leader if decided else None, quorum, counts, n, f)
