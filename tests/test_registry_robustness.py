"""The registry process does not die of a request.

Malformed requests (any ZeroMQ client can reach the node registry's ROUTER)
are answered with a typed error or dropped; requests that hold a class of the
script's ``__main__`` travel by value; a request in flight when the registry
dies fails at once with ``RegistryDown`` and is never sent again.
"""

from __future__ import annotations

import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Mapping

import pytest
import zmq
from helpers import exit_of, recv_tagged
from procs import wait_forever

import otp
from otp import supervisor as sup_api
from otp.registry import MemoryBackend
from otp.registry._server import endpoints

#: Seconds a raw ZeroMQ client waits for a reply (a reply, not a sleep).
REPLY_TIMEOUT_MS = 10_000


def registry_pid(node) -> otp.Pid:
    return {c.id: c.pid for c in sup_api.which_children(node.kernel)}["registry"]


@pytest.fixture
def ctx():
    """A ZeroMQ context for plain clients, as any program of the node's user could open."""
    context = zmq.Context()
    yield context
    context.term()  # every socket is closed with LINGER 0: returns at once


def raw_socket(ctx, node, kind: int, relaxed: bool = False):
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, REPLY_TIMEOUT_MS)
    if relaxed:
        sock.setsockopt(zmq.REQ_RELAXED, 1)
    sock.connect(endpoints(node.info.dir, None)[0])
    return sock


def request(req_id, op, *args) -> bytes:
    return pickle.dumps((req_id, op, args), 5)


def replies_until(dealer, req_id: int) -> dict:
    """Every reply that arrives on ``dealer`` up to the one for ``req_id``,
    by request id (one connection: the registry answers in order)."""
    got = {}
    while req_id not in got:
        reply = pickle.loads(dealer.recv())
        got[reply[0]] = reply
    return got


def assert_name_service_works(node, registry: otp.Pid) -> None:
    assert registry_pid(node) == registry, "the registry was restarted"
    pid = otp.spawn(wait_forever)
    otp.register("after-garbage", pid)
    assert otp.whereis("after-garbage", cached=False) == pid
    otp.unregister("after-garbage")
    otp.exit(pid, "kill")


# ------------------------------------------------------ malformed requests


def test_a_plain_req_client_is_answered_and_the_registry_lives_on(node, ctx):
    """REQ adds an empty delimiter frame: the ROUTER sees three frames."""
    registry = registry_pid(node)
    req = raw_socket(ctx, node, zmq.REQ, relaxed=True)
    try:
        req.send(request(1, "whereis", "nobody"))
        assert pickle.loads(req.recv())[:3] == (1, "ok", None)
        req.send(request(2, "no_such_op"))
        reply = pickle.loads(req.recv())
        assert reply[:2] == (2, "error") and isinstance(reply[2], otp.registry.UnknownOperation)
        req.send(b"not a pickle")  # unanswerable: dropped (REQ_RELAXED lets us go on)
        req.send(request(3, "whereis", "nobody"))
        assert pickle.loads(req.recv())[:3] == (3, "ok", None)
    finally:
        req.close()
    assert_name_service_works(node, registry)


FLOAT_UID_PID = otp.Pid("node", 1.5, 1, 1)


class PidList(list):
    """A list subclass: its iteration would be the caller's code."""


class RaisingMapping(Mapping):
    """Metadata whose own iteration raises (run by the registry's checks)."""

    def __init__(self, **items):
        self.data = items

    def __getitem__(self, key):
        return self.data[key]

    def __iter__(self):
        raise RuntimeError("iteration refused")

    def __len__(self):
        return len(self.data)


def _generator():
    yield 1


