"""Agents under supervision: each agent's own restart budget, and the agent
registry following the agent supervisor across its restarts."""

from __future__ import annotations

import os
import signal

import pytest
from helpers import down_of
from mabeam_agents import CrashLoop, EchoAgent, FailsOnRestart

import mabeam
import otp
from mabeam._agent_registry import AGENT_SUPERVISOR
from mabeam._names import APP


def app_event(app, event, child_id):
    """Wait for ``mabeam.sup``'s event about its child ``child_id``."""
    return otp.receive(10, lambda m: type(m) is tuple and m[:4] == ("$supervisor", app, event, child_id))


def restart_agent_supervisor(app):
    """Kill the agent supervisor; return its successor, once ``mabeam.sup``
    has started it."""
    otp.supervisor.subscribe(APP)
    old = otp.whereis(AGENT_SUPERVISOR)
    ref = otp.monitor(old)
    otp.exit(old, "kill")
    down_of(ref)
    new = app_event(app, "started", AGENT_SUPERVISOR)[4]
    assert new != old
    return new


# ------------------------------------------------------------------ restart budget


@pytest.fixture
def tight_app(node):
    """MABEAM with a budget of 3 restarts a minute per agent."""
    otp.trap_exit(True)
    sup = mabeam.start(agent_intensity=3, agent_period=60.0)
    yield sup
    mabeam.stop(sup)


def start_healthy(n):
    pids = {}
    for i in range(n):
        mabeam.register_agent(mabeam.AgentConfig(f"h{i}", EchoAgent))
        pids[f"h{i}"] = mabeam.start_agent(f"h{i}")
    return pids


def assert_untouched(pids, agent_supervisor):
    assert otp.whereis(AGENT_SUPERVISOR) == agent_supervisor
    for agent_id, pid in pids.items():
        record = mabeam.get_agent(agent_id)
        assert (record.status, record.pid, record.restarts) == ("running", pid, 0)
        assert mabeam.request(agent_id, "still here") == (agent_id, "still here")


def test_a_crash_looping_agent_fails_alone(tight_app):
    """One agent crashes right after every start: past its budget (3
    restarts) it is 'failed' and not restarted; the healthy agents and the
    agent supervisor keep their pids."""
    pids = start_healthy(3)
    agent_supervisor = otp.whereis(AGENT_SUPERVISOR)
    mabeam.register_agent(mabeam.AgentConfig("bad", CrashLoop))
    mabeam.start_agent("bad")
    record = mabeam.await_status("bad", "failed", timeout=30)
    assert record.pid is None and record.restarts == 3
    assert isinstance(record.last_reason, otp.Crash) and "crash loop" in record.last_reason.message
    assert mabeam.whereis_agent("bad") is None
    assert_untouched(pids, agent_supervisor)
    mabeam.start_agent("bad")  # a start by hand gives it a fresh budget
    assert mabeam.await_status("bad", "failed", timeout=30).restarts == 3 + 3
    assert_untouched(pids, agent_supervisor)


def test_an_agent_whose_restart_fails_fails_alone(tight_app, tmp_path):
    """An agent whose setup fails on every restart uses its budget on the
    failed starts, then is 'failed'; the others are untouched."""
    pids = start_healthy(2)
    agent_supervisor = otp.whereis(AGENT_SUPERVISOR)
    mabeam.register_agent(mabeam.AgentConfig("bad", FailsOnRestart, args=str(tmp_path / "started")))
    mabeam.start_agent("bad")
    record = mabeam.await_status("bad", "failed", timeout=30)
    assert record.pid is None
    assert isinstance(record.last_reason, otp.Crash) and "cannot start again" in record.last_reason.message
    assert_untouched(pids, agent_supervisor)


def test_the_budget_is_per_agent_config(app):
    """``AgentConfig(max_restarts=..., restart_period=...)`` overrides the
    application's default budget for that agent."""
    mabeam.register_agent(mabeam.AgentConfig("bad", CrashLoop, max_restarts=1, restart_period=60))
    mabeam.start_agent("bad")
    assert mabeam.await_status("bad", "failed", timeout=30).restarts == 1
    with pytest.raises(ValueError):
        mabeam.AgentConfig("x", EchoAgent, max_restarts=-1)
    with pytest.raises(ValueError):
        mabeam.AgentConfig("x", EchoAgent, restart_period=0)


