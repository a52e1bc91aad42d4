"""Names of other nodes (``otp.RemoteName``: Erlang's ``{Name, Node}``) and
``otp.process_info`` of a process of another node, across two nodes
(separate OS processes on 127.0.0.1, CURVE on tcp), under both start
methods."""

from __future__ import annotations

import dist_nodes
import pytest
from helpers import down_of, recv_tagged

import otp

GHOST = "ghost@127.0.0.1"


@pytest.fixture(scope="module", params=["forkserver", "fork"])
def c(request):
    with dist_nodes.cluster(["b"], start_method=request.param) as cluster:
        yield cluster


class Counter(otp.GenServer):
    def init(self, start):
        return start

    def handle_call(self, request, from_, count):
        if request == "get":
            return otp.Reply(count, count)
        if request == "node":
            return otp.Reply(otp.node(), count)
        raise ValueError(request)

    def handle_cast(self, request, count):
        return otp.NoReply(count + request)


def collect(parent: otp.Pid, name: str) -> None:
    """Registered as ``name``: sends every message it gets back to ``parent``."""
    otp.register(name, otp.self())
    otp.send(parent, ("registered", name, otp.self()))
    while True:
        msg = otp.receive()
        if msg == "stop":
            return
        otp.send(parent, ("got", msg))


def hold(parent: otp.Pid, name: str) -> None:
    """Registered as ``name``: takes 'sync' and leaves every message before
    it queued, then waits for 'stop'."""
    otp.register(name, otp.self())
    otp.send(parent, ("registered", name, otp.self()))
    otp.receive(match=lambda m: m == "sync")
    otp.send(parent, ("synced",))
    otp.receive(match=lambda m: m == "stop")


def send_by_name_and_pid(parent: otp.Pid, target: otp.Pid, name: object, n: int) -> None:
    """From another node: messages to ``target`` alternately by name and by pid."""
    for i in range(n):
        otp.send(name if i % 2 else target, ("seq", i))
    otp.send(parent, ("sent", n))


def test_remote_name_is_a_record_not_a_tuple():
    name = otp.RemoteName("db", "b@127.0.0.1")
    assert not isinstance(name, tuple)
    assert name == otp.RemoteName("db", "b@127.0.0.1") and len({name, otp.RemoteName("db", "b@127.0.0.1")}) == 1
    for bad_node in ("", None, 3):
        with pytest.raises(ValueError):
            otp.RemoteName("db", bad_node)
    with pytest.raises(otp.StartError):
        Counter.start(0, name=name)


def test_send_to_a_name_of_another_node_in_order(c):
    b = c.name("b")
    pid = otp.spawn_opt(collect, (otp.self(), "collector"), node=b)
    recv_tagged("registered")
    name = otp.RemoteName("collector", b)
    for i in range(200):
        otp.send(name, i)
    assert [recv_tagged("got")[1] for _ in range(200)] == list(range(200))
    # By name and by pid, from one process: one order.
    otp.spawn_opt(send_by_name_and_pid, (otp.self(), pid, name, 200), node=b)
    recv_tagged("sent")
    assert [recv_tagged("got")[1] for _ in range(200)] == [("seq", i) for i in range(200)]
    otp.send(pid, "stop")


def test_send_to_a_name_nobody_holds_is_dropped(c):
    b = c.name("b")
    before = otp.rpc.call(b, otp.net_kernel.info)["names_unknown"]
    otp.send(otp.RemoteName("nobody_here", b), "lost")  # never fails
    otp.send(otp.RemoteName("x", GHOST), "lost")  # nor for a node that cannot be reached
    pid = otp.spawn_opt(collect, (otp.self(), "after"), node=b)
    recv_tagged("registered")
    otp.send(otp.RemoteName("after", b), "found")
    assert recv_tagged("got")[1] == "found"
    # The frame for the unknown name came first on the same connection.
    assert otp.rpc.call(b, otp.net_kernel.info)["names_unknown"] == before + 1
    otp.send(pid, "stop")