#: (request frames, the name of its reply's error class, "ok", or None: dropped unanswered)
GARBAGE = [
    ([b"not a pickle"], None),
    ([pickle.dumps("a string", 5)], None),
    ([pickle.dumps((), 5)], None),
    ([request(1.5, "whereis", "x")], None),  # the request id is unreadable
    ([b"two", b"frames"], None),
    ([b"", b"", request(10, "whereis", "x")], None),
    ([pickle.dumps((11,), 5)], "MalformedRequest"),
    ([pickle.dumps((12, "whereis"), 5)], "MalformedRequest"),
    ([pickle.dumps((13, "whereis", ("x",), "extra"), 5)], "MalformedRequest"),
    ([pickle.dumps((14, 42, ()), 5)], "UnknownOperation"),
    ([pickle.dumps((15, "whereis", ["x"]), 5)], "MalformedRequest"),
    ([request(16, "no_such_op")], "UnknownOperation"),
    ([request(17, "__init__")], "UnknownOperation"),
    ([request(18, "whereis")], "MalformedRequest"),
    ([request(19, "whereis", "x", "y")], "MalformedRequest"),
    ([request(20, "register", "n", FLOAT_UID_PID)], "InvalidPid"),
    ([request(21, "pg_join", "g", FLOAT_UID_PID)], "InvalidPid"),
    ([request(22, "keys", "not a pid")], "InvalidPid"),
    ([request(23, "unregister_pid", FLOAT_UID_PID)], "InvalidPid"),
    ([request(24, "pg_join", ["unhashable"], otp.Pid("node", 1, 1, 1))], "InvalidKey"),
    ([request(25, "pg_members", {"a": 1})], "InvalidKey"),
    ([request(26, "whereis", ["unhashable"])], "InvalidKey"),
    ([request(27, "match_metadata", 3, "v")], "InvalidMetadata"),
    ([request(28, "update_metadata", "k", "not a dict")], "InvalidMetadata"),
    ([b"", request(29, "whereis", "x")], "ok"),  # a REQ-style envelope is answered
    ([request(30, "whereis", FLOAT_UID_PID)], "InvalidKey"),
    ([request(31, "register", ("k", FLOAT_UID_PID), otp.Pid("node", 1, 1, 1))], "InvalidKey"),
    ([request(32, "unregister", "k", "not a pid")], "InvalidPid"),
    ([request(33, "pg_join", "g", True)], "InvalidPid"),
    ([request(34, "update_metadata", "k", RaisingMapping(a=1))], "MalformedRequest"),
    ([request(35, "register", "k", otp.Pid("node", 1, 1, 1), _generator)], "PidNotAlive"),
    ([request(36, "pg_join", "g", [otp.Pid("node", 1, 1, 1), "not a pid"])], "InvalidPid"),
    ([request(37, "pg_leave", "g", PidList())], "InvalidPid"),
    ([request(38, "pg_monitor", "not a pid", "g")], "InvalidPid"),
    ([request(39, "pg_demonitor", "not a ref")], "MalformedRequest"),
    ([request(40, "pg_demonitor", otp.Ref("an id of another type"))], "MalformedRequest"),
    ([request(41, "pg_monitor_scope", otp.Pid("node", 1, 1, 1))], "PidNotAlive"),
]


def test_a_pid_travels_as_its_fields_and_the_registry_pid_as_its_pickle(node, ctx):
    """What a plain client reads from the wire (see otp.registry._protocol)."""
    pid = otp.spawn(wait_forever)
    otp.register("fields", pid)
    req = raw_socket(ctx, node, zmq.REQ)
    try:
        req.send(request(1, "whereis", "fields"))
        req_id, status, value, registry, version = pickle.loads(req.recv())
    finally:
        req.close()
    assert (req_id, status, value) == (1, "pid", (pid.node, pid.uid, pid.ospid, pid.start))
    assert pickle.loads(registry) == registry_pid(node)
    assert version >= 1
    otp.exit(pid, "kill")


