"""MABEAM's panel in the observer (mabeam._observe): agents with status,
capabilities, restarts and quota state; open auctions and markets; running
coordination sessions; telemetry charted (values with a history kept by
the web view)."""

from __future__ import annotations

import os
import signal

import pytest
from helpers import recv

import mabeam
import mabeam._observe as mabeam_observe
import otp
import otp.observer as observer
from mabeam import coordination, economics, quotas, telemetry

httpx = pytest.importorskip("httpx")


class Scout(mabeam.Agent):
    capabilities = frozenset({"search"})

    def handle_request(self, message):
        return message


class Holder(mabeam.Agent):
    """Votes only once told to (by a plain message): a session waits on it."""

    def handle_vote(self, proposal):
        otp.send(proposal, ("voting", otp.self()))
        otp.receive(60, lambda m: m == "go")
        return "approve"


def rows_by(table, key):
    return {row[key]: row for row in table}


def test_the_panel_without_mabeam_says_so(node):
    mabeam_observe.add_observer_panel()
    data = observer.read_panel(mabeam_observe.PANEL)
    assert data["tables"] == {} and "not running" in data["notes"][0]


def test_agents_quotas_auctions_markets_and_restarts(app):
    for agent_id, caps in (("s1", {"maps"}), ("s2", set())):
        mabeam.register_agent(mabeam.AgentConfig(agent_id, Scout, capabilities=caps))
        mabeam.start_agent(agent_id)
    quotas.set_quota("s1", "heavy")
    auction = economics.create_auction("english", "lot", reserve=5)
    market = economics.create_market("cpu")
    old = mabeam.whereis_agent("s2")
    os.kill(old.ospid, signal.SIGKILL)
    mabeam.await_status("s2", "running", timeout=30)  # restarted by the registry
    assert mabeam.get_agent("s2").restarts == 1

    mabeam_observe.add_observer_panel()
    data = observer.read_panel(mabeam_observe.PANEL)
    agents = rows_by(data["tables"]["Agents"], "agent")
    assert agents["s1"]["status"] == "running" and agents["s1"]["capabilities"] == "maps, search"
    assert agents["s1"]["quota"] == "heavy" and agents["s1"]["quota stage"] == "normal"
    assert agents["s2"]["restarts"] == 1 and agents["s2"]["last exit"] == "'killed'"
    assert agents["s2"]["pid"]["ospid"] == mabeam.whereis_agent("s2").ospid and agents["s2"]["quota"] is None
    assert rows_by(data["tables"]["Auctions"], "auction")[auction.auction_id]["status"] == "open"
    assert rows_by(data["tables"]["Markets"], "market")[market.market_id]["item"] == "cpu"
    values = data["values"]
    assert values["agents running"] == 2 and values["agent restarts"] == 1
    assert values["open auctions"] >= 1 and values["open markets"] >= 1
    assert data["notes"] == []


def test_a_running_session_shows_until_it_ends(app):
    mabeam.register_agent(mabeam.AgentConfig("h", Holder))
    holder = mabeam.start_agent("h")
    session = coordination.run_consensus_async(["h"], otp.self(), timeout=60)
    recv(lambda m: m == ("voting", holder))
    mabeam_observe.add_observer_panel()
    data = observer.read_panel(mabeam_observe.PANEL)
    (row,) = data["tables"]["Coordination sessions"]
    assert row["kind"] == "consensus" and row["waiting on"] == 1 and row["caller"]["ospid"] == otp.self().ospid
    assert data["values"]["sessions running"] == 1
    otp.send(holder, "go")
    assert session.result(30).decision == "approve"
    assert observer.read_panel(mabeam_observe.PANEL)["tables"]["Coordination sessions"] == []


def test_latency_histograms_in_telemetry_are_charted_as_percentiles(app):
    for ms in range(1, 101):
        telemetry.record_metric(("demo", "call", "seconds"), ms / 1000, kind="histogram")
    telemetry.record_metric(("demo", "queue"), 3.0)  # a gauge: not a latency
    telemetry.get_stats()  # a call after the casts: they are in
    mabeam_observe.add_observer_panel()
    values = observer.read_panel(mabeam_observe.PANEL)["values"]
    assert values["demo.call.seconds p50 ms"] == pytest.approx(50.0, rel=0.02)
    assert values["demo.call.seconds p95 ms"] == pytest.approx(95.0, rel=0.02)
    assert values["demo.call.seconds p99 ms"] == pytest.approx(99.0, rel=0.02)
    assert not any(k.startswith("demo.queue") for k in values)


def test_mabeam_observe_serves_the_panel_over_http(app):
    mabeam.register_agent(mabeam.AgentConfig("s1", Scout))
    mabeam.start_agent("s1")
    server = mabeam_observe.observe()
    try:
        assert server.url.startswith("http://127.0.0.1:") and "token=" in server.url
        with httpx.Client(
            base_url=f"http://127.0.0.1:{server.port}", headers={"X-Observer-Token": server.token}, timeout=30
        ) as client:
            assert [p["name"] for p in client.get("/api/panels").json()["panels"]] == ["MABEAM"]
            panel = client.get("/api/panel/MABEAM").json()
            assert panel["tables"]["Agents"][0]["agent"] == "s1"
            assert panel["history"]["agents running"][-1][1] == 1.0
            tree = client.get("/api/tree").json()
            assert any(r["origin"] == "application mabeam" for r in tree["roots"])
    finally:
        server.stop()


def test_demo_observing_prints_the_url_and_serves_during_the_run(node):
    import io

    from mabeam.demo._observe import missing_observer_extra, observing

    assert missing_observer_extra() == []
    out = io.StringIO()
    with observing(True, out=out) as server:
        line = out.getvalue()
        assert line == f"observer: {server.url}\n" and f"token={server.token}" in line
        ref = otp.monitor(server.pid)
        with httpx.Client(timeout=30) as client:
            assert client.get(server.url).status_code == 200  # the page, with the token in its URL
            panels = client.get(server.url.replace("/?", "/api/panels?")).json()["panels"]
            assert [p["name"] for p in panels] == ["MABEAM"]
    assert recv(lambda m: isinstance(m, otp.DOWN) and m.ref == ref).reason == "shutdown"
    with observing(False) as nothing:
        assert nothing is None
