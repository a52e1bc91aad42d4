"""The zygote: the one process that forks every OTP process of a node.

Why a zygote.  libzmq runs I/O threads in every context, and each OTP
process has a signal thread; forking a process that has threads copies only
the forking thread and can leave locks held forever in the child (measured
here: a child forked from a process with a live zmq context hung creating
its own).  The zygote is single threaded, never creates a zmq context, has
``otp``, ``zmq`` and ``cloudpickle`` imported (and whatever ``preload``
names), and calls ``gc.freeze()`` so children share its pages.  A fork from
it starts a process with a bound mailbox in about 2 ms.

It is also the reaper and the last line against orphans:

* it leads a session of its own (``setsid`` at start), which every process
  of the node and every subprocess they start inherits: the root kills that
  session if the zygote itself dies (see :mod:`otp._node`).  A subprocess
  that calls ``setsid`` itself leaves the session and escapes, as it escapes
  any supervisor;
* every child gets ``PR_SET_PDEATHSIG = SIGKILL`` towards the zygote and
  re-checks its parent after setting it; the zygote gets it towards the
  process that started it, and also watches the node's root process through
  a pidfd (covering start methods where its parent is a helper);
* it is a child subreaper, so descendants of OTP processes (subprocesses the
  user started) are re-parented to it rather than to init;
* when a child dies the zygote kills that child's process group (each OTP
  process leads its own) before reaping it, removes the child's socket
  files, and keeps no zombie;
* when the node goes (its root process exits or is SIGKILLed), the zygote
  SIGKILLs every process left, reaps them, removes the node directory, and
  exits.

Protocol: each OTP process connects a SOCK_SEQPACKET socket to
``<node dir>/zygote`` when it first spawns.  A request is one datagram, the
pickle of a plain tuple (``('spawn', learn)``, ``('list',)``, ``('stop',)``),
read back with an unpickler that refuses every global and checked in one
place, :func:`parse_request`, into a :class:`SpawnRequest`,
:class:`ListRequest` or :class:`StopRequest`.  A spawn request carries, as
SCM_RIGHTS, one end of a socketpair; the zygote passes it to a ready embryo
(see :mod:`otp._embryo`), which tells the spawner its identity over it and
receives its function.  The zygote then forks a replacement embryo.  When
the zygote cannot give the spawner a process it answers on that socketpair
instead, with an identity whose uid is 0 (never a process's, see
:func:`otp._pid.new_uid`), whose ospid is an errno, followed by a length and
a UTF-8 text; the client raises :class:`otp.SpawnError` with that text.

Bad input and exhausted resources (the choices where nothing else said):

* a malformed request (wrong shape, empty, a global in the pickle, truncated,
  descriptors where none belong) is dropped and logged, at most one line a
  second per connection; a spawner whose request was refused gets the
  error answer; the connection stays open;
* an exception while serving one connection is logged with its traceback
  and closes that connection only; a client that does not read its answer
  within :data:`_SEND_TIMEOUT` loses its connection;
* ``fork()`` failing (EAGAIN under RLIMIT_NPROC, ENOMEM) fails the spawners
  no embryo is coming for, with the OS reason.  Refilling the pool of
  spare embryos is retried with a backoff (50 ms doubling to 2 s, an epoll
  timeout); a new spawn request still tries one fork at once, since a
  spawner waits for it.  Embryos that die during their bootstrap
  :data:`_MAX_BOOTSTRAP_DEATHS` times in a row count as failed forks too;
* client connections are capped (a quarter of the descriptor limit, at
  most :data:`_MAX_CONNS`): accepting one more closes the least recently
  used one that has no request waiting; the client reconnects on its next
  request.  Running out of descriptors anyway (EMFILE on accept) halves the
  cap for good, closes connections down to it, and stops accepting for
  :data:`_ACCEPT_PAUSE`.
"""

from __future__ import annotations

import collections
import errno
import gc
import importlib
import io
import logging
import os
import pickle
import reprlib
import resource
import select
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import NamedTuple, NoReturn

from . import _logging, _oslib
from ._embryo import IDENTITY, LENGTH, recv_exact
from ._errors import NodeError, SpawnError
from ._pid import new_uid
from ._transport import NodeInfo

log = logging.getLogger("otp")

