"""Monitors (one DOWN per monitor) and per-pair ordering of messages and
signals (a signal never overtakes a message its sender sent before it)."""

from __future__ import annotations

import os
import signal

from helpers import down_of, exit_of, nothing_matching, recv_tagged, wait_dead
from procs import exit_with, monitor_and_report, send_then_exit, wait_forever

import otp


def test_monitor_sigkill_gives_down_killed(node):
    pid = otp.spawn(wait_forever)
    ref = otp.monitor(pid)
    os.kill(pid.ospid, signal.SIGKILL)
    assert down_of(ref) == otp.DOWN(ref, pid, "killed")


def test_monitor_of_dead_pid_gives_noproc_at_once(node):
    pid = otp.spawn(lambda: None)
    wait_dead(pid)
    ref = otp.monitor(pid)
    assert down_of(ref, timeout=0.5) == otp.DOWN(ref, pid, "noproc")


def test_a_noproc_down_counts_as_a_seen_death(node):
    """Registry reads filter the deaths the caller has seen: a 'noproc' DOWN
    (the process was gone before the monitor) is one of them."""
    from otp import _oslib, _process

    pid = otp.spawn(lambda: None)
    try:  # wait until it is gone, learning it from the OS only
        fd = os.pidfd_open(pid.ospid)
    except ProcessLookupError:
        pass  # gone and reaped already
    else:
        try:
            assert _oslib.fd_readable(fd, 10)
        finally:
            os.close(fd)
    assert not _process.current().seen_dead(pid)
    ref = otp.monitor(pid)
    assert down_of(ref, timeout=5) == otp.DOWN(ref, pid, "noproc")
    assert _process.current().seen_dead(pid)


def test_monitors_stack(node):
    pid = otp.spawn(wait_forever)
    refs = [otp.monitor(pid) for _ in range(3)]
    assert len(set(refs)) == 3
    otp.exit(pid, ("shutdown", 7))
    for ref in refs:
        assert down_of(ref).reason == ("shutdown", 7)


def test_monitor_is_unidirectional(node):
    watcher, wref = otp.spawn_monitor(monitor_and_report, otp.self(), otp.self())
    recv_tagged("monitoring")
    otp.exit(watcher, "kill")
    assert down_of(wref).reason == "killed"
    # and we, the watched, are unaffected (we are still running this test)


def test_demonitor_prevents_down(node):
    pid = otp.spawn(wait_forever)
    ref = otp.monitor(pid)
    assert otp.demonitor(ref) is True
    ref2 = otp.monitor(pid)
    otp.exit(pid, "kill")
    down_of(ref2)
    assert nothing_matching(lambda m: isinstance(m, otp.DOWN) and m.ref == ref)


def test_demonitor_flush_removes_queued_down(node):
    pid = otp.spawn(wait_forever)
    ref = otp.monitor(pid)
    ref2 = otp.monitor(pid)
    otp.exit(pid, "kill")
    down_of(ref2)  # both DOWNs have been queued by now
    otp.demonitor(ref, flush=True)
    assert nothing_matching(lambda m: isinstance(m, otp.DOWN) and m.ref == ref, timeout=0)


def test_spawn_monitor_is_atomic(node):
    results = [otp.spawn_monitor(exit_with, i) for i in range(10)]
    for i, (pid, ref) in enumerate(results):
        assert down_of(ref) == otp.DOWN(ref, pid, i)


def test_messages_arrive_before_down_of_a_normal_exit(node):
    for _ in range(5):
        pid, ref = otp.spawn_monitor(send_then_exit, otp.self(), 50)
        got = []
        while True:
            m = otp.receive(
                10,
                lambda m, ref=ref: (
                    (isinstance(m, tuple) and m[0] == "seq") or (isinstance(m, otp.DOWN) and m.ref == ref)
                ),
            )
            if isinstance(m, otp.DOWN):
                break
            got.append(m[1])
        assert got == list(range(50)), "DOWN overtook a message sent before the exit"


def test_messages_arrive_before_exit_signal_of_the_link(node):
    otp.trap_exit(True)
    for reason in ("normal", "shutdown", ("custom", 1)):
        pid = otp.spawn_link(send_then_exit, otp.self(), 30, reason)
        seen = []
        while True:
            m = otp.receive(10)
            if isinstance(m, otp.EXIT):
                assert m == otp.EXIT(pid, reason)
                break
            seen.append(m[1])
        assert seen == list(range(30))


