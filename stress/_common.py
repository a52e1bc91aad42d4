"""What our benchmarks and the peers' workloads share, so that both sides
perform the same operations: the message, the settle pause, the clock loop;
and the process tree both the runner and the benchmarks read from /proc."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

#: The message every call/cast/send benchmark (ours, floors and peers) sends.
REQUEST = {"op": "echo", "seq": 0, "payload": "x" * 64}

#: Pause before each single spawn/actor creation so the runtime is idle again
#: (our zygote has its embryos ready); outside the timed region, the same on
#: every side.  spawn_burst measures spawning flat out.
SPAWN_SETTLE_S = 0.02


def timed(op: Callable[[int], Any], n: int) -> list[float]:
    """Seconds per call of ``op(i)`` for i in range(n)."""
    out = []
    clock = time.perf_counter
    for i in range(n):
        t0 = clock()
        op(i)
        out.append(clock() - t0)
    return out


def descendants(root: int) -> list[int]:
    """Every process under OS process ``root`` (read from /proc; ``root``
    itself not included), depth first, parents before their children."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(name))
    out: list[int] = []
    seen: set[int] = set()
    todo = list(children.get(root, ()))
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            out.append(p)
            todo += children.get(p, ())
    return out