__all__ = [
    "zygote_entry",
    "ZygoteClient",
    "SPAWN_TIMEOUT",
    "SpawnRequest",
    "ListRequest",
    "StopRequest",
    "BadRequest",
    "parse_request",
    "encode_request",
    "absolute_path",
    "connection_cap",
    "watch_node",
    "unwatch_node",
]

#: Seconds a spawn may take before the spawner gives up (a healthy fork and
#: child bootstrap takes a few milliseconds; this covers a loaded machine).
SPAWN_TIMEOUT = 30.0
_MAX_REQUEST = 1 << 16
_MAX_FDS = 4
_MAX_ERROR_TEXT = 1 << 12
_LIST_CHUNK = 2000
#: Seconds the zygote waits for a client to take an answer before it drops
#: the connection (it serves the whole node: it must not wait on one client).
_SEND_TIMEOUT = 2.0
_MAX_CONNS = 1024
_MIN_CONNS = 8
_ACCEPT_PAUSE = 0.1
_FORK_BACKOFF = (0.05, 2.0)
_MAX_BOOTSTRAP_DEATHS = 3
#: Seconds a client that lost the zygote waits for the root's watch to say
#: whether the zygote died (its socket closes a moment before it is a zombie).
_DEATH_WAIT = 1.0


# ------------------------------------------------------------------ protocol


class SpawnRequest(NamedTuple):
    """Give me a process.  ``learn``: ``(module, absolute sys.path)`` the
    zygote should import so that later processes start with it, or None."""

    learn: tuple[str, tuple[str, ...]] | None = None


class ListRequest(NamedTuple):
    """Which processes are alive: answered with ``(ospid, uid, spare)`` rows."""


class StopRequest(NamedTuple):
    """Kill every process of the node, remove its directory, exit."""


Request = SpawnRequest | ListRequest | StopRequest
_TAGS = {SpawnRequest: "spawn", ListRequest: "list", StopRequest: "stop"}
_KINDS = {tag: kind for kind, tag in _TAGS.items()}


class BadRequest(ValueError):
    """A datagram on the zygote's channel that is not a well-formed request."""


class _PlainUnpickler(pickle.Unpickler):
    """Builds tuples, lists, strings, numbers and None; refuses every global
    (no class is instantiated and no module imported in the zygote, which
    must stay single threaded)."""

    def find_class(self, module: str, name: str) -> NoReturn:
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def encode_request(request: Request) -> bytes:
    return pickle.dumps((_TAGS[type(request)], *request))


def _hung_up(sock: socket.socket) -> bool:
    """After a read of 0 bytes: the peer closed (rather than sent an empty
    record, which SEQPACKET allows and which reads the same)."""
    poller = select.poll()
    poller.register(sock, select.POLLRDHUP)
    return any(mask & (select.POLLRDHUP | select.POLLHUP | select.POLLERR) for _, mask in poller.poll(0))


def parse_request(data: bytes, nfds: int, flags: int = 0) -> Request:
    """The request in ``data`` (received with ``nfds`` descriptors and recvmsg
    ``flags``), or :class:`BadRequest` saying what is wrong with it."""
    if flags & socket.MSG_TRUNC:
        raise BadRequest(f"longer than {_MAX_REQUEST} bytes")
    if flags & socket.MSG_CTRUNC:
        raise BadRequest("its descriptors were cut off (more than allowed, or no descriptor left)")
    if not data:
        raise BadRequest("empty")
    msg = _plain_loads(data)
    if not isinstance(msg, tuple) or not msg or not isinstance(msg[0], str) or msg[0] not in _KINDS:
        raise BadRequest(f"not a request: {_summary(msg)}")
    kind = _KINDS[msg[0]]
    if len(msg) - 1 != len(kind._fields):
        raise BadRequest(f"{msg[0]!r} takes {len(kind._fields)} argument(s), got {len(msg) - 1}")
    wanted = 1 if kind is SpawnRequest else 0
    if nfds != wanted:
        raise BadRequest(f"{msg[0]!r} carries {wanted} descriptor(s), got {nfds}")
    if kind is SpawnRequest:
        return SpawnRequest(_parse_learn(msg[1]))
    return kind()


