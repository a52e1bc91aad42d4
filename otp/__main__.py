"""``python -m otp COMMAND ...``: tools that work on running nodes.

Each command lives in its own module, imported only when asked for::

    python -m otp observer [NODE] --port P     # the web view (otp.observer)
    python -m otp top [NODE]                   # the same view in the terminal
    python -m otp keys new PATH                # a node's CURVE key pair (0600)
"""

from __future__ import annotations

import importlib
import sys

#: command -> (module, its ``main(argv) -> exit status``, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "observer": ("otp.observer._cli", "a web view of a running node, with Prometheus metrics"),
    "top": ("otp.observer._top_cli", "the observer in the terminal (textual), for SSH and 80x24"),
    "keys": ("otp._keys", "CURVE key pairs of nodes: new PATH, public PATH, check PATH"),
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        out = sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr
        if argv and argv[0] not in ("-h", "--help"):
            print(f"unknown command {argv[0]!r}", file=out)
        print("usage: python -m otp COMMAND [ARGS...]\n\ncommands:", file=out)
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:10} {text}", file=out)
        return 0 if out is sys.stdout else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    status: int = module.main(argv[1:])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