def test_dealer_garbage_is_answered_or_dropped_and_the_registry_lives_on(node, ctx):
    registry = registry_pid(node)
    dealer = raw_socket(ctx, node, zmq.DEALER)
    try:
        for parts, _ in GARBAGE:
            dealer.send_multipart(parts)
        dealer.send(request(99, "whereis", "nobody"))
        expected = {}
        for parts, error in GARBAGE:
            try:
                req_id = pickle.loads(parts[-1])[0]
            except Exception:  # noqa: BLE001 - unreadable: no reply expected
                continue
            if error is not None:
                expected[req_id] = error
        got = {}
        # A REQ-style reply comes with its empty delimiter: read frames.
        while 99 not in got:
            frames = dealer.recv_multipart()
            reply = pickle.loads(frames[-1])
            got[reply[0]] = reply
    finally:
        dealer.close()
    assert got[99][:3] == (99, "ok", None)
    for req_id, error in expected.items():
        if error == "ok":
            assert got[req_id][1] == "ok", got[req_id]
        else:
            cls = getattr(otp.registry, error)
            assert got[req_id][1] == "error" and isinstance(got[req_id][2], cls), (req_id, got[req_id])
    answered = {r for r in got if r != 99}
    assert answered == set(expected), "only answerable requests are answered"
    assert_name_service_works(node, registry)


def test_twenty_malformed_requests_do_not_take_down_name_service(node, ctx):
    """More than the kernel supervisor's intensity (10 restarts a minute)."""
    registry = registry_pid(node)
    dealer = raw_socket(ctx, node, zmq.DEALER)
    try:
        for i in range(20):
            dealer.send_multipart([b"", request(i, "register", ("n", i), FLOAT_UID_PID)])
            dealer.send_multipart([b"x", b"y", b"z"])
        dealer.send(request(100, "whereis", "nobody"))
        replies = {}
        while 100 not in replies:
            reply = pickle.loads(dealer.recv_multipart()[-1])
            replies[reply[0]] = reply
    finally:
        dealer.close()
    assert all(isinstance(replies[i][2], otp.registry.InvalidPid) for i in range(20))
    assert_name_service_works(node, registry)


def test_the_node_client_refuses_a_wrong_arity_with_a_typed_error(node):
    client = otp.registry._names._node_client()
    with pytest.raises(otp.registry.MalformedRequest):
        client.request("whereis")
    with pytest.raises(otp.registry.UnknownOperation):
        client.request("drop_everything")
    assert otp.whereis("nobody", cached=False) is None


class BuggyBackend(MemoryBackend):
    """A backend whose lookup has a bug (a TypeError of its own)."""

    def lookup(self, key):
        raise TypeError("a bug in the backend, not in the request")


def always_alive(pid) -> bool:
    return True


def test_a_bug_in_a_handler_crashes_the_registry_instead_of_blaming_the_request(node):
    """Only the handler lookup is guarded: a handler's own TypeError is a
    crash of the registry (its supervisor restarts it), not 'bad request'."""
    otp.trap_exit(True)
    reg = otp.Registry.start_link(backend=BuggyBackend(is_alive=always_alive))
    with pytest.raises(otp.registry.RegistryDown) as info:
        otp.Registry.lookup(reg, "k")
    assert isinstance(info.value, otp.CalleeExit)
    reason = exit_of(reg).reason
    assert "a bug in the backend" in repr(reason)
    assert "a bug in the backend" in repr(info.value.reason)


def test_drops_are_logged_at_most_once_a_second():
    from otp.registry._server import DropLog

    now = [100.0]
    lines = []
    drops = DropLog(lambda msg, *args: lines.append(msg % args), interval=1.0, clock=lambda: now[0])
    for i in range(50):
        drops.dropped(f"garbage {i}")
    assert len(lines) == 1 and "garbage 0" in lines[0]
    now[0] = 100.999
    drops.dropped("still garbage")
    assert len(lines) == 1
    now[0] = 101.0
    drops.dropped("garbage again")
    assert len(lines) == 2 and "garbage again" in lines[1] and "50 more" in lines[1]


# --------------------------------------------------------------- timeouts


@pytest.mark.parametrize("bad", [math.nan, -1, -0.001])
def test_bad_timeouts_raise_before_anything_is_sent(node, bad):
    from otp.registry._client import RegistryClient

    client = RegistryClient(*endpoints(node.info.dir, None))
    try:
        with pytest.raises(ValueError):
            client.request("whereis", "x", timeout=bad)
        assert client.dealer is None, "nothing may be sent"
    finally:
        client.close()
    with pytest.raises(ValueError):
        otp.whereis_many(["x"], timeout=bad)


