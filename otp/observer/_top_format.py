"""Text of ``otp top``'s tables and panes, from the web view's JSON."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text

from ._top_source import short_pid

__all__ = ["size_text", "rate_text", "cut", "clock", "row_cells", "names_text", "log_cells", "log_matches"]


def size_text(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "K", "M"):
        if size < 1024:
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}G"


def rate_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def cut(value: object, width: int) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def clock(at: float | None) -> str:
    return "-" if at is None else time.strftime("%H:%M:%S", time.localtime(at))


def row_cells(row: dict[str, Any]) -> tuple[str, ...]:
    """A processes-table row, in the order of ``_top.COLUMNS``."""
    queue = row.get("message_queue_len")
    return (
        str(row.get("ospid")),
        cut(row.get("name") or row.get("child_id") or "", 18),
        row.get("status") or "-",
        "-" if queue is None else str(queue),
        size_text(row.get("rss")),
        rate_text(row.get("in_rate")),
        rate_text(row.get("out_rate")),
        str(row.get("restarts", 0)),
        row.get("behaviour") or "-",
        cut(row.get("current_function") or "", 24),
    )


def names_text(view: dict[str, Any]) -> Text:
    """Registered names, keyed registries and pg groups."""
    out = Text()
    out.append("registered names\n", style="bold underline")
    for entry in view.get("names", []):
        out.append(f"  {cut(entry.get('name'), 40):40} {short_pid(entry.get('pid'))}\n")
    for reg in view.get("registries", []):
        out.append(f"\nregistry {reg.get('name')} ({reg.get('count')} keys)\n", style="bold underline")
        for item in reg.get("entries", []):
            key, pid, value = cut(item.get("key"), 30), short_pid(item.get("pid")), cut(item.get("value"), 30)
            out.append(f"  {key:30} {pid:>8} {value}\n")
    out.append("\npg groups\n", style="bold underline")
    for group in view.get("groups", []):
        members = " ".join(short_pid(m) for m in group.get("members", []))
        scope = group.get("scope") or "default"
        out.append(f"  {cut(scope, 12)}/{cut(group.get('group'), 24)}: {cut(members, 60)}\n")
    return out


def log_cells(entry: dict[str, Any]) -> tuple[str, ...]:
    """A log-table row: time, kind, who (OS pid and child id or name), what."""
    who = short_pid(entry.get("pid"))
    if entry.get("child_id") or entry.get("name"):
        who += f" {entry.get('child_id') or entry.get('name')}"
    return (
        clock(entry.get("at")),
        entry.get("kind") or entry.get("level") or "-",
        cut(who, 22),
        cut(entry.get("reason") or entry.get("message") or "", 60),
    )


def log_matches(entry: dict[str, Any], wanted: str) -> bool:
    """Does the filter ``wanted`` (lower case) pick ``entry``: its OS pid
    exactly, or text in its name, ids, reason or message."""
    if wanted == short_pid(entry.get("pid")) or wanted == (entry.get("pid") or ""):
        return True
    fields = ("name", "child_id", "supervisor", "reason", "message", "kind")
    return any(wanted in str(entry.get(f) or "").lower() for f in fields)
