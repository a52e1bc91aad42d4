"""How a benchmark declares itself, how the runner finds it, and the helpers
every benchmark uses.

Adding a benchmark is one decorated function in any module of ``stress/``
(a module whose name does not start with ``_``)::

    @benchmark("restart_latency", unit="s", floor="SIGKILL -> pidfd -> fork",
               rounds=5, n=30, warmup=3, requires=("otp:Supervisor",))
    def bench_restart(run):
        ...
        return {"floor": [[...], ...], "ours": [[...], ...]}

The runner imports every such module (:func:`discover`) and lists benchmarks
by the module's ``ORDER`` (an optional int, default 50), then in declaration
order.  A module that cannot be imported, or a benchmark whose ``requires``
cannot be imported
(``"package.module"`` or ``"package.module:attribute"``), is listed as *not
available yet* with the import error, and the rest of the suite runs.
:func:`planned` declares a benchmark whose feature does not exist at all yet.

The function receives a :class:`Run` (the node, the sample counts) and
returns per-round samples, ``{"floor": [[x, ...], ...], "ours": [[...]],
"extra": {...}}``, floor and ours rounds alternating so that machine drift
hits both.  Samples are seconds per operation (unit ``"s"``) or a rate or a
size, as the declared unit says.

Test hook: ``STRESS_INJECT_DELAY_US``.  When set, :func:`inject` busy-waits
that many microseconds per operation of *ours* inside the timed region (a
"deliberately slowed build"; used by ``tests/test_stress_compare.py`` to
check that ``--compare`` catches a slowdown).  Reports of such a run say so
in their header and JSON.  It is never honoured by the floors or the peers,
and it has no effect on benchmarks that measure memory.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otp import Pid

__all__ = [
    "Benchmark",
    "Run",
    "benchmark",
    "planned",
    "discover",
    "availability",
    "inject",
    "INJECT_DELAY_US",
    "timed_ops",
    "alternate",
    "measure",
    "measure_ops",
    "measure_each",
    "started",
    "down_of",
    "await_down",
    "await_exit",
]

#: Modules of ``stress/`` that are not benchmark modules.
NOT_BENCHMARK_MODULES = ("soak",)

INJECT_ENV = "STRESS_INJECT_DELAY_US"
INJECT_DELAY_US = float(os.environ.get(INJECT_ENV, "0") or 0)
_INJECT_S = INJECT_DELAY_US / 1e6


def _spin(count: int = 1) -> None:
    end = time.perf_counter() + _INJECT_S * count
    while time.perf_counter() < end:
        pass


def _nothing(count: int = 1) -> None:
    pass


#: ``inject(count=1)``: the test hook (see the module docstring); a no-op
#: unless ``STRESS_INJECT_DELAY_US`` is set.  Call it inside the timed
#: region of *ours*, once per operation (or once with ``count`` operations).
inject = _spin if _INJECT_S > 0 else _nothing


@dataclasses.dataclass
class Benchmark:
    name: str
    fn: Callable[[Run], dict] | None
    unit: str
    floor: str
    what: str
    rounds: int
    n: int
    warmup: int
    quick: tuple[int, int, int]
    higher_is_better: bool = False
    requires: tuple[str, ...] = ()
    peer: str | None = None
    target: tuple[str, Callable[[dict], bool]] | None = None
    module: str = ""
    order: int = 0
    planned: bool = False
    describe: Callable[[dict], str] | None = None

    def params(self, quick: bool) -> tuple[int, int, int]:
        return self.quick if quick else (self.rounds, self.n, self.warmup)


@dataclasses.dataclass
class Run:
    """What a benchmark function gets."""

    node: Any  # the otp.Node the benchmark runs on (fresh for each benchmark)
    rounds: int
    n: int
    warmup: int
    quick: bool


_REGISTRY: dict[str, Benchmark] = {}
_BROKEN_MODULES: dict[str, str] = {}
_counter = iter(range(1_000_000))


def benchmark(
    name: str,
    *,
    unit: str,
    floor: str,
    rounds: int,
    n: int,
    warmup: int,
    quick: tuple[int, int, int] | None = None,
    higher_is_better: bool = False,
    requires: tuple[str, ...] = (),
    peer: str | None = None,
    target: tuple[str, Callable[[dict], bool]] | None = None,
    what: str = "",
    describe: Callable[[dict], str] | None = None,
):
    """Declare a benchmark (a decorator).

    ``rounds`` x ``n`` samples after ``warmup`` operations; ``quick`` is the
    ``(rounds, n, warmup)`` of ``--quick`` (default: 3 rounds, n / 5).
    ``peer`` names the workload the peers run for the same operation (see
    :mod:`stress._peers`).  ``target`` is ``(description, check(result))``.
    ``describe(extra)`` turns the ``"extra"`` a run returned into one line
    printed under the table.
    """

    def register(fn: Callable[[Run], dict]) -> Callable[[Run], dict]:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"benchmark {name!r} declared twice")
        _REGISTRY[name] = Benchmark(
            name=name,
            fn=fn,
            unit=unit,
            floor=floor,
            what=what or _first_line(fn.__doc__),
            rounds=rounds,
            n=n,
            warmup=warmup,
            quick=quick or (min(3, rounds), max(1, n // 5), max(1, warmup // 5)),
            higher_is_better=higher_is_better,
            requires=tuple(requires),
            peer=peer,
            target=target,
            module=fn.__module__,
            order=next(_counter),
            describe=describe,
        )
        return fn

    return register


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0] if lines else ""


def planned(name: str, *, what: str, requires: tuple[str, ...], unit: str = "") -> None:
    """Declare a benchmark whose feature does not exist yet: it is listed and
    skipped with "not available yet" until its code is written."""
    module = sys._getframe(1).f_globals.get("__name__", "")
    _REGISTRY[name] = Benchmark(
        name=name,
        fn=None,
        unit=unit,
        floor="",
        what=what,
        rounds=0,
        n=0,
        warmup=0,
        quick=(0, 0, 0),
        requires=tuple(requires),
        module=module,
        order=next(_counter),
        planned=True,
    )


def discover() -> tuple[dict[str, Benchmark], dict[str, str]]:
    """Import every benchmark module of ``stress/``; return the benchmarks in
    declaration order and ``{module: error}`` for modules that failed to import."""
    import stress

    for info in sorted(pkgutil.iter_modules(stress.__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name in NOT_BENCHMARK_MODULES:
            continue
        modname = f"stress.{info.name}"
        try:
            importlib.import_module(modname)
        except Exception as exc:  # noqa: BLE001 - any import failure: not available
            _BROKEN_MODULES[modname] = f"{type(exc).__name__}: {exc}"

    def key(item: tuple[str, Benchmark]) -> tuple:
        mod = sys.modules.get(item[1].module)
        return (getattr(mod, "ORDER", 50), item[1].order)

    ordered = dict(sorted(_REGISTRY.items(), key=key))
    return ordered, dict(_BROKEN_MODULES)


def _importable(spec: str) -> str | None:
    """None if ``spec`` ("mod" or "mod:attr") imports, else why not."""
    modname, _, attr = spec.partition(":")
    try:
        mod = importlib.import_module(modname)
    except Exception as exc:  # noqa: BLE001
        return f"cannot import {modname} ({type(exc).__name__}: {exc})"
    if attr:
        obj = mod
        for part in attr.split("."):
            if not hasattr(obj, part):
                return f"{modname} has no {attr}"
            obj = getattr(obj, part)
    return None


def availability(bench: Benchmark) -> str | None:
    """None if the benchmark can run, else the "not available yet" reason."""
    for spec in bench.requires:
        why = _importable(spec)
        if why:
            return why
    if bench.planned:
        return f"its feature imports, but the benchmark is not written yet (see {bench.module})"
    return None


# ------------------------------------------------------------- measuring


def timed_ops(op: Callable[[int], Any], n: int, *, ours: bool) -> list[float]:
    """Seconds per call of ``op(i)`` for i in range(n); ``ours`` adds the test hook."""
    out = []
    clock = time.perf_counter
    hook = inject if ours else None
    for i in range(n):
        t0 = clock()
        op(i)
        if hook is not None:
            hook()
        out.append(clock() - t0)
    return out


def alternate(floor_round: Callable[[], list[float]], ours_round: Callable[[], list[float]], rounds: int) -> dict:
    """Rounds alternating floor and ours; returns ``{"floor": [...], "ours": [...]}``."""
    floor, ours = [], []
    for _ in range(rounds):
        floor.append(list(floor_round()))
        ours.append(list(ours_round()))
    return {"floor": floor, "ours": ours}


def measure(floor_round: Callable[[int], list[float]], ours_round: Callable[[int], list[float]], run: Run) -> dict:
    """A warm-up round of ``run.warmup`` of each side, floor first, then
    :func:`alternate` rounds of ``run.n``; ``*_round(count)`` returns the
    round's samples (a rate is a one-sample round: ``lambda c: [rate(c)]``)."""
    floor_round(run.warmup)
    ours_round(run.warmup)
    return alternate(lambda: floor_round(run.n), lambda: ours_round(run.n), run.rounds)


