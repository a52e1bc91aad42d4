"""A process's side of the zygote: asking it for processes, listing, stopping.

Every OTP process that spawns keeps one :class:`ZygoteClient`, connected to
``<node dir>/zygote`` (see :mod:`otp._zygote_protocol` for what travels).
When the zygote cannot be reached the client says why: the root process
watches its zygote and registers that watch here (:func:`watch_node`), so a
spawn in the root after the zygote died raises :class:`otp.NodeError` naming
the cause; elsewhere it raises :class:`otp.SpawnError`.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from ._errors import NodeError, SpawnError
from ._zygote_protocol import (
    LENGTH,
    MAX_ERROR_TEXT,
    MAX_REQUEST,
    REFUSED_UID,
    RUN,
    Identity,
    ListRequest,
    LiveProcess,
    SpawnRequest,
    StopRequest,
    absolute_path,
    encode_request,
    parse_list_answer,
    recv_exact,
)

__all__ = ["ZygoteClient", "SPAWN_TIMEOUT", "watch_node", "unwatch_node"]

#: Seconds a spawn may take before the spawner gives up (a healthy fork and
#: child bootstrap takes a few milliseconds; this covers a loaded machine).
SPAWN_TIMEOUT = 30.0
#: Seconds a client that lost the zygote waits for the root's watch to say
#: whether the zygote died (its socket closes a moment before it is a zombie).
_DEATH_WAIT = 1.0
_MAX_ANSWER = 1 << 22

#: ``register(identity)``: records a new process's identity (its links and
#: monitors) before the process may run.
Register = Callable[[Identity], None]
_T = TypeVar("_T")

# address -> (ospid that registered it, cause(timeout) -> str | None)
_watches: dict[str, tuple[int, Callable[[float], str | None]]] = {}


def watch_node(address: str, cause: Callable[[float], str | None]) -> None:
    """Let clients of this OS process ask ``cause(timeout)`` why the zygote
    at ``address`` died (None: it did not, or was asked to stop)."""
    _watches[address] = (os.getpid(), cause)


def unwatch_node(address: str) -> None:
    _watches.pop(address, None)


def _death_cause(address: str, timeout: float) -> str | None:
    entry = _watches.get(address)
    if entry is None or entry[0] != os.getpid():  # inherited through fork: not ours
        return None
    return entry[1](timeout)


class _Lost(Exception):
    """The connection to the zygote is closed: reconnect and retry once."""


_LOST_ERRNOS = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ECONNREFUSED, errno.EBADF)


class ZygoteClient:
    """A process's connection to its node's zygote (main thread only).

    The zygote closes idle connections beyond its cap; a request that finds
    its connection closed reconnects and is sent again, once.  That is safe
    for a spawn: a closed connection drops the request unread, and the
    spawner's socketpair end with it, so no embryo was given it.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self.told: set[str] = set()
        self.sock = self._connect()

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        sock.settimeout(SPAWN_TIMEOUT)
        try:
            sock.connect(self.address)
        except OSError as exc:
            sock.close()
            self._down(exc)
        return sock

    def _reconnect(self) -> None:
        self.sock.close()
        self.sock = self._connect()

    def _down(self, exc: BaseException) -> NoReturn:
        """The zygote cannot be reached: NodeError naming why it died, if the
        root's watch knows, else SpawnError."""
        cause = _death_cause(self.address, _DEATH_WAIT)
        if cause:
            raise NodeError(cause) from exc
        raise SpawnError(f"node runtime is not running ({exc})") from exc

    def _send(self, data: bytes, fds: tuple[int, ...] = ()) -> None:
        try:
            socket.send_fds(self.sock, [data], list(fds))
        except TimeoutError:
            raise
        except OSError as exc:
            if exc.errno in _LOST_ERRNOS:
                raise _Lost(str(exc)) from exc
            raise SpawnError(f"could not reach the node's zygote ({exc})") from exc

    def _closed(self) -> bool:
        """True if the zygote closed our connection (nothing else is ever
        queued on it between requests)."""
        try:
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _retrying(self, attempt: Callable[[], _T]) -> _T:
        try:
            return attempt()
        except _Lost:
            pass
        try:
            self._reconnect()
            return attempt()
        except _Lost as lost:
            self._down(lost)

    # ------------------------------------------------------------- spawn

    def spawn(self, spec: bytes, register: Register, module: str | None = None) -> None:
        """Get an embryo and hand it ``spec`` (a pickled
        :class:`otp._zygote_protocol.SpawnSpec`).

        ``register(identity)`` is called with the new process's identity
        while the process prepares; the caller registers its links and
        monitors there, and the process runs only once it returned.
        ``module`` names the module the function lives in, for the zygote to
        preload.
        """
        request = encode_request(SpawnRequest(self._learn(module)))
        self._retrying(lambda: self._spawn_once(spec, register, request))

    def _learn(self, module: str | None) -> tuple[str, tuple[str, ...]] | None:
        if not module or module in self.told:
            return None
        self.told.add(module)
        learn = (module, tuple(absolute_path(sys.path)))
        if len(encode_request(SpawnRequest(learn))) > MAX_REQUEST:
            return None  # a sys.path this long: the process imports the module itself
        return learn

    def _spawn_once(self, spec: bytes, register: Register, request: bytes) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with mine:
            try:
                try:
                    self._send(request, (theirs.fileno(),))
                finally:
                    theirs.close()
                mine.settimeout(SPAWN_TIMEOUT)
                try:
                    # Ahead of the identity: the embryo reads it as soon as
                    # it is handed our end, while we register.
                    mine.sendall(LENGTH.pack(len(spec)) + spec)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # refused, or the connection was lost: what we read next says which
                register(self._identity(mine))
                try:
                    mine.sendall(RUN)
                except OSError:
                    pass  # it died already; the caller's watch reports it
            except TimeoutError as exc:
                raise SpawnError(f"no process from the node runtime within {SPAWN_TIMEOUT}s") from exc

    def _identity(self, mine: socket.socket) -> Identity:
        try:
            identity = Identity.read(mine)
        except (EOFError, ConnectionResetError) as exc:
            if self._closed():
                raise _Lost("the node's zygote closed the connection") from exc
            cause = _death_cause(self.address, 0)
            if cause:
                raise NodeError(cause) from exc
            raise SpawnError(
                "the node's zygote gave no process (the new process died before it started, "
                "or the zygote is out of descriptors)"
            ) from exc
        if identity.uid == REFUSED_UID:
            raise SpawnError(self._error_text(mine, identity.ospid))
        return identity

    @staticmethod
    def _error_text(mine: socket.socket, code: int) -> str:
        try:
            (size,) = LENGTH.unpack(recv_exact(mine, LENGTH.size))
            return recv_exact(mine, min(size, MAX_ERROR_TEXT)).decode("utf-8", "replace")
        except (EOFError, OSError):
            return f"the node's zygote could not start a process ({os.strerror(code)})"

    # ---------------------------------------------------- list and stop

    def request(self, request: ListRequest | StopRequest) -> list[LiveProcess]:
        """Send ``request``, return the rows of its answer (none for a stop)."""
        data = encode_request(request)
        try:
            return self._retrying(lambda: self._list_processes(data))
        except TimeoutError as exc:
            self.sock.close()  # a late answer must not be read as the next one's
            raise NodeError(f"the node's zygote did not answer within {SPAWN_TIMEOUT}s") from exc

    def _list_processes(self, data: bytes) -> list[LiveProcess]:
        self._send(data)
        out: list[LiveProcess] = []
        while True:
            try:
                answer = self.sock.recv(_MAX_ANSWER)
            except ConnectionResetError as exc:
                raise _Lost(str(exc)) from exc
            if not answer:
                raise _Lost("the node's zygote closed the connection")
            more, part = parse_list_answer(answer)
            out.extend(part)
            if not more:
                return out

    def close(self) -> None:
        self.sock.close()
