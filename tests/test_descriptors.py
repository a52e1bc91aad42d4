"""Descriptors: peer sockets are capped and closed when idle, the order of
messages survives a socket being reopened, a process out of descriptors
keeps its messages, and a node under ``ulimit -n 1024`` serves 2,000
processes that call one server by name (libzmq 4.3.5 aborts a process whose
ipc listener meets EMFILE, see otp._transport)."""

from __future__ import annotations

import json
import os
import pickle
import resource
import select
import socket
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

import otp
from otp import _peers, _process
from otp._frame_order import frame_header as _frame_header
from otp._pid import Ref
from otp.registry._server import watch_cap


def _fds(ospid: int) -> int:
    return len(os.listdir(f"/proc/{ospid}/fd"))


def _tagged(tag, timeout: float = 30.0):
    return otp.receive(timeout, lambda m: type(m) is tuple and m and m[0] == tag)


def collect(parent: otp.Pid, count: int, tag: str) -> None:
    """Receive ``count`` messages, then send them to ``parent`` as one list."""
    got = [otp.receive() for _ in range(count)]
    otp.send(parent, (tag, otp.self(), got))


# ------------------------------------------------------------- unit level


class Message:
    pass


def test_frame_header_is_read_without_unpickling():
    for uid in (1, 0x7FFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF):
        for seq in (1, 255, 256, 70_000, 1 << 40):
            assert _frame_header(pickle.dumps((uid, seq, "message"), 5)) == (uid, seq)
            assert _frame_header(pickle.dumps((uid, seq, Ref(7), [1, 2]), 5)) == (uid, seq)
    # A class the receiver lacks: the frame cannot be unpickled.
    frame = pickle.dumps((5, 9, Message()), 5).replace(b"Message", b"Missing")
    with pytest.raises(AttributeError):
        pickle.loads(frame)
    assert _frame_header(frame) == (5, 9)
    assert _frame_header(b"\x80\x05garbage") is None
    assert _frame_header(pickle.dumps(("x", 1, 2), 5)) is None
    assert _frame_header(b"") is None


# --------------------------------------------------------------- the cap


def _sender_over_cap(parent: otp.Pid, sinks: list, rounds: int, cap: int) -> None:
    proc = _process.current()
    otp.send(parent, ("ready",))  # the socket to the parent exists: the cap applies from here
    proc._peer_cap = cap
    most = 0
    for r in range(rounds):
        for sink in sinks:
            otp.send(sink, r)
            most = max(most, len(proc._open))
    otp.send(parent, ("sent", most, proc.peer_reopens))


def test_peer_sockets_are_capped_and_reopened_in_order(node):
    me = otp.self()
    rounds, cap = 4, 16
    sinks = [otp.spawn(collect, me, rounds, "got") for _ in range(40)]
    sender = otp.spawn(_sender_over_cap, me, sinks, rounds, cap)
    _tagged("ready")
    _, most, reopens = _tagged("sent")
    assert most <= cap
    assert reopens >= len(sinks) * (rounds - 1) // 2  # most messages went on a reopened socket
    for _ in sinks:
        _, sink, got = _tagged("got")
        assert got == list(range(rounds)), sink
    otp.monitor(sender)


def _sender_reopening_each_time(target: otp.Pid, count: int, parent: otp.Pid) -> None:
    """Send ``count`` numbers to ``target``, each on a socket of its own."""
    proc = _process.current()
    for i in range(count):
        otp.send(target, ("n", i))
        p = proc.peers[target.uid]
        if p.sock is not None:
            proc._evict(p, time.monotonic())
    otp.send(parent, ("sent",))


def _busy_receiver(gate_path: str, parent: otp.Pid, count: int) -> None:
    """Read nothing until a datagram comes on ``gate_path`` (its ZeroMQ
    thread meanwhile takes every connection in), then report what came."""
    gate = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    gate.bind(gate_path)
    otp.send(parent, ("ready", otp.self()))
    gate.recv(16)
    gate.close()
    got = [otp.receive(30, lambda m: type(m) is tuple and m[0] == "n")[1] for _ in range(count)]
    otp.send(parent, ("got", got))


