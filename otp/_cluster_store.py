"""The cluster store: what the nodes of a cluster agree on, kept in etcd.

Nodes find each other and hold global names through a store that runs
Raft, so that a name has one holder even while nodes die or the network
splits.  A node registers itself (name, endpoint, public key) under a
lease that it keeps alive; peers discover it by reading a prefix and then
watching it from the revision they read; a global name is taken by a
transaction on the key's absence, bound to the taker's lease, so a node
whose lease expires loses its names with it and must treat them as lost.

:class:`ClusterStore` is that interface, small enough to fake in the tests
of the layers above; :class:`EtcdStore` implements it on etcd (3.4 or
later).  Nothing here knows about processes or nodes: this module uses no
part of the kernel but its error root.

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

Every blocking call takes ``timeout`` in seconds, with the kernel's
meaning: ``None`` or ``math.inf`` waits forever, a finite value ``>= 0``
that long, anything else raises :class:`ValueError` or :class:`TypeError`
before anything is sent.  Within its timeout a call tries every endpoint
in turn, as often as it can, so a member that dies or an election in
progress costs time, not an error; when the timeout passes without an
answer the call raises :class:`StoreUnavailable`, never hangs.  A request
that may have reached a member is sent again only when sending it twice
leaves the store as sending it once would (reads, puts, deletes, lease
grants, keepalives and revocations, and a ``put_if_absent`` bound to a
lease, whose outcome can be read back: the key then holds our value under
our lease); a ``put_if_absent`` without a lease whose answer was lost
raises :class:`StoreUnavailable` with ``maybe_applied``.  A request that
surely did not reach one (a refused connection, a "no leader" answer) is
always sent on.

Requests carry gRPC's ``hasleader`` metadata, so a member cut off from
the quorum answers "no leader" at once (and ends the watches it serves)
instead of serving stale data; the call then moves on to another member.

An :class:`EtcdStore` may be shared by the threads of one process; after
``fork`` the child must open its own (watch threads do not cross a fork).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import math
import numbers
import os
import reprlib
import select
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, TypeAlias

from ._errors import OTPError

__all__ = [
    "ClusterStore",
    "EtcdStore",
    "KeyValue",
    "Snapshot",
    "Lease",
    "PutEvent",
    "DeleteEvent",
    "WatchEnded",
    "WatchEvent",
    "Watch",
    "ClusterStoreError",
    "StoreUnavailable",
    "LeaseExpired",
    "WatchCompacted",
    "StoreRejected",
    "DEFAULT_TIMEOUT",
]

log = logging.getLogger("otp.cluster_store")

#: The timeout of a call that names none, as for ``otp.call``.
DEFAULT_TIMEOUT = 5.0

#: Longest wait for one TCP connection, so that a member that swallows
#: packets leaves time to try the others.
_CONNECT_TIMEOUT = 1.0

#: Pause between two rounds over every endpoint, doubling up to the cap.
_BACKOFF_FIRST = 0.02
_BACKOFF_CAP = 0.5

#: How long one try of a request that may be sent again waits for its
#: answer before it is sent to the next member, doubling each round.  A
#: follower that forwarded a write to a leader that just died answers only
#: after etcd's request timeout (5 s plus two election timeouts), while the
#: new leader is there after one election timeout.
_ATTEMPT_FIRST = 2.0

# gRPC status codes that etcd answers with (google.golang.org/grpc/codes).
_DEADLINE_EXCEEDED = 4
_NOT_FOUND = 5
_UNAVAILABLE = 14

_HEADERS = {"Content-Type": "application/json", "Grpc-Metadata-hasleader": "true"}


# -- errors -----------------------------------------------------------------


class ClusterStoreError(OTPError):
    """Base class of every error of the cluster store."""


class StoreUnavailable(ClusterStoreError):
    """No member of the store answered within the timeout: refused,
    unreachable, without a leader, or silent.

    ``maybe_applied`` is true when a write that cannot be sent twice was
    sent and its answer never came: the store may or may not hold it.
    ``attempts`` lists ``(endpoint, why)`` for the tries made.
    """

    def __init__(self, why: str, *, maybe_applied: bool = False, attempts: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(why)
        self.why = why
        self.maybe_applied = maybe_applied
        self.attempts = tuple(attempts)

    def __str__(self) -> str:
        text = self.why
        if self.attempts:
            endpoint, last = self.attempts[-1]
            text += f" ({len(self.attempts)} attempts; last: {endpoint}: {last})"
        if self.maybe_applied:
            text += "; the write may have been applied"
        return text


class LeaseExpired(ClusterStoreError, LookupError):
    """The lease is unknown to the store: it expired (not kept alive within
    its TTL) or was revoked, and every key bound to it is gone."""

    def __init__(self, lease: int) -> None:
        super().__init__(lease)
        self.lease = lease

    def __str__(self) -> str:
        return f"lease {self.lease:#x} has expired or was revoked"


class WatchCompacted(ClusterStoreError):
    """A watch asked for events from a revision that the store has
    compacted away; ``compact_revision`` is the oldest it still has.
    Read the prefix again and watch from the revision of that read."""

    def __init__(self, revision: int, compact_revision: int) -> None:
        super().__init__(revision, compact_revision)
        self.revision = revision
        self.compact_revision = compact_revision

    def __str__(self) -> str:
        return f"revision {self.revision} is compacted (oldest kept: {self.compact_revision})"


class StoreRejected(ClusterStoreError):
    """The store answered and refused the request (a malformed or too
    large request, or one this client does not understand the answer to);
    sending it again would not help.  ``code`` is the gRPC status code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"store refused the request (gRPC code {self.code}): {self.message}"


