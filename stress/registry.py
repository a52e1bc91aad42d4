"""Name registry lookups: through the registry's ROUTER, and from the cache.

* ``registry_lookup_router``: one ``whereis`` request through the node
  registry's ROUTER (the path a process takes for its first lookups, before
  it keeps a replica), vs a raw pyzmq DEALER/ROUTER server in another process
  answering from a dict;
* ``registry_lookup_cached``: ``otp.whereis`` served from the process's
  replica (the hot path once a process looks names up often), vs a plain
  ``dict.get``.  Timed in batches of :data:`BATCH` lookups (a single lookup is
  too short for the clock); the figure is seconds per lookup.

The ROUTER path is reached through ``otp.registry._names._node_client()``
(the client ``otp.whereis`` itself uses); it is named in ``requires``, so a
change of that internal shows up as "not available" rather than a crash.
"""

from __future__ import annotations

import pickle
import time

import zmq

import otp

from ._bench import Run, alternate, await_exit, benchmark, inject, timed_ops

#: Position of this module's benchmarks in the suite.
ORDER = 40

#: Lookups per timed sample of the cached benchmark.
BATCH = 1000
NAME = "stress-registry-target"


def raw_dict_router(endpoint: str, table: dict, parent: otp.Pid) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(endpoint)
    otp.send(parent, "ready")
    try:
        while True:
            ident, frame = sock.recv_multipart()
            request = pickle.loads(frame)
            if request == "stop":
                return
            sock.send_multipart([ident, pickle.dumps(table.get(request))])
    finally:
        sock.close(linger=0)
        ctx.term()


def named_waiter(name: str, parent: otp.Pid) -> None:
    otp.register(name)
    otp.send(parent, "registered")
    otp.receive()  # "stop"


def _named_target(me: otp.Pid) -> otp.Pid:
    pid = otp.spawn(named_waiter, NAME, me)
    otp.receive(10, lambda m: m == "registered")
    return pid


@benchmark(
    "registry_lookup_router",
    unit="s",
    floor="pyzmq DEALER/ROUTER + dict",
    rounds=5,
    n=1000,
    warmup=100,
    quick=(3, 200, 30),
    requires=("otp:whereis", "otp:register", "otp.registry._names:_node_client"),
    what="whereis through the node registry's ROUTER (no replica)",
)
def bench_lookup_router(run: Run) -> dict:
    """whereis through the node registry's ROUTER (no replica)."""
    from otp.registry._names import _node_client

    me = otp.self()
    target = _named_target(me)
    endpoint = f"ipc://{run.node.info.dir}/raw-dict-router"
    raw_pid = otp.spawn(raw_dict_router, endpoint, {NAME: target}, me)
    otp.receive(10, lambda m: m == "ready")
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(endpoint)

    def raw(i: int) -> None:
        dealer.send(pickle.dumps(NAME))
        if pickle.loads(dealer.recv()) != target:
            raise AssertionError("raw lookup answered wrong")

    client = _node_client()

    def ours(i: int) -> None:
        if client.request("whereis", NAME) != target:
            raise AssertionError("registry lookup answered wrong")

    timed_ops(raw, run.warmup, ours=False)
    timed_ops(ours, run.warmup, ours=True)
    out = alternate(lambda: timed_ops(raw, run.n, ours=False), lambda: timed_ops(ours, run.n, ours=True), run.rounds)
    dealer.send(pickle.dumps("stop"))
    dealer.close(linger=0)
    ctx.term()
    await_exit(otp, raw_pid)
    otp.send(target, "stop")
    await_exit(otp, target)
    return out


@benchmark(
    "registry_lookup_cached",
    unit="s",
    floor="dict.get",
    rounds=5,
    n=200,
    warmup=20,
    quick=(3, 40, 5),
    requires=("otp:whereis", "otp:register"),
    what=f"otp.whereis from the process's replica (batches of {BATCH})",
)
def bench_lookup_cached(run: Run) -> dict:
    """otp.whereis served from the process's replica (seconds per lookup)."""
    me = otp.self()
    target = _named_target(me)
    table = {NAME: target}
    whereis = otp.whereis
    clock = time.perf_counter

    def raw_batch() -> float:
        get = table.get
        t0 = clock()
        for _ in range(BATCH):
            get(NAME)
        return (clock() - t0) / BATCH

    def ours_batch() -> float:
        t0 = clock()
        for _ in range(BATCH):
            whereis(NAME)
        inject(BATCH)
        return (clock() - t0) / BATCH

    if whereis(NAME) != target:
        raise AssertionError("whereis answered wrong")
    for _ in range(run.warmup):  # warm-up also makes this process set up its replica
        raw_batch()
        ours_batch()
    out = alternate(
        lambda: [raw_batch() for _ in range(run.n)], lambda: [ours_batch() for _ in range(run.n)], run.rounds
    )
    try:
        from otp.registry._names import _node_client

        out["extra"] = {"replica_in_use": _node_client().replica is not None}
    except Exception:  # noqa: BLE001 - informational only
        pass
    if whereis(NAME) != target:
        raise AssertionError("whereis answered wrong")
    otp.send(target, "stop")
    await_exit(otp, target)
    return out
