"""Supervisors with children on other nodes (separate OS processes on
127.0.0.1, CURVE on tcp), under both start methods: a child spec's
``node``, ``DynamicSupervisor.start_child(sup, spec, node=)``, restarts
after a kill of the child and after the loss of its whole node."""

from __future__ import annotations

import os
import signal

import dist_nodes
import pytest
from helpers import down_of, recv

import otp


@pytest.fixture(params=["forkserver", "fork"])
def method(request):
    return request.param


class Worker(otp.GenServer):
    def handle_call(self, request, from_, state):
        if request == "node":
            return otp.Reply(otp.node(), state)
        raise ValueError(request)


def sup_event(sup: otp.Pid, event: str, child_id=None):
    """The next ``('$supervisor', sup, event, id, ...)`` event of ``sup``."""
    return recv(
        lambda m: (
            isinstance(m, tuple)
            and len(m) >= 4
            and m[:3] == ("$supervisor", sup, event)
            and (child_id is None or m[3] == child_id)
        ),
        timeout=60,
    )


def test_a_child_spec_names_its_node():
    spec = otp.child_spec("w", start=(Worker.start_link, ()), node="b@127.0.0.1")
    assert spec.node == "b@127.0.0.1"
    assert otp.child_spec("w", start=(Worker.start_link, ())).node is None
    assert Worker.child_spec(id="w", node="b@127.0.0.1").node == "b@127.0.0.1"
    for bad in ("", 3, b"b@127.0.0.1"):
        with pytest.raises(otp.SupervisorError) as info:
            otp.child_spec("w", start=(Worker.start_link, ()), node=bad)
        assert info.value.reason == ("invalid_node", bad)


def test_a_child_on_another_node_is_restarted_there(method):
    with dist_nodes.cluster(["b"], start_method=method) as c:
        b = c.name("b")
        sup = otp.Supervisor.start_link(
            [Worker.child_spec(id="local"), Worker.child_spec(id="remote", node=b)], intensity=3, period=60
        )
        try:
            otp.supervisor.subscribe(sup)
            children = {info.id: info for info in otp.supervisor.which_children(sup)}
            old = children["remote"].pid
            assert isinstance(old, otp.Pid) and old.node == b
            assert children["local"].pid.node == otp.node()
            assert otp.call(old, "node") == b
            assert otp.supervisor.count_children(sup)["active"] == 2
            assert otp.supervisor.get_childspec(sup, "remote").node == b
            os.kill(old.ospid, signal.SIGKILL)
            assert sup_event(sup, "exited", "remote")[4:] == (old, "killed")
            new = sup_event(sup, "started", "remote")[4]
            assert new != old and new.node == b
            assert otp.call(new, "node") == b
            children = {info.id: info for info in otp.supervisor.which_children(sup)}
            assert children["remote"].pid == new
        finally:
            ref = otp.monitor(new if "new" in locals() else sup)
            otp.unlink(sup)
            otp.stop(sup, "shutdown")
        # The supervisor's shutdown reaches its child on the other node.
        assert down_of(ref).reason in ("shutdown", "noproc")


def test_a_child_lost_with_its_node_is_restarted_by_the_usual_rules(method):
    """The child's node is SIGKILLed: its exit is 'noconnection', counted as
    a restart; the restart on the node that is gone fails (its connection
    cannot be set up) and is retried through the supervisor's mailbox, each
    attempt counted, until the intensity is exceeded: the supervisor then
    stops its other children and exits with 'shutdown'."""
    with dist_nodes.cluster(["b"], start_method=method) as c:
        b = c.name("b")
        sup = otp.Supervisor.start(
            [Worker.child_spec(id="local"), Worker.child_spec(id="remote", node=b)], intensity=1, period=600
        )
        sup_ref = otp.monitor(sup)
        otp.supervisor.subscribe(sup)
        children = {info.id: info.pid for info in otp.supervisor.which_children(sup)}
        local_ref = otp.monitor(children["local"])
        c.remote["b"].kill()
        assert sup_event(sup, "exited", "remote")[4:] == (children["remote"], "noconnection")
        assert down_of(sup_ref, timeout=60).reason == "shutdown"
        assert down_of(local_ref).reason == "shutdown"


def test_a_dynamic_supervisor_starts_and_stops_a_child_on_another_node(method):
    with dist_nodes.cluster(["b"], start_method=method) as c:
        b = c.name("b")
        sup = otp.DynamicSupervisor.start_link(intensity=3, period=60)
        try:
            here = otp.DynamicSupervisor.start_child(sup, Worker.child_spec())
            there = otp.DynamicSupervisor.start_child(sup, Worker.child_spec(), node=b)
            assert here.node == otp.node() and there.node == b
            assert otp.call(there, "node") == b
            assert {info.pid for info in otp.DynamicSupervisor.which_children(sup)} == {here, there}
            assert otp.DynamicSupervisor.count_children(sup)["active"] == 2
            assert otp.supervisor.get_childspec(sup, there).node == b
            ref = otp.monitor(there)
            otp.DynamicSupervisor.terminate_child(sup, there)
            assert down_of(ref).reason == "shutdown"
            assert [info.pid for info in otp.supervisor.which_children(sup)] == [here]
            # A supervisor as a child on another node, its own children there.
            sub = otp.DynamicSupervisor.start_child(
                sup, otp.Supervisor.child_spec([Worker.child_spec(id="w")], id="sub"), node=b
            )
            assert sub.node == b
            [grandchild] = otp.supervisor.which_children(sub)
            assert grandchild.id == "w" and grandchild.pid.node == b
            with pytest.raises(otp.SupervisorError) as info:
                otp.DynamicSupervisor.start_child(sup, Worker.child_spec(), node=3)
            assert info.value.reason == ("invalid_node", 3)
        finally:
            otp.unlink(sup)
            otp.stop(sup, "shutdown")


def test_a_child_cut_off_is_restarted_and_its_old_copy_is_gone(method):
    """The connection is taken down (the node lives on): the supervisor
    hears 'noconnection' and restarts the child on that node (connecting
    again); the old child got 'noconnection' through the link and exited,
    so only the new one runs."""
    with dist_nodes.cluster(["b"], start_method=method) as c:
        b = c.name("b")
        sup = otp.Supervisor.start_link([Worker.child_spec(id="remote", node=b)], intensity=3, period=60)
        try:
            otp.supervisor.subscribe(sup)
            [info] = otp.supervisor.which_children(sup)
            old = info.pid
            assert otp.disconnect_node(b) is True
            assert sup_event(sup, "exited", "remote")[4:] == (old, "noconnection")
            new = sup_event(sup, "started", "remote")[4]
            assert new.node == b and new != old
            assert otp.call(new, "node") == b
            assert down_of(otp.monitor(old)).reason in ("noproc", "noconnection")
            assert otp.rpc.call(b, otp.is_alive, new) is True
        finally:
            otp.unlink(sup)
            otp.stop(sup, "shutdown")
