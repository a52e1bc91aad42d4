"""MABEAM agents on several nodes (separate OS processes on 127.0.0.1,
tcp + CURVE): the home node runs the application, agents run where their
``AgentConfig.node`` says; lookups, requests, broadcasts, consensus and
auctions reach them; a node SIGKILLed makes its agents ``'crashed'`` with
``'noconnection'``, restarted on the next node of their list that is up; a
node cut off (SIGSTOP) has its agent restarted elsewhere, and the old
process stops once its node runs again (no agent runs twice)."""

from __future__ import annotations

import signal

import dist_nodes
import pytest
from helpers import recv_tagged
from mabeam_agents import ReportingAgent

import mabeam
import otp
from mabeam import agent_name, coordination, economics
from mabeam._agent_registry import REGISTRY

#: Not a member of any test cluster: a start there fails at once.
STRANGER = "stranger@127.0.0.1"


class NodeAgent(mabeam.Agent):
    """Says where it runs, echoes requests, votes ``args['choice']`` and
    bids ``args['amount']``."""

    capabilities = frozenset({"placed"})

    def setup(self, args):
        self.choice = (args or {}).get("choice", "approve")
        self.amount = (args or {}).get("amount")

    def handle_request(self, message):
        if message == "node":
            return otp.node()
        if message == "boom":
            raise ValueError("bad request")
        return (self.agent_id, message)

    def handle_vote(self, proposal):
        return self.choice

    def handle_bid(self, auction):
        return self.amount


def where(agent):
    """Run in an agent: its node and OS pid."""
    return otp.node(), otp.self()


@pytest.fixture(scope="module")
def c():
    with dist_nodes.cluster(["b", "c"]) as cluster:
        yield cluster


@pytest.fixture
def app(c):
    otp.trap_exit(True)
    sup = mabeam.start()
    try:
        yield sup
    finally:
        mabeam.stop(sup)
        otp.trap_exit(False)


def start(agent_id, node=None, cls=NodeAgent, **options):
    mabeam.register_agent(mabeam.AgentConfig(agent_id, cls, node=node, **options))
    return mabeam.start_agent(agent_id)


def test_node_is_kept_as_a_tuple_of_names():
    assert mabeam.AgentConfig("x", NodeAgent).node is None
    assert mabeam.AgentConfig("x", NodeAgent, node="b@h").node == ("b@h",)
    assert mabeam.AgentConfig("x", NodeAgent, node=["b@h", "c@h", "b@h"]).nodes == ("b@h", "c@h")
    for bad in ((), "", ("b@h", 3), 7):
        with pytest.raises(TypeError):
            mabeam.AgentConfig("x", NodeAgent, node=bad)


def test_agents_on_two_nodes_are_found_and_answer(c, app):
    b = c.name("b")
    here_pid = start("here")
    there_pid = start("there", node=b)
    assert otp.node(here_pid) == otp.node() and otp.node(there_pid) == b
    assert mabeam.whereis_agent("there") == there_pid == mabeam.get_agent("there").pid
    assert mabeam.get_agent("there").node == b
    assert sorted(mabeam.find_agents(capabilities=["placed"], status="running")) == ["here", "there"]
    assert mabeam.request("there", "node") == b
    assert mabeam.request("there", (where, ()), kind="run") == (b, there_pid)
    outcomes = mabeam.broadcast(["here", "there"], "node")
    assert outcomes == [("ok", otp.node()), ("ok", b)]
    with pytest.raises(mabeam.HookFailed):  # a hook's failure crosses the node as it is
        mabeam.request("there", "boom")
    assert mabeam.multicast(["placed"], "ping") == {
        "here": ("ok", ("here", "ping")),
        "there": ("ok", ("there", "ping")),
    }


def test_consensus_and_auction_with_agents_on_both_nodes(c, app):
    b = c.name("b")
    start("v1", args={"choice": "approve", "amount": 5.0})
    start("v2", node=b, args={"choice": "approve", "amount": 9.0})
    start("v3", node=b, args={"choice": "reject", "amount": 7.0})
    result = coordination.run_consensus(["v1", "v2", "v3"], "deploy?", method="majority", timeout=30)
    assert result.reached and result.decision == "approve", result.failed
    assert dict(result.votes) == {"v1": "approve", "v2": "approve", "v3": "reject"}
    auction = economics.create_auction("vickrey", item="gpu", participants=["v1", "v2", "v3"], bid_timeout=30)
    outcome = economics.run(auction, timeout=60)
    assert outcome.winner == "v2" and outcome.price == 7.0  # on node b, paying the second price


