"""Consensus sessions with votes from real agent processes: faults are
listed, sessions run concurrently (the sessions' own machinery, hosts and
their faults: test_coordination_sessions.py)."""

from __future__ import annotations

import random
import time

import pytest
from coordination_agents import start_agents
from helpers import recv_tagged

import mabeam
import otp
from mabeam import coordination
from mabeam._agent_registry import AGENT_SUPERVISOR
from mabeam._app import COORDINATION
from mabeam.coordination._session import GRACE


def _running():
    return {s.id for s in coordination.list_sessions()}


def test_majority_counts_the_agents_own_votes(app):
    start_agents({"a": {"vote": "yes"}, "b": {"vote": "yes"}, "c": {"vote": "no"}, "d": {"vote": None}})
    result = coordination.run_consensus(["a", "b", "c", "d", "ghost"], {"deploy": "v2"}, timeout=5)
    assert result.reached and result.decision == "yes"
    assert result.votes == {"a": "yes", "b": "yes", "c": "no"}
    assert result.abstained == ("d",)
    assert result.failed == {"ghost": "not_running"}
    assert result.tally.counts == {"yes": 2, "no": 1} and result.tally.confidence == pytest.approx(2 / 3)
    # the same agents with a quorum of 80% of the five: three votes are not enough
    short = coordination.run_consensus(["a", "b", "c", "d", "ghost"], "x", quorum=0.8)
    assert not short.reached and short.decision is None and "quorum" in short.reason
    # unanimity: an abstention breaks it, agreement of all makes it
    assert not coordination.run_consensus(["a", "b", "d"], "x", "unanimous").reached
    assert coordination.run_consensus(["a", "b"], "x", "unanimous").decision == "yes"
    # no session was a process, and none is left on its host
    assert otp.supervisor.count_children(COORDINATION)["active"] == 0
    assert coordination.list_sessions() == []


def test_the_default_quorum_is_a_majority_of_the_agents_asked(app):
    """One voter left out of seven decides nothing unless the caller asks
    for a lower quorum; four of seven decide; two of four (half) do not."""
    start_agents({f"s{i}": {"vote": "approve"} for i in range(4)})
    gone = [f"gone{i}" for i in range(6)]
    for method, decision in (("majority", "approve"), ("weighted", "strong_approve")):
        lone = coordination.run_consensus(["s0", *gone], "x", method, timeout=5)
        assert not lone.reached and lone.decision is None and "quorum" in lone.reason
        assert lone.votes == {"s0": "approve"} and lone.failed == dict.fromkeys(gone, "not_running")
        assert coordination.run_consensus(["s0", "s1", "s2", "s3", *gone[:3]], "x", method).decision == decision
        assert not coordination.run_consensus(["s0", "s1", *gone[:2]], "x", method).reached
        assert coordination.run_consensus(["s0", *gone], "x", method, quorum=0.0).reached  # asked for
    abstaining = coordination.run_consensus(["s0", "s1", "s2", *gone[:3]], "x", quorum=0.5)
    assert abstaining.reached  # an explicit fraction keeps its meaning: at least half


def test_a_session_waits_on_each_agent_itself_and_a_silent_one_costs_its_own_timeout(app):
    """The session's host holds one request per agent (it monitors every
    agent whose answer it still waits for: no helper process in between);
    an agent that does not answer is listed as 'timeout' and the others'
    votes count."""
    me = otp.self()
    pids = start_agents({"silent": {"hold": True, "notify": me}, "p": {}, "q": {}})
    session = coordination.run_consensus_async(["silent", "p", "q"], "x", timeout=2)
    assert recv_tagged("holding") == ("holding", "silent")
    assert pids["silent"] in otp.process_info(session.host).monitors
    result = session.result(20)
    assert result.failed == {"silent": "timeout"} and result.votes == {"p": "approve", "q": "approve"}
    assert result.reached and result.decision == "approve"
    assert 2 <= result.elapsed < 2 + GRACE
    otp.send(pids["silent"], ("release",))  # its late answer is dropped, never delivered


def test_weighted_voting_uses_expertise_metadata_with_the_cap(app):
    expert = {"accuracy": 1.0, "consistency": 1.0, "domain_knowledge": 1.0, "past_performance": 1.0}
    start_agents(
        {
            "expert": {"vote": "reject", "metadata": {"expertise": expert}},
            "n1": {"vote": ("approve", 1.0)},
            "n2": {"vote": {"vote": "approve", "confidence": 1.0}},
            "garbled": {"vote": "maybe"},
        }
    )
    assert coordination.voting.expertise_weight(expert) == pytest.approx(2.0)
    result = coordination.run_consensus(["expert", "n1", "n2"], "merge", "weighted")
    # uncapped the expert would hold 2.0 / 3.2 of the weight and the score be 0.375 (neutral)
    assert result.tally.shares == pytest.approx({"expert": 0.5, "n1": 0.25, "n2": 0.25})
    assert result.tally.score == pytest.approx(0.5) and result.decision == "approve"
    assert result.votes == {"expert": "reject", "n1": ("approve", 1.0), "n2": {"vote": "approve", "confidence": 1.0}}
    garbled = coordination.run_consensus(["expert", "n1", "n2", "garbled"], "merge", "weighted")
    assert garbled.failed == {"garbled": ("invalid_vote", "'maybe'")}  # never silently neutral
    assert set(garbled.votes) == {"expert", "n1", "n2"}
    # explicit weights instead of metadata
    even = coordination.run_consensus(
        ["expert", "n1", "n2"], "merge", "weighted", weights={"expert": 1, "n1": 1, "n2": 1}
    )
    assert even.tally.score == pytest.approx(2 / 3) and even.decision == "approve"
    with pytest.raises(coordination.InvalidParameter):
        coordination.run_consensus(["n1"], "x", "plurality")


