"""Partitions: five nodes and three etcd members in five network
namespaces (tests/netns.py), split 3/2 and healed.

What must hold (issue 12's partition tests): the majority side keeps
registering global names and serving calls between its nodes; the
minority side gets typed errors (``ClusterUnavailable``, ``NoConnection``)
within their timeouts; no name is ever held twice; each side sees the
other's nodes go, and the other's pg members leave; after the heal every
node sees all five again, and every node's pg group has a member of each of
the five within 10 s; names agree.  A node killed outright leaves no
process behind and the others see it go.

The nodes listen on their namespace's address and find each other through
etcd (discovery); they connect as a full mesh when the test asks them to
(connections are made on first use: nothing reconnects two nodes after a
heal until something uses the connection, as in Erlang).

Every wait is on an answer of a node (which itself waits on its member's
NodeUp/NodeDown messages) or on a process's exit.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import tempfile
import time

import psutil
import pytest
from cluster_node import WAIT, RemoteNode
from etcd_server import requires_etcd, running_etcd
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from netns import partitionable, requires_netns

pytestmark = [requires_etcd, requires_netns, pytest.mark.slow]

#: Bound on convergence after a heal, and on waits for what must happen.
CONVERGE_S = 10.0
#: The nodes' tick time: a node cut off is down within it.
TICKTIME = 2.0


def start_node(net, etcd, base_dir: str, i: int) -> RemoteNode:
    """Node ``n<i>`` in namespace ``i``."""
    return RemoteNode(
        f"n{i}",
        etcd.endpoints,
        base_dir,
        net.command(i, []),
        cluster="parts",
        lease_ttl=5,
        listen_host=net.address(i),
        net_ticktime=TICKTIME,
    )


def start_nodes(net, etcd, base_dir: str, names: list[str]) -> list[RemoteNode]:
    return [start_node(net, etcd, base_dir, i) for i in range(len(names))]


def os_processes(node: RemoteNode) -> list[psutil.Process]:
    """The node's OS processes now: its root, what runs under it, and those
    it started with that are still there (transient ones, a courier or an
    rpc's process, may have ended since it said it was ready)."""
    root = psutil.Process(node.proc.pid)
    found = {p.pid: p for p in [root, *root.children(recursive=True)]}
    for pid in node.ready["pids"]:
        if pid not in found:
            try:
                found[pid] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                pass
    return list(found.values())


def connect_all(nodes: list[RemoteNode], names: list[str]) -> None:
    for n in nodes:
        up = n.ask("connect", nodes=names, timeout=10.0)["up"]
        assert all(up.values()), (n.name, up)


def test_a_3_2_split_and_its_heal(node):
    names = [f"n{i}" for i in range(5)]
    base_dir = tempfile.mkdtemp(prefix="otp-parts-")
    nodes: list[RemoteNode] = []
    try:
        with partitionable(5) as net:
            hosts = [net.address(i) for i in range(3)]
            prefixes = [tuple(net.command(i, [])) for i in range(3)]
            with running_etcd(3, hosts=hosts, argv_prefixes=prefixes) as etcd:
                nodes = start_nodes(net, etcd, base_dir, names)
                for n in nodes:
                    assert n.ask("await_nodes", nodes=names, timeout=WAIT)["nodes"] == names
                connect_all(nodes, names)
                for n in nodes:
                    assert n.ask("pg_join", group="g")["ok"]
                for n in nodes:
                    assert n.ask("pg_await", group="g", nodes=names, timeout=CONVERGE_S)["nodes"] == names

                # Majority: namespaces 0, 1, 3 (etcd members 0 and 1); minority: 2, 4 (member 2).
                # The store's leader on the majority side: it registers with no election first.
                etcd.move_leader(etcd.members[0])
                net.split([[0, 1, 3], [2, 4]])
                majority, minority = [nodes[0], nodes[1], nodes[3]], [nodes[2], nodes[4]]
                # pg: each side's members only, once the other side's nodes are down.
                for side, members in ((majority, ["n0", "n1", "n3"]), (minority, ["n2", "n4"])):
                    for n in side:
                        seen = n.ask("pg_await", group="g", nodes=members, timeout=CONVERGE_S)
                        assert seen["nodes"] == members, (n.name, seen)
                # Calls: within the majority they work; from the minority they fail, typed.
                answer = nodes[0].ask("rpc_node", node="n3", timeout=10.0)
                assert answer.get("node") == "n3", answer
                answer = nodes[2].ask("rpc_node", node="n0", timeout=10.0)
                assert answer.get("error") == "NoConnection", answer
                assert answer["elapsed"] < 10.0 + 3.0, answer  # at once, or within its timeout (and a margin)
                for n in majority:
                    seen = n.ask("await_nodes", nodes=["n0", "n1", "n3"], timeout=WAIT)
                    assert seen["nodes"] == ["n0", "n1", "n3"], seen
                assert nodes[0].ask("register", name="x", timeout=10.0)["ok"] is True
                assert nodes[3].ask("whereis", name="x")["holder"] == "n0"
                for n in minority:
                    for name in ("x", "y"):
                        answer = n.ask("register", name=name, timeout=5.0)
                        assert answer.get("error") == "ClusterUnavailable", answer
                        assert answer["elapsed"] < 5.0 + 3.0, answer  # within its timeout (and a margin)
                assert nodes[1].ask("register", name="x", timeout=10.0)["ok"] is False  # held, once

                net.heal()
                started = time.monotonic()
                connect_all(nodes, names)
                for n in nodes:
                    left = max(0.0, started + CONVERGE_S - time.monotonic())
                    seen = n.ask("pg_await", group="g", nodes=names, timeout=left)
                    assert seen["nodes"] == names, (n.name, seen)
                pg_converged = time.monotonic() - started
                assert pg_converged <= CONVERGE_S, f"pg converged after {pg_converged:.1f} s"
                for n in nodes:
                    seen = n.ask("await_nodes", nodes=names, timeout=WAIT)
                    assert seen["nodes"] == names, seen
                converged = time.monotonic() - started
                assert converged <= CONVERGE_S * 2, f"converged after {converged:.1f} s"
                for n in nodes:
                    assert n.ask("whereis", name="x", timeout=10.0)["holder"] == "n0"
                assert nodes[4].ask("register", name="x", timeout=10.0)["ok"] is False
                assert nodes[4].ask("register", name="y", timeout=10.0)["ok"] is True

                # A node killed outright: nothing of it is left, the others see it go.
                victim = nodes[1]
                tree = os_processes(victim)
                os.kill(victim.proc.pid, signal.SIGKILL)
                victim.proc.wait(WAIT)
                _, alive = psutil.wait_procs(tree, timeout=WAIT)
                assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], alive
                rest = ["n0", "n2", "n3", "n4"]
                assert nodes[0].ask("await_nodes", nodes=rest, timeout=WAIT)["nodes"] == rest
                for n in nodes:
                    n.quit()
                assert os.listdir(base_dir) == []  # not even the killed node's directory
    finally:
        for n in nodes:
            if n.proc.poll() is None:
                n.proc.kill()
                n.proc.wait()
        shutil.rmtree(base_dir, ignore_errors=True)


