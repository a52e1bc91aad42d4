"""The collector's Python API, for any process of the node (a web server,
a terminal front end, a test): each function starts the collector if it
does not run and asks it one operation.

Reading functions answer from the collector's memory; the first one after
a quiet spell runs a round first (about 0.2 s among a few thousand
processes).  :func:`watch` makes the caller receive
:class:`~otp.observer.ObserverEvent` messages as things happen.
"""

from __future__ import annotations

from .. import _api
from .._child_spec import SupervisorError
from .._pid import Pid
from .._service import ask
from .._supervisor import restart_child as _restart_child
from .._supervisor import terminate_child, which_children
from .._sys import resume as _resume
from .._sys import suspend as _suspend
from ._metrics import render_text
from ._records import (
    CollectorStats,
    LogPage,
    MetricFamily,
    NamesView,
    NodeSample,
    ProcessDetail,
    ProcessPage,
    ProcessRow,
    TreeSnapshot,
)
from ._rounds import Config
from ._start import ensure_collector

__all__ = [
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
    "history",
    "stats",
    "refresh",
    "kill",
    "restart_child",
    "suspend",
    "resume",
]

#: Seconds a question to the collector may take (it answers from memory;
#: a round before the answer takes a fraction of this).
TIMEOUT = 10.0


def collector(config: Config | None = None) -> Pid:
    """The pid of the node's collector, started on demand under the kernel
    supervisor (``config`` applies only if this call starts it)."""
    return ensure_collector(config)


def watch(config: Config | None = None) -> Pid:
    """Receive the collector's events as messages from now on (until
    :func:`unwatch` or the caller's exit); rounds run while anybody
    watches.  Returns the collector's pid: monitor it to hear of its
    restart (then watch again)."""
    pid = ensure_collector(config)
    ask(pid, "watch", _api.self_(), timeout=TIMEOUT)
    return pid


def unwatch() -> None:
    """Stop receiving the collector's events."""
    ask(ensure_collector(), "unwatch", _api.self_(), timeout=TIMEOUT)


def hold() -> Pid:
    """Keep the collector running while the caller lives, watching or not."""
    pid = ensure_collector()
    ask(pid, "hold", _api.self_(), timeout=TIMEOUT)
    return pid


def release() -> None:
    """Undo :func:`hold`."""
    ask(ensure_collector(), "release", _api.self_(), timeout=TIMEOUT)


def add_root(sup: Pid, label: str | None = None) -> None:
    """Follow the supervision tree under ``sup`` (the kernel's tree and
    every application's are followed already).  ``label`` names the root
    in metrics (default: ``root<n>``)."""
    ask(ensure_collector(), "add_root", sup, label, timeout=TIMEOUT)


def tree() -> TreeSnapshot:
    """Every followed supervision tree."""
    result: TreeSnapshot = ask(ensure_collector(), "tree", timeout=TIMEOUT)
    return result


def processes(
    sort: str = "pid", descending: bool = False, offset: int = 0, limit: int = 50, search: str | None = None
) -> ProcessPage:
    """A page of the process table (sort keys: :data:`otp.observer.SORT_KEYS`)."""
    result: ProcessPage = ask(ensure_collector(), "processes", sort, descending, offset, limit, search, timeout=TIMEOUT)
    return result


def process_rows(pids: list[Pid]) -> tuple[ProcessRow | None, ...]:
    """The process table's rows of ``pids`` (None for one it does not hold:
    not alive, or not listed yet), as of the last round; asking keeps them
    sampled first for a few rounds."""
    result: tuple[ProcessRow | None, ...] = ask(ensure_collector(), "process_rows", list(pids), timeout=TIMEOUT)
    return result


def process_detail(pid: Pid, state: bool = True, timeout: float = 2.0) -> ProcessDetail:
    """A drill-down into ``pid``; its state (``otp.sys.get_state``, rendered
    by :func:`safe_repr`) only for a process its supervisor's spec shows to
    be a behaviour.  Answers within ``timeout`` plus about a second."""
    result: ProcessDetail = ask(ensure_collector(), "process_detail", pid, state, timeout, timeout=timeout + TIMEOUT)
    return result


def names() -> NamesView:
    """Registered names, keyed registries and pg groups, read now."""
    result: NamesView = ask(ensure_collector(), "names", timeout=TIMEOUT)
    return result


def logs(
    pid: Pid | None = None, kind: str | None = None, after: int = 0, limit: int = 200, search: str | None = None
) -> LogPage:
    """Log entries (crash, supervisor and progress reports, and records at
    WARNING and above) after ``after``, of ``pid`` and ``kind`` if given.
    Needs the report tap in the root (:func:`install_report_tap`)."""
    result: LogPage = ask(ensure_collector(), "logs", pid, kind, after, limit, search, timeout=TIMEOUT)
    return result


def metrics() -> list[MetricFamily]:
    """The Prometheus metric families (see :mod:`otp.observer._metrics`)."""
    result: list[MetricFamily] = ask(ensure_collector(), "metrics", timeout=TIMEOUT)
    return result


def metrics_text() -> str:
    """The metrics in Prometheus' text format."""
    return render_text(metrics())


def history() -> tuple[NodeSample, ...]:
    """The node's history, one point per round."""
    result: tuple[NodeSample, ...] = ask(ensure_collector(), "history", timeout=TIMEOUT)
    return result


def stats() -> CollectorStats:
    """The collector's own costs (rows, last round, memory)."""
    result: CollectorStats = ask(ensure_collector(), "stats", timeout=TIMEOUT)
    return result


def refresh() -> int:
    """Run a round now; returns its number."""
    result: int = ask(ensure_collector(), "refresh", timeout=TIMEOUT)
    return result


# ------------------------------------------------------------------ actions


def kill(pid: Pid, reason: object = "kill") -> None:
    """Send ``pid`` an exit signal with ``reason`` (``'kill'``: untrappable)."""
    if not isinstance(pid, Pid):
        raise TypeError(f"kill takes a Pid, not {type(pid).__name__}")
    _api.exit(pid, reason)


def restart_child(sup: Pid, child_id: object, timeout: float | None = 30.0) -> Pid | None:
    """Stop the static child ``child_id`` of ``sup`` and start it again;
    its new pid (None if its start ignored).  A dynamic supervisor's
    children have no id: kill one instead (its restart type decides).
    Raises ``SupervisorError`` as ``terminate_child``/``restart_child``."""
    if child_id is None:
        raise ValueError("a dynamic supervisor's child cannot be restarted by id: kill it instead")
    terminate_child(sup, child_id, timeout=timeout)
    return _restart_child(sup, child_id, timeout=timeout)


def child_id_at(sup: Pid, index: int, timeout: float | None = 30.0) -> object:
    """The id of the ``index``-th child of ``sup`` (start order)."""
    children = which_children(sup, timeout=timeout)
    if not 0 <= index < len(children):
        raise SupervisorError("not_found")
    return children[index].id


def suspend(pid: Pid, timeout: float = 5.0) -> None:
    """``otp.sys.suspend``: the behaviour process serves only system
    messages until :func:`resume`."""
    _suspend(pid, timeout=timeout)


def resume(pid: Pid, timeout: float = 5.0) -> None:
    """``otp.sys.resume``: the suspended process handles what queued meanwhile."""
    _resume(pid, timeout=timeout)