def test_exit_signal_from_live_sender_stays_behind_its_messages(node):
    parent = otp.self()

    def sender(target):
        for i in range(100):
            otp.send(target, ("seq", i))
        otp.exit(target, "shutdown")
        otp.receive()

    otp.trap_exit(True)
    s = otp.spawn(sender, parent)
    seen = []
    while True:
        m = otp.receive(10)
        if isinstance(m, otp.EXIT):
            assert m.pid == s and m.reason == "shutdown"
            break
        seen.append(m[1])
    assert seen == list(range(100))
    otp.exit(s, "kill")


def test_down_after_reply_when_server_replies_then_exits(node):
    """erlang/otp#7510: a reply sent before the exit is received before DOWN."""
    server, ref = otp.spawn_monitor(lambda parent: otp.send(parent, "reply"), otp.self())
    assert otp.receive(10) == "reply"
    assert down_of(ref).reason == "normal"


def test_exit_of_linked_trapping_peer_after_sigkill_reaches_us(node):
    otp.trap_exit(True)
    pid = otp.spawn_link(wait_forever)
    ref = otp.monitor(pid)
    os.kill(pid.ospid, signal.SIGKILL)
    assert down_of(ref).reason == "killed"
    assert exit_of(pid).reason == "killed"


def test_exit_reasons_are_exact_when_descriptors_pass_1024(node):
    """A busy root holds thousands of descriptors (a pidfd per monitored
    process, a socket per peer).  Deaths must still be told apart from
    SIGKILLs when the pidfds are numbered above 1024 (select() cannot take
    them; poll() can)."""
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        watched = [otp.spawn_monitor(exit_with, "normal") for _ in range(5)]
        killed, kref = otp.spawn_monitor(wait_forever)
        os.kill(killed.ospid, signal.SIGKILL)
        assert {down_of(ref).reason for _, ref in watched} == {"normal"}
        assert down_of(kref).reason == "killed"
    finally:
        for fd in fillers:
            os.close(fd)


def test_demonitor_info_of_an_active_monitor_is_true(node):
    """erlang:demonitor(Ref, [info]): true when the monitor was found and
    removed; no DOWN of it arrives afterwards."""
    pid = otp.spawn(wait_forever)
    ref = otp.monitor(pid)
    assert otp.demonitor(ref, info=True) is True
    assert otp.demonitor(ref, info=True) is False  # removed already: not found
    later = otp.monitor(pid)
    otp.exit(pid, "kill")
    assert down_of(later).reason == "killed"
    assert nothing_matching(lambda m: isinstance(m, otp.DOWN) and m.ref == ref)


def test_demonitor_info_after_the_down_is_false(node):
    """erlang:demonitor(Ref, [info]): false when the monitor was not found,
    its DOWN already queued (which stays, without flush) or taken."""
    pid = otp.spawn(wait_forever)  # alive while monitored: no 'noproc' DOWN, each settled on its own
    ref = otp.monitor(pid)
    other = otp.monitor(pid)
    otp.exit(pid, "kill")
    down_of(other)  # both DOWNs come from the same death: ref's is queued too
    assert otp.demonitor(ref, info=True) is False
    assert down_of(ref, timeout=0).ref == ref
    assert otp.demonitor(ref, info=True) is False


def test_demonitor_info_of_an_unknown_ref_is_false(node):
    """erlang:demonitor(Ref, [info]) of a reference that never was a monitor:
    false; with flush too: true (no flush was needed)."""
    ref = otp.make_ref()
    assert otp.demonitor(ref, info=True) is False
    assert otp.demonitor(ref, flush=True, info=True) is True
    assert otp.demonitor(ref) is True  # without info: always true


def test_demonitor_flush_info_is_false_when_a_down_was_dropped(node):
    """erlang:demonitor(Ref, [flush, info]): false if a DOWN had to be
    flushed from the queue, true if the monitor was removed before firing."""
    pid = otp.spawn(lambda: None)
    ref = otp.monitor(pid)
    other = otp.monitor(pid)
    down_of(other)
    assert otp.demonitor(ref, flush=True, info=True) is False
    assert nothing_matching(lambda m: isinstance(m, otp.DOWN) and m.ref == ref, timeout=0)
    live = otp.spawn(wait_forever)
    mon = otp.monitor(live)
    assert otp.demonitor(mon, flush=True, info=True) is True
    otp.exit(live, "kill")
