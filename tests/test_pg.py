"""Process groups (OTP's ``pg``): scopes, joining and leaving lists of pids,
monitors of a scope or a group with their join/leave notifications, and
memberships that survive a restart of the registry process."""

from __future__ import annotations

import os
import signal

import pytest
from helpers import down_of, nothing_matching, recv, recv_tagged, wait_dead
from procs import wait_forever

import otp
from otp import supervisor as sup_api


def registry_pid(node) -> otp.Pid:
    return {c.id: c.pid for c in sup_api.which_children(node.kernel)}["registry"]


def _pg_event(ref):
    return recv(lambda m: isinstance(m, (otp.registry.PgJoin, otp.registry.PgLeave)) and m.ref == ref)


def _join_and_wait(group, parent: otp.Pid, scope=None) -> None:
    otp.pg.join(group, scope=scope)
    otp.send(parent, ("joined", otp.self()))
    otp.receive()


# ------------------------------------------------------------------- scopes


def test_scopes_are_independent_namespaces(node):
    """OTP's ``pg:start_link(Scope)``, ``pg:join/3``, ``pg:get_members/2``,
    ``pg:which_groups/1``: scopes are completely independent; the scope's
    process is registered under the scope's name."""
    scope_pid = otp.pg.start_link("chat")
    assert otp.whereis("chat") == scope_pid
    a, b = otp.spawn(wait_forever), otp.spawn(wait_forever)
    otp.pg.join("room", a, scope="chat")
    otp.pg.join("room", b)  # the node's default scope
    assert otp.pg.get_members("room", scope="chat") == [a]
    assert otp.pg.get_members("room") == [b]
    assert otp.pg.get_local_members("room", scope="chat") == [a]
    assert otp.pg.which_groups(scope="chat") == ["room"]
    assert otp.pg.which_local_groups(scope="chat") == ["room"]
    assert otp.pg.leave("room", a, scope="chat") is True
    assert otp.pg.get_members("room", scope="chat") == []
    assert otp.pg.get_members("room") == [b]
    otp.exit(a, "kill")
    otp.exit(b, "kill")


def test_an_unknown_scope_is_noproc_and_a_taken_name_already_started(node):
    """OTP's pg functions on a scope nobody started exit with ``noproc``;
    ``pg:start_link`` of a scope whose name is taken is
    ``{error, {already_started, Pid}}``."""
    with pytest.raises(otp.NoProc):
        otp.pg.join("g", scope="never-started")
    with pytest.raises(otp.NoProc):
        otp.pg.get_members("g", scope="never-started")
    first = otp.pg.start_link("taken")
    with pytest.raises(otp.StartError) as info:
        otp.pg.start_link("taken")
    assert info.value.reason == ("already_started", first)
    with pytest.raises(ValueError):
        otp.pg.start_link(None)


def test_a_scope_member_leaves_when_it_exits(node):
    """OTP's pg: "If a member terminates, it is automatically removed from
    the group", in every scope."""
    otp.pg.start_link("s")
    me = otp.self()
    otp.spawn(_join_and_wait, "g", me, "s")
    member = recv_tagged("joined")[1]
    assert otp.pg.get_members("g", scope="s") == [member]
    otp.exit(member, "kill")
    wait_dead(member)
    assert otp.pg.get_members("g", scope="s") == []
    assert otp.pg.which_groups(scope="s") == []


def test_a_supervised_scope(node):
    """OTP's ``pg`` under a supervisor (``pg:start_link/1`` as a child):
    ``otp.pg.child_spec(scope)`` starts it."""
    otp.Supervisor.start_link([otp.pg.child_spec("supervised-scope")], strategy="one_for_one")
    otp.pg.join("g", scope="supervised-scope")
    assert otp.pg.get_members("g", scope="supervised-scope") == [otp.self()]


# ------------------------------------------------------------- join, leave


