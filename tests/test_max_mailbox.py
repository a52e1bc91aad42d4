"""Bounded mailboxes: ``max_mailbox=N`` on spawn (Erlang's max_heap_size,
for queues).  A process whose queue of received, not yet taken messages
exceeds N exits with ``('max_mailbox', N)``; without the option mailboxes
stay unbounded."""

from __future__ import annotations

import logging

import pytest
from helpers import down_of, recv_tagged

import otp
from otp import _process

LIMIT = 100
FLOOD = 1000


def spawn_bounded(fn, *args, limit=LIMIT):
    """``(pid, ref)`` of ``fn(*args)`` spawned with ``max_mailbox=limit``, monitored."""
    return _process.current().spawn(fn, args, {}, monitor=True, max_mailbox=limit)


class _Forward(logging.Handler):
    """Sends the process's log records to ``dest``: a message sent before
    the process dies arrives before its DOWN."""

    def __init__(self, dest: otp.Pid) -> None:
        super().__init__(logging.WARNING)
        self.dest = dest

    def emit(self, record: logging.LogRecord) -> None:
        otp.send(self.dest, ("log", record.levelname, record.getMessage()))


def never_matching(parent: otp.Pid) -> None:
    """Takes every frame in, but receives only a message nobody sends."""
    logging.getLogger("otp").addHandler(_Forward(parent))
    otp.send(parent, ("ready", otp.self()))
    otp.receive(match=lambda m: m == "never sent")


def counter(parent: otp.Pid) -> None:
    """Receives everything; answers ('sync', to) with the count so far."""
    n = 0
    otp.send(parent, ("ready", otp.self()))
    while True:
        msg = otp.receive()
        if msg == "stop":
            return
        if type(msg) is tuple and msg[0] == "sync":
            otp.send(msg[1], ("count", n))
        else:
            n += 1


def caller(parent: otp.Pid) -> None:
    """Blocked in a call whose answer never comes, while messages pile up."""
    otp.call(parent, "hold on", timeout=None)


def self_sender(parent: otp.Pid, n: int) -> None:
    for i in range(n):
        otp.send(otp.self(), i)
    otp.send(parent, ("sent", n))
    otp.receive(match=lambda m: m == "never sent")


def test_flooded_process_that_never_receives_exits_with_max_mailbox(node):
    pid, ref = spawn_bounded(never_matching, otp.self())
    assert recv_tagged("ready") == ("ready", pid)
    for i in range(FLOOD):
        otp.send(pid, i)
    assert down_of(ref).reason == ("max_mailbox", LIMIT)
    _, level, text = recv_tagged("log")  # sent before the DOWN, so already here
    assert level == "ERROR"
    assert repr(pid) in text and "max_mailbox" in text and str(LIMIT) in text


def test_bounded_process_that_receives_keeps_running(node):
    me = otp.self()
    pid, ref = spawn_bounded(counter, me)
    assert recv_tagged("ready") == ("ready", pid)
    # Never more than half the bound outstanding, ten times the bound in all.
    for rounds in range(1, 2 * FLOOD // LIMIT + 1):
        for i in range(LIMIT // 2):
            otp.send(pid, i)
        otp.send(pid, ("sync", me))
        assert recv_tagged("count") == ("count", rounds * LIMIT // 2)
    assert otp.is_alive(pid)
    otp.send(pid, "stop")
    assert down_of(ref).reason == "normal"


def test_messages_taken_in_during_a_call_count(node):
    pid, ref = spawn_bounded(caller, otp.self())
    recv_tagged("$gen_call")  # the call is out: pid waits in it from now on
    for i in range(FLOOD):
        otp.send(pid, i)
    assert down_of(ref).reason == ("max_mailbox", LIMIT)


def test_messages_to_self_count(node):
    spawn_bounded(self_sender, otp.self(), 10, limit=10)
    assert recv_tagged("sent") == ("sent", 10)  # ten fit
    pid, ref = spawn_bounded(self_sender, otp.self(), 11, limit=10)
    assert down_of(ref).reason == ("max_mailbox", 10)


def test_unbounded_by_default(node):
    pid, ref = _process.current().spawn(never_matching, (otp.self(),), {}, monitor=True)
    assert recv_tagged("ready") == ("ready", pid)
    for i in range(FLOOD):
        otp.send(pid, i)
    otp.send(pid, "never sent")
    assert down_of(ref).reason == "normal"


@pytest.mark.parametrize(
    ("bad", "error"), [(0, ValueError), (-1, ValueError), (True, TypeError), (1.5, TypeError), ("10", TypeError)]
)
def test_bad_max_mailbox_raises_before_anything_is_spawned(node, bad, error):
    with pytest.raises(error, match="max_mailbox must be"):
        _process.current().spawn(counter, (otp.self(),), {}, max_mailbox=bad)
    with pytest.raises(otp.Timeout):
        otp.receive(0)  # no process started to say 'ready'
