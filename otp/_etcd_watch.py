"""A watch of the cluster store on etcd's streaming ``/v3/watch``: one
stream read by its own thread, delivering events in revision order, resumed
on another member from the next revision when its member fails or loses
the quorum, and ended with :class:`WatchEnded` when it cannot be resumed
within its budget (see :meth:`otp._etcd_store.EtcdStore.watch_prefix`).
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import reprlib
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._cluster_store import (
    DEFAULT_TIMEOUT,
    ClusterStoreError,
    StoreUnavailable,
    WatchCompacted,
    WatchEnded,
    WatchEvent,
)
from ._etcd_http import (
    BACKOFF_CAP,
    BACKOFF_FIRST,
    DEADLINE_EXCEEDED,
    HEADERS,
    UNAVAILABLE,
    AttemptFailed,
    answer_error,
    b64,
    check_timeout,
    int_field,
    not_applied,
    prefix_end,
    sock_timeout,
    watch_event,
)

if TYPE_CHECKING:
    from ._etcd_store import EtcdStore

log = logging.getLogger("otp.cluster_store")


class EtcdWatch:
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
        budget = check_timeout(timeout)
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
        create: dict[str, Any] = {"key": b64(self._prefix or b"\0"), "range_end": b64(prefix_end(self._prefix))}
        if start_revision:
            create["start_revision"] = str(start_revision)
        data = json.dumps({"create_request": create}).encode()
        attempts: list[tuple[str, str]] = []
        backoff = BACKOFF_FIRST
        while not self._cancelled.is_set():
            for index in self._store._order():
                remaining = deadline - time.monotonic()
                if remaining <= 0 and attempts:
                    break
                endpoint = self._store._endpoints[index]
                try:
                    return self._create(index, data, remaining, start_revision)
                except AttemptFailed as failure:
                    attempts.append((endpoint.url, failure.why))
                    if not failure.retry:
                        raise StoreUnavailable("watch refused", attempts=attempts) from None
                    if self._cancelled.is_set():
                        break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StoreUnavailable(f"no member started the watch within {self._budget} s", attempts=attempts)
            self._cancelled.wait(min(backoff, remaining))
            backoff = min(backoff * 2, BACKOFF_CAP)
        raise _Cancelled

    def _create(self, index: int, data: bytes, remaining: float, start_revision: int) -> int:
        try:
            conn = self._store._endpoints[index].connect(remaining)
        except OSError as e:
            raise AttemptFailed(f"connect: {e}", sent=False) from None
        with self._lock:
            if self._cancelled.is_set():
                conn.close()
                raise _Cancelled
            self._conn = conn
        self._buffer = ""
        try:
            assert conn.sock is not None
            conn.sock.settimeout(sock_timeout(remaining))
            _keep_probing(conn.sock)
            conn.request("POST", "/v3/watch", body=data, headers=HEADERS)
            response = conn.getresponse()
            if response.status != 200:
                payload = response.read()
                code, message = answer_error(response.status, payload)
                if code in (UNAVAILABLE, DEADLINE_EXCEEDED) or not_applied(message):
                    raise AttemptFailed(message, sent=True)
                raise AttemptFailed(f"gRPC code {code}: {message}", sent=True, retry=False)
            self._response = response
            first = self._next_message()
        except (OSError, http.client.HTTPException, _StreamEnded) as e:
            self._drop_stream()
            if self._cancelled.is_set():
                raise _Cancelled from None
            raise AttemptFailed(f"watch stream: {type(e).__name__}: {e}", sent=True) from None
        except AttemptFailed:
            self._drop_stream()
            raise
        compact = int_field(first, "compact_revision")
        if first.get("canceled") or compact:
            self._drop_stream()
            if compact:
                raise WatchCompacted(start_revision, compact)
            raise AttemptFailed(str(first.get("cancel_reason") or "watch cancelled by the store"), sent=True)
        if not first.get("created"):
            self._drop_stream()
            raise AttemptFailed(f"unexpected first answer: {reprlib.repr(first)}", sent=True)
        conn.sock.settimeout(None)  # events may be minutes apart; cancel shuts the socket
        self._store._preferred = index
        return int_field(first.get("header") or {}, "revision")

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

    def _resume(self) -> bool:
        """Open a new stream from the next revision, within the watch's
        budget; False if no member took it (the watch ended with the error)."""
        try:
            self._connect(time.monotonic() + self._budget, self._next_revision)
        except ClusterStoreError as error:
            self._end(error)
            return False
        return True

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
                if not self._resume():
                    return
                continue
            compact = int_field(message, "compact_revision")
            if compact:
                self._end(WatchCompacted(self._next_revision, compact))
                return
            if message.get("canceled"):
                # The member ended the watch (it lost its leader, say):
                # resume elsewhere, as for a broken stream.
                self._drop_stream()
                self._buffer = ""
                if not self._resume():
                    return
                continue
            # The events of one revision (a transaction's) come in one
            # message: skip those delivered before a resume, as a whole.
            floor = self._next_revision
            for raw in message.get("events") or []:
                event = watch_event(raw)
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