def test_forever_timeouts_are_accepted(node):
    assert otp.whereis_many(["x"], timeout=math.inf) == [None]
    assert otp.whereis_many(["x"], timeout=None) == [None]
    assert otp.whereis_many(["x"], timeout=30 * 24 * 3600.0) == [None]


# --------------------------------------------------------------- encoding


def test_an_unencodable_request_raises_encode_error_before_sending(node):
    otp.Registry.start_link(name="enc")
    registry = registry_pid(node)
    with pytest.raises(otp.EncodeError):
        otp.Registry.register("enc", "k", threading.Lock())
    with pytest.raises(otp.EncodeError):
        otp.Registry.register("enc", "k", _generator())
    with pytest.raises(otp.EncodeError):
        otp.register(("name", threading.Lock()))
    from otp.registry._client import RegistryClient

    client = RegistryClient(*endpoints(node.info.dir, None))
    try:
        with pytest.raises(otp.EncodeError):
            client.request("whereis", threading.Lock())
        assert client.dealer is None, "nothing may be sent"
    finally:
        client.close()
    otp.Registry.register("enc", "k", 1)
    assert otp.Registry.lookup("enc", "k") == [(otp.self(), 1)]
    assert registry_pid(node) == registry


MAIN_SCRIPT = textwrap.dedent(
    """
    import dataclasses, otp

    @dataclasses.dataclass(frozen=True)
    class MyValue:
        n: int

    def reader(parent):
        rows = otp.Registry.lookup("values", "k")
        otp.send(parent, ("read", [type(v).__name__ for _, v in rows], [v.n for _, v in rows]))

    def registry_pid(node):
        return {c.id: c.pid for c in otp.supervisor.which_children(node.kernel)}["registry"]

    with otp.Node(start_method="forkserver") as node:
        names = registry_pid(node)
        otp.Registry.start_link(name="values")
        otp.Registry.register("values", "k", MyValue(1), {"tag": MyValue(2)})
        assert otp.Registry.lookup("values", "k") == [(otp.self(), MyValue(1))]
        assert [e.metadata for e in otp.Registry.match_metadata("values", "tag", MyValue(2))] == [
            {"tag": MyValue(2)}
        ]
        otp.spawn(reader, otp.self())
        assert otp.receive(10) == ("read", ["MyValue"], [1])
        for attempt in (
            lambda: otp.register(("name", MyValue(1))),
            lambda: otp.Registry.register("values", ("key", MyValue(1))),
            lambda: otp.pg.join(MyValue(1)),
            lambda: otp.pg.join(("group", MyValue(1))),
        ):
            try:
                attempt()
            except otp.registry.InvalidKey:
                pass
            else:
                raise AssertionError("a key holding an object was accepted")
        for _ in range(12):  # past the replica threshold: the replica decodes them too
            assert otp.Registry.lookup("values", "k") == [(otp.self(), MyValue(1))]
        assert registry_pid(node) == names
    print("ok")
    """
)


