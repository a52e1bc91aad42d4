"""Messages, calls, spawns and rpc across two nodes (separate OS processes
on 127.0.0.1, CURVE on tcp), under both start methods."""

from __future__ import annotations

import dist_nodes
import pytest
from helpers import down_of, recv_tagged
from procs import crash, echo, relay, send_then_exit

import otp


@pytest.fixture(scope="module", params=["forkserver", "fork"])
def c(request):
    with dist_nodes.cluster(["b"], start_method=request.param) as cluster:
        yield cluster


class Counter(otp.GenServer):
    def init(self, start):
        return start

    def handle_call(self, request, from_, count):
        if request == "node":
            return otp.Reply(otp.node(), count)
        if request == "get":
            return otp.Reply(count, count)
        raise ValueError(request)

    def handle_cast(self, request, count):
        return otp.NoReply(count + request)


def where_am_i(parent: otp.Pid) -> None:
    otp.send(parent, ("here", otp.node(), otp.node(otp.self()), otp.self()))


def call_back(server: otp.Pid, parent: otp.Pid) -> None:
    otp.send(parent, ("answer", otp.call(server, "get")))


def divide(a: int, b: int) -> float:
    return a / b


def test_node_names(c):
    b = c.name("b")
    assert otp.node() == dist_nodes.LOCAL
    assert otp.nodes() == [b]
    assert otp.connect_node(b) is True
    pid = otp.spawn_opt(where_am_i, (otp.self(),), node=b)
    _, there, of_self, self_pid = recv_tagged("here")
    assert there == of_self == b == otp.node(pid) == self_pid.node
    assert self_pid == pid
    assert pid.creation not in (0, otp.self().creation)  # each node start has its own incarnation


def test_send_both_ways(c):
    pid = otp.spawn_opt(echo, node=c.name("b"))
    for i in range(100):
        otp.send(pid, (otp.self(), i))
    assert [recv_tagged("echo")[1] for _ in range(100)] == list(range(100))
    otp.send(pid, "stop")


def test_messages_then_exit_signal_in_order(c):
    """A remote process's messages all come before its exit's DOWN (and
    before the EXIT of a link), as on one node."""
    otp.trap_exit(True)
    try:
        pid, ref = otp.spawn_opt(send_then_exit, (otp.self(), 300, "done"), node=c.name("b"), monitor=True)
        got = []
        while True:
            m = otp.receive(10, lambda m: (isinstance(m, tuple) and m[:1] == ("seq",)) or isinstance(m, otp.DOWN))
            if isinstance(m, otp.DOWN):
                assert m.ref == ref and m.reason == "done"
                break
            got.append(m[1])
        assert got == list(range(300))
    finally:
        otp.trap_exit(False)


def test_call_and_cast_a_remote_gen_server(c):
    b = c.name("b")
    server = Counter.start(10, node=b)
    assert server.node == b
    otp.cast(server, 5)
    assert otp.call(server, "get") == 15
    assert otp.call(server, "node") == b
    with pytest.raises(otp.CalleeExit):
        otp.call(server, "boom")  # the server crashes on it: the caller learns at once


def test_remote_process_calls_back(c):
    server = Counter.start(3)
    otp.spawn_opt(call_back, (server, otp.self()), node=c.name("b"))
    assert recv_tagged("answer")[1] == 3
    otp.stop(server)


def test_named_server_on_another_node(c):
    b = c.name("b")
    Counter.start(1, node=b, name="remote_counter")
    pid = otp.rpc.call(b, otp.whereis, "remote_counter")
    assert pid is not None and pid.node == b
    assert otp.call(pid, "get") == 1
    otp.stop(pid)


def test_spawn_link_and_monitor_remote(c):
    b = c.name("b")
    otp.trap_exit(True)
    try:
        pid = otp.spawn_opt(crash, ("remote boom",), node=b, link=True)
        m = otp.receive(10, lambda m: isinstance(m, otp.EXIT) and m.pid == pid)
        assert isinstance(m.reason, otp.Crash) and "remote boom" in m.reason.message
        pid, ref = otp.spawn_opt(crash, ("again",), node=b, monitor=True)
        assert "again" in down_of(ref).reason.message
    finally:
        otp.trap_exit(False)


def test_relay_sees_our_exit_signal(c):
    pid = otp.spawn_opt(relay, (otp.self(), True), node=c.name("b"))
    assert recv_tagged("ready")[1] == pid
    otp.send(pid, "first")
    otp.exit(pid, "go away")
    assert recv_tagged("got")[2] == "first"
    assert recv_tagged("got")[2] == otp.EXIT(otp.self(), "go away")
    ref = otp.monitor(pid)
    otp.exit(pid, "kill")
    assert down_of(ref).reason == "killed"


def test_is_alive_remote(c):
    pid = otp.spawn_opt(echo, node=c.name("b"))
    assert otp.is_alive(pid)
    ref = otp.monitor(pid)
    otp.send(pid, "stop")
    down_of(ref)
    assert not otp.is_alive(pid)


def test_rpc_three_ways(c):
    b = c.name("b")
    assert otp.rpc.call(b, divide, 6, 3) == 2
    assert otp.rpc.call(b, otp.node) == b
    with pytest.raises(ZeroDivisionError) as info:
        otp.rpc.call(b, divide, 1, 0)
    assert any(b in note for note in getattr(info.value, "__notes__", []))
    with pytest.raises(otp.CallTimeout):
        otp.rpc.call(b, otp.receive, timeout=0.5)
    results = otp.rpc.multicall([b, otp.node()], divide, 1, 1)
    assert results == [("ok", 1.0), ("ok", 1.0)]


def test_monitor_remote_process_already_gone(c):
    pid = otp.spawn_opt(echo, node=c.name("b"))
    ref = otp.monitor(pid)
    otp.send(pid, "stop")
    assert down_of(ref).reason == "normal"
    assert down_of(otp.monitor(pid)).reason == "noproc"
    otp.trap_exit(True)
    try:
        otp.link(pid)
        assert otp.receive(10, lambda m: isinstance(m, otp.EXIT) and m.pid == pid).reason == "noproc"
    finally:
        otp.trap_exit(False)


def test_a_signal_is_never_overtaken_by_a_later_message(c):
    """A monitor, then the message that makes the target exit: the monitor
    is in place first, so its DOWN says 'normal', never 'noproc' (a signal
    and a message take two ways to the gateway)."""
    for _ in range(20):
        pid = otp.spawn_opt(echo, node=c.name("b"))
        ref = otp.monitor(pid)
        otp.send(pid, "stop")
        assert down_of(ref).reason == "normal"
