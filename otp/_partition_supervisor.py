"""PartitionSupervisor: one child spec started N times, routed by key.

Elixir's ``PartitionSupervisor``: a supervisor whose children are N copies
of one child spec, the *partitions*; a caller picks the partition for a
key and talks to that child.  It is how a few long-lived processes share a
workload that would otherwise go through one process (a bottleneck) or
take one process per item (here a process costs megabytes and
milliseconds, not BEAM's 2 KB and a microsecond).

::

    otp.PartitionSupervisor.start_link(Host.child_spec(), name="hosts", partitions=4)
    pid = otp.partition_supervisor.whereis("hosts", session_id)

How partitions are found.  The partition supervisor is a plain
:class:`otp.Supervisor` registered under ``name``, with children of ids
``0 .. N-1``.  Each child, when started or restarted, is registered by the
supervisor under the node name ``(name, partition)``, so finding it is a
cached registry read (about 0.2 us), not a call; a child must therefore not
register a node name of its own (Erlang allows one name per process: its
start would fail with ``AlreadyRegistered``).  The registry replaces the
name of a dead child with its replacement, so a restart never finds the
name taken.  The number of partitions is read once per caller and kept
for as long as the supervisor under ``name`` is the same process.

Keys.  ``partition_of`` must give the same partition in every process of
the node: an int key is taken modulo N (as Elixir does); a str, bytes, or
a tuple of those and ints is hashed with CRC-32 of a canonical encoding
(Python's ``hash`` of a str differs between interpreters started with
different seeds); any other key is hashed through its pickle, which is
stable for plain data but not for objects whose pickle holds a set's or a
dict's incidental order.

Errors: ``start_link`` raises what ``Supervisor.start_link`` raises, and
``ValueError`` for a partition count that is not an int >= 1 or a
``with_arguments`` that is not callable; the lookups raise ``otp.NoProc``
when no partition supervisor runs under ``name``.
"""

from __future__ import annotations

import os
import pickle
import zlib
from collections.abc import Callable, Hashable
from typing import Any

from ._child_spec import ChildSpec, Strategy, child_spec
from ._errors import NoProc
from ._gen_server import ServerName
from ._pid import Pid
from ._supervisor import Supervisor, count_children
from .registry._names import register
from .registry._names import whereis as _whereis_name

__all__ = ["PartitionSupervisor", "partitions", "partition_of", "whereis", "children", "default_partitions"]

WithArguments = Callable[[tuple, int], tuple]


def default_partitions() -> int:
    """Elixir's default is one partition per scheduler; here one per core,
    and at least 2 so that one partition's restart never leaves nothing
    to place work on."""
    return max(2, os.cpu_count() or 1)


class _PartitionStart:
    """The start function of one partition: the template's, then the name.

    A class, not a closure: child specs travel to the supervisor's process
    and must pickle by reference."""

    __slots__ = ("name", "partition", "fn", "args")

    def __init__(self, name: Hashable, partition: int, fn: Callable[..., Any], args: tuple) -> None:
        self.name, self.partition, self.fn, self.args = name, partition, fn, args

    def __reduce__(self) -> tuple:
        return (_PartitionStart, (self.name, self.partition, self.fn, self.args))

    def __call__(self) -> Pid | None:
        pid = self.fn(*self.args)
        if isinstance(pid, Pid):
            register((self.name, self.partition), pid)
        return pid


def _partition_specs(spec: ChildSpec, name: Hashable, count: int, with_arguments: WithArguments | None) -> list:
    fn, args = spec.start
    specs = []
    for partition in range(count):
        part_args = tuple(with_arguments(tuple(args), partition)) if with_arguments is not None else tuple(args)
        start = _PartitionStart(name, partition, fn, part_args)
        specs.append(
            child_spec(
                partition,
                start=start,
                restart=spec.restart,
                shutdown=spec.shutdown,
                type=spec.type,
                significant=spec.significant,
            )
        )
    return specs


