"""Hierarchical consensus with representative failover.

Structure (:func:`build_hierarchy`, pure): level 0 splits the agents, in
the order given, into balanced clusters of at most ``cluster_size`` (sizes
differ by at most one); level k + 1 clusters the level-k clusters the same
way, until one cluster is left or ``max_levels`` levels exist.  The
*representative* of a cluster is its first live member; every cluster
below the top level has one (15 agents in clusters of 3 over 3 levels: 5
clusters, then 2, then 1, and 7 representatives).

Execution: the session (on a session host, see :mod:`._session`) asks
every level-0 representative at once to run
:func:`represent` in its own process (the agent's generic ``run``
operation, ``kind='run'``, payload ``(represent, (members, proposal,
timeout))``): the representative votes itself and asks the rest of its
cluster with real calls, and returns the votes.  If a representative is
not running, dies mid-round, times out or fails, the next member of its
cluster takes over (with the failed representatives removed from the
members) and the failover is reported;
a cluster whose members all failed has no decision.  A cluster's decision
is the strict majority of its votes; a cluster above level 0 decides by
strict majority of its child clusters' decisions, and so on up to the top,
whose decision is the session's.  Upper levels are tallied by the session
from the level below: no agent holds information a higher representative
could add.

Limitation of :func:`represent`: it reports a member that failed to answer
the representative as ``None``, like an abstention; those members appear in
``ClusterResult.silent``.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from mabeam._agent import Agent

from . import voting
from ._agent_calls import AgentRequest, Answer, Outcome, ask_all
from ._errors import InsufficientAgentsForHierarchy, InvalidParameter, check_timeout
from ._session import GRACE, AskAgents, Context, SessionCall, session_functions

__all__ = [
    "MIN_HIERARCHY_AGENTS",
    "InsufficientAgentsForHierarchy",
    "ClusterResult",
    "Failover",
    "HierarchicalResult",
    "build_hierarchy",
    "count_representatives",
    "run_hierarchical_consensus",
    "run_hierarchical_consensus_async",
    "represent",
]

#: The fewest agents a hierarchy is built for.
MIN_HIERARCHY_AGENTS = 6


def _chunks(items: list, size: int) -> list:
    k = math.ceil(len(items) / size)
    base, extra = divmod(len(items), k)
    out, start = [], 0
    for i in range(k):
        end = start + base + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


def build_hierarchy(agent_ids: Iterable[Hashable], cluster_size: int = 5, max_levels: int = 4) -> list:
    """``levels[0]`` is a list of clusters of agent ids; ``levels[k]`` for
    k > 0 a list of clusters of *indices* into ``levels[k - 1]``."""
    ids = list(agent_ids)
    if len(set(ids)) != len(ids):
        raise InvalidParameter("agent ids must be distinct")
    if len(ids) < MIN_HIERARCHY_AGENTS:
        raise InsufficientAgentsForHierarchy(MIN_HIERARCHY_AGENTS, len(ids))
    if isinstance(cluster_size, bool) or not isinstance(cluster_size, int) or cluster_size < 2:
        raise InvalidParameter(f"cluster_size must be an int >= 2, got {cluster_size!r}")
    if isinstance(max_levels, bool) or not isinstance(max_levels, int) or max_levels < 1:
        raise InvalidParameter(f"max_levels must be an int >= 1, got {max_levels!r}")
    levels = [_chunks(ids, cluster_size)]
    while len(levels[-1]) > 1 and len(levels) < max_levels:
        levels.append(_chunks(list(range(len(levels[-1]))), cluster_size))
    return levels


def count_representatives(levels: list) -> int:
    """Clusters that have a representative: all but the top level's."""
    return sum(len(level) for level in levels[:-1])


@dataclass(frozen=True)
class ClusterResult:
    level: int
    index: int
    members: tuple
    representative: Hashable | None
    votes: dict
    silent: tuple
    decision: Any
    reached: bool


@dataclass(frozen=True)
class Failover:
    cluster: int
    failed: Hashable
    reason: Any
    replacement: Hashable | None


@dataclass(frozen=True)
class HierarchicalResult:
    proposal: Any
    decision: Any
    reached: bool
    levels: list
    clusters: tuple
    upper: tuple
    failovers: tuple
    failed: dict
    elapsed: float

    @property
    def representatives(self) -> tuple:
        """The level-0 clusters' representatives that answered."""
        return tuple(c.representative for c in self.clusters if c.representative is not None)


def represent(agent: Agent, members: list, proposal: Any, timeout: float) -> dict:
    """Run by a representative, in its own process: its own vote
    (``handle_vote``) and the votes of the other ``members`` (agent ids),
    asked with real calls; ``None`` for a member that gave no answer."""
    votes = {agent.agent_id: agent.handle_vote(proposal)}
    others = [m for m in members if m != agent.agent_id]
    for member, outcome in zip(others, ask_all(others, proposal, "vote", timeout)):
        votes[member] = outcome.value if isinstance(outcome, Answer) else None
    return votes


