"""The node's zygote survives bad input and exhausted resources, and when it
does die the root says why and nothing of the node outlives it.

A failing ``fork()`` cannot be caused from outside (as root, RLIMIT_NPROC
is not enforced): it is injected through the zygote's test-only hook, an
environment variable read when it starts (``otp/_zygote.py``,
``_ForkFaults``).  A low descriptor limit is set on the zygote alone with
``prlimit``.
"""

from __future__ import annotations

import errno
import os
import pickle
import resource
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from helpers import recv_tagged
from procs import spawn_subprocess, wait_forever
from test_node import wait_os_pids_gone

import otp
from otp import _oslib
from otp._embryo import rehearsal_sample
from otp._zygote import connection_cap
from otp._zygote_protocol import (
    IDENTITY,
    LENGTH,
    BadRequest,
    SpawnRequest,
    SpawnSpec,
    absolute_path,
    encode_request,
    parse_request,
)

HERE = os.path.dirname(os.path.abspath(__file__))
WAIT = 10.0


# ------------------------------------------------------------------ helpers


def raw_conn(node: otp.Node) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.settimeout(WAIT)
    assert node.info is not None, "the node is not running"
    sock.connect(node.info.zygote_address)
    return sock


def list_over(sock: socket.socket) -> list:
    """A well-formed request on ``sock``: answered only if the zygote is alive
    and served what was sent before it on the same connection."""
    sock.sendall(pickle.dumps(("list",)))
    out = []
    while True:
        data = sock.recv(1 << 22)
        assert data, "the zygote closed the connection"
        more, part = pickle.loads(data)
        out.extend(part)
        if not more:
            return out


def closed_by_peer(sock: socket.socket, timeout: float = WAIT) -> bool:
    """Wait (on readability, not the clock) until the peer closes ``sock``."""
    ready, _, _ = select.select([sock], [], [], timeout)
    return bool(ready) and sock.recv(1 << 16, socket.MSG_DONTWAIT) == b""


def spawn_answer(mine: socket.socket) -> tuple[int, int, str]:
    """What the zygote answered a spawner: (uid, errno or ospid, error text)."""
    mine.settimeout(WAIT)
    head = mine.recv(IDENTITY.size, socket.MSG_WAITALL)
    uid, code, _ = IDENTITY.unpack(head)
    if uid:
        return uid, code, ""
    (size,) = LENGTH.unpack(mine.recv(LENGTH.size, socket.MSG_WAITALL))
    return uid, code, mine.recv(size, socket.MSG_WAITALL).decode()


def ping(me: otp.Pid) -> None:
    otp.send(me, ("pong", os.getpid()))


def spawning_works() -> None:
    otp.spawn(ping, otp.self())
    assert recv_tagged("pong")[0] == "pong"


def spawner_loop(parent: otp.Pid) -> None:
    """Spawns a ping for ``parent`` each time it is asked."""
    while True:
        otp.receive()
        otp.spawn(ping, parent)
        otp.send(parent, ("spawned",))


