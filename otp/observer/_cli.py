"""``python -m otp observer [NODE] [--host H] [--port P] [--list]``."""

from __future__ import annotations

import argparse
import secrets
import sys

from ._attach import AttachError, attach, find_node, list_nodes, wait_attached

__all__ = ["main"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m otp observer",
        description="Serve a web view of a running node of yours (started with otp.Node) and print its URL. "
        "The view runs inside the node until this command ends (Ctrl-C).",
    )
    parser.add_argument(
        "node",
        nargs="?",
        help="the node: its directory, its root's OS pid, or its name; default: the only running node",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: one the OS picks)")
    parser.add_argument("--token", help="access token (default: a new random one)")
    parser.add_argument("--base-dir", default="/tmp", help="where nodes make their directories (default /tmp)")
    parser.add_argument("--list", action="store_true", help="list the running nodes and exit")
    args = parser.parse_args(argv)
    if args.list:
        for node in list_nodes(args.base_dir):
            print(node.describe())
        return 0
    try:
        node = find_node(args.node, args.base_dir)
        attached = attach(node, args.host, args.port, args.token or secrets.token_urlsafe(24))
    except (AttachError, OSError) as exc:
        print(f"observer: {exc}", file=sys.stderr)
        return 1
    print(f"observer of node {attached.node} ({node.dir})", flush=True)
    print(attached.url, flush=True)
    print("Ctrl-C stops the view.", flush=True)
    try:
        wait_attached(attached)
    except KeyboardInterrupt:
        return 130
    print("observer: the node stopped, or its view did", file=sys.stderr)
    return 1
