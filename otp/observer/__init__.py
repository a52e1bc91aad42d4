"""``otp.observer``: a live view of a running node, in the browser and
from Python, with Prometheus metrics.

One collector per node (a process under the kernel supervisor, started on
demand, idle when nobody looks) follows the supervision trees by their
events, samples every process in rounds, keeps the node's log reports and
counters; front ends read it::

    import otp, otp.observer

    with otp.Node():
        server = otp.observer.serve()        # 127.0.0.1, a port the OS picks
        print(server.url)                    # http://127.0.0.1:PORT/?token=...
        ...

    # from any process of the node, the same data as records:
    otp.observer.tree().roots               # TreeNode(...), children, restarts
    otp.observer.processes(sort="rss", descending=True, limit=20).rows
    otp.observer.process_detail(pid).state   # its otp.sys.get_state, rendered safely
    otp.observer.watch()                     # ObserverEvent messages from now on

Libraries add panels (a tab of the web view) without ``otp`` importing
them: ``otp.observer.add_panel("MABEAM", "mabeam._observe:read_panel")``
names a provider that runs in a process of the node when the panel is
shown (see :mod:`otp.observer._panels`).  On a node of a cluster the view
also shows every connected node (a node picker, a cluster-wide process
search: :mod:`otp.observer._cluster`).

``python -m otp observer [NODE] --port P`` attaches the web view to a
running node of the same user from another shell (see
:mod:`otp.observer._attach`).  The package sits above every layer of
``otp`` but the node runtime; the web parts (starlette, uvicorn) are
imported only by the web server process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._pid import Pid
from ._client import (
    add_root,
    collector,
    history,
    hold,
    kill,
    logs,
    metrics,
    metrics_text,
    names,
    process_detail,
    process_rows,
    processes,
    refresh,
    release,
    restart_child,
    resume,
    stats,
    suspend,
    tree,
    unwatch,
    watch,
)
from ._cluster import cluster_nodes, search_cluster
from ._collector import COLLECTOR_NAME, Collector
from ._errors import InvalidProvider, NotInCluster, ObserverError, PanelFailed, PanelTimeout, UnknownPanel
from ._metrics import render_text
from ._panels import PanelSpec, add_panel, list_panels, read_panel, remove_panel
from ._records import (
    SORT_KEYS,
    CollectorStats,
    GroupView,
    LogAdded,
    LogEntry,
    LogPage,
    MetricFamily,
    MetricSample,
    NameEntry,
    NamesView,
    NodeSample,
    ObserverEvent,
    ProcessDetail,
    ProcessesRefreshed,
    ProcessPage,
    ProcessRow,
    RegistryView,
    Sample,
    TreeChanged,
    TreeNode,
    TreeSnapshot,
)
from ._rounds import Config
from ._saferepr import safe_repr
from ._tap import install_report_tap

if TYPE_CHECKING:
    from ._server import Server

__all__ = [
    "serve",
    "Server",
    "top",
    "collector",
    "watch",
    "unwatch",
    "hold",
    "release",
    "add_root",
    "tree",
    "processes",
    "process_detail",
    "process_rows",
    "names",
    "logs",
    "metrics",
    "metrics_text",
    "render_text",
    "history",
    "stats",
    "refresh",
    "kill",
    "restart_child",
    "suspend",
    "resume",
    "install_report_tap",
    "safe_repr",
    "add_panel",
    "remove_panel",
    "list_panels",
    "read_panel",
    "PanelSpec",
    "cluster_nodes",
    "search_cluster",
    "ObserverError",
    "InvalidProvider",
    "UnknownPanel",
    "PanelFailed",
    "PanelTimeout",
    "NotInCluster",
    "Config",
    "Collector",
    "COLLECTOR_NAME",
    "SORT_KEYS",
    "ProcessRow",
    "ProcessPage",
    "Sample",
    "NodeSample",
    "TreeNode",
    "TreeSnapshot",
    "NameEntry",
    "RegistryView",
    "GroupView",
    "NamesView",
    "LogEntry",
    "LogPage",
    "ProcessDetail",
    "MetricSample",
    "MetricFamily",
    "CollectorStats",
    "ObserverEvent",
    "TreeChanged",
    "ProcessesRefreshed",
    "LogAdded",
]


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    tap: bool = True,
    roots: Sequence[Pid] = (),
    panels: Mapping[str, str] | None = None,
) -> Server:
    """Start the web view of this node and return its :class:`Server`
    (``server.url`` carries the access token).  Binds ``host`` (127.0.0.1
    unless asked) and ``port`` (0: the OS picks); in the root process
    installs the report tap (``tap``); ``roots``: supervisors to show
    besides the kernel's and the applications' trees; ``panels``: ``{name:
    "module:function"}`` to :func:`add_panel` first.  See
    :func:`otp.observer._server.serve`."""
    from ._server import serve as _serve

    for name, provider in (panels or {}).items():
        add_panel(name, provider)
    return _serve(host, port, token, tap, roots)


def __getattr__(name: str) -> Any:
    if name == "Server":
        from ._server import Server

        return Server
    if name == "top":  # textual is imported only by the terminal view
        from ._top_cli import top

        return top
    raise AttributeError(f"module 'otp.observer' has no attribute {name!r}")
