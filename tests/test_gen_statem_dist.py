"""A gen_statem started on another node (``GenStatem.start(node=)``), as a
gen_server can be: registered there, reached by its name, stopped; a node
that cannot be reached fails the start.  Two nodes (separate OS processes
on 127.0.0.1), under both start methods."""

from __future__ import annotations

import dist_nodes
import pytest
from helpers import down_of, exit_of

import otp


class Switch(otp.GenStatem):
    """'off' or 'on'; the cast 'flip' switches, the call 'where' answers
    ``(node, state)``."""

    callback_mode = "handle_event_function"

    def init(self, args):
        return "off", None

    def handle_event(self, event_type, content, state, data):
        if isinstance(event_type, otp.Call) and content == "where":
            return otp.KeepStateAndData([otp.ReplyTo(event_type.from_, (otp.node(), state))])
        if event_type == otp.EventType.CAST and content == "flip":
            return otp.NextState("on" if state == "off" else "off", data)
        return otp.KeepStateAndData()


@pytest.fixture(scope="module", params=["forkserver", "fork"])
def c(request):
    """This node and the node b."""
    with dist_nodes.cluster(["b"], start_method=request.param) as cluster:
        yield cluster


def test_a_state_machine_started_on_another_node(c):
    b = c.name("b")
    pid = Switch.start(None, name="switch", node=b)
    assert pid.node == b
    name = otp.RemoteName("switch", b)
    otp.cast(name, "flip")
    assert otp.call(name, "where") == (b, "on")
    ref = otp.monitor(pid)
    otp.stop(name)
    assert down_of(ref).reason == "normal"


def test_a_linked_state_machine_on_another_node_and_one_on_no_node(c):
    otp.trap_exit(True)
    try:
        pid = Switch.start_link(None, node=c.name("b"))
        assert otp.call(pid, "where") == (c.name("b"), "off")
        otp.exit(pid, "shutdown")
        assert exit_of(pid).reason == "shutdown"
    finally:
        otp.trap_exit(False)
    with pytest.raises(otp.StartError) as info:
        Switch.start(None, node="ghost@127.0.0.1", timeout=30)
    assert info.value.reason == "noconnection"
