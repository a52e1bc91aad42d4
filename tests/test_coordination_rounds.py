"""Multi-round coordination with real agents: iterative refinement and
hierarchical consensus with representative failover."""

from __future__ import annotations

import pytest
from coordination_agents import start_agents

from mabeam import coordination


def test_hierarchy_structure():
    """Pure: 15 agents in clusters of 3 over 3 levels -> 5, 2, 1 clusters, 7 representatives."""
    levels = coordination.build_hierarchy([f"a{i}" for i in range(15)], cluster_size=3, max_levels=3)
    assert [len(level) for level in levels] == [5, 2, 1]
    assert all(len(c) == 3 for c in levels[0]) and len(levels[2][0]) <= 3
    assert coordination.count_representatives(levels) == 7
    big = coordination.build_hierarchy(range(100), cluster_size=8, max_levels=4)
    assert [len(level) for level in big] == [13, 2, 1]
    assert sorted(a for c in big[0] for a in c) == list(range(100))
    assert max(map(len, big[0])) - min(map(len, big[0])) <= 1  # balanced
    with pytest.raises(coordination.InsufficientAgentsForHierarchy) as info:
        coordination.build_hierarchy(range(5))
    assert (info.value.minimum, info.value.n) == (6, 5)
    with pytest.raises(coordination.InvalidParameter):
        coordination.build_hierarchy(range(10), cluster_size=1)


def test_iterative_refinement_converges_on_the_agents_proposals(app):
    start_agents(
        {
            "r1": {"words": "fast cheap reliable"},
            "r2": {"words": "fast reliable secure"},
            "r3": {"words": "fast reliable simple"},
        }
    )
    result = coordination.run_iterative_refinement(["r1", "r2", "r3", "gone"], "design", max_rounds=5, threshold=0.95)
    assert result.converged and result.reason == "converged" and result.round_count == 2
    first, second = result.rounds
    assert first.proposals == {"r1": "fast cheap reliable", "r2": "fast reliable secure", "r3": "fast reliable simple"}
    assert first.agreement == pytest.approx(0.5) and first.stability is None
    assert first.failed == {"gone": "not_running"}
    assert second.proposals == dict.fromkeys(("r1", "r2", "r3"), "fast reliable")
    assert second.agreement == 1.0 and second.stability == pytest.approx(2 / 3)
    assert result.best == "fast reliable" and result.best_agent == "r1"


def test_iterative_refinement_stops_when_nobody_moves(app):
    start_agents({"s1": {"words": "red", "stubborn": True}, "s2": {"words": "blue", "stubborn": True}})
    result = coordination.run_iterative_refinement(["s1", "s2"], "colour", max_rounds=5)
    assert not result.converged and result.reason == "stalled" and result.round_count == 2
    capped = coordination.run_iterative_refinement(["s1", "s2"], "colour", max_rounds=1)
    assert capped.reason == "max_rounds" and capped.round_count == 1 and capped.rounds[0].agreement == 0.0


def test_hierarchical_consensus_with_representative_failover(app):
    """Clusters of 3; the representatives of clusters 0 and 2 die mid-round
    (SIGKILL while representing); the next member takes over."""
    ids = [f"h{i}" for i in range(9)]
    votes = {
        "h0": "yes",
        "h1": "yes",
        "h2": "no",
        "h3": "no",
        "h4": "no",
        "h5": "yes",
        "h6": "yes",
        "h7": "yes",
        "h8": "no",
    }
    specs = {a: {"vote": votes[a], "die_on_vote": a in ("h0", "h6")} for a in ids}
    start_agents(specs, restart="temporary")
    result = coordination.run_hierarchical_consensus(ids, "merge?", cluster_size=3, max_levels=3, timeout=5)
    assert [(f.cluster, f.failed, f.reason, f.replacement) for f in result.failovers] == [
        (0, "h0", "killed", "h1"),
        (2, "h6", "killed", "h7"),
    ]
    assert result.representatives == ("h1", "h3", "h7")
    c0, c1, c2 = result.clusters
    assert c0.votes == {"h1": "yes", "h2": "no"} and c0.decision is None  # 1 to 1: no majority
    assert c1.votes == {"h3": "no", "h4": "no", "h5": "yes"} and c1.decision == "no"
    assert c2.votes == {"h7": "yes", "h8": "no"} and c2.decision is None
    assert result.decision == "no" and result.reached  # the only cluster that decided
    assert result.failed == {"h0": "killed", "h6": "killed"}
    assert result.levels == [[ids[0:3], ids[3:6], ids[6:9]], [["h1", "h3", "h7"]]]


def test_hierarchical_consensus_all_representatives_answer(app):
    ids = [f"k{i}" for i in range(6)]
    start_agents({a: {"vote": "go" if a != "k5" else "stop"} for a in ids})
    result = coordination.run_hierarchical_consensus(ids, "launch", cluster_size=3, max_levels=2, timeout=5)
    assert result.failovers == () and result.failed == {}
    assert [c.votes for c in result.clusters] == [
        {"k0": "go", "k1": "go", "k2": "go"},
        {"k3": "go", "k4": "go", "k5": "stop"},
    ]
    assert result.levels == [[ids[:3], ids[3:]], [["k0", "k3"]]]
    top = result.upper[0]
    assert top.votes == {"k0": "go", "k3": "go"} and top.representative is None  # the session tallies the top
    assert result.decision == "go" and result.reached
    with pytest.raises(coordination.InsufficientAgentsForHierarchy):
        coordination.run_hierarchical_consensus(ids[:5], "x")
