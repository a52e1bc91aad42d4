"""A real etcd for the tests: one member, or a cluster of three, on free
ports in a temporary directory, ready when it answers, stopped by pid.

``with running_etcd(size) as cluster:`` starts the members, waits until
each has said it serves clients (its log, read as it is written) and has
answered its health endpoint, and at exit stops every member by pid
(SIGTERM, then SIGKILL), reaps it and removes the directory, so nothing is
left in the temporary directory or the process table.  A member dies with
the test process too (``PR_SET_PDEATHSIG``), should that be killed first.

The data lives in ``/dev/shm`` when it can (etcd fsyncs every write; on a
loaded disk that makes elections flap), else in the default temporary
directory.

Tests that need it are marked ``@requires_etcd``: they skip, saying so,
when the ``etcd`` binary is not installed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

ETCD = shutil.which("etcd")
SKIP_REASON = "the etcd binary is not installed (Debian: apt-get install -y etcd-server)"
requires_etcd = pytest.mark.skipif(ETCD is None, reason=SKIP_REASON)

#: What a member's log says once it serves clients (etcd 3.4 and 3.5, zap).
_READY = b"serving client traffic"
_PR_SET_PDEATHSIG = 1


class EtcdStartError(RuntimeError):
    """A member exited, or did not become ready, during the start."""


def _die_with_parent() -> None:  # runs in the child, between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _free_ports(n: int) -> list[int]:
    """``n`` ports the kernel just handed out; another process may take one
    before etcd binds it, which the start detects and retries."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _scratch_dir() -> str:
    shm = "/dev/shm"
    base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    return tempfile.mkdtemp(prefix="etcd-test-", dir=base)


