"""The demo's extra nodes (``python -m mabeam demo --nodes N``): each a
separate OS process running a node of its own (root, zygote, gateway),
talking tcp + CURVE on 127.0.0.1 with the demo's node, which runs MABEAM.

:class:`DemoNodes` makes a CURVE key pair per node in a temporary directory
(``python -m otp keys new``; the directory goes when the demo ends), starts
the extra nodes (``python -m mabeam.demo.nodes``, its configuration on
stdin: :meth:`DemoNodes.launch`, while the demo's own node starts, for the
three start at once), connects to each (entering it, in the demo's node),
and stops them at the end: a ``stop`` line on stdin, then SIGKILL
by pid if one does not stop within :data:`STOP_TIMEOUT`.  Each dies with
the demo's process (``PR_SET_PDEATHSIG``) and ignores Ctrl-C (the demo
stops it).  :meth:`DemoNodes.kill` SIGKILLs a node as a host losing power
would go: its gateway (its connections close: the others see it gone at
once) and its root (its zygote then ends every other process of the node
and removes its directory); :meth:`DemoNodes.stop` waits for all of them.

An extra node says it is ready with its endpoint; the demo's node adds it
as a peer and connects.  The extra nodes do not connect to each other
(agents talk to MABEAM's node).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

import otp

from . import PRELOAD

__all__ = ["DemoNodes", "HOST", "main"]

HOST = "127.0.0.1"
#: Seconds an extra node may take to start (its zygote imports scikit-learn).
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
_PR_SET_PDEATHSIG = 1


@dataclass
class _Node:
    name: str
    key: str  # secret key file; its public key is key + ".pub"
    popen: subprocess.Popen | None = None
    gateway_ospid: int | None = None
    dir: str | None = None
    #: Its OS processes when it was killed or asked to stop: each is
    #: waited for before the demo ends.
    doomed: list[psutil.Process] = field(default_factory=list)


def _in_child() -> None:  # between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class DemoNodes:
    """The demo's node ``home`` (this process) and ``count - 1`` extra nodes
    named ``{prefix}-2@127.0.0.1``...; keys in ``key_dir``, node directories
    in ``base_dir``.  :meth:`home_options` are the options of this
    process's ``otp.Node``; :meth:`launch` starts the extra nodes' OS
    processes (before that node, or in it); use the object as a context
    manager inside that node (entering waits until every extra node is
    connected, leaving stops them)."""

    def __init__(self, count: int, key_dir: str, *, prefix: str = "mabeam-demo", base_dir: str = "/tmp") -> None:
        if count < 2:
            raise ValueError(f"a cluster of the demo has at least 2 nodes, not {count}")
        self.home = f"{prefix}@{HOST}"
        self.base_dir = base_dir
        self.key_dir = key_dir
        self.extra = [
            _Node(f"{prefix}-{i}@{HOST}", os.path.join(key_dir, f"{prefix}-{i}.key")) for i in range(2, count + 1)
        ]
        self.home_key = os.path.join(key_dir, f"{prefix}.key")
        self._write_keys([self.home_key, *(n.key for n in self.extra)])

    @property
    def names(self) -> list[str]:
        """Every node, the demo's first."""
        return [self.home, *(n.name for n in self.extra)]

    def home_options(self) -> dict[str, Any]:
        """``otp.Node`` options of the demo's node: it listens, and knows
        the extra nodes' keys (their endpoints are added once they say
        where they listen: :meth:`connect`)."""
        peers = {n.name: (None, n.key + ".pub") for n in self.extra}
        return {"name": self.home, "listen": f"tcp://{HOST}:0", "keys": self.home_key, "peers": peers}

    def __enter__(self) -> DemoNodes:
        try:
            self.connect()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ life

    def launch(self) -> None:
        """Start the extra nodes' OS processes, all at once, without
        waiting for them (nothing if they were launched)."""
        for n in self.extra:
            if n.popen is not None:
                continue
            n.popen = subprocess.Popen(
                [sys.executable, "-m", "mabeam.demo.nodes"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                preexec_fn=_in_child,
            )
            config = {
                "name": n.name,
                "key": n.key,
                "home": self.home,
                "home_key": self.home_key + ".pub",
                "base_dir": self.base_dir,
                "log_level": logging.getLogger().getEffectiveLevel(),
            }
            assert n.popen.stdin is not None
            n.popen.stdin.write(json.dumps(config).encode() + b"\n")
            n.popen.stdin.flush()

    def connect(self) -> None:
        """In the demo's node: launch the extra nodes (unless done), wait
        until each says it is ready, add it as a peer at the endpoint it
        listens on, and connect to it; RuntimeError if one does not start
        or cannot be reached."""
        self.launch()
        deadline = time.monotonic() + START_TIMEOUT
        for n in self.extra:
            ready = self._ready(n, deadline)
            n.gateway_ospid, n.dir = ready.get("gateway_ospid"), ready.get("dir")
            otp.net_kernel.add_peer(n.name, ready["endpoint"], ready["public_key"])
            if not otp.connect_node(n.name):
                raise RuntimeError(f"{self.home} could not connect to node {n.name}")

    def kill(self, name: str) -> None:
        """SIGKILL the extra node ``name`` (see the module documentation)."""
        n = self._node(name)
        if n.popen is None or n.popen.poll() is not None:
            return
        n.doomed += _processes(n.popen.pid)
        for ospid in (n.gateway_ospid, n.popen.pid):
            if ospid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(ospid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop every extra node and wait until all of its processes are
        gone (those of a killed node too)."""
        for n in self.extra:
            if n.popen is not None and n.popen.poll() is None:
                n.doomed += _processes(n.popen.pid)
                with contextlib.suppress(BrokenPipeError, OSError):
                    assert n.popen.stdin is not None
                    n.popen.stdin.write(b"stop\n")
                    n.popen.stdin.flush()
        deadline = time.monotonic() + STOP_TIMEOUT
        for n in self.extra:
            if n.popen is None:
                continue
            try:
                n.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(n.name)
                n.popen.wait()
            for stream in (n.popen.stdin, n.popen.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        for n in self.extra:
            _wait_gone(n.doomed, deadline)
            n.doomed = []

    # ------------------------------------------------------------ helpers

    def _node(self, name: str) -> _Node:
        for n in self.extra:
            if n.name == name:
                return n
        raise ValueError(f"{name!r} is not an extra node of the demo")

    @staticmethod
    def _write_keys(paths: list[str]) -> None:
        """``python -m otp keys new PATH`` for each path, all at once."""
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "otp", "keys", "new", path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            for path in paths
        ]
        for path, run in zip(paths, runs):
            _, err = run.communicate()
            if run.returncode != 0:
                raise RuntimeError(f"cannot write the key {path}: {err.decode(errors='replace').strip()}")

    @staticmethod
    def _ready(n: _Node, deadline: float) -> dict[str, Any]:
        popen = n.popen
        assert popen is not None and popen.stdout is not None
        ready, _, _ = select.select([popen.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = popen.stdout.readline() if ready else b""
        if not line:
            raise RuntimeError(f"node {n.name} did not start (exit status {popen.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer


def _processes(ospid: int) -> list[psutil.Process]:
    """The OS process ``ospid`` and every process under it."""
    try:
        root = psutil.Process(ospid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _wait_gone(procs: list[psutil.Process], deadline: float) -> None:
    """Wait until every process of ``procs`` has exited (on their pidfds),
    until ``deadline`` at most."""
    for p in procs:
        try:
            fd = os.pidfd_open(p.pid)
        except ProcessLookupError:
            continue
        try:
            if p.is_running():  # the pid was not taken by another process meanwhile
                select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        finally:
            os.close(fd)


def main() -> None:
    """An extra node's OS process: its configuration on stdin, then it runs
    until a ``stop`` line (or the end of stdin)."""
    config = json.loads(sys.stdin.readline())
    logging.basicConfig(level=config["log_level"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    with otp.Node(
        name=config["name"],
        listen=f"tcp://{HOST}:0",
        keys=config["key"],
        peers={config["home"]: (None, config["home_key"])},  # its endpoint: learnt when it connects
        preload=PRELOAD,
        base_dir=config["base_dir"],
    ) as node:
        gateway = otp.whereis("net_kernel")
        info = otp.net_kernel.info()
        ready = {
            "endpoint": info["endpoint"],
            "public_key": info["public_key"],
            "dir": node.info.dir if node.info is not None else None,
            "gateway_ospid": gateway.ospid if gateway is not None else None,
        }
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        sys.stdin.readline()


if __name__ == "__main__":
    main()