def _decide(values: dict) -> tuple:
    tally = voting.majority_tally({k: v for k, v in values.items() if v is not None})
    return tally.decision, tally.reached


def _gather_clusters(
    ctx: Context, clusters: list, proposal: Any, timeout: float
) -> Generator[AskAgents, list[Outcome], tuple]:
    rep_timeout = 2 * timeout + 1.0
    position = dict.fromkeys(range(len(clusters)), 0)
    excluded: dict = {i: [] for i in range(len(clusters))}
    results: dict = {}
    failovers, failed = [], {}
    while position:
        requests, order = [], []
        for i, pos in position.items():
            members = [m for m in clusters[i] if m not in excluded[i]]
            requests.append(AgentRequest(clusters[i][pos], "run", (represent, (members, proposal, timeout))))
            order.append(i)
        outcomes = yield ctx.ask_agents(requests, rep_timeout)
        for i, outcome in zip(order, outcomes):
            rep = clusters[i][position[i]]
            if isinstance(outcome, Answer) and isinstance(outcome.value, dict):
                results[i] = (rep, outcome.value)
                del position[i]
                continue
            reason = ("bad_answer", repr(outcome.value)) if isinstance(outcome, Answer) else outcome.reason
            excluded[i].append(rep)
            failed[rep] = reason
            nxt = position[i] + 1
            replacement = clusters[i][nxt] if nxt < len(clusters[i]) else None
            failovers.append(Failover(i, rep, reason, replacement))
            if replacement is None:
                results[i] = (None, {})
                del position[i]
            else:
                position[i] = nxt
    out = []
    for i, members in enumerate(clusters):
        rep, answered = results[i]
        votes = {m: v for m, v in answered.items() if v is not None and m in members}
        silent = tuple(m for m in members if m not in votes and m not in excluded[i])
        try:
            decision, reached = _decide(votes)
        except TypeError:  # an unhashable vote: the cluster cannot count it
            decision, reached = None, False
        out.append(ClusterResult(0, i, tuple(members), rep, votes, silent, decision, reached))
    return out, failovers, failed


def _hierarchy_body(
    ctx: Context, ids: list, proposal: Any, cluster_size: int, max_levels: int, timeout: float
) -> Generator[AskAgents, list[Outcome], HierarchicalResult]:
    levels = build_hierarchy(ids, cluster_size, max_levels)
    clusters, failovers, failed = yield from _gather_clusters(ctx, levels[0], proposal, timeout)
    # who stands for each cluster of the level below: its representative
    # after failover (its first member if the whole cluster failed)
    reps = [c.representative if c.representative is not None else c.members[0] for c in clusters]
    decisions = [c.decision for c in clusters]
    shown, upper = [[list(c) for c in levels[0]]], []
    for level_no, level in enumerate(levels[1:], start=1):
        next_reps, next_decisions, shown_level = [], [], []
        for j, children in enumerate(level):
            members = tuple(reps[c] for c in children)
            votes = {reps[c]: decisions[c] for c in children}
            decision, reached = _decide(votes)
            top = level_no == len(levels) - 1
            upper.append(ClusterResult(level_no, j, members, None if top else members[0], votes, (), decision, reached))
            shown_level.append(list(members))
            next_reps.append(members[0])
            next_decisions.append(decision)
        shown.append(shown_level)
        reps, decisions = next_reps, next_decisions
    if len(decisions) == 1:
        decision = decisions[0]
        reached = decision is not None
    else:
        decision, reached = _decide(dict(enumerate(decisions)))
    return HierarchicalResult(
        proposal, decision, reached, shown, tuple(clusters), tuple(upper), tuple(failovers), failed, ctx.elapsed()
    )


def _hierarchy_call(
    agent_ids: Iterable[Hashable], proposal: Any, *, cluster_size: int = 5, max_levels: int = 4, timeout: float = 5.0
) -> SessionCall:
    """Consensus through cluster representatives (see the module doc).
    ``timeout`` bounds each member's vote; a representative gets ``2 *
    timeout + 1`` seconds, and each failover a new round of that length."""
    ids = list(agent_ids)
    clusters = build_hierarchy(ids, cluster_size, max_levels)[0]  # raises on bad parameters here, in the caller
    check_timeout(timeout)
    longest = max(len(c) for c in clusters)
    args = (ids, proposal, cluster_size, max_levels, float(timeout))
    return SessionCall("hierarchical", _hierarchy_body, args, longest * (2 * timeout + 1.0 + GRACE) + GRACE)


run_hierarchical_consensus_async, run_hierarchical_consensus = session_functions(
    "run_hierarchical_consensus", _hierarchy_call, HierarchicalResult
)