def _plain_loads(data: bytes) -> object:
    buf = io.BytesIO(data)
    try:
        msg = _PlainUnpickler(buf).load()
    except Exception as exc:  # noqa: BLE001 - any way a pickle can be broken
        raise BadRequest(f"not a plain pickle ({type(exc).__name__}: {exc})") from None
    if buf.tell() != len(data):
        raise BadRequest(f"{len(data) - buf.tell()} bytes after the pickle")
    return msg


def _parse_learn(learn: object) -> tuple[str, tuple[str, ...]] | None:
    if learn is None:
        return None
    if not (isinstance(learn, (tuple, list)) and len(learn) == 2):
        raise BadRequest(f"learn must be None or (module, path), not {_summary(learn)}")
    module, path = learn
    if not isinstance(module, str) or not module:
        raise BadRequest(f"learn's module must be a non-empty str, not {_summary(module)}")
    # A NUL in a sys.path entry makes every later import that reaches it
    # raise ValueError, in the zygote and in every process forked from it.
    if not isinstance(path, (tuple, list)) or not all(_is_clean_path(p) for p in path):
        raise BadRequest(f"learn's path must be absolute paths, not {_summary(path)}")
    return module, tuple(path)


def _is_clean_path(entry: object) -> bool:
    return isinstance(entry, str) and os.path.isabs(entry) and "\0" not in entry


_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60


def _summary(value: object) -> str:
    """A short repr, safe for any nesting depth (a deeply nested tuple in a
    request must not make the zygote recurse)."""
    return _repr.repr(value)


def absolute_path(entries: list) -> list[str]:
    """``entries`` (a ``sys.path``) as absolute paths: ``''`` is the current
    directory, relative entries are resolved against it, non-str entries
    are left out.  What a spawner sends the zygote, which must never resolve
    a path against its own current directory."""
    return [os.path.abspath(entry) if entry else os.getcwd() for entry in entries if isinstance(entry, str)]