def test_order_survives_reopening_while_the_receiver_reads_nothing(node):
    me = otp.self()
    count = 60
    gate_path = os.path.join(node.info.dir, "gate")
    receiver = otp.spawn(_busy_receiver, gate_path, me, count)
    _tagged("ready")
    otp.spawn(_sender_reopening_each_time, receiver, count, me)
    _tagged("sent")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"go", gate_path)
    assert _tagged("got")[1] == list(range(count))


def test_exit_signal_stays_behind_messages_sent_on_reopened_sockets(node):
    """Order across sockets: the DOWN of a sender comes after the messages
    it sent before exiting, though each went on its own connection and the
    receiver read none of them before the sender was gone."""
    me = otp.self()
    count = 40
    pid, ref = otp.spawn_monitor(_sender_reopening_each_time, me, count, me)
    fd = os.pidfd_open(pid.ospid)
    try:
        select.select([fd], [], [], 30)  # the sender is gone: everything it sent is queued here
    finally:
        os.close(fd)
    got = []
    while True:
        m = otp.receive(30)
        if isinstance(m, otp.DOWN):
            assert m.ref == ref and m.reason == "normal"
            break
        if m == ("sent",):
            continue
        got.append(m[1])
    assert got == list(range(count))


# ------------------------------------------------------------- idle close


def _wait_until(cond, tries: int = 400) -> bool:
    """Wait in the mailbox (where idle sockets are closed) until ``cond()``."""
    for _ in range(tries):
        if cond():
            return True
        try:
            otp.receive(0.025, lambda m: False)
        except otp.Timeout:
            pass
    return cond()


def _settled_fds(pid: int) -> int:
    """The descriptor count of ``pid`` once two looks 25 ms apart agree."""
    last = [-1]

    def same() -> bool:
        n = _fds(pid)
        agreed, last[0] = n == last[0], n
        return agreed

    _wait_until(same)
    return last[0]


def _idle_then_report(sink: otp.Pid, parent: otp.Pid) -> None:
    proc = _process.current()
    _peers.PEER_IDLE_S = 0.05
    me = os.getpid()
    # The socket a new process opens ahead to its spawner (here ``parent``)
    # is idle too: once it has closed (and libzmq has given its descriptors
    # back), the count holds only the socket under test.
    _wait_until(lambda: not proc._open)
    before = _settled_fds(me)
    # The first send takes the socket a new process makes ahead
    # (warm_peer_sockets): its eventfd is counted in ``before`` already.
    spare = 1 if proc._spare_socket is not None else 0
    otp.send(sink, 0)
    connected = _wait_until(lambda: _fds(me) == before + 2 - spare)  # the socket's eventfd and its connection
    closed = _wait_until(lambda: not proc._open and _fds(me) == before - spare)
    otp.send(sink, 1)  # reopens
    otp.send(parent, ("idle", connected, closed, proc.peer_reopens))


def test_idle_peer_sockets_close_while_the_process_waits(node):
    me = otp.self()
    sink = otp.spawn(collect, me, 2, "got")
    otp.spawn(_idle_then_report, sink, me)
    _, connected, closed, reopens = _tagged("idle")
    assert connected and closed
    assert reopens == 1
    assert _tagged("got")[2] == [0, 1]


# ------------------------------------------------------------ no descriptor


