"""Timers (otp._timers): erlang:send_after/3, erlang:start_timer/3,
erlang:cancel_timer/1, erlang:read_timer/1 and timer:send_interval/3.

Every wait is on a message or a reply.  "A message never arrives" is shown
by a later timer's message arriving first: one timer server sends both, to
the same destination, in deadline order, so the earlier one would have
come before it."""

from __future__ import annotations

import math
import os
import random
import threading
import time

import psutil
import pytest
from helpers import down_of, recv

import otp
from otp._timers import (
    TIMER_SERVER,
    TimeoutMsg,
    TimerRef,
    TimerServer,
    cancel_timer,
    read_timer,
    send_after,
    send_interval,
    start_timer,
)

BAD = [(math.nan, ValueError), (-1, ValueError), (-math.inf, ValueError), (True, TypeError), ("5", TypeError)]


def _ensure_timer_server() -> otp.Pid:
    """The node's timer server (the kernel supervisor's child), started here
    on a node whose kernel does not start one."""
    pid = otp.whereis(TIMER_SERVER)
    if pid is None:
        pid = TimerServer.start_link(name=TIMER_SERVER)
    assert pid is not None
    return pid


@pytest.fixture
def timers(node):
    return _ensure_timer_server()


def _armed() -> int:
    return otp.ask(TIMER_SERVER, "armed")


def forward_one(parent: otp.Pid) -> None:
    """Receive one message and pass it to ``parent``."""
    otp.send(parent, ("forwarded", otp.receive()))


def named_forwarder(name: str, parent: otp.Pid) -> None:
    otp.register(name)
    otp.send(parent, "registered")
    otp.send(parent, ("forwarded", otp.receive()))


def wait_forever() -> None:
    otp.receive()


def until_false(read, tref: TimerRef, tries: int = 1000) -> bool:
    """True once ``read(tref)`` answers False: each try is a call to the
    timer server, which takes in the destination's DOWN in between."""
    return any(read(tref) is False for _ in range(tries))


def arm_for(parent: otp.Pid) -> None:
    send_after(0.05, parent, "from the dead")


# ------------------------------------------------------------- send_after


def test_send_after_delivers_after_at_least_the_delay(timers):
    """erlang:send_after/3: Msg is sent to Dest after Time."""
    me = otp.self()
    t0 = time.monotonic()
    tref = send_after(0.05, me, "hello")
    assert type(tref) is TimerRef
    assert recv(lambda m: m == "hello") == "hello"
    assert time.monotonic() - t0 >= 0.05


def test_start_timer_message_carries_the_ref(timers):
    """erlang:start_timer/3: the message is {timeout, TimerRef, Msg}."""
    me = otp.self()
    tref = start_timer(0.02, me, {"payload": 1})
    msg = recv(lambda m: isinstance(m, TimeoutMsg))
    assert msg == TimeoutMsg(tref, {"payload": 1})
    assert msg.ref == tref and msg.msg == {"payload": 1}


def test_zero_delay_fires_at_once(timers):
    """erlang:send_after(0, Dest, Msg): sent at once; the timer has expired
    (cancel_timer and read_timer are false)."""
    me = otp.self()
    tref = send_after(0, me, "now")
    assert otp.receive(0) == "now"
    assert cancel_timer(tref) is False and read_timer(tref) is False
    tref = start_timer(0.0, me, "now")
    assert otp.receive(0) == TimeoutMsg(tref, "now")


# ------------------------------------------------------------- cancel / read


def test_cancel_before_firing_returns_time_left_and_nothing_arrives(timers):
    """erlang:cancel_timer/1: returns the time left; the message is never
    delivered (a later timer's message arrives, the cancelled one never)."""
    me = otp.self()
    tref = send_after(0.05, me, "cancelled")
    send_after(0.1, me, "later")
    left = cancel_timer(tref)
    assert isinstance(left, float) and 0 < left <= 0.05
    assert recv(lambda m: m in ("cancelled", "later")) == "later"
    assert cancel_timer(tref) is False  # cancelled already


def test_cancel_after_firing_returns_false(timers):
    """erlang:cancel_timer/1: false when the timer has expired."""
    me = otp.self()
    tref = start_timer(0.01, me, "fired")
    assert recv(lambda m: isinstance(m, TimeoutMsg)).ref == tref
    assert cancel_timer(tref) is False


