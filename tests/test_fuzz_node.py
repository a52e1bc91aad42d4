"""Hypothesis throws random frames at a node's three doors, then checks that
the node still works.

The doors are the ones any process of the node's user can reach: a
process's mailbox (a ZeroMQ PULL socket), the name registry's ROUTER, and
the zygote's SEQPACKET channel.  After every example the node must still
spawn, call and look names up, the process that was hit must still be the
same process, and the registry must not have been restarted (a malformed
request is answered or dropped, never a crash).
"""

from __future__ import annotations

import pickle
import socket

import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from procs import Echo

import otp
from otp.registry._server import endpoints

TIMEOUT = 10.0

atoms = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.sampled_from(["spawn", "list", "lookup", "register", "whereis", "pg_join", "snapshot", "sync"])
)
terms = st.recursive(
    atoms,
    lambda inner: st.lists(inner, max_size=4).map(tuple) | st.lists(inner, max_size=3) | st.dictionaries(atoms, inner),
    max_leaves=8,
)


def _pickled(term) -> bytes:
    try:
        return pickle.dumps(term, 5)
    except Exception:  # noqa: BLE001 - an unpicklable draw is sent as its repr
        return repr(term).encode()


frames = st.one_of(st.binary(max_size=64), terms.map(_pickled))
# Requests are never ('stop',): that is the node's own, legitimate order to
# its zygote (only the node's user can connect to the channel).
zygote_requests = frames.filter(lambda f: f != pickle.dumps(("stop",), 5) and b"stop" not in f)


def _registry_pid(node: otp.Node) -> otp.Pid:
    (info,) = [c for c in otp.supervisor.which_children(node.kernel) if c.id == "registry"]
    return info.pid


def _still_works(node: otp.Node, server: otp.Pid, registry: otp.Pid) -> None:
    assert otp.call(server, "ping", timeout=TIMEOUT) == "ping"
    assert _registry_pid(node) == registry, "the registry was restarted"
    otp.register("fuzz-probe", otp.self())
    try:
        assert otp.whereis("fuzz-probe", cached=False) == otp.self()
    finally:
        otp.unregister("fuzz-probe")
    pid, ref = otp.spawn_monitor(int)
    assert otp.receive(TIMEOUT, lambda m: isinstance(m, otp.DOWN) and m.ref == ref).reason == "normal"
    assert pid != server


def test_random_frames_at_every_door_leave_the_node_working(node):
    server = Echo.start_link()
    registry = _registry_pid(node)
    ctx = zmq.Context()
    mailbox = ctx.socket(zmq.PUSH)
    mailbox.setsockopt(zmq.LINGER, 1000)
    mailbox.connect(node.info.mailbox_endpoint(server.uid))
    request_ep, _ = endpoints(node.info.dir, None)
    zygote = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    zygote.settimeout(TIMEOUT)
    zygote.connect(node.info.zygote_address)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        to_mailbox=st.lists(frames, max_size=5),
        to_registry=st.lists(st.lists(frames, min_size=1, max_size=4), max_size=4),
        to_zygote=st.lists(zygote_requests, max_size=3),
        registry_kind=st.sampled_from([zmq.DEALER, zmq.REQ]),
    )
    def hit(to_mailbox, to_registry, to_zygote, registry_kind):
        for frame in to_mailbox:
            mailbox.send(frame)
        client = ctx.socket(registry_kind)
        client.setsockopt(zmq.LINGER, 0)
        client.connect(request_ep)
        try:
            for parts in to_registry:
                client.send_multipart(parts)
                if registry_kind == zmq.REQ:
                    break  # REQ allows one request before a reply; a reply may never come
        finally:
            client.close()
        for frame in to_zygote:
            zygote.send(frame)
        _drain(zygote)  # answers to what parsed as a 'list' request
        _still_works(node, server, registry)

    try:
        hit()
    finally:
        mailbox.close()
        zygote.close()
        ctx.term()


def _drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while sock.recv(1 << 22):
            pass
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(TIMEOUT)
