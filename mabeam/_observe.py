"""MABEAM in the observer: one panel with the agents, their quotas, the open
auctions and markets, the coordination sessions and telemetry, charted.

``mabeam.observe()`` is the one call a program makes: it adds the panel
and starts the web view of the node (:func:`otp.observer.serve`), whose
"MABEAM" tab then shows :func:`read_panel`'s records.  A program that will
be observed from another shell (``python -m otp observer``) calls
:func:`add_observer_panel` instead: the panel is kept for the node's life.

The panel is read through MABEAM's public functions only (``otp`` never
imports ``mabeam``; the observer runs this module's provider by its name,
in a runner process of the node that the web view keeps between reads,
and kills it past its timeout), so what it shows is what a program would
see:

* agents (``list_agents``): status, capabilities, restarts, last exit
  reason, quota tier and stage (``list_quotas``), and from the observer's
  process table (``otp.observer.process_rows``) their queue, messages in/s
  and RSS;
* auctions and markets from the economics board (``list_auctions``,
  ``list_markets``: the board is read, hosts are not asked), open ones
  first;
* running coordination sessions (``coordination.list_sessions``);
* telemetry: active alerts, the last quota enforcements, and every
  histogram series whose name says it is a latency (a part ending in
  ``latency``, ``seconds`` or ``duration``): its p50, p95 and p99 over the
  last minute, in milliseconds.

Values the view charts over time: agents running, messages in/s and out/s
summed over the agents, restarts (the agents' total: a step is a restart),
open auctions and markets, sessions, and the latency percentiles.  A part
that cannot be read (its service is restarting, or MABEAM does not run)
is a note in the panel, never an error of the whole.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any

import otp

from . import coordination, economics, quotas, telemetry
from ._agent_registry import list_agents
from ._agent_registry_server import REGISTRY

if TYPE_CHECKING:
    from otp.observer import Server

# otp.observer is imported where it is used, not here: ``import mabeam``
# (which exports :func:`observe`) stays as fast as it was.

__all__ = ["observe", "add_observer_panel", "read_panel", "PANEL", "PROVIDER", "PANEL_TIMEOUT"]

#: The panel's name (its tab) and its provider.
PANEL = "MABEAM"
PROVIDER = "mabeam._observe:read_panel"
#: Seconds the panel may take: a few calls to MABEAM's services, and on a
#: runner's first read the import of this module (slow on a loaded machine).
PANEL_TIMEOUT = 15.0
#: Rows of each table (the newest or open ones first).
ROWS = 200
#: Name parts that mark a telemetry histogram as a latency.
LATENCY_PARTS = ("latency", "seconds", "duration")
#: Latency series charted at most (one telemetry query each).
LATENCY_SERIES = 4
_ASK_TIMEOUT = 2.0


def add_observer_panel() -> None:
    """Add the MABEAM panel to every observer of this node, for the node's
    life (``python -m otp observer`` from another shell shows it too)."""
    from otp import observer

    observer.add_panel(PANEL, PROVIDER, timeout=PANEL_TIMEOUT)


def observe(host: str = "127.0.0.1", port: int = 0, token: str | None = None, roots: Sequence[otp.Pid] = ()) -> Server:
    """Start the observer's web view of this node with the MABEAM panel and
    return its server (print ``server.url``: it carries the access token).
    MABEAM's supervision tree is followed as an application's; ``roots``
    adds others.  The arguments are :func:`otp.observer.serve`'s."""
    from otp import observer

    add_observer_panel()
    return observer.serve(host=host, port=port, token=token, roots=roots)


# ------------------------------------------------------------------ the provider


def read_panel() -> dict[str, Any]:
    """The panel (the observer's provider: see the module docstring)."""
    from otp.observer import process_rows, safe_repr

    notes: list[str] = []
    values: dict[str, float] = {}
    tables: dict[str, list[dict[str, Any]]] = {}
    if otp.whereis(REGISTRY) is None:
        return {"notes": ["MABEAM is not running on this node (mabeam.start())"]}

    def part(what: str, fn: Callable[[], Any], default: Any) -> Any:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - one part missing, the others shown
            notes.append(f"{what}: not available ({type(exc).__name__}: {exc})")
            return default

    records = part("agents", list_agents, [])
    quota_states = part("quotas", quotas.list_quotas, {})
    tables["Agents"] = _agents(records, quota_states, values, part, process_rows)
    tables["Auctions"] = _auctions(part("auctions", economics.list_auctions, []), values)
    tables["Markets"] = _markets(part("markets", economics.list_markets, []), values)
    sessions = part("sessions", lambda: coordination.list_sessions(timeout=_ASK_TIMEOUT), [])
    values["sessions running"] = len(sessions)
    tables["Coordination sessions"] = [
        {
            "session": safe_repr(s.id, limit=40),
            "kind": s.kind,
            "host": s.host,
            "caller": s.caller,
            "elapsed s": round(s.elapsed, 2),
            "waiting on": s.waiting,
        }
        for s in sorted(sessions, key=lambda s: -s.elapsed)[:ROWS]
    ]
    tables["Alerts"] = [
        {"agent": _id(a.agent_id), "metric": a.metric, "value": a.value, "limit": a.limit, "since": a.since}
        for a in part("alerts", telemetry.list_alerts, [])[-ROWS:]
    ]
    enforcements = part("enforcements", quotas.list_enforcements, [])
    tables["Quota enforcements"] = [
        {
            "agent": _id(e.agent_id),
            "action": e.action,
            "resource": e.resource,
            "usage": e.usage,
            "limit": e.limit,
            "stage": f"{e.stage_before} -> {e.stage_after}",
            "ok": e.success,
        }
        for e in enforcements[-20:][::-1]
    ]
    _latencies(values, part)
    return {"tables": tables, "values": values, "notes": notes}


