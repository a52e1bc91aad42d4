"""One round of the collector: list the processes, sample as many as the
time budget allows, read names, feed the metrics.

Cost per round, measured on 2 loaded cores: listing is one request to the
zygote and a ``/proc`` read per process (about 20 us each); a sample is a
question to the process's signal thread (about 0.25 ms with
:data:`~otp.observer._gather.WINDOW` in flight) and an RSS read; a USS read
is about 1 ms, so only :attr:`Config.uss_per_round` are read per round.
Processes on a page somebody viewed lately are sampled first, so a viewed
page is fresh every round even among 10,000 processes.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass

from .. import _oslib, _process
from .._pid import Pid
from .._process_info import processes
from ..registry._names import registry_client
from ..registry._protocol import Snapshot
from ._gather import gather_states, read_rss
from ._metrics import Metrics
from ._records import GroupView, NameEntry, NamesView, NodeSample, RegistryView
from ._saferepr import safe_repr
from ._table import Position, Table
from ._tree import Forest

log = logging.getLogger("otp.observer")

__all__ = ["Config", "Sampler"]

#: Entries of one keyed registry a names view shows.
REGISTRY_ENTRIES = 200
#: Rounds between readings of the node's names when no process appeared.
NAMES_EVERY = 10


@dataclass(frozen=True)
class Config:
    """How the collector works.  Seconds unless said."""

    #: Between rounds while somebody looks.
    interval: float = 1.0
    #: Time a round may spend asking processes (the rest waits for the next).
    sample_budget: float = 0.2
    #: USS reads per round (1-2 ms each: the kernel walks the process's
    #: page tables), the rows viewed lately first.
    uss_per_round: int = 2
    #: A round never takes more than this share of one core: the next one
    #: starts no sooner than ``round time / max_share`` after the last.
    max_share: float = 0.25
    #: Rounds go on this long after the last request of a viewer that does
    #: not watch (a Prometheus scrape, a one-off call).
    linger: float = 30.0
    #: With no holder, watcher or request for this long, the collector exits.
    idle_timeout: float = 120.0
    #: Log entries kept.
    log_entries: int = 2000
    #: Points of the node's history (one per round).
    node_history: int = 600


class Sampler:
    """The process table, names, metrics and history, refreshed by rounds."""

    def __init__(self, config: Config, table: Table, metrics: Metrics) -> None:
        self.config = config
        self.table = table
        self.metrics = metrics
        self.names: dict[Pid, object] = {}
        self.node_history: deque[NodeSample] = deque(maxlen=config.node_history)
        self.last_seconds = 0.0
        self.last_sampled = 0
        self.restarts_seen = 0

    def run(self, forest: Forest) -> float:
        """One round; returns the seconds it took."""
        start = time.monotonic()
        table = self.table
        added, _ = table.sync(processes())
        if added or table.round % NAMES_EVERY == 0:
            self._read_names()  # a name changes holder with a new process, or rarely
        forest.names = self.names
        positions = forest.positions()
        labelled = [pid for pid in positions if forest.label_of(pid, positions) is not None]
        table.keep_history([*self.names, *labelled])
        order = table.to_sample()
        states = gather_states(order, start + self.config.sample_budget)
        now, mono = time.time(), time.monotonic()
        for pid, state in states.items():
            row = table.rows.get(pid)
            if row is None:
                continue
            if state is None:
                del table.rows[pid]  # gone since the listing
                continue
            row.update(state, read_rss(pid.ospid), now, mono)
        self._read_uss()
        table.round += 1
        table.round_at = now
        self.last_sampled = len(states)
        self._count(forest, positions, states)
        self.last_seconds = time.monotonic() - start
        return self.last_seconds

    def _read_names(self) -> None:
        try:
            snapshot = registry_client(None).request("snapshot")
        except Exception as exc:  # noqa: BLE001 - the registry restarting: keep the last names
            log.debug("observer: reading names failed: %r", exc)
            return
        if isinstance(snapshot, Snapshot):
            names: dict[Pid, object] = {}
            for entry in snapshot.entries:
                if entry.pid in self.table.rows:
                    names.setdefault(entry.pid, entry.key)
            self.names = names

    def _read_uss(self) -> None:
        table = self.table
        rows = sorted(
            (r for r in table.rows.values() if r.sampled_at is not None),
            key=lambda r: (r.focus < table.round - 1, r.uss_round),
        )
        for row in rows[: self.config.uss_per_round]:
            memory = _oslib.proc_memory(row.pid.ospid)
            if memory is not None:
                row.uss = memory.uss
                row.uss_round = table.round

    def label_of(self, forest: Forest, pid: Pid, positions: dict[Pid, Position]) -> str | None:
        """The metrics label of ``pid``: its name, else its place in a tree."""
        name = self.names.get(pid)
        if name is not None:
            return name if isinstance(name, str) else safe_repr(name, limit=120, depth=3)
        return forest.label_of(pid, positions)

    def _count(self, forest: Forest, positions: dict[Pid, Position], states: dict) -> None:
        table = self.table
        live: set[str] = set()
        rss_total = 0
        in_rate = out_rate = 0.0
        for pid, row in table.rows.items():
            rss_total += row.rss or 0
            in_rate += row.in_rate or 0.0
            out_rate += row.out_rate or 0.0
            label = self.label_of(forest, pid, positions)
            if label is None:
                continue
            live.add(label)
            if pid in states:
                pos = positions.get(pid)
                self.metrics.sampled(
                    label,
                    pid,
                    row.messages_in,
                    row.messages_out,
                    row.queue,
                    row.rss,
                    row.uss,
                    pos[2] if pos is not None else 0,
                )
        self.metrics.round_done(len(table.rows), rss_total, self.last_seconds, len(table.rows), live)
        self.node_history.append(
            NodeSample(table.round_at, len(table.rows), rss_total, in_rate, out_rate, self.restarts_seen)
        )

    # ------------------------------------------------------------ names view

    def names_view(self) -> NamesView:
        """Names, keyed registries (their first entries) and pg groups of
        every scope, read now (a request per registry process)."""
        by_uid = {pid.uid: pid for pid in self.table.rows}
        registries: list[RegistryView] = []
        groups: list[GroupView] = []
        try:
            node = registry_client(None).request("snapshot")
        except Exception:  # noqa: BLE001 - restarting registry: nothing now
            node = None
        if isinstance(node, Snapshot):
            groups.extend(GroupView(None, g, tuple(m)) for g, m in node.groups.items())
        base = _process.current().node.dir
        for entry in sorted(os.listdir(base)):
            if not entry.startswith("reg-") or entry.endswith("-pub"):
                continue
            try:
                pid = by_uid.get(int(entry[4:], 16))
            except ValueError:
                continue
            if pid is None:
                continue
            view = self._registry_view(pid)
            if view is None:
                continue
            snapshot, registry = view
            if registry is not None:
                registries.append(registry)
            groups.extend(GroupView(self.names.get(pid, pid), g, tuple(m)) for g, m in snapshot.groups.items())
        names = tuple(NameEntry(name, pid) for pid, name in self.names.items())
        return NamesView(names, tuple(registries), tuple(groups), time.time())

    def _registry_view(self, pid: Pid) -> tuple[Snapshot, RegistryView | None] | None:
        try:
            client = registry_client(pid)
            count = client.request("count", timeout=2.0)
            snapshot = client.request("snapshot", timeout=2.0)
        except Exception:  # noqa: BLE001 - gone or busy: left out this time
            return None
        if not isinstance(snapshot, Snapshot):
            return None
        entries = tuple(
            (e.key, e.pid, safe_repr(e.value, limit=200, depth=3)) for e in snapshot.entries[:REGISTRY_ENTRIES]
        )
        registry = None
        if snapshot.entries or not snapshot.groups:
            registry = RegistryView(
                self.names.get(pid, pid), pid, int(count), entries, len(snapshot.entries) > len(entries)
            )
        return snapshot, registry
