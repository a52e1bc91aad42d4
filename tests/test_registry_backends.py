"""The contract every registry storage backend keeps.

Every test that takes ``make``/``backend``/``dup`` runs once per backend, so
both backends answer to the same specification.  No node or process is
started: pids are built directly and "death" is a set of dead uids that the
fake ``is_alive`` consults (tests/registry_world.py).  The model-based
(Hypothesis) checks are in tests/test_registry_backends_model.py.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import pickle
import sqlite3
from collections import namedtuple

import pytest
from registry_world import KINDS, World, open_kind

from otp._pid import Pid
from otp.registry import (
    AlreadyRegistered,
    BackendClosed,
    BackendUnavailable,
    Entry,
    InvalidKey,
    InvalidMetadata,
    InvalidPid,
    InvalidValue,
    MembershipStore,
    MemoryBackend,
    NotFound,
    PidNotAlive,
    RegistryBackend,
    RegistryError,
    SQLiteBackend,
    open_backend,
)
from otp.registry._sqlite import SCHEMA_VERSION


@pytest.fixture
def world():
    return World()


@pytest.fixture(params=KINDS)
def make(request, world, tmp_path):
    opened, names = [], itertools.count()

    def make(mode="unique"):
        b = open_kind(request.param, world, tmp_path / f"reg{next(names)}.sqlite", mode)
        opened.append(b)
        return b

    yield make
    for b in opened:
        if not b._closed:
            assert b._audit() == []
        b.close()


@pytest.fixture
def backend(make):
    return make()


# --- the unique-mode contract ------------------------------------------------------------------------


def test_init_and_health_check(backend, world):
    assert isinstance(backend, RegistryBackend) and backend.mode == "unique"
    assert backend.list_all() == [] and backend.count() == 0 and backend.lookup("x") == []
    assert backend.health_check()["registrations_count"] == 0
    backend.register("svc", world.spawn(), None, {"type": "w", "caps": ["x"]})
    health = backend.health_check()
    for field in ("status", "registrations_count", "backend", "last_cleanup", "mode", "index_postings"):
        assert field in health
    assert health["status"] == "healthy" and health["backend"] == backend.name and health["registrations_count"] == 1
    assert health["index_postings"] == 1 and health["unindexed_postings"] == 1  # the list has no index form
    assert health["last_cleanup"] is None


def test_register_then_lookup_returns_pid_value_metadata(backend, world):
    pid = world.spawn()
    entry = backend.register("svc", pid, {"v": 1}, {"type": "worker", "tier": 2})
    assert entry == Entry("svc", pid, {"v": 1}, {"type": "worker", "tier": 2})
    [got] = backend.lookup("svc")
    assert got == entry and got.pid.ospid == pid.ospid and got.pid.node == pid.node


def test_other_live_pid_rejected(backend, world):
    a, b = world.spawn(), world.spawn()
    backend.register("svc", a, "first")
    with pytest.raises(AlreadyRegistered) as info:
        backend.register("svc", b, "second")
    assert info.value.key == "svc" and info.value.existing_pid == a
    assert [e.pid for e in backend.lookup("svc")] == [a]


def test_same_pid_is_idempotent_and_replaces(backend, world):
    a, b = world.spawn(), world.spawn()
    backend.register("first", b)
    backend.register("svc", a, 1, {"role": "old"})
    backend.register("svc", a, 2, {"role": "new"})
    assert backend.lookup("svc") == [Entry("svc", a, 2, {"role": "new"})]
    assert backend.count() == 2 and backend.match("role", "old") == []
    assert [e.key for e in backend.list_all()] == ["first", "svc"]  # kept its place


def test_dead_pid_is_cleaned_on_lookup(backend, world):
    a, b = world.spawn(), world.spawn()
    backend.register("x", a, metadata={"k": 1})
    backend.register("y", a)
    backend.register("z", b)
    world.kill(a)
    assert backend.lookup("x") == []
    health = backend.health_check()
    assert health["registrations_count"] == 1 and health["last_cleanup"] is not None  # "y" went too
    assert backend.keys_of(a) == [] and backend.match("k", 1) == []


def test_dead_holder_is_replaced_and_dead_pid_refused(backend, world):
    a, b = world.spawn(), world.spawn()
    backend.register("svc", a)
    world.kill(a)
    with pytest.raises(PidNotAlive):
        backend.register("other", a)
    backend.register("svc", b, "new")
    assert backend.list_all() == [Entry("svc", b, "new", {})]


def test_unregister_is_idempotent(backend, world):
    a, b = world.spawn(), world.spawn()
    backend.register("svc", a)
    assert backend.unregister("svc", b) == 0  # not b's to remove
    assert backend.unregister("svc") == 1
    assert backend.unregister("svc") == 0 and backend.unregister("never") == 0
    assert backend.lookup("svc") == []


def test_updates_replace_and_need_a_live_entry(backend, world):
    a = world.spawn()
    backend.register("svc", a, "v", {"a": 1, "b": 2})
    backend.update_metadata("svc", {"c": 3})
    assert backend.lookup("svc")[0].metadata == {"c": 3}
    assert backend.match("a", 1) == [] and [e.key for e in backend.match("c", 3)] == ["svc"]
    with pytest.raises(NotFound):
        backend.update_metadata("missing", {})
    with pytest.raises(NotFound):
        backend.update_metadata("svc", {}, pid=world.spawn())
    backend.update_value("svc", a, 2)
    assert backend.lookup("svc") == [Entry("svc", a, 2, {"c": 3})]
    for bad in (lambda: backend.update_value("svc", world.spawn(), 3), lambda: backend.update_value("x", a, 3)):
        with pytest.raises(NotFound):
            bad()
    world.kill(a)
    with pytest.raises(NotFound):
        backend.update_metadata("svc", {"d": 4})


def test_list_all_alive_only_no_duplicates(backend, world):
    a, b, c = world.spawn(), world.spawn(), world.spawn()
    for key, pid in [("a", a), ("b", b), ("c", c), ("a", a), ("b2", b)]:
        backend.register(key, pid)
    world.kill(b)
    assert backend.count() == 2 and backend.health_check()["registrations_count"] == 2
    assert [(e.key, e.pid) for e in backend.list_all()] == [("a", a), ("c", c)]


@pytest.mark.parametrize("key", [1.5, None, [1], {"a"}, True, (1, [2]), bytearray(b"x"), object(), (1, (2, False))])
def test_invalid_key_rejected(backend, world, key):
    with pytest.raises(InvalidKey) as info:
        backend.register(key, world.spawn())
    assert isinstance(info.value, TypeError)
    with pytest.raises(InvalidKey):
        backend.lookup(key)
    assert backend.count() == 0


@pytest.mark.parametrize(
    "pid",
    [
        123,
        "<0.1.0>",
        None,
        Pid("n", -1, 1, 0),
        Pid("n", 1 << 64, 1, 0),
        Pid(None, 1, 1, 0),  # type: ignore[arg-type]  # the wrong type is the case under test
        Pid("n", 1, 1 << 63, 0),
    ],
)
def test_invalid_pid_rejected(backend, pid):
    with pytest.raises(InvalidPid) as info:
        backend.register("svc", pid)
    assert isinstance(info.value, TypeError) and backend.count() == 0


@pytest.mark.parametrize("metadata", [[("a", 1)], {1: "x"}, "meta", {("a",): 1}])
def test_invalid_metadata_rejected(backend, world, metadata):
    pid = world.spawn()
    with pytest.raises(InvalidMetadata) as info:
        backend.register("svc", pid, None, metadata)
    assert isinstance(info.value, TypeError) and backend.count() == 0
    backend.register("svc", pid)
    with pytest.raises(InvalidMetadata):
        backend.update_metadata("svc", metadata)
    with pytest.raises(InvalidMetadata):
        backend.match(1, "x")


def test_caller_cannot_mutate_stored_metadata(backend, world):
    meta = {"role": "a"}
    entry = backend.register("svc", world.spawn(), None, meta)
    meta["role"] = "b"
    entry.metadata["role"] = "c"
    backend.lookup("svc")[0].metadata["role"] = "d"
    assert [e.metadata for e in backend.match("role", "a")] == [{"role": "a"}]


def test_batch_keeps_each_operation_atomic(backend, world):
    a, b = world.spawn(), world.spawn()
    with backend.batch():
        backend.register("x", a, 1, {"m": 1})
        with pytest.raises(AlreadyRegistered):
            backend.register("x", b)
        backend.register("y", b)
    with pytest.raises(NotFound), backend.batch():
        backend.update_metadata("y", {"m": 2})
        backend.update_metadata("nope", {})
    assert [(e.key, e.metadata) for e in backend.list_all()] == [("x", {"m": 1}), ("y", {"m": 2})]


def test_closed_backend_refuses_work(backend, world):
    backend.close()
    backend.close()
    with pytest.raises(BackendClosed):
        backend.register("svc", world.spawn())
    with pytest.raises(BackendUnavailable):
        backend.lookup("svc")
    assert backend.health_check()["status"] == "unhealthy"


# --- keys ------------------------------------------------------------------------------------------


class Color(enum.IntEnum):
    RED = 1


Named = namedtuple("Named", "a b")


@pytest.mark.parametrize(
    "key", ["ключ", "名前", "🦀 crab", "\udc80lone surrogate", "", b"\xff\x00", 0, -1, 2**100, -(2**70), (), ("a", 1, b"b"), (("deep",), (1, (2, ("x",))))]
)  # fmt: skip
def test_unicode_bytes_int_and_tuple_keys(backend, world, key):
    pid = world.spawn()
    backend.register(key, pid, "v")
    assert backend.lookup(key) == [Entry(key, pid, "v", {})]
    assert backend.keys_of(pid) == [key] and [e.key for e in backend.list_all()] == [key]


def test_equal_keys_are_one_key(backend, world):
    a, b = world.spawn(), world.spawn()
    backend.register(Named("x", Color.RED), a)
    assert type(backend.lookup(("x", 1))[0].key) is tuple and backend.lookup(("x", 1))[0].key == ("x", 1)
    with pytest.raises(AlreadyRegistered):
        backend.register(("x", 1), b)
    backend.register("1", b)  # distinct from 1, b"1" and ("1",)
    backend.register(b"1", b)
    backend.register(1, b)
    assert backend.count() == 4


# --- duplicate mode --------------------------------------------------------------------------------


def test_duplicate_mode(make, world):
    dup = make("duplicate")
    a, b = world.spawn(), world.spawn()
    dup.register("topic", a, 1)
    dup.register("topic", b, 2)
    dup.register("topic", a, 3)
    assert [(e.pid, e.value) for e in dup.lookup("topic")] == [(a, 1), (b, 2), (a, 3)]
    assert dup.keys_of(a) == ["topic"] and dup.count() == 3
    dup.update_value("topic", a, 9)
    assert [e.value for e in dup.lookup("topic")] == [9, 2, 9]
    dup.update_metadata("topic", {"m": 1}, pid=b)
    assert [e.pid for e in dup.match("m", 1)] == [b]
    assert dup.unregister("topic", a) == 2
    assert [e.pid for e in dup.lookup("topic")] == [b]
    dup.register("topic", a)
    world.kill(b)
    assert [e.pid for e in dup.lookup("topic")] == [a]
    assert dup.unregister("topic") == 1 and dup.lookup("topic") == []


def test_unregister_pid_returns_its_keys(make, world):
    for backend in (make(), make("duplicate")):
        a, b = world.spawn(), world.spawn()
        for key in ("x", "y", "x", "z") if backend.mode == "duplicate" else ("x", "y", "z"):
            backend.register(key, a)
        backend.register("w", b)
        assert backend.unregister_pid(a) == ["x", "y", "z"]
        assert backend.unregister_pid(a) == [] and backend.keys_of(a) == []
        assert [e.key for e in backend.list_all()] == ["w"]


# --- metadata index --------------------------------------------------------------------------------


def test_match_is_equality_through_the_index(backend, world):
    pids = [world.spawn() for _ in range(6)]
    values = [1, True, 1.0, "1", [1], (1, "a")]
    for i, (pid, value) in enumerate(zip(pids, values)):
        backend.register(i, pid, None, {"f": value, "other": i})
    assert [e.key for e in backend.match("f", 1)] == [0, 1, 2]  # 1 == True == 1.0
    assert [e.key for e in backend.match("f", 1.0)] == [0, 1, 2]
    assert [e.key for e in backend.match("f", "1")] == [3]
    assert [e.key for e in backend.match("f", [1])] == [4]  # unhashable: per-field scan
    assert [e.key for e in backend.match("f", (True, "a"))] == [5]
    assert backend.match("f", 2) == [] and backend.match("nope", 1) == []
    assert [e.key for e in backend.select(lambda e: e.metadata["other"] % 2)] == [1, 3, 5]


def test_index_follows_every_write(backend, world):
    a, b = world.spawn(), world.spawn()
    backend.register("s", a, None, {"type": "w", "caps": ["x"]})
    backend.register("t", b, None, {"type": "w"})
    backend.update_metadata("s", {"type": "db"})
    backend.unregister("t")
    assert [e.key for e in backend.match("type", "db")] == ["s"] and backend.match("type", "w") == []
    assert backend._audit() == []
    backend.unregister_pid(a)
    health = backend.health_check()
    assert health["index_postings"] == 0 and health["unindexed_postings"] == 0


# --- sqlite specifics ------------------------------------------------------------------------------


def test_sqlite_survives_reopen(tmp_path, world):
    path = tmp_path / "reg.sqlite"
    a, b = world.spawn(1), world.spawn(2)
    with SQLiteBackend(path, is_alive=world.is_alive) as first, first.batch():
        first.register(("svc", "ключ"), a, {"v": [1]}, {"type": "w", "n": 2})
        first.register(b"raw", b, 7)
    world.kill(b)
    with SQLiteBackend(path, is_alive=world.is_alive) as again:
        assert again.health_check()["registrations_count"] == 2
        assert again.list_all() == [Entry(("svc", "ключ"), a, {"v": [1]}, {"type": "w", "n": 2})]
        assert [e.pid.ospid for e in again.match("n", 2.0)] == [1]
        assert again.health_check()["registrations_count"] == 1


def test_sqlite_fails_loudly(tmp_path, world):
    junk, other, held = tmp_path / "junk.sqlite", tmp_path / "other.sqlite", tmp_path / "held.sqlite"
    junk.write_bytes(b"not a database" * 500)
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE t (x)")
    for path in (tmp_path / "no" / "dir.sqlite", tmp_path, junk, other, ":memory:"):
        with pytest.raises(BackendUnavailable):
            SQLiteBackend(path, is_alive=world.is_alive)
    assert junk.read_bytes() == b"not a database" * 500
    with sqlite3.connect(other) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # left untouched
    with SQLiteBackend(held, is_alive=world.is_alive):
        with pytest.raises(BackendUnavailable, match="locked"):
            SQLiteBackend(held, is_alive=world.is_alive, busy_timeout=0)
    with pytest.raises(BackendUnavailable, match="unique"):
        SQLiteBackend(held, is_alive=world.is_alive, mode="duplicate")


def test_sqlite_rejects_unpicklable_and_rolls_back(tmp_path, world):
    with SQLiteBackend(tmp_path / "r.sqlite", is_alive=world.is_alive) as b:
        pid = world.spawn()
        b.register("ok", pid)
        with pytest.raises(InvalidValue):
            b.register("bad", pid, value=(x for x in ()))
        with pytest.raises(InvalidMetadata):
            b.update_metadata("ok", {"gen": (x for x in ())})
        assert [e.key for e in b.list_all()] == ["ok"] and b._audit() == []


def test_sqlite_keeps_pg_memberships_in_join_order(tmp_path, world):
    """OTP's pg: a process may join a group many times and must leave it as
    many times; the sqlite store keeps one row per join, removes the oldest
    on a leave and every row of an exited process, across a reopen."""
    path = tmp_path / "pg.sqlite"
    a, b = world.spawn(1), world.spawn(2)
    with SQLiteBackend(path, is_alive=world.is_alive) as first:
        assert isinstance(first, MembershipStore)
        first.add_members("g", [a, b, a])
        first.add_members(("h", 1), [b])
        first.remove_members("g", [a])
        assert first.memberships() == [("g", b), ("g", a), (("h", 1), b)]
        assert first.health_check()["pg_memberships"] == 3
    with SQLiteBackend(path, is_alive=world.is_alive) as again:
        assert again.memberships() == [("g", b), ("g", a), (("h", 1), b)]
        again.remove_member_pid(b)
        assert again.memberships() == [("g", a)]
    assert not isinstance(MemoryBackend(is_alive=world.is_alive), MembershipStore)


def test_sqlite_migrates_a_version_1_file_and_refuses_a_newer_one(tmp_path, world):
    """The registry file's schema is versioned (``PRAGMA user_version``): a
    file written before pg memberships were stored is migrated on open, its
    entries kept; a file of a newer schema is refused."""
    path = tmp_path / "old.sqlite"
    pid = world.spawn()
    with SQLiteBackend(path, is_alive=world.is_alive) as b:
        b.register("name", pid, "v")
    with contextlib.closing(sqlite3.connect(path)) as c, c:  # the file as version 1 wrote it
        c.execute("DROP TABLE pg_members")
        c.execute("PRAGMA user_version=1")
    with SQLiteBackend(path, is_alive=world.is_alive) as b:
        assert b.lookup("name") == [Entry("name", pid, "v")]
        assert b.health_check()["schema_version"] == SCHEMA_VERSION == 2
        b.add_members("g", [pid])
    with SQLiteBackend(path, is_alive=world.is_alive) as b:
        assert b.memberships() == [("g", pid)]
    with contextlib.closing(sqlite3.connect(path)) as c, c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == 2
        c.execute("PRAGMA user_version=3")
    with pytest.raises(BackendUnavailable, match="schema 3"):
        SQLiteBackend(path, is_alive=world.is_alive)


# --- configuration ----------------------------------------------------------------------------------


def test_open_backend(tmp_path, world):
    mem = open_backend("memory", is_alive=world.is_alive)
    assert isinstance(mem, MemoryBackend) and open_backend(mem, is_alive=world.is_alive) is mem
    dup = open_backend(("memory", {"mode": "duplicate"}), is_alive=world.is_alive)
    assert dup.mode == "duplicate"
    with open_backend(("sqlite", tmp_path / "a.sqlite"), is_alive=world.is_alive) as s:
        assert isinstance(s, SQLiteBackend) and s.mode == "unique"
    with open_backend(
        {"backend": "sqlite", "path": str(tmp_path / "b.sqlite")}, is_alive=world.is_alive, mode="duplicate"
    ) as s:
        assert s.mode == "duplicate"
    bad = ["horde", "sqlite", ("sqlite",), {"path": "x"}, ("memory", {"bogus": 1}), ("memory", {"mode": "bag"}), 42]
    for spec in bad:
        with pytest.raises(BackendUnavailable):
            open_backend(spec, is_alive=world.is_alive)
    with pytest.raises(BackendUnavailable):
        open_backend(mem, is_alive=world.is_alive, mode="duplicate")


def test_entries_and_errors_pickle(world):
    entry, err = Entry(("k", 1), world.spawn(), [1], {"a": 1}), AlreadyRegistered("k", world.spawn())
    assert pickle.loads(pickle.dumps(entry)) == entry
    assert pickle.loads(pickle.dumps(err)).existing_pid == err.existing_pid and isinstance(err, RegistryError)
