"""Process groups across nodes (OTP's pg over distribution): a scope spans
every connected node that runs it; joins, leaves and exits on one node are
seen by get_members and monitors on the others; a node's members leave at
its nodedown; a disconnect and reconnect syncs again; a node without the
scope is ignored.  Every wait is on a message (pg monitors' PgJoin and
PgLeave, replies of remote processes), never a sleep."""

from __future__ import annotations

import dist_nodes
import pytest
from helpers import down_of, recv, recv_tagged
from procs import wait_forever

import otp
from otp.registry import PgJoin, PgLeave, PidNotLocal

TIMEOUT = 30.0


# ------------------------------------------------------------ remote helpers


def member(parent: otp.Pid, group, scope=None) -> None:
    """Join ``group``, say so, then obey: ('leave',) leaves, ('join',)
    joins again, 'exit' ends."""
    otp.pg.join(group, scope=scope)
    otp.send(parent, ("joined", otp.self()))
    while True:
        msg = otp.receive()
        if msg == "exit":
            return
        if msg == ("leave",):
            otp.pg.leave(group, scope=scope)
            otp.send(parent, ("left", otp.self()))
        elif msg == ("join",):
            otp.pg.join(group, scope=scope)
            otp.send(parent, ("joined", otp.self()))


def watcher(parent: otp.Pid, group, scope=None) -> None:
    """Monitor ``group`` on this node and forward every event to ``parent``
    as ('pg', node, 'join'|'leave', group, pids)."""
    ref, members = otp.pg.monitor(group, scope=scope)
    otp.send(parent, ("watching", otp.self(), members))
    while True:
        msg = otp.receive()
        if isinstance(msg, (PgJoin, PgLeave)) and msg.ref == ref:
            kind = "join" if isinstance(msg, PgJoin) else "leave"
            otp.send(parent, ("pg", otp.node(), kind, msg.group, msg.pids))
        elif msg == ("members",):
            otp.send(parent, ("members", otp.pg.get_members(group, scope=scope)))


def scope_owner(parent: otp.Pid, scope) -> None:
    otp.pg.start_link(scope)
    otp.send(parent, ("scope", otp.self()))
    otp.receive()


def start_member(node: str, group, scope=None) -> otp.Pid:
    pid = otp.spawn_opt(member, (otp.self(), group, scope), node=node)
    assert recv_tagged("joined", TIMEOUT)[1] == pid
    return pid


def start_watcher(node: str, group, scope=None) -> tuple[otp.Pid, list]:
    pid = otp.spawn_opt(watcher, (otp.self(), group, scope), node=node)
    _, who, members = recv_tagged("watching", TIMEOUT)
    assert who == pid
    return pid, members


def pg_event(ref, kind=None, pids=None):
    """The next PgJoin or PgLeave of the monitor ``ref`` (of ``kind``, for
    ``pids``)."""
    kinds = (PgJoin, PgLeave) if kind is None else (kind,)
    return recv(lambda m: isinstance(m, kinds) and m.ref == ref and (pids is None or m.pids == pids), TIMEOUT)


def remote_event(node: str, kind: str, group):
    return recv(lambda m: type(m) is tuple and m[:4] == ("pg", node, kind, group), TIMEOUT)


def wait_members(ref, group, expected: set, scope=None) -> None:
    """Take the monitor's events until get_members(group) is ``expected``
    (as a set): each check follows an event, never a timer."""
    while set(otp.pg.get_members(group, scope=scope)) != expected:
        pg_event(ref)


# ------------------------------------------------------------------ tests


def test_a_join_on_one_node_is_seen_on_the_other():
    with dist_nodes.cluster(["b"]) as c:
        b = c.name("b")
        ref, members = otp.pg.monitor("workers")
        assert members == []
        remote = start_member(b, "workers")
        event = pg_event(ref)
        assert isinstance(event, PgJoin) and event.group == "workers" and event.pids == [remote]
        assert otp.pg.get_members("workers") == [remote]
        assert otp.pg.get_local_members("workers") == []
        assert otp.pg.which_groups() == ["workers"]
        assert otp.pg.which_local_groups() == []

        # And the other way: a local join is seen by a monitor on b.
        _, seen = start_watcher(b, "workers")
        assert seen == [remote]
        local = otp.spawn(_join_and_wait, "workers", otp.self())
        recv_tagged("joined_here", TIMEOUT)
        assert remote_event(b, "join", "workers")[4] == [local]
        assert pg_event(ref).pids == [local]
        assert set(otp.pg.get_members("workers")) == {remote, local}
        assert otp.pg.get_local_members("workers") == [local]
        assert otp.pg.which_local_groups() == ["workers"]
        otp.exit(local, "kill")
        assert remote_event(b, "leave", "workers")[4] == [local]


def _join_and_wait(group, parent: otp.Pid, scope=None) -> None:
    otp.pg.join(group, scope=scope)
    otp.send(parent, ("joined_here", otp.self()))
    otp.receive()