def test_join_and_leave_lists_of_pids(node):
    """OTP's ``pg:join(Scope, Group, PidOrPids)`` and ``pg:leave``: a list
    joins (a pid listed twice joins twice) and leaves one membership each;
    ``leave`` is ``not_joined`` (False) only when none of them was a member."""
    a, b = otp.spawn(wait_forever), otp.spawn(wait_forever)
    otp.pg.join("g", [a, b, a])
    assert sorted(otp.pg.get_members("g")) == sorted([a, a, b])
    assert otp.pg.leave("g", [a, b]) is True
    assert otp.pg.get_members("g") == [a]
    assert otp.pg.leave("g", [b]) is False
    assert otp.pg.leave("never-joined") is False
    dead = otp.spawn(lambda: None)
    wait_dead(dead)
    with pytest.raises(otp.registry.PidNotAlive):
        otp.pg.join("g", [b, dead])
    assert otp.pg.get_members("g") == [a]  # all or nothing
    with pytest.raises(otp.registry.InvalidPid):
        otp.pg.join("g", ["not a pid"])


# ----------------------------------------------------------------- monitors


def test_monitor_scope_reports_every_group(node):
    """OTP's ``pg:monitor_scope/1``: the scope's groups, then ``{Ref, join,
    Group, Pids}`` and ``{Ref, leave, Group, Pids}`` for every change."""
    a, b = otp.spawn(wait_forever), otp.spawn(wait_forever)
    otp.pg.join("x", a)
    ref, groups = otp.pg.monitor_scope()
    assert groups == {"x": [a]}
    otp.pg.join("y", [a, b])
    assert _pg_event(ref) == otp.registry.PgJoin(ref, "y", [a, b])
    otp.pg.leave("x", a)
    assert _pg_event(ref) == otp.registry.PgLeave(ref, "x", [a])
    assert otp.pg.demonitor(ref) is True


def test_monitor_one_group_and_leaves_on_exit(node):
    """OTP's ``pg:monitor/2``: the group's members, then notifications of
    that group only; a member that exits leaves once per membership, each
    notified as OTP does (``{Ref, leave, Group, [Pid]}``)."""
    me = otp.self()
    ref, members = otp.pg.monitor("watched")
    assert members == []
    otp.spawn(_join_and_wait, "watched", me)
    member = recv_tagged("joined")[1]
    assert _pg_event(ref) == otp.registry.PgJoin(ref, "watched", [member])
    otp.pg.join("watched", member)
    assert _pg_event(ref) == otp.registry.PgJoin(ref, "watched", [member])
    otp.pg.join("other", member)  # another group: not notified
    os.kill(member.ospid, signal.SIGKILL)
    assert _pg_event(ref) == otp.registry.PgLeave(ref, "watched", [member])
    assert _pg_event(ref) == otp.registry.PgLeave(ref, "watched", [member])
    ref2, members = otp.pg.monitor("other")
    assert members == []  # the dead member left "other" too
    assert nothing_matching(lambda m: isinstance(m, otp.registry.PgJoin) and m.group == "other")
    otp.pg.demonitor(ref2)


def test_demonitor_flushes_and_is_false_for_an_unknown_ref(node):
    """OTP's ``pg:demonitor/2``: ``ok`` and the monitor's notifications
    already queued are flushed; ``false`` for a ref that is no monitor."""
    ref, _ = otp.pg.monitor_scope()
    a = otp.spawn(wait_forever)
    for i in range(5):
        otp.pg.join(("g", i), a)
    assert otp.pg.demonitor(ref) is True
    assert nothing_matching(lambda m: isinstance(m, (otp.registry.PgJoin, otp.registry.PgLeave)), timeout=0)
    otp.pg.join("after", a)
    # The scope's messages to us keep their order: a notification of ref
    # for "after" would come before this one.
    later, _ = otp.pg.monitor("later")
    otp.pg.join("later", a)
    assert _pg_event(later) == otp.registry.PgJoin(later, "later", [a])
    assert nothing_matching(lambda m: isinstance(m, otp.registry.PgJoin) and m.ref == ref, timeout=0)
    assert otp.pg.demonitor(ref) is False
    assert otp.pg.demonitor(otp.make_ref()) is False


def _monitor_then_report(parent: otp.Pid) -> None:
    ref, _ = otp.pg.monitor("g")
    otp.send(parent, ("monitoring", ref))
    otp.receive()


def test_a_monitor_ends_with_its_process(node):
    """OTP's pg monitors the process that called ``monitor`` and drops its
    subscription when it exits."""
    me = otp.self()
    watcher = otp.spawn(_monitor_then_report, me)
    recv_tagged("monitoring")
    assert otp.registry_health()["pg_monitors"] == 1
    ref = otp.monitor(watcher)
    otp.exit(watcher, "kill")
    down_of(ref)
    for _ in range(10_000):  # each a round trip: the registry takes the DOWN in between
        if otp.registry_health()["pg_monitors"] == 0:
            break
    assert otp.registry_health()["pg_monitors"] == 0
    otp.pg.join("g")  # nobody to notify


