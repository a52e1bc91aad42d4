"""Global names against the store they live in: ``otp.global_`` beside the
etcd requests it makes, from the same client (``otp._etcd_store``), to one
etcd member started for the run (Debian's ``etcd-server``; the benchmarks
are skipped, saying so, without it).

* ``global_register``: ``otp.global_.register_name(name, pid)`` of a new
  name each time (a call to the node's cluster member, which checks the
  process, asks the store with a transaction on the key's absence bound to
  its lease, and monitors the holder), vs the same ``put_if_absent`` bound
  to a lease, sent by the harness itself;
* ``global_whereis``: ``otp.global_.whereis_name(name)`` (read from the
  store, its latest state: no cache), vs the same ``get``.

The member is a single etcd on a temporary directory in ``/dev/shm`` when
it can (no disk fsync in the figure: what is measured is our path, not the
disk), started and stopped by pid with ``tests/etcd_server.py``.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import otp
from otp import cluster, global_
from otp._etcd_store import EtcdStore

from ._bench import Run, benchmark, measure_ops

#: Position of this module's benchmarks in the suite.
ORDER = 95

#: The lease of the harness's own keys (the floor), as the member's.
LEASE_TTL = 10


@contextlib.contextmanager
def _etcd() -> Iterator[Any]:
    """One etcd member for the run (tests/etcd_server.py starts and stops it)."""
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from etcd_server import ETCD, SKIP_REASON, EtcdCluster  # type: ignore[import-not-found, unused-ignore]

    if ETCD is None:
        raise RuntimeError(SKIP_REASON)
    member = EtcdCluster(1)
    member.start()
    try:
        yield member
    finally:
        member.stop()


@contextlib.contextmanager
def _global_names(run: Run) -> Iterator[tuple[EtcdStore, Any, otp.Pid]]:
    """The node's cluster member on a fresh etcd, the harness's own client
    and lease, and the process the names are given to."""
    with _etcd() as etcd:
        config = cluster.ClusterConfig(tuple(etcd.endpoints), "bench", otp.node(), lease_ttl=LEASE_TTL)
        member = cluster.start_link(config)
        store = EtcdStore(etcd.endpoints)
        lease = store.grant_lease(LEASE_TTL)
        try:
            yield store, lease, otp.self()
        finally:
            store.revoke_lease(lease)
            store.close()
            otp.unlink(member)
            ref = otp.monitor(member)
            otp.exit(member, "shutdown")
            otp.receive(10, lambda m: isinstance(m, otp.DOWN) and m.ref == ref)


@benchmark(
    "global_register",
    unit="s",
    floor="etcd put_if_absent on a lease, same client",
    rounds=5,
    n=200,
    warmup=20,
    quick=(3, 40, 5),
    requires=("otp:global_",),
    what="otp.global_.register_name of a new name",
)
def bench_global_register(run: Run) -> dict:
    """register_name vs the store's transaction it makes."""
    with _global_names(run) as (store, lease, me):
        value = pickle.dumps(me, protocol=4)
        names = iter(range(10**9))

        def raw(i: int) -> None:
            if not store.put_if_absent(f"bench/raw/{next(names)}", value, lease=lease):
                raise AssertionError("a fresh key was taken")

        def ours(i: int) -> None:
            if not global_.register_name(f"bench-{next(names)}", me):
                raise AssertionError("a fresh name was refused")

        return measure_ops(raw, ours, run)


@benchmark(
    "global_whereis",
    unit="s",
    floor="etcd get, same client",
    rounds=5,
    n=300,
    warmup=30,
    quick=(3, 60, 10),
    requires=("otp:global_",),
    what="otp.global_.whereis_name (read from the store)",
)
def bench_global_whereis(run: Run) -> dict:
    """whereis_name vs the store's get it makes."""
    with _global_names(run) as (store, lease, me):
        if not global_.register_name("bench-held", me):
            raise AssertionError("the name was refused")
        key = "bench/raw/held"
        store.put(key, pickle.dumps(me, protocol=4), lease=lease)

        def raw(i: int) -> None:
            kv = store.get(key)
            if kv is None or pickle.loads(kv.value) != me:
                raise AssertionError("the raw key is gone")

        def ours(i: int) -> None:
            if global_.whereis_name("bench-held") != me:
                raise AssertionError("whereis_name answered wrong")

        return measure_ops(raw, ours, run)
