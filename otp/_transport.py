"""Where processes of a node are reached, and the socket defaults.

The local transport is ZeroMQ over ``ipc://`` for mailboxes and Unix datagram
sockets for signals, all in one directory per node created with mode 0700:
only the owning user can connect, which is the trust boundary that makes
unpickling frames acceptable (see :mod:`otp._codec`).  Every address is
derived from ``(node, uid)``.  Processes of other nodes are reached behind
:meth:`NodeInfo.is_local`, through the node's gateway (tcp + CURVE, see
:mod:`otp._gateway`), without changing pids or the codec: a process hands
their frames to the gateway's intake and their signals to its datagram
socket (both in the node directory), and the gateway delivers what comes
from other nodes to mailboxes and signal ports as their senders would.

Defaults (measured on the 2-core reference machine, see ``stress/``):

* ``SNDHWM = RCVHWM = 0`` (unbounded): Erlang sends never block and never
  fail; a bounded pipe either blocks the sender (deadlock-prone between two
  processes that call each other) or drops silently.  Memory is bounded by
  per-agent quotas instead (mabeam).
* ``EXIT_LINGER_MS = 2000``: how long an exiting process waits for its
  queued messages to reach a receiver that is frozen (SIGSTOP) before
  giving up; running receivers get ``FLUSH_LINGER_MS`` (below).
* ``BACKLOG = 1024``: a supervisor starting a thousand children receives a
  thousand near-simultaneous connections; libzmq's default of 100 made
  connects fail and retry after ``RECONNECT_IVL``.
* ``RECONNECT_IVL_MS = 20``: a retry after a refused connect (backlog full)
  comes quickly; reconnects to dead peers stop when the sender reads their
  death (a DOWN or EXIT), or finds the socket idle.

Descriptors.  A connection from a sender's PUSH socket to a mailbox costs
two descriptors in the sender (the socket's eventfd and the stream socket)
and one in the receiver (the accepted stream socket); measured with
``/proc/<pid>/fd`` under pyzmq 27.3 / libzmq 4.3.5.  libzmq 4.3.5 *aborts the
whole receiving process* when ``accept`` fails with EMFILE on an ipc
listener (``Too many open files (src/ipc_listener.cpp:297)``: its assertion
lists ENFILE, not EMFILE), and nothing in its API lets a receiver refuse or
drop connections.  So descriptors are bounded on the sending side, where
they are opened:

* ``PEER_IDLE_S = 1.0``: a socket to a peer not used for between one and
  two of these periods is closed while the process waits (and reopened by
  its next frame).  This is what bounds the *receivers*: a server called by
  2,000 processes holds a descriptor for each caller that was active in
  the last second or two, not for each caller alive (measured under
  ``ulimit -n 1024``, 2,000 callers arriving over 50 s: the server peaked
  at 461 descriptors, the registry at 315).  A reopen costs about 0.4 ms
  (connect and ZMTP handshake, ``call_round_trip_capped``), so a peer used
  once per idle period pays 0.04% of it.  What it cannot bound: more
  processes than the receiver has descriptors sending to it *at once*
  (measured: 750 idle processes calling one server together passed, 800
  aborted it).
* ``FLUSH_LINGER_MS = 10000``: how long a closed socket to a *running*
  receiver may take to deliver what is queued on it (when the cap or the
  idle close closes it, and at exit).  Closing makes senders reconnect, and
  a reconnect needs the receiver's I/O thread for the handshake: 2,000
  processes answering one process at once, each on a new connection, took
  4 s to get through on 2 loaded cores (``EXIT_LINGER_MS`` alone lost
  two thirds of the answers).  A stopped receiver (SIGSTOP) gets
  ``EXIT_LINGER_MS``, a dead one nothing.
* ``PEER_SOCKETS_MAX = 256`` and :func:`peer_socket_cap`: at most that many
  open peer sockets per process, and at most an eighth of the process's
  descriptor limit (two descriptors each: a quarter of the limit), least
  recently used closed first.  The rest of the limit is for what a process
  cannot bound itself: connections accepted from its senders, pidfds of the
  processes it links to or monitors.  The price, measured: a process that
  sends to more peers than its cap, in turn, pays a reopen (about 0.4 ms)
  per message, a call to such a peer takes about twice as long (941 us
  against 538 us uncapped, ``call_round_trip_capped``); below its cap it
  pays nothing.  What the cap saves per socket: two descriptors and about
  27 KiB (libzmq's pipes and buffers) in the sender, a descriptor and a
  session in the receiver.  256 keeps a process under 512 descriptors and
  7 MB of sockets, about twice what an idle process weighs, whatever it
  talks to; at 1,024 descriptors the cap is 128.

Order survives closing: a frame carries its number in the sender's count
for that receiver, over all sockets, and the receiver sets aside a frame
that arrives before its predecessors (which the mailbox can deliver from
the old connection after the new one: it reads its connections in turn).

The kernel's own ZeroMQ objects.  A process's context
(:class:`KernelContext`) and the sockets the kernel makes in every process
(mailbox, wake socket, peer sockets: :class:`KernelSocket`) are pyzmq's
Cython classes with only the few methods the kernel calls added, not its
Python subclasses (``zmq.Context``, ``zmq.Socket``).  A process forked from
the zygote pays a page for each of the zygote's objects it touches, and the
Python layer's constructors touch many (a ``WeakSet`` of sockets, the
socket-type enum, attribute hooks): measured, 2,973 against 2,821 KiB PSS
per idle process (stress/README.md, "Memory per process").  Sockets that
servers make for themselves (``ctx.socket``) stay pyzmq's full sockets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.backend import Context as _BaseContext
from zmq.backend import Socket as _BaseSocket
from zmq.backend import zmq_poll

__all__ = [
    "NodeInfo",
    "EXIT_LINGER_MS",
    "BACKLOG",
    "RECONNECT_IVL_MS",
    "PEER_IDLE_S",
    "FLUSH_LINGER_MS",
    "PEER_SOCKETS_MAX",
    "peer_socket_cap",
    "context_socket_limit",
    "KernelContext",
    "KernelSocket",
]

EXIT_LINGER_MS = 2000
BACKLOG = 1024
RECONNECT_IVL_MS = 20
IPC_PATH_MAX = 107
PEER_IDLE_S = 1.0
FLUSH_LINGER_MS = 10000
PEER_SOCKETS_MAX = 256
#: Below this a cap would make a process that talks to a handful of peers in
#: turn reconnect on every message; a limit that low cannot run a node anyway.
PEER_SOCKETS_MIN = 16


#: ZeroMQ sockets a process has beside its peer sockets: mailbox, wake, a
#: registry client's DEALER and SUB, a registry's ROUTER and PUB, and room
#: for peer sockets that are closed but still flushing.
OTHER_SOCKETS = 64


def peer_socket_cap(fd_limit: int) -> int:
    """Open peer sockets a process may keep with ``fd_limit`` descriptors."""
    return max(PEER_SOCKETS_MIN, min(PEER_SOCKETS_MAX, fd_limit // 8))


def context_socket_limit(fd_limit: int) -> int:
    """``MAX_SOCKETS`` of a process's ZeroMQ context.  libzmq counts a closed
    socket until it has flushed (measured: its slot frees when its linger
    ends), so this bounds the sockets being closed too, which nothing else
    does: a process sending to thousands of peers in a loop closes them
    faster than libzmq flushes them, and waits when it reaches this (the
    slot of a closed socket frees once it has flushed, or its linger ran
    out: measured with a socket that could not connect).

    An eighth of the descriptor limit (two descriptors each: a quarter of
    it), not :data:`PEER_SOCKETS_MAX`: the slots of closed sockets free
    slowly (a closed socket waits for its peer's I/O thread), and with
    slots for only the open ones a process calling 400 servers at once
    (``otp.multi_call``) slept in :meth:`~otp._peers.PeersMixin._push_socket`
    for 10 s against 0.2 s with enough (stress/README.md, "Scale").  Under
    a limit of 2,048 or less this is the peer socket cap, as before."""
    return max(peer_socket_cap(fd_limit), fd_limit // 8) + OTHER_SOCKETS


class KernelSocket(_BaseSocket):
    """A socket of the kernel's: pyzmq's Cython socket, with the sugar
    layer's names for what the kernel calls (see the module docstring)."""

    setsockopt = _BaseSocket.set
    getsockopt = _BaseSocket.get

    def poll(self, timeout: int | None = None, flags: int = zmq.POLLIN) -> int:
        """The events of ``flags`` that are ready within ``timeout`` ms
        (None: wait), as ``zmq.Socket.poll``."""
        ready = zmq_poll([(self, flags)], -1 if timeout is None else timeout)
        return ready[0][1] if ready else 0


class KernelContext(_BaseContext):
    """A process's ZeroMQ context: pyzmq's Cython context, keeping the
    sockets made through it in ``_sockets`` (a list; a process closes what
    is left of them before it ends the context, and the list drops closed
    ones when it has doubled)."""

    _sockets: list[Any]
    _sweep_at: int

    def kernel_socket(self, socket_type: int) -> KernelSocket:
        """A kernel socket (mailbox, wake, peer)."""
        sock = KernelSocket(self, socket_type)
        self._track(sock)
        return sock

    def socket(self, socket_type: int) -> zmq.Socket[bytes]:
        """A full pyzmq socket, for the servers that make their own."""
        sock: zmq.Socket[bytes] = zmq.Socket(self, socket_type)  # type: ignore[call-overload]
        self._track(sock)
        return sock

    def _rm_socket(self, sock: Any) -> None:
        """Called by a full pyzmq socket as it closes (the list drops closed
        sockets when it sweeps)."""

    def _track(self, sock: Any) -> None:
        try:
            sockets = self._sockets
        except AttributeError:
            self._sockets = [sock]
            self._sweep_at = 64
            return
        sockets.append(sock)
        if len(sockets) >= self._sweep_at:
            sockets[:] = [s for s in sockets if not s.closed]
            self._sweep_at = max(64, 2 * len(sockets))


@dataclass(frozen=True)
class NodeInfo:
    """What every process of a node knows about its node.

    ``creation`` is the node's incarnation (see :mod:`otp._pid`);
    ``gateway`` says whether the node runs a gateway (it listens on tcp, see
    :mod:`otp._gateway`): its processes then reach processes of other nodes
    through it, at :meth:`gateway_intake` (frames) and
    :meth:`gateway_signals` (signals); without one, a process of another
    node is unreachable (``'noconnection'``)."""

    name: str
    dir: str
    zygote_address: str
    start_method: str
    creation: int = 0
    gateway: bool = False

    def is_local(self, node: str) -> bool:
        return node == self.name

    def gateway_intake(self) -> str:
        """The gateway's PULL socket, where processes push frames for
        processes of other nodes."""
        return f"ipc://{self.dir}/gw.m"

    def gateway_signals(self) -> str:
        """The gateway's datagram socket, where processes send signals for
        processes of other nodes."""
        return f"{self.dir}/gw.s"

    def gateway_pid_path(self) -> str:
        """``"ospid start"`` of the running gateway, written before it binds
        its sockets: processes with links or monitors across it watch it
        (see ``SignalPort._watch_gateway``)."""
        return f"{self.dir}/gw.pid"

    def node_up_path(self, node: str) -> str:
        """A file that exists while the gateway is connected to ``node``:
        what processes look at to tell whether a process of that node may
        still be alive (their sweeps forget the dead; see otp._peers)."""
        return f"{self.dir}/up/{node}"

    def mailbox_path(self, uid: int) -> str:
        return f"{self.dir}/{uid:016x}.m"

    def mailbox_endpoint(self, uid: int) -> str:
        return f"ipc://{self.dir}/{uid:016x}.m"

    def signal_address(self, uid: int) -> str:
        return f"{self.dir}/{uid:016x}.s"

    def info_address(self, uid: int) -> str:
        """Where the answers to a process's ``otp.process_info`` questions
        arrive (bound on its first question)."""
        return f"{self.dir}/{uid:016x}.i"

    def remove_endpoints(self, uid: int) -> None:
        for path in (self.mailbox_path(uid), self.signal_address(uid), self.info_address(uid)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