def test_read_timer(timers):
    """erlang:read_timer/1: the time left, false once expired or cancelled."""
    me = otp.self()
    tref = send_after(30, me, "far")
    left = read_timer(tref)
    assert isinstance(left, float) and 29 < left <= 30
    again = read_timer(tref)
    assert again is not False and again <= left
    assert cancel_timer(tref) is not False
    assert read_timer(tref) is False
    short = send_after(0.01, me, "short")
    assert recv(lambda m: m == "short")
    assert read_timer(short) is False


def test_cancel_and_read_refuse_what_is_not_a_timer_ref(timers):
    """erlang:cancel_timer/1 and read_timer/1: badarg for a non-reference."""
    for bad in (otp.make_ref(), "tref", None):
        with pytest.raises(TypeError):
            cancel_timer(bad)
        with pytest.raises(TypeError):
            read_timer(bad)


# ------------------------------------------------------------- intervals


def test_send_interval_repeats_until_cancelled(timers):
    """timer:send_interval/3 and timer:cancel/1: Msg every Time until cancelled."""
    me = otp.self()
    tref = send_interval(0.01, me, "tick")
    for _ in range(5):
        assert recv(lambda m: m == "tick") == "tick"
    assert isinstance(cancel_timer(tref), float)
    send_after(0.05, me, "after")
    # Ticks sent before the cancel answered may be queued; none comes after.
    while (m := recv(lambda m: m in ("tick", "after"))) == "tick":
        pass
    assert m == "after"
    assert read_timer(tref) is False


def test_send_interval_refuses_zero(timers):
    """timer:send_interval/3 with Time 0 would send flat out: refused here."""
    with pytest.raises(ValueError):
        send_interval(0, otp.self(), "tick")


def test_send_interval_stops_when_its_destination_exits(timers):
    """timer:send_interval/3: the interval timer goes with the process it
    sends to."""
    pid = otp.spawn(wait_forever)
    tref = send_interval(0.01, pid, "tick")
    otp.exit(pid, "kill")
    assert until_false(read_timer, tref)


# ------------------------------------------------------------- destinations


def test_destination_by_name_resolved_when_the_timer_fires(timers):
    """erlang:send_after/3 with a registered name: looked up at expiry, so
    the process holding the name then gets the message."""
    me = otp.self()
    first = otp.spawn(named_forwarder, "timers-name", me)
    recv(lambda m: m == "registered")
    send_after(1.0, "timers-name", "by name")
    ref = otp.monitor(first)
    otp.exit(first, "kill")
    down_of(ref)
    second = otp.spawn(named_forwarder, "timers-name", me)
    recv(lambda m: m == "registered")
    assert recv(lambda m: isinstance(m, tuple) and m[0] == "forwarded") == ("forwarded", "by name")
    assert otp.whereis("timers-name") in (second, None)


def test_name_nobody_holds_at_expiry_sends_nothing(timers):
    """erlang:send_after/3: nothing happens for a name unregistered at expiry."""
    me = otp.self()
    tref = send_after(0.01, "timers-nobody", "lost")
    send_after(0.05, me, "after")
    assert recv(lambda m: m == "after") == "after"
    assert read_timer(tref) is False


def test_timer_to_a_dead_destination_is_dropped(timers):
    """erlang:send_after/3: the timer is cancelled when the destination
    process exits (or is not alive)."""
    pid = otp.spawn(wait_forever)
    before = _armed()
    tref = send_after(30, pid, "for the dead")
    ref = otp.monitor(pid)
    otp.exit(pid, "kill")
    down_of(ref)
    assert until_false(read_timer, tref)
    assert _armed() == before
    late = send_after(30, pid, "already dead")
    assert until_false(read_timer, late)


def test_timers_are_not_linked_to_their_creator(timers):
    """erlang:send_after/3: the timer outlives the process that armed it."""
    pid, ref = otp.spawn_monitor(arm_for, otp.self())
    down_of(ref)
    assert recv(lambda m: m == "from the dead") == "from the dead"


# ------------------------------------------------------------- timeouts


@pytest.mark.parametrize("bad,error", BAD)
def test_bad_delays_raise_in_the_caller(timers, bad, error):
    """erlang:send_after/3 badarg: Time must be a non-negative number
    (checked as every timeout of the kernel)."""
    me = otp.self()
    before = _armed()
    for arm in (send_after, start_timer, send_interval):
        with pytest.raises(error):
            arm(bad, me, "x")
    assert _armed() == before


