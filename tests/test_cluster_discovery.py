"""Discovery through the cluster store: two listening nodes that were
given no peers find each other's endpoint and key in etcd, and then call
each other over tcp+CURVE.  A node that does not listen cannot discover.

Each node is its own OS process (tests/cluster_node.py); waits are on
their answers, which wait on their members' MemberUp messages.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest
from cluster_node import RemoteNode
from etcd_server import requires_etcd, running_etcd

import otp
from otp import cluster

pytestmark = requires_etcd


def test_listening_nodes_find_and_call_each_other_through_the_store(node):
    base_dir = tempfile.mkdtemp(prefix="otp-disc-")
    nodes: list[RemoteNode] = []
    names = ["d0@127.0.0.1", "d1@127.0.0.1"]
    try:
        with running_etcd() as etcd:
            nodes = [RemoteNode(name, etcd.endpoints, base_dir, discover=True) for name in names]
            for n in nodes:
                assert n.ask("await_nodes", nodes=names, timeout=30.0)["nodes"] == names
            # No static peer list: the keys and endpoints came from the store.
            assert nodes[0].ask("rpc_node", node=names[1]) == {"node": names[1], "elapsed": pytest.approx(0, abs=30)}
            assert nodes[1].ask("rpc_node", node=names[0])["node"] == names[0]
            for n in nodes:
                n.quit()
    finally:
        for n in nodes:
            if n.proc.poll() is None:
                n.proc.kill()
                n.proc.wait()
        shutil.rmtree(base_dir, ignore_errors=True)


def test_discover_needs_a_listening_node_of_the_same_name(node):
    with running_etcd() as etcd:
        config = cluster.ClusterConfig(tuple(etcd.endpoints), "test", "alone", discover=True)
        with pytest.raises(otp.StartError) as info:
            cluster.start_link(config)
        assert "listening node" in str(info.value)
