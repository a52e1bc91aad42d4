"""The web view: a starlette application over a :class:`Bridge`.

Every route asks for the access token (query ``token``, header
``X-Observer-Token`` or ``Authorization: Bearer``): the page, its JSON,
the event stream, the actions and ``/metrics``.  The page is one HTML file
with its script and style inlined (``static/``), no build step; the
browser follows ``/events`` (server-sent events) and fetches what changed.

Routes: ``GET /`` the page; ``GET /api/tree``, ``/api/processes``,
``/api/process/{pid}``, ``/api/names``, ``/api/logs``, ``/api/history``,
``/api/stats``; ``POST /api/kill``, ``/api/restart``, ``/api/suspend``,
``/api/resume``; ``GET /events``; ``GET /metrics``.

Panels (:mod:`._panels`): ``GET /api/panels`` lists them, ``GET
/api/panel/{name}`` reads one (its provider runs in a process of the
node) and returns it with the history of its ``values``, which this
server keeps (:class:`PanelHistory`: a point per read, so while a viewer
has the panel on screen); with ``since`` (the time of the last point the
page holds) only the points from then on, which the page adds to its own
copy: a read a second costs the same after an hour on screen as after a
minute, not the JSON of every series' :data:`PANEL_POINTS` points.  Cluster (:mod:`._cluster`): ``GET /api/nodes``
(this node and those connected to it), ``GET /api/search?q=`` (every
node's processes matching ``q``); the reading routes, the panels and the
actions take ``node`` (a query parameter; a field of an action's body)
to ask another node instead of this one.  The event stream and
``/metrics`` are this node's only: a page showing another node refreshes
on a timer.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import pathlib
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from .._errors import OTPError
from ._bridge import Bridge
from ._client import child_id_at, kill, restart_child, resume, suspend
from ._cluster import ask_collector, cluster_nodes, on_node, read_panel_on, search_cluster
from ._json import detail_json, history_json, log_json, names_json, page_json, parse_pid, text, tree_json
from ._metrics import render_text
from ._panels import MAX_VALUES, list_panels

__all__ = ["build_app", "KEEPALIVE", "PanelHistory", "PANEL_POINTS"]

_STATIC = pathlib.Path(__file__).with_name("static")
#: Seconds between comments on an idle event stream (a dead client shows).
KEEPALIVE = 15.0

#: Points of history kept per panel value, and panels (of any node) kept.
PANEL_POINTS = 600
PANELS_KEPT = 16
#: Reads closer together than this replace the last point (two viewers
#: reading at 1 Hz make one point a second, not two).
_POINT_GAP = 0.5

Handler = Callable[[Request], Awaitable[Response]]


class PanelHistory:
    """The history of panels' ``values``: per (node, panel) and value name,
    the last :data:`PANEL_POINTS` ``[time, value]`` points; the panels read
    least recently are forgotten past :data:`PANELS_KEPT`."""

    def __init__(self) -> None:
        self.panels: OrderedDict[tuple[str | None, str], dict[str, deque[list[float]]]] = OrderedDict()

    def add(
        self, key: tuple[str | None, str], values: dict[str, float], at: float, since: float | None = None
    ) -> dict[str, list[list[float]]]:
        """Add the point ``at`` of each value; return the history of the
        panel, of each series its points at or after ``since`` if given
        (the last point may have been replaced since a page took it)."""
        series = self.panels.pop(key, None) or {}
        self.panels[key] = series
        while len(self.panels) > PANELS_KEPT:
            self.panels.popitem(last=False)
        for name, value in values.items():
            points = series.get(name)
            if points is None:
                if len(series) >= MAX_VALUES:
                    continue
                points = series[name] = deque(maxlen=PANEL_POINTS)
            if points and at - points[-1][0] < _POINT_GAP:
                points[-1] = [points[-1][0], value]
            else:
                points.append([at, value])
        if since is None:
            return {name: list(points) for name, points in series.items()}
        return {name: _points_since(points, since) for name, points in series.items()}


def _points_since(points: deque[list[float]], since: float) -> list[list[float]]:
    """The last points of ``points`` (oldest first) at or after ``since``."""
    out = []
    for point in reversed(points):
        if point[0] < since:
            break
        out.append(point)
    out.reverse()
    return out


def _page(token: str) -> str:
    html = (_STATIC / "index.html").read_text()
    script = (_STATIC / "observer.js").read_text()
    style = (_STATIC / "observer.css").read_text()
    return (
        html.replace("/*STYLE*/", style)
        .replace("/*SCRIPT*/", script)
        .replace(
            "__TOKEN__",
            json.dumps(token)[1:-1].replace("<", "\\u003c"),  # a token cannot close the script
        )
    )


def build_app(bridge: Bridge, token: str, node: str) -> Starlette:
    """The application: ``token`` guards every route; ``node`` is the
    node's name (pids in requests are rebuilt with it)."""

    def authorized(request: Request) -> bool:
        given = request.query_params.get("token") or request.headers.get("x-observer-token") or ""
        auth = request.headers.get("authorization", "")
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode(), token.encode())

    def guarded(handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            if not authorized(request):
                return PlainTextResponse("an access token is required (printed when the observer started)", 401)
            try:
                return await handler(request)
            except (ValueError, TypeError, KeyError) as exc:
                return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, 400)
            except asyncio.TimeoutError:
                return JSONResponse({"error": "the collector did not answer in time"}, 504)
            except OTPError as exc:
                return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, 502)

        return run

    page = _page(token)
    panel_history = PanelHistory()

    def node_of(request: Request) -> str | None:
        """The node a request is about: None for this one."""
        asked = request.query_params.get("node") or None
        return None if asked == node else asked

    async def collector(request: Request, op: str, *args: Any, timeout: float = 15.0) -> Any:
        other = node_of(request)
        if other is None:
            return await bridge.ask(op, *args, timeout=timeout)
        return await bridge.act(on_node, other, ask_collector, op, *args, timeout=timeout + 20.0)

    def pid_of(request: Request, value: object, body_node: object = None) -> Any:
        other = body_node if isinstance(body_node, str) and body_node else node_of(request)
        return parse_pid(other or node, value)

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    async def tree(request: Request) -> Response:
        return JSONResponse(tree_json(await collector(request, "tree")))

    async def processes(request: Request) -> Response:
        q = request.query_params
        page = await collector(
            request,
            "processes",
            q.get("sort", "pid"),
            q.get("desc", "0") in ("1", "true"),
            int(q.get("offset", "0")),
            int(q.get("limit", "50")),
            q.get("search") or None,
        )
        return JSONResponse(page_json(page))

    async def process(request: Request) -> Response:
        pid = pid_of(request, request.path_params["pid"])
        want_state = request.query_params.get("state", "1") in ("1", "true")
        detail = await collector(request, "process_detail", pid, want_state, 2.0, timeout=20.0)
        return JSONResponse(detail_json(detail))

    async def names(request: Request) -> Response:
        return JSONResponse(names_json(await collector(request, "names")))

    async def logs(request: Request) -> Response:
        q = request.query_params
        pid = pid_of(request, q["pid"]) if q.get("pid") else None
        page = await collector(
            request,
            "logs",
            pid,
            q.get("kind") or None,
            int(q.get("after", "0")),
            int(q.get("limit", "200")),
            q.get("search"),
        )
        return JSONResponse({"entries": [log_json(e) for e in page.entries], "last": page.last, "tapped": page.tapped})

    async def history(request: Request) -> Response:
        return JSONResponse(history_json(await collector(request, "history")))

    async def stats(request: Request) -> Response:
        s = await collector(request, "stats")
        return JSONResponse({field: getattr(s, field) for field in s.__dataclass_fields__})

    async def metrics(request: Request) -> Response:
        families = await bridge.ask("metrics")
        return PlainTextResponse(render_text(families), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def body(request: Request) -> dict[str, Any]:
        data = await request.json()
        if not isinstance(data, dict):
            raise ValueError("the body is a JSON object")
        return data

    async def do_kill(request: Request) -> Response:
        data = await body(request)
        reason = str(data.get("reason") or "kill")
        await bridge.act(kill, pid_of(request, data.get("pid"), data.get("node")), reason)
        return JSONResponse({"ok": True})

    async def do_restart(request: Request) -> Response:
        data = await body(request)
        sup = pid_of(request, data.get("supervisor"), data.get("node"))
        index = int(data.get("index", -1))
        expected = data.get("child_id")
        child_id = await bridge.act(child_id_at, sup, index)
        if expected is not None and text(child_id) != expected:
            return JSONResponse({"error": "the supervisor's children changed; reload the tree"}, 409)
        pid = await bridge.act(restart_child, sup, child_id)
        return JSONResponse({"ok": True, "pid": None if pid is None else f"{pid.ospid}-{pid.uid:016x}-{pid.start}"})

    async def do_suspend(request: Request) -> Response:
        data = await body(request)
        await bridge.act(suspend, pid_of(request, data.get("pid"), data.get("node")))
        return JSONResponse({"ok": True})

    async def do_resume(request: Request) -> Response:
        data = await body(request)
        await bridge.act(resume, pid_of(request, data.get("pid"), data.get("node")))
        return JSONResponse({"ok": True})

    async def nodes(request: Request) -> Response:
        return JSONResponse({"self": node, "nodes": await bridge.act(cluster_nodes, timeout=15.0)})

    async def search(request: Request) -> Response:
        q = request.query_params
        needle = q.get("q", "")
        if not needle:
            raise ValueError("search what? (q=)")
        answers = await bridge.act(search_cluster, needle, int(q.get("limit", "50")), timeout=40.0)
        out = []
        for name, page in answers:
            if isinstance(page, BaseException):
                out.append({"node": name, "error": f"{type(page).__name__}: {page}"})
            else:
                out.append({"node": name, **page_json(page)})
        return JSONResponse({"nodes": out})

    async def panels(request: Request) -> Response:
        specs = await bridge.act(on_node, node_of(request), list_panels, timeout=30.0)
        return JSONResponse({"panels": [{"name": s.name, "timeout": s.timeout} for s in specs]})

    async def panel(request: Request) -> Response:
        name = request.path_params["name"]
        other = node_of(request)
        since_arg = request.query_params.get("since")
        since = float(since_arg) if since_arg else None
        at = time.time()
        try:
            if other is None:
                data = await bridge.panel(name)
            else:
                data = await bridge.act(read_panel_on, other, name, timeout=90.0)
        except OTPError as exc:  # shown in the panel, with the charts so far
            data = {
                "tables": {},
                "values": {},
                "notes": [],
                "cut": {},
                "error": str(exc) if type(exc) is OTPError else f"{type(exc).__name__}: {exc}",
            }
        history = panel_history.add((other, name), data["values"], at, since)
        body = {"name": name, "node": other or node, "at": at, **data, "history": history, "since": since}
        return JSONResponse(body)

    async def events(request: Request) -> Response:
        queue = await bridge.subscribe()

        async def stream() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n\nevent: hello\ndata: {}\n\n"
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), KEEPALIVE)
                    except asyncio.TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if event is None:
                        return
                    yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
            finally:
                bridge.unsubscribe(queue)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )

    routes = [
        Route("/", guarded(index)),
        Route("/api/tree", guarded(tree)),
        Route("/api/processes", guarded(processes)),
        Route("/api/process/{pid}", guarded(process)),
        Route("/api/names", guarded(names)),
        Route("/api/logs", guarded(logs)),
        Route("/api/history", guarded(history)),
        Route("/api/stats", guarded(stats)),
        Route("/api/kill", guarded(do_kill), methods=["POST"]),
        Route("/api/restart", guarded(do_restart), methods=["POST"]),
        Route("/api/suspend", guarded(do_suspend), methods=["POST"]),
        Route("/api/resume", guarded(do_resume), methods=["POST"]),
        Route("/events", guarded(events)),
        Route("/metrics", guarded(metrics)),
        Route("/api/nodes", guarded(nodes)),
        Route("/api/search", guarded(search)),
        Route("/api/panels", guarded(panels)),
        Route("/api/panel/{name:path}", guarded(panel)),
    ]
    return Starlette(routes=routes)
