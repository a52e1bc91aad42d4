"""Elixir's Agent as otp.Agent: start, get, update, get_and_update, cast,
stop, crashes, supervision; under both start methods."""

from __future__ import annotations

import os

import pytest
from helpers import down_of, exit_of, recv

import otp

Agent = otp.Agent


@pytest.fixture
def node(start_method, node):
    return node


def test_get_update_get_and_update(node):
    """Agent.start_link/2 (state = fun.()), Agent.get/3, Agent.update/3,
    Agent.get_and_update/3 (fun returns {value, new_state})."""
    agent = Agent.start_link(lambda: [])
    Agent.update(agent, lambda items: items + ["a"])
    assert Agent.get(agent, len) == 1
    assert Agent.get_and_update(agent, lambda items: (items[-1], items + ["b"])) == "a"
    assert Agent.get(agent, lambda items: items) == ["a", "b"]
    Agent.stop(agent)


def test_functions_run_inside_the_agent_and_closures_travel(node):
    """Agent: the functions are executed in the agent process (closures
    over the caller's variables included)."""
    offset = 40
    agent = Agent.start_link(lambda: 2)
    assert Agent.get(agent, lambda n: n + offset) == 42
    assert Agent.get(agent, lambda _: os.getpid()) != os.getpid()
    Agent.stop(agent)


def test_cast_is_asynchronous_and_ordered_before_a_later_get(node):
    """Agent.cast/2 returns at once; a later get/3 from the same caller
    sees its update (messages between two processes stay in order)."""
    agent = Agent.start_link(lambda: 0)
    for _ in range(5):
        Agent.cast(agent, lambda n: n + 1)
    assert Agent.get(agent, lambda n: n) == 5
    Agent.stop(agent)
    Agent.cast(agent, lambda n: n + 1)  # never fails, even to a dead agent


def test_an_exception_in_a_function_crashes_the_agent(node):
    """Agent: an exception raised by fun exits the agent with it; the caller
    of get/3 exits (here: CalleeExit with the Crash) and a linked process
    receives the exit signal."""
    otp.trap_exit(True)
    agent = Agent.start_link(lambda: {"a": 1})
    with pytest.raises(otp.CalleeExit) as info:
        Agent.get(agent, lambda d: d["missing"])
    crash = info.value.reason
    assert isinstance(crash, otp.Crash) and crash.type_name == "KeyError"
    assert exit_of(agent).reason == crash
    assert not otp.is_alive(agent)


def test_get_and_update_must_return_a_pair(node):
    """Agent.get_and_update/3: a fun not returning {value, new_state} is a
    match error that crashes the agent."""
    otp.trap_exit(True)
    agent = Agent.start_link(lambda: 1)
    with pytest.raises(otp.CalleeExit) as info:
        Agent.get_and_update(agent, lambda n: n)
    assert info.value.reason.type_name == "BadUpdate"


def test_start_failure_and_names(node):
    """Agent.start_link/2: {:error, reason} when fun raises (StartError);
    the name option registers the agent, a second one is
    {:error, {:already_started, pid}}; Agent.start/2 does not link."""
    with pytest.raises(otp.StartError) as info:
        Agent.start_link(lambda: 1 / 0)
    assert isinstance(info.value.reason, otp.Crash) and info.value.reason.type_name == "ZeroDivisionError"
    agent = Agent.start(lambda: "named", name="config")
    assert Agent.get("config", str.upper) == "NAMED"
    with pytest.raises(otp.StartError) as info:
        Agent.start(lambda: "again", name="config")
    assert info.value.reason == ("already_started", agent)
    ref = otp.monitor(agent)
    Agent.stop("config", "shutdown")
    assert down_of(ref).reason == "shutdown"


def test_agent_under_a_supervisor_is_restarted_with_a_fresh_state(node):
    """Agent.child_spec/1: an agent in a supervision tree; after a crash the
    supervisor restarts it, running the start function again."""
    otp.trap_exit(True)
    sup = otp.Supervisor.start_link([Agent.child_spec(lambda: 0, name="counter")])
    otp.supervisor.subscribe(sup)
    Agent.update("counter", lambda n: n + 1)
    first = otp.whereis("counter")
    Agent.cast("counter", lambda n: n / 0)
    restarted = recv(lambda m: type(m) is tuple and m[:4] == ("$supervisor", sup, "started", "Agent"))[4]
    assert restarted != first and Agent.get("counter", lambda n: n) == 0
    otp.exit(sup, "shutdown")
    assert exit_of(sup).reason == "shutdown"
