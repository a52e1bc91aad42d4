"""``python -m otp top [NODE]``, and :func:`top` for a program that shows
its own node: both run :class:`~._top.TopApp` over a web view started
inside the node."""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Sequence

from .._pid import Pid
from ._top import TopApp
from ._top_source import HttpSource

__all__ = ["top", "main"]


def top(roots: Sequence[Pid] = (), tap: bool = True) -> None:
    """Show this node in the terminal until the user quits (``q``).  Call
    it from a process of the node (the root, typically): it serves the
    web view on 127.0.0.1 (:func:`otp.observer.serve`, which the screen
    reads) and stops it on the way out.  ``roots``: supervisors to show
    besides the kernel's and the applications' trees; ``tap``: install the
    report tap (logs) when called in the root."""
    from ._server import serve

    server = serve("127.0.0.1", 0, None, tap, roots)
    try:
        TopApp(HttpSource(f"http://127.0.0.1:{server.port}", server.token)).run()
    finally:
        server.stop()


def main(argv: list[str]) -> int:
    """``python -m otp top [NODE] [--base-dir DIR] [--list]``."""
    from ._attach import AttachError, attach, find_node, list_nodes

    parser = argparse.ArgumentParser(
        prog="python -m otp top",
        description="Show a running node of yours (started with otp.Node) in the terminal. "
        "The node serves the view on 127.0.0.1 until this command ends.",
    )
    parser.add_argument(
        "node", nargs="?", help="its directory, its root's OS pid, or its name; default: the only running node"
    )
    parser.add_argument("--base-dir", default="/tmp", help="where nodes make their directories (default /tmp)")
    parser.add_argument("--list", action="store_true", help="list the running nodes and exit")
    args = parser.parse_args(argv)
    if args.list:
        for ref in list_nodes(args.base_dir):
            print(ref.describe())
        return 0
    try:
        ref = find_node(args.node, args.base_dir)
        attached = attach(ref, "127.0.0.1", 0, secrets.token_urlsafe(24))
    except (AttachError, OSError) as exc:
        print(f"top: {exc}", file=sys.stderr)
        return 1
    TopApp(HttpSource.from_url(attached.url), node=attached.node).run()
    return 0
