"""``max_mailbox`` from the public starts (``spawn_opt``, ``GenServer.start``,
``GenServer.child_spec``) down to ``Process.spawn``: checked in the caller,
and a process whose queue exceeds the bound exits with
``('max_mailbox', n)``.

The exits need the bound in ``Process.spawn`` (otp/_lifecycle.py); the
checks in the caller do not."""

from __future__ import annotations

import pytest
from helpers import down_of

import otp
from otp import _process
from otp import supervisor as sup_api

BAD = [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError), ("50", TypeError)]
FLOOD = 500


class Stuck(otp.GenServer):
    """On 'block', waits in a selective receive for a message that never
    comes, while everything else piles up in its mailbox."""

    def handle_cast(self, request, state):
        return otp.NoReply(state)

    def handle_info(self, msg, state):
        if msg == "block":
            otp.receive(None, lambda m: m == "never sent")
        return otp.NoReply(state)


def stuck() -> None:
    otp.receive(None, lambda m: m == "never sent")


def wait_forever() -> None:
    otp.receive()


def spawned_count() -> int:
    return len(_process.current().spawned)


@pytest.mark.parametrize("bad,error", BAD)
def test_bad_bound_raises_in_the_caller_before_spawning(node, bad, error):
    before = spawned_count()
    with pytest.raises(error, match="must be"):
        otp.spawn_opt(wait_forever, max_mailbox=bad)
    with pytest.raises(error, match="must be"):
        Stuck.start(max_mailbox=bad)
    with pytest.raises(error, match="must be"):
        Stuck.start_link(max_mailbox=bad)
    with pytest.raises(error, match="must be"):
        Stuck.child_spec(max_mailbox=bad)
    assert spawned_count() == before


def test_no_bound_is_the_default(node):
    pid, ref = otp.spawn_opt(wait_forever, monitor=True, max_mailbox=None)
    server = Stuck.start(max_mailbox=None)
    assert otp.is_alive(pid) and otp.is_alive(server)
    otp.exit(pid, "kill")
    assert down_of(ref).reason == "killed"
    otp.stop(server)


def test_spawn_opt_bound(node):
    pid, ref = otp.spawn_opt(stuck, monitor=True, max_mailbox=50)
    for i in range(FLOOD):
        otp.send(pid, i)
    assert down_of(ref).reason == ("max_mailbox", 50)


def test_gen_server_bound(node):
    server = Stuck.start(max_mailbox=50)
    ref = otp.monitor(server)
    otp.send(server, "block")
    for i in range(FLOOD):
        otp.cast(server, i)
    assert down_of(ref).reason == ("max_mailbox", 50)


def test_child_spec_bound(node):
    otp.trap_exit(True)
    sup = otp.Supervisor.start_link([Stuck.child_spec(id="stuck", restart="temporary", max_mailbox=50)])
    server = sup_api.which_children(sup)[0].pid
    ref = otp.monitor(server)
    otp.send(server, "block")
    for i in range(FLOOD):
        otp.cast(server, i)
    assert down_of(ref).reason == ("max_mailbox", 50)
