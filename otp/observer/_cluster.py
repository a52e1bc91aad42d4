"""The cluster view: the observer's questions asked of another node.

A web view serves the node it runs on and, when that node is part of a
cluster, every node connected to it now (``otp.nodes()``): a question
for another node runs there through ``otp.rpc.call``, in a process of that
node that asks *its* collector (started on demand there, as here), so the
answer is that node's own view and its pids are that node's.  Actions take
pids of any node (exit signals, supervisor and ``sys`` calls cross nodes).
A node that is not connected is not asked (:class:`NotInCluster`): the
view never dials nodes on its own.

:func:`search_cluster` asks every node at once (``otp.rpc.multicall``), so
it takes about the slowest node's time, and a node that does not answer
shows as an error beside the others' rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import rpc
from .._dist import node as this_node
from .._dist import nodes
from .._service import ask
from ._errors import NotInCluster
from ._panels import read_panel
from ._records import ProcessPage
from ._start import ensure_collector

__all__ = ["cluster_nodes", "ask_collector", "on_node", "search_cluster", "read_panel_on", "REMOTE_TIMEOUT"]

#: Seconds a question to another node may take (its collector may run a
#: round first).
REMOTE_TIMEOUT = 15.0


def cluster_nodes() -> list[str]:
    """This node's name, then the nodes connected to it now, sorted."""
    return [this_node(), *nodes()]


def ask_collector(op: str, *args: Any, timeout: float = 10.0) -> Any:
    """The collector operation ``op`` on the node this runs on."""
    return ask(ensure_collector(), op, *args, timeout=timeout)


def on_node(node: str | None, fn: Callable[..., Any], *args: Any, timeout: float = REMOTE_TIMEOUT) -> Any:
    """``fn(*args)`` here for this node (or None), else on ``node`` through
    ``otp.rpc.call``: its value, or what it raised.  Raises
    :class:`NotInCluster` for a node that is not connected."""
    if node is None or node == this_node():
        return fn(*args)
    if node not in nodes():
        raise NotInCluster(f"{node!r} is not connected to this node (connected: {', '.join(nodes()) or 'none'})")
    return rpc.call(node, fn, *args, timeout=timeout)


def read_panel_on(node: str | None, name: str) -> dict[str, Any]:
    """The panel ``name`` of ``node`` (this node for None), read there."""
    return on_node(node, read_panel, name, timeout=REMOTE_TIMEOUT + 30.0)


def _search_here(search: str, limit: int) -> ProcessPage:
    page: ProcessPage = ask_collector("processes", "pid", False, 0, limit, search)
    return page


def search_cluster(search: str, limit: int = 50, timeout: float = REMOTE_TIMEOUT) -> list[tuple[str, Any]]:
    """The processes matching ``search`` on every node of the cluster: per
    node, in :func:`cluster_nodes` order, ``(node, ProcessPage)`` or
    ``(node, exception)`` for a node that failed to answer."""
    names = cluster_nodes()
    answers = rpc.multicall(names, _search_here, search, limit, timeout=timeout)
    return [(name, value) for name, (_, value) in zip(names, answers)]
