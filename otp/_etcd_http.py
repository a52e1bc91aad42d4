"""The requests of the etcd client (:mod:`otp._etcd_store`): argument
checks with the kernel's errors, the JSON gateway's encoding (keys and
values in base64, a prefix as a key range), a member's HTTP endpoint, and
the failures that decide whether a request may be sent to another member.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import numbers
import reprlib
import select
import urllib.parse
from typing import Any

from ._cluster_store import (
    DeleteEvent,
    KeyValue,
    Lease,
    PutEvent,
)

#: Longest wait for one TCP connection, so that a member that swallows
#: packets leaves time to try the others.
CONNECT_TIMEOUT = 1.0

#: Pause between two rounds over every endpoint, doubling up to the cap.
BACKOFF_FIRST = 0.02
BACKOFF_CAP = 0.5

#: How long one try of a request that may be sent again waits for its
#: answer before it is sent to the next member, doubling each round.  A
#: follower that forwarded a write to a leader that just died answers only
#: after etcd's request timeout (5 s plus two election timeouts), while the
#: new leader is there after one election timeout.
ATTEMPT_FIRST = 2.0

# gRPC status codes that etcd answers with (google.golang.org/grpc/codes).
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
UNAVAILABLE = 14

HEADERS = {"Content-Type": "application/json", "Grpc-Metadata-hasleader": "true"}


# -- helpers ----------------------------------------------------------------


def check_timeout(timeout: object) -> float:
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


def check_key(key: object, what: str = "key") -> bytes:
    if not isinstance(key, str):
        raise TypeError(f"{what} must be a str, not {type(key).__name__}")
    return key.encode()


def check_value(value: object) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"value must be bytes, not {type(value).__name__}")
    return bytes(value)


def lease_number(lease: Lease | int | None) -> int:
    if lease is None:
        return 0
    if isinstance(lease, Lease):
        return lease.id
    if isinstance(lease, bool) or not isinstance(lease, int):
        raise TypeError(f"lease must be a Lease or its id, not {type(lease).__name__}")
    return lease


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with ``prefix`` (etcd's
    ``range_end``): the prefix with its last byte below 0xff incremented."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # every key


def int_field(obj: dict[str, Any], field: str) -> int:
    # The gateway writes int64 fields as strings and leaves out zeroes.
    return int(obj.get(field) or 0)


def key_value(kv: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=unb64(kv.get("key")).decode(errors="surrogateescape"),
        value=unb64(kv.get("value")),
        create_revision=int_field(kv, "create_revision"),
        mod_revision=int_field(kv, "mod_revision"),
        version=int_field(kv, "version"),
        lease=int_field(kv, "lease") or None,
    )


def watch_event(ev: dict[str, Any]) -> PutEvent | DeleteEvent:
    kv = key_value(ev.get("kv") or {})
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


def sock_timeout(remaining: float) -> float | None:
    return None if remaining == math.inf else max(remaining, 0.001)


def is_dropped(conn: http.client.HTTPConnection) -> bool:
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


class Endpoint:
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
        conn = http.client.HTTPConnection(self.host, self.port, timeout=max(min(timeout, CONNECT_TIMEOUT), 0.001))
        conn.connect()
        return conn


class AttemptFailed(Exception):
    """One endpoint's failure, inside a call: ``sent`` tells whether the
    request may have reached the store, ``retry`` whether another member
    may do better (the answer was 'unavailable', not 'no')."""

    def __init__(self, why: str, *, sent: bool, retry: bool = True) -> None:
        super().__init__(why)
        self.why = why
        self.sent = sent
        self.retry = retry


def answer_error(status: int, payload: bytes) -> tuple[int, str]:
    """The gRPC code and message of an error answer: ``{"code", "message"}``
    for a plain call, ``{"error": {"grpc_code", "message"}}`` in a stream."""
    try:
        body = json.loads(payload)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return (UNAVAILABLE if status in (502, 503, 504) else 2), f"HTTP {status}: {payload[:200]!r}"
    if isinstance(body.get("error"), dict):
        body = body["error"]
    code = body.get("code", body.get("grpc_code", 2))
    return (code if isinstance(code, int) else 2), str(body.get("message", body))


def not_applied(message: str) -> bool:
    """etcd refused before proposing anything: safe to send elsewhere."""
    return "no leader" in message or "proposal dropped" in message or "not capable" in message
