"""Consensus with votes asked from the agents themselves.

Each call is a session on a session host (see :mod:`._session`) that asks
every agent at once with ``kind='vote'`` (the agent's ``handle_vote``), takes
the answers as they arrive for at most ``timeout`` and tallies them with
:mod:`.voting`.  By default nothing is decided unless more than half of
the agents asked gave a usable vote (see :func:`run_consensus`'s
``quorum``).
Nothing is drawn at random: a vote is what the agent's process answered.

What an agent answers:

* ``None``: it abstains (listed in ``abstained``);
* majority / unanimous / Byzantine: any hashable value is an option;
* weighted: ``'approve'``/``'reject'``/``'neutral'``/bool/number in [0, 1],
  optionally with a confidence as ``(value, confidence)`` or
  ``{'vote': value, 'confidence': c}``.

A vote that cannot be interpreted is not counted: the agent is listed in
``failed`` with ``('invalid_vote', repr)``, never counted as neutral.  Agents that are not running, time out, die or raise are listed
in ``failed`` with the reason (``'not_running'``, ``'timeout'``,
``'killed'``..., ``('hook_raised', crash)``) and the session completes
with the others.
"""

from __future__ import annotations

from collections.abc import Generator, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mabeam._agent_registry import get_agent
from mabeam._errors import UnknownAgent

from . import voting
from ._agent_calls import Answer, Outcome
from ._errors import InvalidParameter, check_timeout
from ._session import GRACE, AskAgents, Context, SessionCall, run_session, session_functions

__all__ = [
    "ConsensusResult",
    "run_consensus",
    "run_consensus_async",
    "run_byzantine_consensus",
    "run_byzantine_consensus_async",
    "run_collusion_resistant_consensus",
    "METHODS",
    "BYZANTINE_TAGS",
]

METHODS = ("majority", "unanimous", "weighted")
BYZANTINE_TAGS = ("byzantine", "consensus", "fault_tolerant")


@dataclass(frozen=True)
class ConsensusResult:
    """What a consensus session found.

    ``decision`` is the winning option (majority, unanimous, Byzantine) or
    the weighted band (``'strong_approve'``...); None when nothing was
    decided, and then ``reason`` says why.  ``votes`` holds the votes
    actually received, per agent; ``failed`` maps each agent that gave no
    usable answer to the reason; ``tally`` is the :mod:`.voting` tally
    (``Tally``, ``WeightedTally`` or ``ByzantineTally``)."""

    method: str
    proposal: Any
    decision: Any
    reached: bool
    votes: Mapping[Hashable, Any]
    abstained: tuple
    failed: Mapping[Hashable, Any]
    tally: voting.Tally | voting.WeightedTally | voting.ByzantineTally
    reason: str | None = None
    elapsed: float = 0.0
    tags: tuple = field(default=())

    @property
    def participants(self) -> tuple:
        return tuple(self.votes)


def _ids(agent_ids: Iterable[Hashable]) -> list:
    ids = list(agent_ids)
    if len(set(ids)) != len(ids):
        raise InvalidParameter("agent ids must be distinct")
    return ids


#: What a session body is: it yields its waits on agents, gets their outcomes.
Body = Generator[AskAgents, list[Outcome], Any]


def sort_votes(ids: list, outcomes: list[Outcome]) -> tuple:
    """The agents' outcomes as ``(votes, abstained, failed)``."""
    votes, abstained, failed = {}, [], {}
    for agent_id, outcome in zip(ids, outcomes):
        if not isinstance(outcome, Answer):
            failed[agent_id] = outcome.reason
        elif outcome.value is None:
            abstained.append(agent_id)
        else:
            votes[agent_id] = outcome.value
    return votes, abstained, failed


def _hashable(votes: dict, failed: dict) -> dict:
    good = {}
    for agent_id, v in votes.items():
        try:
            hash(v)
        except TypeError:
            failed[agent_id] = ("invalid_vote", repr(v))
        else:
            good[agent_id] = v
    return good


def _weighted_votes(votes: dict, failed: dict) -> tuple[dict, list[voting.WeightedVote]]:
    good, wv = {}, []
    for agent_id, v in votes.items():
        value, confidence = v, 1.0
        if isinstance(v, tuple) and len(v) == 2:
            value, confidence = v
        elif isinstance(v, dict):
            value, confidence = v.get("vote"), v.get("confidence", 1.0)
        try:
            voting.vote_value(value)
            valid = (
                isinstance(confidence, (int, float)) and not isinstance(confidence, bool) and 0.0 <= confidence <= 1.0
            )
        except voting.VotingError:
            valid = False
        if not valid:
            failed[agent_id] = ("invalid_vote", repr(v))
            continue
        good[agent_id] = v
        wv.append(voting.WeightedVote(agent_id, value, confidence))
    return good, wv


