"""MABEAM agents: lifecycle (AC-11), the agent registry, communication."""

from __future__ import annotations

import os
import signal

import pytest
from helpers import down_of
from mabeam_agents import CrashingSetup, EchoAgent

import mabeam
import otp


@pytest.fixture
def app(node):
    otp.trap_exit(True)
    sup = mabeam.start()
    otp.supervisor.subscribe(mabeam._agent_registry.AGENT_SUPERVISOR)
    yield sup
    mabeam.stop(sup)


def started(agent_id):
    """Wait for the agent supervisor's 'started' event of ``agent_id``."""
    return otp.receive(
        10, lambda m: type(m) is tuple and m[0] == "$supervisor" and m[2] == "started" and m[3] == agent_id
    )[4]


def wait_status(agent_id, status):
    return mabeam.await_status(agent_id, status, timeout=10)


def test_registered_agent_has_no_process(app):
    mabeam.register_agent(mabeam.AgentConfig("a", EchoAgent))
    record = mabeam.get_agent("a")
    assert record.status == "registered" and record.pid is None
    assert mabeam.agent_pid("a") is None
    with pytest.raises(mabeam.CommsError) as info:
        mabeam.request("a", "hi")
    assert info.value.reason == "not_running"


def test_start_request_stop(app):
    mabeam.register_agent(mabeam.AgentConfig("a", EchoAgent))
    pid = mabeam.start_agent("a")
    assert pid.ospid != os.getpid() and otp.is_alive(pid)
    assert mabeam.request("a", "hi") == ("a", "hi")
    assert mabeam.get_agent("a").pid == pid
    mabeam.stop_agent("a")
    assert not otp.is_alive(pid)  # returns after the OS process is gone
    assert mabeam.agent_status("a") == "stopped"
    assert mabeam.agent_pid("a") is None
    with pytest.raises(mabeam.AgentError):
        mabeam.stop_agent("a")
    assert mabeam.start_agent("a") != pid  # can start again


def test_duplicate_registration_and_double_start(app):
    mabeam.register_agent(mabeam.AgentConfig("a", EchoAgent))
    with pytest.raises(mabeam.AgentError) as info:
        mabeam.register_agent(mabeam.AgentConfig("a", EchoAgent))
    assert info.value.reason == "already_registered"
    mabeam.start_agent("a")
    with pytest.raises(mabeam.AgentError) as info:
        mabeam.start_agent("a")
    assert info.value.reason == "already_running"


def test_crash_is_restarted_and_the_record_follows(app):
    mabeam.register_agent(mabeam.AgentConfig("a", EchoAgent))
    pid = mabeam.start_agent("a")
    started("a")
    os.kill(pid.ospid, signal.SIGKILL)
    new = started("a")
    assert new != pid
    wait_status("a", "running")
    record = mabeam.get_agent("a")
    assert record.pid == new and record.restarts == 1 and record.last_reason == "killed"
    assert mabeam.request("a", "after") == ("a", "after")


def test_temporary_agent_crash_is_recorded(app):
    mabeam.register_agent(mabeam.AgentConfig("t", EchoAgent, restart="temporary"))
    pid = mabeam.start_agent("t")
    ref = otp.monitor(pid)
    os.kill(pid.ospid, signal.SIGKILL)
    down_of(ref)
    wait_status("t", "crashed")
    assert mabeam.get_agent("t").pid is None


def test_normal_exit_is_completed(app):
    mabeam.register_agent(mabeam.AgentConfig("t", EchoAgent, restart="transient"))
    pid = mabeam.start_agent("t")
    ref = otp.monitor(pid)
    otp.stop(pid, "normal")
    down_of(ref)
    wait_status("t", "completed")


def test_setup_failure_is_an_error(app):
    mabeam.register_agent(mabeam.AgentConfig("bad", CrashingSetup))
    with pytest.raises(mabeam.AgentError) as info:
        mabeam.start_agent("bad")
    assert isinstance(info.value.reason, otp.Crash)
    assert mabeam.agent_status("bad") == "registered"


def test_hook_exception_is_returned_not_fatal(app):
    mabeam.register_agent(mabeam.AgentConfig("a", EchoAgent))
    pid = mabeam.start_agent("a")
    with pytest.raises(mabeam.AgentError) as info:
        mabeam.request("a", "boom")
    assert info.value.reason.message == "bad request"
    assert otp.is_alive(pid) and mabeam.request("a", 1) == ("a", 1)


def test_queries_by_capability_status_and_metadata(app):
    for i in range(6):
        mabeam.register_agent(
            mabeam.AgentConfig(f"a{i}", EchoAgent, capabilities={"gpu"} if i % 2 else set(), metadata={"team": i % 3})
        )
    for i in range(3):
        mabeam.start_agent(f"a{i}")
    assert sorted(mabeam.find_agents(capabilities=["echo", "gpu"])) == ["a1", "a3", "a5"]
    assert sorted(mabeam.find_agents(status="running")) == ["a0", "a1", "a2"]
    assert sorted(mabeam.find_agents(capabilities=["gpu"], status="running")) == ["a1"]
    assert sorted(mabeam.find_agents(metadata={"team": 0})) == ["a0", "a3"]
    assert mabeam.find_agents(capabilities=["nothing"]) == []


def test_broadcast_is_concurrent_and_reports_each_agent(app):
    for i in range(4):
        mabeam.register_agent(mabeam.AgentConfig(f"a{i}", EchoAgent))
        mabeam.start_agent(f"a{i}")
    results = mabeam.broadcast(["a0", "a1", "a2", "a3", "ghost"], ("sleep", 0.3), timeout=5)
    assert [r[0] for r in results] == ["ok"] * 4 + ["error"]
    assert results[4][1].reason == "not_running"
    answers = mabeam.multicast(["echo"], "all")
    assert sorted(answers) == ["a0", "a1", "a2", "a3"]
    assert all(status == "ok" for status, _ in answers.values())
    slow = mabeam.broadcast(["a0"], ("sleep", 2), timeout=0.2)
    assert slow[0][1].reason == "timeout"


def test_pub_sub_topics_and_dead_subscribers(app):
    for i in range(2):
        mabeam.register_agent(mabeam.AgentConfig(f"a{i}", EchoAgent))
        mabeam.start_agent(f"a{i}")
    me = otp.self()

    def subscriber(topic):
        mabeam.subscribe(topic)
        otp.send(me, "subscribed")
        otp.send(me, ("event", otp.receive()))

    sub = otp.spawn(subscriber, "news")
    otp.receive(10, lambda m: m == "subscribed")
    assert mabeam.publish("news", {"headline": 1}) == 1
    assert otp.receive(10, lambda m: m[0] == "event") == ("event", ("$mabeam_event", "news", {"headline": 1}))
    dead = otp.spawn(subscriber, "news")
    otp.receive(10, lambda m: m == "subscribed")
    otp.exit(dead, "kill")
    down_of(otp.monitor(dead))
    otp.exit(sub, "kill")
    down_of(otp.monitor(sub))
    assert mabeam.publish("news", "nobody left") == 0  # subscriptions went with them


def test_agent_supervisor_restart_budget_is_the_app_config(app):
    assert otp.whereis(mabeam._agent_registry.AGENT_SUPERVISOR) is not None
    assert otp.whereis("mabeam.sup") == app
