"""Links and exit signals: a link is two-way and atomic with spawn_link; an
exit signal kills unless trapped or 'normal', and 'kill' cannot be trapped."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from helpers import down_of, exit_of, nothing_matching, recv_tagged, wait_dead
from procs import busy_linked, exit_with, link_and_report, link_to, stuck_in_c, wait_forever

import otp


def test_sigkill_of_linked_process_gives_trapping_linker_exit_killed(node):
    otp.trap_exit(True)
    victim = otp.spawn_link(wait_forever)
    os.kill(victim.ospid, signal.SIGKILL)
    assert exit_of(victim) == otp.EXIT(victim, "killed")


def test_sigkill_of_linked_process_kills_non_trapping_linker(node):
    linker, ref = otp.spawn_monitor(link_and_report, otp.self(), False)
    _, victim = recv_tagged("victim")
    os.kill(victim.ospid, signal.SIGKILL)
    assert down_of(ref).reason == "killed"


def test_normal_exit_leaves_non_trapping_linker_alive(node):
    linker, ref = otp.spawn_monitor(link_and_report, otp.self(), False, lambda: None)
    recv_tagged("victim")
    otp.send(linker, "still here?")
    assert recv_tagged("got") == ("got", linker, "still here?")
    assert otp.is_alive(linker)
    otp.exit(linker, "kill")


def test_normal_exit_is_delivered_to_trapping_linker(node):
    otp.trap_exit(True)
    pid = otp.spawn_link(lambda: None)
    assert exit_of(pid).reason == "normal"


@pytest.mark.parametrize("reason", ["shutdown", ("shutdown", "bye"), "kill", {"custom": 1}])
def test_abnormal_exit_propagates_with_the_same_reason(node, reason):
    # A link-borne 'kill' is not converted to 'killed': only exit(pid, 'kill') is.
    linker, ref = otp.spawn_monitor(link_and_report, otp.self(), False, lambda: exit_with(reason))
    assert down_of(ref).reason == reason


def test_crash_propagates_as_crash_reason(node):
    otp.trap_exit(True)

    def bad():
        raise ZeroDivisionError("x")

    pid = otp.spawn_link(bad)
    reason = exit_of(pid).reason
    assert isinstance(reason, otp.Crash) and reason.type_name == "ZeroDivisionError"


def test_exit_kill_cannot_be_trapped(node):
    pid, ref = otp.spawn_monitor(link_to, otp.self(), otp.self(), True)
    recv_tagged("linked")
    otp.trap_exit(True)
    otp.exit(pid, "kill")
    assert down_of(ref).reason == "killed"
    assert exit_of(pid).reason == "killed"


def test_exit_signal_to_trapping_process_becomes_message(node):
    relay_pid, _ = otp.spawn_monitor(link_to, otp.self(), otp.self(), True)
    recv_tagged("linked")
    otp.exit(relay_pid, "shutdown")
    assert recv_tagged("got") == ("got", relay_pid, otp.EXIT(otp.self(), "shutdown"))
    otp.exit(relay_pid, "normal")
    assert recv_tagged("got") == ("got", relay_pid, otp.EXIT(otp.self(), "normal"))
    otp.trap_exit(True)
    otp.exit(relay_pid, "kill")


def test_exit_normal_to_non_trapping_process_is_ignored(node):
    pid, ref = otp.spawn_monitor(wait_forever)
    otp.exit(pid, "normal")
    otp.send(pid, "wake")  # it handles this only if still alive
    assert down_of(ref).reason == "normal"  # ended by the message, not the signal


def test_exit_shutdown_kills_non_trapping_process(node):
    pid, ref = otp.spawn_monitor(wait_forever)
    otp.exit(pid, "shutdown")
    assert down_of(ref).reason == "shutdown"


def test_exit_self_normal_kills_caller_with_normal(node):
    def me_out():
        otp.exit(otp.self(), "normal")
        otp.send(otp.self(), "never")

    pid, ref = otp.spawn_monitor(me_out)
    assert down_of(ref).reason == "normal"


def test_exit_self_while_trapping_is_a_message(node):
    parent = otp.self()

    def trapper():
        otp.trap_exit(True)
        otp.exit(otp.self(), "shutdown")
        otp.send(parent, otp.receive(1))

    otp.spawn(trapper)
    msg = otp.receive(5)
    assert isinstance(msg, otp.EXIT) and msg.reason == "shutdown"


def test_link_is_bidirectional(node):
    otp.trap_exit(True)
    pid, ref = otp.spawn_monitor(link_to, otp.self(), otp.self(), False)
    recv_tagged("linked")
    otp.exit(otp.self(), "oops")  # trapping: a message to ourselves, nobody dies
    assert exit_of(otp.self()).reason == "oops"
    # Now kill the linker through the link from our side: exit it, see EXIT.
    otp.exit(pid, "boom")
    assert down_of(ref).reason == "boom"
    assert exit_of(pid).reason == "boom"


def test_link_to_dead_process(node):
    pid = otp.spawn(lambda: None)
    wait_dead(pid)
    with pytest.raises(otp.NoProc):
        otp.link(pid)
    otp.trap_exit(True)
    otp.link(pid)
    assert exit_of(pid).reason == "noproc"


def test_link_is_idempotent_and_unlink_removes_it(node):
    otp.trap_exit(True)
    pid = otp.spawn(wait_forever)
    otp.link(pid)
    otp.link(pid)
    otp.unlink(pid)
    ref = otp.monitor(pid)
    otp.exit(pid, "kill")
    assert down_of(ref).reason == "killed"
    assert nothing_matching(lambda m: isinstance(m, otp.EXIT) and m.pid == pid)


def test_unlink_from_the_other_side_before_crash(node):
    parent = otp.self()

    def unlinker():
        otp.link(parent)
        otp.unlink(parent)
        raise RuntimeError("after unlink")

    otp.trap_exit(True)
    pid, ref = otp.spawn_monitor(unlinker)
    down_of(ref)
    assert nothing_matching(lambda m: isinstance(m, otp.EXIT) and m.pid == pid)


def test_busy_process_dies_promptly_when_its_link_dies(node):
    target = otp.spawn(wait_forever)
    busy, ref = otp.spawn_monitor(busy_linked, otp.self(), target)
    recv_tagged("busy")
    otp.exit(target, "kill")
    assert down_of(ref, timeout=5).reason == "killed"


def test_busy_process_dies_on_exit_signal(node):
    target = otp.spawn(wait_forever)
    busy, ref = otp.spawn_monitor(busy_linked, otp.self(), target)
    recv_tagged("busy")
    otp.exit(busy, ("shutdown", "now"))
    assert down_of(ref, timeout=5).reason == ("shutdown", "now")


def test_process_that_cannot_unwind_is_ended_by_its_signal_thread(node):
    target = otp.spawn(wait_forever)
    stuck, ref = otp.spawn_monitor(stuck_in_c, otp.self(), target)
    recv_tagged("stuck")
    otp.exit(target, "kill")
    # The exit reason still travels, after the grace period.
    assert down_of(ref, timeout=10).reason == "killed"


def test_spawn_link_is_atomic_with_immediate_crash(node):
    otp.trap_exit(True)
    pids = [otp.spawn_link(exit_with, ("reason", i)) for i in range(10)]
    for i, pid in enumerate(pids):
        assert exit_of(pid).reason == ("reason", i)


def test_trap_exit_returns_previous(node):
    assert otp.trap_exit(True) is False
    assert otp.trap_exit(False) is True
    assert otp.trap_exit(False) is False


def test_root_process_is_killed_by_link_when_not_trapping():
    with pytest.raises(otp.ProcessExit) as info:
        with otp.Node(start_method="fork"):
            otp.spawn_link(exit_with, "fatal")
            otp.receive(10)
    assert info.value.reason == "fatal"


def test_late_interrupt_does_not_raise_again_after_the_root_took_its_exit():
    """The wake frame can beat SIGUSR2 to the main thread: the root raises
    ProcessExit from its wait, and the interrupt lands later, in whatever it
    runs next.  That interrupt has nothing left to do; a wait still raises."""
    steps = []
    with pytest.raises(otp.ProcessExit) as info:
        with otp.Node(start_method="fork"):
            otp.spawn_link(exit_with, "fatal")
            with pytest.raises(otp.ProcessExit):
                otp.receive(10)
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)  # the late interrupt
            for _ in range(1000):  # bytecode boundaries where its handler runs
                pass
            steps.append("ran on")
            otp.receive(0)  # a wait raises again: the process is dying
    assert info.value.reason == "fatal"
    assert steps == ["ran on"]
