"""What the observer's collector answers and sends: frozen records only.

Every record travels between processes (the collector, the web server, a
terminal front end), so each is a frozen dataclass of plain values, pids
and other records.  Exit reasons and process states arrive as text already
rendered by :func:`otp.observer.safe_repr` (a reason can hold a user's
object, whose ``repr`` must not run in a viewer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .._pid import Pid

__all__ = [
    "Behaviour",
    "ChildStatus",
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
    "SORT_KEYS",
]

#: What drives a process, as its supervisor's child spec says: sys requests
#: (``otp.sys.get_state``) are sent only to these.
Behaviour = Literal["gen_server", "gen_statem", "supervisor"]
ChildStatus = Literal["running", "restarting", "stopped"]


@dataclass(frozen=True, slots=True)
class ProcessRow:
    """One live process of the node, as of its last sample.

    Fields the process itself reports (``status`` to ``current_function``)
    are None until it was sampled once (a round samples as many processes
    as its time budget allows, the ones on a viewed page first) or while
    it cannot answer (SIGSTOP)."""

    pid: Pid
    #: A name the node registry holds for it (None: none).
    name: object
    #: Its supervisor and child id, if the collector follows that tree.
    supervisor: Pid | None
    child_id: object
    behaviour: Behaviour | None
    #: ``module.Class`` of a behaviour's callback module.
    callback: str | None
    #: ``'running'``, ``'waiting'``, ``'suspended'``, ``'exiting'``, or
    #: ``'unknown'`` before the first sample.
    status: str
    message_queue_len: int | None
    #: Bytes resident (RSS), read with each sample.
    rss: int | None
    #: Bytes only this process holds (USS); read for a few processes per
    #: round (it costs about a millisecond), None until then.
    uss: int | None
    messages_in: int | None
    messages_out: int | None
    #: Mailbox frames per second in and out, between its last two samples.
    in_rate: float | None
    out_rate: float | None
    #: Restarts of its supervisor child slot the collector has seen.
    restarts: int
    #: Wall-clock time the OS process started.
    started_at: float
    current_function: str | None
    links: int | None
    monitors: int | None
    trap_exit: bool | None
    #: Wall-clock time of its last sample (None: never sampled).
    sampled_at: float | None


#: Keys :func:`otp.observer.processes` sorts by.
SORT_KEYS: tuple[str, ...] = (
    "pid",
    "name",
    "status",
    "message_queue_len",
    "rss",
    "uss",
    "in_rate",
    "out_rate",
    "messages_in",
    "messages_out",
    "restarts",
    "started_at",
    "behaviour",
    "current_function",
)


@dataclass(frozen=True, slots=True)
class ProcessPage:
    """A page of the process table, sorted by ``sort``."""

    rows: tuple[ProcessRow, ...]
    #: Rows matching the search, over every page.
    total: int
    #: Every live process the collector knows.
    processes: int
    offset: int
    limit: int
    sort: str
    descending: bool
    #: The round the rows come from, and when it ended (wall clock).
    round: int
    at: float


@dataclass(frozen=True, slots=True)
class Sample:
    """One point of a process's history (kept for named and supervised
    processes and those viewed lately)."""

    at: float
    message_queue_len: int | None
    rss: int | None
    in_rate: float | None
    out_rate: float | None


@dataclass(frozen=True, slots=True)
class NodeSample:
    """One point of the node's history: one per round."""

    at: float
    processes: int
    rss: int
    in_rate: float
    out_rate: float
    restarts: int


@dataclass(frozen=True, slots=True)
class TreeNode:
    """A supervisor or a child in a supervision tree.  A supervisor's
    ``children`` are in start order; a dynamic supervisor's children have
    no id (``child_id`` None) and beyond :data:`MAX_CHILDREN
    <otp.observer._tree.MAX_CHILDREN>` of them only the count shows
    (``more_children``)."""

    child_id: object
    pid: Pid | None
    name: object
    type: Literal["worker", "supervisor"]
    status: ChildStatus
    behaviour: Behaviour | None
    callback: str | None
    restarts: int
    #: The last exit reason seen, rendered (None: none seen).
    last_exit: str | None
    last_exit_at: float | None
    children: tuple[TreeNode, ...] = ()
    more_children: int = 0
    #: True for a simple_one_for_one or dynamic supervisor.
    dynamic: bool = False
    #: For a root: why the collector follows it (``'kernel'``,
    #: ``'application shop'``, ``'added'``).
    origin: str | None = None


