"""Name registry lookups: through the registry's ROUTER, and from the cache.

* ``registry_lookup_router``: one ``otp.whereis(name, cached=False)``
  round trip through the node registry's ROUTER (the path a process takes
  for its first lookups, before it keeps a replica), vs a raw pyzmq
  DEALER/ROUTER server in another process answering from a dict;
* ``registry_lookup_throughput``: what the ROUTER process serves when it is
  busy: :data:`CLIENTS` client processes, each asking in pipelined batches
  of :data:`PIPELINE` lookups (``otp.whereis_many``: one frame per lookup,
  answered one by one by the registry), vs the same clients pipelining the
  same lookups to the raw dict server;
* ``registry_lookup_cached``: ``otp.whereis`` served from the process's
  replica (the hot path once a process looks names up often), vs a plain
  ``dict.get``.  Timed in batches of :data:`BATCH` lookups (a single lookup is
  too short for the clock); the figure is seconds per lookup.
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
    requires=("otp:whereis", "otp:register"),
    what="whereis through the node registry's ROUTER (no replica)",
)
def bench_lookup_router(run: Run) -> dict:
    """whereis through the node registry's ROUTER (no replica)."""
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

    def ours(i: int) -> None:
        if otp.whereis(NAME, cached=False) != target:
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


def raw_pipelined_client(endpoint: str, parent: otp.Pid) -> None:
    """Floor client: PIPELINE requests in flight on one DEALER, on command."""
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(endpoint)
    frame = pickle.dumps(NAME)
    otp.send(parent, ("ready", otp.self()))
    try:
        while True:
            count = otp.receive(60)
            if count == "stop":
                return
            t0 = time.perf_counter()
            for _ in range(count // PIPELINE):
                for _ in range(PIPELINE):
                    dealer.send(frame)
                for _ in range(PIPELINE):
                    pickle.loads(dealer.recv())
            otp.send(parent, ("done", time.perf_counter() - t0))
    finally:
        dealer.close(linger=0)
        ctx.term()


def ours_pipelined_client(parent: otp.Pid) -> None:
    """Our client: the same lookups through otp.whereis_many, on command."""
    names = [NAME] * PIPELINE
    otp.whereis_many(names)  # connected before timing
    otp.send(parent, ("ready", otp.self()))
    while True:
        count = otp.receive(60)
        if count == "stop":
            return
        t0 = time.perf_counter()
        for _ in range(count // PIPELINE):
            otp.whereis_many(names)
            inject(PIPELINE)
        otp.send(parent, ("done", time.perf_counter() - t0))


#: Client processes and lookups in flight per client of the throughput run.
CLIENTS = 2
PIPELINE = 32


def _clients(body, *args) -> list:
    pids = [otp.spawn(body, *args) for _ in range(CLIENTS)]
    for _ in pids:
        otp.receive(10, lambda m: type(m) is tuple and m[0] == "ready")
    return pids


def _rate(clients: list, count: int) -> float:
    """Lookups per second over all clients, each doing ``count``."""
    t0 = time.perf_counter()
    for pid in clients:
        otp.send(pid, count)
    for _ in clients:
        otp.receive(120, lambda m: type(m) is tuple and m[0] == "done")
    return len(clients) * (count - count % PIPELINE) / (time.perf_counter() - t0)


@benchmark(
    "registry_lookup_throughput",
    unit="lookups/s",
    floor="pyzmq DEALER/ROUTER + dict, same clients",
    rounds=5,
    n=20000,
    warmup=2000,
    quick=(3, 5000, 1000),
    higher_is_better=True,
    requires=("otp:whereis_many", "otp:register"),
    target=(">= 20,000 lookups/s", lambda r: r["ours"]["median"] >= 20_000),
    what=f"lookups/s the registry's ROUTER serves to {CLIENTS} clients pipelining {PIPELINE} each",
)
def bench_lookup_throughput(run: Run) -> dict:
    """Lookups per second the node registry's ROUTER serves to busy clients."""
    me = otp.self()
    target = _named_target(me)
    endpoint = f"ipc://{run.node.info.dir}/raw-dict-router-tp"
    raw_pid = otp.spawn(raw_dict_router, endpoint, {NAME: target}, me)
    otp.receive(10, lambda m: m == "ready")
    raw_clients = _clients(raw_pipelined_client, endpoint, me)
    our_clients = _clients(ours_pipelined_client, me)
    _rate(raw_clients, run.warmup)
    _rate(our_clients, run.warmup)
    out = alternate(lambda: [_rate(raw_clients, run.n)], lambda: [_rate(our_clients, run.n)], run.rounds)
    for pid in raw_clients + our_clients:
        otp.send(pid, "stop")
        await_exit(otp, pid)
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(endpoint)
    dealer.send(pickle.dumps("stop"))
    dealer.close(linger=2000)
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
    if whereis(NAME) != target:
        raise AssertionError("whereis answered wrong")
    otp.send(target, "stop")
    await_exit(otp, target)
    return out