def post(url: str, path: str, body: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """One raw call of etcd's JSON gateway (for what the store under test
    does not do: status, moving the leader, compaction)."""
    request = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


class _LogDrain:
    """Reads a member's stderr as it is written, into its log file, and
    wakes whoever waits for a line (the pipe must be drained anyway, or
    etcd blocks once it is full)."""

    def __init__(self, stream: Any, path: str) -> None:
        self._stream = stream
        self._path = path
        self._cond = threading.Condition()
        self.lines: list[bytes] = []
        self.ended = False
        self._thread = threading.Thread(target=self._run, name=f"etcd log {path}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with open(self._path, "ab") as out:
            for line in iter(self._stream.readline, b""):
                out.write(line)
                out.flush()
                with self._cond:
                    self.lines.append(line)
                    self._cond.notify_all()
        with self._cond:
            self.ended = True
            self._cond.notify_all()

    def wait_for(self, needle: bytes, deadline: float) -> bool:
        """True once a line holds ``needle``; False if the stream ended or
        the deadline passed first."""
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if needle in line:
                        return True
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if self.ended or remaining <= 0:
                    return False
                self._cond.wait(remaining)

    def wait_line(self, after: int, deadline: float) -> None:
        """Wait until the log has more than ``after`` lines (or ends)."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.lines) > after or self.ended, max(deadline - time.monotonic(), 0))

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def tail(self, n: int = 15) -> str:
        with self._cond:
            return b"".join(self.lines[-n:]).decode(errors="replace")


class Member:
    """One etcd process."""

    def __init__(
        self, name: str, client_port: int, peer_port: int, base: str, host: str = "127.0.0.1", argv_prefix: tuple = ()
    ) -> None:
        self.name = name
        self.client_url = f"http://{host}:{client_port}"
        self.peer_url = f"http://{host}:{peer_port}"
        # What runs etcd inside a network namespace (``ip netns exec ns``).
        self.argv_prefix = tuple(argv_prefix)
        self.data_dir = os.path.join(base, name)
        self.log_path = os.path.join(base, f"{name}.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: _LogDrain | None = None
        self.id = ""

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc else None
        return f"<etcd member {self.name} {self.client_url} pid {pid}>"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, initial_cluster: str, token: str, heartbeat_ms: int, election_ms: int) -> None:
        assert ETCD is not None
        argv = [
            *self.argv_prefix,
            ETCD,
            "--name", self.name,
            "--data-dir", self.data_dir,
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial_cluster,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", token,
            "--heartbeat-interval", str(heartbeat_ms),
            "--election-timeout", str(election_ms),
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        self._log = _LogDrain(self.proc.stderr, self.log_path)

    def wait_ready(self, deadline: float) -> None:
        """Wait until the member says it serves clients and its health
        endpoint says so; a health answer of false (no leader yet) is asked
        again after the next line of its log, not on a clock."""
        assert self._log is not None
        if not self._log.wait_for(_READY, deadline):
            raise EtcdStartError(f"{self.name} did not become ready:\n{self._log.tail()}")
        while True:
            seen = len(self._log.lines)
            try:
                with urllib.request.urlopen(
                    self.client_url + "/health", timeout=max(deadline - time.monotonic(), 0.1)
                ) as response:
                    if json.loads(response.read()).get("health") == "true":
                        break
            except (OSError, ValueError) as e:
                if time.monotonic() >= deadline:
                    raise EtcdStartError(f"{self.name}: no health: {e}\n{self._log.tail()}") from e
            if time.monotonic() >= deadline or self._log.ended:
                raise EtcdStartError(f"{self.name} is not healthy:\n{self._log.tail()}")
            self._log.wait_line(seen, deadline)
        self.id = post(self.client_url, "/v3/maintenance/status", {})["header"]["member_id"]

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 15) -> str:
        return self._log.tail(n) if self._log else ""

    def kill(self) -> None:
        """SIGKILL, as a crash would; returns once it is reaped."""
        if self.is_running():
            os.kill(self.pid, signal.SIGKILL)
        self._reap(10.0)

    def pause(self) -> None:
        """SIGSTOP, returning once every thread of the member has stopped
        (``kill`` returns before that: a thread running on another core may
        still answer a request that is already in)."""
        os.kill(self.pid, signal.SIGSTOP)
        if self.proc is not None:  # our child: its stop is reported to us
            os.waitid(os.P_PID, self.pid, os.WSTOPPED)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (and SIGCONT, should it be paused), SIGKILL if it does
        not exit within ``timeout``; reaped either way."""
        if self.proc is None:
            return
        if self.is_running():
            os.kill(self.pid, signal.SIGTERM)
            os.kill(self.pid, signal.SIGCONT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
        self._reap(10.0)

    def _reap(self, timeout: float) -> None:
        if self.proc is None:
            return
        self.proc.wait(timeout)
        if self._log is not None:
            self._log.join(timeout)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        return post(self.client_url, "/v3/maintenance/status", {}, timeout)


class EtcdCluster:
    """``size`` members of one new cluster (1 or 3 in these tests)."""

    def __init__(
        self,
        size: int = 1,
        *,
        heartbeat_ms: int = 100,
        election_ms: int = 1000,
        hosts: list[str] | None = None,
        argv_prefixes: list[tuple] | None = None,
    ) -> None:
        self.size = size
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        # Where each member listens, and what runs it (a network namespace):
        # by default all on 127.0.0.1 in the test's own namespace.
        self.hosts = hosts or ["127.0.0.1"] * size
        self.argv_prefixes = argv_prefixes or [()] * size
        self.base = ""
        self.members: list[Member] = []

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def start(self, timeout: float = 60.0, attempts: int = 3) -> None:
        """Start every member and wait until all are ready.  A member that
        exits during the start (a port taken between our choice and its
        bind, say) makes the whole cluster start again on new ports."""
        for attempt in range(attempts):
            self.base = _scratch_dir()
            ports = _free_ports(2 * self.size)
            self.members = [
                Member(f"m{i}", ports[2 * i], ports[2 * i + 1], self.base, self.hosts[i], self.argv_prefixes[i])
                for i in range(self.size)
            ]
            initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
            token = "test-" + secrets.token_hex(6)
            deadline = time.monotonic() + timeout
            try:
                for m in self.members:
                    m.start(initial, token, self.heartbeat_ms, self.election_ms)
                for m in self.members:
                    m.wait_ready(deadline)
                return
            except EtcdStartError:
                crashed = any(not m.is_running() for m in self.members)
                self.stop()
                if attempt == attempts - 1 or not crashed:
                    raise

    def stop(self) -> None:
        for m in self.members:
            m.stop()
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)

    def running(self) -> list[Member]:
        return [m for m in self.members if m.is_running()]

    def leader(self, timeout: float = 5.0) -> Member:
        """The member that the running members say leads, asked again (each
        ask a request to them) while an election runs, up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for m in self.running():
                leader_id = m.status(timeout).get("leader")
                for candidate in self.members:
                    if candidate.id == leader_id:
                        return candidate
            if time.monotonic() >= deadline:
                raise LookupError("no running member names a leader")

    def move_leader(self, to: Member, timeout: float = 10.0) -> None:
        """Make ``to`` the leader (etcd's MoveLeader, asked of the leader)."""
        current = self.leader(timeout)
        if current is not to:
            post(current.client_url, "/v3/maintenance/transfer-leadership", {"targetID": to.id}, timeout)


@contextlib.contextmanager
def running_etcd(size: int = 1, **options: Any) -> Iterator[EtcdCluster]:
    """A started cluster, stopped and removed at exit; checks that every
    member is reaped and its directory gone."""
    if ETCD is None:
        pytest.skip(SKIP_REASON)
    cluster = EtcdCluster(size, **options)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        assert not any(m.is_running() for m in cluster.members), "an etcd member outlived its test"
        assert not os.path.exists(cluster.base), f"{cluster.base} left behind"


__all__ = [
    "ETCD",
    "SKIP_REASON",
    "requires_etcd",
    "running_etcd",
    "EtcdCluster",
    "EtcdStartError",
    "Member",
    "post",
]