def test_the_quorum_side_registers_when_the_first_etcd_member_is_cut_off(node):
    """Issue 12: a 3/2 split keeps the majority registering global names.
    Node n3 (alone in its namespace) has only ever talked to etcd member 0;
    the split leaves member 0 alone, members 1 and 2 (with the leader) on
    n3's side: n3 must register within the call's timeout."""
    base_dir = tempfile.mkdtemp(prefix="otp-parts-")
    n3: RemoteNode | None = None
    try:
        with partitionable(4) as net:
            hosts = [net.address(i) for i in range(3)]
            prefixes = [tuple(net.command(i, [])) for i in range(3)]
            with running_etcd(3, hosts=hosts, argv_prefixes=prefixes) as etcd:
                n3 = start_node(net, etcd, base_dir, 3)
                assert n3.ask("await_nodes", nodes=["n3"], timeout=WAIT)["nodes"] == ["n3"]
                etcd.move_leader(etcd.members[1])
                net.split([[1, 2, 3], [0]])
                answer = n3.ask("register", name="x", timeout=10.0)
                n3.quit()
                assert answer.get("ok") is True, answer
    finally:
        if n3 is not None and n3.proc.poll() is None:
            n3.proc.kill()
            n3.proc.wait()
        shutil.rmtree(base_dir, ignore_errors=True)