def test_byzantine_admission_and_tally(app):
    for f, minimum in ((1, 4), (2, 7), (3, 10)):
        with pytest.raises(coordination.InsufficientAgents) as info:
            coordination.run_byzantine_consensus([f"x{i}" for i in range(minimum - 1)], "v", f=f)
        assert (info.value.minimum, info.value.n) == (minimum, minimum - 1)
    assert coordination.list_sessions() == []  # refused before any session
    start_agents({"b0": {"vote": "A"}, "b1": {"vote": "A"}, "b2": {"vote": "A"}, "liar": {"vote": "B"}})
    result = coordination.run_byzantine_consensus(["b0", "b1", "b2", "liar"], "value", f=1)
    assert result.reached and result.decision == "A"
    assert result.tally.quorum == 3 and result.votes["liar"] == "B"
    assert result.tags == ("byzantine", "consensus", "fault_tolerant")


def test_collusion_resistant_consensus_with_reported_estimates(app):
    """True value 76, honest agents report 68/79/73, two colluders 95."""
    estimates = {"h1": 68, "h2": 79, "h3": 73, "c1": 95, "c2": 95}
    start_agents({a: {"estimate": v} for a, v in estimates.items()})
    result, reported, failed = coordination.run_collusion_resistant_consensus(
        list(estimates), "price", 76, reputations=dict.fromkeys(estimates, 0.8)
    )
    assert reported == estimates and failed == {}
    assert result.collusion_detected and result.suspected_colluders == {"c1", "c2"}
    honest = [result.payments[a] for a in ("h1", "h2", "h3")]
    colluders = [result.payments[a] for a in ("c1", "c2")]
    assert sum(honest) / 3 > sum(colluders) / 2
    assert all(p < 50 for p in colluders)
    assert all(result.reputations[a] < 0.8 for a in ("c1", "c2"))
    assert result.consensus_value == pytest.approx(220 / 3)  # the honest mean
    assert result.naive_consensus == pytest.approx(410 / 5)


def test_agent_crash_mid_coordination(app):
    """SIGKILL two of five agents during a session: the session completes
    with the others, lists both within 5 s, and both are restarted."""
    ids = [f"a{i}" for i in range(5)]
    pids = start_agents({a: {"die_on_vote": a in ("a1", "a3")} for a in ids})
    otp.supervisor.subscribe(AGENT_SUPERVISOR)
    started = time.monotonic()
    result = coordination.run_consensus(ids, "continue?", timeout=5)
    assert time.monotonic() - started < 5  # faults detected and listed within 5 s
    assert result.failed == {"a1": "killed", "a3": "killed"}
    assert set(result.votes) == {"a0", "a2", "a4"} and result.decision == "approve"
    restarted = {}  # the supervisor restarts both, in whichever order they died
    while set(restarted) != {"a1", "a3"}:
        msg = recv_tagged("$supervisor", timeout=15)
        if msg[2] == "started" and msg[3] in ("a1", "a3"):
            restarted[msg[3]] = msg[4]
    for agent_id, pid in restarted.items():
        assert pid != pids[agent_id]
        mabeam.await_status(agent_id, "running", timeout=15)
    assert otp.supervisor.count_children(AGENT_SUPERVISOR)["active"] == 5
    assert time.monotonic() - started < 15


def test_concurrent_sessions(app):
    """20 agents, 10 concurrent sessions of 5 random participants."""
    rng = random.Random(7)
    ids = [f"v{i}" for i in range(20)]
    start_agents({a: {"vote": "yes" if i % 4 else "no", "sleep": 0.05} for i, a in enumerate(ids)})
    groups = [rng.sample(ids, 5) for _ in range(10)]
    sessions = [coordination.run_consensus_async(g, ("proposal", i), timeout=5) for i, g in enumerate(groups)]
    assert len({s.id for s in sessions}) == 10 and len(_running()) <= 10
    results = [s.result(20) for s in sessions]
    for group, result in zip(groups, results):
        expected = {a: "yes" if int(a[1:]) % 4 else "no" for a in group}
        assert result.votes == expected and not result.failed
        assert result.reached == (list(expected.values()).count("yes") >= 3)


def test_a_slow_session_blocks_no_other(app):
    me = otp.self()
    start_agents({"slow": {"hold": True, "notify": me}, "p": {}, "q": {}, "r": {}})
    held = coordination.run_consensus_async(["slow", "p"], "wait", timeout=20)
    assert recv_tagged("holding") == ("holding", "slow")
    quick = coordination.run_consensus(["p", "q", "r"], "go", timeout=5)
    assert quick.decision == "approve"
    assert held.id in _running()
    otp.send(mabeam.whereis_agent("slow"), ("release",))
    assert held.result(10).votes == {"slow": "approve", "p": "approve"}