def poll_until(condition, timeout: float = WAIT) -> bool:
    """Poll ``condition`` until true or ``timeout``, every 10 ms.  Only for
    state of the zygote that no message, monitor or descriptor announces (its
    pool of spare embryos, its count of fork attempts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)  # sleep-ok: pacing a poll of zygote-private state (see the docstring)
    return condition()


# --------------------------------------------------------- malformed requests


BAD_REQUESTS = {
    "empty": (b"", False),
    "empty-with-fd": (b"", True),
    "int": (pickle.dumps(5), False),
    "empty-tuple": (pickle.dumps(()), False),
    "spawn-int": (pickle.dumps(("spawn", 5)), True),
    "spawn-int-no-fd": (pickle.dumps(("spawn", 5)), False),
    "spawn-no-fd": (pickle.dumps(("spawn",)), False),
    "spawn-none-no-fd": (pickle.dumps(("spawn", None)), False),
    "spawn-relative-path": (pickle.dumps(("spawn", ("json", [""]))), True),
    "spawn-learn-bad-types": (pickle.dumps(("spawn", (5, "/"))), True),
    "dict": (pickle.dumps({"spawn": None}), False),
    "list-with-args": (pickle.dumps(("list", 1)), False),
    "unknown-kind": (pickle.dumps(("fork-bomb",)), False),
    "unhashable-kind": (pickle.dumps(([1],)), False),
    "deeply-nested": (b"\x80\x04)" + b"\x85" * 50_000 + b".", False),  # (((...),),) 50,000 deep
    "spawn-nul-in-path": (pickle.dumps(("spawn", ("json", ["/a\0b"]))), True),
    "global": (pickle.dumps(os.getcwd), False),
    "garbage": (b"\x80\x04\x95garbage\xff\x00", False),
    "trailing-bytes": (pickle.dumps(("list",)) + b"junk", False),
    "oversized": (pickle.dumps(5) + b"\0" * 100_000, False),
    "oversized-spawn": (pickle.dumps(("spawn", None)) + b"\0" * 100_000, True),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_a_malformed_request_is_dropped_and_the_node_lives_on(node, name):
    otp.trap_exit(True)  # were the zygote to die, the kernel supervisor's death must not end the test
    data, with_fd = BAD_REQUESTS[name]
    zygote = node.zygote_ospid
    with raw_conn(node) as sock:
        mine, theirs = socket.socketpair()
        with mine, theirs:
            if with_fd:
                socket.send_fds(sock, [data], [theirs.fileno()])
            else:
                sock.sendall(data)
            assert list_over(sock), "the zygote must answer after a bad request"
            if with_fd:
                theirs.close()
                uid, code, text = spawn_answer(mine)
                assert (uid, code) == (0, errno.EINVAL)
                assert "malformed" in text
    assert node.zygote_ospid == zygote and _oslib.proc_state(zygote)[0] not in ("Z", "X")
    spawning_works()


def test_a_spawn_request_with_several_descriptors_is_refused(node):
    with raw_conn(node) as sock:
        a, b = socket.socketpair()
        c, d = socket.socketpair()
        with a, b, c, d:
            socket.send_fds(sock, [pickle.dumps(("spawn", None))], [b.fileno(), d.fileno()])
            assert list_over(sock)
            b.close()
            d.close()
            assert spawn_answer(a)[:2] == (0, errno.EINVAL)
    spawning_works()


def test_a_client_that_never_reads_its_answers_cannot_stall_the_zygote(node):
    """The zygote answers 'list' with a bounded send: a client that keeps
    sending requests and never reads loses its connection (our blocked send
    fails), and the node goes on."""
    otp.trap_exit(True)  # were the zygote to die, the kernel supervisor's death must not end the test
    with raw_conn(node) as sock, pytest.raises((BrokenPipeError, ConnectionResetError)):
        for _ in range(1_000_000):
            sock.send(pickle.dumps(("list",)))  # blocks once the zygote stalls on its answers
    spawning_works()


RATE_SCRIPT = """
import logging, os, pickle, socket, sys
sys.path.insert(0, {here!r})
import otp
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
with otp.Node(start_method={method!r}) as node:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.connect(node.info.zygote_address)
    for i in range(200):
        sock.sendall(pickle.dumps(i))
    sock.sendall(pickle.dumps(("list",)))
    assert pickle.loads(sock.recv(1 << 20))[1], "no answer"
    me = otp.self()
    otp.spawn(lambda: otp.send(me, "up"))
    assert otp.receive(10) == "up"
