"""``otp top``: the observer in a terminal (textual), usable over SSH in
80x24.

Tabs: the supervision trees (Enter opens a process, Space folds, ``k``
kills, ``R`` restarts a child), the processes table (``s`` sorts by the
next key, ``d`` reverses, ``[``/``]`` page, ``/`` searches, a click on a
header sorts by it), the names (registered names, keyed registries, pg
groups), and the log reports with a filter.  A drill-down screen shows
``process_info``, links and monitors (Enter opens one) and a behaviour's
state.  Every action asks first.

The view reads the observer's web server (see :mod:`._top_source`), so
the same code serves ``python -m otp top NODE`` from another shell
(:func:`._top_cli.main`, attaching as ``python -m otp observer`` does) and
a program that shows its own node (:func:`._top_cli.top`).  It redraws on the server's events:
a tree event refetches the tree, the end of each collector round (once a
second while the view is open) refetches what the open tab shows.  A
request in flight is never doubled, and each has a timeout.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static, TabbedContent, TabPane, Tree

from ._top_format import log_cells, log_matches, names_text, row_cells
from ._top_source import HttpSource, SourceError, short_pid
from ._top_tree import SupTree
from ._top_views import COLUMNS, SORTS, ConfirmScreen, DetailScreen, ProcTable

__all__ = ["TopApp", "PAGE_SIZE"]

#: Rows per page of the processes table.
PAGE_SIZE = 50
#: Log entries the view keeps.
LOG_KEEP = 1000
#: Seconds without a round event after which the open tab is refetched anyway.
STALE_AFTER = 1.5


class TopApp(App[None]):
    """The terminal observer over ``source``."""

    TITLE = "otp top"
    CSS = """
    #status { height: 1; background: $boost; }
    TabPane { padding: 0; }
    #search { display: none; }
    #search.shown { display: block; }
    """
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("1", "tab('tree')", "tree", show=False),
        Binding("2", "tab('processes')", "processes", show=False),
        Binding("3", "tab('names')", "names", show=False),
        Binding("4", "tab('logs')", "logs", show=False),
    ]

    def __init__(self, source: HttpSource, node: str = "") -> None:
        super().__init__()
        self.source = source
        self.node = node
        self.sort = "pid"
        self.descending = False
        self.offset = 0
        self.search: str | None = None
        self.total = 0
        self.tree_data: dict[str, Any] | None = None
        self.page_data: dict[str, Any] | None = None
        self.log_entries: collections.deque[dict[str, Any]] = collections.deque(maxlen=LOG_KEEP)
        self.log_last = 0
        self.log_filter = ""
        self.connected = False
        self._loading: set[str] = set()
        self._dirty: set[str] = set()
        self._last_round = 0.0

    @property
    def home(self) -> Screen[Any]:
        """The main screen, whichever screen shows (a drill-down, a question)."""
        return self.screen_stack[0]

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Static("connecting…", id="status")
        with TabbedContent(initial="tree", id="tabs"):
            with TabPane("1 Tree", id="tree"):
                yield SupTree("node", id="suptree")
            with TabPane("2 Processes", id="processes"):
                yield Input(placeholder="search (Enter; empty: all)", id="search")
                yield ProcTable(id="proctable", cursor_type="row", zebra_stripes=True)
            with TabPane("3 Names", id="names"):
                with VerticalScroll():
                    yield Static("", id="namestext")
            with TabPane("4 Logs", id="logs"):
                yield Input(placeholder="filter: an OS pid, or text", id="logfilter")
                yield DataTable(id="logtable", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.home.query_one(ProcTable)
        for key, header in COLUMNS:
            table.add_column(header, key=key)
        logtable = self.home.query_one("#logtable", DataTable)
        for key, header in (("at", "TIME"), ("kind", "KIND"), ("who", "WHO"), ("text", "WHAT")):
            logtable.add_column(header, key=key)
        self.run_worker(self._follow_events(), group="events", exclusive=True)
        self.set_interval(1.0, self._tick)
        self.home.query_one(SupTree).focus()

    async def on_unmount(self) -> None:
        await self.source.close()

    # ------------------------------------------------------------ loading

    async def _follow_events(self) -> None:
        """Follow the server's events for as long as the view runs."""
        while True:
            try:
                async for event in self.source.events():
                    self._event(event)
            except Exception as exc:  # noqa: BLE001 - shown, then retried
                self.connected = False
                self._status(f"no event stream ({type(exc).__name__}); retrying")
            else:
                self.connected = False
                self._status("the event stream ended; retrying")
            await asyncio.sleep(2.0)  # a retry pause in the UI, not a test wait

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind in ("hello", "reset"):
            self.connected = True
            for what in ("tree", "processes", "logs", "names"):
                self.request(what)
        elif kind == "tree":
            self.request("tree")
        elif kind == "round":
            self._last_round = time.monotonic()
            self._refresh_open_tab()
        elif kind == "log" and isinstance(event.get("entry"), dict):
            entry = event["entry"]
            if entry.get("seq", 0) > self.log_last:
                self.log_last = entry["seq"]
                self.log_entries.append(entry)
                if self.home.query_one(TabbedContent).active == "logs":
                    self._draw_logs()

    def _tick(self) -> None:
        if time.monotonic() - self._last_round > STALE_AFTER:
            self._refresh_open_tab()

    def _refresh_open_tab(self) -> None:
        active = self.home.query_one(TabbedContent).active
        if active in ("processes", "names"):
            self.request(active)

    def request(self, what: str) -> None:
        """Fetch ``what`` (tree, processes, names, logs) unless a fetch of
        it is in flight; then once more after it."""
        if what in self._loading:
            self._dirty.add(what)
            return
        self._loading.add(what)
        self.run_worker(self._load(what), group=what)

    async def _load(self, what: str) -> None:
        try:
            if what == "tree":
                self.tree_data = await self.source.tree()
                self._draw_tree()
            elif what == "processes":
                self.page_data = await self.source.processes(
                    self.sort, self.descending, self.offset, PAGE_SIZE, self.search
                )
                self._draw_processes()
            elif what == "names":
                self._draw_names(await self.source.names())
            elif what == "logs":
                page = await self.source.logs(after=self.log_last)
                for entry in page.get("entries", []):
                    if entry.get("seq", 0) > self.log_last:
                        self.log_entries.append(entry)
                self.log_last = max(self.log_last, int(page.get("last", 0)))
                self._draw_logs(tapped=bool(page.get("tapped", True)))
        except SourceError as exc:
            self._status(f"{what}: {exc}")
        except (NoMatches, IndexError):
            return  # the app is closing
        finally:
            self._loading.discard(what)
            if what in self._dirty:
                self._dirty.discard(what)
                self.request(what)

    def _status(self, extra: str = "") -> None:
        page = self.page_data or {}
        parts = [self.node or "node", "live" if self.connected else "offline"]
        if page:
            parts.append(f"{page.get('processes', 0)} processes, round {page.get('round', 0)}")
        if extra:
            parts.append(extra)
        self.home.query_one("#status", Static).update(" | ".join(parts))

    # ------------------------------------------------------------ tree

    def _draw_tree(self) -> None:
        self.home.query_one(SupTree).show(self.tree_data or {"roots": []})
        self._status()

    @on(Tree.NodeSelected, "#suptree")
    def _tree_selected(self, event: Tree.NodeSelected[dict[str, Any]]) -> None:
        if event.node.data and event.node.data.get("pid"):
            self.push_screen(DetailScreen(event.node.data["pid"]))

    # ------------------------------------------------------------ processes

    def _draw_processes(self) -> None:
        table = self.home.query_one(ProcTable)
        page = self.page_data or {}
        rows = page.get("rows", [])
        self.total = int(page.get("total", 0))
        row_at = table.cursor_row
        table.clear()
        for row in rows:
            table.add_row(*row_cells(row), key=row.get("pid"))
        if rows:
            table.move_cursor(row=min(row_at, len(rows) - 1))
        arrow = "↓" if self.descending else "↑"
        last = min(self.offset + PAGE_SIZE, self.total)
        search = f", search {self.search!r}" if self.search else ""
        self._status(f"sort {self.sort} {arrow}, {self.offset + 1 if rows else 0}-{last} of {self.total}{search}")

    def action_next_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self.offset = 0
        self.request("processes")

    def action_reverse_sort(self) -> None:
        self.descending = not self.descending
        self.offset = 0
        self.request("processes")

    def action_page(self, step: int) -> None:
        offset = self.offset + step * PAGE_SIZE
        if 0 <= offset < max(self.total, 1):
            self.offset = offset
            self.request("processes")

    def action_search(self) -> None:
        box = self.home.query_one("#search", Input)
        box.add_class("shown")
        box.focus()

    @on(Input.Submitted, "#search")
    def _searched(self, event: Input.Submitted) -> None:
        self.search = event.value.strip() or None
        self.offset = 0
        event.input.remove_class("shown")
        self.home.query_one(ProcTable).focus()
        self.request("processes")

    @on(DataTable.HeaderSelected, "#proctable")
    def _header(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key == self.sort:
            self.descending = not self.descending
        else:
            self.sort, self.descending = key, key not in ("pid", "name", "status", "behaviour", "current_function")
        self.offset = 0
        self.request("processes")

    @on(DataTable.RowSelected, "#proctable")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.push_screen(DetailScreen(str(event.row_key.value)))

    # ------------------------------------------------------------ names, logs

    def _draw_names(self, view: dict[str, Any]) -> None:
        self.home.query_one("#namestext", Static).update(names_text(view))

    def _draw_logs(self, tapped: bool = True) -> None:
        table = self.home.query_one("#logtable", DataTable)
        table.clear()
        wanted = self.log_filter.strip().lower()
        for entry in self.log_entries:
            if wanted and not log_matches(entry, wanted):
                continue
            table.add_row(*log_cells(entry), key=str(entry.get("seq")))
        if not tapped:
            self._status("logs: no report tap (call otp.observer.install_report_tap() in the root)")

    @on(Input.Changed, "#logfilter")
    def _log_filter(self, event: Input.Changed) -> None:
        self.log_filter = event.value
        self._draw_logs()

    def show_logs_of(self, pid: str) -> None:
        """The logs tab, filtered to ``pid``."""
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.home.query_one(TabbedContent).active = "logs"
        self.home.query_one("#logfilter", Input).value = short_pid(pid)

    # ------------------------------------------------------------ actions

    def action_tab(self, tab: str) -> None:
        self.home.query_one(TabbedContent).active = tab

    @on(TabbedContent.TabActivated)
    def _tab_shown(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id:
            self.request(event.pane.id)
            main = {"tree": SupTree, "processes": ProcTable, "logs": "#logtable"}.get(event.pane.id)
            if main is not None:
                self.home.query_one(main).focus()  # type: ignore[call-overload]

    def _selected(self) -> dict[str, Any] | None:
        """The process or child under the cursor of the focused view."""
        focused = self.focused
        if isinstance(focused, SupTree):
            node = focused.cursor_node
            return node.data if node is not None and node.data else None
        if isinstance(focused, ProcTable) and focused.row_count:
            key = focused.coordinate_to_cell_key(focused.cursor_coordinate).row_key.value
            return {"pid": key} if key else None
        return None

    def action_act_selected(self, verb: str) -> None:
        """Kill, suspend or resume the process under the cursor, once confirmed."""
        selected = self._selected()
        if selected and selected.get("pid"):
            (self.confirm_kill if verb == "kill" else lambda pid: self.confirm_action(verb, pid))(selected["pid"])

    def action_restart_selected(self) -> None:
        selected = self._selected()
        if not selected or not selected.get("supervisor") or selected.get("index") is None:
            self.notify("select a child of a supervisor", severity="warning")
            return
        sup, index, child_id = selected["supervisor"], selected["index"], selected.get("child_id")

        def done(answer: str | None) -> None:
            if answer is not None:
                self._act(f"restart {child_id}", self.source.restart(sup, index, child_id))

        self.push_screen(ConfirmScreen(f"Restart child {child_id} of supervisor {short_pid(sup)}?"), done)

    def confirm_kill(self, pid: str) -> None:
        def done(reason: str | None) -> None:
            if reason is not None:
                self._act(f"kill {short_pid(pid)}", self.source.kill(pid, reason))

        self.push_screen(ConfirmScreen(f"Kill process {short_pid(pid)}? Exit reason:", ask_reason=True), done)

    def confirm_action(self, verb: str, pid: str) -> None:
        def done(answer: str | None) -> None:
            if answer is not None:
                call = self.source.suspend(pid) if verb == "suspend" else self.source.resume(pid)
                self._act(f"{verb} {short_pid(pid)}", call)

        self.push_screen(ConfirmScreen(f"{verb.capitalize()} process {short_pid(pid)}?"), done)

    def _act(self, what: str, call: Any) -> None:
        async def run() -> None:
            try:
                await call
            except SourceError as exc:
                self.notify(f"{what}: {exc}", severity="error")
                return
            self.notify(f"{what}: done")
            self.request("tree")
            self.request("processes")

        self.run_worker(run(), group="actions")
