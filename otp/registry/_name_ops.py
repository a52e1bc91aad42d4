"""The name half of a registry process: a mixin of
:class:`otp.registry._server._Server`, which answers the operations on
keys (``register``, ``lookup``, ``update_value``...) with these methods,
publishes each change to the replicas and tells the listeners.  Apart
from the server's loop, its liveness checks and its process groups
(:class:`._pg_ops.PgOps`).

Lookups are answered from a cache, ``key -> live entries``: the server is
its backend's only writer, so every write clears it (see
``_Server._request``), and every hit is checked for liveness again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import _process
from .._pid import Pid
from .._signal_records import Named
from ._backend import AlreadyRegistered, PidNotAlive, RegistryBackend, RegistryError
from ._events import PgEvent, Registered, RegistryEvent, Unregistered
from ._protocol import Change, EntryAdded, EntryRemoved, MetadataUpdated, PgMonitorEnded, ValueUpdated

__all__ = ["NameOps"]

#: Keys the lookup cache holds at most (cleared when full: a registry's hot
#: names are few; a scan over many keys must not grow the server).
_CACHE_MAX = 4096


class NameOps:
    """Keys: the ``op_*`` handlers of the name operations, ``held`` (uid ->
    the keys the process holds, an ordered set: what its exit unregisters,
    even where the backend already dropped the entries) and the lookup
    cache."""

    proc: _process.Process
    backend: RegistryBackend
    one_name_per_pid: bool
    name: Any
    listeners: list[Any]
    held: dict[int, dict[Any, None]]
    _cache: dict[Any, list]

    if TYPE_CHECKING:  # the server's, used here

        def _alive(self, pid: Pid) -> bool: ...

        def _watch(self, pid: Pid) -> None: ...

        def _unwatch_if_unused(self, pid: Pid) -> None: ...

        def _publish(self, change: Change) -> None: ...

        def _tell(self, dest: Any, msg: RegistryEvent | PgEvent | PgMonitorEnded) -> None: ...

    def _registered(self, key: Any, pid: Pid, value: Any, metadata: dict) -> None:
        self.held.setdefault(pid.uid, {})[key] = None
        self._publish(EntryAdded(key, pid, value, metadata))
        if self.listeners:
            event = Registered(self.proc.pid if self.name is None else self.name, key, pid, value)
            for listener in self.listeners:
                self._tell(listener, event)

    def _removed(self, key: Any, pid: Pid) -> None:
        """``pid``'s entries under ``key`` are gone (from the backend already)."""
        self._publish(EntryRemoved(key, pid))
        self._forget(key, pid)

    def _forget(self, key: Any, pid: Pid) -> None:
        """``pid`` holds ``key`` no more: tell the listeners."""
        held = self.held.get(pid.uid)
        if held is not None:
            held.pop(key, None)
            if not held:
                del self.held[pid.uid]
        if self.listeners:
            event = Unregistered(self.proc.pid if self.name is None else self.name, key, pid)
            for listener in self.listeners:
                self._tell(listener, event)

    def op_register(self, key: Any, pid: Pid, value: Any = None, metadata: dict | None = None) -> None:
        if not self._alive(pid):
            raise PidNotAlive(pid)
        if self.one_name_per_pid:
            held = [k for k in self.backend.keys_of(pid) if k != key]
            if held:
                raise AlreadyRegistered(held[0], pid)  # Erlang: one name per process
        self._watch(pid)  # first: an entry nothing watches would outlive its process
        try:
            self.backend.register(key, pid, value, metadata)
        except RegistryError:
            self._unwatch_if_unused(pid)
            raise
        if self.one_name_per_pid:
            self._tell_named(pid)
        self._registered(key, pid, value, metadata or {})

    def _tell_named(self, pid: Pid) -> None:
        """Let the process know it holds a name: its exit drops the name
        before anyone hears of its death."""
        proc = self.proc
        if not proc.node.is_local(pid.node):
            return  # its exit hook knows its own node's registry only: its names here go on its DOWN
        proc.sig.send(pid, Named(proc.pid, 0), proc.node.signal_address(pid.uid))

    def op_unregister(self, key: Any, pid: Pid | None = None) -> None:
        entries = self.backend.lookup(key)
        self.backend.unregister(key, pid)
        removed = [entry.pid for entry in entries if pid is None or entry.pid == pid]
        for holder in removed:  # replicas: one change per entry (a duplicate key may have several)
            self._publish(EntryRemoved(key, holder))
        for holder in dict.fromkeys(removed):  # listeners: one event per holder, as Elixir sends
            self._forget(key, holder)
            self._unwatch_if_unused(holder)

    def op_unregister_pid(self, pid: Pid) -> list:
        keys = self.backend.unregister_pid(pid)
        for key in keys:
            self._removed(key, pid)
        self._unwatch_if_unused(pid)
        return keys

    def _lookup(self, key: Any) -> list:
        """The backend's live entries for ``key``, from the cache if it holds
        them and they are all still alive."""
        cache = self._cache
        try:
            entries = cache.get(key)
        except TypeError:  # unhashable: the backend raises its InvalidKey
            return self.backend.lookup(key)
        if entries is not None:
            alive = self._alive
            for e in entries:
                if not alive(e.pid):
                    break
            else:
                return entries
        entries = self.backend.lookup(key)
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[key] = entries
        return entries

    def op_lookup(self, key: Any) -> list:
        return [(e.pid, e.value) for e in self._lookup(key)]

    def op_lookup_entries(self, key: Any) -> list:
        return self._lookup(key)

    def op_whereis(self, key: Any) -> Pid | None:
        entries = self._lookup(key)
        return entries[0].pid if entries else None

    def op_registered(self) -> list:
        return sorted({e.key for e in self.backend.list_all()}, key=repr)

    def op_keys(self, pid: Pid) -> list:
        return self.backend.keys_of(pid)

    def op_count(self) -> int:
        return self.backend.count()

    def op_match_metadata(self, field: str, value: Any) -> list:
        return self.backend.match(field, value)

    def op_update_value(self, key: Any, pid: Pid, value: Any) -> None:
        self.backend.update_value(key, pid, value)
        self._publish(ValueUpdated(key, pid, value))

    def op_update_metadata(self, key: Any, metadata: dict) -> None:
        self.backend.update_metadata(key, metadata)
        for entry in self.backend.lookup(key):
            self._publish(MetadataUpdated(key, entry.pid, entry.metadata))