print("ok", flush=True)
"""


@pytest.mark.parametrize("method", ["forkserver", "fork"])
def test_malformed_requests_are_logged_at_most_once_per_second_per_connection(method):
    script = RATE_SCRIPT.format(here=HERE, method=method)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
    lines = [line for line in done.stderr.splitlines() if "malformed request" in line]
    assert 1 <= len(lines) <= 1 + elapsed, done.stderr[-3000:]


def test_the_plain_spawn_request_parses_like_any_other():
    plain = encode_request(SpawnRequest())
    assert parse_request(plain, 1) == SpawnRequest(None)
    assert parse_request(pickle.dumps(("spawn", None), 2), 1) == SpawnRequest(None)
    for nfds in (0, 2):
        with pytest.raises(BadRequest, match="carries 1 descriptor"):
            parse_request(plain, nfds)
    with pytest.raises(BadRequest, match="cut off"):
        parse_request(plain, 1, socket.MSG_CTRUNC)
    with pytest.raises(BadRequest, match="longer than"):
        parse_request(plain, 1, socket.MSG_TRUNC)


def test_the_embryos_rehearsal_sample_is_a_spawn_spec(node):
    spec = SpawnSpec(*pickle.loads(rehearsal_sample(node.info)))
    fn, args, kwargs = pickle.loads(spec.blob)
    assert spec.parent.node == node.info.name and not spec.link and spec.monitor_ref is not None
    assert fn.__name__ == "<lambda>" and fn(*args, **kwargs) is None


# -------------------------------------------------------------- fork failures


def _fault_dir(tmp_path, monkeypatch):
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "fail").write_text("0 0")
    monkeypatch.setenv("OTP_TEST_FORK_FAULTS", str(faults))
    return faults


def _attempts(faults) -> int:
    try:
        return int((faults / "attempts").read_text() or 0)
    except FileNotFoundError:
        return 0


def _fail_next(faults, n: int, code: int) -> None:
    """Make the zygote's next ``n`` fork attempts fail with ``code``."""
    (faults / "fail.tmp").write_text(f"{_attempts(faults) + n} {code}")
    os.rename(faults / "fail.tmp", faults / "fail")


@pytest.mark.parametrize(
    "code, text",
    [(errno.EAGAIN, "Resource temporarily unavailable"), (errno.ENOMEM, "Cannot allocate memory")],
)
def test_fork_failure_is_a_spawn_error_with_the_os_reason_and_spawning_recovers(tmp_path, monkeypatch, code, text):
    faults = _fault_dir(tmp_path, monkeypatch)
    with otp.Node(embryos=0) as n:
        zygote = n.zygote_ospid
        _fail_next(faults, 1, code)
        with pytest.raises(otp.SpawnError, match=rf"fork failed: \[Errno {code}\] {text}"):
            otp.spawn(wait_forever)
        assert n.zygote_ospid == zygote and _oslib.os_process_alive(zygote, _oslib.proc_start_time(zygote))
        spawning_works()


def test_the_embryo_pool_refills_with_backoff_after_fork_failures(tmp_path, monkeypatch):
    faults = _fault_dir(tmp_path, monkeypatch)
    with otp.Node(embryos=1) as n:
        assert poll_until(lambda: len(n.os_pids()) > len(n.os_pids(embryos=False)))  # the pool is full
        _fail_next(faults, 10_000, errno.EAGAIN)
        spawning_works()  # served by the ready embryo; refilling it fails
        with pytest.raises(otp.SpawnError, match="fork failed"):
            otp.spawn(wait_forever)  # no embryo left, and forking one fails
        first = _attempts(faults)
        started = time.monotonic()
        assert poll_until(lambda: _attempts(faults) >= first + 3), "the zygote stopped retrying"
        # Retries back off (50 ms, doubling): three of them take at least
        # 50 + 100 + 200 ms; a busy loop would make thousands.
        assert time.monotonic() - started >= 0.3
        _fail_next(faults, 0, 0)
        spawning_works()
        assert poll_until(lambda: len(n.os_pids()) > len(n.os_pids(embryos=False))), "the pool did not refill"


# ------------------------------------------------ connections and descriptors


def _zygote_fds(ospid: int) -> set[int]:
    return {int(fd) for fd in os.listdir(f"/proc/{ospid}/fd")}


