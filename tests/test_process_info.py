"""otp.process_info and otp.processes (erlang:process_info/1,2 and
erlang:processes/0), under both start methods."""

from __future__ import annotations

import os
import signal
import time

import pytest
from helpers import TIMEOUT, down_of, recv_tagged, wait_dead
from procs import wait_forever

import otp
from otp._process_info import ITEMS, ProcessInfo, process_info, processes


def _until(predicate, what: str):
    """Ask again until ``predicate`` holds (each ask is a round trip to the
    process, not a sleep); fail after TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"never saw {what}"


def linked_waiter(parent: otp.Pid) -> None:
    otp.link(parent)
    otp.trap_exit(True)
    otp.send(parent, ("ready", otp.self()))
    otp.receive()


def busy_until(parent: otp.Pid, path: str) -> None:
    """Tell the parent it is busy, stay out of receive until ``path``
    exists, then send back every message it finds queued, in order."""
    otp.send(parent, ("busy", otp.self()))
    while not os.path.exists(path):
        pass
    got = []
    while True:
        try:
            got.append(otp.receive(0))
        except otp.Timeout:
            break
    otp.send(parent, ("got", got))


def hold_messages() -> None:
    """Receive nothing: every message stays queued (selective receive)."""
    otp.receive(match=lambda m: False)


def echo_n(parent: otp.Pid, n: int) -> None:
    for _ in range(n):
        otp.send(parent, ("echo", otp.receive()))
    otp.receive()


def test_process_info_of_a_waiting_linked_process(start_method, node):
    """erlang:process_info/1: links, monitored_by, trap_exit, status waiting,
    message_queue_len, registered_name (undefined: None) of a process
    blocked in receive."""
    me = otp.self()
    pid = otp.spawn(linked_waiter, me)
    recv_tagged("ready")
    ref = otp.monitor(pid)
    info = _until(lambda: (i := process_info(pid)) and i.status == "waiting" and me in i.monitored_by and i, "waiting")
    assert isinstance(info, ProcessInfo)
    assert info.pid == pid
    assert info.links == (me,)
    assert info.trap_exit is True
    assert info.monitors == ()
    assert info.message_queue_len == 0
    assert info.registered_name is None
    assert 0 < info.memory <= info.rss
    # The child's link signal and its "ready" message travel apart (the
    # signal port and the mailbox): this process's own tables may show the
    # link a moment after the message came.
    mine = _until(lambda: (i := process_info(me)) and pid in i.links and i, "the link in our own info")
    assert mine.monitors == (pid,) and mine.status == "running"
    otp.unlink(pid)
    otp.exit(pid, "kill")
    assert down_of(ref).reason == "killed"


def test_process_info_of_a_dead_process_is_none(start_method, node):
    """erlang:process_info/1,2 return undefined for a process that is not alive."""
    pid = otp.spawn(lambda: None)
    wait_dead(pid)
    assert process_info(pid) is None
    assert process_info(pid, ["message_queue_len"]) is None


def test_process_info_items_give_a_dict(start_method, node):
    """erlang:process_info/2 with a list of items: only those, by name; an
    unknown item is badarg (ValueError).  Messages a selective receive
    passed over count in message_queue_len."""
    pid = otp.spawn(hold_messages)
    otp.send(pid, "one")
    got = _until(
        lambda: (d := process_info(pid, ["message_queue_len", "links"])) and d["message_queue_len"] == 1 and d,
        "the message counted",
    )
    otp.send(pid, "two")
    _until(lambda: process_info(pid, ["message_queue_len"]) == {"message_queue_len": 2}, "two queued")
    assert got == {"message_queue_len": 1, "links": ()}
    assert set(process_info(pid, sorted(ITEMS))) == ITEMS
    with pytest.raises(ValueError):
        process_info(pid, ["reductions"])
    with pytest.raises(TypeError):
        process_info(pid, "links")
    otp.exit(pid, "kill")


def test_message_queue_len_counts_messages_of_a_busy_process(start_method, node, tmp_path):
    """erlang:process_info(Pid, message_queue_len) of a process busy outside
    receive counts what arrived meanwhile (answered by its signal thread);
    the messages are then received in the order they were sent."""
    me = otp.self()
    path = str(tmp_path / "done")
    pid = otp.spawn(busy_until, me, path)
    recv_tagged("busy")
    for i in range(5):
        otp.send(pid, ("m", i))
    info = _until(lambda: (i := process_info(pid)) and i.message_queue_len == 5 and i, "five queued")
    assert info.status == "running"
    # Its innermost frame: the loop itself or the check it makes.
    assert info.current_function in ("test_process_info.busy_until", "genericpath.exists")
    assert info.messages_received == 0  # none taken in by the process itself
    otp.send(pid, ("m", 5))
    _until(lambda: process_info(pid, ["message_queue_len"])["message_queue_len"] == 6, "six queued")
    open(path, "w").close()
    assert recv_tagged("got")[1] == [("m", i) for i in range(6)]


def test_message_counters(start_method, node):
    """Messages received and sent over the process's life (frames taken in
    and sent; Erlang has no such item, its closest is reductions)."""
    me = otp.self()
    pid = otp.spawn(echo_n, me, 3)
    for i in range(3):
        otp.send(pid, i)
    assert [recv_tagged("echo")[1] for _ in range(3)] == [0, 1, 2]
    info = _until(lambda: (i := process_info(pid)) and i.status == "waiting" and i, "waiting")
    assert info.messages_received == 3
    assert info.messages_sent == 3
    otp.exit(pid, "kill")


def test_a_stopped_process_is_suspended(start_method, node):
    """erlang:process_info(Pid, status) is suspended for a suspended process;
    a process stopped by SIGSTOP cannot say more (its own fields are None)."""
    pid = otp.spawn(wait_forever)
    os.kill(pid.ospid, signal.SIGSTOP)
    try:
        info = _until(lambda: (i := process_info(pid)) and i.status == "suspended" and i, "suspended")
        assert info.message_queue_len is None and info.links is None
        assert info.rss > 0
    finally:
        os.kill(pid.ospid, signal.SIGCONT)
    assert process_info(pid, ["trap_exit"]) == {"trap_exit": False}
    otp.exit(pid, "kill")


def test_processes_lists_the_live_processes(start_method, node):
    """erlang:processes/0: every live process of the node, the caller and
    the root included; a dead one is not listed."""
    me = otp.self()
    pids = [otp.spawn(wait_forever) for _ in range(3)]
    dead = otp.spawn(lambda: None)
    wait_dead(dead)
    listed = processes()
    assert me in listed
    assert set(pids) <= set(listed)
    assert dead not in listed
    assert len(listed) == len(set(listed))
    for pid in pids:
        otp.exit(pid, "kill")


def report_processes(parent: otp.Pid) -> None:
    otp.send(parent, ("listed", processes()))


def test_processes_from_a_child_include_the_root(start_method, node):
    """erlang:processes/0 called by any process: the root (which the zygote
    did not fork) is listed too."""
    me = otp.self()
    otp.spawn(report_processes, me)
    listed = recv_tagged("listed")[1]
    assert me in listed


def test_process_info_of_a_process_stuck_in_a_callback_answers(start_method, node, tmp_path):
    """process_info needs nothing of the target's main thread: it answers
    while the process runs a callback that never receives."""
    me = otp.self()
    path = str(tmp_path / "done")
    pid = otp.spawn(busy_until, me, path)
    recv_tagged("busy")
    t0 = time.perf_counter()
    info = process_info(pid)
    assert time.perf_counter() - t0 < TIMEOUT
    assert info.status == "running" and info.message_queue_len == 0
    open(path, "w").close()
    assert recv_tagged("got")[1] == []
