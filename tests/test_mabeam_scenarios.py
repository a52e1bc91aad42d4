"""Load scenarios with real agent processes: many agents started at once,
many concurrent requests.  Behaviour only: success rates and answers are
asserted, timings are measured in ``stress/`` (``mabeam_requests``), never
here."""

from __future__ import annotations

import random

from mabeam_agents import EchoAgent

import mabeam
import otp
from mabeam._app import TASKS


def _register_and_start(agent_id):
    mabeam.register_agent(
        mabeam.AgentConfig(agent_id, EchoAgent, capabilities={"echo", f"shard-{int(agent_id.rsplit('-', 1)[1]) % 4}"})
    )
    return mabeam.start_agent(agent_id)


def test_100_agents_registered_and_started_concurrently(app):
    """100 agents, registered and started from 4 concurrent tasks;
    all running, all discoverable by capability, each its own OS process."""
    ids = [f"agent-{i}" for i in range(100)]
    results = list(otp.TaskSupervisor.async_stream(TASKS, ids, _register_and_start, max_concurrency=4, timeout=60))
    assert all(status == "ok" for status, _ in results), [r for r in results if r[0] != "ok"][:3]
    pids = [value for _, value in results]
    assert len({pid.ospid for pid in pids}) == 100
    for agent_id in ids:
        mabeam.await_status(agent_id, "running", timeout=30)
    assert set(mabeam.find_agents(["echo"])) == set(ids)
    assert set(mabeam.find_agents(["echo"], status="running")) == set(ids)
    shard = set(mabeam.find_agents(["echo", "shard-1"]))
    assert shard and shard < set(ids)


def _client(ids, count, seed, parent):
    rng = random.Random(seed)
    ok = 0
    for i in range(count):
        agent_id = rng.choice(ids)
        try:
            if mabeam.request(agent_id, ("req", seed, i), timeout=10) == (agent_id, ("req", seed, i)):
                ok += 1
        except (mabeam.CommsError, mabeam.AgentError):
            pass
    otp.send(parent, ("done", seed, ok))


def test_5000_concurrent_requests_to_50_agents(app):
    """50 agents x 100 requests from 10 concurrent client processes;
    >= 95% answered correctly, and the first 10 agents still answer after."""
    ids = [f"echo-{i}" for i in range(50)]
    for agent_id in ids:
        _register_and_start(agent_id)
    me = otp.self()
    clients = [otp.spawn_link(_client, ids, 500, seed, me) for seed in range(10)]
    answered = 0
    for _ in clients:
        answered += otp.receive(120, lambda m: type(m) is tuple and m[0] == "done")[2]
    assert answered / 5000 >= 0.95, answered
    for agent_id in ids[:10]:
        assert mabeam.request(agent_id, "health_check", timeout=5) == (agent_id, "health_check")
