"""Quota specs, tiers, degradation, and the escalation state machine, driven by explicit timestamps."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.quotas import (
    GB,
    MB,
    TIERS,
    AgentTerminated,
    ClockWentBackwards,
    Degradation,
    EscalationPolicy,
    Escalator,
    InvalidMeasurement,
    InvalidQuota,
    QuotaSpec,
    Resource,
    ResourceLimit,
    Resume,
    Stage,
    Suspend,
    Terminate,
    Throttle,
    UnknownTier,
    Violation,
    Warn,
    degradation_level,
    degradation_strategies,
    throttle_factor,
    tier,
)

STANDARD = tier("standard")  # rss 200/500/1000 MB, cpu 15/30/60 %
SAMPLES = EscalationPolicy(cpu_window=0)  # CPU judged sample by sample: the ladder alone
OVER_SOFT = 250 * MB
IDLE_CPU = 1.0


def kinds(decision) -> list[str]:
    return [type(a).__name__ for a in decision.actions]


# -- specs and tiers -------------------------------------------------------------------


def test_tiers_carry_the_inventory_numbers():
    light, std, heavy = TIERS["lightweight"], TIERS["standard"], TIERS["heavy"]
    assert (light.rss.soft, light.rss.hard, light.cpu.soft, light.cpu.hard) == (50 * MB, 100 * MB, 5, 10)
    assert (std.rss.soft, std.rss.hard, std.cpu.soft, std.cpu.hard) == (200 * MB, 500 * MB, 15, 30)
    assert (heavy.rss.soft, heavy.rss.hard, heavy.cpu.soft, heavy.cpu.hard) == (1 * GB, 2 * GB, 40, 80)
    assert std.rss.burst == 1000 * MB and std.cpu.burst == 60  # burst: twice hard
    assert light.rss.burst == 200 * MB  # above a numpy + scikit-learn process (about 140 MB)
    assert (light.rss.hard_stage, std.rss.hard_stage, heavy.rss.hard_stage) == (
        Stage.WARNED,
        Stage.THROTTLED,
        Stage.SUSPENDED,
    )
    with pytest.raises(UnknownTier):
        tier("gigantic")


@pytest.mark.parametrize(
    "args", [(0, 1, 1), (-1, 1, 1), (2, 1, 3), (1, 3, 2), (math.nan, 1, 1), (1, math.inf, math.inf)]
)
def test_limits_must_be_positive_finite_and_ordered(args):
    with pytest.raises(InvalidQuota):
        ResourceLimit(*args)


def test_limit_construction_and_overrides():
    with pytest.raises(InvalidQuota):
        ResourceLimit(1, 2, 3, hard_stage=Stage.NORMAL)
    with pytest.raises(InvalidQuota):  # termination needs a sustained violation, never one measurement
        ResourceLimit(1, 2, 3, hard_stage=Stage.TERMINATED)
    with pytest.raises(InvalidQuota):
        ResourceLimit.of(1, 2, burst_factor=0.5)
    assert ResourceLimit.of(10, 20, burst_factor=2).burst == 40
    custom = STANDARD.with_overrides(cpu=ResourceLimit.of(50, 90), name="agent-7")
    assert (custom.name, custom.cpu.soft, custom.rss) == ("agent-7", 50, STANDARD.rss)
    lim = ResourceLimit(10, 20, 30)
    assert [lim.violation(x) for x in (10, 10.1, 20, 20.1, 30, 30.1)] == [
        Violation.NONE,
        Violation.SOFT,
        Violation.SOFT,
        Violation.HARD,
        Violation.HARD,
        Violation.BURST,
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"throttle_after": 400},
        {"terminate_after": 100},
        {"calm_period": -1},
        {"suspend_after": math.nan},
        {"degradation": (1.0, 0.9, 1.2, 1.5)},
        {"degradation": (0.9, 1.0)},
        {"history_limit": 0},
        {"cpu_window": -1},
        {"burst_after": math.inf},
    ],
)
def test_inconsistent_policies_are_rejected(kwargs):
    with pytest.raises(InvalidQuota):
        EscalationPolicy(**kwargs)


def test_degradation_levels_use_strict_thresholds():
    got = [degradation_level(r) for r in (0.9, 0.91, 1.0, 1.01, 1.2, 1.21, 1.5, 1.51)]
    assert got == [
        Degradation.NONE,
        Degradation.MINIMAL,
        Degradation.MINIMAL,
        Degradation.MODERATE,
        Degradation.MODERATE,
        Degradation.AGGRESSIVE,
        Degradation.AGGRESSIVE,
        Degradation.EMERGENCY,
    ]
    assert degradation_strategies(Resource.RSS, Degradation.NONE) == ()
    assert degradation_strategies(Resource.RSS, Degradation.MODERATE) == ("cache_aggressively", "batch_operations")
    assert degradation_strategies(Resource.CPU, Degradation.EMERGENCY) == (
        "batch_operations",
        "use_fallback_algorithm",
        "reduce_precision",
        "drop_non_essential",
    )


def test_throttle_factor_follows_the_excess_ratio_table():
    assert [throttle_factor(u, 100) for u in (110, 121, 151, 201, 100)] == [0.9, 0.85, 0.7, 0.5, 0.9]


# -- escalation ------------------------------------------------------------------------


def test_the_ladder_warn_throttle_suspend_terminate_at_the_documented_times():
    e = Escalator("a", STANDARD)
    timeline = {}
    for t in range(0, 601, 1):
        d = e.observe(float(t), OVER_SOFT, IDLE_CPU)
        if d.actions:
            timeline[t] = kinds(d)
    assert timeline == {0: ["Warn"], 30: ["Throttle"], 300: ["Suspend"], 600: ["Terminate"]}
    terminate = e.history[-1].action
    assert terminate == Terminate(Resource.RSS, 5.0, False)
    assert e.stage is Stage.TERMINATED
    with pytest.raises(AgentTerminated):
        e.observe(601.0, 0, 0)


def test_the_first_actions_carry_resource_usage_limit_and_factor():
    e = Escalator("a", STANDARD)
    assert e.observe(0.0, OVER_SOFT, IDLE_CPU).actions == (Warn(Resource.RSS, OVER_SOFT, 200 * MB),)
    assert e.observe(30.0, OVER_SOFT, IDLE_CPU).actions == (Throttle(Resource.RSS, 0.85),)  # 25% over soft
    e = Escalator("b", STANDARD, SAMPLES)
    d = e.observe(0.0, 0, 20.0)
    assert d.actions == (Warn(Resource.CPU, 20.0, 15),) and d.resource is Resource.CPU


def test_sparse_measurements_emit_every_stage_passed_in_order():
    e = Escalator("a", STANDARD)
    e.observe(0.0, OVER_SOFT, IDLE_CPU)
    d = e.observe(400.0, OVER_SOFT, IDLE_CPU)
    assert kinds(d) == ["Throttle", "Suspend"]
    assert [(r.stage_before, r.stage_after) for r in e.history] == [
        (Stage.NORMAL, Stage.WARNED),
        (Stage.WARNED, Stage.THROTTLED),
        (Stage.THROTTLED, Stage.SUSPENDED),
    ]


def test_above_hard_climbs_at_once_to_the_limits_hard_stage_through_every_stage():
    d = Escalator("a", STANDARD).observe(0.0, 600 * MB, IDLE_CPU)
    assert kinds(d) == ["Warn", "Throttle"] and d.violation is Violation.HARD
    assert d.actions[0].limit == 500 * MB
    d = Escalator("b", tier("heavy")).observe(0.0, 2.5 * GB, IDLE_CPU)
    assert kinds(d) == ["Warn", "Throttle", "Suspend"]
    d = Escalator("c", tier("lightweight")).observe(0.0, 120 * MB, IDLE_CPU)
    assert kinds(d) == ["Warn"]  # lightweight memory: hard limit only warns


def test_above_burst_throttles_at_once_and_terminates_after_burst_after_skipping_suspension():
    e = Escalator("a", STANDARD)
    assert kinds(e.observe(0.0, 1100 * MB, IDLE_CPU)) == ["Warn", "Throttle"]  # burst = 2 x 500 MB
    assert e.observe(59.0, 1100 * MB, IDLE_CPU).actions == ()
    d = e.observe(60.0, 1100 * MB, IDLE_CPU)
    assert d.actions == (Terminate(Resource.RSS, 5.0, True),)
    record = e.history[-1]
    assert (record.violation, record.limit, record.stage_before) == (Violation.BURST, 1000 * MB, Stage.THROTTLED)


def test_a_measurement_at_or_under_burst_restarts_the_burst_clock():
    e = Escalator("a", STANDARD)
    e.observe(0.0, 1100 * MB, IDLE_CPU)
    e.observe(50.0, 900 * MB, IDLE_CPU)  # back under burst: still over hard, still throttled
    assert e.observe(100.0, 1100 * MB, IDLE_CPU).actions == ()
    assert kinds(e.observe(160.0, 1100 * MB, IDLE_CPU)) == ["Terminate"]


def test_a_suspended_agent_above_burst_is_terminated_from_its_suspension():
    e = Escalator("a", tier("heavy"))
    assert kinds(e.observe(0.0, 5 * GB, IDLE_CPU)) == ["Warn", "Throttle", "Suspend"]  # heavy: hard_stage SUSPENDED
    d = e.observe(60.0, 5 * GB, IDLE_CPU)
    assert d.actions == (Terminate(Resource.RSS, 5.0, True),) and e.history[-1].stage_before is Stage.SUSPENDED


def test_usage_back_under_soft_for_the_calm_period_resumes():
    e = Escalator("a", STANDARD)
    e.observe(0.0, OVER_SOFT, IDLE_CPU)
    e.observe(30.0, OVER_SOFT, IDLE_CPU)
    assert e.observe(40.0, 100 * MB, IDLE_CPU).actions == ()
    assert e.observe(99.0, 100 * MB, IDLE_CPU).actions == ()
    d = e.observe(100.0, 100 * MB, IDLE_CPU)
    assert d.actions == (Resume(Stage.THROTTLED),) and d.stage is Stage.NORMAL
    assert kinds(e.observe(101.0, OVER_SOFT, IDLE_CPU)) == ["Warn"]  # a new episode starts over


def test_a_short_dip_does_not_reset_the_escalation_clock():
    e = Escalator("a", STANDARD)
    e.observe(0.0, OVER_SOFT, IDLE_CPU)
    e.observe(10.0, 100 * MB, IDLE_CPU)  # dips below soft for less than the calm period
    d = e.observe(30.0, OVER_SOFT, IDLE_CPU)
    assert kinds(d) == ["Throttle"] and e.history[-1].elapsed == 30.0


def test_a_warned_agent_that_recovers_gets_a_resume_record_too():
    e = Escalator("a", STANDARD, EscalationPolicy(calm_period=0))
    e.observe(0.0, OVER_SOFT, IDLE_CPU)
    assert e.observe(1.0, 0, 0).actions == (Resume(Stage.WARNED),)


def test_degradation_is_reported_on_every_decision():
    e = Escalator("a", STANDARD, SAMPLES)
    assert e.observe(0.0, 100 * MB, 14.0).degradation is Degradation.MINIMAL  # cpu at 0.93 x soft
    assert e.observe(1.0, 310 * MB, 0.0).degradation is Degradation.EMERGENCY  # 1.55 x soft


def test_custom_timings_are_honoured():
    policy = EscalationPolicy(throttle_after=1, suspend_after=2, terminate_after=3, terminate_grace=0.5)
    e = Escalator("a", STANDARD, policy)
    got = [kinds(e.observe(float(t), OVER_SOFT, IDLE_CPU)) for t in range(4)]
    assert got == [["Warn"], ["Throttle"], ["Suspend"], ["Terminate"]]
    assert e.history[-1].action.grace_period == 0.5


def test_bad_measurements_and_clock_errors_are_typed():
    e = Escalator("a", STANDARD)
    e.observe(10.0, 0, 0)
    with pytest.raises(ClockWentBackwards):
        e.observe(9.0, 0, 0)
    for bad in ((11.0, -1, 0), (11.0, 0, math.nan), (math.inf, 0, 0), (11.0, "lots", 0), (11.0, None, 0)):
        with pytest.raises(InvalidMeasurement):
            e.observe(*bad)
    e.observe(10.0, 0, 0)  # the same instant twice is fine


def test_history_is_bounded_and_counts_what_it_dropped():
    e = Escalator("a", STANDARD, EscalationPolicy(history_limit=2, calm_period=0))
    for t in range(5):
        e.observe(2.0 * t, OVER_SOFT, IDLE_CPU)  # Warn
        e.observe(2.0 * t + 1, 0, 0)  # Resume
    assert len(e.history) == 2 and e.records_dropped == 8
    assert [type(r.action) for r in e.history] == [Warn, Resume]


# -- properties ------------------------------------------------------------------------

spec_strategy = st.sampled_from(
    [*TIERS.values(), QuotaSpec("tight", ResourceLimit(10, 10, 10), ResourceLimit(1, 2, 3))]
)
steps = st.lists(
    st.tuples(
        st.floats(0, 200),  # seconds since the previous measurement
        st.floats(0, 3.0),  # rss as a multiple of the hard limit
        st.floats(0, 3.0),  # cpu as a multiple of the hard limit
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    spec=spec_strategy,
    steps=steps,
    calm=st.sampled_from([0.0, 60.0]),
    window=st.sampled_from([0.0, 30.0]),
    burst_after=st.sampled_from([0.0, 60.0]),
)
def test_escalation_invariants(spec, steps, calm, window, burst_after):
    policy = EscalationPolicy(calm_period=calm, history_limit=10_000, cpu_window=window, burst_after=burst_after)
    e = Escalator("agent", spec, policy)
    now, emitted = 0.0, []
    for dt, rss_x, cpu_x in steps:
        now += dt
        rss, cpu = rss_x * spec.rss.hard, cpu_x * spec.cpu.hard
        before = e.stage
        d = e.observe(now, rss, cpu)
        emitted.extend(d.actions)
        if window == 0 and before is not Stage.SUSPENDED:
            assert d.cpu_percent == cpu
        cpu = d.cpu_percent  # what the rules judged
        over_soft = rss > spec.rss.soft or cpu > spec.cpu.soft
        ratio = max(rss / spec.rss.soft, cpu / spec.cpu.soft)
        assert d.degradation is degradation_level(ratio)
        if not over_soft:
            # below soft nothing escalates: at most a Resume, and never a termination
            assert d.actions in ((), (Resume(before),))
        if any(isinstance(a, Terminate) for a in d.actions):
            assert over_soft
        if d.stage is Stage.TERMINATED:
            break
    records = e.history
    assert [r.action for r in records] == emitted  # every action is recorded, in order
    for r in records:
        if isinstance(r.action, Resume):
            assert r.stage_after is Stage.NORMAL and r.action.lifted is r.stage_before
        elif isinstance(r.action, Terminate) and r.action.burst:
            # the only rule that may skip a stage (the suspension); never warn or throttle
            assert r.violation is Violation.BURST and r.stage_before >= Stage.THROTTLED
            assert r.elapsed >= policy.burst_after
        else:
            assert r.stage_after == r.stage_before + 1  # no stage skipped
            expected = {
                Warn: Stage.WARNED,
                Throttle: Stage.THROTTLED,
                Suspend: Stage.SUSPENDED,
                Terminate: Stage.TERMINATED,
            }[type(r.action)]
            assert r.stage_after is expected
            if isinstance(r.action, Terminate):  # a limit's hard_stage never hurries termination
                assert r.elapsed >= policy.terminate_after
            if r.violation is Violation.SOFT:  # not hurried by the hard rule: the timer decided
                assert (
                    r.elapsed
                    >= {
                        Stage.WARNED: 0,
                        Stage.THROTTLED: policy.throttle_after,
                        Stage.SUSPENDED: policy.suspend_after,
                        Stage.TERMINATED: policy.terminate_after,
                    }[r.stage_after]
                )
            assert r.violation is not Violation.NONE


# -- CPU: ordinary work passes, hogs end --------------------------------------------------


def replay_cpu(spec, policy, demand, until, period=1.0):
    """Replay a process that wants ``demand(t)`` % CPU, measured every ``period``:
    what it gets is what enforcement leaves it (the throttle's share of its speed,
    nothing while suspended).  Returns the escalator and ``[(t, action), ...]``."""
    e = Escalator("agent", spec, policy)
    timeline, share, t = [], 1.0, 0.0
    while t <= until and e.stage is not Stage.TERMINATED:
        got = 0.0 if t == 0 or e.stage is Stage.SUSPENDED else demand(t - period) * share
        for action in e.observe(t, 0, got).actions:
            timeline.append((t, type(action).__name__))
            share = action.factor if isinstance(action, Throttle) else 1.0 if isinstance(action, Resume) else share
        t += period
    return e, timeline


def test_a_computation_of_a_second_or_two_is_not_terminated_by_any_tier():
    for spec in TIERS.values():
        for seconds, cores in ((1.5, 1), (2, 1), (2, 2)):

            def work(t, seconds=seconds, cores=cores):
                return 100.0 * cores if t < seconds else 0.0

            e, timeline = replay_cpu(spec, EscalationPolicy(), work, 300, period=0.5)
            assert e.stage is not Stage.TERMINATED and "Terminate" not in dict(timeline).values(), (spec.name, timeline)
    _, timeline = replay_cpu(STANDARD, EscalationPolicy(), lambda t: 100.0 if t < 1.5 else 0.0, 300, period=0.5)
    assert timeline == []  # not even a warning: 1.5 s of one core is 5% of the standard tier's window


def test_a_cpu_hog_is_suspended_then_terminated_not_resumed_by_its_own_suspension():
    spec = QuotaSpec("cpu", ResourceLimit(1 * GB, 2 * GB, 3 * GB), ResourceLimit(10, 1000, 2000))
    policy = EscalationPolicy()
    e, timeline = replay_cpu(spec, policy, lambda t: 50.0, 2000)
    assert [kind for _, kind in timeline] == ["Warn", "Throttle", "Suspend", "Terminate"]
    warned, terminated = timeline[0][0], timeline[-1][0]
    assert terminated - warned == pytest.approx(policy.terminate_after, abs=1.0)
    assert terminated <= policy.cpu_window / 2 + policy.terminate_after + 2 * 1.0  # the documented bound


def test_cpu_is_judged_on_its_mean_over_the_window():
    e = Escalator("a", STANDARD, EscalationPolicy(cpu_window=10))
    assert e.observe(0.0, 0, 90.0).cpu_percent == 0.0  # the first sample covers no time
    assert e.observe(1.0, 0, 100.0).cpu_percent == pytest.approx(10.0)  # time not observed yet is idle
    d = e.observe(3.0, 0, 100.0)
    assert d.cpu_percent == pytest.approx(30.0) and kinds(d) == ["Warn"]  # over soft 15, not over hard 30
    assert e.observe(9.0, 0, 0.0).cpu_percent == pytest.approx(30.0)
    assert e.observe(12.0, 0, 0.0).cpu_percent == pytest.approx(10.0)  # the first two seconds left the window
    assert e.observe(30.0, 0, 0.0).cpu_percent == 0.0


@settings(max_examples=200, deadline=None)
@given(
    window=st.floats(0.5, 60),
    steps=st.lists(st.tuples(st.floats(0, 20), st.floats(0, 400)), min_size=1, max_size=40),
)
def test_the_cpu_mean_is_the_windows_integral_over_its_length(window, steps):
    spec = QuotaSpec("roomy", ResourceLimit(1e12, 2e12, 3e12), ResourceLimit(1e6, 2e6, 3e6))  # never escalates
    e = Escalator("a", spec, EscalationPolicy(cpu_window=window))
    now, samples = 0.0, []
    e.observe(now, 0, 0)
    for dt, cpu in steps:
        samples.append((now, now + dt, cpu))
        now += dt
        got = e.observe(now, 0, cpu).cpu_percent
        horizon = now - window
        expected = sum(p * max(0.0, b - max(a, horizon)) for a, b, p in samples) / window
        assert got == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_a_suspended_agents_cpu_is_judged_at_its_mean_when_suspended():
    spec = QuotaSpec("cpu", ResourceLimit(1 * GB, 2 * GB, 3 * GB), ResourceLimit(10, 1000, 2000))
    policy = EscalationPolicy(throttle_after=1, suspend_after=2, terminate_after=10, calm_period=1, cpu_window=0)
    e = Escalator("a", spec, policy)
    e.observe(0.0, 0, 50.0)
    e.observe(1.0, 0, 50.0)
    assert kinds(e.observe(2.0, 0, 50.0)) == ["Suspend"]
    for t in range(3, 10):
        d = e.observe(float(t), 0, 0.0)  # stopped: it uses nothing
        assert d.actions == () and d.cpu_percent == 50.0 and d.violation is Violation.SOFT
    assert kinds(e.observe(10.0, 0, 0.0)) == ["Terminate"]


def test_a_suspension_for_memory_ends_when_memory_falls():
    policy = EscalationPolicy(calm_period=5)
    e = Escalator("a", tier("heavy"), policy)
    assert kinds(e.observe(0.0, 2.5 * GB, IDLE_CPU)) == ["Warn", "Throttle", "Suspend"]
    e.observe(1.0, 100 * MB, IDLE_CPU)  # swapped out, say: CPU was calm when it was suspended
    assert e.observe(6.0, 100 * MB, IDLE_CPU).actions == (Resume(Stage.SUSPENDED),)