def _expertise_weights(ids: list) -> dict:
    """Weights from each agent's registry metadata ``'expertise'`` (metrics
    as :func:`.voting.expertise_weight` takes them); an agent without it (or
    not registered) weighs ``expertise_weight({})``.  Read by the caller
    when the session starts (a host never waits on the registry)."""
    weights = {}
    for agent_id in ids:
        try:
            metrics = get_agent(agent_id).config.metadata.get("expertise", {})
        except UnknownAgent:
            metrics = {}
        weights[agent_id] = voting.expertise_weight(metrics)
    return weights


def _consensus_body(
    ctx: Context,
    ids: list,
    proposal: Any,
    method: str,
    timeout: float,
    quorum: float | None,
    weights: dict | None,
    f: int | None = None,
) -> Body:
    """Every consensus that counts votes (``method``: one of :data:`METHODS`
    or ``'byzantine'``): ask, then tally by the method's rule."""
    votes, abstained, failed = sort_votes(ids, (yield ctx.ask_all(ids, proposal, "vote", timeout)))
    n = len(ids)
    tally: voting.Tally | voting.WeightedTally | voting.ByzantineTally
    decision: Hashable | None
    tags: tuple = ()
    if method == "weighted":
        votes, weighted = _weighted_votes(votes, failed)
        assert weights is not None  # the caller read them if it gave none
        tally = voting.weighted_tally(weighted, weights, quorum=quorum)
        reached = tally.decision != voting.NO_DECISION
        decision, reason = (tally.decision if reached else None), tally.reason
    elif method == "byzantine":
        votes = _hashable(votes, failed)
        tally = voting.byzantine_tally(votes, n, f)
        decision, reached, tags = tally.value, tally.decided, BYZANTINE_TAGS
        reason = None if tally.decided else f"no value reached the quorum of {tally.quorum} of {tally.n}"
    else:
        votes = _hashable(votes, failed)
        if method == "majority":
            counted = voting.majority_tally(votes, eligible=n, quorum=quorum)
        else:
            counted = voting.unanimous_tally(votes, eligible=n)
        tally = counted
        decision, reached, reason = counted.decision, counted.reached, counted.reason
    return ConsensusResult(
        method,
        proposal,
        decision,
        reached,
        dict(votes),
        tuple(abstained),
        dict(failed),
        tally,
        reason,
        ctx.elapsed(),
        tags,
    )


def _consensus_call(
    agent_ids: Iterable[Hashable],
    proposal: Any,
    method: str = "majority",
    *,
    timeout: float = 5.0,
    quorum: float | None = voting.MAJORITY_QUORUM,
    weights: Mapping[Hashable, float] | None = None,
) -> SessionCall:
    """Ask ``agent_ids`` to vote on ``proposal`` and tally the answers.

    ``method``: ``'majority'`` (strict majority of the votes cast),
    ``'unanimous'`` (every agent votes the same; an abstention or a failure
    breaks it) or ``'weighted'`` (expertise weights from agent metadata, or
    ``weights``, with no agent above 50% of the weight; the metadata is read
    when the call starts).

    ``quorum`` says how many of the agents asked must give a usable vote
    for anything to be decided.  The default (None,
    :data:`.voting.MAJORITY_QUORUM`) is more than half of them, counted by
    head for both methods: agents that abstain, are not running, time out
    or die do not count, so one voter left out of seven decides nothing
    (``reached=False``, ``reason`` says the quorum was not met).  A number
    in [0, 1] is instead the fraction of the agents that must vote
    (majority: at least that share of them) or the share of the weight that
    must vote (weighted); ``quorum=0.0`` lets any single vote decide.
    ``timeout`` bounds the wait for the agents; the call returns at most
    ``timeout + 2 * GRACE`` seconds later."""
    ids = _ids(agent_ids)
    if method not in METHODS:
        raise InvalidParameter(f"method must be one of {METHODS}, not {method!r}")
    check_timeout(timeout)
    if quorum is not None and (
        isinstance(quorum, bool) or not isinstance(quorum, (int, float)) or not 0.0 <= quorum <= 1.0
    ):
        raise InvalidParameter(f"quorum must be None or in [0, 1], got {quorum!r}")
    if weights is not None:
        weights = dict(weights)
        missing = [a for a in ids if a not in weights]
        if missing:
            raise InvalidParameter(f"no weight for {missing!r}")
        voting.cap_weight_shares(weights)  # validates them here, in the caller
    elif method == "weighted":
        weights = _expertise_weights(ids)
    quorum = None if quorum is None else float(quorum)
    args = (ids, proposal, method, float(timeout), quorum, weights)
    return SessionCall("consensus", _consensus_body, args, timeout + 2 * GRACE)