def connection_cap(nofile: int) -> int:
    """How many idle client connections the zygote keeps, for a descriptor
    limit of ``nofile``: a quarter of it, the rest staying free for spawn
    requests in flight and embryo channels."""
    return max(_MIN_CONNS, min(_MAX_CONNS, nofile // 4))


def _error_answer(code: int, text: str) -> bytes:
    body = text.encode("utf-8", "replace")[:_MAX_ERROR_TEXT]
    return IDENTITY.pack(0, code, 0) + LENGTH.pack(len(body)) + body


def _answer_error(fd: int, code: int, text: str) -> None:
    """Tell the spawner at ``fd`` (closed here) it gets no process, and why."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        os.close(fd)  # not a socket: nobody to tell
        return
    with sock:
        try:
            sock.send(_error_answer(code, text), socket.MSG_DONTWAIT)
        except OSError:
            pass  # the spawner is gone or its buffer is full: it sees EOF


# -------------------------------------------------------------------- client

# address -> (ospid that registered it, cause(timeout) -> str | None); the
# root's node registers its watch of the zygote here (see otp._node), so a
# client in the root can name the cause of the zygote's death.
_watches: dict[str, tuple[int, Callable[[float], str | None]]] = {}


def watch_node(address: str, cause: Callable[[float], str | None]) -> None:
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

    def _retrying(self, attempt: Callable[[], object]) -> object:
        try:
            return attempt()
        except _Lost:
            pass
        try:
            self._reconnect()
            return attempt()
        except _Lost as lost:
            self._down(lost)

    def spawn(self, register, module: str | None = None) -> None:
        """Get an embryo and hand it its function.

        ``register(uid, ospid, start)`` is called with the new process's
        identity and returns the spec to send it; the caller registers its
        links and monitors there, before the process can run.  ``module``
        names the module the function lives in, for the zygote to preload.
        """
        request = encode_request(SpawnRequest(self._learn(module)))
        self._retrying(lambda: self._spawn_once(register, request))

    def _learn(self, module: str | None) -> tuple[str, tuple[str, ...]] | None:
        if not module or module in self.told:
            return None
        self.told.add(module)
        learn = (module, tuple(absolute_path(sys.path)))
        if len(encode_request(SpawnRequest(learn))) > _MAX_REQUEST:
            return None  # a sys.path this long: the process imports the module itself
        return learn

    def _spawn_once(self, register, request: bytes) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with mine:
            try:
                try:
                    self._send(request, (theirs.fileno(),))
                finally:
                    theirs.close()
                mine.settimeout(SPAWN_TIMEOUT)
                spec = register(*self._identity(mine))
                try:
                    mine.sendall(LENGTH.pack(len(spec)) + spec)
                except OSError:
                    pass  # it died already; the caller's watch reports it
            except TimeoutError as exc:
                raise SpawnError(f"no process from the node runtime within {SPAWN_TIMEOUT}s") from exc

    def _identity(self, mine: socket.socket) -> tuple[int, int, int]:
        try:
            uid, ospid, start = IDENTITY.unpack(recv_exact(mine, IDENTITY.size))
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
        if uid == 0:
            raise SpawnError(self._error_text(mine, ospid))
        return uid, ospid, start

    @staticmethod
    def _error_text(mine: socket.socket, code: int) -> str:
        try:
            (size,) = LENGTH.unpack(recv_exact(mine, LENGTH.size))
            return recv_exact(mine, min(size, _MAX_ERROR_TEXT)).decode("utf-8", "replace")
        except (EOFError, OSError):
            return f"the node's zygote could not start a process ({os.strerror(code)})"

    def request(self, request: ListRequest | StopRequest) -> list:
        """Send ``request``, return the rows of its answer."""
        data = encode_request(request)
        try:
            return self._retrying(lambda: self._ask(data))
        except TimeoutError as exc:
            self.sock.close()  # a late answer must not be read as the next one's
            raise NodeError(f"the node's zygote did not answer within {SPAWN_TIMEOUT}s") from exc

    def _ask(self, data: bytes) -> list:
        self._send(data)
        out = []
        while True:
            try:
                answer = self.sock.recv(1 << 22)
            except ConnectionResetError as exc:
                raise _Lost(str(exc)) from exc
            if not answer:
                raise _Lost("the node's zygote closed the connection")
            more, part = pickle.loads(answer)
            out.extend(part)
            if not more:
                return out

    def close(self) -> None:
        self.sock.close()


# -------------------------------------------------------------------- zygote


def _noop(signum, frame) -> None:
    pass


class _RateLimit:
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


class _Backoff:
    def __init__(self, first: float, most: float) -> None:
        self.first = first
        self.most = most
        self.next = first

    def delay(self) -> float:
        delay, self.next = self.next, min(self.most, self.next * 2)
        return delay

    def reset(self) -> None:
        self.next = self.first


class _ForkFaults:
    """Test-only fault injection, off unless ``$OTP_TEST_FORK_FAULTS`` names
    a directory when the zygote starts (tests/test_zygote_robustness.py).
    There ``fail`` holds ``K ERRNO``: fork attempts number 1 to K (counted
    from the zygote's start) fail with ERRNO.  The zygote writes its count of
    attempts to ``attempts``.  The test writes only ``fail``, the zygote only
    ``attempts``, so neither loses the other's update."""

    def __init__(self, directory: str | None) -> None:
        self.dir = directory
        self.attempts = 0

    def check(self) -> None:
        if self.dir is None:
            return
        self.attempts += 1
        try:
            with open(os.path.join(self.dir, "attempts.tmp"), "w") as f:
                f.write(str(self.attempts))
            os.rename(os.path.join(self.dir, "attempts.tmp"), os.path.join(self.dir, "attempts"))
            with open(os.path.join(self.dir, "fail")) as f:
                upto, code = (int(x) for x in f.read().split())
        except (OSError, ValueError):
            return
        if self.attempts <= upto:
            raise OSError(code, os.strerror(code))


class _Zygote:
    def __init__(self, node: NodeInfo, node_ospid: int, node_start: int, embryos: int) -> None:
        self.node = node
        self.me = os.getpid()
        self.children: dict[int, int] = {}  # ospid -> uid, in fork order
        self.embryo_ospid: dict[int, int] = {}  # channel fd -> ospid, until it is handed a function
        self.conns: collections.OrderedDict[int, socket.socket] = collections.OrderedDict()  # LRU first
        self.complaints: dict[int, _RateLimit] = {}  # conn fd -> its malformed-request log limit
        self.pool_size = embryos
        self.unborn: dict[int, socket.socket] = {}  # channel fd -> embryo not yet ready
        self.ready: collections.deque = collections.deque()  # channels of ready embryos
        self.waiting: collections.deque = collections.deque()  # spawners' channel fds
        self.learning = True
        self.shed_cap = _MAX_CONNS
        self.fork_backoff = _Backoff(*_FORK_BACKOFF)
        self.fork_retry_at: float | None = None
        self.listen_at: float | None = None
        self.bootstrap_deaths = 0
        self.fork_log = _RateLimit()
        self.accept_log = _RateLimit()
        self.faults = _ForkFaults(os.environ.get("OTP_TEST_FORK_FAULTS"))
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.listener.bind(node.zygote_address)
        self.listener.listen(512)
        self.listener.setblocking(False)
        self.node_fd = _oslib.open_verified_pidfd(node_ospid, node_start)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, _noop)
        self.ep = select.epoll()
        self.ep.register(self.listener.fileno(), select.EPOLLIN)
        self.ep.register(self.wake_r, select.EPOLLIN)
        if self.node_fd is not None:
            self.ep.register(self.node_fd, select.EPOLLIN)

    # -------------------------------------------------------------- loop

    def serve(self) -> None:
        if self.node_fd is None:
            self.shutdown()
        gc.freeze()
        self.top_up()
        while True:
            try:
                events = self.ep.poll(self.poll_timeout())
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
            for fd, _ in events:
                self.handle_safely(fd)
            self.run_timers()

    def handle_safely(self, fd: int) -> None:
        try:
            self.handle(fd)
        except Exception:
            # A bug, not bad input (that is refused before this): say so with
            # the traceback, but one connection must not take the node down.
            log.exception("zygote: serving descriptor %d failed", fd)
            conn = self.conns.get(fd)
            if conn is not None:
                self.close_conn(conn)

    def handle(self, fd: int) -> None:
        if fd == self.listener.fileno():
            self.accept()
        elif fd == self.wake_r:
            try:
                while os.read(self.wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
            self.reap()
        elif fd == self.node_fd:
            self.shutdown()
        elif fd in self.conns:
            self.serve_conn(self.conns[fd])
        elif fd in self.unborn:
            self.embryo_ready(fd)

    def poll_timeout(self) -> float:
        timers = [t for t in (self.fork_retry_at, self.listen_at) if t is not None]
        return max(0.0, min(timers) - time.monotonic()) if timers else -1

    def run_timers(self) -> None:
        now = time.monotonic()
        if self.listen_at is not None and now >= self.listen_at:
            self.listen_at = None
            self.ep.register(self.listener.fileno(), select.EPOLLIN)
        if self.fork_retry_at is not None and now >= self.fork_retry_at:
            self.fork_retry_at = None
            self.top_up()

    # ------------------------------------------------------- connections

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
            data, fds, flags, _ = socket.recv_fds(conn, _MAX_REQUEST, _MAX_FDS, socket.MSG_DONTWAIT)
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
            if flags & socket.MSG_CTRUNC and len(fds) < _MAX_FDS:
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
            _answer_error(fd, errno.EINVAL, f"the node's zygote refused a malformed request: {exc}")
        suffix = self.complaints.setdefault(conn.fileno(), _RateLimit()).allow()
        if suffix is not None:
            log.warning("zygote: dropped a malformed request on connection %d: %s%s", conn.fileno(), exc, suffix)

    def answer(self, conn: socket.socket, rows: list) -> None:
        conn.settimeout(_SEND_TIMEOUT)
        try:
            for i in range(0, max(1, len(rows)), _LIST_CHUNK):
                part = rows[i : i + _LIST_CHUNK]
                conn.sendall(pickle.dumps((i + _LIST_CHUNK < len(rows), part)))
        except OSError as exc:
            log.warning("zygote: a client did not take its answer (%s); closing its connection", exc)
            self.close_conn(conn)
            return
        conn.setblocking(False)

    def live_rows(self) -> list[tuple[int, int, bool]]:
        self.reap()  # what has already exited is not listed
        spare = set(self.embryo_ospid.values())
        return [(ospid, uid, ospid in spare) for ospid, uid in self.children.items()]

    def learn(self, module: str, path: tuple[str, ...]) -> None:
        """Import a module the node spawns functions from, so that embryos
        forked from now on have it loaded (an import in every new process
        costs milliseconds).  Stops learning if an import starts a thread:
        the zygote must stay single threaded to fork safely.  ``path`` is
        absolute (checked by :func:`parse_request`) and appended, so it never
        shadows what the zygote imports already."""
        if not self.learning or module in sys.modules or module == "__main__":
            return
        for entry in path:
            if entry not in sys.path:
                sys.path.append(entry)
        try:
            importlib.import_module(module)
        except BaseException:  # noqa: BLE001 - a module that fails here fails in the process too
            return
        if len(os.listdir("/proc/self/task")) > 1:
            self.learning = False
            log.warning("zygote: importing %r started a thread; no longer preloading modules", module)
        gc.freeze()

    # ------------------------------------------------------------ embryos

    def embryo_ready(self, fd: int) -> None:
        chan = self.unborn[fd]
        try:
            identity = chan.recv(IDENTITY.size, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            identity = b""
        del self.unborn[fd]
        self.ep.unregister(fd)
        if len(identity) == IDENTITY.size:
            # Only a process that got this far proves forking works again
            # (a fork can succeed and the child die at once).
            self.bootstrap_deaths = 0
            self.fork_backoff.reset()
            self.ready.append(chan)
        else:
            self.embryo_ospid.pop(fd, None)
            chan.close()  # it died during its bootstrap; reap() cleans up
            self.bootstrap_deaths += 1
            if self.bootstrap_deaths >= _MAX_BOOTSTRAP_DEATHS:
                self.bootstrap_deaths = 0
                text = f"new processes die during their bootstrap ({_MAX_BOOTSTRAP_DEATHS} in a row; see the log)"
                self.cannot_fork(errno.ECHILD, text)
        self.dispatch()

    def dispatch(self) -> None:
        while self.waiting and self.ready:
            chan = self.ready.popleft()
            spawner_fd = self.waiting[0]
            self.embryo_ospid.pop(chan.fileno(), None)
            try:
                socket.send_fds(chan, [b"go"], [spawner_fd])
            except OSError:
                chan.close()  # that embryo died; try the next one
                continue
            chan.close()
            os.close(self.waiting.popleft())
        self.top_up()

    def wanted(self) -> int:
        """Embryos to fork now: one per spawner no embryo is coming for, and,
        unless forks are backing off, enough to refill the pool."""
        wanted = len(self.waiting) - len(self.unborn)
        if self.fork_retry_at is None:
            wanted += self.pool_size - len(self.ready)
        return wanted

    def top_up(self) -> None:
        while self.wanted() > 0:
            try:
                self.fork()
            except OSError as exc:
                self.cannot_fork(exc.errno or errno.EAGAIN, f"fork failed: {exc}")
                return
            self.fork_retry_at = None  # forking works again: refill the pool too

    def cannot_fork(self, code: int, text: str) -> None:
        """Fail the spawners no embryo is coming for (the newest first: the
        older ones get the embryos already on their way), retry later."""
        delay = self.fork_backoff.delay()
        self.fork_retry_at = time.monotonic() + delay
        suffix = self.fork_log.allow()
        if suffix is not None:
            log.warning("zygote: %s; retrying in %ss%s", text, delay, suffix)
        while len(self.waiting) > len(self.unborn):
            _answer_error(self.waiting.pop(), code, text)

    def fork(self) -> None:
        self.faults.check()
        uid = new_uid()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            ospid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            raise
        if ospid == 0:
            try:
                ours.close()
                self._become_child()
                from ._embryo import embryo_main

                embryo_main(self.node, uid, theirs, self.me)
            finally:
                os._exit(70)
        theirs.close()
        self.children[ospid] = uid
        self.embryo_ospid[ours.fileno()] = ospid
        self.unborn[ours.fileno()] = ours
        self.ep.register(ours.fileno(), select.EPOLLIN)

    def _become_child(self) -> None:
        signal.set_wakeup_fd(-1)
        _the_zygote.clear()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self.ep.close()
        self.listener.close()
        for conn in self.conns.values():
            conn.close()
        for chan in list(self.unborn.values()) + list(self.ready):
            chan.close()
        for fd in self.waiting:
            os.close(fd)
        os.close(self.wake_r)
        os.close(self.wake_w)
        if self.node_fd is not None:
            os.close(self.node_fd)

    # ----------------------------------------------------------- reaping

    def reap(self) -> None:
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None:
                return
            ospid = info.si_pid
            uid = self.children.pop(ospid, None)
            for fd in [fd for fd, spare in self.embryo_ospid.items() if spare == ospid]:
                del self.embryo_ospid[fd]  # an embryo that died unused
            if uid is not None:
                # Descendants it left behind in its process group go too,
                # while its pid (the group id) is still held by the zombie.
                try:
                    os.killpg(ospid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                os.waitpid(ospid, 0)
            except ChildProcessError:
                pass
            if uid is not None:
                self.node.remove_endpoints(uid)

    def shutdown(self) -> None:
        """Kill everything left, reap it, remove the node directory, exit."""
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for _ in range(3):
            victims = set(self.children) | set(_oslib.related_processes(self.me))
            if not victims:
                break
            for ospid in victims:
                for kill in (os.killpg, os.kill):
                    try:
                        kill(ospid, signal.SIGKILL)
                    except OSError:
                        pass
            for ospid in victims:
                try:
                    os.waitpid(ospid, 0)
                except ChildProcessError:
                    pass
            self.children.clear()
        shutil.rmtree(self.node.dir, ignore_errors=True)
        os._exit(0)


_the_zygote: list = []


def _on_node_death(signum, frame) -> None:
    if _the_zygote:
        _the_zygote[0].shutdown()
    os._exit(0)


def _own_session() -> None:
    """Lead a session of the node's own, so the root can find and kill every
    process the node started if the zygote dies (see otp._node)."""
    try:
        os.setsid()
    except OSError as exc:  # pragma: no cover - only a group leader cannot
        log.warning("zygote: setsid failed (%s); subprocesses may outlive a killed zygote", exc)


def _without_cwd(entries: list) -> list[str]:
    """``sys.path`` for the zygote: nothing is ever imported from the current
    directory (``python -c`` put '' first; under fork it is whatever the root
    had), since a module planted there, in /tmp say, would run as the node's
    user.  Other relative entries are made absolute (the zygote's current
    directory is the root's at node start)."""
    cwd = os.getcwd()
    out = []
    for entry in entries:
        if isinstance(entry, str) and entry and os.path.abspath(entry) != cwd:
            out.append(os.path.abspath(entry))
        elif isinstance(entry, str) and os.path.isabs(entry):
            out.append(entry)  # the current directory named absolutely: the user's choice
    return out


def zygote_entry(fd: int) -> None:
    """Entry point of the zygote: read the config from ``fd``, answer, serve."""
    chan = socket.socket(fileno=fd)
    try:
        sys.path[:] = _without_cwd(sys.path)
        _own_session()
        # SIGTERM, not SIGKILL, when the node dies: the zygote must live
        # long enough to kill its children's process groups (which hold the
        # subprocesses users start) and remove the node directory.
        signal.signal(signal.SIGTERM, _on_node_death)
        _oslib.set_parent_death_signal(signal.SIGTERM)
        _oslib.set_child_subreaper()
        _oslib.raise_fd_limit()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node handles Ctrl-C
        chan.settimeout(60.0)
        (size,) = LENGTH.unpack(recv_exact(chan, LENGTH.size))
        node, node_ospid, node_start, preload, embryos = pickle.loads(recv_exact(chan, size))
        _logging.install_forwarder(node)  # before the preloads log anything; embryos inherit it
        import cloudpickle  # noqa: F401 - preloaded for the children
        import zmq  # noqa: F401

        from . import _embryo, _process  # noqa: F401

        for name in preload:
            importlib.import_module(name)
        zygote = _Zygote(node, node_ospid, node_start, embryos)
        _the_zygote.append(zygote)
        if os.getppid() != node_ospid:
            zygote.shutdown()  # the node died before we set the death signal
        chan.sendall(pickle.dumps(("ready", os.getpid())))
        chan.close()
    except BaseException as exc:
        try:
            chan.sendall(pickle.dumps(("error", repr(exc))))
        finally:
            os._exit(70)
    try:
        zygote.serve()
    finally:
        os._exit(70)