def test_stop_agent_on_another_node_runs_its_teardown(c, app):
    b = c.name("b")
    pid = start("stopped", node=b, cls=ReportingAgent, args={"observer": otp.self()})
    ref = otp.monitor(pid)
    mabeam.stop_agent("stopped")
    assert recv_tagged("teardown") == ("teardown", "stopped", "shutdown")
    assert otp.receive(30, lambda m: isinstance(m, otp.DOWN) and m.ref == ref).reason == "shutdown"
    assert mabeam.get_agent("stopped").status == "stopped"
    assert mabeam.whereis_agent("stopped") is None


def test_the_first_node_of_the_list_that_is_up(c, app):
    b = c.name("b")
    assert otp.node(start("first", node=(STRANGER, b, otp.node()))) == b  # a non-member cannot be reached
    assert otp.node(start("second", node=(otp.node(), b))) == otp.node()
    mabeam.register_agent(mabeam.AgentConfig("nowhere", NodeAgent, node=STRANGER))
    with pytest.raises(mabeam.AgentStartFailed) as failed:
        mabeam.start_agent("nowhere")
    assert failed.value.reason == "noconnection"


def await_status_request(agent_id, status):
    """Ask the registry to answer once ``agent_id`` has ``status``, without
    waiting here: the answer is taken later by :func:`record_of`."""
    return otp.send_request(REGISTRY, otp.Request("await_status", (agent_id, status), {}))


def record_of(req, timeout):
    reply = otp.receive_response(req, timeout)
    assert type(reply) is otp.Ok, reply
    return reply.value


def test_an_agent_cut_off_with_its_node_runs_elsewhere_and_the_old_one_stops(c, app):
    """Node ``c`` stops answering (SIGSTOP) for longer than the tick time:
    its agent is restarted on ``b``; once ``c`` runs again its old process
    has lost its supervisor too ('noconnection' on its side) and stops, so
    the agent does not run twice."""
    b, cut = c.name("b"), c.name("c")
    old = start("cut-off", node=(cut, b))
    crashed = await_status_request("cut-off", "crashed")
    c.remote["c"].stop_all(signal.SIGSTOP)
    try:
        assert record_of(crashed, 30).last_reason == "noconnection"
        assert mabeam.await_status("cut-off", "running", timeout=30).node == b
    finally:
        c.remote["c"].stop_all(signal.SIGCONT)
    assert otp.connect_node(cut)
    ref = otp.monitor(old)  # DOWN once it is gone ('noproc' if it is already)
    down = otp.receive(30, lambda m: isinstance(m, otp.DOWN) and m.ref == ref)
    assert down.reason in ("noproc", "noconnection")  # gone, or going: its supervisor's link is lost
    assert otp.rpc.call(cut, otp.whereis, agent_name("cut-off"), timeout=30) is None
    assert otp.node(mabeam.whereis_agent("cut-off")) == b


def test_sigkill_of_a_node_crashes_its_agents_with_noconnection(c, app):
    """Node ``c`` is SIGKILLed (the last test of the module to use it)."""
    b, lost_node = c.name("b"), c.name("c")
    start("home")
    start("moves", node=(lost_node, b, otp.node()))
    start("falls-back", node=(lost_node, otp.node()))
    start("stays", node=lost_node, max_restarts=1, restart_period=600)
    assert {mabeam.get_agent(a).node for a in ("moves", "falls-back", "stays")} == {lost_node}
    crashed = {a: await_status_request(a, "crashed") for a in ("moves", "falls-back", "stays")}
    failed = await_status_request("stays", "failed")
    lost = [otp.monitor(mabeam.whereis_agent(a)) for a in ("moves", "falls-back")]
    c.remote["c"].kill()
    for ref in lost:
        assert otp.receive(30, lambda m, r=ref: isinstance(m, otp.DOWN) and m.ref == r).reason == "noconnection"
    for agent_id, req in crashed.items():
        record = record_of(req, 30)
        assert (record.status, record.last_reason) == ("crashed", "noconnection"), agent_id
    moved = mabeam.await_status("moves", "running", timeout=30)
    fell_back = mabeam.await_status("falls-back", "running", timeout=30)
    assert (moved.node, moved.restarts) == (b, 1)
    assert (fell_back.node, fell_back.restarts) == (otp.node(), 1)
    assert mabeam.request("moves", "node") == b
    # Its only node is gone: its restart cannot start (after the connection
    # set-up time), and that crash is one more than its budget allows.
    record = record_of(failed, 60)
    assert (record.status, record.last_reason) == ("failed", "noconnection")
    assert mabeam.whereis_agent("stays") is None
    home = mabeam.get_agent("home")
    assert (home.status, home.restarts) == ("running", 0)
