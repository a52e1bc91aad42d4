"""Cluster membership and global names against a real etcd.

Two members of one cluster run in one test node as two "nodes" (the
second is unnamed and asked by pid), which is all the store can tell
apart: a node is its record and its lease.  Waits are on the members'
messages (MemberUp, MemberDown, NamesLost), monitors, EXITs and store
watches, never on time.
"""

from __future__ import annotations

import os
import queue
import signal

import pytest
from etcd_server import post, requires_etcd, running_etcd

import otp
from otp import cluster, global_
from otp._cluster_store import DeleteEvent
from otp._etcd_store import EtcdStore

pytestmark = requires_etcd

#: Long enough for a lease of 2 s to expire on a loaded machine.
WAIT = 30.0


def config(etcd, node, **kw):
    return cluster.ClusterConfig(tuple(etcd.endpoints), "test", node, info={"endpoint": f"tcp://{node}"}, **kw)


def member_event(kind, node=None):
    return otp.receive(WAIT, lambda m: type(m) is kind and (node is None or m.node == node))


def stop(pid):
    otp.exit(pid, "shutdown")
    otp.receive(WAIT, lambda m: isinstance(m, otp.EXIT) and m.pid == pid)


def holder_deleted(etcd, key):
    """A queue that gets the DeleteEvent of ``key``, and the watch."""
    events: queue.SimpleQueue = queue.SimpleQueue()
    store = EtcdStore(etcd.endpoints)
    store.watch_prefix(key, lambda e: events.put(e) if isinstance(e, DeleteEvent) else None)
    return events, store


def test_nodes_see_each_other_join_leave_and_expire(node):
    otp.trap_exit(True)
    with running_etcd() as etcd:
        alpha = cluster.start_link(config(etcd, "alpha", lease_ttl=2))
        assert set(cluster.subscribe()) == {"alpha"}
        beta = cluster.ClusterMember.start_link(config(etcd, "beta", lease_ttl=2))
        up = member_event(cluster.MemberUp, "beta")
        assert up.info == {"endpoint": "tcp://beta", "node": "beta"}
        assert set(cluster.nodes()) == {"alpha", "beta"}

        stop(beta)  # leaves: deletes its record, revokes its lease
        assert member_event(cluster.MemberDown, "beta").reason == "left"

        beta = cluster.ClusterMember.start_link(config(etcd, "beta", lease_ttl=2))
        member_event(cluster.MemberUp, "beta")
        otp.unlink(beta)
        os.kill(beta.ospid, signal.SIGKILL)  # renews nothing more: the store lets its lease run out
        assert member_event(cluster.MemberDown, "beta").reason == "lease_expired"
        assert set(cluster.nodes()) == {"alpha"}
        stop(alpha)


def test_a_global_name_has_one_holder_and_goes_with_it(node):
    otp.trap_exit(True)
    with running_etcd() as etcd:
        alpha = cluster.start_link(config(etcd, "alpha"))
        me = otp.self()
        assert global_.register_name("leader", me) is True
        assert global_.whereis_name("leader") == me
        assert global_.registered_names() == ["leader"]
        other = otp.spawn(otp.receive)
        assert global_.register_name("leader", other) is False  # taken
        assert global_.whereis_name("leader") == me

        otp.send(otp.via(global_, "leader"), "hello")  # anywhere a pid goes
        assert otp.receive(WAIT, lambda m: m == "hello") == "hello"

        # A holder that dies loses its name.
        assert global_.register_name("worker", other) is True
        deleted, store = holder_deleted(etcd, config(etcd, "alpha").name_key("worker"))
        otp.exit(other, "kill")
        deleted.get(timeout=WAIT)
        store.close()
        assert global_.whereis_name("worker") is None

        global_.unregister_name("leader")
        assert global_.whereis_name("leader") is None and global_.registered_names() == []
        stop(alpha)


