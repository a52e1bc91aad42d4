"""Erlang's ``net_kernel`` calls, as ``otp.net_kernel.*``: node events, the
gateway's state, the peer list.  ``otp.connect_node``, ``otp.nodes`` and
the like are at the top of ``otp`` (see :mod:`otp._dist`)."""

from __future__ import annotations

from ._dist import add_peer, connect_node, disconnect_node, monitor_nodes
from ._dist import net_kernel_info as info
from ._gateway import NET_TICKTIME, SETUP_TIMEOUT

__all__ = ["monitor_nodes", "info", "add_peer", "connect_node", "disconnect_node", "NET_TICKTIME", "SETUP_TIMEOUT"]