def test_main_classes_in_registry_requests_travel_by_value_under_forkserver(tmp_path):
    script = tmp_path / "values.py"
    script.write_text(MAIN_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


# ------------------------------------------------ the registry dies mid-request


def _stall_registry(test_pid):
    """Runs in the registry while it decodes a request: says so, then waits
    (for the SIGKILL the test sends)."""
    otp.send(test_pid, ("stalled", os.getpid()))
    try:
        otp.receive(30, lambda m: False)
    except otp.Timeout:
        pass
    return "stalled-name"


class Stall:
    """A name whose unpickling (in the registry) stalls the registry."""

    def __init__(self, test_pid):
        self.test_pid = test_pid

    def __reduce__(self):
        return (_stall_registry, (self.test_pid,))


def _ask_through_a_stall(test_pid, op: str) -> None:
    otp.whereis("warm-up", cached=False)  # an answer: this process knows the registry's pid
    try:
        if op == "register":
            otp.register(Stall(test_pid))
        else:
            otp.whereis(Stall(test_pid), cached=False)
    except Exception as exc:  # noqa: BLE001 - reported to the test
        otp.send(test_pid, ("result", type(exc).__name__, getattr(exc, "reason", None)))
    else:
        otp.send(test_pid, ("result", "ok", None))
    otp.send(test_pid, ("after", otp.whereis("warm-up", cached=False)))


def _is_registry_started(m) -> bool:
    return type(m) is tuple and len(m) > 4 and m[0] == "$supervisor" and m[2] == "started" and m[3] == "registry"


def _started_events() -> list:
    """The supervisor's 'started' events already in the mailbox."""
    events = []
    while True:
        try:
            events.append(otp.receive(0, _is_registry_started))
        except otp.Timeout:
            return events


@pytest.mark.parametrize("op", ["register", "whereis"])
def test_a_request_in_flight_when_the_registry_is_killed_raises_registry_down(node, op):
    """OTP's gen_server:call: the caller learns that the server died and
    cannot know whether its request was applied; the request is not sent
    again (a request that killed the registry would kill its successor)."""
    otp.trap_exit(True)
    reg = registry_pid(node)
    sup_api.subscribe(node.kernel)
    otp.spawn(_ask_through_a_stall, otp.self(), op)
    assert recv_tagged("stalled")[1] == reg.ospid  # the request is in the registry's hands
    os.kill(reg.ospid, signal.SIGKILL)
    assert recv_tagged("result") == ("result", "RegistryDown", "killed")
    assert recv_tagged("after") == ("after", None)  # the successor answers the next request
    assert otp.whereis("stalled-name", cached=False) is None
    successor = registry_pid(node)  # this reply follows the supervisor's events
    started = _started_events()
    assert [e[4] for e in started] == [successor], "the stalling request was sent again"


def test_a_request_after_the_registry_died_goes_to_its_successor(node):
    client = otp.registry._names._node_client()
    assert client.request("whereis", "x") is None
    reg = client.registry_pid
    ref = otp.monitor(reg)
    os.kill(reg.ospid, signal.SIGKILL)
    assert otp.receive(10, lambda m: isinstance(m, otp.DOWN) and m.ref == ref).reason == "killed"
    pid = otp.spawn(wait_forever)
    otp.register("after-death", pid)  # not in flight when it died: served by the successor
    assert otp.whereis("after-death", cached=False) == pid
    assert client.registry_pid != reg


def test_a_dead_keyed_registry_is_noproc_at_once(node):
    otp.trap_exit(True)
    reg = otp.Registry.start_link()
    otp.Registry.register(reg, "k", 1)
    otp.exit(reg, "kill")
    exit_of(reg)
    with pytest.raises(otp.NoProc):
        otp.Registry.register(reg, "k", 2)
    with pytest.raises(otp.NoProc):
        otp.Registry.lookup(reg, "k")


def _register_and_report(name, parent):
    otp.register(name)
    otp.send(parent, ("registered", otp.self()))
    otp.receive()


def test_a_replica_follows_the_registry_through_its_restart(node):
    """A process that only reads its replica learns of the successor: the
    successor's change numbers start again, and must not be mistaken for
    changes the replica already has."""
    for _ in range(20):  # switch this process to its replica
        otp.whereis("warm-up")
    client = otp.registry._names._node_client()
    assert client.replica is not None
    for i in range(5):  # the replica's version moves past what the successor will publish
        otp.register(f"early-{i}", otp.spawn(wait_forever))
    reg = registry_pid(node)
    ref = otp.monitor(reg)
    os.kill(reg.ospid, signal.SIGKILL)
    otp.receive(10, lambda m: isinstance(m, otp.DOWN) and m.ref == ref)
    otp.spawn(_register_and_report, "late", otp.self())
    late = recv_tagged("registered")[1]
    client.replica.refresh()
    assert otp.whereis("late") == late
