"""The balancer agrees with the kernel about an agent's death at once: an
agent SIGKILLed just before a request is never assigned nor counted, even
while its DOWN is still on the way."""

from __future__ import annotations

import os
import signal

import pytest
from helpers import recv
from service_agents import Worker, forward_events

import mabeam
import otp
from mabeam import load_balancing as lb
from mabeam import telemetry
from mabeam._errors import AgentNotRunning


def run(agent_id):
    # temporary: nobody restarts it, so "doomed" can only mean the dead pid
    mabeam.register_agent(mabeam.AgentConfig(agent_id, Worker, restart="temporary"))
    pid = mabeam.start_agent(agent_id)
    lb.register_agent(agent_id)
    return pid


def joined_pair():
    doomed = run("doomed")
    survivor = run("survivor")
    # busy but not overloaded: resource_aware would pick "doomed" were it alive
    lb.update_load("survivor", cpu=0.5, active_tasks=4)
    return doomed, survivor


def test_assignment_right_after_sigkill_skips_the_dead_agent(app):
    telemetry.attach_handler("lb-left", ("mabeam", "load_balancer", "left"), forward_events(otp.self()))
    doomed, survivor = joined_pair()
    os.kill(doomed.ospid, signal.SIGKILL)
    assert lb.assign_task(["work"], strategy="resource_aware") == ("survivor", survivor)
    stats = lb.get_stats()
    assert (stats.total_agents, stats.total_tasks_assigned) == (1, 1)
    assert list(lb.list_agents()) == ["survivor"]
    # dropped before its DOWN or at it, it leaves with its exit reason
    left = recv(lambda m: m[0] == "event" and m[1][-1] == "left")
    assert left[3] == {"agent_id": "doomed", "reason": "killed"}


def test_stats_right_after_sigkill_do_not_count_the_dead_agent(app):
    doomed, _ = joined_pair()
    os.kill(doomed.ospid, signal.SIGKILL)
    stats = lb.get_stats()
    assert (stats.total_agents, stats.available_agents) == (1, 1)
    assert list(lb.list_agents()) == ["survivor"]
    assert lb.assign_task(["work"])[0] == "survivor"


def test_agent_sigkilled_before_joining_cannot_join(app):
    mabeam.register_agent(mabeam.AgentConfig("doomed", Worker, restart="temporary"))
    pid = mabeam.start_agent("doomed")
    os.kill(pid.ospid, signal.SIGKILL)
    # the registry may not have heard yet: then the balancer refuses it
    with pytest.raises(AgentNotRunning):
        lb.register_agent("doomed")
    assert lb.get_stats().total_agents == 0
