"""Persistent registry backend on the standard library's sqlite3.

Why each setting:

* **WAL, synchronous=NORMAL.**  A commit appends to the write-ahead log
  without an fsync, so it survives the crash of the registry process (the
  case persistence is for: the process restarts, its clients live on) and
  loses at most the last commits to a power cut, after which every
  registered process is dead anyway.  WAL unavailable is an error, not a
  reason to run differently.
* **locking_mode=EXCLUSIVE.**  The open backend holds the file's write lock
  until :meth:`close`, so a second registry on the same file fails at
  construction instead of two registries overwriting each other.  The OS
  drops the lock when the process dies, so a restarted registry can reopen.
* **One transaction per operation** (``BEGIN IMMEDIATE``), or per
  :meth:`~BaseBackend.batch` with a SAVEPOINT per operation: an operation is
  applied whole or not at all, and a batch pays for one commit.
* **Foreign keys with ON DELETE CASCADE** from the metadata index to the
  entries: deleting an entry cannot leave index rows behind.
* **A unique index on ``key`` in unique mode**: the store itself refuses two
  holders of one key.  The mode is recorded in the file; reopening in the
  other mode is refused.
* **Versioned schema** (``PRAGMA user_version``).  A file of an older
  version is migrated when it is opened, in the transaction that takes the
  write lock (all or nothing): each step of :data:`_MIGRATIONS` takes the
  schema from one version to the next, and a new file is the first schema
  plus every step, so old and new files end up alike.  A file of a newer
  version is refused.  Version 2 added ``pg_members``, the process-group
  memberships (one row per join, in join order) that the registry process
  writes through (:class:`~otp.registry.MembershipStore`).

Keys are stored in a canonical binary encoding (:func:`encode_key`):
each term is a tag byte followed by its content, with lengths and counts as
unsigned LEB128 varints::

    int    b"I" len  two's-complement big-endian, (bit_length + 8) // 8 bytes
    str    b"S" len  UTF-8 (lone surrogates kept with "surrogatepass")
    bytes  b"B" len  raw
    tuple  b"T" n    the n items' encodings, concatenated
    None   b"N"      (metadata index only)
    float  b"F"      8 bytes IEEE 754 big-endian (index only; integral floats are ints)

Every encoding is self-delimiting, so the code is prefix-free and hence
injective: two keys encode equally exactly when they are equal.  The same
code files metadata values in the index (``None`` and floats only occur
there, see :func:`~otp.registry._backend.index_form`).  Values, metadata
and pids are pickled (protocol 5; cloudpickle if plain pickle refuses).
Unpickling runs code: the file must be as trusted as the node's directory.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sqlite3
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .._codec import dumps
from .._errors import EncodeError
from .._pid import Pid
from ._backend import (
    KEEP,
    UNINDEXABLE,
    BackendUnavailable,
    BaseBackend,
    Entry,
    InvalidMetadata,
    InvalidValue,
    Key,
    Mode,
    Pairs,
    index_form,
    index_postings,
    values_equal,
)  # fmt: skip

__all__ = ["SQLiteBackend", "encode_key", "decode_key"]

APPLICATION_ID = 0x6D615267  # "maRg", in the file header: tells our files from any other sqlite file
SCHEMA_VERSION = 2
_SIGN = 1 << 63
_MASK = (1 << 64) - 1
_ENTRY = "id, key, pid_node, pid_uid, pid_ospid, pid_start, value, metadata"
_SCHEMA = """
CREATE TABLE registry_info (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE entries (
    id INTEGER PRIMARY KEY, key BLOB NOT NULL, pid_node BLOB NOT NULL, pid_uid INTEGER NOT NULL,
    pid_ospid INTEGER NOT NULL, pid_start INTEGER NOT NULL, value BLOB NOT NULL, metadata BLOB NOT NULL);
CREATE {unique} INDEX entries_by_key ON entries (key);
CREATE INDEX entries_by_pid ON entries (pid_uid);
CREATE TABLE metadata_index (
    entry_id INTEGER NOT NULL REFERENCES entries (id) ON DELETE CASCADE, field BLOB NOT NULL, value BLOB,
    PRIMARY KEY (entry_id, field)) WITHOUT ROWID;
CREATE INDEX metadata_by_value ON metadata_index (field, value);
"""
#: Statements taking the schema from version ``v`` to ``v + 1``, by ``v``.
_MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE pg_members (
    id INTEGER PRIMARY KEY, grp BLOB NOT NULL, pid_node BLOB NOT NULL, pid_uid INTEGER NOT NULL,
    pid_ospid INTEGER NOT NULL, pid_start INTEGER NOT NULL);
CREATE INDEX pg_members_by_group ON pg_members (grp, pid_uid);
CREATE INDEX pg_members_by_pid ON pg_members (pid_uid);
""",
}