# -- values -----------------------------------------------------------------


@dataclass(frozen=True)
class KeyValue:
    """One key as the store holds it.  ``lease`` is the id of the lease the
    key is bound to, or None; revisions are the store's, which grow with
    every write to any key."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int | None


@dataclass(frozen=True)
class Snapshot:
    """The keys under a prefix, sorted, as of ``revision``: watch from
    ``revision + 1`` to miss nothing that happens after the read."""

    items: tuple[KeyValue, ...]
    revision: int


@dataclass(frozen=True)
class Lease:
    """A lease granted by the store.  ``ttl`` is in seconds and may be more
    than asked for: etcd raises it to its minimum (1.5 election timeouts)."""

    id: int
    ttl: int


@dataclass(frozen=True)
class PutEvent:
    """A key under the watched prefix was created or changed."""

    key: str
    value: bytes
    revision: int
    create_revision: int
    version: int
    lease: int | None


@dataclass(frozen=True)
class DeleteEvent:
    """A key under the watched prefix was deleted, or its lease expired."""

    key: str
    revision: int


@dataclass(frozen=True)
class WatchEnded:
    """The last event of a watch that stopped on its own: ``error`` says
    why (:class:`StoreUnavailable` when no member could resume it within
    its timeout, :class:`WatchCompacted`, :class:`StoreRejected`).  A watch
    that is cancelled delivers nothing more, not even this."""

    error: ClusterStoreError


WatchEvent: TypeAlias = PutEvent | DeleteEvent | WatchEnded


# -- the interface ----------------------------------------------------------


class Watch(Protocol):
    """A running watch; see :meth:`ClusterStore.watch_prefix`."""

    @property
    def revision(self) -> int:
        """The store's revision when the watch started: it delivers every
        change made after it (or from its ``start_revision``)."""
        ...

    def cancel(self, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Stop the watch.  When this returns the callback is not running
        and will not be called again (unless called from the callback
        itself, which stops it as soon as the callback returns)."""
        ...


