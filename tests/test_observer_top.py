"""``otp top``: the terminal observer, driven by textual's pilot at 80x24
against a web view of the test's node: the tree with a supervisor and its
children, a SIGKILLed child's restart (new pid, restart count 1), sorting
the processes table, a drill-down; and the screenshot for the README."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import time

import pytest
from helpers import recv

import otp
import otp.observer as observer

pytest.importorskip("textual")
pytest.importorskip("httpx")

from otp.observer._top import TopApp  # noqa: E402 - after the skips
from otp.observer._top_source import HttpSource  # noqa: E402
from otp.observer._top_views import ConfirmScreen, DetailScreen  # noqa: E402

SIZE = (80, 24)
#: Seconds the view may take to show what the node did (a loaded machine).
DEADLINE = 30.0
SCREENSHOT = pathlib.Path(__file__).resolve().parent.parent / "docs" / "otp-top.svg"


class Echo(otp.GenServer):
    def init(self, start):
        return start

    def handle_call(self, request, from_, state):
        return otp.Reply(request, state)


def started(sup, child_id):
    """Wait for ``sup``'s next start of ``child_id``; its new pid."""
    event = recv(lambda m: type(m) is tuple and m[:4] == ("$supervisor", sup, "started", child_id))
    return event[4]


async def until(pilot, predicate, what: str):
    """Let the app run until ``predicate()`` holds (DEADLINE at most)."""
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"the view never showed {what}")
        await pilot.pause(0.05)


def tree_lines(app: TopApp) -> list[str]:
    lines = []
    pending = list(app.query_one("#suptree").root.children)
    while pending:
        node = pending.pop(0)
        lines.append(str(node.label))
        pending[:0] = list(node.children)
    return lines


def line_of(app: TopApp, child_id: str) -> str | None:
    return next((line for line in tree_lines(app) if line.startswith(child_id + " ")), None)


@pytest.fixture
def view(node):
    otp.trap_exit(True)
    sup = otp.Supervisor.start_link(
        [Echo.child_spec("a", id="echo"), Echo.child_spec("b", id="other")], intensity=10, period=60
    )
    otp.supervisor.subscribe(sup)
    server = observer.serve(port=0, roots=[sup])
    yield server, sup
    server.stop()
    otp.unlink(sup)
    otp.exit(sup, "shutdown")


def run(scenario):
    asyncio.run(scenario())


def test_tree_shows_a_restart_after_sigkill(view):
    server, sup = view
    old = {c.id: c.pid for c in otp.supervisor.which_children(sup)}

    async def scenario():
        app = TopApp(HttpSource(f"http://127.0.0.1:{server.port}", server.token), node="test")
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: line_of(app, "echo") and line_of(app, "other"), "the supervisor's children")
            assert f" {old['echo'].ospid} " in line_of(app, "echo")
            assert "↻0" in line_of(app, "echo")
            assert any(line.endswith(f"{sup.ospid} ↻0") for line in tree_lines(app)), tree_lines(app)

            os.kill(old["echo"].ospid, signal.SIGKILL)
            new = started(sup, "echo")
            await until(
                pilot,
                lambda: f" {new.ospid} " in (line_of(app, "echo") or ""),
                "the new pid",
            )
            line = line_of(app, "echo")
            assert "↻1" in line and "killed" in line, line
            assert f" {old['other'].ospid} ↻0" in line_of(app, "other")
            if os.environ.get("OTP_TOP_SCREENSHOT"):  # README's picture, on demand: tests write no repo file
                SCREENSHOT.parent.mkdir(exist_ok=True)
                app.save_screenshot(SCREENSHOT.name, str(SCREENSHOT.parent))
            assert "echo" in app.export_screenshot()

    run(scenario)


def test_processes_sort_by_a_key_press(view):
    server, sup = view

    async def scenario():
        app = TopApp(HttpSource(f"http://127.0.0.1:{server.port}", server.token))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("2")
            table = app.query_one("#proctable")
            await until(pilot, lambda: table.row_count >= 5, "the processes")
            assert app.page_data["sort"] == "pid" and not app.page_data["descending"]
            table.focus()
            await pilot.press("s", "s", "s", "s")  # pid -> name -> status -> queue -> rss
            await pilot.press("d")
            await until(
                pilot,
                lambda: app.page_data["sort"] == "rss" and app.page_data["descending"],
                "rows sorted by rss, largest first",
            )
            rss = [row["rss"] or 0 for row in app.page_data["rows"]]
            assert rss == sorted(rss, reverse=True)
            shown = [table.get_row_at(i)[0] for i in range(table.row_count)]
            assert shown == [str(row["ospid"]) for row in app.page_data["rows"]]

    run(scenario)


def test_drill_down_into_a_child(view):
    server, sup = view
    echo = {c.id: c.pid for c in otp.supervisor.which_children(sup)}["echo"]

    async def scenario():
        app = TopApp(HttpSource(f"http://127.0.0.1:{server.port}", server.token))
        async with app.run_test(size=SIZE) as pilot:
            tree = app.query_one("#suptree")
            await until(pilot, lambda: line_of(app, "echo"), "the echo child")
            tree.focus()
            await pilot.pause()

            def on_echo() -> bool:
                # A redraw may land between moving the cursor and reading it:
                # move it again until it is seen on the child.
                node = tree.cursor_node
                if node is not None and str(node.label).startswith("echo "):
                    return True
                tree.move_cursor(next(n for n in _walk(tree.root) if str(n.label).startswith("echo ")))
                return False

            await until(pilot, on_echo, "the cursor on the echo child")
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, DetailScreen), "the drill-down")
            screen = app.screen
            await until(pilot, lambda: screen.detail is not None, "the process's details")
            assert screen.detail["alive"] and screen.detail["info"]["status"] == "waiting"
            assert screen.detail["state"] == "'a'"
            related = screen.query_one("#related")
            assert any(
                sup.ospid == int(str(related.get_option_at_index(i).prompt).split()[1])
                for i in range(related.option_count)
            )
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, DetailScreen), "the main screen again")

    assert echo.ospid
    run(scenario)


def _walk(root):
    pending = list(root.children)
    while pending:
        node = pending.pop(0)
        yield node
        pending[:0] = list(node.children)


def test_kill_asks_first_then_the_restart_shows(view):
    server, sup = view
    old = {c.id: c.pid for c in otp.supervisor.which_children(sup)}["other"]

    async def scenario():
        app = TopApp(HttpSource(f"http://127.0.0.1:{server.port}", server.token))
        async with app.run_test(size=SIZE) as pilot:
            tree = app.query_one("#suptree")
            await until(pilot, lambda: line_of(app, "other"), "the other child")
            tree.move_cursor(next(n for n in _walk(tree.root) if str(n.label).startswith("other ")))
            tree.focus()
            await pilot.press("k")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
            await pilot.press("escape")  # no: nothing happens
            await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "the confirmation gone")
            assert {c.id: c.pid for c in otp.supervisor.which_children(sup)}["other"] == old
            await pilot.press("k")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "the confirmation gone")
            restarted = []  # the kill runs in the app's worker: let the app run until the supervisor says so

            def restart_seen():
                try:
                    restarted.append(
                        otp.receive(0, lambda m: type(m) is tuple and m[:4] == ("$supervisor", sup, "started", "other"))
                    )
                except otp.Timeout:
                    return False
                return True

            await until(pilot, restart_seen, "(the supervisor) the killed child's restart")
            new = restarted[0][4]
            assert new != old
            await until(pilot, lambda: f" {new.ospid} ↻1" in (line_of(app, "other") or ""), "the restart")

    run(scenario)