def _join_leave_on_demand(group) -> None:
    while True:
        msg = otp.receive()
        if msg == "join":
            otp.pg.join(group)
        elif msg == "leave":
            otp.pg.leave(group)
        else:
            return


def test_a_notified_change_is_in_get_members(node):
    """OTP's pg writes its table before it notifies: a process that took a
    PgJoin or PgLeave finds the change in get_members, also when it reads
    from its replica (a reader that reads often)."""
    ref, _ = otp.pg.monitor("g")
    for _ in range(20):  # hot: get_members reads the replica
        otp.pg.get_members("g")
    other = otp.spawn(_join_leave_on_demand, "g")
    for _ in range(30):
        otp.send(other, "join")
        recv(lambda m: isinstance(m, otp.registry.PgJoin) and m.ref == ref)
        assert otp.pg.get_members("g") == [other]
        otp.send(other, "leave")
        recv(lambda m: isinstance(m, otp.registry.PgLeave) and m.ref == ref)
        assert otp.pg.get_members("g") == []
    otp.send(other, "stop")


# ------------------------------------------------------------------ restart


def test_memberships_survive_a_registry_restart(node):
    """OTP keeps no memberships when a scope restarts; here the node's
    default scope keeps them in the registry's sqlite file, as names are
    kept: live members (with their repeats) are back after a SIGKILL of the
    registry, members that died meanwhile are gone, and the successor
    watches the survivors (their exit is a leave)."""
    alive, doomed = otp.spawn(wait_forever), otp.spawn(wait_forever)
    otp.pg.join("g", [alive, doomed, alive])
    otp.pg.join(("h", 1), alive)
    reg = registry_pid(node)
    down = otp.monitor(reg)
    os.kill(reg.ospid, signal.SIGKILL)
    os.kill(doomed.ospid, signal.SIGKILL)  # dies while there is no registry
    assert down_of(down).reason == "killed"
    assert otp.pg.get_members("g") == [alive, alive]  # served by the successor
    assert registry_pid(node) != reg
    assert sorted(otp.pg.which_groups(), key=repr) == sorted(["g", ("h", 1)], key=repr)
    ref, members = otp.pg.monitor("g")
    assert members == [alive, alive]
    assert otp.registry_health()["pg_memberships"] == 3
    otp.exit(alive, "kill")
    assert _pg_event(ref) == otp.registry.PgLeave(ref, "g", [alive])
    assert _pg_event(ref) == otp.registry.PgLeave(ref, "g", [alive])
    assert otp.pg.which_groups() == []


def test_a_memory_backed_node_forgets_memberships_on_restart():
    """OTP's pg: "Local membership is not preserved if scope process exits
    and restarts", which the memory backend keeps."""
    with otp.Node(registry_backend="memory") as node:
        pid = otp.spawn(wait_forever)
        otp.pg.join("g", pid)
        reg = registry_pid(node)
        down = otp.monitor(reg)
        os.kill(reg.ospid, signal.SIGKILL)
        down_of(down)
        assert otp.pg.get_members("g") == []
        otp.exit(pid, "kill")


def test_a_scope_with_the_sqlite_backend_keeps_memberships(node, tmp_path):
    """OTP's ``pg:start_link(Scope)`` under a supervisor, restarted after a
    kill; given ``backend=('sqlite', path)`` it keeps its live memberships."""
    otp.trap_exit(True)
    spec = otp.pg.child_spec("durable", backend=("sqlite", str(tmp_path / "durable.db")))
    sup = otp.Supervisor.start_link([spec], strategy="one_for_one")
    member = otp.spawn(wait_forever)
    otp.pg.join("g", [member, member], scope="durable")
    old = otp.whereis("durable")
    sup_api.subscribe(sup)
    os.kill(old.ospid, signal.SIGKILL)
    started = recv(lambda m: type(m) is tuple and m[0] == "$supervisor" and m[2] == "started")
    assert started[4] != old and otp.whereis("durable") == started[4]
    assert otp.pg.get_members("g", scope="durable") == [member, member]
    otp.exit(member, "kill")
