"""The collector's process table: one row per live process, sampled in
rounds, sorted and paged on request.

A row holds the last sample of its process; rows of processes that are
gone are dropped when the process list no longer shows them.  History is
a ring buffer per row (:data:`HISTORY` samples), kept only for processes
worth a chart: named ones, supervised ones and those viewed lately, so that
10,000 anonymous processes cost one row each and no history.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .._pid import Pid
from .._signal_records import ProcessState
from ._gather import CLOCK_TICKS, _Stopped
from ._records import SORT_KEYS, Behaviour, ProcessPage, ProcessRow, Sample

__all__ = ["Table", "Row", "PageQuery", "HISTORY", "MAX_HISTORIES", "Position"]

#: Samples of history per process that keeps one.
HISTORY = 120
#: Rounds a process stays "viewed" after it was on a page someone asked for.
FOCUS_ROUNDS = 5
#: Processes with history at most, besides the viewed ones (a node of
#: 10,000 named processes keeps this many charts, about 10 MB).
MAX_HISTORIES = 500

#: (supervisor, child id, restarts, behaviour, callback) of a supervised process.
Position = tuple[Pid, object, int, Behaviour | None, str | None]


class Row:
    __slots__ = (
        "pid",
        "status",
        "queue",
        "rss",
        "uss",
        "messages_in",
        "messages_out",
        "in_rate",
        "out_rate",
        "started_at",
        "current_function",
        "links",
        "monitors",
        "trap_exit",
        "sampled_at",
        "sampled_mono",
        "history",
        "focus",
        "uss_round",
    )

    def __init__(self, pid: Pid, started_at: float) -> None:
        self.pid = pid
        self.status = "unknown"
        self.queue: int | None = None
        self.rss: int | None = None
        self.uss: int | None = None
        self.messages_in: int | None = None
        self.messages_out: int | None = None
        self.in_rate: float | None = None
        self.out_rate: float | None = None
        self.started_at = started_at
        self.current_function: str | None = None
        self.links: int | None = None
        self.monitors: int | None = None
        self.trap_exit: bool | None = None
        self.sampled_at: float | None = None
        self.sampled_mono = 0.0
        self.history: deque[Sample] | None = None
        self.focus = 0  # the last round it was viewed in
        self.uss_round = -1  # the round its USS was read in

    def update(self, state: ProcessState | _Stopped, rss: int | None, now: float, mono: float) -> None:
        if isinstance(state, _Stopped):
            self.status = "suspended"
        else:
            self.status = "exiting" if state.exiting else "waiting" if state.waiting else "running"
            elapsed = mono - self.sampled_mono
            if self.messages_in is not None and self.messages_out is not None and elapsed > 0:
                self.in_rate = max(0, state.messages_received - self.messages_in) / elapsed
                self.out_rate = max(0, state.messages_sent - self.messages_out) / elapsed
            self.queue = state.message_queue_len
            self.messages_in = state.messages_received
            self.messages_out = state.messages_sent
            self.current_function = state.current_function
            self.links = len(state.links)
            self.monitors = len(state.monitors)
            self.trap_exit = state.trap_exit
        self.rss = rss
        self.sampled_at = now
        self.sampled_mono = mono
        if self.history is not None:
            self.history.append(Sample(now, self.queue, self.rss, self.in_rate, self.out_rate))


def _sort_value(key: str, names: dict[Pid, object], positions: dict[Pid, Position]) -> Callable[[Row], Any]:
    """A sort key putting rows without a value last in either direction
    (the caller reverses for descending order, so 'missing' is 0 then)."""
    if key == "pid":
        return lambda r: r.pid.ospid
    if key == "name":
        return lambda r: (r.pid not in names, str(names.get(r.pid, "")))
    if key == "restarts":
        return lambda r: positions[r.pid][2] if r.pid in positions else -1
    if key == "behaviour":
        return lambda r: str(positions[r.pid][3] or "") if r.pid in positions else ""
    if key in ("status", "current_function"):
        return lambda r: str(getattr(r, key) or "")
    attr = {"message_queue_len": "queue"}.get(key, key)
    return lambda r: (getattr(r, attr) is not None, getattr(r, attr) or 0)


@dataclass(frozen=True, slots=True)
class PageQuery:
    """What a page of the processes table asks for: the arguments of the
    collector's ``processes`` operation, which viewers send positionally."""

    sort: str = "pid"
    descending: bool = False
    offset: int = 0
    limit: int = 50
    search: str | None = None