def _check(partitions: int | None, with_arguments: WithArguments | None) -> int:
    count = default_partitions() if partitions is None else partitions
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"partitions must be an int >= 1, got {partitions!r}")
    if with_arguments is not None and not callable(with_arguments):
        raise ValueError(f"with_arguments must be callable(args, partition) -> args, got {with_arguments!r}")
    return count


class PartitionSupervisor:
    """Start and describe partition supervisors (see the module doc)."""

    @staticmethod
    def start_link(
        spec: ChildSpec,
        *,
        name: ServerName,
        partitions: int | None = None,
        with_arguments: WithArguments | None = None,
        strategy: Strategy = "one_for_one",
        intensity: int = 3,
        period: float = 5.0,
        timeout: float | None = None,
    ) -> Pid:
        """Start ``partitions`` copies of ``spec`` (default
        :func:`default_partitions`) under a supervisor registered as
        ``name``, linked to the caller.  ``with_arguments(args, partition)``
        returns the start arguments of each partition (default: the spec's,
        unchanged).  The flags default to Elixir's (one_for_one, 3 restarts
        in 5 seconds)."""
        count = _check(partitions, with_arguments)
        specs = _partition_specs(spec, name, count, with_arguments)
        pid = Supervisor.start_link(
            specs, name=name, strategy=strategy, intensity=intensity, period=period, timeout=timeout
        )
        if pid is None:  # a static supervisor with children never ignores
            raise AssertionError("a partition supervisor returned ignore")
        return pid

    @staticmethod
    def child_spec(
        spec: ChildSpec,
        *,
        name: ServerName,
        partitions: int | None = None,
        with_arguments: WithArguments | None = None,
        id: Any = None,  # noqa: A002 - OTP's key
        **flags: Any,
    ) -> ChildSpec:
        """A spec running this partition supervisor under another
        supervisor (id defaults to ``name``); ``flags`` are
        :meth:`start_link`'s strategy, intensity and period."""
        _check(partitions, with_arguments)
        kwargs = dict(name=name, partitions=partitions, with_arguments=with_arguments, **flags)
        return child_spec(
            name if id is None else id,
            start=(_start_link_kw, (spec, kwargs)),
            type="supervisor",
        )


def _start_link_kw(spec: ChildSpec, kwargs: dict) -> Pid:
    return PartitionSupervisor.start_link(spec, **kwargs)


# ----------------------------------------------------------------- lookups

# name -> (supervisor pid, partition count), per process: the count is fixed
# for the life of one supervisor process.
_counts: dict[Any, tuple[Pid, int]] = {}


def partitions(name: Hashable) -> int:
    """How many partitions the supervisor registered as ``name`` has."""
    sup = _whereis_name(name)
    if sup is None:
        raise NoProc(name)
    known = _counts.get(name)
    if known is not None and known[0] == sup:
        return known[1]
    try:
        count = count_children(sup)["specs"]
    except NoProc:
        raise NoProc(name) from None
    _counts[name] = (sup, count)
    return count


def _stable_bytes(key: Any) -> bytes:
    if isinstance(key, str):
        return b"s" + key.encode("utf-8", "surrogatepass")
    if isinstance(key, bytes):
        return b"b" + key
    if isinstance(key, int) and not isinstance(key, bool):
        return b"i" + str(key).encode()
    if isinstance(key, tuple):
        return b"t(" + b",".join(_stable_bytes(item) for item in key) + b")"
    return b"p" + pickle.dumps(key, protocol=4)


def index_for(key: Any, count: int) -> int:
    """The partition of ``key`` among ``count`` (see the module doc)."""
    if isinstance(key, int) and not isinstance(key, bool):
        return key % count
    return zlib.crc32(_stable_bytes(key)) % count


def partition_of(name: Hashable, key: Any) -> int:
    """The partition of ``key`` in the partition supervisor ``name``."""
    return index_for(key, partitions(name))


def whereis(name: Hashable, key: Any) -> Pid | None:
    """The child of ``key``'s partition now; None while it restarts."""
    return _whereis_name((name, partition_of(name, key)))


def children(name: Hashable) -> list[Pid | None]:
    """Every partition's child now (None while one restarts), by partition."""
    return [_whereis_name((name, i)) for i in range(partitions(name))]
