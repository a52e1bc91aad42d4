"""EtcdStore: the cluster store (:mod:`otp._cluster_store`) on etcd's v3 JSON gateway.

Why etcd's own JSON gateway over the standard library, and no client
package.  We need synchronous calls with timeouts from a plain thread or
process, watches that deliver events as they happen, leases and
compare-and-put transactions.  The candidates:

* ``etcd3``, the best known, no longer imports with current protobuf
  (its generated code predates protobuf 4).
* ``aetcd`` and ``etcetra`` are gRPC clients for asyncio only: every
  synchronous call would need an event loop of its own.  Both bring
  grpcio, which does not support ``fork`` (its client-side fork support
  needs two environment variables and is not developed further, says its
  ``doc/fork_support.md``) while this kernel starts every process by
  forking; and etcetra pins ``grpcio==1.62.2`` and ``protobuf~=4.25``,
  which would decide those versions for everything installed beside us.
* ``etcd3-py`` speaks the same JSON gateway as this module, but through
  requests, aiohttp, pyOpenSSL, cryptography and six, and has had no
  release since 2019.

The gateway is part of every etcd v3 server (``/v3/kv/range``,
``/v3/kv/txn``, ``/v3/lease/grant``, ``/v3/lease/keepalive``, streaming
``/v3/watch``), documented and versioned with it; a client of the few
calls we need is a few hundred lines of ``http.client`` and ``json``, with
no dependency, and with its timeouts and retries in our hands.  It costs
little: against one member on localhost, a put took 0.7 ms at the median
here and 0.5 ms through gRPC (aetcd); a put_if_absent 1.0 ms and 0.7 ms; a
get 0.8 ms and 0.55 ms; a Raft round with a real disk's fsync costs more
than the difference.  Plain HTTP only: TLS and authentication are not done.

Requests carry gRPC's ``hasleader`` metadata, so a member cut off from
the quorum answers "no leader" at once (and ends the watches it serves)
instead of serving stale data; the call then moves on to another member.

An :class:`EtcdStore` may be shared by the threads of one process; after
``fork`` the child must open its own (watch threads do not cross a fork).

The HTTP requests and the rules on sending one again are in
:mod:`otp._etcd_http`; watches in :mod:`otp._etcd_watch`.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from ._cluster_store import (
    DEFAULT_TIMEOUT,
    KeyValue,
    Lease,
    LeaseExpired,
    Snapshot,
    StoreRejected,
    StoreUnavailable,
    WatchEvent,
)
from ._etcd_http import (
    ATTEMPT_FIRST,
    BACKOFF_CAP,
    BACKOFF_FIRST,
    DEADLINE_EXCEEDED,
    HEADERS,
    NOT_FOUND,
    UNAVAILABLE,
    AttemptFailed,
    Endpoint,
    answer_error,
    b64,
    check_key,
    check_timeout,
    check_value,
    int_field,
    is_dropped,
    key_value,
    lease_number,
    not_applied,
    prefix_end,
    sock_timeout,
)
from ._etcd_watch import EtcdWatch

__all__ = ["EtcdStore"]

log = logging.getLogger("otp.cluster_store")


# -- etcd -------------------------------------------------------------------


class EtcdStore:
    """:class:`ClusterStore` on etcd's v3 JSON gateway.

    ``endpoints`` are the client URLs of the members (``http://host:port``
    or ``host:port``); a call starts with the member that answered last.
    Constructing one sends nothing.
    """

    def __init__(self, endpoints: str | Iterable[str]) -> None:
        urls = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not urls:
            raise ValueError("no endpoints")
        self._endpoints = [Endpoint(u) for u in urls]
        self._lock = threading.Lock()
        self._idle: dict[int, list[http.client.HTTPConnection]] = {}
        self._preferred = 0
        self._watches: set[EtcdWatch] = set()
        self._closed = False
        self._pid = os.getpid()

    def __enter__(self) -> EtcdStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EtcdStore({[e.url for e in self._endpoints]!r})"

    @property
    def endpoints(self) -> list[str]:
        return [e.url for e in self._endpoints]

    # -- the operations

    def get(self, key: str, *, timeout: float | None = DEFAULT_TIMEOUT) -> KeyValue | None:
        body = {"key": b64(check_key(key))}
        answer = self._call("/v3/kv/range", body, timeout, resend=True)
        kvs = answer.get("kvs") or []
        return key_value(kvs[0]) if kvs else None

    def get_prefix(self, prefix: str, *, timeout: float | None = DEFAULT_TIMEOUT) -> Snapshot:
        raw = check_key(prefix, "prefix")
        body = {"key": b64(raw or b"\0"), "range_end": b64(prefix_end(raw))}
        answer = self._call("/v3/kv/range", body, timeout, resend=True)
        items = tuple(key_value(kv) for kv in answer.get("kvs") or [])
        return Snapshot(items=items, revision=int_field(answer.get("header") or {}, "revision"))

    def put(
        self, key: str, value: bytes, *, lease: Lease | int | None = None, timeout: float | None = DEFAULT_TIMEOUT
    ) -> int:
        lease_id = lease_number(lease)
        body: dict[str, Any] = {"key": b64(check_key(key)), "value": b64(check_value(value))}
        if lease_id:
            body["lease"] = str(lease_id)
        answer = self._call("/v3/kv/put", body, timeout, resend=True, lease=lease_id)
        return int_field(answer.get("header") or {}, "revision")

    def put_if_absent(
        self, key: str, value: bytes, *, lease: Lease | int | None = None, timeout: float | None = DEFAULT_TIMEOUT
    ) -> bool:
        lease_id = lease_number(lease)
        raw_key, raw_value = check_key(key), check_value(value)
        put: dict[str, Any] = {"key": b64(raw_key), "value": b64(raw_value)}
        if lease_id:
            put["lease"] = str(lease_id)
        body = {
            "compare": [{"target": "CREATE", "key": b64(raw_key), "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": put}],
            "failure": [{"request_range": {"key": b64(raw_key)}}],
        }
        # With a lease, a resent transaction can tell its own earlier
        # success: the key then holds our value, bound to our lease (no
        # other node holds that lease).  Without one it cannot.
        answer = self._call("/v3/kv/txn", body, timeout, resend=bool(lease_id), lease=lease_id)
        if answer.get("succeeded"):
            return True
        if not lease_id:
            return False
        for response in answer.get("responses") or []:
            for kv in (response.get("response_range") or {}).get("kvs") or []:
                held = key_value(kv)
                return held.lease == lease_id and held.value == raw_value
        return False

    def delete(self, key: str, *, lease: Lease | int | None = None, timeout: float | None = DEFAULT_TIMEOUT) -> bool:
        lease_id = lease_number(lease)
        raw_key = check_key(key)
        if not lease_id:
            answer = self._call("/v3/kv/deleterange", {"key": b64(raw_key)}, timeout, resend=True)
            return int_field(answer, "deleted") > 0
        body = {
            "compare": [{"target": "LEASE", "key": b64(raw_key), "result": "EQUAL", "lease": str(lease_id)}],
            "success": [{"request_delete_range": {"key": b64(raw_key)}}],
        }
        answer = self._call("/v3/kv/txn", body, timeout, resend=True)
        if not answer.get("succeeded"):
            return False
        responses = answer.get("responses") or [{}]
        return int_field(responses[0].get("response_delete_range") or {}, "deleted") > 0

    def grant_lease(self, ttl: int, *, timeout: float | None = DEFAULT_TIMEOUT) -> Lease:
        if isinstance(ttl, bool) or not isinstance(ttl, int):
            raise TypeError(f"ttl must be an int of seconds, not {type(ttl).__name__}")
        if ttl < 1:
            raise ValueError(f"ttl must be >= 1 second, not {ttl}")
        # A grant whose answer is lost leaves a lease nobody keeps alive:
        # it expires alone, so sending the grant again is harmless.
        answer = self._call("/v3/lease/grant", {"TTL": str(ttl)}, timeout, resend=True)
        if answer.get("error"):
            raise StoreRejected(2, str(answer["error"]))
        return Lease(id=int_field(answer, "ID"), ttl=int_field(answer, "TTL"))

    def keepalive(self, lease: Lease | int, *, timeout: float | None = DEFAULT_TIMEOUT) -> int:
        """Renew the lease once; call it every ``ttl / 3`` seconds.

        One call per tick, not a thread: the owner of the lease (a node's
        process) calls it from its own timer, so the lease lives exactly as
        long as its owner can act, and a failure (:class:`LeaseExpired`, or
        :class:`StoreUnavailable` for longer than the TTL) reaches the one
        who must give up the names bound to it.  A thread would keep the
        lease of a stuck owner alive, report its failures to nobody, and
        would not survive the ``fork`` that starts the kernel's processes.
        """
        lease_id = lease_number(lease)
        if not lease_id:
            raise ValueError("keepalive needs a lease")
        answer = self._call("/v3/lease/keepalive", {"ID": str(lease_id)}, timeout, resend=True)
        ttl = int_field(answer, "TTL")
        if ttl <= 0:
            raise LeaseExpired(lease_id)
        return ttl

    def revoke_lease(self, lease: Lease | int, *, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        lease_id = lease_number(lease)
        if not lease_id:
            raise ValueError("revoke_lease needs a lease")
        try:
            self._call("/v3/lease/revoke", {"ID": str(lease_id)}, timeout, resend=True, lease=lease_id)
        except LeaseExpired:
            pass

    def watch_prefix(
        self,
        prefix: str,
        deliver: Callable[[WatchEvent], object],
        *,
        start_revision: int | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> EtcdWatch:
        """Watch every key under ``prefix``; returns once the store has
        confirmed the watch, so every change after that is delivered.

        ``deliver`` runs in the watch's own thread, one event at a time, in
        the store's order, each event once.  With ``start_revision`` the
        watch first delivers the changes since that revision (read with
        :meth:`get_prefix`, watch from ``snapshot.revision + 1``); if that
        revision is compacted, the watch ends with
        ``WatchEnded(WatchCompacted)`` (etcd confirms the watch first, then
        says so).  If its member fails, the watch resumes on another one
        from the revision after the last event it delivered, trying for
        ``timeout`` seconds; if it cannot, it delivers :class:`WatchEnded`
        and stops.  An exception raised by ``deliver`` is logged and stops
        the watch.
        """
        raw = check_key(prefix, "prefix")
        deadline_budget = check_timeout(timeout)
        if start_revision is not None:
            if isinstance(start_revision, bool) or not isinstance(start_revision, int):
                raise TypeError("start_revision must be an int or None")
            if start_revision < 1:
                raise ValueError(f"start_revision must be >= 1, not {start_revision}")
        if not callable(deliver):
            raise TypeError("deliver must be callable")
        self._check_open()
        watch = EtcdWatch(self, raw, deliver, deadline_budget)
        watch.open(start_revision)
        with self._lock:
            self._watches.add(watch)
        watch.start()
        return watch

    def close(self) -> None:
        with self._lock:
            self._closed = True
            watches = list(self._watches)
            idle = [c for conns in self._idle.values() for c in conns]
            self._idle.clear()
        for watch in watches:
            watch.cancel()
        for conn in idle:
            conn.close()

    # -- the plumbing

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the store client is closed")

    def _order(self) -> list[int]:
        n = len(self._endpoints)
        first = self._preferred
        return [(first + i) % n for i in range(n)]

    def _checkout(self, index: int, remaining: float) -> http.client.HTTPConnection:
        """A connection to endpoint ``index``: an idle one if it is still
        open, else a new one."""
        with self._lock:
            if self._pid != os.getpid():  # forked: these sockets are the parent's
                self._idle.clear()
                self._pid = os.getpid()
            idle = self._idle.get(index, [])
            while idle:
                conn = idle.pop()
                if not is_dropped(conn):
                    return conn
                conn.close()
        return self._endpoints[index].connect(remaining)

    def _checkin(self, index: int, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and self._pid == os.getpid():
                self._idle.setdefault(index, []).append(conn)
                return
        conn.close()

    def _call(
        self, path: str, body: dict[str, Any], timeout: object, *, resend: bool, lease: int = 0
    ) -> dict[str, Any]:
        """POST ``body`` to ``path`` on some member and return its answer.

        ``resend`` says whether the request may be sent again after it may
        have reached a member; a request that surely did not (refused
        connection, 'no leader') is always sent on to the next member.
        """
        budget = check_timeout(timeout)
        self._check_open()
        deadline = time.monotonic() + budget
        data = json.dumps(body).encode()
        attempts: list[tuple[str, str]] = []
        backoff = BACKOFF_FIRST
        # The first round gives each member its share of the budget (and no
        # more than ATTEMPT_FIRST): the member last heard from may be the
        # one cut off, and its silence must not spend the whole budget of a
        # request others would answer at once.
        attempt_cap = min(ATTEMPT_FIRST, budget / len(self._endpoints)) if resend else math.inf
        while True:
            for index in self._order():
                remaining = deadline - time.monotonic()
                if remaining <= 0 and attempts:
                    raise StoreUnavailable(f"no member answered {path} within {budget} s", attempts=attempts)
                endpoint = self._endpoints[index]
                try:
                    answer = self._attempt(index, path, data, min(remaining, attempt_cap), lease)
                except AttemptFailed as failure:
                    attempts.append((endpoint.url, failure.why))
                    if failure.sent and not resend:
                        raise StoreUnavailable(
                            f"{path}: the answer was lost", maybe_applied=True, attempts=attempts
                        ) from None
                    if not failure.retry:
                        raise StoreUnavailable(f"{path} failed", attempts=attempts) from None
                    continue
                self._preferred = index
                return answer
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StoreUnavailable(f"no member answered {path} within {budget} s", attempts=attempts)
            time.sleep(min(backoff, remaining))
            backoff = min(backoff * 2, BACKOFF_CAP)
            attempt_cap *= 2

    def _attempt(self, index: int, path: str, data: bytes, remaining: float, lease: int) -> dict[str, Any]:
        try:
            conn = self._checkout(index, remaining)
        except OSError as e:
            raise AttemptFailed(f"connect: {e}", sent=False) from None
        try:
            assert conn.sock is not None
            conn.sock.settimeout(sock_timeout(remaining))
            conn.request("POST", path, body=data, headers=HEADERS)
            response = conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            why = "no answer" if isinstance(e, TimeoutError) else f"{type(e).__name__}: {e}"
            raise AttemptFailed(f"{why} (waited up to {remaining:.3g} s)", sent=True) from None
        if response.will_close:
            conn.close()
        else:
            self._checkin(index, conn)
        if response.status == 200:
            answer = self._decode(payload)
            if "result" in answer:  # a streaming call's single answer
                answer = answer["result"]
            elif "error" in answer and isinstance(answer["error"], dict):
                code, message = answer_error(response.status, payload)
                return self._refuse(code, message, lease)
            return answer
        code, message = answer_error(response.status, payload)
        return self._refuse(code, message, lease)

    @staticmethod
    def _decode(payload: bytes) -> dict[str, Any]:
        try:
            # A streamed answer may carry a trailing newline, or several
            # objects; the first is the one asked for.
            answer, _end = json.JSONDecoder().raw_decode(payload.decode().strip())
        except ValueError as e:
            raise StoreRejected(2, f"unreadable answer: {payload[:200]!r}") from e
        if not isinstance(answer, dict):
            raise StoreRejected(2, f"unexpected answer: {payload[:200]!r}")
        return answer

    @staticmethod
    def _refuse(code: int, message: str, lease: int) -> NoReturn:
        if code == NOT_FOUND and "lease not found" in message:
            raise LeaseExpired(lease)
        if code in (UNAVAILABLE, DEADLINE_EXCEEDED) or not_applied(message):
            raise AttemptFailed(message, sent=not not_applied(message))
        raise StoreRejected(code, message)
