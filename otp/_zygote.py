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
``<node dir>/zygote`` when it first spawns.  A spawn request carries, as
SCM_RIGHTS, one end of a socketpair; the zygote passes it to a ready embryo
(see :mod:`otp._embryo`), which tells the spawner its identity over it and
receives its function.  The zygote then forks a replacement embryo.
"""

from __future__ import annotations

import collections
import gc
import importlib
import logging
import os
import pickle
import select
import shutil
import signal
import socket
import sys

from . import _oslib
from ._embryo import IDENTITY, LENGTH, recv_exact
from ._errors import SpawnError
from ._pid import new_uid
from ._transport import NodeInfo

log = logging.getLogger("otp")

__all__ = ["zygote_entry", "ZygoteClient", "SPAWN_TIMEOUT"]

#: Seconds a spawn may take before the spawner gives up (a healthy fork and
#: child bootstrap takes a few milliseconds; this covers a loaded machine).
SPAWN_TIMEOUT = 30.0
_MAX_REQUEST = 1 << 16
_LIST_CHUNK = 2000


class ZygoteClient:
    """A process's connection to its node's zygote (main thread only)."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.sock.settimeout(SPAWN_TIMEOUT)
        try:
            self.sock.connect(address)
        except OSError as exc:
            self.sock.close()
            raise SpawnError(f"node runtime is not running ({exc})") from exc
        self.told: set[str] = set()

    def spawn(self, register, module: str | None = None) -> None:
        """Get an embryo and hand it its function.

        ``register(uid, ospid, start)`` is called with the new process's
        identity and returns the spec to send it; the caller registers its
        links and monitors there, before the process can run.  ``module``
        names the module the function lives in, for the zygote to preload.
        """
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        learn = None
        if module and module not in self.told:
            self.told.add(module)
            learn = (module, list(sys.path))
        try:
            try:
                socket.send_fds(self.sock, [pickle.dumps(("spawn", learn))], [theirs.fileno()])
            except OSError as exc:
                raise SpawnError(f"node runtime is not running ({exc})") from exc
            finally:
                theirs.close()
            mine.settimeout(SPAWN_TIMEOUT)
            try:
                identity = recv_exact(mine, IDENTITY.size)
            except EOFError as exc:
                raise SpawnError("the node runtime is stopping") from exc
            spec = register(*IDENTITY.unpack(identity))
            try:
                mine.sendall(LENGTH.pack(len(spec)) + spec)
            except OSError:
                pass  # it died already; the caller's watch reports it
        except TimeoutError as exc:
            raise SpawnError(f"no process from the node runtime within {SPAWN_TIMEOUT}s") from exc
        finally:
            mine.close()

    def request(self, *msg: object) -> object:
        self.sock.sendall(pickle.dumps(msg))
        out = []
        while True:
            more, part = pickle.loads(self.sock.recv(1 << 22))
            out.extend(part)
            if not more:
                return out

    def close(self) -> None:
        self.sock.close()


def _noop(signum, frame) -> None:
    pass


class _Zygote:
    def __init__(self, node: NodeInfo, node_ospid: int, node_start: int, embryos: int) -> None:
        self.node = node
        self.me = os.getpid()
        self.children: dict[int, int] = {}  # ospid -> uid, in fork order
        self.embryo_ospid: dict[int, int] = {}  # channel fd -> ospid, until it is handed a function
        self.conns: dict[int, socket.socket] = {}
        self.pool_size = embryos
        self.unborn: dict[int, socket.socket] = {}  # channel fd -> embryo not yet ready
        self.ready: collections.deque = collections.deque()  # channels of ready embryos
        self.waiting: collections.deque = collections.deque()  # spawners' channel fds
        self.learning = True
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.listener.bind(node.zygote_address)
        self.listener.listen(512)
        self.node_fd = _oslib.open_verified_pidfd(node_ospid, node_start)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, _noop)
        self.ep = select.epoll()
        self.ep.register(self.listener.fileno(), select.EPOLLIN)
        self.ep.register(self.wake_r, select.EPOLLIN)
        if self.node_fd is not None:
            self.ep.register(self.node_fd, select.EPOLLIN)

    def serve(self) -> None:
        if self.node_fd is None:
            self.shutdown()
        gc.freeze()
        self.top_up()
        while True:
            try:
                events = self.ep.poll()
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
            for fd, _ in events:
                if fd == self.listener.fileno():
                    conn, _ = self.listener.accept()
                    self.conns[conn.fileno()] = conn
                    self.ep.register(conn.fileno(), select.EPOLLIN)
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

    def serve_conn(self, conn: socket.socket) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(conn, _MAX_REQUEST, 4)
        except OSError:
            data, fds = b"", []
        if not data:
            for fd in fds:
                os.close(fd)
            self.ep.unregister(conn.fileno())
            del self.conns[conn.fileno()]
            conn.close()
            return
        try:
            msg = pickle.loads(data)
        except Exception:
            log.warning("zygote: dropped a malformed request")
            for fd in fds:
                os.close(fd)
            return
        if msg[0] == "spawn" and len(fds) == 1:
            self.waiting.append(fds[0])
            self.dispatch()
            if len(msg) > 1 and msg[1] is not None:
                self.learn(*msg[1])
        elif msg[0] == "list":
            self.reap()  # what has already exited is not listed
            spare = set(self.embryo_ospid.values())
            live = [(ospid, uid, ospid in spare) for ospid, uid in self.children.items()]
            for i in range(0, max(1, len(live)), _LIST_CHUNK):
                part = live[i : i + _LIST_CHUNK]
                conn.sendall(pickle.dumps((i + _LIST_CHUNK < len(live), part)))
        elif msg[0] == "stop":
            conn.sendall(pickle.dumps((False, [])))
            self.shutdown()
        else:
            for fd in fds:
                os.close(fd)

    def learn(self, module: str, path: list[str]) -> None:
        """Import a module the node spawns functions from, so that embryos
        forked from now on have it loaded (an import in every new process
        costs milliseconds).  Stops learning if an import starts a thread:
        the zygote must stay single threaded to fork safely."""
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

    def embryo_ready(self, fd: int) -> None:
        chan = self.unborn.pop(fd)
        self.ep.unregister(fd)
        try:
            ok = len(chan.recv(IDENTITY.size)) == IDENTITY.size
        except OSError:
            ok = False
        if ok:
            self.ready.append(chan)
        else:
            self.embryo_ospid.pop(chan.fileno(), None)
            chan.close()  # it died during its bootstrap; reap() cleans up
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

    def top_up(self) -> None:
        want = self.pool_size + len(self.waiting) - len(self.ready) - len(self.unborn)
        for _ in range(max(0, want)):
            self.fork()

    def fork(self) -> None:
        uid = new_uid()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ospid = os.fork()
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

    def _adopted(self) -> list[int]:
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat", "rb") as f:
                        data = f.read()
                    if int(data[data.rindex(b")") + 2 :].split()[1]) == self.me:
                        out.append(int(entry))
                except (OSError, ValueError, IndexError):
                    pass
        return out

    def shutdown(self) -> None:
        """Kill everything left, reap it, remove the node directory, exit."""
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for _ in range(3):
            victims = set(self.children) | set(self._adopted())
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


def zygote_entry(fd: int) -> None:
    """Entry point of the zygote: read the config from ``fd``, answer, serve."""
    chan = socket.socket(fileno=fd)
    try:
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