# ------------------------------------------------------------------ property-based


#: Namespaces that hold the three etcd members: the side with two of them
#: has the store's quorum.
ETCD_NAMESPACES = frozenset({0, 1, 2})
#: A split of the five namespaces in two sides, each non-empty, the first
#: etcd member (namespace 0) and the store's leader on the side with the
#: quorum: a node of that side whose store client prefers a member of the
#: other side cannot register yet (see
#: test_the_quorum_side_registers_when_the_first_etcd_member_is_cut_off), so
#: at least the quorum side's nodes in namespace 0 must be able to.
SPLITS = (
    st.lists(st.booleans(), min_size=5, max_size=5)
    .filter(lambda bits: 0 < sum(bits) < 5 and bits[0] and (bits[1] or bits[2]))
    .map(lambda bits: ("split", tuple(i for i in range(5) if bits[i]), tuple(i for i in range(5) if not bits[i])))
)
STEPS = st.one_of(SPLITS, st.just(("heal",)), st.tuples(st.just("kill"), st.integers(0, 4)))
#: Timeout of a registration on the minority side: it must fail within it.
MINORITY_TIMEOUT = 3.0


class World:
    """Five nodes in five namespaces, three etcd members; what the steps did
    (``alive``, ``holders``: each global name registered and its node)."""

    def __init__(self, net, etcd, base_dir: str) -> None:
        self.net, self.etcd, self.base_dir = net, etcd, base_dir
        self.nodes = [start_node(net, etcd, base_dir, i) for i in range(5)]
        self.alive = set(range(5))
        self.holders: dict[str, str] = {}
        self.fresh = itertools.count()
        self.converged: list[float] = []

    def names_alive(self) -> list[str]:
        return [f"n{i}" for i in sorted(self.alive)]

    def await_all(self) -> None:
        """Every live node sees exactly the live nodes; the time it took."""
        started = time.monotonic()
        want = self.names_alive()
        for i in sorted(self.alive):
            seen = self.nodes[i].ask("await_nodes", nodes=want, timeout=WAIT)
            assert seen["nodes"] == want, (i, seen)
        self.converged.append(time.monotonic() - started)

    def split(self, a: tuple[int, ...], b: tuple[int, ...]) -> None:
        # From a healed network, with the store's leader on the side that
        # keeps the quorum: registering there then needs no election first.
        self.net.heal()
        self.etcd.move_leader(self.etcd.members[0])
        major, minor = (a, b) if len(ETCD_NAMESPACES & set(a)) >= 2 else (b, a)
        self.net.split([list(major), list(minor)])  # the first side keeps the test process
        live_major = [i for i in major if i in self.alive]
        if live_major:
            # Each node of the quorum side in turn tries a fresh name: at
            # most one gets it and nobody else ever does; what the store
            # says afterwards agrees.  A node may answer ClusterUnavailable
            # (its store client spent the member's whole 2 s on a member of
            # the other side, see
            # test_the_quorum_side_registers_when_the_first_etcd_member_is_cut_off,
            # or its write was applied but answered too late): then it may
            # hold the name, and nobody else may.
            name = f"p{next(self.fresh)}"
            answers = {i: self.nodes[i].ask("register", name=name, timeout=10.0) for i in live_major}
            won = [i for i, answer in answers.items() if answer.get("ok") is True]
            assert len(won) <= 1, answers
            others = [a for i, a in answers.items() if i not in won]
            assert all(a.get("ok") is False or a.get("error") == "ClusterUnavailable" for a in others), answers
            seen = {self.nodes[i].ask("whereis", name=name, timeout=10.0).get("holder", "?") for i in live_major}
            seen.discard("?")  # that node's store client did not answer (see above)
            assert len(seen) <= 1, (name, answers, seen)
            if won:
                assert seen <= {f"n{won[0]}"}, (name, answers, seen)
                self.holders[name] = f"n{won[0]}"
            elif seen - {None}:
                holder = seen.pop()
                assert answers[int(holder[1:])].get("error") == "ClusterUnavailable", (name, answers, holder)
                self.holders[name] = holder
        for i in minor:
            if i in self.alive:
                answer = self.nodes[i].ask("register", name=f"p{next(self.fresh)}", timeout=MINORITY_TIMEOUT)
                assert answer.get("error") == "ClusterUnavailable", (i, answer)
                assert answer["elapsed"] < MINORITY_TIMEOUT + 3.0, answer

    def heal(self) -> None:
        self.net.heal()
        self.await_all()
        for name, holder in self.holders.items():
            # The same answer from everywhere: its one holder, or nobody if
            # the holder's lease ran out while it was cut off.
            seen = {self.nodes[i].ask("whereis", name=name, timeout=10.0)["holder"] for i in sorted(self.alive)}
            assert len(seen) == 1 and seen <= {holder, None}, (name, holder, seen)

    def kill(self, i: int) -> None:
        if i not in self.alive:
            return
        victim = self.nodes[i]
        tree = os_processes(victim)
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(WAIT)
        _, alive = psutil.wait_procs(tree, timeout=WAIT)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], alive
        self.alive.discard(i)
        # Its names go with its lease: nobody may find them held by it.
        self.holders = {name: node for name, node in self.holders.items() if node != f"n{i}"}

    def restore(self) -> None:
        """Heal, start the killed nodes again, wait until all see all."""
        self.net.heal()
        for i in range(5):
            if i not in self.alive:
                self.nodes[i] = self.restart(i)
                self.alive.add(i)
        self.await_all()

    def restart(self, i: int) -> RemoteNode:
        """Node ``n<i>`` started again; the store may be electing a leader
        after the heal (its node then cannot join within its timeout and
        ends): it is started once more, at most twice."""
        for attempt in range(3):
            try:
                return start_node(self.net, self.etcd, self.base_dir, i)
            except AssertionError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def quit(self) -> None:
        for n in self.nodes:
            n.quit()


