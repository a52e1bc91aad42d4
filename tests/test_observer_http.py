"""otp.observer.serve: the web view over HTTP (httpx against a server on
port 0): the token on every route, the JSON API, server-sent events,
actions, /metrics, attaching from another OS process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from helpers import TIMEOUT, recv

import otp
import otp.observer as observer
import otp.sys

httpx = pytest.importorskip("httpx")


class Echo(otp.GenServer):
    def init(self, start):
        return start

    def handle_call(self, request, from_, state):
        return otp.Reply(request, state)


def pid_id(pid: otp.Pid) -> str:
    return f"{pid.ospid}-{pid.uid:016x}-{pid.start}"


def started(sup, child_id):
    """Wait for ``sup``'s next start of ``child_id``; its new pid."""
    event = recv(lambda m: type(m) is tuple and m[:4] == ("$supervisor", sup, "started", child_id))
    return event[4]


def find(nodes, child_id):
    for node in nodes:
        if node["child_id"] == child_id:
            return node
        found = find(node["children"], child_id)
        if found is not None:
            return found
    return None


@pytest.fixture
def web(node):
    otp.trap_exit(True)
    sup = otp.Supervisor.start_link([Echo.child_spec("a", id="echo")], intensity=10, period=60)
    otp.supervisor.subscribe(sup)
    server = observer.serve(port=0)
    observer.watch()
    observer.add_root(sup, "top")
    recv(lambda m: isinstance(m, observer.TreeChanged) and m.supervisor == sup and m.event == "spec")
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{server.port}", headers={"X-Observer-Token": server.token}, timeout=20
    )
    yield server, sup, client
    client.close()
    server.stop()
    otp.unlink(sup)
    otp.exit(sup, "shutdown")


def test_every_route_needs_the_token(web):
    server, _, client = web
    base = f"http://127.0.0.1:{server.port}"
    for path in ("/", "/api/tree", "/api/processes", "/events", "/metrics"):
        assert httpx.get(base + path, timeout=20).status_code == 401
        assert httpx.get(base + path, params={"token": "wrong"}, timeout=20).status_code == 401
    assert httpx.post(base + "/api/kill", json={"pid": "1-0-0"}, timeout=20).status_code == 401
    assert httpx.get(base + "/api/tree", params={"token": server.token}, timeout=20).status_code == 200
    assert (
        httpx.get(base + "/metrics", headers={"Authorization": f"Bearer {server.token}"}, timeout=20).status_code == 200
    )
    page = httpx.get(server.url, timeout=20)
    assert page.status_code == 200 and "otp observer" in page.text and server.token in page.text


def test_serves_on_loopback_by_default(web):
    server, _, _ = web
    assert server.host == "127.0.0.1" and server.url.startswith(f"http://127.0.0.1:{server.port}/?token=")


def test_tree_and_processes_as_json(web):
    server, sup, client = web
    roots = client.get("/api/tree").json()["roots"]
    assert roots[0]["origin"] == "kernel"
    echo = find(roots, "echo")
    assert (echo["behaviour"], echo["callback"]) == ("gen_server", "test_observer_http.Echo")
    assert echo["pid"] == pid_id(otp.supervisor.which_children(sup)[0].pid)
    page = client.get("/api/processes", params={"sort": "rss", "desc": "1", "limit": "3"}).json()
    assert len(page["rows"]) == 3 and page["total"] == page["processes"] >= 8
    rss = [r["rss"] or 0 for r in page["rows"]]
    assert rss == sorted(rss, reverse=True)
    assert client.get("/api/processes", params={"sort": "nonsense"}).status_code == 400
    detail = client.get(f"/api/process/{echo['pid']}").json()
    assert detail["alive"] and detail["info"]["status"] == "waiting"


def test_events_stream_tells_of_a_restart(web):
    server, sup, client = web
    old = otp.supervisor.which_children(sup)[0].pid
    with client.stream("GET", "/events") as stream:
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("event:")) == "event: hello"
        os.kill(old.ospid, signal.SIGKILL)
        new = started(sup, "echo")
        assert next(line for line in lines if line == "event: tree")
    echo = find(client.get("/api/tree").json()["roots"], "echo")
    assert echo["pid"] == pid_id(new) and echo["restarts"] == 1 and echo["last_exit"] == "'killed'"


