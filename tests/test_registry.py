"""The registry process: names, keyed registries (unique and duplicate keys,
dispatch), process groups, replicas, and recovery after the registry is
killed."""

from __future__ import annotations

import contextvars
import functools
import os
import signal
import threading

import pytest
from helpers import down_of, exit_of, recv_tagged, wait_dead
from procs import Echo, relay, wait_forever

import otp
from otp import supervisor as sup_api
from otp.registry._protocol import stamp_path
from otp.registry._server import endpoints


def registry_pid(node):
    return {c.id: c.pid for c in sup_api.which_children(node.kernel)}["registry"]


# -------------------------------------------------------------------- names


def test_register_whereis_unregister(node):
    pid = otp.spawn(wait_forever)
    otp.register("worker", pid)
    assert otp.whereis("worker") == pid
    assert "worker" in otp.registered()
    otp.unregister("worker")
    otp.unregister("worker")  # idempotent
    assert otp.whereis("worker") is None
    assert otp.whereis("never") is None


def test_uncached_and_batched_lookups_follow_every_change(node):
    """whereis(cached=False) and whereis_many ask the registry process, whose
    lookup cache must never answer with a stale or dead holder."""
    a, b = otp.spawn(wait_forever), otp.spawn(wait_forever)
    otp.register("svc", a)
    assert otp.whereis("svc", cached=False) == a
    assert otp.whereis_many(["svc", "none", "svc"]) == [a, None, a]
    otp.unregister("svc")
    assert otp.whereis("svc", cached=False) is None
    otp.register("svc", b)
    assert otp.whereis_many(["svc"]) == [b]
    ref = otp.monitor(b)
    os.kill(b.ospid, signal.SIGKILL)
    down_of(ref)
    assert otp.whereis("svc", cached=False) is None
    assert otp.whereis_many(["svc"] * 40) == [None] * 40  # more than one frame in flight
    with pytest.raises(otp.registry.InvalidKey):
        otp.whereis_many(["ok", ["unhashable list"]])
    otp.exit(a, "kill")


def test_name_clash_and_one_name_per_process(node):
    a, b = otp.spawn(wait_forever), otp.spawn(wait_forever)
    otp.register("n", a)
    with pytest.raises(otp.AlreadyRegistered):
        otp.register("n", b)
    with pytest.raises(otp.AlreadyRegistered):
        otp.register("other", a)  # Erlang: a process has at most one name


def test_register_dead_pid_is_refused(node):
    pid = otp.spawn(lambda: None)
    wait_dead(pid)
    with pytest.raises(otp.registry.PidNotAlive):
        otp.register("ghost", pid)


def test_a_name_works_wherever_a_pid_does(node):
    me = otp.self()
    relay_pid = otp.spawn(relay, me)
    recv_tagged("ready")
    otp.register("relay", relay_pid)
    otp.send("relay", "by name")
    assert recv_tagged("got") == ("got", relay_pid, "by name")
    Echo.start_link(None, name="echo")
    assert otp.call("echo", "hello") == "hello"
    otp.cast("echo", "state2")
    assert otp.call("echo", "state") == "state2"
    ref = otp.monitor("relay")
    otp.trap_exit(True)
    otp.link("relay")
    otp.exit("relay", "kill")
    assert down_of(ref).reason == "killed"
    assert exit_of(relay_pid).reason == "killed"


def test_send_to_unregistered_name_raises_noproc(node):
    with pytest.raises(otp.NoProc):
        otp.send("nobody", "x")
    with pytest.raises(otp.NoProc):
        otp.call("nobody", "x")
    otp.cast("nobody", "x")  # a cast never fails, even to a name nobody has
    ref = otp.monitor("nobody")
    assert down_of(ref).reason == "noproc"


def test_name_disappears_when_process_is_killed(node):
    pid = otp.spawn(wait_forever)
    otp.register("victim", pid)
    ref = otp.monitor(pid)
    os.kill(pid.ospid, signal.SIGKILL)
    down_of(ref)
    assert otp.whereis("victim") is None  # we saw it die: we never get it back


