"""The zygote's protocol server: its client connections (accepting them,
capping and shedding them, reading requests, answering), apart from the
fork path in :mod:`otp._zygote`, which it hands spawn requests to.

Connections are capped (a quarter of the descriptor limit, at most
:data:`MAX_CONNS`): accepting one more closes the least recently used
one that has no request waiting; the client reconnects on its next
request.  Running out of descriptors anyway (EMFILE on accept) halves the
cap for good, closes connections down to it, and stops accepting for
:data:`_ACCEPT_PAUSE`.  A malformed request is dropped and logged, at most
one line a second per connection; a client that does not read its answer
within :data:`_SEND_TIMEOUT` loses its connection.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import resource
import select
import socket
import time
from typing import TYPE_CHECKING, NoReturn

from . import _oslib
from ._zygote_protocol import (
    MAX_FDS,
    MAX_REQUEST,
    BadRequest,
    ListRequest,
    LiveProcess,
    SpawnRequest,
    error_answer,
    list_answer,
    parse_request,
)

log = logging.getLogger("otp")

__all__ = ["ConnsMixin", "MAX_CONNS", "RateLimit", "connection_cap", "answer_error"]

#: Seconds the zygote waits for a client to take an answer before it drops
#: the connection (it serves the whole node: it must not wait on one client).
_SEND_TIMEOUT = 2.0
MAX_CONNS = 1024
_MIN_CONNS = 8
_ACCEPT_PAUSE = 0.1


def connection_cap(nofile: int) -> int:
    """How many idle client connections the zygote keeps, for a descriptor
    limit of ``nofile``: a quarter of it, the rest staying free for spawn
    requests in flight and embryo channels."""
    return max(_MIN_CONNS, min(MAX_CONNS, nofile // 4))


def _hung_up(sock: socket.socket) -> bool:
    """After a read of 0 bytes: the peer closed (rather than sent an empty
    record, which SEQPACKET allows and which reads the same)."""
    poller = select.poll()
    poller.register(sock, select.POLLRDHUP)
    return any(mask & (select.POLLRDHUP | select.POLLHUP | select.POLLERR) for _, mask in poller.poll(0))


def answer_error(fd: int, code: int, text: str) -> None:
    """Tell the spawner at ``fd`` (closed here) it gets no process, and why."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        os.close(fd)  # not a socket: nobody to tell
        return
    with sock:
        try:
            sock.send(error_answer(code, text), socket.MSG_DONTWAIT)
        except OSError:
            pass  # the spawner is gone or its buffer is full: it sees EOF


# -------------------------------------------------------------------- zygote


