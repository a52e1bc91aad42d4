"""Sessions held by session hosts: a body's exception, a killed host, a
slow agent and a dead caller each cost only their own session."""

from __future__ import annotations

import inspect
import time

import pytest
from coordination_agents import (
    body_client,
    crash_after_ask_body,
    crashing_body,
    quick_body,
    refusing_body,
    start_agents,
    sync_client,
    watched_body,
)
from helpers import down_of, recv_tagged

import mabeam
import otp
from mabeam import coordination
from mabeam._app import COORDINATION
from mabeam.coordination._session import HOSTS, start_session


def _sessions_on(host):
    return {s.id for s in coordination.list_sessions() if s.host == host}


def _start_on(host, body, args, tries=64):
    """Start sessions of ``body`` until one is placed on ``host`` (a
    caller's sessions go to one host while it lives: the first try); the
    others are cancelled."""
    for _ in range(tries):
        session = start_session("test", body, args)
        if session.host == host:
            return session
        session.cancel()
    raise AssertionError(f"no session placed on {host!r} in {tries} tries")


def test_sessions_are_state_on_hosts_not_processes(app):
    start_agents({"a": {}, "b": {}, "c": {}})
    hosts = otp.partition_supervisor.children(HOSTS)
    assert len(hosts) >= 2 and None not in hosts
    results = [coordination.run_consensus(["a", "b", "c"], i, timeout=5) for i in range(20)]
    assert all(r.decision == "approve" and r.reached for r in results)
    sessions = [coordination.run_consensus_async(["a", "b", "c"], i, timeout=5) for i in range(8)]
    assert {s.host for s in sessions} <= set(hosts)
    assert all(s.result(20).decision == "approve" for s in sessions)
    assert otp.supervisor.count_children(COORDINATION)["active"] == 0  # no process per session
    assert otp.partition_supervisor.children(HOSTS) == hosts  # and the hosts never restarted
    assert coordination.list_sessions() == []


def test_a_killed_host_fails_its_sessions_at_once_and_new_sessions_go_to_live_hosts(app):
    """SIGKILL the host of a session waiting on an agent: its caller's
    ``result`` raises SessionHostDown at once (its timeout is 60 s), as does a
    caller blocked in ``run_consensus`` on that host; while the host's
    partition cannot restart (its supervisor suspended), new sessions
    succeed on the live host."""
    me = otp.self()
    start_agents({"slow": {"hold": True, "notify": me}, "slow2": {"hold": True, "notify": me}, "p": {}, "q": {}})
    held = coordination.run_consensus_async(["slow", "p"], "x", timeout=60)
    assert recv_tagged("holding") == ("holding", "slow")
    host = held.host
    client = otp.spawn(sync_client, me, ["slow2", "q"], 60)
    assert recv_tagged("holding") == ("holding", "slow2")
    client_host = next(s.host for s in coordination.list_sessions() if s.caller == client)
    partitions = otp.partition_supervisor.children(HOSTS)
    otp.supervisor.subscribe(HOSTS)
    otp.sys.suspend(HOSTS)  # the killed host stays down until resumed
    try:
        started = time.monotonic()
        otp.exit(host, "kill")
        with pytest.raises(coordination.SessionHostDown) as info:
            held.result(60)
        assert time.monotonic() - started < 10  # at once, not at the session's timeout
        # its exit reason, or 'noproc' if it was gone when this caller came to wait
        assert info.value.reason in ("killed", "noproc") and info.value.host == host
        assert isinstance(info.value, coordination.SessionFailed)
        if client_host == host:
            _, kind, reason, elapsed = recv_tagged("ended", timeout=10)
            assert (kind, reason) == ("SessionHostDown", "killed") and elapsed < 15
        # new sessions of this caller, whose partition's host is down, run on the live host
        results = [coordination.run_consensus(["p", "q"], i, timeout=5) for i in range(12)]
        assert all(r.decision == "approve" and r.votes == {"p": "approve", "q": "approve"} for r in results)
        later = [coordination.run_consensus_async(["p", "q"], i, timeout=5) for i in range(12)]
        assert host not in {s.host for s in later}
        assert all(s.result(20).decision == "approve" for s in later)
    finally:
        otp.sys.resume(HOSTS)
    for agent in ("slow", "slow2"):
        otp.send(mabeam.whereis_agent(agent), ("release",))
    if client_host != host:
        assert recv_tagged("ended", timeout=20)[1] == "ok"
    # resumed, the partition supervisor takes in the host's exit and starts another in its place
    exited = recv_tagged("$supervisor", timeout=20)
    assert exited[2:5] == ("exited", partitions.index(host), host)
    started = recv_tagged("$supervisor", timeout=20)
    assert started[2:4] == ("started", partitions.index(host)) and started[4] != host
    assert otp.partition_supervisor.children(HOSTS) == [started[4] if p == host else p for p in partitions]


def test_an_exception_in_one_body_leaves_the_other_sessions_of_its_host_unharmed(app):
    me = otp.self()
    start_agents({"slow": {"hold": True, "notify": me}, "p": {}, "q": {}})
    held = coordination.run_consensus_async(["slow", "p"], "x", timeout=30)
    assert recv_tagged("holding") == ("holding", "slow")
    host = held.host
    # a body that raises at once, and one that raises after its agents answered
    for body, args, message in (
        (crashing_body, ("boom at once",), "boom at once"),
        (crash_after_ask_body, (["p", "q"], "boom after"), "boom after"),
    ):
        crashed = _start_on(host, body, args)
        with pytest.raises(coordination.SessionCrashed) as info:
            crashed.result(10)
        crash = info.value.reason
        assert isinstance(crash, otp.Crash) and crash.type_name == "RuntimeError" and message in crash.message
        assert info.value.session == crashed.id
    assert otp.is_alive(host) and host in otp.partition_supervisor.children(HOSTS)  # the host lives on
    assert _sessions_on(host) == {held.id}
    otp.send(mabeam.whereis_agent("slow"), ("release",))
    assert held.result(10).votes == {"slow": "approve", "p": "approve"}


