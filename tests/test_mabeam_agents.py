"""MABEAM agents: lifecycle (an agent can be registered without running), the
agent registry, communication."""

from __future__ import annotations

import os
import signal

import pytest
from helpers import down_of
from mabeam_agents import (
    CrashingSetup,
    EchoAgent,
    ReportingAgent,
    TrappingAgent,
    exit_with,
    fail_in,
    link_to_crash,
    seen_by,
)

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
    assert mabeam.whereis_agent("a") is None
    with pytest.raises(mabeam.AgentNotRunning) as info:
        mabeam.request("a", "hi")
    assert isinstance(info.value, mabeam.CommsError) and info.value.agent_id == "a"


def test_start_request_stop(app):
    mabeam.register_agent(mabeam.AgentConfig("a", EchoAgent))
    pid = mabeam.start_agent("a")
    assert pid.ospid != os.getpid() and otp.is_alive(pid)
    assert mabeam.request("a", "hi") == ("a", "hi")
    assert mabeam.get_agent("a").pid == pid
    mabeam.stop_agent("a")
    assert not otp.is_alive(pid)  # returns after the OS process is gone
    assert mabeam.get_agent_status("a") == "stopped"
    assert mabeam.whereis_agent("a") is None
    with pytest.raises(mabeam.AgentNotRunning):
        mabeam.stop_agent("a")
    assert mabeam.start_agent("a") != pid  # can start again


def test_duplicate_registration_and_double_start(app):
    mabeam.register_agent(mabeam.AgentConfig("a", EchoAgent))
    with pytest.raises(mabeam.AgentAlreadyRegistered) as info:
        mabeam.register_agent(mabeam.AgentConfig("a", EchoAgent))
    assert isinstance(info.value, mabeam.AgentError) and info.value.agent_id == "a"
    mabeam.start_agent("a")
    with pytest.raises(mabeam.AgentAlreadyRunning) as info:
        mabeam.start_agent("a")
    assert isinstance(info.value, mabeam.AgentError) and info.value.agent_id == "a"


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
    with pytest.raises(mabeam.AgentStartFailed) as info:
        mabeam.start_agent("bad")
    assert isinstance(info.value, mabeam.AgentError)
    assert isinstance(info.value.exit_reason, otp.Crash) and "cannot start" in info.value.exit_reason.message
    assert mabeam.get_agent_status("bad") == "registered"


def test_hook_exception_is_returned_not_fatal(app):
    mabeam.register_agent(mabeam.AgentConfig("a", EchoAgent))
    pid = mabeam.start_agent("a")
    with pytest.raises(mabeam.HookFailed) as info:
        mabeam.request("a", "boom")
    assert isinstance(info.value, mabeam.AgentError)
    assert (info.value.agent_id, info.value.operation, info.value.crash.message) == ("a", "request", "bad request")
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
    assert type(results[4][1]) is mabeam.AgentNotRunning and results[4][1].agent_id == "ghost"
    answers = mabeam.multicast(["echo"], "all")
    assert sorted(answers) == ["a0", "a1", "a2", "a3"]
    assert all(status == "ok" for status, _ in answers.values())
    slow = mabeam.broadcast(["a0"], ("sleep", 2), timeout=0.2)
    assert slow[0][0] == "error" and type(slow[0][1]) is mabeam.AgentTimeout


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


def test_get_agent_of_an_unknown_id_raises_unknown_agent(app):
    with pytest.raises(mabeam.UnknownAgent) as info:
        mabeam.get_agent("nobody")
    assert isinstance(info.value, LookupError) and info.value.agent_id == "nobody"
    with pytest.raises(mabeam.UnknownAgent):
        mabeam.start_agent("nobody")


def test_a_running_agent_cannot_be_unregistered(app):
    mabeam.register_agent(mabeam.AgentConfig("a", EchoAgent))
    mabeam.start_agent("a")
    wait_status("a", "running")  # the record follows the supervisor's event
    with pytest.raises(mabeam.AgentStillRunning):
        mabeam.unregister_agent("a")
    mabeam.stop_agent("a")
    mabeam.unregister_agent("a")
    with pytest.raises(mabeam.UnknownAgent):
        mabeam.get_agent("a")


def test_run_operation_runs_a_function_in_the_agent(app):
    mabeam.register_agent(mabeam.AgentConfig("a", EchoAgent))
    pid = mabeam.start_agent("a")
    mabeam.request("a", "first")
    assert mabeam.request("a", (seen_by, ("x",)), kind="run") == ("a", ["first"], "x")
    with pytest.raises(mabeam.HookFailed) as info:
        mabeam.request("a", (fail_in, ("broken step",)), kind="run")
    assert (info.value.operation, info.value.crash.message) == ("run", "broken step")
    assert otp.is_alive(pid)
    outcomes = mabeam.multi_request([("a", "run", (seen_by, (1,))), ("a", "info", None)])
    assert outcomes[0] == ("ok", ("a", ["first"], 1))
    assert outcomes[1] == ("ok", {"agent_id": "a", "capabilities": ["echo"], "class": "EchoAgent"})


def test_requests_of_a_kind_the_agent_lacks_are_the_callers_mistake(app):
    mabeam.register_agent(mabeam.AgentConfig("a", EchoAgent))
    pid = mabeam.start_agent("a")
    with pytest.raises(otp.UnknownOperation):
        mabeam.request("a", "x", kind="describe")  # a hook, not an operation
    reply = otp.call(pid, "not a request")  # not through otp.ask: answered, not fatal
    assert type(reply) is otp.Failed and type(reply.error) is otp.UnknownOperation
    assert mabeam.request("a", "still here") == ("a", "still here")