def _pool_full(n: otp.Node) -> bool:
    return len(n.os_pids()) - len(n.os_pids(embryos=False)) == n.embryos


def _lower_nofile(ospid: int, soft: int) -> None:
    _, hard = resource.prlimit(ospid, resource.RLIMIT_NOFILE)
    resource.prlimit(ospid, resource.RLIMIT_NOFILE, (soft, hard))


def _limit_leaving(used: set[int], free: int) -> int:
    """The descriptor limit under which exactly ``free`` more can be opened."""
    limit = 0
    while limit - len([fd for fd in used if fd < limit]) < free:
        limit += 1
    return limit


def test_idle_connections_beyond_the_cap_are_closed_lru_first_and_clients_reconnect():
    with otp.Node() as n:
        otp.trap_exit(True)  # were the zygote to die, the kernel supervisor's death must not end the test
        spawner = otp.spawn(spawner_loop, otp.self())
        otp.send(spawner, "go")
        recv_tagged("spawned")
        recv_tagged("pong")
        assert poll_until(lambda: _pool_full(n))
        zygote = n.zygote_ospid
        # A cap far below the free descriptors: the cap is tested, not EMFILE.
        limit = 4 * (len(_zygote_fds(zygote)) + 8)
        _lower_nofile(zygote, limit)
        cap = connection_cap(limit)
        socks = [raw_conn(n) for _ in range(cap)]
        extra = None
        try:
            for sock in socks:
                list_over(sock)  # accepted and served in this order; older connections are shed
            list_over(socks[0])  # now socks[1] is the least recently used
            extra = raw_conn(n)
            list_over(extra)
            assert closed_by_peer(socks[1]), "the least recently used connection should be closed"
            assert not closed_by_peer(socks[0], 0) and not closed_by_peer(extra, 0)
            spawning_works()  # the root's connection was shed: it reconnects
            otp.send(spawner, "go")  # so was the spawner's
            recv_tagged("spawned")
            recv_tagged("pong")
        finally:
            for sock in socks + [extra]:
                if sock is not None:
                    sock.close()


def test_running_out_of_descriptors_in_the_zygote_is_survived():
    with otp.Node() as n:
        otp.trap_exit(True)  # were the zygote to die, the kernel supervisor's death must not end the test
        assert poll_until(lambda: _pool_full(n))
        zygote = n.zygote_ospid
        # Four descriptors free, far fewer than the connection cap: accept
        # fails with EMFILE.
        _lower_nofile(zygote, _limit_leaving(_zygote_fds(zygote), 4))
        socks = []
        try:
            for _ in range(60):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                sock.settimeout(WAIT)
                socks.append(sock)
                sock.connect(n.info.zygote_address)
                sock.sendall(pickle.dumps(("list",)))
            answered = [bool(sock.recv(1 << 20)) for sock in socks]  # an answer, or EOF if shed
            assert sum(answered) >= 4
        finally:
            for sock in socks:
                sock.close()
        spawning_works()
        assert n.zygote_ospid == zygote and _oslib.proc_state(zygote)[0] not in ("Z", "X")


# --------------------------------------------------------------- zygote death


def test_the_zygote_leads_its_own_session(node):
    assert os.getsid(node.zygote_ospid) == node.zygote_ospid


