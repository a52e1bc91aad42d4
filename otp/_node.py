"""The node runtime: ``with otp.Node(name=...) as node:``.

Entering a node creates its directory (mode 0700, under ``/tmp`` so ipc
paths stay within the 107-byte limit), starts its zygote, and turns the
calling thread into an OTP process (the node's *root* process).  Leaving it:

1. stops the processes the root spawned, in reverse start order: exit signal
   ``'shutdown'``, then ``'kill'`` after :data:`SHUTDOWN_TIMEOUT` (the
   protocol a supervisor uses for a worker; supervisors stop their own
   subtrees);
2. kills whatever else still runs on the node;
3. ends the root process (its links and monitors get ``'normal'``, or the
   reason of the exception that left the block);
4. stops the zygote, which reaps everything and removes the directory.

Start methods (``start_method=`` or ``$OTP_START_METHOD``) say how the zygote
comes to be; OTP processes are always forked from the zygote:

* ``'forkserver'`` (default): a fresh interpreter that serves forks, as
  multiprocessing's fork server does.  Spawned functions must be importable
  or picklable by value (cloudpickle does both); the spawner's ``sys.path``
  travels with each spawn, and the zygote imports the modules functions are
  spawned from so later processes start with them loaded.  Unlike
  multiprocessing, the main module is never re-run.
* ``'fork'``: forked from the calling process, so it inherits everything
  already imported.  Fastest to start; the calling process may have
  threads, which the zygote never uses.

(``multiprocess.Process`` is not used per OTP process: it re-runs the main
module under forkserver and spawn, and starts a process in 5 to 14 ms
against about 1 ms here.)

``registry_backend`` stores the node's names: ``'sqlite'`` (default, a file
in the node directory, so names survive a restart of the registry process),
``'memory'``, or any spec :func:`otp.registry.open_backend` accepts.

``embryos`` is how many processes the zygote keeps forked and bootstrapped
in advance (see :mod:`otp._embryo`); 2 keeps a spawn under a millisecond
after a pause, at the cost of two idle processes (about 10 MB RSS each,
mostly shared).  Use 0 for a node that must not have idle processes.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import warnings

import multiprocess.util

from . import _oslib, _process
from ._errors import NodeError, ProcessExit, Timeout
from ._pid import new_uid
from ._reasons import DOWN, Crash
from ._signals import INTERRUPT_SIGNAL
from ._transport import IPC_PATH_MAX, NodeInfo
from ._zygote import ZygoteClient, zygote_entry

log = logging.getLogger("otp")

__all__ = ["Node", "SHUTDOWN_TIMEOUT"]

#: Seconds a top-level process gets to exit after ``'shutdown'`` when the
#: node closes (OTP's default worker shutdown, 5000 ms).
SHUTDOWN_TIMEOUT = 5.0
_ZYGOTE_START_TIMEOUT = 60.0
START_METHODS = ("forkserver", "fork")


class Node:
    """A node runtime on this host.  Use as a context manager."""

    def __init__(
        self,
        name: str | None = None,
        *,
        start_method: str | None = None,
        preload: tuple[str, ...] = (),
        embryos: int = 2,
        registry_backend: object = "sqlite",
        base_dir: str = "/tmp",
    ) -> None:
        method = start_method or os.environ.get("OTP_START_METHOD") or "forkserver"
        if method not in START_METHODS:
            raise ValueError(f"start_method must be one of {START_METHODS}, not {method!r}")
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"invalid node name {name!r}")
        self.name = name or f"node{os.getpid()}@{socket.gethostname()}"
        self.start_method = method
        self.preload = tuple(preload)
        if not isinstance(embryos, int) or embryos < 0:
            raise ValueError(f"embryos must be a non-negative int, not {embryos!r}")
        self.embryos = embryos
        self.registry_backend = registry_backend
        self.kernel = None
        self.base_dir = base_dir
        self.info: NodeInfo | None = None
        self.process: _process.Process | None = None
        self._zygote_pid: int | None = None
        self._prev_handler = None

    # ----------------------------------------------------------------- start

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            reason: object = "normal"
        elif isinstance(exc, ProcessExit):
            reason = exc.reason
        else:
            reason = Crash.from_exception(exc)
        self.stop(reason)

    def start(self) -> None:
        if _process.current_or_none() is not None:
            raise NodeError("an OTP node is already running in this OS process")
        node_dir = tempfile.mkdtemp(prefix="otp-", dir=self.base_dir)
        os.chmod(node_dir, 0o700)
        if len(node_dir) + 20 > IPC_PATH_MAX:
            shutil.rmtree(node_dir, ignore_errors=True)
            raise NodeError(f"node directory {node_dir!r} is too long for ipc paths")
        info = NodeInfo(self.name, node_dir, f"{node_dir}/zygote", self.start_method)
        try:
            self._start_zygote(info)
            proc = _process.Process(info, new_uid(), root=True)
        except BaseException:
            self._kill_zygote()
            shutil.rmtree(node_dir, ignore_errors=True)
            raise
        self.info = info
        self.process = proc
        if threading.current_thread() is threading.main_thread():
            self._prev_handler = signal.getsignal(INTERRUPT_SIGNAL)
        proc.activate()
        try:
            self._start_kernel(info)
        except BaseException:
            self.stop("shutdown")
            raise

    def _start_kernel(self, info: NodeInfo) -> None:
        """The node's kernel supervisor and, under it, the name registry."""
        from ._child_spec import child_spec
        from ._supervisor import Supervisor
        from .registry._server import start_link as start_registry

        backend = self.registry_backend
        if backend == "sqlite":
            backend = ("sqlite", os.path.join(info.dir, "registry.db"))
        registry = child_spec("registry", start=(start_registry, ({"names": True, "backend": backend},)), shutdown=5.0)
        self.kernel = Supervisor.start_link([registry], strategy="one_for_one", intensity=10, period=60)

    def _start_zygote(self, info: NodeInfo) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if self.start_method == "fork":
                with warnings.catch_warnings():
                    # 3.12+ warns about fork() in a multi-threaded process; the
                    # zygote starts no thread and touches no lock it inherited.
                    warnings.filterwarnings("ignore", category=DeprecationWarning)
                    pid = os.fork()
                if pid == 0:
                    try:
                        ours.close()
                        zygote_entry(theirs.fileno())
                    finally:
                        os._exit(70)
            else:
                # A fresh interpreter: multiprocess's fork_exec wrapper, the
                # one its own fork server is started with (safe to call from
                # a process with threads, keeps only the fds we pass).
                top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
                code = f"import sys; sys.path.insert(0, {top!r}); from otp._zygote import zygote_entry; zygote_entry({theirs.fileno()})"
                exe = os.fsencode(sys.executable)
                pid = multiprocess.util.spawnv_passfds(exe, [exe, b"-c", code.encode()], [theirs.fileno()])
            self._zygote_pid = pid
            theirs.close()
            me = os.getpid()
            config = pickle.dumps((info, me, _oslib.proc_start_time(me), self.preload, self.embryos))
            ours.settimeout(_ZYGOTE_START_TIMEOUT)
            ours.sendall(struct.pack("<I", len(config)) + config)
            answer = ours.recv(1 << 16)
        except (OSError, EOFError) as exc:
            raise NodeError(f"the node's zygote did not start: {exc}") from exc
        finally:
            ours.close()
        try:
            status, detail = pickle.loads(answer)
        except Exception:
            status, detail = "error", "it died during start"
        if status != "ready":
            raise NodeError(f"the node's zygote failed to start: {detail}")

    # ------------------------------------------------------------------ stop

    def stop(self, reason: object = "normal") -> None:
        proc = self.process
        if proc is None:
            return
        try:
            proc.trap_exit(True)  # our links must not kill us while we stop
            proc.sig.fatal = None
            for pid in reversed(proc.spawned):
                self._stop_one(proc, pid)
            try:
                client = ZygoteClient(self.info.zygote_address)
                leftovers = client.request("list")
                client.close()
            except Exception:
                leftovers = []
            for ospid, _uid, _spare in leftovers:
                try:
                    os.killpg(ospid, signal.SIGKILL)
                except OSError:
                    pass
        finally:
            try:
                proc.terminate(reason)
            finally:
                _process._current = None
                if self._prev_handler is not None:
                    signal.signal(INTERRUPT_SIGNAL, self._prev_handler)
                self._stop_zygote()
                self.process = None

    @staticmethod
    def _stop_one(proc: _process.Process, pid) -> None:
        if not proc.is_alive(pid):
            return
        ref = proc.monitor(pid)

        def is_down(m: object) -> bool:
            return isinstance(m, DOWN) and m.ref == ref

        for reason in ("shutdown", "kill"):
            proc.exit_signal(pid, reason)
            try:
                proc.receive(SHUTDOWN_TIMEOUT, is_down)
                return
            except Timeout:
                log.warning("%r did not stop on %r within %ss", pid, reason, SHUTDOWN_TIMEOUT)

    def _stop_zygote(self) -> None:
        if self._zygote_pid is None:
            return
        try:
            client = ZygoteClient(self.info.zygote_address)
            try:
                client.request("stop")
            finally:
                client.close()
        except Exception:
            pass
        self._reap_zygote(10.0)
        if self.info is not None:
            shutil.rmtree(self.info.dir, ignore_errors=True)

    def _reap_zygote(self, timeout: float) -> None:
        """Wait for the zygote to exit (it is our child), killing it after ``timeout``."""
        pid = self._zygote_pid
        if pid is None:
            return
        fd = os.pidfd_open(pid)
        try:
            if not _oslib.fd_readable(fd, timeout):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        finally:
            os.close(fd)
            self._zygote_pid = None

    def _kill_zygote(self) -> None:
        if self._zygote_pid is not None:
            try:
                os.kill(self._zygote_pid, signal.SIGKILL)
            except OSError:
                pass
            self._reap_zygote(5.0)

    # ------------------------------------------------------------ inspection

    @property
    def zygote_ospid(self) -> int | None:
        return self._zygote_pid

    def os_pids(self, embryos: bool = True) -> list[int]:
        """OS pids of every live process of the node (for tests and tools);
        ``embryos=False`` leaves out the spare processes the zygote keeps
        ready for the next spawns (they come and go with spawning)."""
        client = ZygoteClient(self.info.zygote_address)
        try:
            return [ospid for ospid, _, spare in client.request("list") if embryos or not spare]
        finally:
            client.close()

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.start_method} {'running' if self.process else 'stopped'}>"
