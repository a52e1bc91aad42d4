"""Load-balancing strategies as pure functions over AgentLoad records."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.load_balancing import (
    GIB,
    AgentLoad,
    InvalidLoadRecord,
    NoSuitableAgent,
    OverloadThresholds,
    ResourceWeights,
    Strategy,
    capability_based,
    eligible,
    is_overloaded,
    load_stats,
    performance_weighted,
    resource_aware,
    resource_score,
    round_robin,
    select,
)


def agent(agent_id, caps=(), **kw) -> AgentLoad:
    return AgentLoad(agent_id, frozenset(caps), **kw)


def test_overload_uses_strict_default_thresholds():
    assert not is_overloaded(agent("a", cpu=0.9, memory_bytes=GIB, active_tasks=10))
    assert is_overloaded(agent("a", cpu=0.91))
    assert is_overloaded(agent("a", memory_bytes=GIB + 1))
    assert is_overloaded(agent("a", active_tasks=11))
    loose = OverloadThresholds(cpu=1.5, memory_bytes=4 * GIB, active_tasks=100)
    assert not is_overloaded(agent("a", cpu=1.2, memory_bytes=2 * GIB, active_tasks=50), loose)


def test_eligible_needs_alive_all_capabilities_and_capacity_and_explains_refusals():
    agents = [
        agent("dead", {"ml"}, alive=False),
        agent("partial", {"ml"}),
        agent("busy", {"ml", "nlp"}, active_tasks=20),
        agent("ok", {"ml", "nlp", "extra"}),
    ]
    assert [a.agent_id for a in eligible(agents, {"ml", "nlp"})] == ["ok"]
    with pytest.raises(NoSuitableAgent) as info:
        eligible(agents[:3], {"ml", "nlp"})
    err = info.value
    assert (err.total, err.dead, err.missing, err.overloaded) == (3, 1, 1, 1)
    assert err.required == frozenset({"ml", "nlp"})
    with pytest.raises(NoSuitableAgent):
        eligible([], ())


def test_records_are_validated():
    for bad in (
        {"cpu": -0.1},
        {"cpu": math.nan},
        {"memory_bytes": -1},
        {"active_tasks": -1},
        {"avg_task_duration": math.inf},
    ):
        with pytest.raises(InvalidLoadRecord):
            agent("a", **bad)
    with pytest.raises(InvalidLoadRecord):
        eligible([agent("a"), agent("a")])
    assert agent("a", ["x", "x"]).capabilities == frozenset({"x"})


def test_resource_aware_uses_the_weighted_resource_score():
    a = agent("a", cpu=0.5, memory_bytes=0, active_tasks=0)  # 0.20
    b = agent("b", cpu=0.0, memory_bytes=GIB // 2, active_tasks=2)  # 0.15 + 0.06 = 0.21
    c = agent("c", cpu=0.1, memory_bytes=GIB // 4, active_tasks=3)  # 0.04 + 0.075 + 0.09 = 0.205
    assert resource_score(a) == pytest.approx(0.20)
    assert resource_score(b) == pytest.approx(0.21)
    assert resource_score(c) == pytest.approx(0.205)
    assert resource_aware([b, c, a]).agent_id == "a"
    cpu_blind = ResourceWeights(cpu=0.0)
    assert resource_aware([a, b, c], weights=cpu_blind).agent_id == "a"  # 0 vs 0.21 vs 0.165
    assert resource_aware([agent("z"), agent("y")]).agent_id == "y"  # ties: lowest id


def test_round_robin_cycles_in_id_order_whatever_the_input_order():
    agents = [agent(x) for x in "dbca"]
    cursor, seen = None, []
    for _ in range(8):
        sel = round_robin(agents, cursor=cursor)
        cursor = sel.cursor
        seen.append(sel.agent.agent_id)
    assert seen == list("abcdabcd")


def test_round_robin_is_stable_when_agents_join_or_leave():
    # after "b", the next is the next id, not "counter mod n" over a shifted list
    assert round_robin([agent(x) for x in "acd"], cursor="b").agent.agent_id == "c"
    assert round_robin([agent(x) for x in "abcd"], cursor="b").agent.agent_id == "c"
    assert round_robin([agent(x) for x in "abd"], cursor="c").agent.agent_id == "d"  # the cursor's agent left
    assert round_robin([agent(x) for x in "ab"], cursor="c").agent.agent_id == "a"  # wraps around
    assert round_robin([agent(x) for x in ("a", "b", "bb", "c")], cursor="b").agent.agent_id == "bb"
    assert round_robin([agent("a"), agent("c", active_tasks=99)], cursor="a").agent.agent_id == "a"


def test_capability_based_prefers_most_matching_extras_then_least_loaded():
    agents = [
        agent("generalist", {"ml", "gpu", "fast"}, cpu=0.8),
        agent("gpu-only", {"ml", "gpu"}, cpu=0.1),
        agent("gpu-fast-idle", {"ml", "gpu", "fast"}, cpu=0.0),
        agent("no-ml", {"gpu", "fast"}),
    ]
    assert capability_based(agents, {"ml"}, preferred={"gpu", "fast"}).agent_id == "gpu-fast-idle"
    assert capability_based(agents, {"ml"}, preferred={"gpu"}).agent_id == "gpu-fast-idle"
    assert capability_based(agents, {"ml"}).agent_id == "gpu-fast-idle"  # all tie: least loaded
    assert capability_based(agents[:2], {"ml"}, preferred={"fast"}).agent_id == "generalist"


def test_performance_weighted_picks_the_fastest_or_draws_by_speed():
    agents = [agent("slow", avg_task_duration=4.0), agent("fast", avg_task_duration=1.0)]
    assert performance_weighted(agents).agent_id == "fast"
    rng = random.Random(7)
    draws = Counter(performance_weighted(agents, rng=rng).agent_id for _ in range(2_000))
    assert 0.75 < draws["fast"] / 2_000 < 0.85  # weights 1 : 1/4 -> 80% fast
    rng_a, rng_b = random.Random(3), random.Random(3)
    assert [performance_weighted(agents, rng=rng_a) for _ in range(20)] == [
        performance_weighted(agents, rng=rng_b) for _ in range(20)
    ]  # seeded: reproducible
    new = [agent("new", avg_task_duration=0.0), agent("old", avg_task_duration=0.5)]
    assert performance_weighted(new).agent_id == "new"
    rng = random.Random(1)
    draws = Counter(performance_weighted(new, rng=rng, min_duration=0.25).agent_id for _ in range(2_000))
    assert 0.6 < draws["new"] / 2_000 < 0.73  # weights 4 : 2 -> two thirds
    with pytest.raises(ValueError):
        performance_weighted(new, min_duration=0)


def test_select_dispatches_and_keeps_the_cursor():
    agents = [agent("a", {"x"}, cpu=0.5, avg_task_duration=1), agent("b", {"x"}, cpu=0.1, avg_task_duration=2)]
    assert select("round_robin", agents, cursor="a").cursor == "b"
    sel = select(Strategy.RESOURCE_AWARE, agents, {"x"}, cursor="a")
    assert (sel.agent.agent_id, sel.cursor) == ("b", "a")
    assert select("performance_weighted", agents).agent.agent_id == "a"
    assert select("capability_based", agents, preferred={"x"}).agent.agent_id == "b"
    with pytest.raises(ValueError):
        select("fastest", agents)


def test_load_stats_count_and_average_over_alive_agents():
    stats = load_stats(
        [agent("a", cpu=0.2, memory_bytes=100), agent("b", cpu=0.95, memory_bytes=300), agent("c", alive=False)]
    )
    assert (stats.total_agents, stats.alive_agents, stats.available_agents, stats.overloaded_agents) == (3, 2, 1, 1)
    assert stats.average_cpu == pytest.approx(0.575) and stats.average_memory_bytes == 200
    assert load_stats([]).average_cpu == 0.0


loads = st.builds(
    AgentLoad,
    agent_id=st.text("abcdef", min_size=1, max_size=3),
    capabilities=st.frozensets(st.sampled_from(["ml", "nlp", "gpu"])),
    cpu=st.floats(0, 1.2),
    memory_bytes=st.integers(0, 2 * GIB),
    active_tasks=st.integers(0, 15),
    avg_task_duration=st.floats(0, 10),
    alive=st.booleans(),
)
agent_lists = st.lists(loads, max_size=12, unique_by=lambda a: a.agent_id)


@settings(max_examples=200, deadline=None)
@given(
    agents=agent_lists,
    required=st.frozensets(st.sampled_from(["ml", "nlp", "gpu"]), max_size=2),
    strategy=st.sampled_from(list(Strategy)),
    seed=st.integers(0, 10),
)
def test_every_strategy_only_ever_picks_an_eligible_agent(agents, required, strategy, seed):
    pool = [a for a in agents if a.alive and required <= a.capabilities and not is_overloaded(a)]
    if not pool:
        with pytest.raises(NoSuitableAgent):
            select(strategy, agents, required)
        return
    chosen = select(strategy, agents, required, rng=random.Random(seed), preferred={"gpu"}).agent
    assert chosen in pool
    if strategy is Strategy.RESOURCE_AWARE:
        assert resource_score(chosen) == min(resource_score(a) for a in pool)


@settings(max_examples=100, deadline=None)
@given(agents=agent_lists, rounds=st.integers(1, 4))
def test_round_robin_gives_each_eligible_agent_one_turn_per_cycle(agents, rounds):
    pool = [a for a in agents if a.alive and not is_overloaded(a)]
    if not pool:
        return
    cursor, picks = None, Counter()
    for _ in range(rounds * len(pool)):
        sel = round_robin(agents, cursor=cursor)
        cursor = sel.cursor
        picks[sel.agent.agent_id] += 1
    assert picks == {a.agent_id: rounds for a in pool}