def test_sigkill_of_the_zygote_is_logged_and_named_by_the_next_spawn_and_nothing_survives(caplog):
    sub = None
    try:
        with otp.Node() as n:
            otp.trap_exit(True)  # the kernel supervisor dies too, and we are linked to it
            proc = otp.spawn(spawn_subprocess, otp.self())
            _, sub = recv_tagged("sub")
            zygote = n.zygote_ospid
            os.kill(zygote, signal.SIGKILL)
            assert wait_os_pids_gone([sub, proc.ospid], WAIT) == [], "a subprocess outlived the zygote"
            cause = rf"the node's zygote \(ospid {zygote}\) was killed by SIGKILL"
            with pytest.raises(otp.NodeError, match=cause):
                otp.spawn(wait_forever)
            with pytest.raises(otp.NodeError, match=cause):
                n.os_pids()
        assert f"the node's zygote (ospid {zygote}) was killed by SIGKILL" in caplog.text
        assert not os.path.exists(n.info.dir)
    finally:
        if sub is not None:
            try:
                os.kill(sub, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_first_spawn_after_the_zygote_died_names_the_cause():
    with otp.Node(embryos=0) as n:
        otp.trap_exit(True)
        zygote = n.zygote_ospid
        fd = os.pidfd_open(zygote)
        try:
            os.kill(zygote, signal.SIGKILL)
            assert _oslib.fd_readable(fd, WAIT)
        finally:
            os.close(fd)
        with pytest.raises(otp.NodeError, match="killed by SIGKILL"):
            otp.spawn(wait_forever)


# --------------------------------------- no import from the current directory


PLANTED = ("logging", "zmq", "cloudpickle", "pickle", "socket", "select", "struct", "otp_planted")


def test_the_forkserver_zygote_never_imports_from_the_current_directory(tmp_path, monkeypatch):
    planted = tmp_path / "planted"
    planted.mkdir()
    marker = tmp_path / "marker"
    for name in PLANTED:
        (planted / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write({name!r} + '\\n')\n")
    monkeypatch.chdir(planted)
    with otp.Node(start_method="forkserver"):
        spawning_works()
    assert not marker.exists(), marker.read_text()


def test_the_spawner_sends_absolute_paths_to_the_zygote(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_path(["", "rel", "/abs", "."]) == [str(tmp_path), str(tmp_path / "rel"), "/abs", str(tmp_path)]


# ----------------------------------------------------- stale node directories


def _dead_process() -> tuple[int, int]:
    child = subprocess.Popen(["sleep", "60"])
    start = _oslib.proc_start_time(child.pid)
    assert start is not None
    child.kill()
    child.wait()
    return child.pid, start


def _fake_node_dir(base: str, name: str, owner: str | None) -> str:
    path = os.path.join(base, name)
    os.mkdir(path, 0o700)
    with open(os.path.join(path, "zygote"), "w"):
        pass
    if owner is not None:
        with open(os.path.join(path, "owner"), "w") as f:
            f.write(owner)
    return path


def test_a_node_start_removes_stale_node_directories_and_only_those():
    base = tempfile.mkdtemp(prefix="otp-stale-", dir="/tmp")
    try:
        pid, start = _dead_process()
        me, my_start = os.getpid(), _oslib.proc_start_time(os.getpid())
        dead = _fake_node_dir(base, "otp-dead0001", f"{pid} {start}\n")
        reused = _fake_node_dir(base, "otp-reused01", f"{me} {my_start + 1}\n")
        live = _fake_node_dir(base, "otp-live0001", f"{me} {my_start}\n")
        unowned = _fake_node_dir(base, "otp-noowner1", None)
        garbled = _fake_node_dir(base, "otp-garbled1", "not a pid\n")
        other = _fake_node_dir(base, "unrelated", f"{pid} {start}\n")
        foreign = None
        if os.getuid() == 0:
            foreign = _fake_node_dir(base, "otp-foreign1", f"{pid} {start}\n")
            os.chown(foreign, 65534, 65534)
        with otp.Node(base_dir=base) as n:
            mine = n.info.dir
            with open(os.path.join(mine, "owner")) as f:
                assert f.read().split() == [str(me), str(my_start)]
            assert not os.path.exists(dead)
            assert not os.path.exists(reused)
            for kept in (live, unowned, garbled, other) + ((foreign,) if foreign else ()):
                assert os.path.isdir(kept), kept
        assert not os.path.exists(mine)
    finally:
        subprocess.run(["rm", "-rf", base], check=True)
