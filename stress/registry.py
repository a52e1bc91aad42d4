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
  too short for the clock); the figure is seconds per lookup, in the root
  process (which checks that the calling thread is the one that entered
  the node); the note gives the same in a spawned process, which does not.
"""

from __future__ import annotations

import pickle
import statistics
import time
from collections.abc import Callable

import zmq

import otp

from ._bench import Run, await_exit, benchmark, inject, measure, measure_each, measure_ops
from ._raw import raw_dict_router, start_raw

#: Position of this module's benchmarks in the suite.
ORDER = 40

#: Lookups per timed sample of the cached benchmark.
BATCH = 1000
NAME = "stress-registry-target"


def named_waiter(name: str, parent: otp.Pid) -> None:
    otp.register(name)
    otp.send(parent, "registered")
    otp.receive()  # "stop"


def _named_target(me: otp.Pid) -> otp.Pid:
    pid = otp.spawn(named_waiter, NAME, me)
    otp.receive(10, lambda m: m == "registered")
    return pid


def _stop(*pids: otp.Pid) -> None:
    """Send each of ``pids`` "stop" and wait for its exit, in turn."""
    for pid in pids:
        otp.send(pid, "stop")
        await_exit(otp, pid)


def _raw_lookups(run: Run, tag: str) -> tuple[otp.Pid, otp.Pid, str]:
    """The named target and a raw dict server knowing it, at
    ``raw-dict-router{tag}``: ``(target, server pid, endpoint)``."""
    me = otp.self()
    target = _named_target(me)
    endpoint = f"ipc://{run.node.info.dir}/raw-dict-router{tag}"
    return target, start_raw(raw_dict_router, endpoint, {NAME: target}, me), endpoint


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
    target, raw_pid, endpoint = _raw_lookups(run, "")
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

    out = measure_ops(raw, ours, run)
    dealer.send(pickle.dumps("stop"))
    dealer.close(linger=0)
    ctx.term()
    await_exit(otp, raw_pid)
    _stop(target)
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
    target, raw_pid, endpoint = _raw_lookups(run, "-tp")
    raw_clients = _clients(raw_pipelined_client, endpoint, me)
    our_clients = _clients(ours_pipelined_client, me)
    out = measure(lambda c: [_rate(raw_clients, c)], lambda c: [_rate(our_clients, c)], run)
    _stop(*raw_clients, *our_clients)
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(endpoint)
    dealer.send(pickle.dumps("stop"))
    dealer.close(linger=2000)
    ctx.term()
    await_exit(otp, raw_pid)
    _stop(target)
    return out


def _cached_batches(target: otp.Pid) -> tuple[Callable[[], float], Callable[[], float]]:
    """(floor batch, our batch): seconds per lookup of ``dict.get`` and of
    ``otp.whereis`` over :data:`BATCH` lookups of the same name."""
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

    return raw_batch, ours_batch


def _measure_cached(target: otp.Pid, rounds: int, n: int, warmup: int) -> dict:
    raw_batch, ours_batch = _cached_batches(target)
    if otp.whereis(NAME) != target:
        raise AssertionError("whereis answered wrong")
    # the warm-up also makes this process set up its replica
    out = measure_each(raw_batch, ours_batch, Run(node=None, rounds=rounds, n=n, warmup=warmup, quick=False))
    if otp.whereis(NAME) != target:
        raise AssertionError("whereis answered wrong")
    return out


def cached_lookups_in_child(parent: otp.Pid, target: otp.Pid, rounds: int, n: int, warmup: int) -> None:
    """The cached benchmark in a spawned process: per round, the medians."""
    out = _measure_cached(target, rounds, n, warmup)
    medians = [(statistics.median(f), statistics.median(o)) for f, o in zip(out["floor"], out["ours"])]
    otp.send(parent, ("cached-in-child", medians))


def _describe_cached(e: dict) -> str:
    ratios = [o / f for f, o in e["child_rounds"]]
    ours = statistics.median(o for _, o in e["child_rounds"])
    floor = statistics.median(f for f, _ in e["child_rounds"])
    return (
        f"in a spawned process (no calling-thread check): ours {ours * 1e9:.0f} ns, dict.get {floor * 1e9:.0f} ns, "
        f"ratio {statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
    )


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
    describe=_describe_cached,
    target=("ratio <= 4", lambda r: r["ratio"]["median"] <= 4.0),
)
def bench_lookup_cached(run: Run) -> dict:
    """otp.whereis served from the process's replica (seconds per lookup)."""
    me = otp.self()
    target = _named_target(me)
    out = _measure_cached(target, run.rounds, run.n, run.warmup)
    child = otp.spawn(cached_lookups_in_child, me, target, run.rounds, run.n, run.warmup)
    _, medians = otp.receive(120, lambda m: type(m) is tuple and m[0] == "cached-in-child")
    await_exit(otp, child)
    out["extra"] = {"child_rounds": medians}
    _stop(target)
    return out
