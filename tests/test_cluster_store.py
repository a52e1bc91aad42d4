"""The cluster store against a real etcd (tests/etcd_server.py): keys,
prefixes, the put-if-absent race, leases and their expiry, watches, and
what a caller sees when the store stops, hangs or loses a member.

Waits are on the store's answers and on watch events taken from a queue,
with timeouts far above what they need (the machine is shared).
"""

from __future__ import annotations

import math
import queue
import socket
import threading
import time
import uuid

import pytest
from etcd_server import post, requires_etcd, running_etcd

from otp import OTPError
from otp._cluster_store import (
    ClusterStore,
    DeleteEvent,
    Lease,
    LeaseExpired,
    PutEvent,
    StoreRejected,
    StoreUnavailable,
    WatchCompacted,
    WatchEnded,
    WatchEvent,
)
from otp._etcd_store import EtcdStore

pytestmark = requires_etcd

#: How long a test waits for an event that must come.
EVENT_WAIT = 30.0


@pytest.fixture(scope="module")
def etcd():
    with running_etcd(1) as cluster:
        yield cluster


@pytest.fixture
def store(etcd):
    with EtcdStore(etcd.endpoints) as s:
        yield s


@pytest.fixture
def prefix():
    """A prefix of the test's own, so tests sharing the module's etcd do
    not see each other's keys."""
    return f"t/{uuid.uuid4().hex}/"


def next_event(q: queue.Queue[WatchEvent], timeout: float = EVENT_WAIT) -> WatchEvent:
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no watch event within {timeout} s") from None


def test_etcd_store_is_a_cluster_store(store):
    s: ClusterStore = store
    assert s is store
    assert issubclass(StoreUnavailable, OTPError)
    assert issubclass(LeaseExpired, LookupError)


def test_put_then_get(store, prefix):
    assert store.get(prefix + "a") is None
    rev1 = store.put(prefix + "a", b"one")
    kv = store.get(prefix + "a")
    assert kv is not None
    assert (kv.key, kv.value, kv.lease, kv.version) == (prefix + "a", b"one", None, 1)
    assert kv.create_revision == kv.mod_revision == rev1
    rev2 = store.put(prefix + "a", b"two")
    assert rev2 > rev1
    kv = store.get(prefix + "a")
    assert kv is not None
    assert (kv.value, kv.version, kv.create_revision, kv.mod_revision) == (b"two", 2, rev1, rev2)
    store.put(prefix + "empty", b"")
    assert store.get(prefix + "empty").value == b""
    store.put(prefix + "bin", bytes(range(256)))
    assert store.get(prefix + "bin").value == bytes(range(256))
    store.put(prefix + "ключ", b"x")
    assert store.get(prefix + "ключ").key == prefix + "ключ"


def test_get_prefix_returns_only_the_prefix_sorted(store, prefix):
    for key in ["b", "a", "c/d"]:
        store.put(prefix + key, key.encode())
    store.put(prefix[:-1], b"the prefix without its slash")  # not under prefix
    store.put(prefix[:-1] + "0", b"next to it")  # '0' sorts right after '/'
    rev = store.put(prefix + "z", b"z")
    snap = store.get_prefix(prefix)
    assert [kv.key for kv in snap.items] == [prefix + k for k in ["a", "b", "c/d", "z"]]
    assert [kv.value for kv in snap.items] == [b"a", b"b", b"c/d", b"z"]
    assert snap.revision >= rev
    assert store.get_prefix(prefix + "nothing/").items == ()


def test_delete_and_delete_bound_to_a_lease(store, prefix):
    assert store.delete(prefix + "missing") is False
    store.put(prefix + "k", b"v")
    assert store.delete(prefix + "k") is True
    assert store.get(prefix + "k") is None

    mine, theirs = store.grant_lease(30), store.grant_lease(30)
    try:
        store.put(prefix + "name", b"held", lease=theirs)
        assert store.delete(prefix + "name", lease=mine) is False  # not ours to release
        assert store.get(prefix + "name").value == b"held"
        assert store.delete(prefix + "name", lease=theirs) is True
        assert store.get(prefix + "name") is None
    finally:
        store.revoke_lease(mine)
        store.revoke_lease(theirs)