def _send_without_descriptors(target: otp.Pid, parent: otp.Pid, count: int, how: str) -> None:
    proc = _process.current()
    if how == "closes_its_own":
        # A socket it may close to make room: connected (an answer came),
        # else closing it would free nothing.
        otp.send(parent, ("idle socket", otp.self()))
        otp.receive(30, lambda m: m == "connected")
    # The socket a new process makes ahead (warm_peer_sockets) would be the
    # first send's: taken away, but kept open until the end, because a
    # closed ZeroMQ socket gives its descriptors back later, in libzmq's
    # own thread, which would free room below the limit set here.
    spare, proc._spare_socket = proc._spare_socket, None
    # The socket a new process opens ahead to its spawner (``parent`` here)
    # is one it could close to make room: out of the sockets it may close,
    # and kept open until the end for the same reason, unless closing its
    # own idle socket is the path under test.
    early = None if how == "closes_its_own" else proc._open.pop(parent.uid, None)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # No descriptor left: the gaps below the highest one filled, the limit
    # just above it (so that a socket the process closes frees two).
    # Nothing connects to this process meanwhile: an accept would need a
    # descriptor too, and libzmq aborts without one.
    top = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    hogs = []
    while True:
        fd = os.open(os.devnull, os.O_RDONLY)
        if fd > top:
            os.close(fd)
            break
        hogs.append(fd)
    resource.setrlimit(resource.RLIMIT_NOFILE, (top + 1, hard))
    try:
        # Sockets closed earlier (the one warm_peer_sockets connected to our
        # own mailbox, and the mailbox's end of that connection) give their
        # descriptors back in libzmq's threads, possibly only now: take
        # whatever came free, just before sending.
        while True:
            try:
                hogs.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
        for i in range(count):
            otp.send(target, i)
        queued = len(proc.peers[target.uid].backlog or ())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for fd in hogs:
            os.close(fd)
        if spare is not None:
            spare.close(linger=0)
        if early is not None:
            proc._open[parent.uid] = early
    if how == "when_waiting":
        waited = 0
        while proc._backlogged and waited < 200:
            try:
                otp.receive(0.05, lambda m: False)
            except otp.Timeout:
                waited += 1
    otp.send(parent, ("queued", queued, bool(proc._backlogged)))
    # Exiting: what still waits for a descriptor is sent by the exit hook.


@pytest.mark.parametrize("how", ["at_exit", "when_waiting", "closes_its_own"])
def test_messages_wait_for_a_descriptor_and_are_delivered_in_order(node, how):
    """Every attempt delivers all messages in order.  Running out of
    descriptors is arranged from inside the sender, and under the fork start
    method a descriptor sometimes comes free during the sends (one in five
    runs, cause not found yet: see the closing note of issue 14's work), so
    the messages go at once; the path under test must then show up in one
    of three attempts."""
    me = otp.self()
    count = 25
    for _attempt in range(3):
        sink = otp.spawn(collect, me, count, "got")
        pid, ref = otp.spawn_monitor(_send_without_descriptors, sink, me, count, how)
        if how == "closes_its_own":
            otp.send(_tagged("idle socket")[1], "connected")
        _, queued, still = _tagged("queued")
        assert _tagged("got")[2] == list(range(count))
        down = otp.receive(30, lambda m, ref=ref: isinstance(m, otp.DOWN) and m.ref == ref)
        assert down.reason == "normal"
        if how == "closes_its_own":
            if queued == 0:
                break  # it closed its idle socket to the parent and sent at once
            # On a loaded machine the idle sweep may have closed that socket
            # before the sender ran out: nothing to close, all waited.
            assert queued == count, queued
            continue
        if queued == count:  # no socket could be made, none to close: all waited
            assert still is (how == "at_exit")
            break
        assert queued == 0, queued
    else:
        pytest.fail("in three attempts the sender never ran out of descriptors")


# ------------------------------------------------- 2,000 callers, 1,024 fds

_SCENARIO = textwrap.dedent(
    r"""
    import json, os, sys, time
    import otp
    from otp.supervisor import which_children

    N = int(sys.argv[1])

    class Srv(otp.GenServer):
        def handle_call(self, request, from_, state):
            return otp.Reply(("ok", request), state)

    def client(i, parent):
        assert otp.call("srv", i, timeout=120) == ("ok", i)
        otp.send(parent, ("done", i))
        otp.receive()  # alive until the node stops it

    def fds(ospid):
        try:
            return len(os.listdir(f"/proc/{ospid}/fd"))
        except OSError:
            return -1

    out = {}
    with otp.Node() as node:
        out["dir"] = node.info.dir
        registry = [c.pid for c in which_children(node.kernel) if c.id == "registry"][0]
        srv = Srv.start_link(None, name="srv")
        me = otp.self()
        peaks = {"srv": 0, "registry": 0, "root": 0}

        def sample():
            for name, ospid in (("srv", srv.ospid), ("registry", registry.ospid), ("root", os.getpid())):
                peaks[name] = max(peaks[name], fds(ospid))

        t0 = time.monotonic()
        pids = []
        done = 0
        for i in range(N):
            pids.append(otp.spawn(client, i, me))
            while True:  # take in what is there, so the root waits as a real process does
                try:
                    otp.receive(0, lambda m: m[0] == "done")
                    done += 1
                except otp.Timeout:
                    break
            if i % 200 == 0:
                sample()
        while done < N:
            otp.receive(300, lambda m: m[0] == "done")
            done += 1
            if done % 200 == 0:
                sample()
        out["spawned_and_called_s"] = time.monotonic() - t0
        sample()
        registry_now = [c.pid for c in which_children(node.kernel) if c.id == "registry"][0]
        out["registry_restarted"] = registry_now != registry
        out["srv_alive"] = otp.is_alive(srv)
        out["answered"] = done
        out["peaks"] = peaks
        out["limit"] = list(__import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE))
    out["total_s"] = time.monotonic() - t0  # the node stopped its 2,000 processes one by one
    print(json.dumps(out))
    """
)


