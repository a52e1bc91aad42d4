"""Per-agent quotas enforced on real OS processes: measured, escalated,
throttled, suspended and terminated for real.

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
from mabeam import quotas
from mabeam._errors import MabeamError
from mabeam.quotas import MB, EscalationPolicy, QuotaSpec, ResourceLimit, Stage, measure
from otp._oslib import proc_state


@pytest.fixture
def app(node):
    otp.trap_exit(True)
    sup = mabeam.start()
    quotas.configure_enforcement(period=0.05, throttle_slice=0.05)
    quotas.subscribe_enforcements()
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
    otp.send(mabeam.whereis_agent(agent_id), ("alloc", nbytes))


def run_state(ospid):
    """The kernel's state letter of the process ('T': stopped)."""
    state = proc_state(ospid)
    assert state is not None, f"process {ospid} is gone"
    return state[0]


def test_errors_are_mabeam_errors_and_builtins():
    assert issubclass(quotas.QuotaError, MabeamError)
    assert issubclass(quotas.InvalidQuota, quotas.QuotaError) and issubclass(quotas.InvalidQuota, ValueError)
    assert issubclass(quotas.UnknownTier, LookupError)
    assert issubclass(quotas.MeasureError, quotas.QuotaError)


def test_unknown_options_are_refused(app):
    with pytest.raises(TypeError):
        quotas.configure_enforcement(periodicity=1.0)


def test_escalation_warn_throttle_suspend_terminate(app):
    pid = hog()
    policy = EscalationPolicy(throttle_after=0.2, suspend_after=0.4, terminate_after=1.4)
    quotas.set_quota("hog", spec_above(pid), policy)
    alloc("hog", 60 * MB)
    quota_event("hog", "warn")
    quota_event("hog", "throttle")
    quota_event("hog", "suspend")
    assert run_state(pid.ospid) == "T"  # stopped by SIGSTOP, for real
    status = quotas.get_quota("hog")
    assert status is None or status.tier == "test"  # replica: eventually consistent
    assert quotas.list_quotas()["hog"].stage == "suspended"
    quota_event("hog", "terminate")
    assert not otp.is_alive(pid)
    assert mabeam.get_agent_status("hog") == "stopped"  # stopped through its supervisor: not restarted
    records = quotas.list_enforcements("hog")
    assert quotas.list_enforcements() == records  # every agent's: only this one has any
    assert [r.action for r in records] == ["warn", "throttle", "suspend", "terminate"]
    assert all(r.success for r in records)
    assert [r.stage_after for r in records] == ["warned", "throttled", "suspended", "terminated"]
    assert all(r.resource == "rss" and r.violation == "soft" and r.usage > r.limit for r in records)
    assert records[2].details == "SIGSTOP" and "supervisor" in records[3].details


def test_throttle_then_resume_when_usage_falls(app):
    pid = hog()
    policy = EscalationPolicy(throttle_after=0.1, suspend_after=60, terminate_after=120, calm_period=0.1)
    quotas.set_quota("hog", spec_above(pid), policy)
    alloc("hog", 60 * MB)
    quota_event("hog", "warn")
    quota_event("hog", "throttle")
    # the duty cycle stops it part of the time: requests are slower, not lost
    assert mabeam.request("hog", ("free",), timeout=10) == 0
    quota_event("hog", "resume")
    assert run_state(pid.ospid) != "T"  # SIGCONT is synchronous
    assert mabeam.request("hog", "ping") == "pong"
    assert [r.action for r in quotas.list_enforcements("hog")] == ["warn", "throttle", "resume"]


def test_burst_terminates_at_once(app):
    pid = hog()
    quotas.set_quota("hog", spec_above(pid, soft_mb=10, hard_mb=20, burst_mb=40), EscalationPolicy())
    alloc("hog", 80 * MB)
    seen = []
    while not seen or seen[-1] != "terminate":
        seen.append(quota_event("hog"))
    assert seen[:-1] in ([], ["warn"], ["warn", "throttle"])  # zones passed while allocating
    assert not otp.is_alive(pid)
    record = quotas.list_enforcements("hog")[-1]
    assert (record.action, record.violation) == ("terminate", "burst")


def test_hard_limit_climbs_to_its_stage_in_one_step(app):
    pid = hog()
    quotas.set_quota("hog", spec_above(pid, soft_mb=10, hard_mb=30, hard_stage=Stage.SUSPENDED), EscalationPolicy())
    alloc("hog", 60 * MB)
    assert [quota_event("hog") for _ in range(3)] == ["warn", "throttle", "suspend"]
    assert run_state(pid.ospid) == "T"
    quotas.remove_quota("hog")  # forgetting the quota resumes the process
    assert run_state(pid.ospid) != "T"
    assert mabeam.request("hog", "ping") == "pong"


def test_quota_follows_the_agent_id_across_starts(app):
    mabeam.register_agent(mabeam.AgentConfig("late", MemoryHog))
    quotas.set_quota("late", "standard")  # not running yet: applied when it starts
    assert quotas.list_quotas()["late"].running is False
    pid = mabeam.start_agent("late")
    quotas.set_quota("late", spec_above(pid), EscalationPolicy(throttle_after=60, suspend_after=60, terminate_after=60))
    alloc("late", 60 * MB)
    quota_event("late", "warn")
    assert quotas.list_quotas()["late"].stage == "warned"
    mabeam.stop_agent("late")
    assert quotas.list_quotas()["late"].running is False


def test_tiers_and_bad_quotas(app):
    hog("a")
    quotas.set_quota("a", "lightweight")
    assert quotas.list_quotas()["a"].tier == "lightweight"
    with pytest.raises(quotas.UnknownTier):
        quotas.set_quota("a", "gigantic")
    with pytest.raises(TypeError):
        quotas.set_quota("a", 42)
