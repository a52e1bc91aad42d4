"""Nodes as seen from a process: ``otp.node()``, ``otp.nodes()``,
``otp.connect_node``, ``otp.disconnect_node``, ``otp.monitor_node`` and
``otp.net_kernel``'s functions.  Each asks the node's gateway (see
:mod:`otp._gateway_requests` for what it answers); on a node that does not
listen there is no other node: ``nodes()`` is empty, a connection cannot be
made, a monitored node is down at once.
"""

from __future__ import annotations

from typing import Any

from . import _process
from ._dist_wire import NodeAddress
from ._errors import NodeError, NoProc
from ._keys import check_key
from ._pid import Pid
from ._reasons import NodeDown
from ._timeouts import check_timeout

__all__ = [
    "node",
    "nodes",
    "connect_node",
    "disconnect_node",
    "monitor_node",
    "monitor_nodes",
    "net_kernel_info",
    "add_peer",
    "CONNECT_TIMEOUT",
]

#: Seconds ``connect_node`` waits by default: the gateway's set-up timeout
#: (7 s) and a margin; it answers False at its own deadline before this.
CONNECT_TIMEOUT = 10.0
_CALL_TIMEOUT = 10.0


def node(pid: Pid | None = None) -> str:
    """The name of the calling process's node, or of ``pid``'s node."""
    if pid is not None:
        if not isinstance(pid, Pid):
            raise TypeError(f"expected a Pid, got {type(pid).__name__}")
        return pid.node
    return _process.current().node.name


def _distributed() -> _process.Process | None:
    proc = _process.current()
    return proc if proc.node.gateway else None


def _ask(proc: _process.Process, request: tuple[Any, ...], timeout: float | None = _CALL_TIMEOUT) -> Any:
    try:
        return proc.gateway_call(request, timeout)
    except NoProc:
        raise NodeError("the node's gateway is not running (the node is stopping, or it restarts)") from None


def nodes() -> list[str]:
    """The nodes this node is connected to (Erlang's ``nodes()``), sorted."""
    proc = _distributed()
    return [] if proc is None else list(_ask(proc, ("nodes",)))


def connect_node(name: str, timeout: float | None = CONNECT_TIMEOUT) -> bool:
    """Connect to node ``name`` (a member of the peer list) unless connected;
    True once it is up, False if it cannot be reached.  Connections are also
    made on first use (a send, a link, a spawn...)."""
    timeout = check_timeout(timeout)
    proc = _distributed()
    if proc is None or name == proc.node.name:
        return proc is not None
    return bool(_ask(proc, ("connect", name), timeout))


def disconnect_node(name: str) -> bool:
    """Count node ``name`` down now, on both sides (links and monitors to it
    fire ``'noconnection'``, node monitors get ``NodeDown(name,
    'disconnect')``); False if it was not connected.  The next use
    connects again."""
    proc = _distributed()
    return False if proc is None else bool(_ask(proc, ("disconnect", name)))


def monitor_node(name: str, flag: bool = True) -> None:
    """With ``flag``: a :class:`~otp.NodeDown` message when node ``name``
    goes down, one per call, or at once if it cannot be reached (Erlang's
    ``monitor_node/2``); a connection is set up if there is none.  Without:
    remove this process's monitors of ``name``."""
    proc = _distributed()
    if proc is None:
        if flag:
            proc = _process.current()
            proc.mailbox.append(NodeDown(name, "connect_failed"))
        return
    _ask(proc, ("monitor_node", name, bool(flag)))


def monitor_nodes(flag: bool = True) -> None:
    """Subscribe the calling process to :class:`~otp.NodeUp` and
    :class:`~otp.NodeDown` messages about every node (Erlang's
    ``net_kernel:monitor_nodes/1``), or unsubscribe it.  NodeError on a node
    that does not listen."""
    proc = _distributed()
    if proc is None:
        raise NodeError("this node does not listen (otp.Node(listen=..., keys=...)): it sees no other node")
    _ask(proc, ("monitor_nodes", bool(flag)))


def net_kernel_info() -> dict[str, Any]:
    """What the gateway says of itself: ``name``, ``creation``,
    ``endpoint`` and ``public_key`` (what other nodes need to reach it),
    ``net_ticktime``, ``nodes`` up and ``connecting``, ``refused`` (handshakes
    and HELLOs refused), ``unauthenticated_dropped`` (messages of connections
    that had not said HELLO), ``names_unknown`` (messages for names of this
    node, ``otp.RemoteName``, that nobody held when they came), ``relations`` (local processes with links or
    monitors across the gateway), ``max_silence`` (per node, the longest it
    went unheard while up: ticks come every quarter tick time)."""
    proc = _distributed()
    if proc is None:
        raise NodeError("this node does not listen")
    return dict(_ask(proc, ("info",)))


def add_peer(name: str, endpoint: str | None, public_key: str | bytes) -> None:
    """Add (or replace) a member of the static peer list at run time: its
    key may connect from now on, and its endpoint is where this node
    connects to it."""
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"invalid node name {name!r}")
    NodeAddress.of((endpoint, public_key))
    proc = _distributed()
    if proc is None:
        raise NodeError("this node does not listen")
    _ask(proc, ("add_peer", name, endpoint, check_key(public_key)))
