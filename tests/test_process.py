"""Processes and messages: spawn, send, receive, self, is_alive."""

from __future__ import annotations

import os
import pickle
import signal
import threading

import pytest
import zmq
from helpers import down_of, recv, recv_tagged, wait_dead
from procs import echo, send_then_exit, wait_forever

import otp


def test_self_is_a_pid_outside_spawn(node):
    me = otp.self()
    assert isinstance(me, otp.Pid)
    assert me.ospid == os.getpid()
    assert me.node == node.name


def test_spawn_runs_in_another_os_process_and_messages_round_trip(node):
    pid = otp.spawn(echo)
    assert pid.ospid != os.getpid()
    ref = otp.monitor(pid)
    otp.send(pid, (otp.self(), "hello"))
    assert recv() == ("echo", "hello")
    otp.send(pid, "stop")
    assert down_of(ref).reason == "normal"


def test_spawn_closures_and_lambdas(node):
    me = otp.self()
    secret = {"k": [1, 2, 3]}
    otp.spawn(lambda: otp.send(me, ("lambda", secret["k"])))
    assert recv_tagged("lambda") == ("lambda", [1, 2, 3])

    def inner(x):
        otp.send(me, ("closure", x * 2))

    otp.spawn(inner, 21)
    assert recv_tagged("closure") == ("closure", 42)


def test_spawn_kwargs(node):
    me = otp.self()

    def f(a, *, b):
        otp.send(me, (a, b))

    otp.spawn(f, 1, b=2)
    assert recv() == (1, 2)


def test_pid_is_hashable_picklable_printable(node):
    pid = otp.spawn(wait_forever)
    copy = pickle.loads(pickle.dumps(pid))
    assert copy == pid and hash(copy) == hash(pid)
    assert {pid: 1}[copy] == 1
    assert str(pid.ospid) in repr(pid) and node.name in repr(pid)
    otp.exit(pid, "kill")


def test_selective_receive_keeps_the_rest_in_order(node):
    me = otp.self()
    for x in ["a", 1, "b", 2, "c"]:
        otp.send(me, x)
    assert otp.receive(1, lambda m: isinstance(m, int)) == 1
    assert otp.receive(1, lambda m: isinstance(m, int)) == 2
    assert [otp.receive(1) for _ in range(3)] == ["a", "b", "c"]


def test_selective_receive_across_processes(node):
    pid = otp.spawn(send_then_exit, otp.self(), 20)
    evens = [otp.receive(5, lambda m: m[0] == "seq" and m[1] % 2 == 0) for _ in range(10)]
    odds = [otp.receive(5) for _ in range(10)]
    assert [m[1] for m in evens] == list(range(0, 20, 2))
    assert [m[1] for m in odds] == list(range(1, 20, 2))
    wait_dead(pid)


def test_receive_timeout_raises_and_zero_timeout_looks_once(node):
    with pytest.raises(otp.Timeout):
        otp.receive(0.05)
    with pytest.raises(TimeoutError):  # otp.Timeout is a TimeoutError
        otp.receive(0)
    otp.send(otp.self(), "x")
    assert otp.receive(0) == "x"


def test_receive_zero_timeout_sees_what_already_arrived(node):
    pid, ref = otp.spawn_monitor(send_then_exit, otp.self(), 3)
    down_of(ref)  # its frames were received before its DOWN
    got = []
    while True:
        try:
            got.append(otp.receive(0, lambda m: m[0] == "seq"))
        except otp.Timeout:
            break
    assert [m[1] for m in got] == [0, 1, 2]


def test_is_alive(node):
    pid = otp.spawn(wait_forever)
    assert otp.is_alive(pid)
    assert otp.is_alive(otp.self())
    otp.exit(pid, "kill")
    wait_dead(pid)
    assert not otp.is_alive(pid)


def test_a_process_is_dead_to_is_alive_as_soon_as_kill_returns(node):
    """A SIGKILLed process keeps its /proc state letter for milliseconds
    while the kernel tears it down; is_alive must not count it from the
    moment the kill returned (otp.exit(pid, 'kill') as well as an OS kill)."""
    for trial in range(30):
        pid = otp.spawn(wait_forever)
        assert otp.is_alive(pid)
        if trial % 2:
            os.kill(pid.ospid, signal.SIGKILL)
        else:
            otp.exit(pid, "kill")
            wait_dead(pid)
        assert not otp.is_alive(pid), f"trial {trial}"


def test_send_to_dead_pid_is_a_silent_noop(node):
    pid = otp.spawn(lambda: None)
    wait_dead(pid)
    otp.send(pid, "into the void")
    otp.send(pid, "again")


def test_unpicklable_message_raises_in_sender(node):
    pid = otp.spawn(wait_forever)
    with pytest.raises(otp.EncodeError) as info:
        otp.send(pid, threading.Lock())
    assert "lock" in str(info.value).lower()
    assert isinstance(info.value, TypeError)
    otp.send(pid, "still fine")  # the failed send changed nothing
    otp.exit(pid, "kill")


def test_lambdas_in_messages_travel_with_cloudpickle(node):
    pid = otp.spawn(echo)
    otp.send(pid, (otp.self(), lambda x: x + 1))
    tag, fn = recv()
    assert tag == "echo" and fn(1) == 2
    otp.send(pid, "stop")


def test_malformed_frame_is_dropped_and_process_survives(node):
    pid = otp.spawn(echo)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.connect(node.info.mailbox_endpoint(pid.uid))
    for garbage in (b"", b"\x00garbage", pickle.dumps("not a frame"), pickle.dumps((1,))):
        sock.send(garbage)
    sock.close(linger=1000)
    ctx.term()
    otp.send(pid, (otp.self(), "after garbage"))
    assert recv() == ("echo", "after garbage")
    assert otp.is_alive(pid)
    otp.send(pid, "stop")


def test_not_a_process_outside_a_node_or_thread():
    with pytest.raises(otp.NotAProcess):
        otp.self()
    with otp.Node(start_method="fork"):
        errors = []

        def other():
            try:
                otp.self()
            except otp.NotAProcess as exc:
                errors.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert len(errors) == 1


def test_second_node_in_same_os_process_is_refused(node):
    with pytest.raises(otp.NodeError):
        otp.Node().start()


def test_send_to_a_non_pid_is_a_type_error(node):
    with pytest.raises((TypeError, otp.NoProc)):
        otp.send(12345, "x")


def test_uncaught_exception_becomes_crash_reason(node):
    def boom():
        raise KeyError("missing")

    pid, ref = otp.spawn_monitor(boom)
    reason = down_of(ref).reason
    assert isinstance(reason, otp.Crash)
    assert reason.exc_type == "builtins.KeyError"
    assert "missing" in reason.message
    assert "boom" in reason.traceback


def test_process_exit_reason_and_system_exit(node):
    pid, ref = otp.spawn_monitor(lambda: (_ for _ in ()).throw(otp.ProcessExit(("shutdown", "done"))))
    assert down_of(ref).reason == ("shutdown", "done")

    def quit_cleanly():
        raise SystemExit(0)

    pid, ref = otp.spawn_monitor(quit_cleanly)
    assert down_of(ref).reason == "normal"


def test_many_processes_message_each_other(node):
    me = otp.self()
    pids = [otp.spawn(echo) for _ in range(20)]
    for i, pid in enumerate(pids):
        otp.send(pid, (me, i))
    assert sorted(recv()[1] for _ in pids) == list(range(20))
    for pid in pids:
        otp.send(pid, "stop")
    for pid in pids:
        wait_dead(pid)