def test_infinite_delay_and_bad_destination_raise(timers):
    """erlang:send_after/3 badarg: infinity is no time; Dest is a pid or a name."""
    for forever in (None, math.inf):
        with pytest.raises(ValueError):
            send_after(forever, otp.self(), "x")
    for bad in (1.5, True, object()):
        with pytest.raises(TypeError):
            send_after(1, bad, "x")


def test_an_unpicklable_message_raises_in_the_caller(timers):
    """erlang:send_after/3 copies Msg: a message that cannot be copied fails
    the call, not the timer server."""
    with pytest.raises(otp.EncodeError):
        send_after(1, otp.self(), threading.Lock())
    assert otp.is_alive(timers)


# ------------------------------------------------------------- order, load


def test_a_thousand_timers_fire_in_deadline_order(timers):
    """erlang:send_after/3: each timer fires at its deadline, so messages
    to one destination arrive in deadline order."""
    me = otp.self()
    rng = random.Random(11)
    bounds = []
    for i in range(1000):
        delay = rng.uniform(0.2, 0.6)
        before = time.monotonic()
        send_after(delay, me, ("t", i))
        bounds.append((before + delay, time.monotonic() + delay))  # the deadline lies within
    got = []
    for _ in range(1000):
        m = recv(lambda m: isinstance(m, tuple) and m[0] == "t")
        got.append((m[1], time.monotonic()))
    assert sorted(i for i, _ in got) == list(range(1000))
    for (i, received), (j, _) in zip(got, got[1:]):
        assert received >= bounds[i][0], "a timer fired before its delay"
        # i came first: its deadline cannot be later than all of j's possible ones
        assert bounds[i][0] <= bounds[j][1]


def test_the_server_survives_garbage(timers):
    """gen_server robustness: casts and messages the timer server does not
    know are logged, and the timers it holds still fire."""
    me = otp.self()
    send_after(0.05, me, "still here")
    otp.cast(timers, ("$timer_arm", "garbage"))
    otp.cast(timers, "garbage")
    otp.send(timers, "garbage")
    assert recv(lambda m: m == "still here") == "still here"
    assert otp.is_alive(timers)


def test_timer_server_restarts_empty_under_its_supervisor(node):
    """The timer server is supervisable (child_spec with name=); killed, it
    is restarted under its name, the timers it held read as false, and new
    timers work (Erlang's timers are never lost: this is the difference)."""
    if otp.whereis(TIMER_SERVER) is None:
        sup = otp.Supervisor.start_link([TimerServer.child_spec(None, "timer_server", name=TIMER_SERVER)])
    else:
        sup = node.kernel
    first = otp.whereis(TIMER_SERVER)
    tref = send_after(30, otp.self(), "lost")
    ref = otp.monitor(first)
    otp.exit(first, "kill")
    down_of(ref)
    assert read_timer(tref) is False and cancel_timer(tref) is False
    second = None
    for _ in range(1000):  # each try is a round trip to the supervisor, which restarts it first
        otp.supervisor.which_children(sup)
        second = otp.whereis(TIMER_SERVER)
        if second is not None and second != first:
            break
    assert second is not None and second != first
    send_after(0.01, otp.self(), "new server")
    assert recv(lambda m: m == "new server") == "new server"


# ------------------------------------------------------------- start methods


@pytest.mark.parametrize("method", ["forkserver", "fork"])
def test_timers_under_both_start_methods(method):
    """erlang:send_after/3, start_timer/3, cancel_timer/1 under each start
    method, from the root process and from a spawned one; nothing outlives
    the node."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with otp.Node(start_method=method) as n:
        node_dir = n.info.dir
        _ensure_timer_server()
        me = otp.self()
        tref = start_timer(0.01, me, "root")
        assert recv(lambda m: isinstance(m, TimeoutMsg)) == TimeoutMsg(tref, "root")
        child = otp.spawn(forward_one, me)
        send_after(0.01, child, "child")
        assert recv(lambda m: isinstance(m, tuple) and m[0] == "forwarded") == ("forwarded", "child")
        cancelled = send_after(0.05, me, "cancelled")
        assert cancel_timer(cancelled) is not False
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert not [p for p in left if p.status() != psutil.STATUS_ZOMBIE], left
    assert not os.path.exists(node_dir)