def test_a_gen_server_started_under_a_global_name(node):
    otp.trap_exit(True)
    with running_etcd() as etcd:
        alpha = cluster.start_link(config(etcd, "alpha"))
        name = otp.via(global_, "echo")
        pid = otp.Agent.start_link(lambda: 41, name=name)
        assert global_.whereis_name("echo") == pid
        assert otp.Agent.get(name, lambda n: n + 1) == 42
        with pytest.raises(otp.StartError) as info:
            otp.Agent.start_link(lambda: 0, name=name)
        assert info.value.reason == ("already_started", pid)
        stop(pid)
        stop(alpha)


def test_two_nodes_racing_for_a_name_one_wins(node):
    otp.trap_exit(True)
    with running_etcd() as etcd:
        alpha = cluster.start_link(config(etcd, "alpha"))
        beta = cluster.ClusterMember.start_link(config(etcd, "beta"))
        a, b = otp.spawn(otp.receive), otp.spawn(otp.receive)
        for round_ in range(10):
            name = f"race-{round_}"
            reqs = [otp.send_request(alpha, otp.Request("register_name", (name, a), {}))]
            reqs.append(otp.send_request(beta, otp.Request("register_name", (name, b), {})))
            outcomes = [otp.receive_response(r, WAIT) for r in reqs]
            assert sorted(o.value for o in outcomes) == [False, True], outcomes
            winner = a if outcomes[0].value else b
            assert global_.whereis_name(name) == winner
        stop(beta)  # beta's names go with its lease
        assert all(global_.whereis_name(f"race-{i}") in (a, None) for i in range(10))
        stop(alpha)


def test_a_node_that_loses_its_lease_says_its_names_are_lost_and_rejoins(node):
    otp.trap_exit(True)
    with running_etcd() as etcd:
        cfg = config(etcd, "alpha", lease_ttl=3)
        alpha = cluster.start_link(cfg)
        cluster.subscribe()
        assert global_.register_name("leader", otp.self())
        lease = EtcdStore(etcd.endpoints).get(cfg.node_key("alpha")).lease
        post(etcd.endpoints[0], "/v3/lease/revoke", {"ID": str(lease)})
        lost = otp.receive(WAIT, lambda m: type(m) is cluster.NamesLost)
        assert lost == cluster.NamesLost(("leader",), "lease_expired")
        assert global_.whereis_name("leader") is None
        # It took a new lease and wrote its record again: registering works.
        member_event(cluster.MemberUp, "alpha")
        assert global_.register_name("leader", otp.self())
        stop(alpha)


def test_no_store_no_registration_and_a_typed_error(node):
    otp.trap_exit(True)
    with running_etcd() as etcd:
        alpha = cluster.start_link(config(etcd, "alpha"))
        for member in etcd.members:
            member.stop()
        with pytest.raises(global_.ClusterUnavailable):
            global_.register_name("leader", otp.self(), timeout=10)
        with pytest.raises(global_.ClusterUnavailable):
            global_.whereis_name("leader", timeout=1)
        stop(alpha)


def test_bad_input_is_refused_in_the_caller(node):
    otp.trap_exit(True)
    with running_etcd() as etcd:
        alpha = cluster.start_link(config(etcd, "alpha"))
        for bad in ("", 42, None, ("a",)):
            with pytest.raises(TypeError):
                global_.register_name(bad, otp.self())
        with pytest.raises(global_.NotLocalPid):
            global_.register_name("x", otp.Pid("elsewhere@host", 12345, 1, 1))
        with pytest.raises(ValueError):
            cluster.ClusterConfig((), "test", "a")
        with pytest.raises(ValueError):
            cluster.ClusterConfig(("http://127.0.0.1:1",), "te/st", "a")
        stop(alpha)


def test_without_a_cluster_global_names_say_so(node):
    with pytest.raises(otp.NoProc):
        global_.register_name("leader", otp.self())