class Table:
    """The rows by pid, and the node's history."""

    def __init__(self, boot: float) -> None:
        self.rows: dict[Pid, Row] = {}
        self.boot = boot
        self.round = 0
        self.round_at = 0.0

    def sync(self, pids: Iterable[Pid]) -> tuple[list[Pid], list[Pid]]:
        """Make the rows those of ``pids``: (added, dropped)."""
        live = set(pids)
        dropped = [pid for pid in self.rows if pid not in live]
        for pid in dropped:
            del self.rows[pid]
        added = [pid for pid in live if pid not in self.rows]
        for pid in added:
            self.rows[pid] = Row(pid, self.boot + pid.start / CLOCK_TICKS)
        return added, dropped

    def keep_history(self, pids: Iterable[Pid]) -> None:
        """Rows of ``pids`` (the first :data:`MAX_HISTORIES`) and those viewed
        lately keep history from now on; the others drop theirs."""
        wanted: set[Pid] = set()
        for pid in pids:
            if len(wanted) >= MAX_HISTORIES:
                break
            wanted.add(pid)
        for pid, row in self.rows.items():
            if pid in wanted or row.focus >= self.round - FOCUS_ROUNDS:
                if row.history is None:
                    row.history = deque(maxlen=HISTORY)
            elif row.history is not None:
                row.history = None

    def to_sample(self) -> list[Pid]:
        """Pids in the order a round should ask them: viewed lately first,
        then never sampled, then the longest unsampled."""
        recent = self.round - FOCUS_ROUNDS
        rows = sorted(self.rows.values(), key=lambda r: (r.focus < recent, r.sampled_at is not None, r.sampled_mono))
        return [r.pid for r in rows]

    def focus(self, pids: Iterable[Pid]) -> None:
        for pid in pids:
            row = self.rows.get(pid)
            if row is not None:
                row.focus = self.round
                if row.history is None:
                    row.history = deque(maxlen=HISTORY)

    def history(self, pid: Pid) -> tuple[Sample, ...]:
        row = self.rows.get(pid)
        return tuple(row.history) if row is not None and row.history is not None else ()

    # ------------------------------------------------------------ reading

    def record(self, row: Row, names: dict[Pid, object], positions: dict[Pid, Position]) -> ProcessRow:
        pos = positions.get(row.pid)
        return ProcessRow(
            pid=row.pid,
            name=names.get(row.pid),
            supervisor=pos[0] if pos is not None and pos[0] != row.pid else None,
            child_id=pos[1] if pos is not None else None,
            behaviour=pos[3] if pos is not None else None,
            callback=pos[4] if pos is not None else None,
            status=row.status,
            message_queue_len=row.queue,
            rss=row.rss,
            uss=row.uss,
            messages_in=row.messages_in,
            messages_out=row.messages_out,
            in_rate=row.in_rate,
            out_rate=row.out_rate,
            restarts=pos[2] if pos is not None else 0,
            started_at=row.started_at,
            current_function=row.current_function,
            links=row.links,
            monitors=row.monitors,
            trap_exit=row.trap_exit,
            sampled_at=row.sampled_at,
        )

    def page(self, names: dict[Pid, object], positions: dict[Pid, Position], query: PageQuery) -> ProcessPage:
        """Rows ``offset`` to ``offset + limit`` of the table sorted by
        ``sort``, of those whose name, pid, function or callback contains
        ``search`` (the fields of ``query``).  ValueError for an unknown
        sort key."""
        sort, descending, search = query.sort, query.descending, query.search
        if sort not in SORT_KEYS:
            raise ValueError(f"unknown sort key {sort!r}; known: {', '.join(SORT_KEYS)}")
        offset = max(0, int(query.offset))
        limit = max(1, min(int(query.limit), 1000))
        rows: Iterable[Row] = self.rows.values()
        if search:
            needle = search.lower()
            rows = [r for r in rows if needle in _haystack(r, names, positions)]
        ordered = sorted(rows, key=_sort_value(sort, names, positions), reverse=descending)
        chosen = ordered[offset : offset + limit]
        self.focus(r.pid for r in chosen)
        return ProcessPage(
            rows=tuple(self.record(r, names, positions) for r in chosen),
            total=len(ordered),
            processes=len(self.rows),
            offset=offset,
            limit=limit,
            sort=sort,
            descending=descending,
            round=self.round,
            at=self.round_at,
        )


def _haystack(row: Row, names: dict[Pid, object], positions: dict[Pid, Position]) -> str:
    pos = positions.get(row.pid)
    parts = [str(row.pid.ospid), f"{row.pid.uid:016x}", str(names.get(row.pid, "")), row.current_function or ""]
    if pos is not None:
        parts.append(str(pos[1]))
        parts.append(pos[4] or "")
    return " ".join(parts).lower()
