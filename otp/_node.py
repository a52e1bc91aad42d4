"""The node runtime: ``with otp.Node(name=...) as node:``.

Entering a node creates its directory (mode 0700, under ``/tmp`` so ipc
paths stay within the 107-byte limit), starts its zygote, and turns the
calling thread into an OTP process (the node's *root* process).  Leaving it:

1. stops the processes the root spawned, in reverse start order: exit signal
   ``'shutdown'``, then ``'kill'`` after :data:`SHUTDOWN_TIMEOUT` (the
   protocol a supervisor uses for a worker; supervisors stop their own
   subtrees).  The first the root spawned, so the last stopped, is the
   kernel supervisor: its application controller stops the running
   applications, most recently started first, then the registry stops;
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

Entering a node also removes *stale* node directories from ``base_dir``:
each directory records its owner, the root process, as ``pid start-time``
in a file ``owner``; a directory named ``otp-*``, ours (same uid, not a
symlink), whose owner is dead was left by a node killed as a whole (``timeout
-s KILL``, a container kill) and goes.  A directory whose owner lives, that
has no readable owner record (a node starting right now, or older code), or
that is another user's, is left alone.

The root watches its zygote and kills what is left of the node when it
dies (see :mod:`otp._node_zygote`).

Distribution.  ``listen`` (a ZeroMQ tcp endpoint, ``"tcp://0.0.0.0:0"`` for
any port) makes the node reachable from other nodes: it then runs a gateway
(:mod:`otp._gateway`) under its kernel supervisor, authenticated and
encrypted with CURVE.  ``keys`` (a secret key file of ``python -m otp keys
new``, or a :class:`~otp._keys.KeyPair`) is required with it: there is no
unauthenticated tcp mode.  ``peers`` is the static list of the cluster's
other members, ``{name: (endpoint, public_key)}`` (endpoint None: learnt
when that node connects; the key as Z85 text or the path of a key file):
only their keys may connect.  ``net_ticktime``
bounds how long a silent node takes to be counted down.  A node without
``listen`` behaves as it always did (ipc only); its processes cannot reach
other nodes (``'noconnection'``).  Every start gives the node a fresh
``creation`` (see :mod:`otp._pid`).

``embryos`` is how many processes the zygote keeps forked and bootstrapped
in advance (see :mod:`otp._embryo`); 2 keeps a spawn under a millisecond
after a pause, at the cost of two idle processes (about 10 MB RSS each,
mostly shared).  Use 0 for a node that must not have idle processes.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import stat
import tempfile
import threading
from collections.abc import Callable, Mapping
from types import FrameType, TracebackType
from typing import Any

from . import _logging, _oslib, _process
from ._application import CONTROLLER, ApplicationController
from ._child_spec import ChildSpec, child_spec
from ._dist_wire import NodeAddress
from ._errors import NodeError, ProcessExit, Timeout
from ._gateway import NET_TICKTIME, GatewayConfig
from ._gateway import start_link as start_gateway
from ._keys import KeyPair, check_key, load_keypair, load_public_key
from ._node_zygote import ZygoteMixin
from ._pid import Pid, new_creation, new_uid
from ._reasons import DOWN, Crash
from ._signals import INTERRUPT_SIGNAL
from ._supervisor import Supervisor
from ._timers import TIMER_SERVER, TimerServer
from ._transport import IPC_PATH_MAX, NodeInfo
from ._zygote_client import ZygoteClient
from ._zygote_protocol import ListRequest
from .registry._server import start_link as start_registry

log = logging.getLogger("otp")

__all__ = ["Node", "SHUTDOWN_TIMEOUT"]

#: Seconds a top-level process gets to exit after ``'shutdown'`` when the
#: node closes (OTP's default worker shutdown, 5000 ms).
SHUTDOWN_TIMEOUT = 5.0
START_METHODS = ("forkserver", "fork")
_DIR_PREFIX = "otp-"
_OWNER = "owner"


def _write_owner(node_dir: str) -> None:
    """Record the root process as the directory's owner (written to a temporary
    name, then renamed: a reader sees the whole record or none)."""
    me = os.getpid()
    tmp = os.path.join(node_dir, f".{_OWNER}")
    with open(tmp, "x") as f:
        f.write(f"{me} {_oslib.proc_start_time(me)}\n")
    os.rename(tmp, os.path.join(node_dir, _OWNER))


def _dead_owner(path: str) -> int | None:
    """The OS pid of the dead owner of the node directory ``path``, or None if
    it is not a node directory of ours or its owner lives."""
    try:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            return None
        fd = os.open(os.path.join(path, _OWNER), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            ospid, start = (int(field) for field in os.read(fd, 64).split())
        finally:
            os.close(fd)
    except (OSError, ValueError):
        return None
    if ospid <= 0 or _oslib.os_process_alive(ospid, start):
        return None
    return ospid


def _remove_stale_node_dirs(base_dir: str) -> None:
    try:
        names = [name for name in os.listdir(base_dir) if name.startswith(_DIR_PREFIX)]
    except OSError:
        return
    for name in names:
        path = os.path.join(base_dir, name)
        owner = _dead_owner(path)
        if owner is not None:
            shutil.rmtree(path, ignore_errors=True)
            log.info("removed the stale node directory %s (its owner, OS pid %d, is gone)", path, owner)


class Node(ZygoteMixin):
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
        listen: str | None = None,
        keys: str | os.PathLike[str] | KeyPair | None = None,
        peers: Mapping[str, NodeAddress | tuple[str | None, str | bytes]] | None = None,
        net_ticktime: float = NET_TICKTIME,
        advertise: str | None = None,
    ) -> None:
        """``start_method``: ``'forkserver'`` or ``'fork'`` (default
        ``$OTP_START_METHOD``, else forkserver); ``preload``: modules the
        zygote imports before forking; ``embryos``: processes kept forked in
        advance; ``registry_backend``: ``'sqlite'``, ``'memory'`` or a spec
        for :func:`otp.registry.open_backend`; ``base_dir``: where the node
        directory is made; ``listen``, ``keys``, ``peers``,
        ``net_ticktime``: see the module docstring (``advertise``: the
        endpoint other nodes should connect to, when the bound one is not
        it).  ValueError for a bad start method, name, embryo count, peer or
        tick time, or ``listen`` without ``keys``; the key file's errors
        (:class:`~otp.KeyFileExposed`...) for a key file that cannot be
        used."""
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
        self.gateway: GatewayConfig | None = None
        if listen is not None:
            self.gateway = _gateway_config(listen, keys, peers, net_ticktime, advertise)
        elif keys is not None or peers:
            raise ValueError("keys and peers are for a node that listens (listen=...)")
        self.kernel: Pid | None = None
        self.base_dir = base_dir
        self.info: NodeInfo | None = None
        self.process: _process.Process | None = None
        self._zygote_pid = None
        self._watch = None
        self._prev_handler: Callable[[int, FrameType | None], Any] | int | None = None
        self._log_listener: _logging.LogListener | None = None

    # ----------------------------------------------------------------- start

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            reason: object = "normal"
        elif isinstance(exc, ProcessExit):
            reason = exc.reason
        else:
            reason = Crash.from_exception(exc)
        self.stop(reason)

    def start(self) -> None:
        """Start the node and make the calling thread its root process;
        NodeError if this OS process runs a node already or the zygote does
        not start."""
        if _process.current_or_none() is not None:
            raise NodeError("an OTP node is already running in this OS process")
        _remove_stale_node_dirs(self.base_dir)
        node_dir = tempfile.mkdtemp(prefix=_DIR_PREFIX, dir=self.base_dir)
        os.chmod(node_dir, 0o700)
        if len(node_dir) + 20 > IPC_PATH_MAX:
            shutil.rmtree(node_dir, ignore_errors=True)
            raise NodeError(f"node directory {node_dir!r} is too long for ipc paths")
        info = NodeInfo(
            self.name,
            node_dir,
            f"{node_dir}/zygote",
            self.start_method,
            creation=new_creation(),
            gateway=self.gateway is not None,
        )
        try:
            _write_owner(node_dir)
            with open(os.path.join(node_dir, "name"), "x") as f:  # how `python -m otp observer NAME` finds it
                f.write(f"{self.name}\n")
            self._log_listener = _logging.start_listener(info)
            self._start_zygote(info)
            proc = _process.Process(info, new_uid(), root=True)
        except BaseException:
            self._kill_zygote()
            self._stop_log_listener()
            shutil.rmtree(node_dir, ignore_errors=True)
            raise
        self.info = info
        self.process = proc
        if threading.current_thread() is threading.main_thread():
            self._prev_handler = signal.getsignal(INTERRUPT_SIGNAL)
        proc.activate()
        try:
            self._start_kernel(info, proc.pid)
        except BaseException:
            self.stop("shutdown")
            raise

    def _start_kernel(self, info: NodeInfo, root: Pid) -> None:
        """The node's kernel supervisor and its children."""
        self.kernel = Supervisor.start_link(
            self._kernel_children(info, root), strategy="one_for_one", intensity=10, period=60
        )

    def _kernel_children(self, info: NodeInfo, root: Pid) -> list[ChildSpec]:
        """The kernel's services, in start order (each may use those before
        it; the node stops them in reverse order):

        * the name registry;
        * the gateway, if the node listens (registered as ``net_kernel``;
          see :mod:`otp._gateway`);
        * the timer server (registered as ``TIMER_SERVER``; it resolves
          timers to names through the registry);
        * the application controller (registered as ``application_controller``;
          its shutdown waits for every application to stop).
        """
        backend = self.registry_backend
        if backend == "sqlite":
            backend = ("sqlite", os.path.join(info.dir, "registry.db"))
        gateway = []
        if self.gateway is not None:
            gateway = [child_spec("net_kernel", start=(start_gateway, (self.gateway,)), shutdown=5.0)]
        return [
            child_spec("registry", start=(start_registry, ({"names": True, "backend": backend},)), shutdown=5.0),
            *gateway,
            TimerServer.child_spec(None, id="timer_server", name=TIMER_SERVER, shutdown=5.0),
            ApplicationController.child_spec(root, id=CONTROLLER, name=CONTROLLER, shutdown="infinity"),
        ]

    # ------------------------------------------------------------------ stop

    def stop(self, reason: object = "normal") -> None:
        """Stop the node (see the module docstring); the root process exits
        with ``reason``.  Does nothing if the node is not running."""
        proc = self.process
        info = self.info
        if proc is None or info is None:
            return
        # Kernel code from here: an interrupt for an exit signal that the
        # root already took (a second SIGUSR2 whose handler runs late) must
        # not raise in the middle of the stop.
        proc.kernel_code.depth += 1
        try:
            proc.sig.fatal = None
            proc.trap_exit(True)  # our links must not kill us while we stop
            for pid in reversed(proc.spawned):
                self._stop_one(proc, pid)
            try:
                client = ZygoteClient(info.zygote_address)
                leftovers = client.request(ListRequest())
                client.close()
            except Exception:
                leftovers = []
            for leftover in leftovers:
                try:
                    os.killpg(leftover.ospid, signal.SIGKILL)
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
                self._stop_log_listener()
                self.process = None

    def _stop_log_listener(self) -> None:
        """After the zygote stopped: no process is left to log, so everything
        they logged is queued, and is emitted now."""
        if self._log_listener is not None:
            self._log_listener.stop()
            self._log_listener = None

    @staticmethod
    def _stop_one(proc: _process.Process, pid: Pid) -> None:
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

    # ------------------------------------------------------------ inspection

    def os_pids(self, embryos: bool = True) -> list[int]:
        """OS pids of every live process of the node (for tests and tools);
        ``embryos=False`` leaves out the spare processes the zygote keeps
        ready for the next spawns (they come and go with spawning).
        NodeError if the node is not running."""
        if self.info is None or self.process is None:
            raise NodeError("the node is not running")
        client = ZygoteClient(self.info.zygote_address)
        try:
            return [row.ospid for row in client.request(ListRequest()) if embryos or not row.spare]
        finally:
            client.close()

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.start_method} {'running' if self.process else 'stopped'}>"