# --- canonical encoding -------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _encode(form: Any, out: bytearray) -> None:
    t = type(form)
    if t is str:
        data = form.encode("utf-8", "surrogatepass")
        out += b"S" + _varint(len(data)) + data
    elif t is int:
        data = form.to_bytes((form.bit_length() + 8) // 8, "big", signed=True)
        out += b"I" + _varint(len(data)) + data
    elif t is bytes:
        out += b"B" + _varint(len(form)) + form
    elif t is tuple:
        out += b"T" + _varint(len(form))
        for item in form:
            _encode(item, out)
    elif form is None:
        out += b"N"
    elif t is float:
        out += b"F" + struct.pack(">d", form)
    else:  # canonical_key/index_form produce nothing else
        raise TypeError(f"no canonical encoding for {t.__name__}")


def encode_key(form: Any) -> bytes:
    """The canonical encoding of a canonical key or index form (see the module doc)."""
    if type(form) is str:  # the common case, without the bytearray
        data = form.encode("utf-8", "surrogatepass")
        return b"S" + _varint(len(data)) + data
    out = bytearray()
    _encode(form, out)
    return bytes(out)


def _decode(data: bytes, pos: int) -> tuple[Any, int]:
    tag = data[pos : pos + 1]
    pos += 1
    if tag == b"N":
        return None, pos
    if tag == b"F":
        return struct.unpack_from(">d", data, pos)[0], pos + 8
    n = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    if tag == b"T":
        items = []
        for _ in range(n):
            item, pos = _decode(data, pos)
            items.append(item)
        return tuple(items), pos
    chunk, end = data[pos : pos + n], pos + n
    if tag == b"S":
        return chunk.decode("utf-8", "surrogatepass"), end
    if tag == b"I":
        return int.from_bytes(chunk, "big", signed=True), end
    if tag == b"B":
        return bytes(chunk), end
    raise ValueError(f"bad tag {tag!r} in a registry key")


def decode_key(data: bytes) -> Any:
    """Inverse of :func:`encode_key`."""
    form, end = _decode(data, 0)
    if end != len(data):
        raise ValueError("trailing bytes after a registry key")
    return form


def _field(name: str) -> bytes:
    return name.encode("utf-8", "surrogatepass")


def _dump(obj: Any, error: type[Exception], what: str) -> bytes:
    try:
        return dumps(obj)
    except EncodeError as exc:
        raise error(f"the sqlite registry backend cannot pickle {what}: {exc}") from exc


# --- the backend --------------------------------------------------------------------------------


class SQLiteBackend(BaseBackend):
    """Registry storage in a sqlite file at ``path``, surviving restarts.

    Construction fails with :class:`BackendUnavailable` when the file cannot be
    opened or written, is corrupt (``PRAGMA quick_check``, O(file size)), is not
    a registry file, was written in the other ``mode``, or is held by another
    open backend (after waiting ``busy_timeout`` seconds).  Use it only in the
    process that created it: a sqlite connection must not cross a fork."""

    name = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        is_alive: Callable[[Pid], bool],
        mode: Mode = "unique",
        busy_timeout: float = 1.0,
    ) -> None:
        super().__init__(is_alive=is_alive, mode=mode)
        self.path = os.fspath(path)
        self._owner = os.getpid()
        self._depth = 0
        try:
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"cannot open registry database {self.path!r}: {exc}") from exc
        try:
            self._open()
        except BaseException as exc:
            self._closed = True
            self._conn.close()
            if isinstance(exc, sqlite3.Error):
                hint = " (another open registry backend holds it)" if "locked" in str(exc) else ""
                raise BackendUnavailable(f"cannot use registry database {self.path!r}: {exc}{hint}") from exc
            raise

    def __repr__(self) -> str:
        return f"<SQLiteBackend {self.mode} {self.path!r}{' closed' if self._closed else ''}>"

    def _open(self) -> None:
        c = self._conn
        c.execute("PRAGMA locking_mode=EXCLUSIVE")
        app_id = c.execute("PRAGMA application_id").fetchone()[0]  # first read: a non-database fails here
        fresh = app_id == 0 and c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
        version = 1  # a new file is written in the first schema, then migrated like any other
        if not fresh:  # never touch (not even switch to WAL) a file that is not ours
            if app_id != APPLICATION_ID:
                raise BackendUnavailable(
                    f"{self.path!r} is a sqlite file but not a registry (application_id {app_id:#x})"
                )
            version = c.execute("PRAGMA user_version").fetchone()[0]
            if not 1 <= version <= SCHEMA_VERSION:
                raise BackendUnavailable(
                    f"{self.path!r} has registry schema {version}; this code reads 1 to {SCHEMA_VERSION}"
                )
            check = c.execute("PRAGMA quick_check").fetchall()
            if check != [("ok",)]:
                raise BackendUnavailable(f"{self.path!r} is corrupt: {check[:5]!r}")
        journal = c.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if journal.lower() != "wal":
            raise BackendUnavailable(f"{self.path!r} cannot use write-ahead logging (journal mode {journal!r})")
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute("PRAGMA foreign_keys=ON")
        with self._transaction():  # takes the write lock now, so a second opener fails here
            if fresh:
                _execute(c, _SCHEMA.format(unique="UNIQUE" if self._unique else ""))
                c.execute(f"PRAGMA application_id={APPLICATION_ID}")
                c.execute("INSERT INTO registry_info VALUES ('mode', ?)", (self.mode,))
            for step in range(version, SCHEMA_VERSION):
                _execute(c, _MIGRATIONS[step])
            c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            stored = c.execute("SELECT value FROM registry_info WHERE name = 'mode'").fetchone()
            if stored is None or stored[0] != self.mode:
                raise BackendUnavailable(f"{self.path!r} holds a {stored and stored[0]} registry, not {self.mode}")
            c.execute("INSERT OR REPLACE INTO registry_info VALUES ('opened_at', ?)", (repr(time.time()),))

    @contextlib.contextmanager
    def _read(self) -> Iterator[None]:
        # One SELECT in autocommit mode is atomic on its own, and this
        # connection is the only writer: no BEGIN/COMMIT round (a lookup
        # costs about 15 us instead of 26 us).
        if self._depth:
            yield
            return
        if self._closed:
            super()._transaction()  # raises BackendClosed
        if os.getpid() != self._owner:
            raise BackendUnavailable(f"{self!r} was opened by process {self._owner}, not this one")
        try:
            yield
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"registry database {self.path!r} failed: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self, *, keep_on_error: bool = False) -> Iterator[None]:
        if self._closed:
            super()._transaction()  # raises BackendClosed
        if os.getpid() != self._owner:
            raise BackendUnavailable(f"{self!r} was opened by process {self._owner}, not this one")
        c = self._conn
        try:
            if self._depth:  # inside a batch or an operation: a savepoint, undone alone
                name = f"s{self._depth}"
                c.execute(f"SAVEPOINT {name}")
                self._depth += 1
                try:
                    yield
                except BaseException:
                    c.execute(f"ROLLBACK TO {name}")
                    raise
                finally:
                    self._depth -= 1
                    c.execute(f"RELEASE {name}")
                return
            c.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                c.execute("COMMIT" if keep_on_error else "ROLLBACK")
                raise
            finally:
                self._depth = 0
            c.execute("COMMIT")
        except sqlite3.IntegrityError:  # a broken invariant of ours, not of the store: let it show as is
            raise
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"registry database {self.path!r} failed: {exc}") from exc

    # -- rows --

    def _row(self, row: tuple) -> tuple[int, Entry]:
        eid, key, node, uid, ospid, start, value, metadata = row
        pid = Pid(node.decode("utf-8", "surrogatepass"), uid & _MASK, ospid, start)
        return eid, Entry(decode_key(key), pid, pickle.loads(value), pickle.loads(metadata))

    def _rows(self, sql: str, params: tuple = ()) -> Pairs:
        return [self._row(r) for r in self._conn.execute(sql, params)]

    def _index_rows(self, eid: int, metadata: dict[str, Any]) -> list[tuple[int, bytes, bytes | None]]:
        return [
            (eid, _field(name), None if form is UNINDEXABLE else encode_key(form))
            for name, form in index_postings(metadata)
        ]

    # -- reads --

    def _raw_lookup(self, key: Key) -> Pairs:
        return self._rows(f"SELECT {_ENTRY} FROM entries WHERE key = ? ORDER BY id", (encode_key(key),))

    def _raw_all(self) -> Pairs:
        return self._rows(f"SELECT {_ENTRY} FROM entries ORDER BY id")

    def _raw_match(self, metadata_key: str, value: Any) -> Pairs:
        form = index_form(value)
        name = _field(metadata_key)
        params: tuple[bytes, ...]
        if form is UNINDEXABLE:  # no index form: compare every value of the field
            ids, params = "SELECT entry_id FROM metadata_index WHERE field = ?", (name,)
        else:  # the value's postings, plus the field's values that have no index form
            ids = (
                "SELECT entry_id FROM metadata_index WHERE field = ? AND value = ? UNION "
                "SELECT entry_id FROM metadata_index WHERE field = ? AND value IS NULL"
            )
            params = (name, encode_key(form), name)
        rows = self._rows(f"SELECT {_ENTRY} FROM entries WHERE id IN ({ids}) ORDER BY id", params)
        return [
            (eid, e) for eid, e in rows if metadata_key in e.metadata and values_equal(e.metadata[metadata_key], value)
        ]

    def _raw_keys_of(self, pid: Pid) -> list[Key]:
        rows = self._conn.execute("SELECT key FROM entries WHERE pid_uid = ? ORDER BY id", (_signed(pid.uid),))
        return [decode_key(k) for k in dict.fromkeys(r[0] for r in rows)]

    def _raw_pid_counts(self) -> dict[Pid, int]:
        rows = self._conn.execute(
            "SELECT pid_node, pid_uid, pid_ospid, pid_start, count(*) FROM entries GROUP BY pid_uid"
        )
        return {
            Pid(node.decode("utf-8", "surrogatepass"), uid & _MASK, ospid, start): n
            for node, uid, ospid, start, n in rows
        }

    def _raw_count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM entries").fetchone()[0]

    # -- writes --

    def _raw_insert(self, entry: Entry) -> int:
        pid = entry.pid
        cur = self._conn.execute(
            "INSERT INTO entries (key, pid_node, pid_uid, pid_ospid, pid_start, value, metadata) VALUES (?,?,?,?,?,?,?)",
            (
                encode_key(entry.key), _field(pid.node), _signed(pid.uid), pid.ospid, pid.start,
                _dump(entry.value, InvalidValue, "the value"), _dump(entry.metadata, InvalidMetadata, "the metadata"),
            ),
        )  # fmt: skip
        eid = cur.lastrowid
        assert eid is not None
        if entry.metadata:
            self._conn.executemany("INSERT INTO metadata_index VALUES (?,?,?)", self._index_rows(eid, entry.metadata))
        return eid

    def _raw_update(self, eid: int, *, pid: Pid | None = None, value: Any = KEEP, metadata: Any = KEEP) -> None:
        sets: list[str] = []
        params: list[Any] = []
        if pid is not None:
            sets += ["pid_node = ?", "pid_ospid = ?", "pid_start = ?"]
            params += [_field(pid.node), pid.ospid, pid.start]
        if value is not KEEP:
            sets.append("value = ?")
            params.append(_dump(value, InvalidValue, "the value"))
        if metadata is not KEEP:
            sets.append("metadata = ?")
            params.append(_dump(metadata, InvalidMetadata, "the metadata"))
        if sets:
            self._conn.execute(f"UPDATE entries SET {', '.join(sets)} WHERE id = ?", (*params, eid))
        if metadata is not KEEP:
            self._conn.execute("DELETE FROM metadata_index WHERE entry_id = ?", (eid,))
            self._conn.executemany("INSERT INTO metadata_index VALUES (?,?,?)", self._index_rows(eid, metadata))

    def _raw_delete(self, ids: list[int]) -> None:
        self._conn.executemany("DELETE FROM entries WHERE id = ?", [(eid,) for eid in ids])  # index rows cascade

    def _raw_delete_pid(self, pid: Pid) -> list[Key]:
        keys = self._raw_keys_of(pid)
        if keys:
            self._conn.execute("DELETE FROM entries WHERE pid_uid = ?", (_signed(pid.uid),))
        return keys

    # -- process-group memberships (MembershipStore) --

    def add_members(self, group: Key, pids: Sequence[Pid]) -> None:
        grp = encode_key(group)
        with self._transaction():
            self._conn.executemany(
                "INSERT INTO pg_members (grp, pid_node, pid_uid, pid_ospid, pid_start) VALUES (?,?,?,?,?)",
                [(grp, _field(p.node), _signed(p.uid), p.ospid, p.start) for p in pids],
            )

    def remove_members(self, group: Key, pids: Sequence[Pid]) -> None:
        grp = encode_key(group)
        with self._transaction():
            for pid in pids:
                self._conn.execute(
                    "DELETE FROM pg_members WHERE id = (SELECT min(id) FROM pg_members WHERE grp = ? AND pid_uid = ?)",
                    (grp, _signed(pid.uid)),
                )

    def remove_member_pid(self, pid: Pid) -> None:
        with self._transaction():
            self._conn.execute("DELETE FROM pg_members WHERE pid_uid = ?", (_signed(pid.uid),))

    def memberships(self) -> list[tuple[Key, Pid]]:
        with self._read():
            rows = self._conn.execute(
                "SELECT grp, pid_node, pid_uid, pid_ospid, pid_start FROM pg_members ORDER BY id"
            ).fetchall()
        return [
            (decode_key(grp), Pid(node.decode("utf-8", "surrogatepass"), uid & _MASK, ospid, start))
            for grp, node, uid, ospid, start in rows
        ]

    # -- lifecycle and introspection --

    def _stats(self) -> dict[str, Any]:
        c = self._conn
        one = lambda sql: c.execute(sql).fetchone()[0]  # noqa: E731
        wal = self.path + "-wal"
        return {
            "path": self.path,
            "journal_mode": one("PRAGMA journal_mode"),
            "schema_version": SCHEMA_VERSION,
            "page_count": one("PRAGMA page_count"),
            "page_size": one("PRAGMA page_size"),
            "file_size_bytes": os.path.getsize(self.path),
            "wal_size_bytes": os.path.getsize(wal) if os.path.exists(wal) else 0,
            "pids": one("SELECT count(DISTINCT pid_uid) FROM entries"),
            "index_fields": one("SELECT count(DISTINCT field) FROM metadata_index"),
            "index_postings": one("SELECT count(*) FROM metadata_index WHERE value IS NOT NULL"),
            "unindexed_postings": one("SELECT count(*) FROM metadata_index WHERE value IS NULL"),
            "pg_memberships": one("SELECT count(*) FROM pg_members"),
        }

    def _audit(self) -> list[str]:
        with self._transaction():
            expected = {row for eid, e in self._raw_all() for row in self._index_rows(eid, e.metadata)}
            actual = set(self._conn.execute("SELECT entry_id, field, value FROM metadata_index"))
        problems = []
        if actual - expected:
            problems.append(f"stale index rows: {sorted(actual - expected)!r}")
        if expected - actual:
            problems.append(f"missing index rows: {sorted(expected - actual)!r}")
        return problems

    def _close(self) -> None:
        self._conn.close()  # the last connection checkpoints the log and removes it


def _execute(conn: sqlite3.Connection, script: str) -> None:
    """Run ``script``'s statements one by one: ``executescript`` would
    commit the transaction they belong to."""
    for statement in script.split(";")[:-1]:
        conn.execute(statement)


def _signed(uid: int) -> int:
    """A 64-bit unsigned uid as the signed 64-bit integer sqlite stores."""
    return uid - (1 << 64) if uid & _SIGN else uid
