"""The screens of ``otp top`` besides the main one: the drill-down into a
process, and the confirmation every action goes through."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from ._top_format import cut
from ._top_source import SourceError, short_pid

if TYPE_CHECKING:
    from ._top import TopApp

__all__ = ["COLUMNS", "SORTS", "ProcTable", "ConfirmScreen", "DetailScreen"]


#: The processes table's columns: (sort key, header).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("pid", "PID"),
    ("name", "NAME"),
    ("status", "STATUS"),
    ("message_queue_len", "MQ"),
    ("rss", "RSS"),
    ("in_rate", "IN/s"),
    ("out_rate", "OUT/s"),
    ("restarts", "RST"),
    ("behaviour", "BEHAVIOUR"),
    ("current_function", "FUNCTION"),
)
SORTS = [key for key, _ in COLUMNS]


class ProcTable(DataTable[Any]):
    BINDINGS = [
        Binding("s", "app.next_sort", "sort"),
        Binding("d", "app.reverse_sort", "reverse"),
        Binding("right_square_bracket", "app.page(1)", "next page"),
        Binding("left_square_bracket", "app.page(-1)", "prev page"),
        Binding("slash", "app.search", "search"),
        Binding("k", "app.act_selected('kill')", "kill"),
    ]


class ConfirmScreen(ModalScreen[str | None]):
    """Asks before an action; dismissed with the reason (or ``""``) on
    yes, None on no.  ``ask_reason`` shows an input for a kill's reason."""

    BINDINGS = [Binding("escape", "no", "cancel"), Binding("y", "yes", "yes", show=False)]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical { width: 60; height: auto; border: thick $warning; background: $surface; padding: 0 1; }
    ConfirmScreen Horizontal { height: auto; align: center middle; }
    ConfirmScreen Button { margin: 0 1; }
    """

    def __init__(self, question: str, ask_reason: bool = False) -> None:
        super().__init__()
        self.question = question
        self.ask_reason = ask_reason

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, id="question")
            if self.ask_reason:
                yield Input(value="kill", placeholder="exit reason", id="reason")
            with Horizontal():
                yield Button("Yes", variant="error", id="yes")
                yield Button("No", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_yes(self) -> None:
        reason = self.query_one("#reason", Input).value.strip() if self.ask_reason else ""
        self.dismiss(reason or ("kill" if self.ask_reason else ""))

    def action_no(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#yes")
    def _yes(self) -> None:
        self.action_yes()

    @on(Button.Pressed, "#no")
    def _no(self) -> None:
        self.action_no()

    @on(Input.Submitted, "#reason")
    def _submitted(self) -> None:
        self.action_yes()


class DetailScreen(Screen[None]):
    """One process: its process_info, links and monitors (Enter on one
    opens it), and a behaviour's state as the collector rendered it."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "back"),
        Binding("f", "refresh", "refresh"),
        Binding("k", "kill", "kill"),
        Binding("z", "suspend", "suspend"),
        Binding("u", "resume", "resume"),
        Binding("l", "logs", "logs"),
    ]
    DEFAULT_CSS = """
    DetailScreen #related { height: auto; max-height: 8; }
    DetailScreen #info, DetailScreen #state { height: auto; }
    """

    def __init__(self, pid: str) -> None:
        super().__init__()
        self.pid = pid
        self.detail: dict[str, Any] | None = None

    @property
    def top(self) -> TopApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static(f"process {short_pid(self.pid)}", id="title")
        with VerticalScroll():
            yield Static("asking the node…", id="info")
            yield OptionList(id="related")
            yield Static("", id="state")
        yield Footer()

    def on_mount(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        self._load()

    @work(exclusive=True, group="detail")
    async def _load(self) -> None:
        try:
            detail = await self.top.source.detail(self.pid)
        except SourceError as exc:
            self.query_one("#info", Static).update(Text(f"no answer: {exc}", style="red"))
            return
        self.detail = detail
        self._show(detail)

    def _show(self, detail: dict[str, Any]) -> None:
        row = detail.get("row") or {}
        head = Text()
        head.append(f"process {short_pid(self.pid)}", style="bold")
        if row.get("name"):
            head.append(f"  {row['name']}", style="cyan")
        if row.get("child_id"):
            head.append(f"  child {row['child_id']}")
        head.append("  alive" if detail.get("alive") else "  dead", style="green" if detail.get("alive") else "red")
        self.query_one("#title", Static).update(head)
        info = Text()
        for key, value in (detail.get("info") or {}).items():
            info.append(f"{key:>18} ", style="bold")
            info.append(f"{cut(value, 200)}\n")
        if row:
            info.append(f"{'behaviour':>18} ", style="bold")
            info.append(f"{row.get('behaviour') or '-'} {row.get('callback') or ''}\n")
            info.append(f"{'restarts':>18} ", style="bold")
            info.append(f"{row.get('restarts', 0)}\n")
        self.query_one("#info", Static).update(info)
        related = self.query_one("#related", OptionList)
        related.clear_options()
        for kind in ("links", "monitors", "monitored_by"):
            for other in detail.get(kind) or []:
                label = f"{kind:>12}  {other.get('ospid')}  {other.get('name') or ''}"
                related.add_option(Option(label, id=f"{kind}:{other.get('pid')}"))
        state = Text("\nstate\n", style="bold")
        if detail.get("state") is not None:
            state.append(str(detail["state"]), style="")
        else:
            state.append(str(detail.get("state_error") or "not a behaviour process"), style="dim")
        self.query_one("#state", Static).update(state)

    @on(OptionList.OptionSelected, "#related")
    def _open(self, event: OptionList.OptionSelected) -> None:
        option_id = event.option.id or ""
        pid = option_id.split(":", 1)[1] if ":" in option_id else ""
        if pid and pid != "None":
            self.app.push_screen(DetailScreen(pid))

    def action_kill(self) -> None:
        self.top.confirm_kill(self.pid)

    def action_suspend(self) -> None:
        self.top.confirm_action("suspend", self.pid)

    def action_resume(self) -> None:
        self.top.confirm_action("resume", self.pid)

    def action_logs(self) -> None:
        self.top.show_logs_of(self.pid)
