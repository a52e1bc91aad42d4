"""The supervision trees the collector follows, fed by supervisor events.

Pure bookkeeping, no process: the collector subscribes to each supervisor
(``otp.supervisor.subscribe``), lists its children once
(``which_children``), and from then on applies the events it is sent
(``'started'``, ``'exited'``, ``'shutdown'``).  Nothing is polled: a
supervisor with nothing happening costs nothing.

Events and the listing race harmlessly.  Events sent before the listing's
answer are applied after it (they were queued behind it); each is either
already reflected (a ``'started'`` of the pid the listing shows) or names
a pid the child no longer has, and then only its exit reason is kept.
Restarts are counted from the collector's subscription on: a ``'started'``
of a child slot that had started before.

Every method that changes something returns the supervisors to follow
(child supervisors that appeared) and to forget (subtrees that went).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from .._child_spec import ChildInfo
from .._pid import Pid
from .._reasons import Crash, is_normal, is_shutdown
from ._records import Behaviour, ChildStatus, TreeNode
from ._saferepr import safe_repr

__all__ = ["Forest", "Change", "MAX_CHILDREN", "reason_text", "reason_class"]

#: Children of one supervisor a snapshot shows (a dynamic supervisor may
#: have thousands; the rest are counted).
MAX_CHILDREN = 200
#: Characters of an exit reason kept.
REASON_CHARS = 300


def reason_text(reason: object) -> str:
    """An exit reason as a viewer shows it (no user code runs)."""
    if isinstance(reason, Crash):
        return f"{reason.type_name}: {reason.message}"[:REASON_CHARS]
    return safe_repr(reason, limit=REASON_CHARS, depth=4, items=8)


def reason_class(reason: object) -> str:
    """A short, bounded label for an exit reason (metrics): ``normal``,
    ``shutdown``, ``killed``, an exception's class name, the tag of a
    tuple reason, or ``other``."""
    if is_normal(reason):
        return "normal"
    if is_shutdown(reason):
        return "shutdown"
    if isinstance(reason, Crash):
        return reason.type_name[:60]
    if isinstance(reason, str):
        return reason[:60]
    if isinstance(reason, tuple) and reason and isinstance(reason[0], str):
        return reason[0][:60]
    return "other"


@dataclass(slots=True)
class _Child:
    child_id: object
    pid: Pid | None
    type: Literal["worker", "supervisor"] = "worker"
    status: ChildStatus = "running"
    restarts: int = 0
    last_exit: str | None = None
    last_exit_at: float | None = None
    started: bool = False  # a start was seen (a later one is a restart)


@dataclass(slots=True)
class _Sup:
    pid: Pid
    parent: Pid | None
    origin: str | None
    label: str
    dynamic: bool = False
    listed: bool = False
    children: dict[Any, _Child] = field(default_factory=dict)
    #: (behaviour, callback) by child id; for a dynamic supervisor under
    #: the key None (its children share a template, or are alike enough).
    specs: dict[Any, tuple[Behaviour | None, str | None]] = field(default_factory=dict)


@dataclass(slots=True)
class Change:
    """What an update asks of the collector: supervisors to follow (subscribe
    and list), supervisors forgotten, whether the listing of ``relist``
    should be asked again (a child the collector knows too little of), and
    exits and restarts to count (``(supervisor label, child label,
    reason class)``)."""

    follow: list[Pid] = field(default_factory=list)
    forget: list[Pid] = field(default_factory=list)
    relist: bool = False
    changed: bool = False
    exits: list[tuple[str, str, str]] = field(default_factory=list)
    restarts: list[tuple[str, str]] = field(default_factory=list)


def _key(sup: _Sup, child_id: object, pid: Pid | None) -> object:
    return ("$pid", pid.uid) if sup.dynamic and pid is not None else child_id


def _label(child_id: object) -> str:
    return child_id if isinstance(child_id, str) else safe_repr(child_id, limit=80, depth=2)


class Forest:
    """Supervisors by pid, each with its children; roots in the order added."""

    def __init__(self) -> None:
        self.sups: dict[Pid, _Sup] = {}
        self.roots: list[Pid] = []
        self.version = 0
        self.names: dict[Pid, object] = {}

    # ------------------------------------------------------------ following

    def add_root(self, pid: Pid, origin: str, label: str) -> bool:
        """Follow ``pid`` as a root; False if it is followed already."""
        if pid in self.sups:
            return False
        self.sups[pid] = _Sup(pid, None, origin, label)
        self.roots.append(pid)
        self.version += 1
        return True

    def _add_child_sup(self, parent: _Sup, child: _Child, change: Change) -> None:
        pid = child.pid
        if child.type != "supervisor" or pid is None or pid in self.sups:
            return
        label = f"{parent.label}/{_label(child.child_id)}" if not parent.dynamic else f"{parent.label}/*"
        self.sups[pid] = _Sup(pid, parent.pid, None, label)
        change.follow.append(pid)

    def forget(self, pid: Pid, change: Change | None = None) -> Change:
        """Forget the supervisor ``pid`` and everything under it."""
        change = change if change is not None else Change()
        stack = [pid]
        while stack:
            sup = self.sups.pop(stack.pop(), None)
            if sup is None:
                continue
            change.forget.append(sup.pid)
            change.changed = True
            stack.extend(c.pid for c in sup.children.values() if c.pid is not None and c.pid in self.sups)
        if pid in self.roots:
            self.roots.remove(pid)
        if change.changed:
            self.version += 1
        return change

    # ------------------------------------------------------------ updates

    def listed(self, sup_pid: Pid, children: Iterable[ChildInfo]) -> Change:
        """The answer of ``which_children``: the children now, in order
        (a child the events already told of keeps its counts)."""
        change = Change(changed=True)
        sup = self.sups.get(sup_pid)
        if sup is None:
            return change
        infos = list(children)
        sup.dynamic = any(info.id is None for info in infos) or (sup.dynamic and not infos)
        old = sup.children
        new: dict[Any, _Child] = {}
        for info in infos:
            pid = info.pid if isinstance(info.pid, Pid) else None
            key = _key(sup, info.id, pid)
            child = old.get(key) or _Child(info.id, pid)
            if child.pid is not None and child.pid != pid and child.pid in self.sups:
                self.forget(child.pid, change)
            child.pid = pid
            child.type = info.type
            child.status = "running" if pid is not None else "restarting" if info.pid == "restarting" else "stopped"
            child.started = child.started or pid is not None
            new[key] = child
            self._add_child_sup(sup, child, change)
        for key, child in old.items():
            if key not in new and child.pid is not None and child.pid in self.sups:
                self.forget(child.pid, change)
        sup.children = new
        sup.listed = True
        self.version += 1
        return change

    def event(self, sup_pid: Pid, event: str, details: tuple) -> Change:
        """A supervisor event (``('$supervisor', sup, event, *details)``)."""
        change = Change()
        sup = self.sups.get(sup_pid)
        if sup is None:
            return change
        if event == "started" and len(details) >= 2 and isinstance(details[1], Pid):
            self._started(sup, details[0], details[1], change)
        elif event == "exited" and len(details) >= 3 and isinstance(details[1], Pid):
            self._exited(sup, details[0], details[1], details[2], change)
        elif event == "shutdown":
            self.forget(sup_pid, change)
        if change.changed:
            self.version += 1
        return change

    def _started(self, sup: _Sup, child_id: object, pid: Pid, change: Change) -> None:
        if child_id is None:
            sup.dynamic = True
        key = _key(sup, child_id, pid)
        child = sup.children.get(key)
        if child is None:
            child = sup.children[key] = _Child(child_id, None)
            change.relist = True  # its type: a listing says
            if sup.dynamic and any(c.type == "supervisor" for c in sup.children.values()):
                child.type = "supervisor"
        if child.pid == pid:
            return
        if child.pid is not None and child.pid in self.sups:
            self.forget(child.pid, change)
        if child.started and not sup.dynamic:
            child.restarts += 1
            change.restarts.append((sup.label, _label(child_id)))
        child.pid = pid
        child.status = "running"
        child.started = True
        change.changed = True
        self._add_child_sup(sup, child, change)

    def _exited(self, sup: _Sup, child_id: object, pid: Pid, reason: object, change: Change) -> None:
        change.exits.append(
            (sup.label, "*" if sup.dynamic or child_id is None else _label(child_id), reason_class(reason))
        )
        key = _key(sup, child_id, pid)
        child = sup.children.get(key)
        if pid in self.sups:
            self.forget(pid, change)
        if child is None:
            return
        child.last_exit = reason_text(reason)
        child.last_exit_at = time.time()
        change.changed = True
        if child.pid != pid:
            return  # an older pid of the slot: the listing is newer
        if sup.dynamic:
            del sup.children[key]
            return
        child.pid = None
        child.status = "stopped"

    def set_spec(self, sup_pid: Pid, child_id: object, behaviour: Behaviour | None, callback: str | None) -> None:
        sup = self.sups.get(sup_pid)
        if sup is not None:
            sup.specs[None if sup.dynamic else child_id] = (behaviour, callback)
            self.version += 1

    def missing_specs(self, sup_pid: Pid) -> list[object]:
        """Children of ``sup_pid`` whose spec the collector has not read:
        ids (static), or one running pid (dynamic: they share a template)."""
        sup = self.sups.get(sup_pid)
        if sup is None or not sup.listed:
            return []
        if sup.dynamic:
            if None in sup.specs:
                return []
            running: list[object] = [c.pid for c in sup.children.values() if c.pid is not None]
            return running[:1]
        return [c.child_id for c in sup.children.values() if c.child_id not in sup.specs]

    # ------------------------------------------------------------ reading

    def spec_of(self, sup: _Sup, child: _Child) -> tuple[Behaviour | None, str | None]:
        spec = sup.specs.get(None if sup.dynamic else child.child_id)
        behaviour, callback = spec if spec is not None else (None, None)
        if child.type == "supervisor":
            behaviour = "supervisor"
        return behaviour, callback

    def positions(self) -> dict[Pid, tuple[Pid, object, int, Behaviour | None, str | None]]:
        """For every running child: (supervisor, child id, restarts,
        behaviour, callback)."""
        out: dict[Pid, tuple[Pid, object, int, Behaviour | None, str | None]] = {}
        for sup in self.sups.values():
            for child in sup.children.values():
                if child.pid is not None:
                    behaviour, callback = self.spec_of(sup, child)
                    out[child.pid] = (sup.pid, child.child_id, child.restarts, behaviour, callback)
        for pid in self.roots:
            out.setdefault(pid, (pid, None, 0, "supervisor", None))
        return out

    def label_of(
        self, pid: Pid, positions: dict[Pid, tuple[Pid, object, int, Behaviour | None, str | None]]
    ) -> str | None:
        """A label for ``pid`` that its restarts keep: the path of child ids
        from its tree's root (None for a dynamic supervisor's child, whose
        place has no id, and for a process in no followed tree)."""
        pos = positions.get(pid)
        if pos is None:
            return None
        sup = self.sups.get(pos[0])
        if sup is None:
            return None
        if pos[0] == pid:
            return sup.label
        if sup.dynamic or pos[1] is None:
            return None
        return f"{sup.label}/{_label(pos[1])}"

    def snapshot(self) -> tuple[TreeNode, ...]:
        return tuple(self._node_of_root(self.sups[pid]) for pid in self.roots if pid in self.sups)

    def _node_of_root(self, sup: _Sup) -> TreeNode:
        kids, more = self._children_of(sup, 0)
        return TreeNode(
            child_id=None,
            pid=sup.pid,
            name=self.names.get(sup.pid),
            type="supervisor",
            status="running",
            behaviour="supervisor",
            callback=None,
            restarts=0,
            last_exit=None,
            last_exit_at=None,
            children=kids,
            more_children=more,
            dynamic=sup.dynamic,
            origin=sup.origin,
        )

    def _children_of(self, sup: _Sup, depth: int) -> tuple[tuple[TreeNode, ...], int]:
        children = list(sup.children.values())
        shown = children[:MAX_CHILDREN]
        out = []
        for child in shown:
            behaviour, callback = self.spec_of(sup, child)
            below = self.sups.get(child.pid) if child.pid is not None and depth < 32 else None
            kids, more = self._children_of(below, depth + 1) if below is not None else ((), 0)
            out.append(
                TreeNode(
                    child_id=child.child_id,
                    pid=child.pid,
                    name=self.names.get(child.pid) if child.pid is not None else None,
                    type=child.type,
                    status=child.status,
                    behaviour=behaviour,
                    callback=callback,
                    restarts=child.restarts,
                    last_exit=child.last_exit,
                    last_exit_at=child.last_exit_at,
                    children=kids,
                    more_children=more,
                    dynamic=below.dynamic if below is not None else False,
                )
            )
        return tuple(out), len(children) - len(shown)
