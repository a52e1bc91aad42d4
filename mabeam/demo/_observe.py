"""``mabeam demo --observe``: the observer's web view of the demo's node,
live for the whole run.

:func:`observing` wraps the run: it serves the view (with the MABEAM panel,
:func:`mabeam._observe.observe`) in the node before the run starts, prints
its URL with the access token, and stops the server when the run ends.
The MABEAM application the run starts is followed as soon as it runs (the
observer follows every application's tree), so the page shows the agents,
the auctions of each round and the final vote as they happen.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from typing import TextIO

import otp.observer

from .._observe import observe

__all__ = ["observing", "missing_observer_extra", "OBSERVER_MODULES", "MISSING_OBSERVER_EXTRA"]

#: The modules the web view needs (the ``observer`` extra).
OBSERVER_MODULES = ("starlette", "uvicorn")
MISSING_OBSERVER_EXTRA = "--observe needs the observer extra: pip install 'mabeam[observer]'"


def missing_observer_extra() -> list[str]:
    """The modules of the ``observer`` extra that are not installed."""
    return [name for name in OBSERVER_MODULES if importlib.util.find_spec(name) is None]


@contextlib.contextmanager
def observing(
    enabled: bool = True, host: str = "127.0.0.1", port: int = 0, out: TextIO | None = None
) -> Iterator[otp.observer.Server | None]:
    """Serve the observer's view of this node while the block runs (a
    process of the node: call it inside ``with otp.Node()``) and print
    ``observer: URL`` on ``out`` (stderr) first; yields the server, or None
    when not ``enabled``."""
    if not enabled:
        yield None
        return
    server = observe(host=host, port=port)
    print(f"observer: {server.url}", file=out or sys.stderr, flush=True)
    try:
        yield server
    finally:
        server.stop()
