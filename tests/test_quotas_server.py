"""Per-agent quotas enforced on real OS processes: measured, escalated,
throttled, suspended and terminated for real.

Time is driven by the manager's measurement period (50 ms here) and short
escalation delays; the tests wait on the manager's ``('$quota', agent_id,
action)`` notifications, never on the clock.
"""

from __future__ import annotations

import signal
import time

import psutil
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


class Cruncher(mabeam.Agent):
    """Computes on request: ``('burn', cpu_seconds)`` spins until this
    process has used that much CPU and answers how much it used; the
    message ``'spin'`` spins until the process is stopped."""

    def handle_request(self, message):
        if message == "ping":
            return "pong"
        if message[0] == "burn":
            start = time.process_time()
            while time.process_time() - start < message[1]:
                sum(range(10_000))
            return time.process_time() - start
        raise ValueError(message)

    def handle_message(self, message):
        if message == "spin":
            while True:
                sum(range(10_000))


def cruncher(agent_id="cruncher"):
    # a hook that never returns cannot run teardown: its stop kills it after `shutdown`
    mabeam.register_agent(mabeam.AgentConfig(agent_id, Cruncher, shutdown=1.0))
    return mabeam.start_agent(agent_id)


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
    """The kernel's state letter of the process ('T': stopped), or 'T' too
    while a SIGSTOP sent to it is still pending: the stop takes effect when
    the process next runs, which on a loaded machine is later than the
    quota event that follows the kill."""
    state = proc_state(ospid)
    assert state is not None, f"process {ospid} is gone"
    with open(f"/proc/{ospid}/status", "rb") as f:
        pending = [int(line.split()[1], 16) for line in f if line.startswith((b"ShdPnd:", b"SigPnd:"))]
    stop_pending = any(mask & (1 << (signal.SIGSTOP - 1)) for mask in pending)
    return "T" if stop_pending else state[0]


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
    assert mabeam.get_agent_status("hog") == "stopped"  # stopped through the registry: not restarted
    records = quotas.list_enforcements("hog")
    assert quotas.list_enforcements() == records  # every agent's: only this one has any
    assert [r.action for r in records] == ["warn", "throttle", "suspend", "terminate"]
    assert all(r.success for r in records)
    assert [r.stage_after for r in records] == ["warned", "throttled", "suspended", "terminated"]
    assert all(r.resource == "rss" and r.violation == "soft" and r.usage > r.limit for r in records)
    assert records[2].details == "SIGSTOP" and "registry" in records[3].details


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


def test_sustained_burst_terminates_after_warn_and_throttle(app):
    pid = hog()
    policy = EscalationPolicy(burst_after=0.3)  # the ladder's own timings are minutes: the burst rule decides
    quotas.set_quota("hog", spec_above(pid, soft_mb=10, hard_mb=20, burst_mb=40), policy)
    alloc("hog", 80 * MB)
    assert [quota_event("hog") for _ in range(3)] == ["warn", "throttle", "terminate"]
    assert not otp.is_alive(pid)
    assert mabeam.get_agent_status("hog") == "stopped"
    records = quotas.list_enforcements("hog")
    assert [r.action for r in records] == ["warn", "throttle", "terminate"]
    assert (records[-1].violation, records[-1].stage_before) == ("burst", "throttled")


def test_hard_limit_climbs_to_its_stage_in_one_step(app):
    pid = hog()
    quotas.set_quota("hog", spec_above(pid, soft_mb=10, hard_mb=30, hard_stage=Stage.SUSPENDED), EscalationPolicy())
    alloc("hog", 60 * MB)
    assert [quota_event("hog") for _ in range(3)] == ["warn", "throttle", "suspend"]
    assert run_state(pid.ospid) == "T"
    quotas.remove_quota("hog")  # forgetting the quota resumes the process
    assert run_state(pid.ospid) != "T"
    assert mabeam.request("hog", "ping") == "pong"


