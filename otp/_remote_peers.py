"""Peers of other nodes: how a process sends to processes of other nodes
and tells whether one may still live.  Apart from :mod:`otp._peers`
because none of the socket cache applies to them.

A peer of another node has no socket of its own:
its frames go to the node's gateway over one PUSH socket the process keeps
for all of them (opened on first use, kept for the process's life, so its
frames to the gateway stay in order), each behind a route (target, sender,
number) and a prefix naming this node (:mod:`otp._dist_wire`).  Without a
gateway such a peer is unreachable: frames to it are dropped, as Erlang
drops a message to a node it cannot connect to.  Sweeps count a process of
another node alive while the gateway is connected to its node
(:meth:`RemotePeersMixin.node_up`).

Mixed into :class:`otp._process.Process`; runs in the process's main thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq

from ._dist_wire import ROUTE, remote_prefix
from ._pid import Pid
from ._process_base import ProcessBase
from ._transport import EXIT_LINGER_MS, RECONNECT_IVL_MS

if TYPE_CHECKING:
    from ._peers import Peer

__all__ = ["RemotePeersMixin", "base_send"]

#: pyzmq's base-class send, skipping the sugar layer's draft-socket
#: argument handling (a third of the per-message cost of a send).
base_send: Callable[..., Any] = getattr(zmq.Socket.__mro__[1], "send")  # noqa: B009 - mypy does not know the base


class RemotePeersMixin(ProcessBase):
    """The gateway socket and the liveness of peers of other nodes (see the
    module docstring)."""

    def _init_remote_peers(self) -> None:
        # Processes of other nodes: the socket to the gateway's intake, the
        # prefix of frames for them, and the nodes of the remote processes
        # that sent us frames (see otp._receive).
        self._gateway_sock: zmq.Socket | None = None
        self._remote_prefix = b""
        self.remote_senders: dict[int, str] = {}

    def _remote_peer(self, p: Peer) -> None:
        """Make ``p``, a process of another node, a peer reached through the
        gateway (see the module docstring); unreachable without one."""
        if not self.node.gateway:
            p.dead = "noconnection"
            return
        send = base_send.__get__(self.gateway_socket())
        pack = ROUTE.pack
        target = p.pid
        uid, creation, me = target.uid, target.creation, self.uid
        node = target.node.encode("utf-8")
        head = bytes((len(node),)) + node
        prefix = self._remote_prefix
        port = self.sig

        def send_remote(frame: bytes) -> None:
            # Process.send counts the frame (p.seq) once this returns.
            send(b"".join((head, pack(uid, creation, me, p.seq + 1, port.remote_signals), prefix, frame)))

        p.dead = None
        p.send = send_remote

    def gateway_socket(self) -> zmq.Socket:
        """The PUSH socket to the gateway's intake that carries every frame
        of this process for other nodes (opened on first use, kept for the
        process's life: one socket keeps them in order)."""
        sock = self._gateway_sock
        if sock is None:
            sock = self._gateway_sock = self.ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.setsockopt(zmq.LINGER, EXIT_LINGER_MS)
            sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
            sock.connect(self.node.gateway_intake())
            self._remote_prefix = remote_prefix(self.node.name, self.node.creation)
        return sock

    def node_up(self, node: str) -> bool:
        """True while the gateway is connected to ``node``."""
        return os.path.exists(self.node.node_up_path(node))

    def peer_may_live(self, pid: Pid) -> bool:
        """False if ``pid`` surely exited: its mailbox is gone, or, for a
        process of another node, the connection to its node."""
        if self.node.is_local(pid.node):
            return os.path.exists(self.node.mailbox_path(pid.uid))
        return self.node_up(pid.node)

    def sender_may_live(self, uid: int) -> bool:
        """:meth:`peer_may_live` for a process known by its uid only (one
        that sent us frames)."""
        node = self.remote_senders.get(uid)
        if node is None:
            return os.path.exists(self.node.mailbox_path(uid))
        return self.node_up(node)
