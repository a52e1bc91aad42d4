"""Pieces the MABEAM service processes share: the tables registry, a
deadline scheduler for periodic work, and monitored subscriber sets.

Periodic work.  A gen_server's timeout action fires only if no message
comes first, so a server that returns a *fixed* timeout never ticks under a
steady flow of casts.  :class:`Timers` keeps absolute deadlines instead:
after every request the server runs what is due and returns
``timers.timeout()`` (the time left until the earliest deadline) as its
next action, so ticks happen on time whatever the traffic, without a
sleeping loop or a helper process.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Hashable, Iterator
from typing import Any

import otp

__all__ = ["TABLES", "tables_child_spec", "Timers", "Subscribers"]

#: A keyed registry (unique keys) that services publish read-mostly state
#: into; readers look it up in their own replica, so reads do not queue
#: behind the owner's writes.
TABLES = "mabeam.tables"


def tables_child_spec() -> otp.ChildSpec:
    """The child spec of the tables registry (it starts before the services
    that publish into it)."""
    return otp.Registry.child_spec(keys="unique", name=TABLES, id=TABLES)


class Timers:
    """Named deadlines on the monotonic clock; rescheduling a key replaces it."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._live: dict[Hashable, int] = {}
        self._seq = itertools.count()

    def schedule(self, key: Hashable, at: float) -> None:
        """Run ``key`` when the monotonic clock reaches ``at``."""
        seq = next(self._seq)
        self._live[key] = seq
        heapq.heappush(self._heap, (at, seq, key))

    def cancel(self, key: Hashable) -> None:
        """Forget the deadline of ``key`` (if any)."""
        self._live.pop(key, None)

    def scheduled(self, key: Hashable) -> bool:
        """Whether ``key`` has a deadline."""
        return key in self._live

    def _clean(self) -> None:
        heap = self._heap
        while heap and self._live.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)  # cancelled or replaced

    def pop_due(self, now: float) -> list[Hashable]:
        """The keys whose deadline passed, earliest first (each removed)."""
        due: list[Hashable] = []
        while True:
            self._clean()
            if not self._heap or self._heap[0][0] > now:
                return due
            _, _, key = heapq.heappop(self._heap)
            del self._live[key]
            due.append(key)

    def timeout(self, now: float | None = None) -> float | None:
        """Seconds until the earliest deadline (None: nothing scheduled)."""
        self._clean()
        if not self._heap:
            return None
        now = time.monotonic() if now is None else now
        return max(0.0, self._heap[0][0] - now)


class Subscribers:
    """Processes that asked for notifications, each monitored once: a dead
    subscriber is dropped on its DOWN."""

    def __init__(self) -> None:
        self._refs: dict[otp.Pid, otp.Ref] = {}
        self._pids: dict[otp.Ref, otp.Pid] = {}

    def add(self, pid: otp.Pid) -> None:
        """Subscribe ``pid`` (monitored; adding it again changes nothing)."""
        if pid not in self._refs:
            ref = otp.monitor(pid)
            self._refs[pid] = ref
            self._pids[ref] = pid

    def remove(self, pid: otp.Pid) -> None:
        """Unsubscribe ``pid`` and stop monitoring it."""
        ref = self._refs.pop(pid, None)
        if ref is not None:
            del self._pids[ref]
            otp.demonitor(ref, flush=True)

    def down(self, msg: otp.DOWN) -> bool:
        """Forget the subscriber ``msg`` is about; False if it is not ours."""
        pid = self._pids.pop(msg.ref, None)
        if pid is None:
            return False
        del self._refs[pid]
        return True

    def prune(self) -> list[otp.Pid]:
        """Drop (and return) subscribers already dead whose DOWN is still in flight."""
        dead = [p for p in self._refs if not otp.is_alive(p)]
        for pid in dead:
            self.remove(pid)
        return dead

    def send(self, msg: Any) -> None:
        """Send ``msg`` to every subscriber."""
        for pid in self._refs:
            otp.send(pid, msg)

    def __contains__(self, pid: object) -> bool:
        return pid in self._refs

    def __len__(self) -> int:
        return len(self._refs)

    def __iter__(self) -> Iterator[otp.Pid]:
        return iter(list(self._refs))