def _is_key(value: object) -> bool:
    try:
        check_key(value)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return False
    return True


def _gateway_config(
    listen: object,
    keys: object,
    peers: Mapping[str, object] | None,
    net_ticktime: object,
    advertise: object,
) -> GatewayConfig:
    """The gateway's configuration from Node's arguments, checked."""
    if not isinstance(listen, str) or not listen.startswith("tcp://"):
        raise ValueError(f"listen must be a tcp:// endpoint, not {listen!r}")
    if keys is None:
        raise ValueError(
            "a node that listens needs keys (python -m otp keys new PATH): there is no unauthenticated tcp"
        )
    pair = keys if isinstance(keys, KeyPair) else load_keypair(keys)  # type: ignore[arg-type]
    table: dict[str, NodeAddress] = {}
    for name, value in (peers or {}).items():
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"invalid peer name {name!r}")
        if isinstance(value, tuple) and len(value) == 2 and not _is_key(value[1]):
            value = (value[0], load_public_key(value[1]))  # a key file's path
        table[name] = NodeAddress.of(value)
    if isinstance(net_ticktime, bool) or not isinstance(net_ticktime, (int, float)) or not 0 < net_ticktime < 3600:
        raise ValueError(f"net_ticktime must be seconds in (0, 3600), not {net_ticktime!r}")
    if advertise is not None and not isinstance(advertise, str):
        raise ValueError(f"advertise must be an endpoint, not {advertise!r}")
    return GatewayConfig(listen, pair, table, float(net_ticktime), advertise)
