"""Consensus tallies over given votes (mabeam.coordination.voting)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam._errors import MabeamError
from mabeam.coordination import CoordinationError
from mabeam.coordination.voting import (
    APPROVE,
    MAJORITY_QUORUM,
    NEUTRAL,
    NO_DECISION,
    REJECT,
    STRONG_APPROVE,
    ConsensusReport,
    DuplicateVote,
    InsufficientAgents,
    InvalidVote,
    InvalidVotingParameter,
    PaymentStructure,
    QuorumNotMet,
    TooManyVotes,
    UnknownVoter,
    VotingError,
    WeightedVote,
    byzantine_quorum,
    byzantine_tally,
    cap_weight_shares,
    entropy,
    expertise_weight,
    gini,
    majority_tally,
    max_faults,
    min_agents,
    quorum_met,
    require_quorum,
    resolve_collusion_resistant_consensus,
    suspected_colluders,
    unanimous_tally,
    vote_value,
    weighted_tally,
)

# --------------------------------------------------------------------------- majority, unanimity, quorum


def test_majority_worked_examples():
    t = majority_tally({"a": "yes", "b": "yes", "c": "no"})
    assert (t.decision, t.reached, t.confidence) == ("yes", True, pytest.approx(2 / 3))
    assert dict(t.counts) == {"yes": 2, "no": 1}
    tie = majority_tally({"a": "x", "b": "y"})
    assert not tie.reached and tie.decision is None and tie.leader == "x" and "majority" in tie.reason
    plurality = majority_tally({"a": "x", "b": "y", "c": "z", "d": "x"})
    assert not plurality.reached  # 2 of 4 is not more than half
    low = majority_tally({"a": "x", "b": "x", "c": "x"}, eligible=10, quorum=0.5)
    assert not low.reached and "quorum" in low.reason
    assert majority_tally({"a": "x", "b": "x", "c": "x"}, eligible=6, quorum=0.5).reached
    assert not majority_tally({}).reached


def test_unanimous():
    assert unanimous_tally({"a": 1, "b": 1}).decision == 1
    assert not unanimous_tally({"a": 1, "b": 2}).reached
    assert not unanimous_tally({"a": 1, "b": 1}, eligible=3).reached  # an abstention breaks unanimity
    assert not unanimous_tally({}).reached


def test_quorum_checks():
    assert quorum_met(2, 3, 2 / 3) and not quorum_met(1, 3, 0.5) and quorum_met(0, 0, 0.5)
    require_quorum(5, 10, 0.5)
    with pytest.raises(QuorumNotMet):
        require_quorum(4, 10, 0.5)
    with pytest.raises(InvalidVotingParameter):
        quorum_met(4, 3, 0.5)
    with pytest.raises(InvalidVotingParameter):
        quorum_met(1, 3, 1.5)


def test_majority_quorum_asks_for_more_than_half_of_the_electorate():
    assert MAJORITY_QUORUM is None
    assert [quorum_met(cast, 7, None) for cast in (1, 3, 4, 7)] == [False, False, True, True]
    assert not quorum_met(3, 6, None) and quorum_met(3, 6, 0.5)  # half is not a majority
    assert quorum_met(0, 0, None)
    lone = majority_tally({"a": "x"}, eligible=7, quorum=None)
    assert not lone.reached and lone.reason == "quorum not met: 1 of 7 voted, quorum is a majority (4 of 7)"
    assert majority_tally(dict.fromkeys("abcd", "x"), eligible=7, quorum=None).decision == "x"
    with pytest.raises(QuorumNotMet, match="a majority"):
        require_quorum(2, 4, None)
    weights = dict.fromkeys("abcdefg", 1.0)
    solo = weighted_tally([WeightedVote("a", True)], weights, quorum=None)
    assert solo.decision == NO_DECISION and "1 of 7 voted" in solo.reason
    four = [WeightedVote(v, True) for v in "abcd"]
    assert weighted_tally(four, weights, quorum=None).decision == STRONG_APPROVE


# --------------------------------------------------------------------------- weighted voting


def test_vote_values_follow_the_vote_scale():
    assert [vote_value(v) for v in (True, "approve", False, "reject", "neutral", 0.25)] == [1, 1, 0, 0, 0.5, 0.25]
    for bad in ("maybe", 1.5, None):
        with pytest.raises(InvalidVote):
            vote_value(bad)


def test_expertise_weight_bands():
    assert expertise_weight({}) == pytest.approx(0.5 * 1.2)  # every metric defaults to 0.5
    all_ = ("accuracy", "consistency", "domain_knowledge", "past_performance")
    assert expertise_weight(dict.fromkeys(all_, 1.0)) == pytest.approx(2.0)
    assert expertise_weight(dict.fromkeys(all_, 0.7)) == pytest.approx(1.05)
    assert expertise_weight(dict.fromkeys(all_, 0.3)) == pytest.approx(0.3)
    assert expertise_weight(dict.fromkeys(all_, 0.0)) == 0.1  # clamped
    mixed = {"accuracy": 1.0, "consistency": 0.0, "domain_knowledge": 1.0, "past_performance": 0.0}
    assert expertise_weight(mixed) == pytest.approx(0.6 * 1.5)
    with pytest.raises(InvalidVotingParameter):
        expertise_weight({"charisma": 1.0})


def test_weight_cap_worked_examples():
    assert dict(cap_weight_shares({"a": 3, "b": 1, "c": 1})) == {"a": 0.5, "b": 0.25, "c": 0.25}
    assert dict(cap_weight_shares({"a": 10, "b": 10, "c": 1}, cap=0.4)) == pytest.approx({"a": 0.4, "b": 0.4, "c": 0.2})
    # Capping a raises b above the cap, so a second round caps b too.
    shares = cap_weight_shares({"a": 100, "b": 30, "c": 10, "d": 10}, cap=0.35)
    assert dict(shares) == pytest.approx({"a": 0.35, "b": 0.35, "c": 0.15, "d": 0.15})
    assert dict(cap_weight_shares({"solo": 2.0})) == {"solo": 1.0}  # infeasible cap: most even split
    assert dict(cap_weight_shares({"a": 1, "b": 0})) == {"a": 0.5, "b": 0.5}
    assert dict(cap_weight_shares({})) == {}
    with pytest.raises(InvalidVotingParameter):
        cap_weight_shares({"a": -1})


def test_weighted_tally_worked_example():
    weights = {"a": 3.0, "b": 1.0, "c": 1.0}  # a is capped to 50%
    votes = [WeightedVote("a", "approve"), WeightedVote("b", "reject"), WeightedVote("c", "neutral")]
    t = weighted_tally(votes, weights)
    assert t.score == pytest.approx(0.5 * 1 + 0.25 * 0 + 0.25 * 0.5)
    assert t.decision == APPROVE and t.participation == pytest.approx(1.0)
    assert t.gini == pytest.approx(sum(abs(x - y) for x in (0.5, 0.25, 0.25) for y in (0.5, 0.25, 0.25)) / 6)
    assert t.entropy == pytest.approx(1.5)
    low_confidence = weighted_tally([WeightedVote("a", True, 0.0), WeightedVote("b", 0.2)], weights)
    assert (low_confidence.decision, low_confidence.score) == (REJECT, pytest.approx(0.2))
    assert weighted_tally([WeightedVote("b", True)], weights, quorum=0.5).decision == NO_DECISION
    assert weighted_tally([], weights).decision == NO_DECISION
    assert weighted_tally([WeightedVote("a", 0.3)], weights).decision == NEUTRAL
    assert weighted_tally([WeightedVote("a", 0.7)], weights).decision == STRONG_APPROVE
    with pytest.raises(UnknownVoter):
        weighted_tally([WeightedVote("z", True)], weights)
    with pytest.raises(DuplicateVote):
        weighted_tally([WeightedVote("a", True), WeightedVote("a", False)], weights)
    with pytest.raises(InvalidVote):
        weighted_tally([WeightedVote("a", True, 2.0)], weights)


def test_gini_and_entropy_extremes():
    assert gini([1, 1, 1, 1]) == 0 and entropy([1, 1, 1, 1]) == pytest.approx(2.0)
    assert gini([1, 0, 0, 0]) == pytest.approx(0.75) and entropy([1, 0, 0, 0]) == 0
    assert gini([]) == 0 and entropy([]) == 0


# --------------------------------------------------------------------------- Byzantine


def test_byzantine_admission_needs_3f_plus_1():
    assert [min_agents(f) for f in (1, 2, 3)] == [4, 7, 10]
    for f, n in ((1, 3), (2, 6), (3, 9)):
        with pytest.raises(InsufficientAgents) as err:
            byzantine_tally({}, n, f)
        assert (err.value.minimum, err.value.n) == (3 * f + 1, n)
    assert max_faults(4) == 1 and max_faults(3) == 0 and max_faults(10) == 3


def test_byzantine_quorum_and_decision():
    assert [byzantine_quorum(3 * f + 1, f) for f in (0, 1, 2, 3)] == [1, 3, 5, 7]  # 2f + 1
    assert byzantine_quorum(5, 1) == 4  # 2f + 1 = 3 would be unsafe here
    t = byzantine_tally({"a": "v", "b": "v", "c": "v", "d": "w"}, n=4, f=1)
    assert (t.decided, t.value, t.quorum) == (True, "v", 3)
    t = byzantine_tally({"a": "v", "b": "v", "d": "w"}, n=4)
    assert not t.decided and t.value is None
    with pytest.raises(TooManyVotes):
        byzantine_tally({k: "v" for k in "abcde"}, n=4)


@settings(max_examples=150)
@given(data=st.data(), f=st.integers(0, 3), extra=st.integers(0, 6))
def test_byzantine_observers_never_decide_different_values(data, f, extra):
    """Honest voters vote once; faulty ones tell each observer anything; observers see any subset."""
    n = 3 * f + 1 + extra
    honest = {f"h{k}": data.draw(st.sampled_from("xy")) for k in range(n - f)}
    faulty = [f"f{k}" for k in range(f)]
    decided = set()
    for _ in range(3):
        seen = data.draw(st.sets(st.sampled_from(sorted(honest) + faulty)))
        view = {v: honest[v] if v in honest else data.draw(st.sampled_from("xy")) for v in sorted(seen)}
        t = byzantine_tally(view, n, f)
        if t.decided:
            decided.add(t.value)
    assert len(decided) <= 1


@settings(max_examples=120)
@given(votes=st.dictionaries(st.integers(0, 20), st.sampled_from("abc"), max_size=21))
def test_majority_decision_has_more_than_half(votes):
    t = majority_tally(votes)
    if t.reached:
        assert 2 * t.counts[t.decision] > len(votes)
    else:
        assert all(2 * c <= len(votes) for c in t.counts.values())


@settings(max_examples=150)
@given(
    weights=st.dictionaries(st.text("abcdefgh", min_size=1, max_size=2), st.floats(0, 10), min_size=1, max_size=8),
    cap=st.floats(0.05, 1.0),
)
def test_capped_shares_sum_to_one_respect_the_cap_and_keep_order(weights, cap):
    shares = cap_weight_shares(weights, cap)
    assert list(shares) == list(weights)
    assert sum(shares.values()) == pytest.approx(1.0)
    if cap * len(weights) >= 1:
        assert max(shares.values()) <= cap + 1e-9
        names = list(weights)
        for a in names:
            for b in names:
                if weights[a] > weights[b]:
                    assert shares[a] >= shares[b] - 1e-9
        # Uncapped agents keep their relative proportions.
        free = [a for a in names if shares[a] < cap - 1e-9 and weights[a] > 0]
        for a in free:
            for b in free:
                assert shares[a] * weights[b] == pytest.approx(shares[b] * weights[a], rel=1e-6, abs=1e-9)


@settings(max_examples=120)
@given(
    votes=st.dictionaries(
        st.sampled_from("abcdef"),
        st.tuples(st.one_of(st.booleans(), st.floats(0, 1), st.sampled_from(["neutral"])), st.floats(0, 1)),
    ),
    weights=st.fixed_dictionaries({k: st.floats(0.1, 3.0) for k in "abcdef"}),
)
def test_weighted_score_stays_within_the_votes(votes, weights):
    t = weighted_tally([WeightedVote(v, value, conf) for v, (value, conf) in votes.items()], weights)
    if t.score is None:
        assert t.decision == NO_DECISION
    else:
        values = [vote_value(value) for value, conf in votes.values() if conf > 0]
        assert min(values) - 1e-9 <= t.score <= max(values) + 1e-9


# --------------------------------------------------------------------------- collusion-resistant consensus


def test_collusion_scenario():
    """True value 76, honest agents report 68/79/73, two colluders both report 95."""
    reports = [
        ConsensusReport("honest_1", 68, 0.8, 0.9),
        ConsensusReport("honest_2", 79, 0.7, 0.85),
        ConsensusReport("honest_3", 73, 0.9, 0.8),
        ConsensusReport("colluder_1", 95, 0.95, 0.6),
        ConsensusReport("colluder_2", 95, 0.95, 0.6),
    ]
    structure = PaymentStructure(base_payment=50.0, accuracy_bonus_rate=2.0, collusion_penalty=100.0)
    initial = {r.agent_id: 0.8 for r in reports}
    result = resolve_collusion_resistant_consensus(reports, 76, payment=structure, reputations=initial)
    assert result.collusion_detected
    assert result.suspected_colluders == {"colluder_1", "colluder_2"}
    p = result.payments
    assert p["honest_1"] == pytest.approx(50 + (1 - 8 / 76) * 2)
    assert p["honest_2"] == pytest.approx(50 + (1 - 3 / 76) * 2)
    assert p["honest_3"] == pytest.approx(50 + (1 - 3 / 76) * 2)
    assert p["colluder_1"] == p["colluder_2"] == 0.0  # 50 + 1.5 - 100, floored at 0
    honest_avg = sum(p[a] for a in ("honest_1", "honest_2", "honest_3")) / 3
    assert honest_avg > (p["colluder_1"] + p["colluder_2"]) / 2
    assert all(p[c] < 50 for c in ("colluder_1", "colluder_2"))
    assert result.reputations["colluder_1"] == pytest.approx(0.6)
    assert result.reputations["colluder_2"] < 0.8
    assert result.reputations["honest_1"] == 0.8
    # Consensus over trusted agents only vs the naive mean over everyone.
    assert result.consensus_value == pytest.approx((0.9 * 68 + 0.85 * 79 + 0.8 * 73) / 2.55)
    assert result.naive_consensus == pytest.approx((0.9 * 68 + 0.85 * 79 + 0.8 * 73 + 1.2 * 95) / 3.75)
    assert abs(result.consensus_value - 76) < abs(result.naive_consensus - 76)


def test_collusion_buckets_and_errors():
    same_bucket = [ConsensusReport("a", 70), ConsensusReport("b", 74.9), ConsensusReport("c", 75)]
    assert suspected_colluders(same_bucket) == {"a", "b"}
    assert suspected_colluders([ConsensusReport("a", -1), ConsensusReport("b", 1)]) == frozenset()
    everyone = resolve_collusion_resistant_consensus([ConsensusReport("a", 10), ConsensusReport("b", 11)], 10)
    assert everyone.consensus_value == everyone.naive_consensus == pytest.approx(10.5)
    with pytest.raises(InvalidVotingParameter):
        resolve_collusion_resistant_consensus([ConsensusReport("a", 1)], 0)
    with pytest.raises(DuplicateVote):
        resolve_collusion_resistant_consensus([ConsensusReport("a", 1), ConsensusReport("a", 2)], 1)
    with pytest.raises(InvalidVotingParameter):
        ConsensusReport("a", 1, information_quality=2)


@settings(max_examples=120)
@given(
    # Estimates from a narrow range too, so that agents share buckets
    # (suspects) often: filtering for them would discard most inputs.
    estimates=st.lists(st.one_of(st.floats(-1000, 1000), st.integers(-20, 20).map(float)), min_size=1, max_size=8),
    true_value=st.floats(1, 1000),
)
def test_collusion_payments_are_never_negative_and_suspects_are_paid_less(estimates, true_value):
    reports = [ConsensusReport(f"a{k}", e) for k, e in enumerate(estimates)]
    result = resolve_collusion_resistant_consensus(reports, true_value)
    assert all(v >= 0 for v in result.payments.values())
    for a in result.suspected_colluders:
        assert result.payments[a] <= max(0.0, 50 + 2 * result.accuracy[a] - 100)


def test_voting_errors_are_coordination_errors_and_value_errors():
    with pytest.raises(InvalidVote) as info:
        vote_value("maybe")
    assert isinstance(info.value, VotingError) and isinstance(info.value, ValueError)
    assert isinstance(info.value, CoordinationError) and isinstance(info.value, MabeamError)