def test_measurements_and_duty_cycles_are_otp_timers(app):
    pid = hog()
    quotas.set_quota("hog", spec_above(pid), EscalationPolicy(throttle_after=0, suspend_after=60, terminate_after=60))
    alloc("hog", 60 * MB)
    assert [quota_event("hog") for _ in range(2)] == ["warn", "throttle"]
    before = otp.sys.get_state(quotas.QUOTAS)
    quotas.configure_enforcement(period=30)  # the measurement armed is replaced
    manager = otp.sys.get_state(quotas.QUOTAS)
    assert 20 < otp.read_timer(manager.measure_timer) <= 30
    assert before.measure_timer is None or otp.read_timer(before.measure_timer) is False
    assert isinstance(manager.watched["hog"].duty_timer, otp.TimerRef)  # re-armed at every edge
    quotas.remove_quota("hog")
    assert otp.sys.get_state(quotas.QUOTAS).watched == {}
    assert run_state(pid.ospid) != "T"


def test_quota_follows_the_agent_id_across_starts(app):
    mabeam.register_agent(mabeam.AgentConfig("late", MemoryHog))
    quotas.set_quota("late", "standard")  # not running yet: applied when it starts
    assert quotas.list_quotas()["late"].running is False
    pid = mabeam.start_agent("late")
    quotas.set_quota("late", spec_above(pid), EscalationPolicy(throttle_after=60, suspend_after=60, terminate_after=60))
    # Events of the first quota (a forked process's RSS may pass the
    # standard tier at once) came before set_quota's answer: drop them.
    while True:
        try:
            otp.receive(0, lambda m: isinstance(m, tuple) and m[0] == "$quota" and m[1] == "late")
        except otp.Timeout:
            break
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


def test_a_short_computation_under_the_standard_tier_gets_its_answer(app):
    pid = cruncher()
    quotas.set_quota("cruncher", "standard")  # the manager's default policy
    assert mabeam.request("cruncher", ("burn", 1.5), timeout=60) >= 1.5  # a 1.5 s computation, sampled every 50 ms
    assert mabeam.request("cruncher", "ping") == "pong"
    assert mabeam.whereis_agent("cruncher") == pid and mabeam.get_agent_status("cruncher") == "running"
    assert not {"throttle", "suspend", "terminate"} & {r.action for r in quotas.list_enforcements("cruncher")}


def test_a_cpu_hog_is_throttled_suspended_and_terminated(app):
    pid = cruncher()
    spec = QuotaSpec("test", ResourceLimit(100_000 * MB, 200_000 * MB, 300_000 * MB), ResourceLimit(2, 1e4, 2e4))
    policy = EscalationPolicy(throttle_after=0.3, suspend_after=0.6, terminate_after=1.5, calm_period=0.2)
    quotas.set_quota("cruncher", spec, policy)
    otp.send(pid, "spin")
    assert [quota_event("cruncher") for _ in range(4)] == ["warn", "throttle", "suspend", "terminate"]
    assert not otp.is_alive(pid)
    assert mabeam.get_agent_status("cruncher") == "stopped"  # however it ended, not restarted
    records = quotas.list_enforcements("cruncher")
    assert [(r.action, r.resource) for r in records] == [
        ("warn", "cpu"),
        ("throttle", "cpu"),
        ("suspend", "cpu"),
        ("terminate", "cpu"),
    ]
    assert all(r.success for r in records)


@pytest.fixture
def demo_app():
    """MABEAM on a node whose zygote preloaded scikit-learn, as the demo's
    (a learner importing it from cold would not start within its start
    timeout on a loaded machine), checked for orphans as ``node`` is."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    preload = ("mabeam.demo.learners", "sklearn.svm", "sklearn.model_selection", "sklearn.datasets")
    with otp.Node(preload=preload):
        otp.trap_exit(True)
        sup = mabeam.start()
        quotas.configure_enforcement(period=0.05, throttle_slice=0.05)
        yield sup
        mabeam.stop(sup)
    leaked = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert not leaked, f"processes outlived the node: {leaked}"


@pytest.mark.slow
def test_a_demo_learner_trains_under_the_lightweight_tier(demo_app):
    from mabeam.demo.learners import Learner

    mabeam.register_agent(mabeam.AgentConfig("learner", Learner, args={"family": "svc"}))
    quotas.set_quota("learner", "lightweight")  # watched from its start
    pid = mabeam.start_agent("learner", timeout=60)
    for round_number in range(3):
        assert mabeam.request("learner", ("train", round_number), timeout=120)["round"] == round_number
    assert mabeam.whereis_agent("learner") == pid and mabeam.get_agent_status("learner") == "running"
    actions = {r.action for r in quotas.list_enforcements("learner")}
    assert not {"suspend", "terminate"} & actions, quotas.list_enforcements("learner")
