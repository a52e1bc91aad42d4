"""Partitions: five nodes and three etcd members in five network
namespaces (tests/netns.py), split 3/2 and healed.

What must hold (issue 12's partition tests, for what exists today:
membership and global names): the majority side keeps registering global
names; the minority side gets a typed error within its timeout; no name is
ever held twice; the majority sees the minority's nodes go; after the
heal every node sees all five again within a bound, and names agree.  A
node killed outright leaves no process behind and the others see it go.

Every wait is on an answer of a node (which itself waits on its member's
NodeUp/NodeDown messages) or on a process's exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time

import psutil
import pytest
from cluster_node import WAIT, RemoteNode
from etcd_server import requires_etcd, running_etcd
from netns import partitionable, requires_netns

pytestmark = [requires_etcd, requires_netns, pytest.mark.slow]

#: Bound on convergence after a heal, and on waits for what must happen.
CONVERGE_S = 10.0


def test_a_3_2_split_and_its_heal(node):
    names = [f"n{i}" for i in range(5)]
    base_dir = tempfile.mkdtemp(prefix="otp-parts-")
    nodes: list[RemoteNode] = []
    try:
        with partitionable(5) as net:
            hosts = [net.address(i) for i in range(3)]
            prefixes = [tuple(net.command(i, [])) for i in range(3)]
            with running_etcd(3, hosts=hosts, argv_prefixes=prefixes) as etcd:
                nodes = [
                    RemoteNode(f"n{i}", etcd.endpoints, base_dir, net.command(i, []), cluster="parts", lease_ttl=5)
                    for i in range(5)
                ]
                for n in nodes:
                    assert n.ask("await_nodes", nodes=names, timeout=WAIT)["nodes"] == names

                # Majority: namespaces 0, 1, 3 (etcd members 0 and 1); minority: 2, 4 (member 2).
                net.split([[0, 1, 3], [2, 4]])
                majority, minority = [nodes[0], nodes[1], nodes[3]], [nodes[2], nodes[4]]
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
                tree = [psutil.Process(victim.proc.pid), *(psutil.Process(p) for p in victim.ready["pids"])]
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