def test_metrics_count_restarts_by_child_id_never_by_pid(web):
    server, sup, client = web
    for _ in range(2):
        pid = otp.supervisor.which_children(sup)[0].pid
        os.kill(pid.ospid, signal.SIGKILL)
        new = started(sup, "echo")
        recv(lambda m, new=new: isinstance(m, observer.TreeChanged) and m.event == "started" and m.pid == new)
    observer.refresh()  # a round that samples the latest incarnation
    text = client.get("/metrics").text
    assert "# TYPE otp_supervisor_child_restarts_total counter" in text
    assert 'otp_supervisor_child_restarts_total{supervisor="top",child="echo"} 2' in text
    assert 'otp_supervisor_child_exits_total{supervisor="top",child="echo",reason="killed"} 2' in text
    assert 'otp_process_messages_in_total{process="top/echo"}' in text
    assert "pid" not in "".join(
        line.split("{")[1] for line in text.splitlines() if "{" in line and not line.startswith("#")
    )


def test_actions_kill_restart_suspend_resume(web):
    server, sup, client = web
    old = otp.supervisor.which_children(sup)[0].pid
    assert client.post("/api/kill", json={"pid": pid_id(old), "reason": "kill"}).json() == {"ok": True}
    killed = started(sup, "echo")
    answer = client.post("/api/restart", json={"supervisor": pid_id(sup), "index": 0, "child_id": "echo"}).json()
    restarted = started(sup, "echo")
    assert answer == {"ok": True, "pid": pid_id(restarted)} and restarted != killed
    assert client.post("/api/suspend", json={"pid": pid_id(restarted)}).json() == {"ok": True}
    assert otp.sys.get_status(restarted).status is otp.sys.SysState.SUSPENDED
    assert client.post("/api/resume", json={"pid": pid_id(restarted)}).json() == {"ok": True}
    assert otp.call(restarted, "hi") == "hi"
    stale = client.post("/api/restart", json={"supervisor": pid_id(sup), "index": 0, "child_id": "other"})
    assert stale.status_code == 409


def test_stop_ends_the_web_server(web):
    server, _, client = web
    ref = otp.monitor(server.pid)
    server.stop()
    assert recv(lambda m: isinstance(m, otp.DOWN) and m.ref == ref).reason == "shutdown"
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url, timeout=5)


def test_python_m_otp_observer_attaches_from_another_os_process(node):
    observer_sup = observer.collector() and otp.whereis("$otp_observer_sup")
    otp.supervisor.subscribe(observer_sup)
    cli = subprocess.Popen(
        [sys.executable, "-m", "otp", "observer", node.info.dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        title = cli.stdout.readline()
        url = cli.stdout.readline().strip()
        assert title.startswith(f"observer of node {node.name}"), cli.stderr.read()
        web = recv(lambda m: type(m) is tuple and m[:3] == ("$supervisor", observer_sup, "started"))[4]
        token = url.split("token=")[1]
        roots = httpx.get(url.split("?")[0] + "api/tree", params={"token": token}, timeout=20).json()["roots"]
        assert roots[0]["origin"] == "kernel"
    finally:
        cli.send_signal(signal.SIGINT)
        status = cli.wait(TIMEOUT)
        cli.stdout.close()
        cli.stderr.close()
    assert status == 130
    exited = recv(lambda m: type(m) is tuple and m[:3] == ("$supervisor", observer_sup, "exited"))
    assert exited[4] == web


def test_python_m_otp_lists_its_commands():
    listed = subprocess.run([sys.executable, "-m", "otp", "--help"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "observer" in listed.stdout
    unknown = subprocess.run([sys.executable, "-m", "otp", "nonsense"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "unknown command" in unknown.stderr


def test_nodes_are_found_by_directory_root_pid_and_name_file(node):
    from otp.observer._attach import AttachError, find_node

    assert find_node(node.info.dir).root_ospid == os.getpid()
    assert find_node(str(os.getpid())).dir == node.info.dir
    with open(os.path.join(node.info.dir, "name"), "w") as f:  # what the node would write (see the report)
        f.write(node.name)
    assert find_node(node.name).dir == node.info.dir
    with pytest.raises(AttachError):
        find_node("no-such-node")
