"""Iterative refinement: rounds of proposals until the agents agree.

Each round the session (on a session host, see :mod:`._session`) asks every agent at once with ``kind='proposal'``
and payload ``(round, context)`` (the agent's ``handle_proposal``), where
``context`` is ``{'initial': ..., 'round': r, 'proposals': {agent_id:
proposal}}`` with the previous round's proposals (empty in round 1).

Convergence measure (documented, deterministic): a proposal is seen as a
set of items (a string as its set of lower-case words, a set/list/tuple as
the set of its elements, anything else as ``{value}``).  The round's
*agreement* is the mean pairwise Jaccard similarity of the proposals
received (1.0 for a single proposal).  The session stops when

* agreement >= ``threshold`` (``reason='converged'``);
* no agent changed its proposal since the last round
  (``reason='stalled'``: another round would give the same answers);
* ``max_rounds`` rounds ran (``reason='max_rounds'``);
* no agent proposed anything (``reason='no_proposals'``).

Each round also reports its *stability*: the mean Jaccard similarity of
each agent's proposal with its own previous one.  The
``best`` proposal is the medoid of the last round: the one with the highest
mean similarity to the others (first in agent order on a tie).
"""

from __future__ import annotations

from collections.abc import Generator, Hashable, Iterable
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from ._agent_calls import Answer, Outcome
from ._errors import InvalidParameter, check_timeout
from ._session import GRACE, AskAgents, Context, SessionCall, session_functions

__all__ = [
    "RefinementRound",
    "RefinementResult",
    "run_iterative_refinement",
    "run_iterative_refinement_async",
    "as_item_set",
    "jaccard",
    "agreement",
]


def as_item_set(proposal: Any) -> frozenset:
    """The set a proposal is compared as (see the module doc)."""
    if isinstance(proposal, str):
        return frozenset(proposal.lower().split())
    if isinstance(proposal, (set, frozenset, list, tuple)):
        try:
            return frozenset(proposal)
        except TypeError:
            return frozenset(map(repr, proposal))
    try:
        return frozenset([proposal])
    except TypeError:
        return frozenset([repr(proposal)])


def jaccard(a: Any, b: Any) -> float:
    """Jaccard similarity of two proposals' item sets (1.0 for two empty ones)."""
    x, y = as_item_set(a), as_item_set(b)
    union = x | y
    return len(x & y) / len(union) if union else 1.0


def agreement(proposals: Iterable[Any]) -> float:
    """Mean pairwise Jaccard similarity; 1.0 for fewer than two proposals."""
    ps = list(proposals)
    pairs = list(combinations(ps, 2))
    return sum(jaccard(a, b) for a, b in pairs) / len(pairs) if pairs else 1.0


@dataclass(frozen=True)
class RefinementRound:
    number: int
    proposals: dict
    failed: dict
    agreement: float
    stability: float | None


@dataclass(frozen=True)
class RefinementResult:
    converged: bool
    reason: str
    rounds: tuple
    proposals: dict
    best: Any
    best_agent: Hashable | None
    elapsed: float

    @property
    def round_count(self) -> int:
        return len(self.rounds)


def _medoid(proposals: dict) -> tuple:
    best_agent, best_score = None, -1.0
    for agent_id, p in proposals.items():
        others = [q for a, q in proposals.items() if a != agent_id]
        score = sum(jaccard(p, q) for q in others) / len(others) if others else 1.0
        if score > best_score:
            best_agent, best_score = agent_id, score
    return (proposals[best_agent] if best_agent is not None else None), best_agent


def _refinement_body(
    ctx: Context, ids: list, initial: Any, max_rounds: int, threshold: float, timeout: float
) -> Generator[AskAgents, list[Outcome], RefinementResult]:
    rounds: list = []
    previous: dict = {}
    reason = "max_rounds"
    for number in range(1, max_rounds + 1):
        context = {"initial": initial, "round": number, "proposals": dict(previous)}
        outcomes = yield ctx.ask_all(ids, (number, context), "proposal", timeout)
        proposals, failed = {}, {}
        for agent_id, outcome in zip(ids, outcomes):
            if not isinstance(outcome, Answer):
                failed[agent_id] = outcome.reason
            elif outcome.value is not None:
                proposals[agent_id] = outcome.value
        common = [a for a in proposals if a in previous]
        stability = sum(jaccard(proposals[a], previous[a]) for a in common) / len(common) if common else None
        score = agreement(proposals.values())
        rounds.append(RefinementRound(number, proposals, failed, score, stability))
        if not proposals:
            reason = "no_proposals"
            break
        if score >= threshold:
            reason = "converged"
            break
        if previous and proposals == previous:
            reason = "stalled"
            break
        previous = proposals
    final = rounds[-1].proposals if rounds else {}
    best, best_agent = _medoid(final)
    return RefinementResult(reason == "converged", reason, tuple(rounds), final, best, best_agent, ctx.elapsed())


def _refinement_call(
    agent_ids: Iterable[Hashable], initial: Any, *, max_rounds: int = 5, threshold: float = 0.95, timeout: float = 5.0
) -> SessionCall:
    """Run rounds of proposals until they converge (see the module doc for
    the measure) or ``max_rounds``; ``timeout`` bounds each round."""
    ids = list(agent_ids)
    if not ids or len(set(ids)) != len(ids):
        raise InvalidParameter("agent ids must be distinct and not empty")
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
        raise InvalidParameter(f"max_rounds must be an int >= 1, got {max_rounds!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise InvalidParameter(f"threshold must be in [0, 1], got {threshold!r}")
    check_timeout(timeout)
    args = (ids, initial, max_rounds, float(threshold), float(timeout))
    return SessionCall("iterative_refinement", _refinement_body, args, max_rounds * (timeout + GRACE) + GRACE)


run_iterative_refinement_async, run_iterative_refinement = session_functions(
    "run_iterative_refinement", _refinement_call, RefinementResult
)
