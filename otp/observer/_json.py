"""The collector's records as JSON for the web view.

A pid travels as ``"<ospid>-<uid hex>-<start>"`` (:func:`pid_id`), from
which :func:`parse_pid` rebuilds it for an action; names, child ids and
values as text (:func:`safe_repr`, a plain str as itself).
"""

from __future__ import annotations

from typing import Any

from .._pid import Pid
from ._records import (
    LogEntry,
    NamesView,
    NodeSample,
    ProcessDetail,
    ProcessPage,
    ProcessRow,
    Sample,
    TreeNode,
    TreeSnapshot,
)
from ._saferepr import safe_repr

__all__ = ["pid_id", "parse_pid", "text", "tree_json", "page_json", "detail_json", "names_json", "log_json"]


def pid_id(pid: Pid | None) -> str | None:
    return None if pid is None else f"{pid.ospid}-{pid.uid:016x}-{pid.start}"


def parse_pid(node: str, value: object) -> Pid:
    """The pid of a :func:`pid_id`; ValueError for anything else."""
    if not isinstance(value, str):
        raise ValueError("a pid is a string")
    parts = value.split("-")
    if len(parts) != 3:
        raise ValueError(f"not a pid: {value!r}")
    ospid, uid, start = parts
    return Pid(node, int(uid, 16), int(ospid), int(start))


def text(value: object) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else safe_repr(value, limit=200, depth=3)


def _node(node: TreeNode, index: int) -> dict[str, Any]:
    return {
        "index": index,
        "child_id": text(node.child_id),
        "pid": pid_id(node.pid),
        "name": text(node.name),
        "type": node.type,
        "status": node.status,
        "behaviour": node.behaviour,
        "callback": node.callback,
        "restarts": node.restarts,
        "last_exit": node.last_exit,
        "last_exit_at": node.last_exit_at,
        "dynamic": node.dynamic,
        "origin": node.origin,
        "more_children": node.more_children,
        "children": [_node(child, i) for i, child in enumerate(node.children)],
    }


def tree_json(snapshot: TreeSnapshot) -> dict[str, Any]:
    return {
        "version": snapshot.version,
        "at": snapshot.at,
        "roots": [_node(r, i) for i, r in enumerate(snapshot.roots)],
    }


def row_json(row: ProcessRow) -> dict[str, Any]:
    return {
        "pid": pid_id(row.pid),
        "node": row.pid.node,
        "ospid": row.pid.ospid,
        "name": text(row.name),
        "supervisor": pid_id(row.supervisor),
        "child_id": text(row.child_id),
        "behaviour": row.behaviour,
        "callback": row.callback,
        "status": row.status,
        "message_queue_len": row.message_queue_len,
        "rss": row.rss,
        "uss": row.uss,
        "messages_in": row.messages_in,
        "messages_out": row.messages_out,
        "in_rate": row.in_rate,
        "out_rate": row.out_rate,
        "restarts": row.restarts,
        "started_at": row.started_at,
        "current_function": row.current_function,
        "links": row.links,
        "monitors": row.monitors,
        "trap_exit": row.trap_exit,
        "sampled_at": row.sampled_at,
    }


def page_json(page: ProcessPage) -> dict[str, Any]:
    return {
        "rows": [row_json(r) for r in page.rows],
        "total": page.total,
        "processes": page.processes,
        "offset": page.offset,
        "limit": page.limit,
        "sort": page.sort,
        "descending": page.descending,
        "round": page.round,
        "at": page.at,
    }


def _sample(s: Sample) -> list[Any]:
    return [s.at, s.message_queue_len, s.rss, s.in_rate, s.out_rate]


def detail_json(detail: ProcessDetail) -> dict[str, Any]:
    def related(pids: tuple[Pid, ...]) -> list[dict[str, Any]]:
        return [{"pid": pid_id(p), "ospid": p.ospid, "name": text(detail.names.get(p))} for p in pids]

    return {
        "pid": pid_id(detail.pid),
        "alive": detail.alive,
        "row": row_json(detail.row) if detail.row is not None else None,
        "info": {
            k: v if isinstance(v, (int, float, str, bool, type(None))) else text(v) for k, v in detail.info.items()
        },
        "links": related(detail.links),
        "monitors": related(detail.monitors),
        "monitored_by": related(detail.monitored_by),
        "history": [_sample(s) for s in detail.history],
        "state": detail.state,
        "state_error": detail.state_error,
    }


def names_json(view: NamesView) -> dict[str, Any]:
    return {
        "names": [{"name": text(n.name), "pid": pid_id(n.pid)} for n in view.names],
        "registries": [
            {
                "name": text(r.name),
                "pid": pid_id(r.pid),
                "count": r.count,
                "truncated": r.truncated,
                "entries": [{"key": text(k), "pid": pid_id(p), "value": v} for k, p, v in r.entries],
            }
            for r in view.registries
        ],
        "groups": [
            {"scope": text(g.scope), "group": text(g.group), "members": [pid_id(p) for p in g.members]}
            for g in view.groups
        ],
        "at": view.at,
    }


def log_json(entry: LogEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at,
        "level": entry.level,
        "logger": entry.logger,
        "kind": entry.kind,
        "pid": pid_id(entry.pid),
        "name": entry.name,
        "supervisor": entry.supervisor,
        "child_id": entry.child_id,
        "reason": entry.reason,
        "message": entry.message,
    }


def history_json(samples: tuple[NodeSample, ...]) -> list[list[Any]]:
    return [[s.at, s.processes, s.rss, s.in_rate, s.out_rate, s.restarts] for s in samples]
