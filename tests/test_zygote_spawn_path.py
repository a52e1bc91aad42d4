"""The critical path of a spawn (see otp._zygote_protocol, "Spawning"): the
zygote gives the spawner its process's identity, the new process prepares
(its function unpickled, its socket to the spawner connected) while the
spawner registers, and runs only on the spawner's go-ahead; the zygote
forks the replacement embryo after the new process's first steps."""

from __future__ import annotations

import socket
import sys
import types

import pytest
from helpers import down_of, nothing_matching, recv, recv_tagged

import otp
from otp import _process, _zygote
from otp._codec import dumps, dumps_by_value
from otp._zygote_protocol import IDENTITY, LENGTH, RUN, SpawnRequest, SpawnSpec, absolute_path, encode_request

WAIT = 10.0


@pytest.fixture
def node(start_method, node):
    return node


def say(parent: otp.Pid, what: str) -> None:
    otp.send(parent, (what,))


def report_peers(parent: otp.Pid) -> None:
    otp.send(parent, ("peers", parent.uid in _process.current().peers))


def test_a_new_process_runs_only_on_its_spawners_go_ahead(node):
    """The spawner writes the spec at once and reads the identity from the
    zygote; the process must wait for RUN (sent once the spawner's link and
    monitor are registered) before its function runs."""
    me = otp.self()
    blob = dumps_by_value((say, (me, "ran"), {}))
    spec = dumps(SpawnSpec(me, False, None, absolute_path(sys.path), blob))
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
        conn.settimeout(WAIT)
        conn.connect(node.info.zygote_address)
        mine, theirs = socket.socketpair()
        with mine:
            with theirs:
                socket.send_fds(conn, [encode_request(SpawnRequest())], [theirs.fileno()])
            mine.settimeout(WAIT)
            mine.sendall(LENGTH.pack(len(spec)) + spec)
            uid, ospid, _ = IDENTITY.unpack(mine.recv(IDENTITY.size, socket.MSG_WAITALL))
            assert uid and ospid, "the zygote gave no process"
            assert nothing_matching(lambda m: m == ("ran",), timeout=1.0), "it ran before the go-ahead"
            mine.sendall(RUN)
            assert recv_tagged("ran") == ("ran",)


def test_a_new_process_has_its_socket_to_the_spawner_before_it_runs(node):
    """Connected while the spawner registers: its first send to the
    spawner does not wait for libzmq's connection and handshake."""
    otp.spawn(report_peers, otp.self())
    assert recv_tagged("peers") == ("peers", True)


class _Unloadable:
    """Pickles fine; unpickling it in the new process raises."""

    def __reduce__(self):
        return (_explode, ())


def _explode() -> None:
    raise ValueError("cannot be unpickled here")


def test_a_function_that_cannot_be_unpickled_is_the_processes_crash(node):
    """Unpickled before the go-ahead, raised once it runs: the monitor sees
    the crash, as when it was unpickled after."""
    pid, ref = otp.spawn_monitor(say, otp.self(), _Unloadable())
    reason = down_of(ref).reason
    assert isinstance(reason, otp.Crash) and reason.message == "cannot be unpickled here"
    otp.spawn(say, otp.self(), "still")
    assert recv() == ("still",)


# ------------------------------------------------------------- refilling


def _pool(ready: int, waiting: int) -> types.SimpleNamespace:
    forks: list[int] = []
    pool = types.SimpleNamespace(ready=[object()] * ready, waiting=[0] * waiting, refill_at=None, forks=forks)
    pool.top_up = lambda: forks.append(1)
    return pool


def test_the_replacement_embryo_is_forked_later_while_another_is_ready():
    pool = _pool(ready=1, waiting=0)
    _zygote._Zygote.refill(pool, handed=True)  # type: ignore[arg-type]
    assert pool.forks == [] and pool.refill_at is not None
    before = pool.refill_at
    _zygote._Zygote.refill(pool, handed=True)  # type: ignore[arg-type]
    assert pool.refill_at == before, "a second hand-over must not push the refill back"


@pytest.mark.parametrize(("ready", "waiting", "handed"), [(0, 0, True), (1, 1, True), (1, 0, False)])
def test_the_pool_is_refilled_at_once_when_no_embryo_is_ready_or_a_spawner_waits(ready, waiting, handed):
    pool = _pool(ready=ready, waiting=waiting)
    _zygote._Zygote.refill(pool, handed=handed)  # type: ignore[arg-type]
    assert pool.forks == [1]


def test_spawning_back_to_back_refills_the_pool(node):
    """More spawns than embryos, each waiting for its answer: the deferred
    refills and the at-once ones keep every spawn served."""
    me = otp.self()
    for i in range(3 * node.embryos + 2):
        otp.spawn(say, me, f"n{i}")
        assert recv_tagged(f"n{i}") == (f"n{i}",)