run_consensus_async, run_consensus = session_functions("run_consensus", _consensus_call, ConsensusResult)


# ------------------------------------------------------------------ Byzantine


def _byzantine_call(
    agent_ids: Iterable[Hashable], proposal: Any, f: int | None = None, *, timeout: float = 5.0
) -> SessionCall:
    """A trusted vote count, not Byzantine agreement: one session asks each
    agent's ``handle_vote`` and decides a value once ``byzantine_quorum(n,
    f)`` agents voted for it; the agents never talk to each other, so one
    that tells different agents different things cannot matter.  For
    agreement among the agents that tolerates ``f`` lying, equivocating or
    dying ones, use :func:`~mabeam.coordination.run_pbft`.

    ``f`` defaults to the most ``len(agent_ids)`` can tolerate.  Raises
    :class:`.voting.InsufficientAgents` (``.minimum``, ``.n``) for
    fewer than ``3f + 1`` agents, before any session starts.  A value is
    decided once ``byzantine_quorum(n, f)`` agents voted for it; agents that
    fail count as not voting.  The result carries ``tags``
    ``('byzantine', 'consensus', 'fault_tolerant')``."""
    ids = _ids(agent_ids)
    check_timeout(timeout)
    if f is not None:
        if isinstance(f, bool) or not isinstance(f, int) or f < 0:
            raise InvalidParameter(f"f must be an int >= 0, got {f!r}")
        if len(ids) < voting.min_agents(f):
            raise voting.InsufficientAgents(voting.min_agents(f), len(ids))
    elif not ids:
        raise voting.InsufficientAgents(1, 0)
    args = (ids, proposal, "byzantine", float(timeout), None, None, f)
    return SessionCall("byzantine", _consensus_body, args, timeout + 2 * GRACE)


run_byzantine_consensus_async, run_byzantine_consensus = session_functions(
    "run_byzantine_consensus", _byzantine_call, ConsensusResult
)


# ------------------------------------------------------------------ collusion resistance


def _report(agent_id: Any, answer: Any) -> voting.ConsensusReport:
    if isinstance(answer, dict):
        return voting.ConsensusReport(
            str(agent_id),
            float(answer["estimated_value"]),
            float(answer.get("confidence_level", 1.0)),
            float(answer.get("information_quality", 1.0)),
        )
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise voting.InvalidVote(f"not an estimate: {answer!r}")
    return voting.ConsensusReport(str(agent_id), float(answer))


def _collusion_body(
    ctx: Context,
    ids: list,
    question: Any,
    true_value: float,
    payment: voting.PaymentStructure | None,
    reputations: dict,
    bucket_width: float,
    timeout: float,
) -> Body:
    outcomes = yield ctx.ask_all(ids, ("estimate", question), "coordinate", timeout)
    answers, abstained, failed = sort_votes(ids, outcomes)
    reports = []
    for agent_id, answer in answers.items():
        try:
            reports.append(_report(agent_id, answer))
        except (KeyError, TypeError, ValueError):
            failed[agent_id] = ("invalid_estimate", repr(answer))
    result = voting.resolve_collusion_resistant_consensus(
        reports, true_value, payment=payment, reputations=reputations, bucket_width=bucket_width
    )
    return result, {r.agent_id: r.estimated_value for r in reports}, dict(failed)


def run_collusion_resistant_consensus(
    agent_ids: Iterable[Hashable],
    question: Any,
    true_value: float,
    *,
    payment: voting.PaymentStructure | None = None,
    reputations: Mapping[str, float] | None = None,
    bucket_width: float = 5.0,
    timeout: float = 5.0,
) -> tuple:
    """Ask each agent for its estimate (``kind='coordinate'``, payload
    ``('estimate', question)``; the agent's ``handle_coordination`` answers
    a number or ``{'estimated_value', 'confidence_level',
    'information_quality'}``) and resolve them with
    :func:`.voting.resolve_collusion_resistant_consensus` once
    ``true_value`` is known.  Returns ``(CollusionResult, {agent: estimate},
    {agent: failure})``; result keys are ``str(agent_id)``."""
    ids = _ids(agent_ids)
    check_timeout(timeout)
    args = (ids, question, float(true_value), payment, dict(reputations or {}), bucket_width, float(timeout))
    return run_session("collusion_resistant", _collusion_body, args, timeout + 2 * GRACE)
