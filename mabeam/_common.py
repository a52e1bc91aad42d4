"""Pieces the MABEAM service processes share: the tables registry,
monitored subscriber sets, the options a service waits to be started with,
and the reading of a supervisor's ``('already_started', pid)``.  (Periodic work is done on otp timers:
``otp.start_timer`` armed again at each tick, whose message carries the
timer's ref, so a tick of a timer replaced meanwhile is told apart.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

import otp

__all__ = ["TABLES", "tables_child_spec", "Subscribers", "already_started_pid", "ServerOptions"]

#: A keyed registry (unique keys) that services publish read-mostly state
#: into; readers look it up in their own replica, so reads do not queue
#: behind the owner's writes.
TABLES = "mabeam.tables"


def tables_child_spec() -> otp.ChildSpec:
    """The child spec of the tables registry (it starts before the services
    that publish into it)."""
    return otp.Registry.child_spec(keys="unique", name=TABLES, id=TABLES)


OptionsT = TypeVar("OptionsT")


class ServerOptions(Generic[OptionsT]):
    """The options of a service that ``mabeam.start()`` starts, kept here
    until then: a feature's ``set_server_options`` sets them, its
    ``child_spec`` (which the application lists) starts the service with
    them, registered as ``name``."""

    def __init__(self, server: type[otp.Service], name: str, options: OptionsT) -> None:
        self.server, self.name, self.options = server, name, options

    def set_server_options(self, options: OptionsT) -> None:
        """The options the next ``mabeam.start()`` starts the server with."""
        self.options = options

    def child_spec(self) -> otp.ChildSpec:
        """The server's child spec, with the options set last, registered under its name."""
        return self.server.child_spec(self.options, id=self.name, name=self.name)


def already_started_pid(reason: object) -> otp.Pid | None:
    """The pid in a start's failure ``('already_started', pid)``: the
    process that holds the name the start wanted."""
    if isinstance(reason, tuple) and len(reason) == 2 and reason[0] == "already_started":
        return reason[1] if isinstance(reason[1], otp.Pid) else None
    return None


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
