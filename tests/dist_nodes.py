"""Extra nodes for the distribution tests: each a separate OS process (its
own root, zygote and gateway) listening on 127.0.0.1, stopped by pid.

``with cluster(["b", "c"], ticktime=...) as c:`` starts a listening node in
the test process (``c.local``, named ``test@127.0.0.1``) and one OS process
per name (``c.remote["b"]``, named ``b@127.0.0.1``), all with fresh CURVE
key pairs and each other's keys and endpoints (free ports chosen here; a
port taken meanwhile makes that node fail to start, and it is started again
on another).  Each remote node connects to the test node before it says it
is ready, so on entry every remote node is up.  On exit each remote node is
asked to stop (a line on its stdin), then SIGKILLed by pid if it did not
within the timeout, and reaped; the test node stops last.  The check that
nothing outlived the test (no descendant process, no node directory) is the
``node`` fixture's, done again here.

A remote node dies with the test process (``PR_SET_PDEATHSIG``); the keys
travel on its stdin, never in a file.  Tests reach remote nodes only the way
users do: spawns on them (``otp.spawn_opt(..., node=...)``), ``otp.rpc``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import psutil
import zmq

import otp

HOST = "127.0.0.1"
LOCAL = f"test@{HOST}"
#: Seconds a remote node may take to start (its zygote, gateway, the
#: connection to the test node) on a loaded machine.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
_PR_SET_PDEATHSIG = 1


def node_name(short: str) -> str:
    return f"{short}@{HOST}"


def _die_with_parent() -> None:  # in the child, between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class RemoteNode:
    """A node running in another OS process."""

    name: str
    endpoint: str
    public: bytes
    secret: bytes
    popen: subprocess.Popen | None = None
    info: dict = field(default_factory=dict)
    #: Every OS process the node had when it was killed or stopped: the
    #: fixture checks that each is gone (a killed root's zygote is no longer
    #: a descendant of the test process, it tears the node down on its own).
    seen: list[psutil.Process] = field(default_factory=list)

    @property
    def ospid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def os_processes(self) -> list[psutil.Process]:
        """The node's root and every process under it (zygote, gateway...)."""
        try:
            root = psutil.Process(self.ospid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the node's gateway, which holds its connections, and its
        root (its zygote then ends every other process of the node and
        removes its directory): to other nodes it is gone at once, as a host
        losing power would be.  Every other process but the zygote is
        stopped first, so that the kernel supervisor cannot start a new
        gateway (on the same port) in the moment before the zygote ends it."""
        procs = self.os_processes()
        self.seen += procs
        gateway = self.info.get("gateway_ospid")
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                if p.pid != self.ospid and not any(c.pid == gateway for c in p.children()):
                    p.send_signal(signal.SIGSTOP)
        for ospid in (gateway, self.ospid):
            if ospid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(ospid, signal.SIGKILL)

    def expect_death(self) -> None:
        """Remember the node's processes now: something is about to kill it
        (see ``seen``)."""
        self.seen += self.os_processes()

    def stop_all(self, sig: int = signal.SIGSTOP) -> None:
        """Send ``sig`` to every OS process of the node (SIGSTOP: a node
        that is silent but whose sockets stay open)."""
        for p in self.os_processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(sig)

    def stop(self) -> None:
        popen = self.popen
        self.seen += self.os_processes()
        if popen is None or popen.poll() is not None:
            if popen is not None:
                popen.wait()
            return
        self.stop_all(signal.SIGCONT)
        try:
            assert popen.stdin is not None
            popen.stdin.write(b"stop\n")
            popen.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        try:
            popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            popen.wait()


def node_main() -> None:
    """The body of a remote node's OS process: read its configuration from
    stdin, start the node, connect to the test node, say ready on stdout,
    stop at the "stop" line (or when stdin closes)."""
    config = json.loads(sys.stdin.readline())
    peers = {name: (endpoint, key) for name, (endpoint, key) in config["peers"].items()}
    keys = otp.KeyPair(config["public"].encode(), config["secret"].encode())
    with otp.Node(
        name=config["name"],
        listen=config["listen"],
        keys=keys,
        peers=peers,
        net_ticktime=config["ticktime"],
        start_method=config["start_method"],
    ) as node:
        up = otp.connect_node(config["connect"], timeout=START_TIMEOUT)
        info = otp.net_kernel.info()
        gateway = otp.whereis("net_kernel")
        ready = {
            "up": up,
            "endpoint": info["endpoint"],
            "dir": node.info.dir if node.info is not None else None,
            "gateway_ospid": gateway.ospid if gateway is not None else None,
        }
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        sys.stdin.readline()


def _start_remote(node: RemoteNode, peers: dict, ticktime: float, start_method: str) -> None:
    env = dict(os.environ)
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join([here, *[p for p in sys.path if p]])
    popen = subprocess.Popen(
        [sys.executable, "-c", "import dist_nodes; dist_nodes.node_main()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        preexec_fn=_die_with_parent,
    )
    node.popen = popen
    config = {
        "name": node.name,
        "listen": node.endpoint,
        "public": node.public.decode(),
        "secret": node.secret.decode(),
        "peers": peers,
        "ticktime": ticktime,
        "start_method": start_method,
        "connect": LOCAL,
    }
    assert popen.stdin is not None and popen.stdout is not None
    popen.stdin.write(json.dumps(config).encode() + b"\n")
    popen.stdin.flush()
    line = _readline(popen, START_TIMEOUT)
    if not line:
        popen.wait(STOP_TIMEOUT)
        raise RuntimeError(f"remote node {node.name} did not start (exit status {popen.returncode})")
    node.info = json.loads(line)
    if not node.info.get("up"):
        node.stop()
        raise RuntimeError(f"remote node {node.name} could not connect to the test node")


def _readline(popen: subprocess.Popen, timeout: float) -> bytes:
    import select

    assert popen.stdout is not None
    ready, _, _ = select.select([popen.stdout], [], [], timeout)
    return popen.stdout.readline() if ready else b""


@dataclass
class Cluster:
    local: otp.Node
    remote: dict[str, RemoteNode]
    table: dict[str, tuple[str, str]]
    ticktime: float
    start_method: str

    def name(self, short: str) -> str:
        return self.remote[short].name

    def restart(self, short: str) -> RemoteNode:
        """Start node ``short`` again (after it was killed or stopped): same
        name, endpoint and keys, a new incarnation."""
        old = self.remote[short]
        old.stop()
        new = RemoteNode(old.name, old.endpoint, old.public, old.secret, seen=list(old.seen))
        if old.info.get("dir"):
            self.dirs.append(old.info["dir"])
        _start_remote(new, self.table, self.ticktime, self.start_method)
        self.remote[short] = new
        return new

    dirs: list[str] = field(default_factory=list)


@contextlib.contextmanager
def cluster(
    shorts: list[str], *, ticktime: float = 2.0, start_method: str | None = None, local_peers: bool = True
) -> Iterator[Cluster]:
    """The test node and remote nodes ``shorts`` (see the module docstring)."""
    method = start_method or os.environ.get("OTP_START_METHOD") or "forkserver"
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    local_public, local_secret = zmq.curve_keypair()
    remotes: dict[str, RemoteNode] = {}
    for short in shorts:
        public, secret = zmq.curve_keypair()
        remotes[short] = RemoteNode(node_name(short), f"tcp://{HOST}:{_free_port()}", public, secret)
    peers = {r.name: (r.endpoint, r.public) for r in remotes.values()} if local_peers else {}
    local = otp.Node(
        name=LOCAL,
        listen=f"tcp://{HOST}:0",
        keys=otp.KeyPair(local_public, local_secret),
        peers=peers,
        net_ticktime=ticktime,
        start_method=method,
    )
    node_dirs: list[str] = []
    result: Cluster | None = None
    with local:
        assert local.info is not None
        node_dirs.append(local.info.dir)
        me = otp.net_kernel.info()
        table = {LOCAL: (me["endpoint"], local_public.decode())}
        table.update({r.name: (r.endpoint, r.public.decode()) for r in remotes.values()})
        try:
            for r in remotes.values():
                for attempt in range(3):
                    try:
                        _start_remote(r, table, ticktime, method)
                        break
                    except RuntimeError:
                        if attempt == 2:
                            raise
                        r.endpoint = f"tcp://{HOST}:{_free_port()}"
                        table[r.name] = (r.endpoint, r.public.decode())
                        otp.net_kernel.add_peer(r.name, r.endpoint, r.public)
                if not otp.connect_node(r.name):
                    raise RuntimeError(f"could not connect to {r.name}")
            result = Cluster(local, remotes, table, ticktime, method)
            yield result
        finally:
            for r in remotes.values():
                r.stop()
                if r.info.get("dir"):
                    node_dirs.append(r.info["dir"])
    if result is not None:
        node_dirs += result.dirs
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    left += [p for r in remotes.values() for p in r.seen]
    _wait_gone(left, STOP_TIMEOUT)  # the zygote of a killed node may still be tearing it down
    leaked = [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not leaked, f"processes outlived the cluster: {leaked}"
    for d in node_dirs:
        assert not os.path.exists(d), f"node directory {d} left behind"


def _wait_gone(procs: list[psutil.Process], timeout: float) -> None:
    """Wait until every process of ``procs`` has exited (their pidfds, not a
    polling loop), at most ``timeout`` seconds in all."""
    import select

    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            fd = os.pidfd_open(p.pid)
        except ProcessLookupError:
            continue
        try:
            select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        finally:
            os.close(fd)