def test_an_agent_that_exits_mid_request_is_reported_with_its_exit_reason(app):
    mabeam.register_agent(mabeam.AgentConfig("t", EchoAgent, restart="temporary"))
    pid = mabeam.start_agent("t")
    ref = otp.monitor(pid)
    with pytest.raises(mabeam.AgentExited) as info:
        mabeam.request("t", (exit_with, ("kill",)), kind="run")
    assert info.value.exit_reason == "killed" and isinstance(info.value, mabeam.CommsError)
    assert down_of(ref).reason == "killed"  # an exit is not a hook's failure: it ends the agent


def teardown_of(agent_id):
    """The ``('teardown', agent_id, reason)`` report of a ReportingAgent."""
    return otp.receive(10, lambda m: type(m) is tuple and m[:2] == ("teardown", agent_id))


def test_teardown_runs_when_the_agent_is_stopped(app):
    mabeam.register_agent(mabeam.AgentConfig("a", ReportingAgent, args={"observer": otp.self()}))
    pid = mabeam.start_agent("a")
    mabeam.stop_agent("a")
    assert teardown_of("a") == ("teardown", "a", "shutdown")
    assert not otp.is_alive(pid) and mabeam.get_agent_status("a") == "stopped"


def test_teardown_runs_when_its_supervisor_terminates_it(app):
    """What the quota manager and the application's stop do: the agent
    supervisor's terminate_child, an exit signal 'shutdown'."""
    mabeam.register_agent(mabeam.AgentConfig("a", ReportingAgent, args={"observer": otp.self()}))
    pid = mabeam.start_agent("a")
    otp.supervisor.terminate_child(mabeam._agent_registry.AGENT_SUPERVISOR, pid)
    assert teardown_of("a") == ("teardown", "a", "shutdown")
    wait_status("a", "stopped")


def test_teardown_runs_when_a_quota_terminates_the_agent(app):
    from mabeam import quotas
    from mabeam.quotas import MB, EscalationPolicy, QuotaSpec, ResourceLimit, measure

    mabeam.register_agent(mabeam.AgentConfig("hog", ReportingAgent, args={"observer": otp.self()}))
    pid = mabeam.start_agent("hog")
    quotas.configure_enforcement(period=0.05)
    base = measure(pid.ospid).rss
    rss = ResourceLimit(base + 10 * MB, base + 1000 * MB, base + 2000 * MB)
    policy = EscalationPolicy(throttle_after=0.1, suspend_after=0.2, terminate_after=0.4)
    quotas.set_quota("hog", QuotaSpec("test", rss, ResourceLimit.of(1e6, 2e6)), policy)
    otp.send(pid, ("alloc", 60 * MB))
    assert otp.receive(60, lambda m: type(m) is tuple and m[:2] == ("teardown", "hog")) == (
        "teardown",
        "hog",
        "shutdown",
    )
    assert down_of(otp.monitor(pid)).reason in ("shutdown", "noproc")


def test_an_agent_dies_with_a_linked_process_that_crashes(app):
    """Agents trap exits (so that teardown runs on a stop), yet an abnormal
    exit of a process linked to one still ends it, as it would end any
    process: the link's reason is its exit reason, after its teardown."""
    mabeam.register_agent(mabeam.AgentConfig("a", ReportingAgent, args={"observer": otp.self()}, restart="temporary"))
    pid = mabeam.start_agent("a")
    ref = otp.monitor(pid)
    assert mabeam.request("a", (link_to_crash, ("linked crash",)), kind="run") == "linked"
    reason = down_of(ref).reason
    assert isinstance(reason, otp.Crash) and "linked crash" in reason.message
    assert teardown_of("a")[2] == reason
    assert wait_status("a", "crashed").last_reason == reason


def test_an_agent_class_may_take_the_exits_of_linked_processes(app):
    mabeam.register_agent(mabeam.AgentConfig("a", TrappingAgent, args={"observer": otp.self()}))
    pid = mabeam.start_agent("a")
    assert mabeam.request("a", (link_to_crash, ("linked crash",)), kind="run") == "linked"
    reason = otp.receive(10, lambda m: type(m) is tuple and m[:2] == ("exit", "a"))[2]
    assert isinstance(reason, otp.Crash) and "linked crash" in reason.message
    assert mabeam.request("a", "still here") == ("a", "still here") and mabeam.whereis_agent("a") == pid


def test_agent_operation_names_are_reserved():
    with pytest.raises(TypeError, match="run"):

        class Shadowing(mabeam.Agent):
            def run(self):
                return None


def test_errors_are_mabeam_errors_named_by_cause():
    for cls in (
        mabeam.AgentError,
        mabeam.CommsError,
        mabeam.HookFailed,
        mabeam.AgentAlreadyRegistered,
        mabeam.AgentAlreadyRunning,
        mabeam.AgentStillRunning,
        mabeam.AgentStartFailed,
        mabeam.AgentTimeout,
        mabeam.AgentExited,
        mabeam.AgentNotRunning,
        mabeam.UnknownAgent,
        mabeam.NotStarted,
    ):
        assert issubclass(cls, mabeam.MabeamError) and issubclass(cls, otp.OTPError)
    for cause in (mabeam.AgentNotRunning, mabeam.AgentTimeout, mabeam.AgentExited):
        assert issubclass(cause, mabeam.CommsError) and not issubclass(cause, mabeam.AgentError)
    for cause in (mabeam.HookFailed, mabeam.AgentAlreadyRegistered, mabeam.AgentAlreadyRunning):
        assert issubclass(cause, mabeam.AgentError) and not issubclass(cause, mabeam.CommsError)
    for cause in (mabeam.AgentStillRunning, mabeam.AgentStartFailed):
        assert issubclass(cause, mabeam.AgentError)
    assert "'gone' is not running" in str(mabeam.AgentNotRunning("gone"))
