"""The load balancer: joining monitors agents, strategies, metrics."""

from __future__ import annotations

import os
import signal

import pytest
from helpers import down_of, recv, recv_tagged
from service_agents import MemoryHog, Worker, forward_events

import mabeam
import otp
import otp.sys
from mabeam import load_balancing as lb
from mabeam import telemetry
from mabeam._errors import AgentNotRunning, MabeamError
from mabeam.quotas import measure


def run(agent_id, cls=Worker, capabilities=(), restart="permanent"):
    mabeam.register_agent(mabeam.AgentConfig(agent_id, cls, capabilities=frozenset(capabilities), restart=restart))
    return mabeam.start_agent(agent_id)


def test_errors_are_mabeam_errors_and_builtins():
    assert issubclass(lb.NoSuitableAgent, lb.LoadBalancingError) and issubclass(lb.NoSuitableAgent, LookupError)
    assert issubclass(lb.InvalidLoadRecord, ValueError)
    assert issubclass(lb.LoadBalancingError, MabeamError)


def test_assign_by_capability(app):
    run("cpu1")
    gpu = run("gpu1", capabilities={"gpu"})
    for agent_id in ("cpu1", "gpu1"):
        lb.register_agent(agent_id)
    assert lb.assign_task(["gpu"]) == ("gpu1", gpu)
    assert lb.assign_task(["work", "gpu"])[0] == "gpu1"
    with pytest.raises(lb.NoSuitableAgent) as info:
        lb.assign_task(["quantum"])
    assert (info.value.total, info.value.missing) == (2, 2)
    # capability_based prefers the agent with the most preferred extras
    assert lb.assign_task(["work"], strategy="capability_based", preferred=["gpu"])[0] == "gpu1"


def test_strategies_follow_reported_metrics(app):
    for i in range(3):
        run(f"w{i}")
        lb.register_agent(f"w{i}")
    # casts from this process arrive before its next call
    lb.update_load("w0", cpu=0.8, memory=2**28, active_tasks=5)
    lb.update_load("w1", cpu=0.1, memory=2**20, active_tasks=0)
    lb.update_load("w2", cpu=0.95)  # overloaded
    assert lb.assign_task(["work"], strategy="resource_aware")[0] == "w1"
    lb.update_load("w0", avg_duration=0.5)
    lb.update_load("w1", avg_duration=2.0)
    assert lb.assign_task(strategy="performance_weighted")[0] == "w0"
    chosen = [lb.assign_task(strategy="round_robin")[0] for _ in range(4)]
    assert sorted(set(chosen)) == ["w0", "w1"] and chosen[0] != chosen[1]  # w2 is overloaded
    stats = lb.get_stats()
    assert stats.total_agents == 3 and stats.overloaded_agents == 1 and stats.available_agents == 2
    assert stats.total_tasks_assigned == 6
    # completions lower the active count and feed the moving average
    lb.complete_task("w1", 1.0)
    assert lb.list_agents()["w1"].avg_task_duration == pytest.approx(0.3 * 1.0 + 0.7 * 2.0)
    lb.set_strategy("round_robin")
    assert lb.get_stats().strategy == "round_robin"


def test_sigkilled_agent_leaves_at_once(app):
    pid = run("doomed", restart="temporary")
    run("survivor")
    lb.register_agent("doomed")
    lb.register_agent("survivor")
    ref = otp.monitor(pid)
    os.kill(pid.ospid, signal.SIGKILL)
    down_of(ref)
    # no waiting on the balancer: it checks liveness before answering
    assert [lb.assign_task(["work"], strategy="round_robin")[0] for _ in range(3)] == ["survivor"] * 3
    assert lb.get_stats().total_agents == 1
    assert "doomed" not in lb.list_agents()


def test_not_running_agent_cannot_join(app):
    mabeam.register_agent(mabeam.AgentConfig("idle", Worker))
    with pytest.raises(AgentNotRunning) as info:
        lb.register_agent("idle")
    assert info.value.agent_id == "idle"