def _unprivileged_1024():
    """In the child, before exec: 1,024 descriptors, soft and hard, and no
    CAP_SYS_RESOURCE (the test runs as root, which could raise it back)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(24, 24, 0, 0, 0)  # PR_CAPBSET_DROP, CAP_SYS_RESOURCE
    except Exception:
        pass


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_2000_callers_by_name_under_1024_descriptors():
    """2,000 live processes call one gen_server through its registered name
    (a registry lookup each), report to the root and stay alive; every
    process has 1,024 descriptors and cannot raise the limit.  Without the
    idle close the server, the registry and the root each hold a connection
    per caller and libzmq aborts them past about 1,000 (each caller costs
    the server three descriptors: its connection and its reply socket)."""
    n = 2000
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(otp.__file__))]))
    proc = subprocess.run(
        [sys.executable, "-c", _SCENARIO, str(n)],
        preexec_fn=_unprivileged_1024,
        capture_output=True,
        text=True,
        timeout=1500,
        env=env,
    )
    assert "Too many open files" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["limit"] == [1024, 1024]
    assert out["answered"] == n
    assert out["srv_alive"] and not out["registry_restarted"], out
    assert max(out["peaks"].values()) < 1024, out
    assert not os.path.exists(out["dir"])
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert not left, left


_REGISTER_SCENARIO = textwrap.dedent(
    r"""
    import json, sys
    import otp
    from otp.supervisor import which_children

    N, WAVE = int(sys.argv[1]), int(sys.argv[2])

    def member(i, parent):
        try:
            otp.register(f"member-{i}", otp.self())
            otp.send(parent, ("registered", i, None))
        except otp.registry.RegistryFull as exc:
            otp.send(parent, ("registered", i, type(exc).__name__))
        otp.receive()  # alive until the node stops it

    out = {}
    with otp.Node() as node:
        registry = [c.pid for c in which_children(node.kernel) if c.id == "registry"][0]
        me = otp.self()
        answers = []
        for start in range(0, N, WAVE):  # waves: the registry's connections stay well below its limit
            for i in range(start, min(N, start + WAVE)):
                otp.spawn(member, i, me)
            for _ in range(start, min(N, start + WAVE)):
                answers.append(otp.receive(120, lambda m: m[0] == "registered")[2])
        out["registered"] = answers.count(None)
        out["full"] = answers.count("RegistryFull")
        out["registry_restarted"] = [c.pid for c in which_children(node.kernel) if c.id == "registry"][0] != registry
        out["found"] = otp.whereis("member-0") is not None
    print(json.dumps(out))
    """
)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_registrations_beyond_the_descriptor_limit_are_refused_not_fatal():
    """Under ``ulimit -n 1024`` the registry watches at most 256 processes (a
    pidfd each, the rest of the limit kept for its sockets); the next registrations
    raise RegistryFull in their callers and the registry lives on (it used
    to die of EMFILE, restart, die again, and take the node down)."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(otp.__file__)))
    proc = subprocess.run(
        [sys.executable, "-c", _REGISTER_SCENARIO, "700", "100"],
        preexec_fn=_unprivileged_1024,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Too many open files" not in proc.stderr, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # The kernel's own named services (the timer server and the application
    # controller) hold two of the registry's watches.
    room = watch_cap(1024) - 2
    assert out == {"registered": room, "full": 700 - room, "registry_restarted": False, "found": True}
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert not left, left
