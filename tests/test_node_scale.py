"""A node with hundreds of processes: what must not degrade with their number."""

from __future__ import annotations

import zmq

import otp
from otp._transport import KernelContext, KernelSocket, context_socket_limit, peer_socket_cap

#: Servers one process calls at once: more than the peer socket cap (256),
#: so that calling them all closes sockets still flushing.
SERVERS = 400


class Echo(otp.GenServer):
    def init(self, index):
        return index

    def handle_call(self, request, from_, index):
        return otp.Reply(index, index)


def test_closed_sockets_have_slots_beyond_the_peer_cap():
    """The context's socket slots cover sockets that are closed and still
    flushing (an eighth of the descriptor limit), not only the open ones."""
    assert context_socket_limit(20000) >= 20000 // 8
    assert context_socket_limit(1024) == peer_socket_cap(1024) + 64


def test_multi_call_to_more_servers_than_the_peer_cap(node):
    """All 400 answer well within the timeout: the caller does not sleep
    waiting for the slots of the sockets it closed (it used to take about
    10 s, most answers timing out, against 0.2 s)."""
    servers = [Echo.start(i) for i in range(SERVERS)]
    try:
        answers = otp.multi_call([(pid, "ping") for pid in servers], timeout=8)
        assert [value for status, value in answers if status == "ok"] == list(range(SERVERS))
    finally:
        refs = [otp.monitor(pid) for pid in servers]
        for pid in servers:
            otp.exit(pid, "kill")
        for ref in refs:
            otp.receive(30, lambda m, ref=ref: isinstance(m, otp.DOWN) and m.ref == ref)


def test_kernel_sockets_are_pyzmq_cython_classes(node):
    """The mailbox and the context skip pyzmq's Python layer (memory per
    process, see otp._transport); servers' own sockets are full pyzmq
    sockets, and both kinds are closed with the process."""
    proc = otp._process.current()
    assert type(proc.ctx) is KernelContext
    assert type(proc.inbox) is KernelSocket
    full = proc.ctx.socket(zmq.DEALER)
    try:
        assert hasattr(full, "send_multipart")
        assert full in proc.ctx._sockets and proc.inbox in proc.ctx._sockets
    finally:
        full.close()
    assert proc.inbox.poll(0) == 0


def test_kernel_socket_poll():
    """``poll`` as pyzmq's: the ready events, 0 when nothing came in time."""
    ctx = KernelContext()
    pull = ctx.kernel_socket(zmq.PULL)
    push = ctx.kernel_socket(zmq.PUSH)
    try:
        pull.bind("inproc://poll-test")
        push.connect("inproc://poll-test")
        assert pull.poll(0) == 0
        push.send(b"x")
        assert pull.poll(5000) == zmq.POLLIN
        assert pull.recv() == b"x"
    finally:
        for sock in ctx._sockets:
            sock.close(linger=0)
        ctx.term()