def test_restarted_agent_rejoins(app):
    me = otp.self()
    telemetry.attach_handler("lb-joins", ("mabeam", "load_balancer"), forward_events(me))
    old = run("phoenix")
    lb.register_agent("phoenix")
    recv(lambda m: m[0] == "event" and m[1][-1] == "joined" and m[3]["agent_id"] == "phoenix")
    os.kill(old.ospid, signal.SIGKILL)
    left = recv(lambda m: m[0] == "event" and m[1][-1] == "left")
    assert left[3] == {"agent_id": "phoenix", "reason": "killed"}
    recv(lambda m: m[0] == "event" and m[1][-1] == "joined" and m[3]["agent_id"] == "phoenix")
    agent_id, pid = lb.assign_task(["work"])
    assert agent_id == "phoenix" and pid != old and pid == mabeam.whereis_agent("phoenix")
    # joining by hand works as well, and is idempotent
    lb.register_agent("phoenix", rejoin=False)
    assert lb.get_stats().total_agents == 1
    lb.unregister_agent("phoenix")
    with pytest.raises(lb.NoSuitableAgent):
        lb.assign_task()


def test_metrics_forwarded_to_telemetry_alerts(app):
    run("hot")
    lb.register_agent("hot")
    telemetry.subscribe_alerts()
    lb.update_load("hot", cpu=0.97)
    _, what, alert = recv(lambda m: m[0] == "$alert")
    assert (what, alert.agent_id, alert.metric, alert.value) == ("raised", "hot", "cpu", 0.97)


def test_psutil_refresh(app):
    pid = run("hog", MemoryHog)
    lb.register_agent("hog")
    assert lb.list_agents()["hog"].memory_bytes == 0
    mabeam.request("hog", ("alloc", 20_000_000))
    lb.set_measure_period(0.05)  # measures at once, then every 50 ms
    load = lb.list_agents()["hog"]
    assert load.memory_bytes > 20_000_000
    assert load.memory_bytes == pytest.approx(measure(pid.ospid).rss, rel=0.2)
    lb.set_measure_period(None)


def spy_on_measurements(me):
    """A ``replace_state`` function: the balancer tells ``me`` of each
    sample it takes (``('measured', agents)``)."""

    def install(balancer):
        sample = balancer._measure_all

        def counted():
            sample()
            otp.send(me, ("measured", sorted(m.agent_id for m in balancer.members.values())))

        balancer._measure_all = counted
        return balancer

    return install


def test_measuring_ticks_on_a_timer_until_turned_off(app):
    run("w0")
    lb.register_agent("w0")
    otp.sys.replace_state(lb.LOAD_BALANCER, spy_on_measurements(otp.self()))
    lb.set_measure_period(0.05)
    assert recv_tagged("measured") == ("measured", ["w0"])  # at once, before the answer
    # then on the timer alone: nothing else reaches the balancer meanwhile
    assert [recv_tagged("measured") for _ in range(3)] == [("measured", ["w0"])] * 3
    lb.set_measure_period(None)
    timer = otp.sys.get_state(lb.LOAD_BALANCER).measure_timer
    assert timer is None


def test_bad_measure_period_changes_nothing(app):
    lb.set_measure_period(30.0)
    before = otp.sys.get_state(lb.LOAD_BALANCER)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError):
            lb.set_measure_period(bad)
    with pytest.raises(TypeError):
        lb.set_measure_period("soon")
    after = otp.sys.get_state(lb.LOAD_BALANCER)
    assert (after.measure_period, after.measure_timer) == (30.0, before.measure_timer)
    assert otp.read_timer(after.measure_timer) > 0  # still armed
    lb.set_measure_period(None)
    assert otp.read_timer(after.measure_timer) is False  # cancelled


def test_joining_while_measuring_is_sampled(app):
    otp.sys.replace_state(lb.LOAD_BALANCER, spy_on_measurements(otp.self()))
    lb.set_measure_period(0.05)
    assert recv_tagged("measured") == ("measured", [])
    run("late")
    lb.register_agent("late")  # sampled at once if the timer stopped for want of agents, else at its tick
    assert recv_tagged("measured") == ("measured", ["late"])
    lb.set_measure_period(None)
