"""What our benchmarks and the peers' workloads share, so that both sides
perform the same operations: the message, the settle pause, the clock loop."""

from __future__ import annotations

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
