"""Pieces the MABEAM service processes share: the tables registry and
monitored subscriber sets.  (Periodic work is done on otp timers:
``otp.start_timer`` armed again at each tick, whose message carries the
timer's ref, so a tick of a timer replaced meanwhile is told apart.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import otp

__all__ = ["TABLES", "tables_child_spec", "Subscribers"]

#: A keyed registry (unique keys) that services publish read-mostly state
#: into; readers look it up in their own replica, so reads do not queue
#: behind the owner's writes.
TABLES = "mabeam.tables"


def tables_child_spec() -> otp.ChildSpec:
    """The child spec of the tables registry (it starts before the services
    that publish into it)."""
    return otp.Registry.child_spec(keys="unique", name=TABLES, id=TABLES)


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