def test_a_temporary_or_stopped_agent_is_not_restarted(app):
    mabeam.register_agent(mabeam.AgentConfig("t", CrashLoop, restart="temporary"))
    mabeam.start_agent("t")
    assert mabeam.await_status("t", "crashed", timeout=10).restarts == 0
    mabeam.register_agent(mabeam.AgentConfig("p", EchoAgent))
    mabeam.start_agent("p")
    mabeam.stop_agent("p")
    assert mabeam.get_agent("p").status == "stopped"
    mabeam.register_agent(mabeam.AgentConfig("tr", EchoAgent, restart="transient"))
    pid = mabeam.start_agent("tr")
    ref = otp.monitor(pid)
    otp.stop(pid, "normal")
    down_of(ref)
    assert mabeam.await_status("tr", "completed", timeout=10).restarts == 0


# ------------------------------------------------------------------ the agent supervisor restarts


def test_the_registry_follows_the_agent_supervisor_across_its_restart(app):
    """After the agent supervisor restarted, agents started under the new
    one are tracked (status, pid, crashes and restarts), and the agents that
    died with the old one are restarted under it."""
    mabeam.register_agent(mabeam.AgentConfig("before", EchoAgent))
    old_pid = mabeam.start_agent("before")
    mabeam.await_status("before", "running", timeout=10)
    ref = otp.monitor(old_pid)
    restart_agent_supervisor(app)
    assert down_of(ref).reason == "killed"  # agents die with their supervisor
    record = mabeam.await_status("before", "running", timeout=10)
    assert record.pid != old_pid and record.restarts == 1 and otp.is_alive(record.pid)
    assert mabeam.request("before", "back") == ("before", "back")

    mabeam.register_agent(mabeam.AgentConfig("after", EchoAgent))
    pid = mabeam.start_agent("after")
    assert mabeam.await_status("after", "running", timeout=10).pid == pid
    ref = otp.monitor(pid)
    os.kill(pid.ospid, signal.SIGKILL)
    down_of(ref)
    record = mabeam.await_status("after", "running", timeout=10)
    assert record.pid != pid and record.restarts == 1 and record.last_reason == "killed"


def test_agents_started_while_the_registry_was_not_watching_are_found(app):
    """Twice in a row, so the registry is between two supervisors while
    agents start: every agent started ends up tracked with its pid."""
    for round_ in range(2):
        restart_agent_supervisor(app)
        ids = [f"r{round_}-{i}" for i in range(3)]
        for agent_id in ids:
            mabeam.register_agent(mabeam.AgentConfig(agent_id, EchoAgent))
        pids = {agent_id: mabeam.start_agent(agent_id) for agent_id in ids}
        for agent_id, pid in pids.items():
            assert mabeam.await_status(agent_id, "running", timeout=10).pid == pid


# ------------------------------------------------------------------ the registry restarts


def test_a_registry_restarted_with_a_persistent_backend_follows_its_agents(node, tmp_path):
    """The records survive a crash of the registry (sqlite backend): the
    new registry takes over the running agents, and an agent that died
    while no registry watched it is known dead at once, then restarted."""
    from mabeam._agent_registry import REGISTRY

    otp.trap_exit(True)
    app = mabeam.start(agent_backend=("sqlite", str(tmp_path / "agents.db")))
    try:
        otp.supervisor.subscribe(APP)
        pids = {}
        for agent_id in ("a", "b"):
            mabeam.register_agent(mabeam.AgentConfig(agent_id, EchoAgent))
            pids[agent_id] = mabeam.start_agent(agent_id)
        registry = otp.whereis(REGISTRY)
        ref = otp.monitor(registry)
        otp.exit(registry, "kill")
        down_of(ref)
        ref = otp.monitor(pids["b"])
        os.kill(pids["b"].ospid, signal.SIGKILL)
        down_of(ref)
        app_event(app, "started", REGISTRY)
        assert mabeam.get_agent("b").pid != pids["b"]
        assert mabeam.await_status("b", "running", timeout=10).pid != pids["b"]
        record = mabeam.get_agent("a")
        assert (record.status, record.pid) == ("running", pids["a"])
        mabeam.stop_agent("a")
        assert mabeam.get_agent("a").status == "stopped"
        mabeam.register_agent(mabeam.AgentConfig("c", EchoAgent))
        assert mabeam.await_status("c", "registered").status == "registered"
        assert mabeam.get_agent("c").pid is None and mabeam.start_agent("c") == mabeam.whereis_agent("c")
    finally:
        mabeam.stop(app)