def _id(agent_id: Hashable) -> str:
    from otp.observer import safe_repr

    return agent_id if isinstance(agent_id, str) else safe_repr(agent_id, limit=80)


def _agents(
    records: list, quota_states: dict, values: dict[str, float], part: Callable[..., Any], rows_of: Callable[..., Any]
) -> list[dict]:
    from otp.observer import safe_repr

    pids = [r.pid for r in records if r.pid is not None]
    rows = part("agent processes", lambda: rows_of(pids), ()) if pids else ()
    by_pid = {row.pid: row for row in rows if row is not None}
    out = []
    running = 0
    rate_in = rate_out = 0.0
    for r in sorted(records, key=lambda r: (r.status != "running", str(r.agent_id))):
        row = by_pid.get(r.pid) if r.pid is not None else None
        quota = quota_states.get(r.agent_id)
        running += r.status == "running"
        rate_in += (row.in_rate or 0.0) if row is not None else 0.0
        rate_out += (row.out_rate or 0.0) if row is not None else 0.0
        out.append(
            {
                "agent": _id(r.agent_id),
                "status": r.status,
                "pid": r.pid,
                "class": r.config.agent_class.__qualname__,
                "capabilities": sorted(r.config.capabilities),
                "restarts": r.restarts,
                "last exit": None if r.last_reason is None else safe_repr(r.last_reason, limit=120),
                "quota": None if quota is None else quota.tier,
                "quota stage": None if quota is None else quota.stage,
                "throttle": None if quota is None else quota.throttle,
                "queue": None if row is None else row.message_queue_len,
                "in/s": None if row is None or row.in_rate is None else round(row.in_rate, 1),
                "rss MiB": None if row is None or row.rss is None else round(row.rss / 2**20, 1),
            }
        )
    values["agents running"] = running
    values["agent messages in/s"] = rate_in
    values["agent messages out/s"] = rate_out
    values["agent restarts"] = sum(r.restarts for r in records)
    return out[:ROWS]


def _open_first(states: list[dict], values: dict[str, float], counted: str) -> list[dict]:
    """The first ROWS of ``states``, open ones first; their number charted as ``counted``."""
    open_ = [s for s in states if s.get("status") == "open"]
    values[counted] = len(open_)
    return (open_ + [s for s in states if s.get("status") != "open"])[:ROWS]


def _auctions(states: list[dict], values: dict[str, float]) -> list[dict]:
    return [
        {
            "auction": s.get("auction_id"),
            "kind": s.get("kind"),
            "item": s.get("item"),
            "status": s.get("status"),
            "bids": s.get("bids"),
            "participants": len(s.get("participants") or ()),
            "winner": s.get("winner"),
            "price": s.get("price"),
            "error": s.get("error"),
        }
        for s in _open_first(states, values, "open auctions")
    ]


def _markets(states: list[dict], values: dict[str, float]) -> list[dict]:
    return [
        {
            "market": s.get("market_id"),
            "item": s.get("item"),
            "status": s.get("status"),
            "best bid": s.get("best_bid"),
            "best ask": s.get("best_ask"),
            "resting": s.get("resting"),
            "trades": s.get("trade_count"),
            "last price": s.get("last_price"),
            "error": s.get("error"),
        }
        for s in _open_first(states, values, "open markets")
    ]


def _latencies(values: dict[str, float], part: Callable[..., Any]) -> None:
    """p50/p95/p99 (ms, last minute) of the latency histograms in telemetry."""
    series = part("telemetry", telemetry.list_series, [])
    found = 0
    for name, tags in series:
        if found >= LATENCY_SERIES:
            break
        if not any(p.endswith(LATENCY_PARTS) for p in name):
            continue
        summary = part("telemetry", lambda n=name, t=tags: telemetry.query_metric(n, dict(t), window=60.0), None)
        if summary is None or summary.kind is not telemetry.MetricKind.HISTOGRAM or not summary.count:
            continue
        found += 1
        label = ".".join(name) + "".join(f" {k}={v}" for k, v in tags)
        for q in ("p50", "p95", "p99"):
            v = getattr(summary, q)
            if v is not None:
                values[f"{label} {q} ms"] = v * 1000.0