def test_name_disappears_before_others_see_a_deliberate_exit(node):
    for i in range(5):
        pid = otp.spawn(wait_forever)
        otp.register(("deliberate", i), pid)
        ref = otp.monitor(pid)
        otp.exit(pid, "shutdown")
        down_of(ref)
        # Through the ROUTER, not a replica: the registry already dropped it.
        assert otp.registry._names._node_client().request("whereis", ("deliberate", i)) is None


def test_gen_server_names(node):
    s = Echo.start_link(None, name="svc")
    assert otp.whereis("svc") == s
    with pytest.raises(otp.StartError) as info:
        Echo.start_link(None, name="svc")
    assert info.value.reason == ("already_started", s)
    otp.stop("svc")
    assert otp.whereis("svc") is None
    s2 = Echo.start_link(None, name="svc")  # free again at once
    assert otp.whereis("svc") == s2


def test_failed_init_releases_the_name_before_the_starter_hears(node):
    from procs import FailingInit

    for _ in range(3):
        with pytest.raises(otp.StartError):
            FailingInit.start_link("raise", name="flaky")
        assert otp.whereis("flaky") is None


# ---------------------------------------------------------------- replicas


def test_replica_reads_your_writes_and_sees_others(node):
    pids = [otp.spawn(wait_forever) for _ in range(3)]
    for _ in range(20):  # enough lookups to switch this process to its replica
        otp.whereis("warm-up")
    assert otp.registry._names._node_client().replica is not None
    otp.register("mine", pids[0])
    assert otp.whereis("mine") == pids[0]  # our own write, at once
    me = otp.self()

    def other_registers(target):
        otp.register("theirs", target)
        otp.send(me, "done")

    otp.spawn(other_registers, pids[1])
    otp.receive(10, lambda m: m == "done")
    # Another process's change: the replica catches up on its next refresh.
    otp.registry._names._node_client().replica.refresh()
    assert otp.whereis("theirs") == pids[1]
    otp.exit(pids[1], "kill")
    wait_dead(pids[1])
    assert otp.whereis("theirs") is None


def hot_path_armed() -> bool:
    """True if otp.whereis answers from memory now (white box: see
    otp.registry._names)."""
    names = otp.registry._names
    return names._hot_word == names._hot_stamp


def arm_hot_path() -> None:
    """Make otp.whereis answer from memory: a replica that has every change
    the registry has made (waiting on its change feed for those on their
    way), then a lookup that refreshes it."""
    for _ in range(otp.registry._client.REPLICA_AFTER + 1):
        otp.whereis("warm-up")
    client = otp.registry._names._node_client()
    replica, word = client.replica, client.stamp_word()
    assert replica is not None and word is not None
    while not hot_path_armed():
        if replica.stamp() < word[0]:
            client.proc.poll_sockets([replica.sub], 5.0)  # a change on its way
        replica.fresh_until = 0.0  # the next lookup refreshes the replica, and arms
        otp.whereis("warm-up")


def test_whereis_from_memory_never_returns_a_process_seen_dead(node):
    """Answered from memory, not from the registry: even while the registry
    cannot drop the name (stopped), a holder whose DOWN this process has
    taken is not returned."""
    pid = otp.spawn(wait_forever)
    otp.register("seen-dead", pid)
    arm_hot_path()
    assert otp.whereis("seen-dead") == pid
    reg = registry_pid(node)
    ref = otp.monitor(pid)
    os.kill(reg.ospid, signal.SIGSTOP)
    try:
        os.kill(pid.ospid, signal.SIGKILL)
        down_of(ref)
        assert hot_path_armed(), "the stopped registry changed nothing"
        assert otp.whereis("seen-dead") is None
        assert otp.whereis("warm-up") is None
    finally:
        os.kill(reg.ospid, signal.SIGCONT)


def _register_and_report(name, parent):
    otp.register(name)
    otp.send(parent, ("registered", otp.self()))
    otp.receive()


def test_every_change_moves_the_registry_stamp_before_its_author_hears(node):
    """The memory answers only while the registry has changed nothing: a
    change by another process puts the hot path aside before that process
    is answered; this process's own change is visible at once."""
    arm_hot_path()
    other = otp.spawn(_register_and_report, "theirs", otp.self())
    recv_tagged("registered")
    assert not hot_path_armed()
    otp.registry._names._node_client().replica.refresh()  # as the next refresh would
    assert otp.whereis("theirs") == other
    arm_hot_path()
    mine = otp.spawn(wait_forever)
    otp.register("mine-at-once", mine)
    assert otp.whereis("mine-at-once") == mine
    otp.unregister("mine-at-once")
    assert otp.whereis("mine-at-once") is None
    otp.exit(other, "kill")
    otp.exit(mine, "kill")


