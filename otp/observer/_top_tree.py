"""The supervision trees of ``otp top``: one line per supervisor or child
(id, OS pid, status, restarts, last exit reason).

A redraw whose shape is the one on screen (the usual case: a restart
changes a pid, not the children) only relabels the lines in place, so the
cursor and what the user folded stay where they were; a new shape is
rebuilt, keeping folds and the cursor by the path of child ids.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.widgets import Tree
from textual.widgets.tree import TreeNode as UINode

from ._top_format import cut
from ._top_source import short_pid

__all__ = ["SupTree", "tree_label"]

Path = tuple[str, ...]
#: (path, parent's path, a supervisor?) for each line, in order: the shape.
Shape = list[tuple[Path, Path, bool]]


def tree_label(node: dict[str, Any]) -> Text:
    """One line: id, OS pid, status, restarts, last exit reason."""
    label = Text()
    name = node.get("child_id") or node.get("name") or node.get("origin") or "?"
    if node.get("origin") and node.get("origin") != name:
        label.append(f"{node['origin']}: ", style="dim")
    label.append(cut(name, 24), style="bold cyan" if node.get("type") == "supervisor" else "bold")
    label.append(f" {short_pid(node.get('pid'))}")
    status = node.get("status", "?")
    if status != "running":
        label.append(f" {status}", style="red")
    restarts = int(node.get("restarts") or 0)
    label.append(f" ↻{restarts}", style="yellow" if restarts else "dim")
    if node.get("last_exit"):
        label.append(f" {cut(node['last_exit'], 28)}", style="magenta")
    return label


def _flatten(
    node: dict[str, Any], supervisor: str | None, path: Path, out: list[tuple[Path, Path, dict[str, Any], Text, bool]]
) -> None:
    key = str(node.get("child_id") if node.get("child_id") is not None else short_pid(node.get("pid")))
    here = (*path, key)
    data = {
        "pid": node.get("pid"),
        "supervisor": supervisor,
        "index": node.get("index"),
        "child_id": node.get("child_id"),
        "path": here,
    }
    is_sup = node.get("type") == "supervisor"
    out.append((here, path, data, tree_label(node), is_sup))
    for child in node.get("children", []):
        _flatten(child, node.get("pid"), here, out)
    if node.get("more_children"):
        more = (*here, "…")
        out.append((more, here, {"path": more}, Text(f"… {node['more_children']} more", style="dim"), False))


class SupTree(Tree[dict[str, Any]]):
    BINDINGS = [
        Binding("k", "app.act_selected('kill')", "kill"),
        Binding("R", "app.restart_selected", "restart child"),
        Binding("z", "app.act_selected('suspend')", "suspend"),
        Binding("u", "app.act_selected('resume')", "resume"),
    ]

    def __init__(self, label: str, id: str | None = None) -> None:  # noqa: A002 - textual's name
        super().__init__(label, id=id)
        self.show_root = False
        self.auto_expand = False
        self.collapsed: set[Path] = set()
        self._shape: Shape = []
        self._lines: dict[Path, UINode[dict[str, Any]]] = {}

    def show(self, snapshot: dict[str, Any]) -> None:
        """Draw ``snapshot`` (the JSON of ``/api/tree``)."""
        flat: list[tuple[Path, Path, dict[str, Any], Text, bool]] = []
        for root in snapshot.get("roots", []):
            _flatten(root, None, (), flat)
        shape = [(path, parent, is_sup) for path, parent, _, _, is_sup in flat]
        if shape == self._shape:
            for path, _, data, label, _ in flat:
                line = self._lines[path]
                line.data = data
                line.set_label(label)
            return
        selected = self.cursor_node.data.get("path") if self.cursor_node and self.cursor_node.data else None
        self.clear()
        self._lines = {(): self.root}
        for path, parent, data, label, is_sup in flat:
            above = self._lines[parent]
            if is_sup:
                self._lines[path] = above.add(label, data=data, expand=path not in self.collapsed)
            else:
                self._lines[path] = above.add_leaf(label, data=data)
        self._shape = shape
        self.root.expand()
        if selected in self._lines:
            self.call_after_refresh(self.move_cursor, self._lines[selected])

    @on(Tree.NodeCollapsed)
    def _folded(self, event: Tree.NodeCollapsed[dict[str, Any]]) -> None:
        if event.node.data:
            self.collapsed.add(event.node.data["path"])

    @on(Tree.NodeExpanded)
    def _unfolded(self, event: Tree.NodeExpanded[dict[str, Any]]) -> None:
        if event.node.data:
            self.collapsed.discard(event.node.data["path"])