def test_put_if_absent_takes_a_free_key_once(store, prefix):
    assert store.put_if_absent(prefix + "k", b"first") is True
    assert store.put_if_absent(prefix + "k", b"second") is False
    assert store.get(prefix + "k").value == b"first"
    store.delete(prefix + "k")
    assert store.put_if_absent(prefix + "k", b"third") is True


def test_put_if_absent_race_has_exactly_one_winner(etcd, prefix):
    """Two clients (own connections, own threads) race for the same keys,
    released together by a barrier: for every key exactly one wins, and
    the store holds the winner's value."""
    rounds = 40
    keys = [f"{prefix}name{i}" for i in range(rounds)]
    barrier = threading.Barrier(2)
    results: dict[str, list[bool]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def racer(who: str) -> None:
        try:
            with EtcdStore(etcd.endpoints) as s:
                lease = s.grant_lease(60)
                for key in keys:
                    barrier.wait(EVENT_WAIT)
                    results[who].append(s.put_if_absent(key, who.encode(), lease=lease))
        except BaseException as e:
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=racer, args=(who,)) for who in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    with EtcdStore(etcd.endpoints) as s:
        for i, key in enumerate(keys):
            won_a, won_b = results["a"][i], results["b"][i]
            assert won_a != won_b, f"{key}: a={won_a} b={won_b}"
            assert s.get(key).value == (b"a" if won_a else b"b")


def test_put_if_absent_races_across_processes(etcd, prefix):
    """The same, between two OS processes."""
    import multiprocessing

    rounds = 20
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    barrier = ctx.Barrier(2)
    procs = [
        ctx.Process(target=_race_in_process, args=(etcd.endpoints, prefix, who, rounds, barrier, results))
        for who in "ab"
    ]
    for p in procs:
        p.start()
    try:
        outcome = dict(results.get(timeout=120) for _ in procs)
    finally:
        for p in procs:
            p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    for i in range(rounds):
        assert outcome["a"][i] != outcome["b"][i], f"round {i}: a={outcome['a'][i]} b={outcome['b'][i]}"


def _race_in_process(endpoints, prefix, who, rounds, barrier, results):
    won = []
    with EtcdStore(endpoints) as s:
        for i in range(rounds):
            barrier.wait(60)
            won.append(s.put_if_absent(f"{prefix}p{i}", who.encode()))
    results.put((who, won))


def test_watch_delivers_puts_and_deletes_in_order(store, prefix):
    q: queue.Queue[WatchEvent] = queue.Queue()
    watch = store.watch_prefix(prefix, q.put)
    try:
        revs = [
            store.put(prefix + "a", b"1"),
            store.put(prefix + "b", b"2"),
            store.put(prefix + "a", b"3"),
        ]
        store.put("elsewhere/" + prefix, b"not watched")
        store.delete(prefix + "a")
        revs.append(store.get_prefix(prefix).revision)
        store.put(prefix + "c", b"4")
        events = [next_event(q) for _ in range(5)]
    finally:
        watch.cancel()
    assert [type(e) for e in events] == [PutEvent, PutEvent, PutEvent, DeleteEvent, PutEvent]
    assert [e.key for e in events] == [prefix + k for k in "abaac"]
    assert [e.value for e in events if isinstance(e, PutEvent)] == [b"1", b"2", b"3", b"4"]
    assert [e.revision for e in events[:4]] == revs
    assert all(a.revision < b.revision for a, b in zip(events, events[1:]))
    assert events[2].version == 2 and events[2].create_revision == revs[0]
    assert watch.revision < revs[0]


def test_watch_from_a_snapshot_misses_nothing(store, prefix):
    """Read the prefix, write, then watch from after the read: the write
    made between the two arrives."""
    store.put(prefix + "a", b"before")
    snap = store.get_prefix(prefix)
    rev = store.put(prefix + "b", b"between")
    q: queue.Queue[WatchEvent] = queue.Queue()
    watch = store.watch_prefix(prefix, q.put, start_revision=snap.revision + 1)
    try:
        event = next_event(q)
    finally:
        watch.cancel()
    assert isinstance(event, PutEvent) and (event.key, event.revision) == (prefix + "b", rev)