def measure_ops(floor_op: Callable[[int], Any], ours_op: Callable[[int], Any], run: Run) -> dict:
    """:func:`measure` of :func:`timed_ops` rounds: seconds per ``op(i)``,
    the test hook on ours."""
    return measure(lambda c: timed_ops(floor_op, c, ours=False), lambda c: timed_ops(ours_op, c, ours=True), run)


def measure_each(floor_once: Callable[[], float], ours_once: Callable[[], float], run: Run) -> dict:
    """Samples taken one call at a time (``*_once()`` returns one sample,
    timing itself): ``run.warmup`` warm-up pairs, floor then ours, then
    :func:`alternate` rounds of ``run.n`` calls."""
    for _ in range(run.warmup):
        floor_once()
        ours_once()
    return alternate(
        lambda: [floor_once() for _ in range(run.n)], lambda: [ours_once() for _ in range(run.n)], run.rounds
    )


def started(pid: Pid | None) -> Pid:
    """The pid a server's ``start``/``start_link`` returned, which is None
    only when its ``init`` chose to ignore: a benchmark's servers never do."""
    if pid is None:
        raise RuntimeError("a benchmark server did not start")
    return pid


def down_of(otp, refs: set) -> Callable[[object], bool]:
    """The receive predicate of a DOWN for one of the monitors ``refs``."""
    return lambda m: isinstance(m, otp.DOWN) and m.ref in refs


def await_down(otp, ref, timeout: float = 10.0):
    """Wait for the DOWN of monitor ``ref``."""
    return otp.receive(timeout, lambda m: isinstance(m, otp.DOWN) and m.ref == ref)


def await_exit(otp, pid, timeout: float = 10.0):
    """Monitor ``pid`` and wait for its DOWN."""
    return await_down(otp, otp.monitor(pid), timeout)
