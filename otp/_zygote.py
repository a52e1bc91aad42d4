"""The zygote: the one process that forks every OTP process of a node.

Why a zygote.  libzmq runs I/O threads in every context, and each OTP
process has a signal thread; forking a process that has threads copies only
the forking thread and can leave locks held forever in the child (measured
here: a child forked from a process with a live zmq context hung creating
its own).  The zygote is single threaded, never creates a zmq context, has
``otp``, ``zmq`` and ``cloudpickle`` imported (and whatever ``preload``
names), and before forking it freezes its objects (``gc.freeze()``) and
fills its allocators' free slots (:func:`otp._fork_memory.fill_holes`), so that children
share its pages and copy as few of them as they can.  A fork from it starts
a process with a bound mailbox in about 2 ms.

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

Protocol: see :mod:`otp._zygote_protocol`; the processes' side is
:mod:`otp._zygote_client`.

Bad input and exhausted resources (the choices where nothing else said):

* a malformed request (wrong shape, empty, a global in the pickle, truncated,
  descriptors where none belong) is dropped and logged, at most one line a
  second per connection; a spawner whose request was refused gets the
  error answer; the connection stays open;
* an exception while serving one connection is logged with its traceback
  and closes that connection only;
* ``fork()`` failing (EAGAIN under RLIMIT_NPROC, ENOMEM) fails the spawners
  no embryo is coming for, with the OS reason.  Refilling the pool of
  spare embryos is retried with a backoff (50 ms doubling to 2 s, an epoll
  timeout); a new spawn request still tries one fork at once, since a
  spawner waits for it.  Embryos that die during their bootstrap
  :data:`_MAX_BOOTSTRAP_DEATHS` times in a row count as failed forks too;
* client connections are capped, and shed when descriptors run out; a
  client that does not read its answer loses its connection (see
  :mod:`otp._zygote_conns`).
"""

from __future__ import annotations

import collections
import errno
import importlib
import logging
import os
import pickle
import select
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

from . import _logging, _oslib
from ._embryo import embryo_main, rehearsal_sample
from ._fork_memory import fill_holes
from ._pid import new_uid
from ._transport import NodeInfo
from ._zygote_conns import MAX_CONNS, ConnsMixin, RateLimit, answer_error, connection_cap
from ._zygote_protocol import IDENTITY, LENGTH, LiveProcess, ZygoteConfig, ZygoteFailed, ZygoteReady, recv_exact

log = logging.getLogger("otp")

__all__ = ["zygote_entry", "connection_cap"]

_FORK_BACKOFF = (0.05, 2.0)
_MAX_BOOTSTRAP_DEATHS = 3
#: Seconds the zygote waits after handing out an embryo before it forks the
#: replacement, while another is ready (see :meth:`_Zygote.refill`).
_REFILL_DELAY = 0.005
_CONFIG_TIMEOUT = 60.0


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


#: What a new embryo runs: ``(node, uid, zygote channel, zygote's ospid,
#: rehearsal sample)`` (see :mod:`otp._embryo`).
EmbryoMain = Callable[[NodeInfo, int, socket.socket, int, bytes], NoReturn]


