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
"""

from __future__ import annotations

import asyncio
import hmac
import json
import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from .._errors import OTPError
from ._bridge import Bridge
from ._client import child_id_at, kill, restart_child, resume, suspend
from ._json import detail_json, history_json, log_json, names_json, page_json, parse_pid, text, tree_json
from ._metrics import render_text

__all__ = ["build_app", "KEEPALIVE"]

_STATIC = pathlib.Path(__file__).with_name("static")
#: Seconds between comments on an idle event stream (a dead client shows).
KEEPALIVE = 15.0

Handler = Callable[[Request], Awaitable[Response]]


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

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    async def tree(request: Request) -> Response:
        return JSONResponse(tree_json(await bridge.ask("tree")))

    async def processes(request: Request) -> Response:
        q = request.query_params
        page = await bridge.ask(
            "processes",
            q.get("sort", "pid"),
            q.get("desc", "0") in ("1", "true"),
            int(q.get("offset", "0")),
            int(q.get("limit", "50")),
            q.get("search") or None,
        )
        return JSONResponse(page_json(page))

    async def process(request: Request) -> Response:
        pid = parse_pid(node, request.path_params["pid"])
        want_state = request.query_params.get("state", "1") in ("1", "true")
        detail = await bridge.ask("process_detail", pid, want_state, 2.0, timeout=20.0)
        return JSONResponse(detail_json(detail))

    async def names(request: Request) -> Response:
        return JSONResponse(names_json(await bridge.ask("names")))

    async def logs(request: Request) -> Response:
        q = request.query_params
        pid = parse_pid(node, q["pid"]) if q.get("pid") else None
        page = await bridge.ask(
            "logs", pid, q.get("kind") or None, int(q.get("after", "0")), int(q.get("limit", "200")), q.get("search")
        )
        return JSONResponse({"entries": [log_json(e) for e in page.entries], "last": page.last, "tapped": page.tapped})

    async def history(request: Request) -> Response:
        return JSONResponse(history_json(await bridge.ask("history")))

    async def stats(request: Request) -> Response:
        s = await bridge.ask("stats")
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
        await bridge.act(kill, parse_pid(node, data.get("pid")), reason)
        return JSONResponse({"ok": True})

    async def do_restart(request: Request) -> Response:
        data = await body(request)
        sup = parse_pid(node, data.get("supervisor"))
        index = int(data.get("index", -1))
        expected = data.get("child_id")
        child_id = await bridge.act(child_id_at, sup, index)
        if expected is not None and text(child_id) != expected:
            return JSONResponse({"error": "the supervisor's children changed; reload the tree"}, 409)
        pid = await bridge.act(restart_child, sup, child_id)
        return JSONResponse({"ok": True, "pid": None if pid is None else f"{pid.ospid}-{pid.uid:016x}-{pid.start}"})

    async def do_suspend(request: Request) -> Response:
        data = await body(request)
        await bridge.act(suspend, parse_pid(node, data.get("pid")))
        return JSONResponse({"ok": True})

    async def do_resume(request: Request) -> Response:
        data = await body(request)
        await bridge.act(resume, parse_pid(node, data.get("pid")))
        return JSONResponse({"ok": True})

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
    ]
    return Starlette(routes=routes)