def test_watch_delivers_every_event_of_a_transaction(store, prefix):
    """A lease's expiry deletes its keys in one revision: each key's
    delete is delivered."""
    lease = store.grant_lease(60)
    for k in "abc":
        store.put(prefix + k, b"x", lease=lease)
    q: queue.Queue[WatchEvent] = queue.Queue()
    watch = store.watch_prefix(prefix, q.put)
    try:
        store.revoke_lease(lease)
        events = [next_event(q) for _ in range(3)]
    finally:
        watch.cancel()
    assert sorted(e.key for e in events) == [prefix + k for k in "abc"]
    assert all(isinstance(e, DeleteEvent) for e in events)
    assert len({e.revision for e in events}) == 1


def test_watch_to_a_callback_and_cancel(store, prefix):
    seen: list[WatchEvent] = []
    got = threading.Event()

    def on_event(event: WatchEvent) -> None:
        seen.append(event)
        got.set()

    watch = store.watch_prefix(prefix, on_event)
    store.put(prefix + "k", b"v")
    assert got.wait(EVENT_WAIT)
    watch.cancel()
    assert not watch._thread.is_alive()
    # A later change reaches a second watch and not the cancelled one.
    q: queue.Queue[WatchEvent] = queue.Queue()
    other = store.watch_prefix(prefix, q.put)
    store.put(prefix + "k", b"after")
    assert next_event(q).value == b"after"
    other.cancel()
    assert [e.value for e in seen] == [b"v"]


def test_a_callback_that_raises_stops_its_watch_and_is_logged(store, prefix, caplog):
    def on_event(event: WatchEvent) -> None:
        raise RuntimeError("consumer bug")

    watch = store.watch_prefix(prefix, on_event)
    store.put(prefix + "k", b"v")
    watch._thread.join(EVENT_WAIT)
    assert not watch._thread.is_alive()
    assert any("callback raised" in r.getMessage() and r.exc_info for r in caplog.records)
    watch.cancel()


def test_watch_from_a_compacted_revision_ends_with_watch_compacted(store, prefix, etcd):
    first = store.put(prefix + "a", b"1")
    rev = store.put(prefix + "a", b"2")
    post(etcd.endpoints[0], "/v3/kv/compaction", {"revision": str(rev), "physical": True})
    q: queue.Queue[WatchEvent] = queue.Queue()
    watch = store.watch_prefix(prefix, q.put, start_revision=first)
    ended = next_event(q)
    assert isinstance(ended, WatchEnded) and isinstance(ended.error, WatchCompacted)
    assert ended.error.revision == first and ended.error.compact_revision == rev
    watch.cancel()
    assert not watch._thread.is_alive()


def test_lease_expiry_removes_keys_and_a_watch_sees_it(store, prefix):
    lease = store.grant_lease(2)
    assert isinstance(lease, Lease) and lease.ttl >= 2
    store.put(prefix + "node", b"endpoint", lease=lease)
    assert store.put_if_absent(prefix + "name", b"held", lease=lease)
    assert store.get(prefix + "node").lease == lease.id
    q: queue.Queue[WatchEvent] = queue.Queue()
    watch = store.watch_prefix(prefix, q.put)
    try:
        # No keepalive: within the TTL (and the leader's half-second
        # expiry check) both keys go, as one revision.
        events = [next_event(q, timeout=lease.ttl + EVENT_WAIT) for _ in range(2)]
    finally:
        watch.cancel()
    assert sorted(e.key for e in events) == [prefix + "name", prefix + "node"]
    assert all(isinstance(e, DeleteEvent) for e in events)
    assert store.get_prefix(prefix).items == ()
    with pytest.raises(LeaseExpired) as info:
        store.keepalive(lease)
    assert info.value.lease == lease.id
    with pytest.raises(LeaseExpired):
        store.put(prefix + "node", b"again", lease=lease)
    with pytest.raises(LeaseExpired):
        store.put_if_absent(prefix + "name", b"again", lease=lease.id)
    store.revoke_lease(lease)  # already gone: not an error