def _bring_successor_to(version, parent):
    """Register ``late``, then change the registry until its version is
    ``version``: the version of a replica of its predecessor."""
    otp.register("late")
    dummy, held = otp.spawn(wait_forever), False
    while otp.registry_health()["version"] < version:
        if held:
            otp.unregister("dummy")
        else:
            otp.register("dummy", dummy)
        held = not held
    otp.send(parent, ("caught-up", otp.self(), otp.registry_health()["version"]))
    otp.receive()


def test_a_successor_at_the_same_version_is_not_taken_for_its_predecessor(node):
    """A restarted registry numbers its changes from 0 again: once it has
    made as many as a replica of its predecessor holds, its stamp must
    still differ (its generation), or that replica would answer from the
    dead registry's table."""
    otp.register("early", otp.spawn(wait_forever))
    arm_hot_path()
    version = otp.registry._names._node_client().replica.version
    reg = registry_pid(node)
    ref = otp.monitor(reg)
    os.kill(reg.ospid, signal.SIGKILL)
    down_of(ref)
    helper = otp.spawn(_bring_successor_to, version, otp.self())
    _, late, reached = recv_tagged("caught-up")
    assert reached == version, "the successor overshot: the collision is not tested"
    assert otp.whereis("late") == late
    otp.exit(helper, "kill")


def test_a_thread_that_is_not_the_process_is_never_answered_from_memory(node):
    arm_hot_path()
    errors = []

    def lookup():
        try:
            otp.whereis("warm-up")
        except otp.NotAProcess as exc:
            errors.append(exc)

    for target in (lookup, functools.partial(contextvars.copy_context().run, lookup)):
        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
    assert len(errors) == 2
    assert hot_path_armed()


def test_a_keyed_registry_removes_its_stamp_file_when_it_stops(node):
    otp.trap_exit(True)
    reg = otp.Registry.start_link()
    path = stamp_path(endpoints(node.info.dir, reg.uid)[1])
    assert os.path.exists(path)
    otp.exit(reg, "shutdown")
    exit_of(reg)
    assert not os.path.exists(path)


# --------------------------------------------------------- keyed registries


def test_unique_keyed_registry_and_via(node):
    otp.Registry.start_link(keys="unique", name="reg")
    otp.Registry.register("reg", "k", {"v": 1})
    me = otp.self()

    def contender():
        try:
            otp.Registry.register("reg", "k", 2)
            otp.send(me, "registered?!")
        except otp.AlreadyRegistered as exc:
            otp.send(me, ("clash", exc.existing_pid))

    otp.spawn(contender)
    assert otp.receive(10) == ("clash", me)
    assert otp.Registry.lookup("reg", "k") == [(otp.self(), {"v": 1})]
    new, old = otp.Registry.update_value("reg", "k", lambda v: {"v": v["v"] + 1})
    assert (new, old) == ({"v": 2}, {"v": 1})
    assert otp.Registry.keys("reg", otp.self()) == ["k"]
    assert otp.Registry.count("reg") == 1
    server = Echo.start_link("via-state", name=otp.via("reg", "svc"))
    assert otp.call(otp.via("reg", "svc"), "state") == "via-state"
    with pytest.raises(otp.StartError) as info:
        Echo.start_link(None, name=otp.via("reg", "svc"))
    assert info.value.reason == ("already_started", server)
    otp.Registry.unregister("reg", "k")
    assert otp.Registry.lookup("reg", "k") == []


def test_set_value_replaces_the_callers_value_in_one_request(node):
    otp.Registry.start_link(name="board")
    with pytest.raises(otp.registry.NotFound):
        otp.Registry.set_value("board", "k", 1)  # no entry of ours yet
    otp.Registry.register("board", "k", 1)
    otp.Registry.set_value("board", "k", 2)
    assert otp.Registry.lookup("board", "k") == [(otp.self(), 2)]


