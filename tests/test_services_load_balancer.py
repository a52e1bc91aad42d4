"""The load balancer service: joining monitors agents, strategies, metrics."""

from __future__ import annotations

import os
import signal

import pytest
from helpers import down_of, recv
from service_agents import MemoryHog, Worker, forward_events

import mabeam
import otp
from mabeam import balancing
from mabeam import services as S


def run(agent_id, cls=Worker, capabilities=(), restart="permanent"):
    mabeam.register_agent(mabeam.AgentConfig(agent_id, cls, capabilities=frozenset(capabilities), restart=restart))
    return mabeam.start_agent(agent_id)


def test_assign_by_capability(app):
    run("cpu1")
    gpu = run("gpu1", capabilities={"gpu"})
    for agent_id in ("cpu1", "gpu1"):
        S.lb_register(agent_id)
    assert S.assign_task(["gpu"]) == ("gpu1", gpu)
    assert S.assign_task(["work", "gpu"])[0] == "gpu1"
    with pytest.raises(balancing.NoSuitableAgent) as info:
        S.assign_task(["quantum"])
    assert (info.value.total, info.value.missing) == (2, 2)
    # capability_based prefers the agent with the most preferred extras
    assert S.assign_task(["work"], strategy="capability_based", preferred=["gpu"])[0] == "gpu1"


def test_strategies_follow_reported_metrics(app):
    for i in range(3):
        run(f"w{i}")
        S.lb_register(f"w{i}")
    # casts from this process arrive before its next call
    S.update_metrics("w0", cpu=0.8, memory=2**28, active_tasks=5)
    S.update_metrics("w1", cpu=0.1, memory=2**20, active_tasks=0)
    S.update_metrics("w2", cpu=0.95)  # overloaded
    assert S.assign_task(["work"], strategy="resource_aware")[0] == "w1"
    S.update_metrics("w0", avg_duration=0.5)
    S.update_metrics("w1", avg_duration=2.0)
    assert S.assign_task(strategy="performance_weighted")[0] == "w0"
    chosen = [S.assign_task(strategy="round_robin")[0] for _ in range(4)]
    assert sorted(set(chosen)) == ["w0", "w1"] and chosen[0] != chosen[1]  # w2 is overloaded
    stats = S.load_stats()
    assert stats["total_agents"] == 3 and stats["overloaded_agents"] == 1 and stats["available_agents"] == 2
    assert stats["total_tasks_assigned"] == 6
    # completions lower the active count and feed the moving average
    S.task_completed("w1", 1.0)
    assert S.lb_agents()["w1"].avg_task_duration == pytest.approx(0.3 * 1.0 + 0.7 * 2.0)
    S.set_strategy("round_robin")
    assert S.load_stats()["strategy"] == "round_robin"


def test_sigkilled_agent_leaves_at_once(app):
    pid = run("doomed", restart="temporary")
    run("survivor")
    S.lb_register("doomed")
    S.lb_register("survivor")
    ref = otp.monitor(pid)
    os.kill(pid.ospid, signal.SIGKILL)
    down_of(ref)
    # no waiting on the balancer: it checks liveness before answering
    assert [S.assign_task(["work"], strategy="round_robin")[0] for _ in range(3)] == ["survivor"] * 3
    assert S.load_stats()["total_agents"] == 1
    assert "doomed" not in S.lb_agents()


def test_not_running_agent_cannot_join(app):
    mabeam.register_agent(mabeam.AgentConfig("idle", Worker))
    with pytest.raises(mabeam.AgentError) as info:
        S.lb_register("idle")
    assert info.value.reason == "not_running"


def test_restarted_agent_rejoins(app):
    me = otp.self()
    S.attach("lb-joins", ("mabeam", "load_balancer"), forward_events(me))
    old = run("phoenix")
    S.lb_register("phoenix")
    recv(lambda m: m[0] == "event" and m[1][-1] == "joined" and m[3]["agent_id"] == "phoenix")
    os.kill(old.ospid, signal.SIGKILL)
    left = recv(lambda m: m[0] == "event" and m[1][-1] == "left")
    assert left[3] == {"agent_id": "phoenix", "reason": "killed"}
    recv(lambda m: m[0] == "event" and m[1][-1] == "joined" and m[3]["agent_id"] == "phoenix")
    agent_id, pid = S.assign_task(["work"])
    assert agent_id == "phoenix" and pid != old and pid == mabeam.agent_pid("phoenix")
    # joining by hand works as well, and is idempotent
    S.lb_register("phoenix", rejoin=False)
    assert S.load_stats()["total_agents"] == 1
    S.lb_unregister("phoenix")
    with pytest.raises(balancing.NoSuitableAgent):
        S.assign_task()


def test_metrics_forwarded_to_telemetry_alerts(app):
    run("hot")
    S.lb_register("hot")
    S.subscribe_alerts()
    S.update_metrics("hot", cpu=0.97)
    _, what, alert = recv(lambda m: m[0] == "$alert")
    assert (what, alert.agent_id, alert.metric, alert.value) == ("raised", "hot", "cpu", 0.97)


def test_psutil_refresh(app):
    pid = run("hog", MemoryHog)
    S.lb_register("hog")
    assert S.lb_agents()["hog"].memory_bytes == 0
    mabeam.request("hog", ("alloc", 20_000_000))
    S.lb_configure(measure_period=0.05)  # measures at once, then every 50 ms
    load = S.lb_agents()["hog"]
    assert load.memory_bytes > 20_000_000
    assert load.memory_bytes == pytest.approx(mabeam.quotas.measure(pid.ospid).rss, rel=0.2)
    S.lb_configure(None)