class _Zygote(ConnsMixin):
    def __init__(self, config: ZygoteConfig, embryo_main: EmbryoMain, rehearsal: bytes) -> None:
        node = config.node
        self.node = node
        self.embryo_main = embryo_main
        self.rehearsal = rehearsal
        self.me = os.getpid()
        self.children: dict[int, int] = {}  # ospid -> uid, in fork order
        self.embryo_ospid: dict[int, int] = {}  # channel fd -> ospid, until it is handed a function
        self.conns: collections.OrderedDict[int, socket.socket] = collections.OrderedDict()  # LRU first
        self.complaints: dict[int, RateLimit] = {}  # conn fd -> its malformed-request log limit
        self.pool_size = config.embryos
        self.unborn: dict[int, socket.socket] = {}  # channel fd -> embryo not yet ready
        # Channels of ready embryos, with the identity each told us.
        self.ready: collections.deque[tuple[socket.socket, bytes]] = collections.deque()
        self.waiting: collections.deque[int] = collections.deque()  # spawners' channel fds
        self.learning = True
        self.shed_cap = MAX_CONNS
        self.fork_backoff = _Backoff(*_FORK_BACKOFF)
        self.fork_retry_at: float | None = None
        self.refill_at: float | None = None
        self.listen_at: float | None = None
        self.bootstrap_deaths = 0
        self.fork_log = RateLimit()
        self.accept_log = RateLimit()
        self.faults = _ForkFaults(os.environ.get("OTP_TEST_FORK_FAULTS"))
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.listener.bind(node.zygote_address)
        self.listener.listen(512)
        self.listener.setblocking(False)
        self.node_fd = _oslib.open_verified_pidfd(config.root_ospid, config.root_start)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, _noop)
        self.ep = select.epoll()
        self.ep.register(self.listener.fileno(), select.EPOLLIN)
        self.ep.register(self.wake_r, select.EPOLLIN)
        if self.node_fd is not None:
            self.ep.register(self.node_fd, select.EPOLLIN)

    # -------------------------------------------------------------- loop

    def serve(self) -> NoReturn:
        if self.node_fd is None:
            self.shutdown()
        fill_holes()
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
        timers = [t for t in (self.fork_retry_at, self.listen_at, self.refill_at) if t is not None]
        return max(0.0, min(timers) - time.monotonic()) if timers else -1

    def run_timers(self) -> None:
        now = time.monotonic()
        if self.listen_at is not None and now >= self.listen_at:
            self.listen_at = None
            self.ep.register(self.listener.fileno(), select.EPOLLIN)
        if self.fork_retry_at is not None and now >= self.fork_retry_at:
            self.fork_retry_at = None
            self.top_up()
        if self.refill_at is not None and now >= self.refill_at:
            self.top_up()

    def live_rows(self) -> list[LiveProcess]:
        self.reap()  # what has already exited is not listed
        spare = set(self.embryo_ospid.values())
        return [LiveProcess(ospid, uid, ospid in spare) for ospid, uid in self.children.items()]

    def learn(self, module: str, path: tuple[str, ...]) -> None:
        """Import a module the node spawns functions from, so that embryos
        forked from now on have it loaded (an import in every new process
        costs milliseconds).  Stops learning if an import starts a thread:
        the zygote must stay single threaded to fork safely.  ``path`` is
        absolute (checked by :func:`otp._zygote_protocol.parse_request`) and appended, so it never
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
        fill_holes()

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
            self.ready.append((chan, identity))
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
        """Hand ready embryos to waiting spawners, each spawner the identity
        of its process; then refill the pool (see :meth:`refill`)."""
        handed = False
        while self.waiting and self.ready:
            chan, identity = self.ready.popleft()
            spawner_fd = self.waiting[0]
            self.embryo_ospid.pop(chan.fileno(), None)
            try:
                socket.send_fds(chan, [b"go"], [spawner_fd])
            except OSError:
                chan.close()  # that embryo died; try the next one
                continue
            chan.close()
            handed = True
            try:
                # 20 bytes into an empty buffer: never blocks.
                os.write(spawner_fd, identity)
            except OSError:
                pass  # the spawner is gone; the embryo sees EOF and exits
            os.close(self.waiting.popleft())
        self.refill(handed)

    def refill(self, handed: bool) -> None:
        """Fork what the pool lacks: now if a spawner waits or no embryo is
        ready, else after :data:`_REFILL_DELAY`.  A fork and the bootstrap
        of the new embryo cost milliseconds of CPU; right after a hand-over
        they ran beside the new process's first steps and its spawner's
        (on two cores: in their way), while an embryo was ready for the
        next spawn anyway."""
        if handed and self.ready and not self.waiting:
            if self.refill_at is None:
                self.refill_at = time.monotonic() + _REFILL_DELAY
            return
        self.top_up()

    def wanted(self) -> int:
        """Embryos to fork now: one per spawner no embryo is coming for, and,
        unless forks are backing off, enough to refill the pool."""
        wanted = len(self.waiting) - len(self.unborn)
        if self.fork_retry_at is None:
            wanted += self.pool_size - len(self.ready)
        return wanted

    def top_up(self) -> None:
        self.refill_at = None
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
            answer_error(self.waiting.pop(), code, text)

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
                self.embryo_main(self.node, uid, theirs, self.me, self.rehearsal)
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
        for chan in list(self.unborn.values()) + [chan for chan, _ in self.ready]:
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

    def shutdown(self) -> NoReturn:
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


_the_zygote: list[_Zygote] = []


def _noop(signum: int, frame: FrameType | None) -> None:
    pass


def _on_node_death(signum: int, frame: FrameType | None) -> NoReturn:
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


def _without_cwd(entries: list[str]) -> list[str]:
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


def _read_config(chan: socket.socket) -> ZygoteConfig:
    (size,) = LENGTH.unpack(recv_exact(chan, LENGTH.size))
    config = pickle.loads(recv_exact(chan, size))
    if not isinstance(config, ZygoteConfig):
        raise TypeError(f"the root sent {type(config).__name__}, not a ZygoteConfig")
    return config


def zygote_entry(fd: int) -> NoReturn:
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
        _oslib.raise_fd_limit()  # embryos inherit the raised limit
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node handles Ctrl-C
        chan.settimeout(_CONFIG_TIMEOUT)
        config = _read_config(chan)
        _logging.install_forwarder(config.node)  # before the preloads log anything; embryos inherit it
        for name in config.preload:
            importlib.import_module(name)
        zygote = _Zygote(config, embryo_main, rehearsal_sample(config.node))
        _the_zygote.append(zygote)
        if os.getppid() != config.root_ospid:
            zygote.shutdown()  # the node died before we set the death signal
        chan.sendall(pickle.dumps(ZygoteReady(os.getpid())))
        chan.close()
    except BaseException as exc:
        try:
            chan.sendall(pickle.dumps(ZygoteFailed(repr(exc))))
        finally:
            os._exit(70)
    try:
        zygote.serve()
    finally:
        os._exit(70)