def test_call_cast_and_stop_by_a_name_of_another_node(c):
    b = c.name("b")
    name = otp.RemoteName("counter", b)
    pid = Counter.start(10, name="counter", node=b)
    assert otp.call(name, "node") == b
    otp.cast(name, 5)
    assert otp.call(name, "get") == 15
    assert otp.multi_call([(name, "get"), (otp.RemoteName("none", b), "get")])[0] == ("ok", 15)
    assert isinstance(otp.multi_call([(otp.RemoteName("none", b), "get")])[0][1], otp.NoProc)
    with pytest.raises(otp.NoProc):
        otp.call(otp.RemoteName("none", b), "get")
    with pytest.raises(otp.NoConnection):
        otp.call(otp.RemoteName("counter", GHOST), "get", timeout=30)
    otp.cast(otp.RemoteName("none", b), 1)  # never fails
    otp.cast(otp.RemoteName("counter", GHOST), 1)
    ref = otp.monitor(name)
    otp.stop(name)
    down = down_of(ref)
    assert down.pid == pid and down.reason == "normal"


def test_monitor_a_name_of_another_node(c):
    b = c.name("b")
    missing = otp.RemoteName("missing", b)
    down = down_of(otp.monitor(missing))
    assert (down.pid, down.reason) == (missing, "noproc")
    ghost = otp.RemoteName("x", GHOST)
    down = down_of(otp.monitor(ghost))
    assert (down.pid, down.reason) == (ghost, "noconnection")
    pid = otp.spawn_opt(collect, (otp.self(), "watched"), node=b)
    recv_tagged("registered")
    ref = otp.monitor(otp.RemoteName("watched", b))
    otp.send(pid, "stop")
    down = down_of(ref)
    assert (down.pid, down.reason) == (pid, "normal")
    # A name of this node's own name is the local name.
    otp.register("here", otp.self())
    with pytest.raises(otp.NoProc):
        otp.call(otp.RemoteName("nobody_here", otp.node()), "get")
    otp.send(otp.RemoteName("here", otp.node()), "to myself")
    assert otp.receive(10, lambda m: m == "to myself") == "to myself"
    otp.unregister("here")


def test_whereis_stays_local(c):
    b = c.name("b")
    pid = otp.spawn_opt(collect, (otp.self(), "only_there"), node=b)
    recv_tagged("registered")
    assert otp.whereis("only_there") is None
    assert otp.rpc.call(b, otp.whereis, "only_there") == pid
    otp.send(pid, "stop")


def test_a_local_name_for_a_process_of_another_node(c):
    """otp.register(name, remote_pid) (Erlang refuses it; MABEAM names its
    agents of other nodes so): found here, and gone once the holder dies
    (the registry's monitor of it, not the holder's exit hook, which knows
    its own node's registry only)."""
    b = c.name("b")
    pid = otp.spawn_opt(collect, (otp.self(), "held_there"), node=b)
    recv_tagged("registered")
    otp.register("held_here", pid)
    assert otp.whereis("held_here", cached=False) == pid
    ref = otp.monitor(pid)
    otp.exit(pid, "kill")
    assert down_of(ref).reason == "killed"
    assert otp.whereis("held_here", cached=False) is None


def test_process_info_of_a_process_of_another_node(c):
    b = c.name("b")
    pid = otp.spawn_opt(hold, (otp.self(), "held"), node=b, link=True)
    recv_tagged("registered")
    for msg in ("a", "b", "sync"):
        otp.send(pid, msg)
    recv_tagged("synced")  # "a" and "b" are in its mailbox now
    info = otp.process_info(pid)
    assert isinstance(info, otp.ProcessInfo)
    assert info.pid == pid and info.status == "waiting"
    assert info.message_queue_len == 2
    assert info.links == (otp.self(),)
    assert info.registered_name == "held"
    assert info.memory > 0
    assert otp.process_info(pid, ["message_queue_len", "registered_name"]) == {
        "message_queue_len": 2,
        "registered_name": "held",
    }
    with pytest.raises(ValueError):
        otp.process_info(pid, ["no_such_item"])
    otp.unlink(pid)
    ref = otp.monitor(pid)
    otp.send(pid, "stop")
    down_of(ref)
    assert otp.process_info(pid) is None
    with pytest.raises(otp.NoConnection):
        otp.process_info(otp.Pid(GHOST, 12345, 1, 1, 7))
