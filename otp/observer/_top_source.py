"""Where ``otp top`` gets its data: the observer's web server, over HTTP.

The terminal view runs in an OS process that is not a process of the node
(``python -m otp top NODE`` from another shell), so it cannot ask the
collector with ``otp`` calls.  It reads the same JSON API and event
stream the browser does (:mod:`._web`), from a web view started inside
the node (:func:`._attach.attach`, or :func:`otp.observer.serve` when the
program calls :func:`otp.observer.top` itself).  Every request has a
timeout, so a node that does not answer shows as a message, never as a
frozen screen.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

__all__ = ["HttpSource", "SourceError", "short_pid"]

#: Seconds a request may take (the server answers a drill-down within 3 s).
REQUEST_TIMEOUT = 10.0


class SourceError(Exception):
    """The web view answered with an error, or not at all."""


def short_pid(pid_id: str | None) -> str:
    """The OS pid of a pid as the JSON carries it (``ospid-uid-start``)."""
    return "-" if not pid_id else pid_id.split("-", 1)[0]


class HttpSource:
    """The web view at ``base_url`` with access ``token``; JSON dicts out."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_url(cls, url: str) -> HttpSource:
        """From a URL as the observer prints it (``http://H:P/?token=T``)."""
        parts = urlsplit(url)
        token = parse_qs(parts.query).get("token", [""])[0]
        return cls(f"{parts.scheme}://{parts.netloc}", token)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                headers={"X-Observer-Token": self.token},
                timeout=httpx.Timeout(REQUEST_TIMEOUT),
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _get(self, path: str, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        try:
            response = await self._http().get(path, params=query)
        except httpx.HTTPError as exc:
            raise SourceError(f"{type(exc).__name__}: {exc}") from exc
        return self._json(response)

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            response = await self._http().post(path, json=body, timeout=60.0)
        except httpx.HTTPError as exc:
            raise SourceError(f"{type(exc).__name__}: {exc}") from exc
        return self._json(response)

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            data = response.json()
        except ValueError:
            data = {"error": response.text[:200]}
        if response.status_code != 200:
            error = data.get("error") if isinstance(data, dict) else None
            raise SourceError(error or f"HTTP {response.status_code}")
        return data

    async def tree(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._get("/api/tree")
        return result

    async def processes(
        self, sort: str, descending: bool, offset: int, limit: int, search: str | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._get(
            "/api/processes", sort=sort, desc="1" if descending else "0", offset=offset, limit=limit, search=search
        )
        return result

    async def detail(self, pid: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._get(f"/api/process/{pid}")
        return result

    async def names(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._get("/api/names")
        return result

    async def logs(self, pid: str | None = None, after: int = 0, limit: int = 200) -> dict[str, Any]:
        result: dict[str, Any] = await self._get("/api/logs", pid=pid, after=after, limit=limit)
        return result

    async def kill(self, pid: str, reason: str) -> None:
        await self._post("/api/kill", {"pid": pid, "reason": reason})

    async def restart(self, supervisor: str, index: int, child_id: str | None) -> None:
        await self._post("/api/restart", {"supervisor": supervisor, "index": index, "child_id": child_id})

    async def suspend(self, pid: str) -> None:
        await self._post("/api/suspend", {"pid": pid})

    async def resume(self, pid: str) -> None:
        await self._post("/api/resume", {"pid": pid})

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The server-sent events as dicts (``{"type": "tree"}``, ...),
        ``{"type": "hello"}`` first; ends when the stream does."""
        kind = "message"
        timeout = httpx.Timeout(REQUEST_TIMEOUT, read=60.0)  # keepalives come every 15 s
        async with self._http().stream("GET", "/events", timeout=timeout) as response:
            if response.status_code != 200:
                raise SourceError(f"the event stream answered HTTP {response.status_code}")
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    try:
                        data = json.loads(line[5:])
                    except ValueError:
                        data = {}
                    event = data if isinstance(data, dict) else {}
                    event.setdefault("type", kind)
                    yield event
                    kind = "message"
