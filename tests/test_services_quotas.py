"""Per-agent quotas enforced on real OS processes (AC-35, AC-36).

Time is driven by the manager's measurement period (50 ms here) and short
escalation delays; the tests wait on the manager's ``('$quota', agent_id,
action)`` notifications, never on the clock.
"""

from __future__ import annotations

import pytest
from helpers import recv
from service_agents import MemoryHog

import mabeam
import otp
from mabeam import services as S
from mabeam.quotas import MB, EscalationPolicy, QuotaSpec, ResourceLimit, Stage, measure


@pytest.fixture
def app(node):
    otp.trap_exit(True)
    sup = mabeam.start()
    S.configure_quotas(period=0.05, throttle_slice=0.05)
    S.quota_subscribe()
    yield sup
    mabeam.stop(sup)


def hog(agent_id="hog"):
    mabeam.register_agent(mabeam.AgentConfig(agent_id, MemoryHog))
    return mabeam.start_agent(agent_id)


def spec_above(pid, soft_mb=30, hard_mb=1000, burst_mb=2000, hard_stage=Stage.THROTTLED):
    """Limits relative to the process's RSS now (a forked interpreter's RSS
    depends on what it imported)."""
    base = measure(pid.ospid).rss
    rss = ResourceLimit(base + soft_mb * MB, base + hard_mb * MB, base + burst_mb * MB, hard_stage)
    return QuotaSpec("test", rss, ResourceLimit.of(1e6, 2e6))  # CPU never limits here


def quota_event(agent_id, action=None):
    msg = recv(lambda m: isinstance(m, tuple) and m[0] == "$quota" and m[1] == agent_id)
    if action is not None:
        assert msg[2] == action, msg
    return msg[2]


def alloc(agent_id, nbytes):
    """Ask the agent to allocate without waiting for it: measurements taken
    while the pages are being touched may see any zone on the way up."""
    otp.send(mabeam.agent_pid(agent_id), ("alloc", nbytes))


def proc_state(ospid):
    with open(f"/proc/{ospid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_escalation_warn_throttle_suspend_terminate(app):
    pid = hog()
    policy = EscalationPolicy(throttle_after=0.2, suspend_after=0.4, terminate_after=1.4)
    S.set_quota("hog", spec_above(pid), policy)
    alloc("hog", 60 * MB)
    quota_event("hog", "warn")
    quota_event("hog", "throttle")
    quota_event("hog", "suspend")
    assert proc_state(pid.ospid) == "T"  # stopped by SIGSTOP, for real
    status = S.quota_status("hog")
    assert status is None or status.tier == "test"  # replica: eventually consistent
    assert S.quotas()["hog"].stage == "suspended"
    quota_event("hog", "terminate")
    assert not otp.is_alive(pid)
    assert mabeam.agent_status("hog") == "stopped"  # stopped through its supervisor: not restarted
    records = S.enforcements("hog")
    assert [r.action for r in records] == ["warn", "throttle", "suspend", "terminate"]
    assert all(r.success for r in records)
    assert [r.stage_after for r in records] == ["warned", "throttled", "suspended", "terminated"]
    assert all(r.resource == "rss" and r.violation == "soft" and r.usage > r.limit for r in records)
    assert records[2].details == "SIGSTOP" and "supervisor" in records[3].details


def test_throttle_then_resume_when_usage_falls(app):
    pid = hog()
    policy = EscalationPolicy(throttle_after=0.1, suspend_after=60, terminate_after=120, calm_period=0.1)
    S.set_quota("hog", spec_above(pid), policy)
    alloc("hog", 60 * MB)
    quota_event("hog", "warn")
    quota_event("hog", "throttle")
    # the duty cycle stops it part of the time: requests are slower, not lost
    assert mabeam.request("hog", ("free",), timeout=10) == 0
    quota_event("hog", "resume")
    assert proc_state(pid.ospid) != "T"  # SIGCONT is synchronous
    assert mabeam.request("hog", "ping") == "pong"
    assert [r.action for r in S.enforcements("hog")] == ["warn", "throttle", "resume"]


def test_burst_terminates_at_once(app):
    pid = hog()
    S.set_quota("hog", spec_above(pid, soft_mb=10, hard_mb=20, burst_mb=40), EscalationPolicy())
    alloc("hog", 80 * MB)
    seen = []
    while not seen or seen[-1] != "terminate":
        seen.append(quota_event("hog"))
    assert seen[:-1] in ([], ["warn"], ["warn", "throttle"])  # zones passed while allocating
    assert not otp.is_alive(pid)
    record = S.enforcements("hog")[-1]
    assert (record.action, record.violation) == ("terminate", "burst")


def test_hard_limit_climbs_to_its_stage_in_one_step(app):
    pid = hog()
    S.set_quota("hog", spec_above(pid, soft_mb=10, hard_mb=30, hard_stage=Stage.SUSPENDED), EscalationPolicy())
    alloc("hog", 60 * MB)
    assert [quota_event("hog") for _ in range(3)] == ["warn", "throttle", "suspend"]
    assert proc_state(pid.ospid) == "T"
    S.remove_quota("hog")  # forgetting the quota resumes the process
    assert proc_state(pid.ospid) != "T"
    assert mabeam.request("hog", "ping") == "pong"


def test_quota_follows_the_agent_id_across_starts(app):
    mabeam.register_agent(mabeam.AgentConfig("late", MemoryHog))
    S.set_quota("late", "standard")  # not running yet: applied when it starts
    assert S.quotas()["late"].running is False
    pid = mabeam.start_agent("late")
    S.set_quota("late", spec_above(pid), EscalationPolicy(throttle_after=60, suspend_after=60, terminate_after=60))
    alloc("late", 60 * MB)
    quota_event("late", "warn")
    assert S.quotas()["late"].stage == "warned"
    mabeam.stop_agent("late")
    assert S.quotas()["late"].running is False


def test_tiers_and_bad_quotas(app):
    hog("a")
    S.set_quota("a", "lightweight")
    assert S.quotas()["a"].tier == "lightweight"
    with pytest.raises(mabeam.quotas.UnknownTier):
        S.set_quota("a", "gigantic")
    with pytest.raises(TypeError):
        S.set_quota("a", 42)