@dataclass(frozen=True, slots=True)
class TreeSnapshot:
    """Every supervision tree the collector follows.  ``version`` grows
    with every change."""

    roots: tuple[TreeNode, ...]
    version: int
    at: float


@dataclass(frozen=True, slots=True)
class NameEntry:
    """A name the node registry holds, and its holder."""

    name: object
    pid: Pid


@dataclass(frozen=True, slots=True)
class RegistryView:
    """A keyed registry (``otp.Registry``): its first entries as
    ``(key, pid, value text)``; ``count`` is the number of entries."""

    name: object
    pid: Pid
    count: int
    entries: tuple[tuple[object, Pid, str], ...]
    truncated: bool


@dataclass(frozen=True, slots=True)
class GroupView:
    """A pg group of a scope (``None``: the node's default scope)."""

    scope: object
    group: object
    members: tuple[Pid, ...]


@dataclass(frozen=True, slots=True)
class NamesView:
    """What :func:`otp.observer.names` answers, read at ``at``."""

    names: tuple[NameEntry, ...]
    registries: tuple[RegistryView, ...]
    groups: tuple[GroupView, ...]
    at: float


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A log record of the node: crash, supervisor and progress reports
    (``kind``) with their structured fields, and other records at WARNING
    and above (``kind`` None)."""

    seq: int
    at: float
    level: str
    logger: str
    kind: str | None
    pid: Pid | None
    name: str | None
    supervisor: str | None
    child_id: str | None
    reason: str | None
    message: str


@dataclass(frozen=True, slots=True)
class LogPage:
    """What :func:`otp.observer.logs` answers, oldest entry first."""

    entries: tuple[LogEntry, ...]
    #: The highest ``seq`` held (ask again with ``after=last`` for more).
    last: int
    #: False while no report tap feeds the collector (see
    #: :func:`otp.observer.install_report_tap`).
    tapped: bool


@dataclass(frozen=True, slots=True)
class ProcessDetail:
    """A drill-down: what ``process_info`` says, the process's row and
    history, and for a behaviour process its state, rendered safely."""

    pid: Pid
    alive: bool
    row: ProcessRow | None
    #: ``otp.process_info`` items, rendered (links as pids, memory...).
    info: dict[str, object]
    links: tuple[Pid, ...]
    monitors: tuple[Pid, ...]
    monitored_by: tuple[Pid, ...]
    #: Names the collector knows for the pids above.
    names: dict[Pid, object]
    history: tuple[Sample, ...]
    #: ``otp.sys.get_state`` rendered by safe_repr, or why not.
    state: str | None
    state_error: str | None


@dataclass(frozen=True, slots=True)
class MetricSample:
    """One series of a :class:`MetricFamily`: its labels and value."""

    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True, slots=True)
class MetricFamily:
    """One Prometheus metric family (``kind`` ``'counter'`` or ``'gauge'``)."""

    name: str
    kind: Literal["counter", "gauge"]
    help: str
    samples: tuple[MetricSample, ...]


@dataclass(frozen=True, slots=True)
class CollectorStats:
    """The collector's own costs."""

    rows: int
    watchers: int
    holders: int
    rounds: int
    last_round_s: float
    sampled_last_round: int
    #: USS of the collector's OS process, in bytes.
    memory: int
    supervisors: int
    log_entries: int


# ------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class ObserverEvent:
    """What a watcher (:func:`otp.observer.watch`) receives: one of the
    subclasses below."""


@dataclass(frozen=True, slots=True)
class TreeChanged(ObserverEvent):
    """A supervision tree changed (``event``: ``'started'``, ``'exited'``,
    ``'shutdown'``, ``'followed'``, ``'dropped'``)."""

    version: int
    supervisor: Pid
    event: str
    child_id: object
    pid: Pid | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class ProcessesRefreshed(ObserverEvent):
    """A round ended: the process table and the metrics are fresh."""

    round: int
    at: float
    processes: int


@dataclass(frozen=True, slots=True)
class LogAdded(ObserverEvent):
    """A log entry arrived (see :class:`LogEntry`)."""

    entry: LogEntry
