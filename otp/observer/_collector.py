"""The node's observer collector: one :class:`otp.Service` per node.

It follows supervision trees by their events (:mod:`._follow`), keeps a
sampled table of every process (:mod:`._rounds`), the log reports a tap
relays (:mod:`._tap`), Prometheus counters (:mod:`._metrics`), and answers
viewers from memory.

It costs nothing when nobody looks.  Rounds run only while somebody
*watches* (receives its events) or asked something in the last
``linger`` seconds; with no watcher, no *holder* (a process keeping it
alive, as a web server does) and no request for ``idle_timeout`` seconds
it exits (``'normal'``: its supervisor, which starts it on demand, leaves
it stopped).  Supervisors forget a subscriber that exited.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from .. import _api, _oslib
from .._application import CONTROLLER
from .._errors import OTPError
from .._gen_server import Continue, NoReply, Stop
from .._pid import Pid, Ref
from .._reasons import DOWN
from .._service import DEFER, Service, ask, operation
from .._sys import get_status
from .._timers import TimerRef, cancel_timer, send_after
from ..registry._names import _names_of as names_of
from ._follow import Follower
from ._gather import boot_time
from ._inspect import INSPECTED, run_inspection
from ._metrics import Metrics
from ._records import (
    CollectorStats,
    LogAdded,
    LogEntry,
    LogPage,
    MetricFamily,
    NamesView,
    NodeSample,
    ObserverEvent,
    ProcessDetail,
    ProcessesRefreshed,
    ProcessPage,
    ProcessRow,
    TreeChanged,
    TreeSnapshot,
)
from ._rounds import Config, Sampler
from ._table import PageQuery, Table
from ._tap import REPORT, TAPPED, run_relay
from ._tree import Change

log = logging.getLogger("otp.observer")

__all__ = ["Collector", "COLLECTOR_NAME"]

#: The collector's registered name on its node.
COLLECTOR_NAME = "$otp_observer"
_ROUND = "$observer_round"
_IDLE = "$observer_idle"
_INSPECT_LATE = "$observer_inspect_late"
#: Rounds between two looks for applications started meanwhile (a call to
#: the application controller: a fifth of a round's cost among 30 processes).
APPS_EVERY = 5


def _keep(monitored: dict[Ref, Pid], pid: Pid) -> None:
    """Add ``pid`` to ``monitored`` (monitor ref -> pid) once: its exit removes it."""
    if pid not in monitored.values():
        monitored[_api.monitor(pid)] = pid


def _forget(monitored: dict[Ref, Pid], pid: Pid) -> None:
    for ref, kept in list(monitored.items()):
        if kept == pid:
            del monitored[ref]
            _api.demonitor(ref, flush=True)


@dataclass(slots=True)
class _Inspection:
    caller: Any
    pid: Pid
    inspector: Pid
    not_behaviour: bool
    late: TimerRef
    token: Ref


class Collector(Service):
    """See the module docstring; the operations are its API (wrapped by
    the functions of :mod:`otp.observer`)."""

    errors = (OTPError, ValueError, TypeError, LookupError)

    def init(self, config: Config | None) -> Any:
        self.config = config or Config()
        self.counters = Metrics()
        self.table = Table(boot_time())
        self.sampler = Sampler(self.config, self.table, self.counters)
        self.follower = Follower(self._tree_changed, self._counted)
        self.watchers: dict[Ref, Pid] = {}
        self.holders: dict[Ref, Pid] = {}
        self.entries: deque[LogEntry] = deque(maxlen=self.config.log_entries)
        self.log_seq = 0
        self.tapped = False
        self.round_timer: TimerRef | None = None
        self.last_request = time.monotonic()  # any request: the idle exit waits
        self.viewed_at = self.last_request  # a viewer's request: rounds go on for linger
        self.last_round_end = 0.0
        #: Inspector monitor ref -> the drill-down it serves; token -> ref.
        self.inspections: dict[Ref, _Inspection] = {}
        self.tokens: dict[Ref, Ref] = {}
        self.roots_added = 0
        self.apps: dict[str, Pid] = {}  # application -> its top supervisor, as followed
        self.relay = _api.spawn_link(run_relay, _api.self_())
        send_after(self.config.idle_timeout / 2, _api.self_(), (_IDLE,))
        return NoReply(None, Continue("discover"))

    def handle_continue(self, term: Any, state: Any) -> NoReply:
        self._discover()
        return NoReply(state)

    def _discover(self) -> None:
        """Roots: the kernel supervisor and every running application's."""
        try:
            kernel = get_status(CONTROLLER, timeout=2.0).parent
        except OTPError:
            kernel = None
        if kernel is not None:
            self.follower.add_root(kernel, "kernel", "kernel")
        self._discover_applications()

    def _discover_applications(self) -> None:
        """Follow the top supervisor of every running application (asked of
        the application controller with a short timeout; every
        :data:`APPS_EVERY` rounds, so an application started while somebody
        looks shows within that many seconds)."""
        try:
            apps = ask(CONTROLLER, "which_applications", timeout=1.0)
        except OTPError:
            return
        for app in apps:
            known = self.apps.get(app.name)
            if known is not None and known in self.follower.forest.sups:
                continue
            try:
                top = ask(CONTROLLER, "get_supervisor", app.name, timeout=1.0)
            except OTPError:
                continue
            if isinstance(top, Pid):
                self.apps[app.name] = top
                self.follower.add_root(top, f"application {app.name}", f"app:{app.name}")

    # ------------------------------------------------------------ events out

    def _tell(self, event: ObserverEvent) -> None:
        for pid in self.watchers.values():
            _api.send(pid, event)

    def _tree_changed(self, event: TreeChanged) -> None:
        self._tell(event)

    def _counted(self, change: Change) -> None:
        for sup, child, reason in change.exits:
            self.counters.exited(sup, child, reason)
        for sup, child in change.restarts:
            self.counters.restarted(sup, child)
            self.sampler.restarts_seen += 1

    # ------------------------------------------------------------ rounds

    def _active(self) -> bool:
        return bool(self.watchers) or time.monotonic() - self.viewed_at < self.config.linger

    def _schedule(self) -> None:
        if self.round_timer is not None or not self._active():
            return
        cost = self.sampler.last_seconds
        gap = max(self.config.interval, cost / self.config.max_share if self.config.max_share > 0 else 0.0)
        wait = max(0.0, self.last_round_end + gap - time.monotonic())
        self.round_timer = send_after(wait, _api.self_(), (_ROUND,))

    def _round(self) -> None:
        if self.table.round % APPS_EVERY == 0:  # an ask of the controller: not every round
            self._discover_applications()
        self.sampler.run(self.follower.forest)
        self.last_round_end = time.monotonic()
        self._tell(ProcessesRefreshed(self.table.round, self.table.round_at, len(self.table.rows)))

    def _fresh(self, viewer: bool = True) -> None:
        """Before answering from the table: a round now if it is stale and
        none is due soon (the first request after a quiet spell).  A
        ``viewer`` (a page, not a scrape) keeps rounds going for ``linger``."""
        self.last_request = time.monotonic()
        if viewer:
            self.viewed_at = self.last_request
        if self.table.round == 0 or (
            self.round_timer is None and time.monotonic() - self.last_round_end > 2 * self.config.interval
        ):
            self._round()
        self._schedule()

    # ------------------------------------------------------------ operations

    @operation
    def watch(self, pid: Pid) -> None:
        """Send ``pid`` every :class:`ObserverEvent` until it unwatches or exits."""
        _keep(self.watchers, pid)
        self._fresh()

    @operation
    def unwatch(self, pid: Pid) -> None:
        _forget(self.watchers, pid)

    @operation
    def hold(self, pid: Pid) -> None:
        """Keep the collector running while ``pid`` lives (or until release)."""
        _keep(self.holders, pid)

    @operation
    def release(self, pid: Pid) -> None:
        _forget(self.holders, pid)

    @operation
    def add_root(self, sup: Pid, label: str | None = None) -> None:
        """Follow the supervision tree under ``sup`` too; ``label`` names its
        root (default: its registered name, else ``root<n>``)."""
        if not isinstance(sup, Pid):
            raise TypeError(f"add_root takes a supervisor's pid, not {type(sup).__name__}")
        self.roots_added += 1
        if label is None:
            names = [n for n in names_of(sup) if isinstance(n, str)]
            label = names[0] if names else None
        self.follower.add_root(sup, label or "added", label or f"root{self.roots_added}")

    @operation
    def tree(self) -> TreeSnapshot:
        self.last_request = self.viewed_at = time.monotonic()
        self._schedule()
        forest = self.follower.forest
        forest.names = self.sampler.names
        return TreeSnapshot(forest.snapshot(), forest.version, time.time())

    @operation
    def processes(
        self,
        sort: str = "pid",
        descending: bool = False,
        offset: int = 0,
        limit: int = 50,
        search: str | None = None,
    ) -> ProcessPage:
        self._fresh()
        positions = self.follower.forest.positions()
        return self.table.page(self.sampler.names, positions, PageQuery(sort, descending, offset, limit, search))

    @operation
    def process_rows(self, pids: list[Pid]) -> tuple[ProcessRow | None, ...]:
        """The rows of ``pids`` (None for a process the table does not hold),
        in their order; they count as viewed, so the next rounds sample them
        first and keep their history."""
        self._fresh()
        positions = self.follower.forest.positions()
        rows = [self.table.rows.get(pid) if isinstance(pid, Pid) else None for pid in pids]
        self.table.focus(r.pid for r in rows if r is not None)
        return tuple(None if r is None else self.table.record(r, self.sampler.names, positions) for r in rows)

    @operation
    def refresh(self) -> int:
        """Run a round now; its number."""
        self.last_request = self.viewed_at = time.monotonic()
        self._round()
        self._schedule()
        return self.table.round

    @operation
    def names(self) -> NamesView:
        self._fresh()
        return self.sampler.names_view()

    @operation
    def logs(
        self,
        pid: Pid | None = None,
        kind: str | None = None,
        after: int = 0,
        limit: int = 200,
        search: str | None = None,
    ) -> LogPage:
        """Log entries after ``after`` (a ``seq``), oldest first, at most
        ``limit``: of ``pid`` (the process a report is about) and ``kind``
        (``'crash'``, ``'supervisor'``, ``'progress'``) if given."""
        self.last_request = time.monotonic()
        needle = search.lower() if search else None
        out = [
            e
            for e in self.entries
            if e.seq > after
            and (pid is None or e.pid == pid)
            and (kind is None or e.kind == kind)
            and (needle is None or needle in e.message.lower() or needle in (e.name or "").lower())
        ]
        return LogPage(tuple(out[-max(1, int(limit)) :]), self.log_seq, self.tapped)

    @operation
    def metrics(self) -> list[MetricFamily]:
        self._fresh(viewer=False)  # a scrape: one round if stale, no rounds between scrapes
        return self.counters.families()

    @operation
    def history(self) -> tuple[NodeSample, ...]:
        self.last_request = time.monotonic()
        return tuple(self.sampler.node_history)

    @operation
    def stats(self) -> CollectorStats:
        memory = _oslib.proc_memory(_api.self_().ospid)
        return CollectorStats(
            rows=len(self.table.rows),
            watchers=len(self.watchers),
            holders=len(self.holders),
            rounds=self.table.round,
            last_round_s=self.sampler.last_seconds,
            sampled_last_round=self.sampler.last_sampled,
            memory=memory.uss if memory is not None else 0,
            supervisors=len(self.follower.forest.sups),
            log_entries=len(self.entries),
        )

    @operation
    def process_detail(self, pid: Pid, state: bool = True, timeout: float = 2.0) -> ProcessDetail:
        """What ``pid`` is doing, its row and history, and if it is a
        behaviour process (its supervisor's spec says so) and ``state``, its
        state rendered by safe_repr; answered by an inspector process within
        ``timeout`` plus a second, whatever the inspected process does."""
        if not isinstance(pid, Pid):
            raise TypeError(f"process_detail takes a Pid, not {type(pid).__name__}")
        self.last_request = self.viewed_at = time.monotonic()
        self.table.focus([pid])
        positions = self.follower.forest.positions()
        behaviour = positions[pid][3] if pid in positions else None
        want_state = bool(state) and behaviour is not None
        token = _api.make_ref()
        inspector, ref = _api.spawn_monitor(run_inspection, _api.self_(), token, pid, want_state, float(timeout))
        late = send_after(float(timeout) + 1.0, _api.self_(), (_INSPECT_LATE, ref))
        self.inspections[ref] = _Inspection(self.caller, pid, inspector, bool(state) and behaviour is None, late, token)
        self.tokens[token] = ref
        return DEFER

    # ------------------------------------------------------------ messages

    def handle_info(self, msg: Any, state: Any) -> NoReply | Stop:
        if self.follower.handle(msg):
            return NoReply(state)
        if type(msg) is tuple and msg:
            tag = msg[0]
            if tag == _ROUND:
                self.round_timer = None
                if self._active():
                    self._round()
                self._schedule()
            elif tag == REPORT:
                self._report(msg[1])
            elif tag == TAPPED:
                self.tapped = True
            elif tag == INSPECTED:
                self._inspected(*msg[1:])
            elif tag == _INSPECT_LATE:
                self._inspection_failed(msg[1], "the inspection did not end in time (inspector killed)", late=True)
            elif tag == _IDLE:
                return self._idle(state)
            return NoReply(state)
        if isinstance(msg, DOWN):
            if self.watchers.pop(msg.ref, None) is None and self.holders.pop(msg.ref, None) is None:
                self._inspection_failed(msg.ref, f"the inspector exited: {msg.reason!r}", late=False)
        return NoReply(state)

    def _idle(self, state: Any) -> NoReply | Stop:
        quiet = time.monotonic() - self.last_request
        if not self.watchers and not self.holders and not self.inspections and quiet >= self.config.idle_timeout:
            return Stop("normal", state)
        send_after(self.config.idle_timeout / 2, _api.self_(), (_IDLE,))
        return NoReply(state)

    def _report(self, fields: dict[str, Any]) -> None:
        self.log_seq += 1
        entry = LogEntry(
            seq=self.log_seq,
            at=float(fields.get("at") or time.time()),
            level=str(fields.get("level", "")),
            logger=str(fields.get("logger", "")),
            kind=fields.get("kind") if isinstance(fields.get("kind"), str) else None,
            pid=fields.get("pid") if isinstance(fields.get("pid"), Pid) else None,
            name=fields.get("name"),
            supervisor=fields.get("supervisor"),
            child_id=fields.get("child_id"),
            reason=fields.get("reason"),
            message=str(fields.get("message", "")),
        )
        self.entries.append(entry)
        if entry.kind:
            self.counters.reported(entry.kind)
        self._tell(LogAdded(entry))

    def _inspected(
        self, token: Ref, alive: bool, items: dict, relations: tuple, text: str | None, error: str | None
    ) -> None:
        ref = self.tokens.get(token)
        job = self.inspections.pop(ref) if ref is not None and ref in self.inspections else None
        if job is None or ref is None:
            return
        del self.tokens[token]
        _api.demonitor(ref, flush=True)
        cancel_timer(job.late)
        if job.not_behaviour and error is None:
            error = "not known to be a behaviour process (a plain process would keep a system message forever)"
        self.answer(job.caller, self._detail(job.pid, alive, items, relations, text, error))

    def _inspection_failed(self, ref: Ref, why: str, late: bool) -> None:
        job = self.inspections.pop(ref, None)
        if job is None:
            return
        self.tokens.pop(job.token, None)
        if late:
            _api.demonitor(ref, flush=True)
            _api.exit(job.inspector, "kill")
        else:
            cancel_timer(job.late)
        self.answer(job.caller, self._detail(job.pid, _api.is_alive(job.pid), {}, ((), (), ()), None, why))

    def _detail(
        self, pid: Pid, alive: bool, items: dict, relations: tuple, text: str | None, error: str | None
    ) -> ProcessDetail:
        positions = self.follower.forest.positions()
        row = self.table.rows.get(pid)
        record = self.table.record(row, self.sampler.names, positions) if row is not None else None
        links, monitors, monitored_by = relations
        related = set(links) | set(monitors) | set(monitored_by)
        names = {p: self.sampler.names[p] for p in related if p in self.sampler.names}
        return ProcessDetail(
            pid=pid,
            alive=alive,
            row=record,
            info=items,
            links=tuple(links),
            monitors=tuple(monitors),
            monitored_by=tuple(monitored_by),
            names=names,
            history=self.table.history(pid),
            state=text,
            state_error=error,
        )
