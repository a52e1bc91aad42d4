"""The raw floors' server side: a pyzmq socket bound in a process started
with ``otp.spawn``, the harness told ``"ready"``, and the ROUTER loop that
answers pickled requests until ``"stop"``.

Apart from :mod:`stress._bench` (the measuring) because only the floors'
processes use it, on every benchmark module's side; each such process makes
its own zmq context, so the floors pay for the same kind of process as ours.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import zmq

import otp

#: ``(public, secret)`` of a CURVE server socket.
Curve = tuple[bytes, bytes]


@contextlib.contextmanager
def announced(
    kind: int, endpoint: str, parent: otp.Pid, *, curve: Curve | None = None, rcvhwm: int | None = None
) -> Iterator[zmq.Socket]:
    """A new context and a socket of ``kind`` bound to ``endpoint`` (a CURVE
    server if ``curve`` is given), then ``"ready"`` sent to ``parent``; on
    the way out the socket is closed at once and the context terminated."""
    ctx = zmq.Context()
    sock = ctx.socket(kind)
    if curve is not None:
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, curve[0])
        sock.setsockopt(zmq.CURVE_SECRETKEY, curve[1])
    if rcvhwm is not None:
        sock.setsockopt(zmq.RCVHWM, rcvhwm)
    sock.bind(endpoint)
    otp.send(parent, "ready")
    try:
        yield sock
    finally:
        sock.close(linger=0)
        ctx.term()


@contextlib.contextmanager
def announced_pull_push(endpoint: str, reply_endpoint: str, parent: otp.Pid) -> Iterator[tuple[zmq.Socket, zmq.Socket]]:
    """``(pull, push)``: a PULL bound to ``endpoint`` and a PUSH connected to
    ``reply_endpoint`` on one new context, then ``"ready"`` to ``parent``;
    both closed at once and the context terminated on the way out."""
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(endpoint)
    push = ctx.socket(zmq.PUSH)
    push.connect(reply_endpoint)
    otp.send(parent, "ready")
    try:
        yield pull, push
    finally:
        pull.close(linger=0)
        push.close(linger=0)
        ctx.term()


def serve(sock: zmq.Socket, answer: Callable[[Any], Any] | None = None) -> None:
    """Answer each pickled request on ROUTER ``sock`` with the pickle of
    ``answer(request)`` (of the request itself when ``answer`` is None: an
    echo, no call per request) until the request ``"stop"``."""
    while True:
        ident, frame = sock.recv_multipart()
        request = pickle.loads(frame)
        if request == "stop":
            return
        sock.send_multipart([ident, pickle.dumps(request if answer is None else answer(request))])


def drain_batches(pull: zmq.Socket, done: Callable[..., Any], *args: Any) -> None:
    """The throughput floors' sink: per batch a pickled count, then that
    many pickled frames read (and unpickled), then ``done(*args)`` (the
    caller's own call: nothing added per batch); until the count ``"stop"``."""
    while True:
        count = pickle.loads(pull.recv())
        if count == "stop":
            return
        for _ in range(count):
            pickle.loads(pull.recv())
        done(*args)


def raw_router_server(endpoint: str, parent: otp.Pid, curve: Curve | None = None) -> None:
    """The raw echo server of the call floors: a ROUTER (CURVE over tcp when
    ``curve`` is given) replying with the request, re-pickled."""
    with announced(zmq.ROUTER, endpoint, parent, curve=curve) as sock:
        serve(sock)


def raw_dict_router(endpoint: str, table: dict, parent: otp.Pid) -> None:
    """The raw name server of the registry floors: a ROUTER answering each
    request with ``table.get(request)``."""
    with announced(zmq.ROUTER, endpoint, parent) as sock:
        serve(sock, table.get)


def start_raw(body: Callable[..., None], *args: Any, timeout: float = 10.0, **spawn: Any) -> otp.Pid:
    """Spawn a raw server ``body(*args)`` (with ``otp.spawn_opt`` options
    ``spawn``, e.g. ``node=``) and wait until it has said ``"ready"``."""
    pid = otp.spawn_opt(body, args, **spawn) if spawn else otp.spawn(body, *args)
    otp.receive(timeout, lambda m: m == "ready")
    return pid
