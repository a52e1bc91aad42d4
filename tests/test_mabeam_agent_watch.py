"""AgentWatch on a small tree of its own: an application supervisor
``t.sup`` (one_for_one) with a dynamic supervisor ``t.agents`` whose
children are the "agents".  The watcher runs in a process of its own that
the test can pause, so that agents start while it cannot hear of them."""

from __future__ import annotations

import pytest
from helpers import down_of
from mabeam_agents import start_idle, watch_and_report

import otp
from mabeam._agent_watch import AgentExited, AgentStarted, SupervisorDown, SupervisorUp

APP, AGENTS = "t.sup", "t.agents"


def start_agents_sup():
    return otp.DynamicSupervisor.start_link(name=AGENTS)


@pytest.fixture
def tree(node):
    otp.trap_exit(True)
    sup = otp.Supervisor.start_link(
        [otp.child_spec(AGENTS, start=(start_agents_sup, ()), type="supervisor")],
        strategy="one_for_one",
        intensity=10,
        period=60,
        name=APP,
    )
    otp.supervisor.subscribe(APP)
    yield sup
    ref = otp.monitor(sup)
    otp.exit(sup, "shutdown")
    down_of(ref)


def start_agent(agent_id):
    return otp.supervisor.start_child(AGENTS, otp.child_spec(agent_id, start=(start_idle, ()), restart="temporary"))


def events_until(done):
    """The watcher's events until ``done(events)`` holds."""
    events = []
    while not done(events):
        events.append(otp.receive(10, lambda m: type(m) is tuple and m[0] == "event")[1])
    return events


def restart_agents_sup(app):
    old = otp.whereis(AGENTS)
    ref = otp.monitor(old)
    otp.exit(old, "kill")
    down_of(ref)
    return otp.receive(10, lambda m: type(m) is tuple and m[:4] == ("$supervisor", app, "started", AGENTS))[4]


@pytest.mark.parametrize("monitor_agents", [False, True])
def test_agents_are_followed_across_a_restart_of_their_supervisor(tree, monitor_agents):
    first = otp.whereis(AGENTS)
    a = start_agent("a")  # before the watch: found by its listing
    watcher = otp.spawn_link(watch_and_report, otp.self(), monitor_agents, APP, AGENTS)
    otp.receive(10, lambda m: m == ("ready", watcher))
    assert events_until(lambda e: any(isinstance(x, SupervisorUp) for x in e)) == [
        AgentStarted("a", a),
        SupervisorUp(first, {"a": a}),
    ]

    otp.send(watcher, "pause")
    otp.receive(10, lambda m: m == "paused")
    second = restart_agents_sup(tree)
    b = start_agent("b")  # under the new supervisor, before the watch follows it
    otp.send(watcher, "go")
    events = events_until(lambda e: SupervisorUp(second, {"b": b}) in e and any(isinstance(x, AgentExited) for x in e))
    assert SupervisorDown(first) in events and AgentStarted("b", b) in events
    assert events.index(AgentStarted("b", b)) < events.index(SupervisorUp(second, {"b": b}))
    [exited] = [x for x in events if isinstance(x, AgentExited)]
    assert (exited.agent_id, exited.pid) == ("a", a)
    assert exited.reason == "killed" or (not monitor_agents and exited.reason == "noproc")

    c = start_agent("c")  # the watch follows the new supervisor's events
    assert events_until(lambda e: len(e) == 1) == [AgentStarted("c", c)]
    otp.exit(b, "kill")
    assert events_until(lambda e: len(e) == 1) == [AgentExited("b", b, "killed")]
    otp.supervisor.terminate_child(AGENTS, c)
    assert events_until(lambda e: len(e) == 1) == [AgentExited("c", c, "shutdown")]
    otp.send(watcher, "stop")
    assert otp.receive(10, lambda m: isinstance(m, otp.EXIT) and m.pid == watcher).reason == "normal"


def test_a_watch_created_while_its_agent_supervisor_is_restarted(tree):
    """The watch subscribes to the application supervisor without waiting:
    an agent supervisor restarted before (or after) that subscription took
    effect is followed all the same, and its agents listed."""
    first = otp.whereis(AGENTS)
    otp.sys.suspend(tree)  # the application supervisor takes no request, no EXIT, for now
    ref = otp.monitor(first)
    otp.exit(first, "kill")
    down_of(ref)
    watcher = otp.spawn_link(watch_and_report, otp.self(), False, APP, AGENTS)
    otp.receive(10, lambda m: m == ("ready", watcher))  # it follows no agent supervisor
    otp.send(watcher, "pause")
    otp.receive(10, lambda m: m == "paused")
    otp.sys.resume(tree)  # restarts it and takes the subscription, in either order
    second = otp.receive(10, lambda m: type(m) is tuple and m[:4] == ("$supervisor", tree, "started", AGENTS))[4]
    a = start_agent("a")
    otp.send(watcher, "go")
    events = events_until(lambda e: any(isinstance(x, SupervisorUp) for x in e))
    assert events == [AgentStarted("a", a), SupervisorUp(second, {"a": a})]
    otp.send(watcher, "stop")


def test_a_watch_that_reports_only_starts(tree):
    """``report_running=False``: the agents running at its creation are not
    listed; later starts are reported, and so are the agents found under a
    restarted agent supervisor."""
    first = otp.whereis(AGENTS)
    a = start_agent("a")
    watcher = otp.spawn_link(watch_and_report, otp.self(), False, APP, AGENTS, False)
    otp.receive(10, lambda m: m == ("ready", watcher))
    assert events_until(lambda e: len(e) == 1) == [SupervisorUp(first)]  # subscribed
    b = start_agent("b")
    assert events_until(lambda e: len(e) == 1) == [AgentStarted("b", b)]
    otp.exit(a, "kill")
    otp.exit(b, "kill")
    assert events_until(lambda e: len(e) == 1) == [AgentExited("b", b, "killed")]  # a was never reported
    otp.send(watcher, "pause")
    otp.receive(10, lambda m: m == "paused")
    second = restart_agents_sup(tree)
    c = start_agent("c")
    otp.send(watcher, "go")
    events = events_until(lambda e: any(isinstance(x, SupervisorUp) for x in e))
    assert events == [SupervisorDown(first), AgentStarted("c", c), SupervisorUp(second, {"c": c})]
    otp.send(watcher, "stop")
