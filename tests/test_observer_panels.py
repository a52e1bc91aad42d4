"""otp.observer panels: a library's view in the observer, by a provider
named "module:function" that runs in a process of the node.  A provider
that hangs, raises or returns nonsense costs its own process, and the
panel says why; the rest of the view goes on."""

from __future__ import annotations

import pytest
from helpers import recv
from observer_providers import HANG

import otp
import otp.observer as observer
import otp.sys
from otp._timers import TIMER_SERVER
from otp.observer._web import PANEL_POINTS, PanelHistory

httpx = pytest.importorskip("httpx")


class Worker(otp.GenServer):
    def init(self, start):
        return start


def good_provider():
    return {
        "tables": {"Things": [{"id": "a", "pid": otp.self(), "tags": ["x", "y"], "n": 1}, {"id": "b", "extra": 2.5}]},
        "values": {"things": 2, "not a number": "x", "nan": float("nan")},
        "notes": ["all fine"],
    }


def raising_provider():
    raise RuntimeError("the provider broke")


def not_a_panel():
    return ["a", "list"]


def big_provider():
    return {"tables": {"Many": [{"i": i} for i in range(1200)]}}


def test_add_panel_checks_the_provider(node):
    with pytest.raises(observer.InvalidProvider):
        observer.add_panel("x", "no_colon_here")
    with pytest.raises(observer.InvalidProvider):
        observer.add_panel("x", "no_such_module_zz:fn")
    with pytest.raises(observer.InvalidProvider):
        observer.add_panel("x", "test_observer_panels:no_such_function")
    with pytest.raises(observer.InvalidProvider):
        observer.add_panel("x", good_provider)  # a function: it must be importable by name
    with pytest.raises(observer.InvalidProvider):
        observer.add_panel("", "test_observer_panels:good_provider")
    with pytest.raises(observer.InvalidProvider):
        observer.add_panel("x", "test_observer_panels:good_provider", timeout=0)
    assert observer.list_panels() == []


def test_a_panel_is_read_in_a_process_of_its_own_and_normalized(node):
    observer.add_panel("Things", "test_observer_panels:good_provider", timeout=30)
    data = observer.read_panel("Things")
    rows = data["tables"]["Things"]
    pid = rows[0]["pid"]
    assert pid["$pid"] and pid["node"] == otp.node() and pid["ospid"] != otp.self().ospid  # another process
    assert rows[0]["tags"] == "x, y" and rows[1] == {"id": "b", "extra": 2.5}
    assert data["values"] == {"things": 2.0}  # what is not a finite number is left out
    assert data["notes"] == ["all fine"]
    with pytest.raises(observer.UnknownPanel):
        observer.read_panel("nope")


def test_panels_are_the_nodes_not_the_collectors(node):
    """Added from one process, seen from another; kept across the
    collector's restart (it exits when nobody looks)."""
    done = otp.make_ref()
    me = otp.self()
    otp.spawn(lambda: otp.send(me, (done, observer.add_panel("Things", "test_observer_panels:good_provider", 30))))
    assert recv(lambda m: type(m) is tuple and m[0] == done)[1].name == "Things"
    collector = observer.collector()
    ref = otp.monitor(collector)
    otp.exit(collector, "kill")
    recv(lambda m: isinstance(m, otp.DOWN) and m.ref == ref)
    assert [p.name for p in observer.list_panels()] == ["Things"]
    assert observer.read_panel("Things")["values"] == {"things": 2.0}
    assert observer.remove_panel("Things") and not observer.remove_panel("Things")
    assert observer.list_panels() == []


def test_a_hanging_provider_is_killed_at_its_timeout(node):
    otp.register(HANG, otp.self())
    observer.add_panel("Hangs", "observer_providers:hanging_provider", timeout=1.0)
    with pytest.raises(observer.PanelTimeout, match="did not answer within 1s"):
        observer.read_panel("Hangs")
    provider = recv(lambda m: type(m) is tuple and m[0] == "provider")[1]
    assert not otp.is_alive(provider)


def test_a_provider_that_raises_or_returns_no_panel_fails_alone(node):
    observer.add_panel("Raises", "test_observer_panels:raising_provider", timeout=30)
    observer.add_panel("Nonsense", "test_observer_panels:not_a_panel", timeout=30)
    with pytest.raises(observer.PanelFailed, match="RuntimeError: the provider broke"):
        observer.read_panel("Raises")
    with pytest.raises(observer.PanelFailed, match="returns a dict"):
        observer.read_panel("Nonsense")


def test_a_table_is_cut_at_max_rows(node):
    observer.add_panel("Big", "test_observer_panels:big_provider", timeout=30)
    data = observer.read_panel("Big")
    assert len(data["tables"]["Many"]) == 500 and data["cut"] == {"Many": 700}


def test_panel_history_is_bounded_and_merges_close_reads():
    history = PanelHistory()
    for i in range(PANEL_POINTS + 50):
        out = history.add((None, "p"), {"v": float(i)}, at=1000.0 + i)
    assert len(out["v"]) == PANEL_POINTS and out["v"][-1] == [1000.0 + PANEL_POINTS + 49, float(PANEL_POINTS + 49)]
    out = history.add((None, "p"), {"v": -1.0}, at=1000.0 + PANEL_POINTS + 49.2)  # a second viewer, same second
    assert len(out["v"]) == PANEL_POINTS and out["v"][-1][1] == -1.0
    for n in range(40):
        history.add(("other", f"p{n}"), {"v": 1.0}, at=0.0)
    assert len(history.panels) == 16 and (None, "p") not in history.panels