class ClusterStore(Protocol):
    """What a cluster needs of its store.  Keys are str, values bytes;
    ``lease`` arguments take a :class:`Lease` or its id."""

    def get(self, key: str, *, timeout: float | None = DEFAULT_TIMEOUT) -> KeyValue | None:
        """The key, or None if the store does not hold it."""
        ...

    def get_prefix(self, prefix: str, *, timeout: float | None = DEFAULT_TIMEOUT) -> Snapshot:
        """Every key that starts with ``prefix``, sorted by key."""
        ...

    def put(
        self, key: str, value: bytes, *, lease: Lease | int | None = None, timeout: float | None = DEFAULT_TIMEOUT
    ) -> int:
        """Set the key (bound to ``lease`` if given); returns the store's
        revision of the write.  Raises :class:`LeaseExpired` if the lease
        is gone."""
        ...

    def put_if_absent(
        self, key: str, value: bytes, *, lease: Lease | int | None = None, timeout: float | None = DEFAULT_TIMEOUT
    ) -> bool:
        """Set the key only if the store does not hold it, atomically;
        True if this call set it.  Of any number of concurrent callers,
        on any nodes, exactly one gets True."""
        ...

    def delete(self, key: str, *, lease: Lease | int | None = None, timeout: float | None = DEFAULT_TIMEOUT) -> bool:
        """Delete the key; with ``lease``, only if it is bound to that
        lease (a name is released only by its holder).  True if this call
        deleted it."""
        ...

    def grant_lease(self, ttl: int, *, timeout: float | None = DEFAULT_TIMEOUT) -> Lease:
        """A new lease that expires ``ttl`` seconds after its last keepalive."""
        ...

    def keepalive(self, lease: Lease | int, *, timeout: float | None = DEFAULT_TIMEOUT) -> int:
        """Renew the lease for its full TTL; returns the TTL.  Raises
        :class:`LeaseExpired` if the lease is gone."""
        ...

    def revoke_lease(self, lease: Lease | int, *, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """End the lease now, deleting every key bound to it.  A lease
        that is already gone is not an error."""
        ...

    def watch_prefix(
        self,
        prefix: str,
        deliver: Callable[[WatchEvent], object],
        *,
        start_revision: int | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Watch:
        """Call ``deliver(event)`` for every change under ``prefix``, in
        the store's order, from a thread of the watch (pass a
        ``queue.Queue``'s ``put`` to receive them elsewhere)."""
        ...

    def close(self) -> None:
        """Cancel every watch and close every connection."""
        ...


# -- helpers ----------------------------------------------------------------


def _check_timeout(timeout: object) -> float:
    """``timeout`` as seconds (``math.inf`` for forever), refused with the
    kernel's errors (``otp._timeouts``, which this module does not import)."""
    if timeout is None:
        return math.inf
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"timeout must be a number of seconds or None, not {reprlib.repr(timeout)}")
    try:
        value = float(timeout)
    except OverflowError:
        value = -math.inf if timeout < 0 else math.inf
    if math.isnan(value) or value < 0:
        raise ValueError(f"timeout must be >= 0 seconds (or None / math.inf for forever), not {reprlib.repr(timeout)}")
    return value


def _check_key(key: object, what: str = "key") -> bytes:
    if not isinstance(key, str):
        raise TypeError(f"{what} must be a str, not {type(key).__name__}")
    return key.encode()


def _check_value(value: object) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"value must be bytes, not {type(value).__name__}")
    return bytes(value)


def _lease_id(lease: Lease | int | None) -> int:
    if lease is None:
        return 0
    if isinstance(lease, Lease):
        return lease.id
    if isinstance(lease, bool) or not isinstance(lease, int):
        raise TypeError(f"lease must be a Lease or its id, not {type(lease).__name__}")
    return lease


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def _prefix_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with ``prefix`` (etcd's
    ``range_end``): the prefix with its last byte below 0xff incremented."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # every key


def _int(obj: dict[str, Any], field: str) -> int:
    # The gateway writes int64 fields as strings and leaves out zeroes.
    return int(obj.get(field) or 0)


def _key_value(kv: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=_unb64(kv.get("key")).decode(errors="surrogateescape"),
        value=_unb64(kv.get("value")),
        create_revision=_int(kv, "create_revision"),
        mod_revision=_int(kv, "mod_revision"),
        version=_int(kv, "version"),
        lease=_int(kv, "lease") or None,
    )


