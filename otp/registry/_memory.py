"""In-memory registry backend: dicts, plus a metadata index kept in step with them.

The default store of a registry whose entries need not outlive its process.
Every entry has an integer id that grows with registration order; the
tables are

* ``_entries``: id -> :class:`Entry` (the only copy of the data);
* ``_by_key`` and ``_by_pid``: key / pid -> ids, as insertion-ordered dicts
  (ordered sets), so lookups and a dead process's cleanup cost O(its entries);
* ``_index``: metadata field -> index form -> ids, and ``_unindexed``: field
  -> ids whose value has no index form (lists, NaN, arbitrary objects).

Every write goes through :meth:`_index_metadata` and :meth:`_unindex`, the
only code that adds postings to the index or takes them out, so it cannot
drift from the data (the failure of the system we replace, whose index was
never cleaned on unregister).  ``_audit`` rebuilds the index from scratch to
prove it in tests.

Values are stored by reference (the registry process got them off the wire,
so nobody else holds them); metadata dicts are copied in and out, because the
index depends on them not changing behind its back.  There is no rollback:
:class:`BaseBackend` checks everything before the first mutation, and the
mutations themselves cannot fail.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable
from typing import Any

from .._pid import Pid
from ._backend import KEEP, UNINDEXABLE, BaseBackend, Entry, Key, Mode, Pairs, index_form, index_postings, values_equal

__all__ = ["MemoryBackend"]


class MemoryBackend(BaseBackend):
    """Registry storage in the registry process's memory; lost when it exits.

    ``is_alive(pid)`` tells live processes from dead ones (see
    :class:`BaseBackend`); ``mode`` is ``"unique"`` or ``"duplicate"``."""

    name = "memory"

    def __init__(self, *, is_alive: Callable[[Pid], bool], mode: Mode = "unique") -> None:
        super().__init__(is_alive=is_alive, mode=mode)
        self._ids = itertools.count(1)
        self._entries: dict[int, Entry] = {}
        self._by_key: dict[Key, dict[int, None]] = {}
        self._by_pid: dict[Pid, dict[int, None]] = {}
        self._index: dict[str, dict[Hashable, set[int]]] = {}
        self._unindexed: dict[str, set[int]] = {}

    def __repr__(self) -> str:
        return f"<MemoryBackend {self.mode} {len(self._entries)} entries>"

    # -- reads --

    @staticmethod
    def _export(e: Entry) -> Entry:
        return Entry(e.key, e.pid, e.value, dict(e.metadata))

    def _raw_lookup(self, key: Key) -> Pairs:
        ids = self._by_key.get(key)
        if not ids:
            return []
        entries, export = self._entries, self._export
        return [(eid, export(entries[eid])) for eid in ids]

    def _raw_all(self) -> Pairs:
        export = self._export
        return [(eid, export(e)) for eid, e in self._entries.items()]

    def _raw_match(self, metadata_key: str, value: Any) -> Pairs:
        postings = self._index.get(metadata_key, {})
        form = index_form(value)
        if form is UNINDEXABLE:  # e.g. match("caps", [1, 2]): compare every value of the field
            candidates = set().union(*postings.values())
        else:
            candidates = set(postings.get(form, ()))
        candidates.update(self._unindexed.get(metadata_key, ()))
        entries, export = self._entries, self._export
        return [
            (eid, export(entries[eid]))
            for eid in sorted(candidates)
            if values_equal(entries[eid].metadata[metadata_key], value)
        ]

    def _raw_keys_of(self, pid: Pid) -> list[Key]:
        entries = self._entries
        return list(dict.fromkeys(entries[eid].key for eid in self._by_pid.get(pid, ())))

    def _raw_pid_counts(self) -> dict[Pid, int]:
        return {pid: len(ids) for pid, ids in self._by_pid.items()}

    def _raw_count(self) -> int:
        return len(self._entries)

    # -- writes --

    def _raw_insert(self, entry: Entry) -> int:
        eid = next(self._ids)
        self._link(eid, Entry(entry.key, entry.pid, entry.value, dict(entry.metadata)))
        return eid

    def _raw_update(self, eid: int, *, pid: Pid | None = None, value: Any = KEEP, metadata: Any = KEEP) -> None:
        old = self._entries[eid]
        new = Entry(
            old.key,
            old.pid if pid is None else pid,
            old.value if value is KEEP else value,
            old.metadata if metadata is KEEP else dict(metadata),
        )
        if metadata is not KEEP:
            self._unindex(eid, old.metadata)
            self._index_metadata(eid, new.metadata)
        self._entries[eid] = new  # assigning an existing id keeps the entry's place in every order

    def _raw_delete(self, ids: list[int]) -> None:
        for eid in ids:
            if eid in self._entries:
                self._unlink(eid)

    def _raw_delete_pid(self, pid: Pid) -> list[Key]:
        ids = list(self._by_pid.get(pid, ()))
        keys = list(dict.fromkeys(self._entries[eid].key for eid in ids))
        self._raw_delete(ids)
        return keys

    def _link(self, eid: int, entry: Entry) -> None:
        """Store ``entry`` under ``eid`` and file it in every side table."""
        self._entries[eid] = entry
        self._by_key.setdefault(entry.key, {})[eid] = None
        self._by_pid.setdefault(entry.pid, {})[eid] = None
        self._index_metadata(eid, entry.metadata)

    def _unlink(self, eid: int) -> None:
        """Remove ``eid`` from every table."""
        entry = self._entries.pop(eid)
        _discard(self._by_key, entry.key, eid)
        _discard(self._by_pid, entry.pid, eid)
        self._unindex(eid, entry.metadata)

    def _index_metadata(self, eid: int, metadata: dict[str, Any]) -> None:
        for name, form in index_postings(metadata):
            if form is UNINDEXABLE:
                self._unindexed.setdefault(name, set()).add(eid)
            else:
                self._index.setdefault(name, {}).setdefault(form, set()).add(eid)

    def _unindex(self, eid: int, metadata: dict[str, Any]) -> None:
        """Take ``eid``'s postings out, dropping containers that become empty (so
        the index's size is the size of what it indexes)."""
        for name, form in index_postings(metadata):
            if form is UNINDEXABLE:
                _discard(self._unindexed, name, eid)
            else:
                postings = self._index[name]
                _discard(postings, form, eid)
                if not postings:
                    del self._index[name]

    # -- lifecycle and introspection --

    def _stats(self) -> dict[str, Any]:
        return {
            "keys": len(self._by_key),
            "pids": len(self._by_pid),
            "index_fields": len(self._index.keys() | self._unindexed.keys()),
            "index_values": sum(len(p) for p in self._index.values()),
            "index_postings": sum(len(ids) for p in self._index.values() for ids in p.values()),
            "unindexed_postings": sum(len(ids) for ids in self._unindexed.values()),
        }

    def _audit(self) -> list[str]:
        problems = []
        index: dict[str, dict[Hashable, set[int]]] = {}
        unindexed: dict[str, set[int]] = {}
        by_key: dict[Key, list[int]] = {}
        by_pid: dict[Pid, list[int]] = {}
        for eid, e in self._entries.items():
            by_key.setdefault(e.key, []).append(eid)
            by_pid.setdefault(e.pid, []).append(eid)
            for name, form in index_postings(e.metadata):
                if form is UNINDEXABLE:
                    unindexed.setdefault(name, set()).add(eid)
                else:
                    index.setdefault(name, {}).setdefault(form, set()).add(eid)
        if index != self._index:
            problems.append(f"metadata index {self._index!r} should be {index!r}")
        if unindexed != self._unindexed:
            problems.append(f"unindexed postings {self._unindexed!r} should be {unindexed!r}")
        if by_key != {k: list(ids) for k, ids in self._by_key.items()}:
            problems.append("key table out of step with the entries")
        if by_pid != {p: list(ids) for p, ids in self._by_pid.items()}:
            problems.append("pid table out of step with the entries")
        if self._unique and any(len(ids) > 1 for ids in by_key.values()):
            problems.append("a unique key has several entries")
        return problems

    def _close(self) -> None:
        for table in (self._entries, self._by_key, self._by_pid, self._index, self._unindexed):
            table.clear()


def _discard(table: dict, name: Any, eid: int) -> None:
    ids = table[name]
    if isinstance(ids, set):
        ids.discard(eid)
    else:
        ids.pop(eid, None)
    if not ids:
        del table[name]
