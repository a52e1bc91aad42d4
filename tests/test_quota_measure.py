"""measure(): RSS and CPU of one OS process, and a typed error once it is gone (no sleeps)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from mabeam.quotas import ProcessGone, ProcessReplaced, Usage, measure

CHILD = "import sys; block = bytearray(64 * 1000 * 1000); print('ready', flush=True); sys.stdin.read()"


def busy(seconds_of_cpu: float) -> None:
    start = os.times()
    while (os.times().user + os.times().system) - (start.user + start.system) < seconds_of_cpu:
        sum(range(10_000))


def test_measures_this_process_and_cpu_between_two_samples():
    first = measure(os.getpid())
    assert isinstance(first, Usage)
    assert first.ospid == os.getpid() and first.rss > 1_000_000 and first.cpu_percent == 0.0
    busy(0.05)
    second = measure(os.getpid(), first)
    assert second.cpu_seconds >= first.cpu_seconds + 0.04
    assert second.at > first.at
    assert 0.0 < second.cpu_percent


@pytest.fixture
def child():
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()


def test_measures_a_child_and_sees_its_own_memory(child):
    usage = measure(child.pid)
    assert usage.ospid == child.pid
    assert usage.rss >= 64 * 1000 * 1000  # the child's block, not ours
    again = measure(child.pid, usage)
    assert again.cpu_percent >= 0.0


def test_a_killed_process_is_gone_before_and_after_reaping(child):
    usage = measure(child.pid)
    child.kill()
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped: a zombie
    with pytest.raises(ProcessGone):
        measure(child.pid)
    child.wait()
    with pytest.raises(ProcessGone) as info:
        measure(child.pid, usage)
    assert info.value.ospid == child.pid


def test_a_reused_pid_is_not_mistaken_for_the_old_process():
    me = measure(os.getpid())
    impostor = dataclasses.replace(me, created=me.created - 1000)
    with pytest.raises(ProcessReplaced):
        measure(os.getpid(), impostor)
    assert issubclass(ProcessReplaced, ProcessGone)
    with pytest.raises(ValueError):
        measure(os.getpid(), dataclasses.replace(me, ospid=me.ospid + 1))