def _event(ev: dict[str, Any]) -> PutEvent | DeleteEvent:
    kv = _key_value(ev.get("kv") or {})
    if ev.get("type") == "DELETE":
        return DeleteEvent(key=kv.key, revision=kv.mod_revision)
    return PutEvent(
        key=kv.key,
        value=kv.value,
        revision=kv.mod_revision,
        create_revision=kv.create_revision,
        version=kv.version,
        lease=kv.lease,
    )


def _sock_timeout(remaining: float) -> float | None:
    return None if remaining == math.inf else max(remaining, 0.001)


def _is_dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle kept-alive connection that the server closed (or that has
    unread bytes, which no answer to us can be): readable means dead."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class _Endpoint:
    __slots__ = ("url", "host", "port")

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parsed.scheme != "http":
            raise ValueError(f"endpoint {url!r}: only http:// is supported")
        if not parsed.hostname:
            raise ValueError(f"endpoint {url!r} names no host")
        self.url = f"http://{parsed.netloc}"
        self.host = parsed.hostname
        self.port = parsed.port or 2379

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=max(min(timeout, _CONNECT_TIMEOUT), 0.001))
        conn.connect()
        return conn


class _Failure(Exception):
    """One endpoint's failure, inside a call: ``sent`` tells whether the
    request may have reached the store, ``retry`` whether another member
    may do better (the answer was 'unavailable', not 'no')."""

    def __init__(self, why: str, *, sent: bool, retry: bool = True) -> None:
        super().__init__(why)
        self.why = why
        self.sent = sent
        self.retry = retry


def _answer_error(status: int, payload: bytes) -> tuple[int, str]:
    """The gRPC code and message of an error answer: ``{"code", "message"}``
    for a plain call, ``{"error": {"grpc_code", "message"}}`` in a stream."""
    try:
        body = json.loads(payload)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return (_UNAVAILABLE if status in (502, 503, 504) else 2), f"HTTP {status}: {payload[:200]!r}"
    if isinstance(body.get("error"), dict):
        body = body["error"]
    code = body.get("code", body.get("grpc_code", 2))
    return (code if isinstance(code, int) else 2), str(body.get("message", body))