def test_panel_history_since_gives_only_the_points_from_then_on():
    """A page asks for the points since its last one: a read costs the same
    after an hour on screen as after a minute."""
    history = PanelHistory()
    for i in range(PANEL_POINTS):
        history.add((None, "p"), {"v": float(i)}, at=1000.0 + i)
    out = history.add((None, "p"), {"v": -1.0, "w": 5.0}, at=1000.0 + PANEL_POINTS, since=1000.0 + PANEL_POINTS - 2)
    assert out == {
        "v": [
            [1000.0 + PANEL_POINTS - 2, float(PANEL_POINTS - 2)],
            [1000.0 + PANEL_POINTS - 1, float(PANEL_POINTS - 1)],
            [1000.0 + PANEL_POINTS, -1.0],
        ],
        "w": [[1000.0 + PANEL_POINTS, 5.0]],
    }
    # a close read replaces the last point: asked since that point, it comes again
    out = history.add((None, "p"), {"v": -2.0}, at=1000.0 + PANEL_POINTS + 0.2, since=1000.0 + PANEL_POINTS)
    assert out == {"v": [[1000.0 + PANEL_POINTS, -2.0]], "w": [[1000.0 + PANEL_POINTS, 5.0]]}


@pytest.fixture
def web(node):
    otp.trap_exit(True)
    sup = otp.Supervisor.start_link([Worker.child_spec(None, id="worker")])
    observer.add_panel("Things", "test_observer_panels:good_provider", timeout=30)
    observer.add_panel("Raises", "test_observer_panels:raising_provider", timeout=30)
    server = observer.serve()
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{server.port}", headers={"X-Observer-Token": server.token}, timeout=30
    )
    yield server, client
    client.close()
    server.stop()
    otp.unlink(sup)
    otp.exit(sup, "shutdown")


def test_panels_over_http_with_history_and_errors_in_the_panel(web):
    server, client = web
    assert [p["name"] for p in client.get("/api/panels").json()["panels"]] == ["Raises", "Things"]
    first = client.get("/api/panel/Things").json()
    assert first["tables"]["Things"][0]["id"] == "a" and first["history"]["things"][0][1] == 2.0
    assert first["node"] == otp.node() and first["since"] is None
    later = client.get("/api/panel/Things", params={"since": str(first["at"] + 3600)}).json()
    assert later["since"] == first["at"] + 3600 and later["history"] == {"things": []}  # no point that old
    failed = client.get("/api/panel/Raises")
    assert failed.status_code == 200 and "the provider broke" in failed.json()["error"]
    assert client.get("/api/panel/nope").json()["error"] == "UnknownPanel: no panel 'nope' on this node"
    assert client.get("/api/panel/Things", params={"token": "bad"}, headers={"X-Observer-Token": ""}).status_code == 401
    assert client.get("/api/tree").status_code == 200  # the view goes on


def test_a_hanging_panel_does_not_hang_the_view(web):
    server, client = web
    observer.add_panel("Hangs", "observer_providers:hanging_provider", timeout=1.0)
    with httpx.Client(
        base_url=f"http://127.0.0.1:{server.port}", headers={"X-Observer-Token": server.token}, timeout=30
    ) as other:
        # both at once: the view answers the tree while the panel waits
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            hanging = pool.submit(other.get, "/api/panel/Hangs")
            assert client.get("/api/tree").status_code == 200
            answer = hanging.result(60).json()
    assert "did not answer within 1s" in answer["error"]


def test_the_web_view_reads_a_panel_with_one_runner_and_replaces_a_killed_one(web):
    server, client = web
    first = client.get("/api/panel/Things").json()["tables"]["Things"][0]["pid"]
    again = client.get("/api/panel/Things").json()["tables"]["Things"][0]["pid"]
    assert first == again  # read by the same process: no fork per read
    observer.add_panel("Flaky", "observer_providers:sometimes_hangs", timeout=1.0)
    otp.register(HANG, otp.self())
    assert "did not answer within 1s" in client.get("/api/panel/Flaky").json()["error"]
    hung = recv(lambda m: type(m) is tuple and m[0] == "provider")[1]
    assert not otp.is_alive(hung)  # killed at its timeout
    otp.unregister(HANG)
    fresh = client.get("/api/panel/Flaky").json()
    assert "error" not in fresh and fresh["tables"]["Things"][0]["pid"]["ospid"] != hung.ospid


def test_a_panel_read_asks_nothing_of_the_timer_server(web):
    """A read's timeout is a deadline of the web server's own wait: a timer
    per read (a cast to arm it, a call to cancel it) cost the node as much
    CPU as the read itself."""
    server, client = web
    client.get("/api/panel/Things")  # its runner started
    otp.sys.statistics(TIMER_SERVER, True)
    for _ in range(10):
        assert "error" not in client.get("/api/panel/Things").json()
    stats = otp.sys.statistics(TIMER_SERVER, "get")
    otp.sys.statistics(TIMER_SERVER, False)
    assert stats is not None and stats.messages_in < 10  # the collector's own timers only


def test_serve_adds_the_panels_it_is_given(node):
    server = observer.serve(panels={"Things": "test_observer_panels:good_provider"})
    try:
        assert observer.list_panels() == [observer.PanelSpec("Things", "test_observer_panels:good_provider", 3.0)]
    finally:
        server.stop()
