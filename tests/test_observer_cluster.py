"""The observer's cluster view: one web view, served by the test node,
shows another node of the cluster (a separate OS process) through that
node's own collector: its node list, a cluster-wide process search, the
other node's tree, processes, drill-down and panels, and actions on its
processes."""

from __future__ import annotations

import dist_nodes
import pytest
from helpers import recv

import otp
import otp.observer as observer

httpx = pytest.importorskip("httpx")


def named_idler(name: str, parent: otp.Pid | None = None) -> None:
    otp.register(name, otp.self())
    if parent is not None:
        otp.send(parent, ("registered", name))
    otp.receive(match=lambda m: m == "stop")


def add_things_panel() -> None:
    observer.add_panel("Things", "test_observer_panels:good_provider")


def pid_id(pid: otp.Pid) -> str:
    return f"{pid.ospid}-{pid.uid:016x}-{pid.start}"


@pytest.fixture(scope="module")
def c():
    with dist_nodes.cluster(["b"]) as cluster:
        yield cluster


@pytest.fixture
def web(c):
    server = observer.serve(tap=False)
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{server.port}", headers={"X-Observer-Token": server.token}, timeout=60
    )
    yield server, client, c.name("b")
    client.close()
    server.stop()


def test_the_nodes_and_a_search_across_them(web):
    server, client, b = web
    here = otp.spawn(named_idler, "findme-here", otp.self())
    there = otp.spawn_opt(named_idler, ("findme-there", otp.self()), node=b)
    try:
        assert client.get("/api/nodes").json() == {"self": otp.node(), "nodes": [otp.node(), b]}
        for name in ("findme-here", "findme-there"):
            recv(lambda m, name=name: m == ("registered", name))
        observer.refresh()  # a round on each node: the names are in its table
        otp.rpc.call(b, observer.refresh, timeout=30)
        answer = client.get("/api/search", params={"q": "findme"}).json()["nodes"]
        found = {n["node"]: [r["pid"] for r in n["rows"]] for n in answer}
        assert found == {otp.node(): [pid_id(here)], b: [pid_id(there)]}
        rows = {n["node"]: n["rows"] for n in answer}
        assert rows[b][0]["node"] == b and rows[b][0]["name"] == "findme-there"
    finally:
        otp.send(here, "stop")
        otp.send(there, "stop")


def test_another_nodes_tree_processes_and_detail(web):
    server, client, b = web
    remote_tree = client.get("/api/tree", params={"node": b}).json()
    assert remote_tree["roots"][0]["origin"] == "kernel"
    kernel_pid = remote_tree["roots"][0]["pid"]
    local_kernel = client.get("/api/tree").json()["roots"][0]["pid"]
    assert kernel_pid != local_kernel
    page = client.get("/api/processes", params={"node": b, "limit": "200"}).json()
    assert page["rows"] and {r["node"] for r in page["rows"]} == {b}
    detail = client.get(f"/api/process/{kernel_pid}", params={"node": b}).json()
    assert detail["alive"] and detail["row"]["node"] == b and detail["row"]["behaviour"] == "supervisor"
    names = client.get("/api/names", params={"node": b}).json()
    assert "net_kernel" in {n["name"] for n in names["names"]}


def test_a_panel_of_another_node(web):
    server, client, b = web
    otp.rpc.call(b, add_things_panel, timeout=30)
    assert [p["name"] for p in client.get("/api/panels", params={"node": b}).json()["panels"]] == ["Things"]
    assert client.get("/api/panels").json()["panels"] == []  # this node has none
    panel = client.get("/api/panel/Things", params={"node": b}).json()
    assert panel["node"] == b and "error" not in panel
    assert panel["tables"]["Things"][0]["pid"]["node"] == b  # read in a process of b


def test_kill_a_process_of_another_node(web):
    server, client, b = web
    victim, ref = otp.spawn_opt(named_idler, ("victim",), node=b, monitor=True)
    answer = client.post("/api/kill", json={"pid": pid_id(victim), "node": b, "reason": "kill"})
    assert answer.json() == {"ok": True}
    assert recv(lambda m: isinstance(m, otp.DOWN) and m.ref == ref).reason == "killed"


def test_a_node_not_in_the_cluster_is_refused(web):
    server, client, b = web
    answer = client.get("/api/tree", params={"node": "nobody@127.0.0.1"})
    assert answer.status_code == 502 and "NotInCluster" in answer.json()["error"]