def test_keepalive_keeps_the_keys(store, prefix):
    """Kept alive every 0.4 s for three TTLs, the key stays (no delete
    event arrives); left alone afterwards, it goes."""
    lease = store.grant_lease(2)
    store.put(prefix + "node", b"endpoint", lease=lease)
    q: queue.Queue[WatchEvent] = queue.Queue()
    watch = store.watch_prefix(prefix, q.put)
    try:
        end = time.monotonic() + 3 * lease.ttl
        while time.monotonic() < end:
            assert store.keepalive(lease, timeout=1.0) == lease.ttl
            with pytest.raises(queue.Empty):
                q.get(timeout=0.4)  # the tick: nothing may arrive meanwhile
        assert store.get(prefix + "node").value == b"endpoint"
        event = next_event(q, timeout=lease.ttl + EVENT_WAIT)
    finally:
        watch.cancel()
    assert isinstance(event, DeleteEvent) and event.key == prefix + "node"


def test_revoke_lease_deletes_its_keys(store, prefix):
    lease = store.grant_lease(60)
    store.put(prefix + "a", b"1", lease=lease)
    store.put(prefix + "b", b"2")
    store.revoke_lease(lease)
    assert [kv.key for kv in store.get_prefix(prefix).items] == [prefix + "b"]
    with pytest.raises(LeaseExpired):
        store.keepalive(lease)


def test_bad_arguments_raise_before_sending(store):
    for bad in (-1, math.nan, -math.inf):
        with pytest.raises(ValueError):
            store.get("k", timeout=bad)
    for bad in (True, "1", [1]):
        with pytest.raises(TypeError):
            store.get("k", timeout=bad)
    with pytest.raises(TypeError):
        store.put(b"k", b"v")
    with pytest.raises(TypeError):
        store.put("k", "v")
    with pytest.raises(ValueError):
        store.grant_lease(0)
    store.get("k", timeout=None)  # forever, as everywhere in otp
    store.get("k", timeout=math.inf)


def test_a_request_the_store_refuses(store, prefix):
    with pytest.raises(StoreRejected):
        store.put(prefix + "big", b"x" * (2 * 1024 * 1024))  # above etcd's 1.5 MiB request limit


def test_a_closed_store_refuses_calls(etcd):
    s = EtcdStore(etcd.endpoints)
    q: queue.Queue[WatchEvent] = queue.Queue()
    watch = s.watch_prefix("closed/", q.put)
    s.close()
    assert not watch._thread.is_alive()
    with pytest.raises(ValueError):
        s.get("k")


# -- failures ---------------------------------------------------------------


@pytest.fixture
def own_etcd():
    """An etcd of the test's own, which it may stop or pause."""
    with running_etcd(1) as cluster:
        yield cluster


def test_a_stopped_store_raises_store_unavailable_within_the_timeout(own_etcd):
    member = own_etcd.members[0]
    with EtcdStore(own_etcd.endpoints) as store:
        store.put("k", b"v")  # an open, pooled connection to find dead
        lease = store.grant_lease(30)
        q: queue.Queue[WatchEvent] = queue.Queue()
        store.watch_prefix("", q.put, timeout=1.0)
        member.kill()
        calls = {
            "get": lambda t: store.get("k", timeout=t),
            "get_prefix": lambda t: store.get_prefix("", timeout=t),
            "put": lambda t: store.put("k", b"w", timeout=t),
            "put_if_absent": lambda t: store.put_if_absent("n", b"w", timeout=t),
            "delete": lambda t: store.delete("k", timeout=t),
            "grant_lease": lambda t: store.grant_lease(5, timeout=t),
            "keepalive": lambda t: store.keepalive(lease, timeout=t),
            "revoke_lease": lambda t: store.revoke_lease(lease, timeout=t),
            "watch_prefix": lambda t: store.watch_prefix("", q.put, timeout=t),
        }
        for name, call in calls.items():
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as info:
                call(1.0)
            elapsed = time.monotonic() - started
            assert 0.9 <= elapsed < 4.0, f"{name} took {elapsed:.2f} s"
            assert not info.value.maybe_applied, name  # a refused connection sent nothing
            assert info.value.attempts, name
        # The watch that was running ends with the cause.
        ended = next_event(q)
        assert isinstance(ended, WatchEnded) and isinstance(ended.error, StoreUnavailable)