class RateLimit:
    """At most one log line per ``interval`` seconds; counts what it held back."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.last = -interval
        self.held = 0

    def allow(self) -> str | None:
        """None if this line must be held back, else a suffix for it."""
        now = time.monotonic()
        if now - self.last < self.interval:
            self.held += 1
            return None
        self.last = now
        held, self.held = self.held, 0
        return f" ({held} more held back)" if held else ""


class ConnsMixin:
    """The client connections of :class:`otp._zygote._Zygote`: ``conns`` (LRU
    first), the listener, and the requests read from them."""

    listener: socket.socket
    ep: select.epoll
    conns: collections.OrderedDict[int, socket.socket]
    complaints: dict[int, RateLimit]  # conn fd -> its malformed-request log limit
    waiting: collections.deque[int]  # spawners' channel fds
    shed_cap: int
    listen_at: float | None
    accept_log: RateLimit

    if TYPE_CHECKING:  # the zygote's, used here

        def dispatch(self) -> None: ...

        def learn(self, module: str, path: tuple[str, ...]) -> None: ...

        def live_rows(self) -> list[LiveProcess]: ...

        def shutdown(self) -> NoReturn: ...

    def accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # the client gave up before we got to it
        except OSError as exc:
            self.pause_accepting(exc)
            return
        # Non-blocking: an event can be stale (its descriptor closed and
        # reused within one epoll batch), and a read must then not wait.
        conn.setblocking(False)
        self.shed(self.conn_cap() - 1)
        self.conns[conn.fileno()] = conn
        self.ep.register(conn.fileno(), select.EPOLLIN)

    def conn_cap(self) -> int:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]  # read each time: it may be lowered
        return min(connection_cap(soft if soft != resource.RLIM_INFINITY else 1 << 20), self.shed_cap)

    def pause_accepting(self, exc: OSError) -> None:
        """Out of descriptors (or another accept failure): free some, and
        stop polling the listener for a moment rather than spin on it."""
        if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
            self.shed_for_descriptors()
        suffix = self.accept_log.allow()
        if suffix is not None:
            log.warning(
                "zygote: accept failed (%s); keeping at most %d client connections, not accepting for %ss%s",
                exc,
                self.shed_cap,
                _ACCEPT_PAUSE,
                suffix,
            )
        if self.listen_at is None:
            self.ep.unregister(self.listener.fileno())
            self.listen_at = time.monotonic() + _ACCEPT_PAUSE

    def shed_for_descriptors(self) -> None:
        """Out of descriptors: halve the connection cap for good and close
        connections down to it, freeing descriptors for spawns."""
        self.shed_cap = max(1, len(self.conns) // 2)
        self.shed(self.shed_cap)

    def shed(self, cap: int) -> None:
        """Close least recently used connections until at most ``cap`` are
        left, sparing those with a request waiting (it is served first)."""
        for fd in list(self.conns):
            if len(self.conns) <= cap:
                return
            if not _oslib.fd_readable(fd):
                self.close_conn(self.conns[fd])

    def close_conn(self, conn: socket.socket) -> None:
        fd = conn.fileno()
        self.conns.pop(fd, None)
        self.complaints.pop(fd, None)
        try:
            self.ep.unregister(fd)
        except (OSError, ValueError):
            pass
        conn.close()

    def serve_conn(self, conn: socket.socket) -> None:
        try:
            data, fds, flags, _ = socket.recv_fds(conn, MAX_REQUEST, MAX_FDS, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return  # an event for a descriptor closed and reused meanwhile
        except OSError:
            data, fds, flags = b"", [], 0
        if not data and _hung_up(conn):
            for fd in fds:
                os.close(fd)
            self.close_conn(conn)
            return
        self.conns.move_to_end(conn.fileno())
        try:
            request = parse_request(data, len(fds), flags)
        except BadRequest as exc:
            if flags & socket.MSG_CTRUNC and len(fds) < MAX_FDS:
                self.shed_for_descriptors()  # the kernel could not give us the descriptors
            self.refuse(conn, exc, fds)
            return
        if isinstance(request, SpawnRequest):
            self.waiting.append(fds[0])
            self.dispatch()
            if request.learn is not None:
                self.learn(*request.learn)
        elif isinstance(request, ListRequest):
            self.answer(conn, self.live_rows())
        else:
            self.answer(conn, [])
            self.shutdown()

    def refuse(self, conn: socket.socket, exc: BadRequest, fds: list[int]) -> None:
        for fd in fds:
            answer_error(fd, errno.EINVAL, f"the node's zygote refused a malformed request: {exc}")
        suffix = self.complaints.setdefault(conn.fileno(), RateLimit()).allow()
        if suffix is not None:
            log.warning("zygote: dropped a malformed request on connection %d: %s%s", conn.fileno(), exc, suffix)

    def answer(self, conn: socket.socket, rows: list[LiveProcess]) -> None:
        conn.settimeout(_SEND_TIMEOUT)
        try:
            for datagram in list_answer(rows):
                conn.sendall(datagram)
        except OSError as exc:
            log.warning("zygote: a client did not take its answer (%s); closing its connection", exc)
            self.close_conn(conn)
            return
        conn.setblocking(False)