def test_random_partitions_and_kills(node):
    """Random sequences of splits, heals and kills (hypothesis, a few
    examples of a few steps, on one cluster restored between examples),
    with the invariants checked after each step: the side with the store's
    quorum registers a name once and only once, the other side gets
    ClusterUnavailable within its timeout, a killed node leaves no process,
    after a heal every node sees every live node and every name's holder
    is the same from everywhere."""
    base_dir = tempfile.mkdtemp(prefix="otp-parts-")
    world: World | None = None
    try:
        with partitionable(5) as net:
            hosts = [net.address(i) for i in range(3)]
            prefixes = [tuple(net.command(i, [])) for i in range(3)]
            with running_etcd(3, hosts=hosts, argv_prefixes=prefixes) as etcd:
                world = World(net, etcd, base_dir)
                world.await_all()

                @settings(
                    max_examples=3,
                    deadline=None,
                    database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                @example([("heal",), ("split", (0, 1, 3), (2, 4)), ("kill", 0)])
                @given(st.lists(STEPS, min_size=1, max_size=3))
                def run(steps):
                    try:
                        for step in steps:
                            getattr(world, step[0])(*step[1:])
                    finally:
                        world.restore()

                run()
                assert max(world.converged) <= CONVERGE_S * 2, world.converged
                world.quit()
                assert os.listdir(base_dir) == []
    finally:
        if world is not None:
            for n in world.nodes:
                if n.proc.poll() is None:
                    n.proc.kill()
                    n.proc.wait()
        shutil.rmtree(base_dir, ignore_errors=True)