def test_a_hung_store_raises_store_unavailable_within_the_timeout(own_etcd):
    """SIGSTOP: connections are accepted by the kernel and never answered."""
    member = own_etcd.members[0]
    with EtcdStore(own_etcd.endpoints) as store:
        store.put("k", b"v")
        member.pause()
        try:
            for call in (
                lambda: store.get("k", timeout=1.0),
                lambda: store.put("k", b"w", timeout=1.0),
            ):
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    call()
                assert time.monotonic() - started < 4.0
            # A put_if_absent without a lease cannot be sent twice: its lost
            # answer is reported as such, at once.
            with pytest.raises(StoreUnavailable) as info:
                store.put_if_absent("n", b"w", timeout=1.0)
            assert info.value.maybe_applied
        finally:
            member.resume()
        assert store.get("k", timeout=EVENT_WAIT).value in (b"v", b"w")


def test_a_silent_first_member_costs_its_share_of_the_budget_only(etcd, prefix):
    """The member a store tries first accepts connections and never answers
    (a member cut off by a partition looks so): a call still gets through
    another member within a timeout shorter than one full attempt, because
    each member's first attempt gets its share of the budget."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        with EtcdStore([f"http://127.0.0.1:{silent.getsockname()[1]}", *etcd.endpoints]) as store:
            started = time.monotonic()
            store.put(prefix + "k", b"v", timeout=2.0)
            assert time.monotonic() - started < 2.0
            assert store.get(prefix + "k").value == b"v"
    finally:
        silent.close()


# -- a cluster of three -----------------------------------------------------


@pytest.mark.slow
def test_three_members_keep_serving_with_one_killed():
    """Kill the leader, which also serves the watch: calls go on (after
    the election) on the other two, the watch resumes there without losing
    or repeating an event, and a lease survives; with two of three gone,
    calls fail within their timeout and the watch ends."""
    with running_etcd(3) as cluster:
        first = cluster.members[0]
        cluster.move_leader(first)
        with EtcdStore(cluster.endpoints) as store:  # starts with members[0]
            q: queue.Queue[WatchEvent] = queue.Queue()
            watch = store.watch_prefix("c/", q.put, timeout=5.0)
            lease = store.grant_lease(10)
            store.put("c/node", b"n0", lease=lease)
            store.put("c/a", b"1")
            assert [next_event(q).key for _ in range(2)] == ["c/node", "c/a"]

            first.kill()
            assert store.put("c/b", b"2", timeout=EVENT_WAIT) > 0
            assert store.put_if_absent("c/name", b"x", lease=lease, timeout=EVENT_WAIT)
            assert store.keepalive(lease, timeout=EVENT_WAIT) >= 1
            assert store.get("c/node", timeout=EVENT_WAIT).value == b"n0"
            store.delete("c/a", timeout=EVENT_WAIT)
            events = [next_event(q) for _ in range(3)]
            assert [(type(e).__name__, e.key) for e in events] == [
                ("PutEvent", "c/b"),
                ("PutEvent", "c/name"),
                ("DeleteEvent", "c/a"),
            ]
            assert cluster.leader() is not first

            cluster.members[1].kill()
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                store.get("c/node", timeout=3.0)
            assert time.monotonic() - started < 8.0
            # By now the survivor knows it has no leader and says so at
            # once: even a write that cannot be sent twice was not applied.
            with pytest.raises(StoreUnavailable) as info:
                store.put_if_absent("c/other", b"y", timeout=3.0)
            assert not info.value.maybe_applied
            assert any("no leader" in why for _, why in info.value.attempts)
            ended = next_event(q, timeout=60)
            assert isinstance(ended, WatchEnded) and isinstance(ended.error, StoreUnavailable)
            watch.cancel()
            assert not watch._thread.is_alive()