def test_duplicate_keyed_registry_dispatch_and_match(node):
    otp.Registry.start_link(keys="duplicate", name="topics")
    me = otp.self()

    def subscriber(tag):
        otp.Registry.register("topics", "news", tag)
        otp.send(me, ("subscribed", tag))
        otp.send(me, ("got", tag, otp.receive()))

    subs = [otp.spawn(subscriber, t) for t in ("a", "b")]
    for _ in subs:
        recv_tagged("subscribed")
    otp.Registry.register("topics", "news", "me")
    otp.Registry.register("topics", "news", "me-again")  # the same process twice
    entries = otp.Registry.lookup("topics", "news")
    assert sorted(v for _, v in entries) == ["a", "b", "me", "me-again"]
    assert sorted(v for _, v in otp.Registry.match("topics", "news", lambda v: v.startswith("me"))) == [
        "me",
        "me-again",
    ]
    otp.Registry.dispatch("topics", "news", lambda es: [otp.send(p, "hello") for p, v in es if v in ("a", "b")])
    assert sorted(recv_tagged("got")[1:] for _ in subs) == [("a", "hello"), ("b", "hello")]


def test_keyed_entries_go_with_their_process(node):
    otp.Registry.start_link(keys="duplicate", name="r")
    me = otp.self()

    def holder():
        otp.Registry.register("r", "x", 1)
        otp.send(me, "registered")
        otp.receive()

    pid = otp.spawn(holder)
    otp.receive(10, lambda m: m == "registered")
    assert len(otp.Registry.lookup("r", "x")) == 1
    otp.exit(pid, "kill")
    wait_dead(pid)
    assert otp.Registry.lookup("r", "x") == []


def test_registry_name_clash(node):
    otp.Registry.start_link(name="same")
    with pytest.raises(otp.StartError):
        otp.Registry.start_link(name="same")


# ------------------------------------------------------------------------ pg


def test_process_groups(node):
    a, b = otp.spawn(wait_forever), otp.spawn(wait_forever)
    otp.pg.join("workers", a)
    otp.pg.join("workers", b)
    otp.pg.join("workers", a)  # twice: must leave twice
    assert sorted(otp.pg.get_members("workers")) == sorted([a, a, b])
    assert otp.pg.leave("workers", a) is True
    assert sorted(otp.pg.get_members("workers")) == sorted([a, b])
    assert "workers" in otp.pg.which_groups()
    otp.exit(b, "kill")
    wait_dead(b)
    assert otp.pg.get_members("workers") == [a]
    otp.pg.leave("workers", a)
    assert otp.pg.get_members("workers") == []
    assert "workers" not in otp.pg.which_groups()


# ------------------------------------------------------------------ recovery


def test_registry_restart_keeps_live_names_and_drops_dead(node):
    alive = otp.spawn(wait_forever)
    doomed = otp.spawn(wait_forever)
    otp.register("alive", alive)
    otp.register("doomed", doomed)
    reg = registry_pid(node)
    otp.trap_exit(True)
    sup_api.subscribe(node.kernel)
    os.kill(reg.ospid, signal.SIGKILL)
    os.kill(doomed.ospid, signal.SIGKILL)  # dies while there is no registry
    started = otp.receive(10, lambda m: type(m) is tuple and m[0] == "$supervisor" and m[2] == "started")
    assert started[4] != reg
    assert otp.whereis("alive") == alive
    assert otp.whereis("doomed") is None
    otp.exit(alive, "kill")
    wait_dead(alive)
    assert otp.whereis("alive") is None  # the new registry watches it


def test_requests_survive_a_registry_restart(node):
    reg = registry_pid(node)
    os.kill(reg.ospid, signal.SIGKILL)
    pid = otp.spawn(wait_forever)
    otp.register("after-restart", pid)  # not in flight when it died: served by the restarted registry
    assert otp.whereis("after-restart") == pid


def test_memory_backend_node():
    with otp.Node(registry_backend="memory"):
        pid = otp.spawn(wait_forever)
        otp.register("m", pid)
        assert otp.whereis("m") == pid
        assert otp.registry_health()["backend"] == "memory"


def test_unknown_backend_fails_loudly():
    with pytest.raises((otp.StartError, otp.registry.BackendUnavailable)):
        with otp.Node(registry_backend="horde"):
            pass