def test_a_slow_agent_delays_no_other_session_on_its_host(app):
    """Completion order: sessions placed on the host of a session whose
    agent holds its vote until the test releases it all finish first."""
    me = otp.self()
    start_agents({"slow": {"hold": True, "notify": me}, "p": {}, "q": {}, "r": {}})
    held = coordination.run_consensus_async(["slow", "p"], "wait", timeout=30)
    assert recv_tagged("holding") == ("holding", "slow")
    quick = [_start_on(held.host, watched_body, (me, ["p", "q", "r"], 5)) for _ in range(3)]
    assert [s.result(10) for s in quick] == [["approve"] * 3] * 3  # while the slow one waits
    assert _sessions_on(held.host) == {held.id}
    otp.send(mabeam.whereis_agent("slow"), ("release",))
    assert held.result(10).votes == {"slow": "approve", "p": "approve"}


def test_a_dead_callers_session_is_dropped_and_its_host_stays(app):
    me = otp.self()
    start_agents({"slow": {"hold": True, "notify": me}})
    client = otp.spawn(body_client, me, watched_body, (me, ["slow"], 30))
    _, session_id, host = recv_tagged("session")
    assert recv_tagged("holding") == ("holding", "slow")
    assert session_id in _sessions_on(host)
    otp.exit(client, "kill")
    assert recv_tagged("body_stopped", timeout=10) == ("body_stopped", session_id)  # closed, not 30 s later
    assert _sessions_on(host) == set()
    state = otp.sys.get_state(host)  # nothing of the dead caller is kept
    assert client not in state.callers and not state.sessions and not state.asker.open
    assert otp.is_alive(host) and host in otp.partition_supervisor.children(HOSTS)
    otp.send(mabeam.whereis_agent("slow"), ("release",))


def test_a_result_not_taken_in_time_drops_the_session(app):
    me = otp.self()
    start_agents({"slow": {"hold": True, "notify": me}})
    session = start_session("test", watched_body, (me, ["slow"], 30))
    assert recv_tagged("holding") == ("holding", "slow")
    with pytest.raises(coordination.SessionTimeout):
        session.result(0.5)
    assert recv_tagged("body_stopped", timeout=10) == ("body_stopped", session.id)
    assert _sessions_on(session.host) == set()
    with pytest.raises(coordination.ResultTaken):
        session.result(1)
    otp.send(mabeam.whereis_agent("slow"), ("release",))


def test_session_results_and_typed_errors_reach_the_caller(app):
    sessions = [start_session("quick", quick_body, (i,)) for i in range(5)]
    assert [s.result(10) for s in sessions] == list(range(5))
    with pytest.raises(coordination.ResultTaken):
        sessions[0].result(10)
    refused = start_session("refuse", refusing_body, (7, 2))
    with pytest.raises(coordination.InsufficientAgents) as info:
        refused.result(10)
    assert (info.value.minimum, info.value.n) == (7, 2)  # rebuilt from its fields, not its __init__
    assert isinstance(info.value, coordination.CoordinationError) and isinstance(info.value, ValueError)
    for i in range(3):  # a body that crashes at once is reported as its crash
        crashed = start_session("crash", crashing_body, (f"boom {i}",))
        with pytest.raises(coordination.SessionCrashed) as crash:
            crashed.result(10)
        assert f"boom {i}" in str(crash.value.reason)


def test_the_host_monitors_each_agent_once_whatever_the_sessions(app):
    """Requests to agents are casts answered by messages: the host holds
    one monitor per agent it waits on, not one per request."""
    me = otp.self()
    pids = start_agents({"silent": {"hold": True, "notify": me}})
    first = start_session("test", watched_body, (me, ["silent"], 30))
    assert recv_tagged("holding") == ("holding", "silent")
    others = [_start_on(first.host, watched_body, (me, ["silent"], 30)) for _ in range(3)]
    monitors = otp.process_info(first.host).monitors
    assert monitors.count(pids["silent"]) == 1
    ref = otp.monitor(pids["silent"])
    otp.exit(pids["silent"], "kill")  # every session waiting on it is settled by its one DOWN
    down_of(ref)
    assert [s.result(10) for s in [first, *others]] == [[None]] * 4


@pytest.mark.parametrize(
    "name",
    ["run_consensus", "run_byzantine_consensus", "run_hierarchical_consensus", "run_iterative_refinement", "run_pbft"],
)
def test_each_blocking_and_async_pair_shows_one_signature(name):
    """The pairs are made from one checked signature: both show it (with
    their own return type), their own names, and a docstring."""
    run, start = getattr(coordination, name), getattr(coordination, f"{name}_async")
    assert (run.__name__, start.__name__) == (name, f"{name}_async")
    assert run.__module__ == start.__module__ and run.__module__.startswith("mabeam.coordination.")
    shown, started = inspect.signature(run), inspect.signature(start)
    assert shown.parameters == started.parameters and "timeout" in shown.parameters
    assert shown.return_annotation != started.return_annotation
    assert run.__doc__.strip() and start.__doc__.strip() and f":func:`{name}`" in start.__doc__