def _not_applied(message: str) -> bool:
    """etcd refused before proposing anything: safe to send elsewhere."""
    return "no leader" in message or "proposal dropped" in message or "not capable" in message


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
        self._endpoints = [_Endpoint(u) for u in urls]
        self._lock = threading.Lock()
        self._idle: dict[int, list[http.client.HTTPConnection]] = {}
        self._preferred = 0
        self._watches: set[_EtcdWatch] = set()
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
        body = {"key": _b64(_check_key(key))}
        answer = self._call("/v3/kv/range", body, timeout, resend=True)
        kvs = answer.get("kvs") or []
        return _key_value(kvs[0]) if kvs else None

    def get_prefix(self, prefix: str, *, timeout: float | None = DEFAULT_TIMEOUT) -> Snapshot:
        raw = _check_key(prefix, "prefix")
        body = {"key": _b64(raw or b"\0"), "range_end": _b64(_prefix_end(raw))}
        answer = self._call("/v3/kv/range", body, timeout, resend=True)
        items = tuple(_key_value(kv) for kv in answer.get("kvs") or [])
        return Snapshot(items=items, revision=_int(answer.get("header") or {}, "revision"))

    def put(
        self, key: str, value: bytes, *, lease: Lease | int | None = None, timeout: float | None = DEFAULT_TIMEOUT
    ) -> int:
        lease_id = _lease_id(lease)
        body: dict[str, Any] = {"key": _b64(_check_key(key)), "value": _b64(_check_value(value))}
        if lease_id:
            body["lease"] = str(lease_id)
        answer = self._call("/v3/kv/put", body, timeout, resend=True, lease=lease_id)
        return _int(answer.get("header") or {}, "revision")

    def put_if_absent(
        self, key: str, value: bytes, *, lease: Lease | int | None = None, timeout: float | None = DEFAULT_TIMEOUT
    ) -> bool:
        lease_id = _lease_id(lease)
        raw_key, raw_value = _check_key(key), _check_value(value)
        put: dict[str, Any] = {"key": _b64(raw_key), "value": _b64(raw_value)}
        if lease_id:
            put["lease"] = str(lease_id)
        body = {
            "compare": [{"target": "CREATE", "key": _b64(raw_key), "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": put}],
            "failure": [{"request_range": {"key": _b64(raw_key)}}],
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
                held = _key_value(kv)
                return held.lease == lease_id and held.value == raw_value
        return False

    def delete(self, key: str, *, lease: Lease | int | None = None, timeout: float | None = DEFAULT_TIMEOUT) -> bool:
        lease_id = _lease_id(lease)
        raw_key = _check_key(key)
        if not lease_id:
            answer = self._call("/v3/kv/deleterange", {"key": _b64(raw_key)}, timeout, resend=True)
            return _int(answer, "deleted") > 0
        body = {
            "compare": [{"target": "LEASE", "key": _b64(raw_key), "result": "EQUAL", "lease": str(lease_id)}],
            "success": [{"request_delete_range": {"key": _b64(raw_key)}}],
        }
        answer = self._call("/v3/kv/txn", body, timeout, resend=True)
        if not answer.get("succeeded"):
            return False
        responses = answer.get("responses") or [{}]
        return _int(responses[0].get("response_delete_range") or {}, "deleted") > 0

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
        return Lease(id=_int(answer, "ID"), ttl=_int(answer, "TTL"))

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
        lease_id = _lease_id(lease)
        if not lease_id:
            raise ValueError("keepalive needs a lease")
        answer = self._call("/v3/lease/keepalive", {"ID": str(lease_id)}, timeout, resend=True)
        ttl = _int(answer, "TTL")
        if ttl <= 0:
            raise LeaseExpired(lease_id)
        return ttl

    def revoke_lease(self, lease: Lease | int, *, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        lease_id = _lease_id(lease)
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
    ) -> _EtcdWatch:
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
        raw = _check_key(prefix, "prefix")
        deadline_budget = _check_timeout(timeout)
        if start_revision is not None:
            if isinstance(start_revision, bool) or not isinstance(start_revision, int):
                raise TypeError("start_revision must be an int or None")
            if start_revision < 1:
                raise ValueError(f"start_revision must be >= 1, not {start_revision}")
        if not callable(deliver):
            raise TypeError("deliver must be callable")
        self._check_open()
        watch = _EtcdWatch(self, raw, deliver, deadline_budget)
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
                if not _is_dropped(conn):
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
        budget = _check_timeout(timeout)
        self._check_open()
        deadline = time.monotonic() + budget
        data = json.dumps(body).encode()
        attempts: list[tuple[str, str]] = []
        backoff = _BACKOFF_FIRST
        attempt_cap = _ATTEMPT_FIRST if resend else math.inf
        while True:
            for index in self._order():
                remaining = deadline - time.monotonic()
                if remaining <= 0 and attempts:
                    raise StoreUnavailable(f"no member answered {path} within {budget} s", attempts=attempts)
                endpoint = self._endpoints[index]
                try:
                    answer = self._attempt(index, path, data, min(remaining, attempt_cap), lease)
                except _Failure as failure:
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
            backoff = min(backoff * 2, _BACKOFF_CAP)
            attempt_cap *= 2

    def _attempt(self, index: int, path: str, data: bytes, remaining: float, lease: int) -> dict[str, Any]:
        try:
            conn = self._checkout(index, remaining)
        except OSError as e:
            raise _Failure(f"connect: {e}", sent=False) from None
        try:
            assert conn.sock is not None
            conn.sock.settimeout(_sock_timeout(remaining))
            conn.request("POST", path, body=data, headers=_HEADERS)
            response = conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            why = "no answer" if isinstance(e, TimeoutError) else f"{type(e).__name__}: {e}"
            raise _Failure(f"{why} (waited up to {remaining:.3g} s)", sent=True) from None
        if response.will_close:
            conn.close()
        else:
            self._checkin(index, conn)
        if response.status == 200:
            answer = self._decode(payload)
            if "result" in answer:  # a streaming call's single answer
                answer = answer["result"]
            elif "error" in answer and isinstance(answer["error"], dict):
                code, message = _answer_error(response.status, payload)
                return self._refuse(code, message, lease)
            return answer
        code, message = _answer_error(response.status, payload)
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
        if code == _NOT_FOUND and "lease not found" in message:
            raise LeaseExpired(lease)
        if code in (_UNAVAILABLE, _DEADLINE_EXCEEDED) or _not_applied(message):
            raise _Failure(message, sent=not _not_applied(message))
        raise StoreRejected(code, message)


class _EtcdWatch:
    """One watch stream, read by its own thread, resumed on another member
    when its own fails."""

    def __init__(self, store: EtcdStore, prefix: bytes, deliver: Callable[[WatchEvent], object], budget: float) -> None:
        self._store = store
        self._prefix = prefix
        self._deliver = deliver
        self._budget = budget
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self._response: http.client.HTTPResponse | None = None
        self._buffer = ""
        self._thread = threading.Thread(target=self._run, name=f"etcd-watch {prefix!r}", daemon=True)
        self._next_revision = 0
        self._revision = 0

    @property
    def revision(self) -> int:
        return self._revision

    def __repr__(self) -> str:
        return f"<etcd watch {self._prefix!r} from revision {self._next_revision}>"

    def open(self, start_revision: int | None) -> None:
        """Create the watch on some member, in the caller's thread; raises
        what the store answered if it cannot within the budget."""
        deadline = time.monotonic() + self._budget
        header = self._connect(deadline, start_revision or 0)
        self._revision = header
        self._next_revision = start_revision or header + 1

    def start(self) -> None:
        self._thread.start()

    def cancel(self, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        budget = _check_timeout(timeout)
        self._cancelled.set()
        with self._lock:
            conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(None if budget == math.inf else budget)
        with self._store._lock:
            self._store._watches.discard(self)

    # -- the stream

    def _connect(self, deadline: float, start_revision: int) -> int:
        """Open a stream on the first member that confirms the watch;
        returns the store's revision in its confirmation."""
        create: dict[str, Any] = {"key": _b64(self._prefix or b"\0"), "range_end": _b64(_prefix_end(self._prefix))}
        if start_revision:
            create["start_revision"] = str(start_revision)
        data = json.dumps({"create_request": create}).encode()
        attempts: list[tuple[str, str]] = []
        backoff = _BACKOFF_FIRST
        while not self._cancelled.is_set():
            for index in self._store._order():
                remaining = deadline - time.monotonic()
                if remaining <= 0 and attempts:
                    break
                endpoint = self._store._endpoints[index]
                try:
                    return self._create(index, data, remaining, start_revision)
                except _Failure as failure:
                    attempts.append((endpoint.url, failure.why))
                    if not failure.retry:
                        raise StoreUnavailable("watch refused", attempts=attempts) from None
                    if self._cancelled.is_set():
                        break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StoreUnavailable(f"no member started the watch within {self._budget} s", attempts=attempts)
            self._cancelled.wait(min(backoff, remaining))
            backoff = min(backoff * 2, _BACKOFF_CAP)
        raise _Cancelled

    def _create(self, index: int, data: bytes, remaining: float, start_revision: int) -> int:
        try:
            conn = self._store._endpoints[index].connect(remaining)
        except OSError as e:
            raise _Failure(f"connect: {e}", sent=False) from None
        with self._lock:
            if self._cancelled.is_set():
                conn.close()
                raise _Cancelled
            self._conn = conn
        self._buffer = ""
        try:
            assert conn.sock is not None
            conn.sock.settimeout(_sock_timeout(remaining))
            _keep_probing(conn.sock)
            conn.request("POST", "/v3/watch", body=data, headers=_HEADERS)
            response = conn.getresponse()
            if response.status != 200:
                payload = response.read()
                code, message = _answer_error(response.status, payload)
                if code in (_UNAVAILABLE, _DEADLINE_EXCEEDED) or _not_applied(message):
                    raise _Failure(message, sent=True)
                raise _Failure(f"gRPC code {code}: {message}", sent=True, retry=False)
            self._response = response
            first = self._next_message()
        except (OSError, http.client.HTTPException, _StreamEnded) as e:
            self._drop_stream()
            if self._cancelled.is_set():
                raise _Cancelled from None
            raise _Failure(f"watch stream: {type(e).__name__}: {e}", sent=True) from None
        except _Failure:
            self._drop_stream()
            raise
        compact = _int(first, "compact_revision")
        if first.get("canceled") or compact:
            self._drop_stream()
            if compact:
                raise WatchCompacted(start_revision, compact)
            raise _Failure(str(first.get("cancel_reason") or "watch cancelled by the store"), sent=True)
        if not first.get("created"):
            self._drop_stream()
            raise _Failure(f"unexpected first answer: {reprlib.repr(first)}", sent=True)
        conn.sock.settimeout(None)  # events may be minutes apart; cancel shuts the socket
        self._store._preferred = index
        return _int(first.get("header") or {}, "revision")

    def _next_message(self) -> dict[str, Any]:
        """The next object of the stream (the gateway writes one JSON
        object per message, newline separated, in HTTP chunks)."""
        decoder = json.JSONDecoder()
        while True:
            text = self._buffer.lstrip()
            if text:
                try:
                    message, end = decoder.raw_decode(text)
                except ValueError:
                    pass  # incomplete: read more
                else:
                    self._buffer = text[end:]
                    if not isinstance(message, dict):
                        raise _StreamEnded(f"unexpected message {reprlib.repr(message)}")
                    if "error" in message:
                        err = message["error"]
                        raise _StreamEnded(str(err.get("message", err) if isinstance(err, dict) else err))
                    result = message.get("result", message)
                    return result if isinstance(result, dict) else {}
            response = self._response
            if response is None:
                raise _StreamEnded("no stream")
            chunk = response.read1(65536)
            if not chunk:
                raise _StreamEnded("the member closed the stream")
            self._buffer = text + chunk.decode()

    def _drop_stream(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        self._response = None
        if conn is not None:
            conn.close()

    def _run(self) -> None:
        try:
            self._serve()
        except _Cancelled:
            pass
        except Exception:  # the callback's own failure: nobody else would hear of it
            log.exception("etcd watch %r stopped: its callback raised", self._prefix)
        finally:
            self._drop_stream()
            with self._store._lock:
                self._store._watches.discard(self)

    def _serve(self) -> None:
        while not self._cancelled.is_set():
            try:
                message = self._next_message()
            except (OSError, http.client.HTTPException, _StreamEnded, UnicodeDecodeError) as e:
                if self._cancelled.is_set():
                    return
                self._drop_stream()
                log.info(
                    "etcd watch %r lost its stream (%s); resuming at revision %d", self._prefix, e, self._next_revision
                )
                try:
                    self._connect(time.monotonic() + self._budget, self._next_revision)
                except ClusterStoreError as error:
                    self._end(error)
                    return
                continue
            compact = _int(message, "compact_revision")
            if compact:
                self._end(WatchCompacted(self._next_revision, compact))
                return
            if message.get("canceled"):
                # The member ended the watch (it lost its leader, say):
                # resume elsewhere, as for a broken stream.
                self._drop_stream()
                self._buffer = ""
                try:
                    self._connect(time.monotonic() + self._budget, self._next_revision)
                except ClusterStoreError as error:
                    self._end(error)
                    return
                continue
            # The events of one revision (a transaction's) come in one
            # message: skip those delivered before a resume, as a whole.
            floor = self._next_revision
            for raw in message.get("events") or []:
                event = _event(raw)
                if event.revision < floor:
                    continue
                if self._cancelled.is_set():
                    return
                self._deliver(event)
                self._next_revision = event.revision + 1

    def _end(self, error: ClusterStoreError) -> None:
        if not self._cancelled.is_set():
            self._deliver(WatchEnded(error))


class _Cancelled(Exception):
    """The watch was cancelled while (re)connecting."""


class _StreamEnded(Exception):
    """The watch stream ended or carried an error."""


def _keep_probing(sock: socket.socket) -> None:
    """TCP keepalive on a watch's socket, so that a member that vanished
    from the network (no FIN, no RST) ends the stream in seconds."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 5)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 2)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    except OSError:
        pass
