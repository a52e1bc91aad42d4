"""Calls: the internal monitors calls keep on their callees stay bounded,
multi_call counts answers that came before its deadline, and a process
stops connecting to a peer it knows is dead.  Each under both start
methods."""

from __future__ import annotations

import os
import types
from typing import cast

import pytest
import zmq

import otp
from otp import _links, _peers, _process, _timers
from otp._codec import WAKE_FRAME


@pytest.fixture
def node(start_method, node):
    return node


def _tagged(tag, timeout: float = 60.0):
    return otp.receive(timeout, lambda m: type(m) is tuple and len(m) > 0 and m[0] == tag)


def _pidfds() -> int:
    """Descriptors of this process that watch processes (call watches,
    links, monitors)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[pidfd]"
        except OSError:  # the listing's own descriptor, closed since
            pass
    return count


def answer_calls(crash_on: object = None) -> None:
    """A server without a behaviour: answers every call with its request;
    exits with ``'boom'`` without answering a call for ``crash_on``."""
    while True:
        m = otp.receive()
        if type(m) is tuple and m[0] == "$gen_call":
            (caller, ref), request = m[1], m[2]
            if request == crash_on:
                raise otp.ProcessExit("boom")
            _process.current().send_reply(caller, ref, request)


# ------------------------------------------------------- call watches


def _call_each_once(servers: list, cap: int, parent: otp.Pid) -> None:
    try:
        otp.send(parent, ("called", *_count_calls(servers, cap)))
    except Exception as exc:
        otp.send(parent, ("called", repr(exc), None, None, None))


def _count_calls(servers: list, cap: int) -> tuple:
    proc = _process.current()
    proc._call_watch_cap = proc._call_watch_at = cap
    proc._peer_cap = cap  # the sockets' own cap (see test_descriptors)
    before = _pidfds()
    most_watches = 0
    for server in servers:
        assert otp.call(server, "ping", timeout=60) == "ping"
        most_watches = max(most_watches, len(proc.sig.call_watches))
    grown = _pidfds() - before
    # The first server's watch was released long ago: it is set up again.
    first = servers[0]
    otp.exit(first, "kill")
    otp.monitor(first)
    otp.receive(60, lambda m: isinstance(m, otp.DOWN))
    try:
        otp.call(first, "ping", timeout=60)
        dead: object = "answered"
    except otp.NoProc:
        dead = "noproc"
    # The second one's too; it dies while it handles the call.
    try:
        otp.call(servers[1], "crash", timeout=60)
        crashed: object = "answered"
    except otp.CalleeExit as exc:
        crashed = exc.reason
    return most_watches, grown, dead, crashed


def test_call_watches_are_capped(node):
    """A process calling many distinct servers keeps watches (a pidfd each)
    on at most a cap of them, and a call to a server whose
    watch was released still fails at once when the server dies."""
    me = otp.self()
    cap, count = 8, 48
    servers = [otp.spawn(answer_calls, "crash") for _ in range(count)]
    otp.spawn(_call_each_once, servers, cap, me)
    _, most_watches, grown, dead, crashed = _tagged("called")
    assert most_watches <= cap
    # Without the cap, one pidfd per server called.  (Its sockets are
    # bounded by their own cap; the connections the servers' answers came
    # on close when the servers find them idle.)
    assert grown <= cap, grown
    assert dead == "noproc"
    assert crashed == "boom"


def _call_then_idle(servers: list, parent: otp.Pid) -> None:
    proc = _process.current()
    for server in servers:
        otp.call(server, "ping", timeout=60)
    watched = len(proc.sig.call_watches)
    # The next look comes within the default period, then every 50 ms.
    _peers.PEER_IDLE_S = 0.05
    try:
        otp.receive(3.0, lambda m: False)  # idle
    except otp.Timeout:
        pass
    left = len(proc.sig.call_watches)
    # Each server was told: it no longer counts this process among its monitors.
    told = [proc.pid not in cast(dict, otp.process_info(s, ["monitored_by"]))["monitored_by"] for s in servers]
    again = otp.call(servers[0], "again", timeout=60)
    otp.send(parent, ("idle", watched, left, told, again, len(proc.sig.call_watches)))


def test_call_watches_of_callees_left_idle_are_released(node):
    me = otp.self()
    servers = [otp.spawn(answer_calls) for _ in range(4)]
    otp.spawn(_call_then_idle, servers, me)
    _, watched, left, told, again, rewatched = _tagged("idle")
    assert watched == len(servers)
    assert left == 0
    assert told == [True] * len(servers)
    assert again == "again" and rewatched == 1


def _watch_registry_and_timers_then_idle(servers: list, parent: otp.Pid) -> None:
    proc = _process.current()
    otp.whereis("nobody", cached=False)  # the registry client watches the registry
    otp.cancel_timer(otp.send_after(3600, otp.self(), "never"))  # the timer cache watches the timer server
    for server in servers:
        otp.call(server, "ping", timeout=60)
    _peers.PEER_IDLE_S = 0.05
    try:
        otp.receive(3.0, lambda m: False)  # idle
    except otp.Timeout:
        pass
    registry = otp.registry._names._node_client().registry_pid
    timer_server = otp.whereis(_timers.TIMER_SERVER)
    otp.send(parent, ("watched", set(proc.sig.call_watches.values()), {registry, timer_server}))


def test_watches_the_registry_and_timers_depend_on_stay_while_idle(node):
    """The registry client and the timer server's cache learn of their
    server's death through its call watch and reach it by other means
    (their own socket, casts): an idle look must not take that watch away,
    or a request would go to a registry that died unseen."""
    me = otp.self()
    servers = [otp.spawn(answer_calls) for _ in range(2)]
    otp.spawn(_watch_registry_and_timers_then_idle, servers, me)
    _, watched, depended_on = _tagged("watched")
    assert None not in depended_on
    assert watched == depended_on


# ------------------------------------------------- multi_call's deadline


def _late_intake(servers: list, parent: otp.Pid) -> None:
    """A call, then a multi_call, whose wait takes every answer off the
    mailbox socket into the frames set aside for intake (as process_info's
    reader does), then lets the deadline pass before anything is taken in."""
    proc = _process.current()
    offset = [0.0]
    real = _links.time.monotonic
    _links.time = types.SimpleNamespace(monotonic=lambda: real() + offset[0])  # type: ignore[assignment]

    def pump(timeout: float | None) -> None:
        frames = proc._intercepted
        with proc._socket_lock:
            proc.inbox.setsockopt(zmq.RCVTIMEO, 60_000)
            proc._rcvtimeo = 60_000
            while sum(1 for f in frames if f != WAKE_FRAME) < expected[0]:
                frames.append(proc.inbox.recv())
        offset[0] += 3600.0  # the deadline is past; the answers are queued

    proc.pump = pump  # type: ignore[method-assign]
    expected = [1]
    try:
        single: object = otp.call(servers[0], "single", timeout=30)
    except otp.CallTimeout as exc:
        single = exc
    expected[0] = len(servers)
    answers = otp.multi_call([(s, i) for i, s in enumerate(servers)], timeout=30)
    otp.send(parent, ("answers", single, answers))


def test_calls_take_in_answers_queued_before_their_deadline(node):
    me = otp.self()
    servers = [otp.spawn(answer_calls) for _ in range(4)]
    otp.spawn(_late_intake, servers, me)
    _, single, answers = _tagged("answers")
    assert single == "single"
    assert answers == [("ok", i) for i in range(len(servers))]


# ---------------------------------------------------------- dead peers


def wait_for_bye() -> None:
    otp.receive(60, lambda m: m == "bye")


def _send_then_learn_death(how: str, parent: otp.Pid) -> None:
    proc = _process.current()
    victim = otp.spawn(wait_for_bye)
    otp.send(victim, "hello")  # opens a socket to it
    opened = proc.peers[victim.uid].sock is not None
    if how == "monitor":
        otp.monitor(victim)
    else:
        otp.trap_exit(True)
        otp.link(victim)
    otp.send(victim, "bye")
    otp.receive(60, lambda m: isinstance(m, (otp.DOWN, otp.EXIT)) and m.pid == victim)
    # Nothing waited since: no idle scan closed it.
    otp.send(parent, ("learned", opened, proc.peers[victim.uid].sock is None))


@pytest.mark.parametrize("how", ["monitor", "link"])
def test_socket_to_a_peer_closes_on_its_death_notice(node, how):
    """A socket to a dead process makes ZeroMQ's I/O thread try to
    reconnect to its mailbox every RECONNECT_IVL_MS until something closes
    it: the DOWN (or EXIT) that says it is dead does."""
    me = otp.self()
    otp.spawn(_send_then_learn_death, how, me)
    _, opened, closed = _tagged("learned")
    assert opened
    assert closed
