"""An agent's death, as everything that answers about the agent tells it.

Once anyone has seen an agent die (its record says so, a monitor's DOWN
came in, a lookup found no process), every other answer agrees: the
registry does not report it running, ``whereis_agent`` does not find it, a
request is refused with :class:`AgentNotRunning`.  The races these tests
catch are short (a few milliseconds, in about one trial in ten), so each
kills an agent 30 times and checks every answer right after the point of
synchronisation, with no sleep anywhere.
"""

from __future__ import annotations

import os
import signal

import pytest
from helpers import down_of
from mabeam_agents import EchoAgent

import mabeam
import otp

TRIALS = 30


def assert_dead_everywhere(agent_id):
    """Every answer about ``agent_id`` says it does not run."""
    assert mabeam.whereis_agent(agent_id) is None
    with pytest.raises(mabeam.AgentNotRunning):
        mabeam.request(agent_id, "anyone there?")
    [(status, error)] = mabeam.broadcast([agent_id], "anyone there?")
    assert status == "error" and type(error) is mabeam.AgentNotRunning
    assert agent_id not in mabeam.find_agents(status="running")


def test_a_killed_agent_reported_crashed_is_found_nowhere(app):
    """The registry reports the SIGKILLed agent crashed: from then on its
    name finds nothing, and a request says not running (never a dead pid,
    never another error)."""
    mabeam.register_agent(mabeam.AgentConfig("t", EchoAgent, restart="temporary"))
    for _ in range(TRIALS):
        pid = mabeam.start_agent("t")
        os.kill(pid.ospid, signal.SIGKILL)
        record = mabeam.await_status("t", "crashed", timeout=10)
        assert record.pid is None and record.last_reason == "killed"
        assert_dead_everywhere("t")


def test_a_killed_agent_seen_dead_is_reported_crashed(app):
    """The caller's own monitor saw the agent die: the registry, asked at
    once, already says crashed (never still running)."""
    mabeam.register_agent(mabeam.AgentConfig("t", EchoAgent, restart="temporary"))
    for _ in range(TRIALS):
        pid = mabeam.start_agent("t")
        ref = otp.monitor(pid)
        os.kill(pid.ospid, signal.SIGKILL)
        assert down_of(ref).reason == "killed"
        record = mabeam.get_agent("t")
        assert (record.status, record.pid, record.last_reason) == ("crashed", None, "killed")
        assert_dead_everywhere("t")


def test_a_killed_permanent_agent_is_never_reported_with_its_dead_pid(app):
    """A permanent agent is restarted (30 restarts are within the default
    budget): right after its death the registry reports it crashed or
    running again, never running as the dead pid."""
    mabeam.register_agent(mabeam.AgentConfig("p", EchoAgent))
    pid = mabeam.start_agent("p")
    for _ in range(TRIALS):
        ref = otp.monitor(pid)
        os.kill(pid.ospid, signal.SIGKILL)
        down_of(ref)
        record = mabeam.get_agent("p")
        assert record.pid != pid
        assert mabeam.whereis_agent("p") != pid
        assert record.status in ("crashed", "running")
        pid = mabeam.await_status("p", "running", timeout=10).pid
    assert mabeam.get_agent("p").restarts == TRIALS