def test_leave_and_exit_on_another_node_reach_monitors_here():
    with dist_nodes.cluster(["b"]) as c:
        b = c.name("b")
        ref, _ = otp.pg.monitor_scope()
        one, two = start_member(b, "g"), start_member(b, "g")
        wait_members(ref, "g", {one, two})
        otp.send(one, ("leave",))
        recv_tagged("left", TIMEOUT)
        event = pg_event(ref, PgLeave)
        assert (event.group, event.pids) == ("g", [one])
        assert otp.pg.get_members("g") == [two]
        mref = otp.monitor(two)
        otp.send(two, "exit")
        down_of(mref, TIMEOUT)
        event = pg_event(ref, PgLeave)
        assert (event.group, event.pids) == ("g", [two])
        assert otp.pg.get_members("g") == []
        assert otp.pg.which_groups() == []


def test_members_of_a_killed_node_leave_at_its_nodedown():
    with dist_nodes.cluster(["b", "c"]) as cl:
        b, c = cl.name("b"), cl.name("c")
        assert otp.rpc.call(c, otp.connect_node, b, timeout=TIMEOUT)  # pg spans connected nodes
        ref, _ = otp.pg.monitor("g")
        _, seen = start_watcher(c, "g")
        on_b = [start_member(b, "g"), start_member(b, "g")]
        on_c = start_member(c, "g")
        wait_members(ref, "g", {*on_b, on_c})
        seen_on_c = set(seen)
        while seen_on_c != {*on_b, on_c}:  # c sees b's members too
            seen_on_c.update(recv(lambda m: type(m) is tuple and m[:3] == ("pg", c, "join"), TIMEOUT)[4])
        otp.net_kernel.monitor_nodes(True)
        try:
            cl.remote["b"].kill()
            recv(lambda m: isinstance(m, otp.NodeDown) and m.node == b, TIMEOUT)
            left = []
            while len(left) < 2:
                event = pg_event(ref, PgLeave)
                left += event.pids
            assert sorted(left) == sorted(on_b)
            assert otp.pg.get_members("g") == [on_c]
            # c dropped them too
            gone = []
            while len(gone) < 2:
                gone += remote_event(c, "leave", "g")[4]
            assert sorted(gone) == sorted(on_b)
        finally:
            otp.net_kernel.monitor_nodes(False)


def test_a_disconnect_and_reconnect_sync_again():
    with dist_nodes.cluster(["b"]) as c:
        b = c.name("b")
        ref, _ = otp.pg.monitor("g")
        remote = start_member(b, "g")
        pg_event(ref, PgJoin, [remote])
        start_watcher(b, "g")
        local = otp.spawn(_join_and_wait, "g", otp.self())
        recv_tagged("joined_here", TIMEOUT)
        assert remote_event(b, "join", "g")[4] == [local]
        pg_event(ref, PgJoin, [local])
        assert otp.disconnect_node(b)
        pg_event(ref, PgLeave, [remote])
        assert otp.pg.get_members("g") == [local]
        assert otp.connect_node(b, timeout=TIMEOUT)
        pg_event(ref, PgJoin, [remote])
        assert set(otp.pg.get_members("g")) == {remote, local}
        assert remote_event(b, "join", "g")[4] == [local]  # b dropped ours, then synced again
        otp.exit(local, "kill")


def test_a_scope_on_one_node_only_is_local_until_the_other_starts_it():
    with dist_nodes.cluster(["b"]) as c:
        b = c.name("b")
        otp.pg.start_link("chat")
        ref, _ = otp.pg.monitor("room", scope="chat")
        here = otp.spawn(_join_and_wait, "room", otp.self(), "chat")
        recv_tagged("joined_here", TIMEOUT)
        assert pg_event(ref).pids == [here]
        # b has no scope "chat": its default scope's members are not chat's
        start_member(b, "room")
        assert otp.pg.get_members("room", scope="chat") == [here]
        owner = otp.spawn_opt(scope_owner, (otp.self(), "chat"), node=b)
        recv_tagged("scope", TIMEOUT)
        there = start_member(b, "room", "chat")
        event = pg_event(ref, PgJoin)
        assert event.pids == [there]
        assert set(otp.pg.get_members("room", scope="chat")) == {here, there}
        assert otp.pg.get_local_members("room", scope="chat") == [here]
        # The scope on b stops (its owner is killed): its members leave here.
        otp.exit(owner, "kill")
        assert pg_event(ref, PgLeave).pids == [there]
        assert otp.pg.get_members("room", scope="chat") == [here]
        otp.exit(here, "kill")


def test_joining_a_process_of_another_node_is_refused():
    with dist_nodes.cluster(["b"]) as c:
        remote = otp.spawn_opt(wait_forever, node=c.name("b"))
        with pytest.raises(PidNotLocal):
            otp.pg.join("g", remote)
        with pytest.raises(PidNotLocal):
            otp.pg.leave("g", remote)
        assert otp.pg.get_members("g") == []
        otp.exit(remote, "kill")


def test_a_node_that_does_not_listen_has_no_pg_process(node):
    assert otp.whereis(("$pg",)) is None
    otp.pg.start_link("chat")
    assert otp.whereis(("$pg", "chat")) is None
    otp.pg.join("g")
    assert otp.pg.get_local_members("g") == otp.pg.get_members("g") == [otp.self()]
    otp.pg.leave("g")
