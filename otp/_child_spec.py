"""Child specifications and supervisor flags: data, defaults in one place,
validated once, with OTP's error terms.

A child spec says how to start one child and what to do when it ends::

    otp.child_spec("cache", start=(Cache.start_link, ({},)))        # a worker
    otp.child_spec("db", start=(DbSup.start_link, ()), type="supervisor")

The start function runs in the supervisor and must start the child *linked
to the caller* and return its pid (``GenServer.start_link`` and
``otp.spawn_link`` do); returning ``None`` or ``otp.Ignore`` means *ignore*
(the supervisor keeps the spec of an ignored child unless it is temporary);
raising :class:`StartError` means the start failed with its reason.

A child on another node.  ``child_spec(..., node="beta@10.0.0.6")`` runs
the child there: the supervisor calls the start function with the keyword
``node=`` (as ``GenServer.start_link(node=)``, ``Supervisor.start_link``
and ``otp.spawn_opt`` take it), so the start function must accept it; the
default None calls it without, and the child runs on the supervisor's own
node.  The node is a field of the spec rather than an argument of the start
function so that the supervisor, ``get_childspec`` and a
``DynamicSupervisor.start_child(sup, spec, node=)`` can read and set it
without knowing the start function's arguments.  The child is linked to its
supervisor across the gateway, so a child lost with its node's connection
exits with ``'noconnection'`` and is restarted by the usual rules (see
:mod:`otp._sup_children`).

Defaults, as supervisor.erl's: restart ``'permanent'``, type ``'worker'``,
shutdown 5 seconds for workers and ``'infinity'`` for supervisors,
significant ``False``.  A shutdown of ``math.inf`` is stored as
``'infinity'``; nan, a negative number or anything else is
``('invalid_shutdown', x)``.

Supervisor flags default to one_for_one with at most 1 restart in 5
seconds (OTP's); a :class:`DynamicSupervisor <otp.DynamicSupervisor>`'s to
3 in 5 (Elixir's), with :class:`DynamicOptions`.

Errors.  Every refusal is a :class:`SupervisorError` whose ``reason`` is
the term supervisor.erl uses: ``'missing_id'``, ``'missing_start'``,
``('invalid_child_id', id)``, ``('invalid_mfa', start)``,
``('invalid_restart_type', r)``, ``('invalid_child_type', t)``,
``('invalid_shutdown', s)``, ``('invalid_significant', s)``,
``('invalid_child_spec', x)``, ``('duplicate_child_name', id)`` for specs
(and ``('invalid_node', n)``, which OTP's specs do not have);
``('invalid_flags', x)``, ``('invalid_strategy', s)``,
``('invalid_intensity', i)``, ``('invalid_period', p)``,
``('invalid_auto_shutdown', a)`` and ``('invalid_max_children', n)`` for
flags.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, NamedTuple

from ._errors import OTPError
from ._pid import Pid
from ._timeouts import check_timeout

__all__ = [
    "ChildSpec",
    "SupFlags",
    "DynamicOptions",
    "ChildInfo",
    "SupervisorError",
    "child_spec",
    "check_childspecs",
    "normalize_spec",
    "validate_flags",
    "check_max_children",
    "check_node",
    "RESTART_TYPES",
    "STRATEGIES",
]

Restart = Literal["permanent", "transient", "temporary"]
ChildType = Literal["worker", "supervisor"]
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one"]
AutoShutdown = Literal["never", "any_significant", "all_significant"]
#: Seconds, ``'brutal_kill'`` or ``'infinity'``.
Shutdown = float | Literal["brutal_kill", "infinity"]
#: A start function and its arguments.
StartFn = tuple[Callable[..., Any], tuple]

RESTART_TYPES: tuple[Restart, ...] = ("permanent", "transient", "temporary")
CHILD_TYPES: tuple[ChildType, ...] = ("worker", "supervisor")
STRATEGIES: tuple[Strategy, ...] = ("one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one")
AUTO_SHUTDOWN: tuple[AutoShutdown, ...] = ("never", "any_significant", "all_significant")
WORKER_SHUTDOWN = 5.0  # seconds; OTP's 5000 ms
_UNSET: Any = object()


class SupervisorError(OTPError):
    """A supervisor request failed; ``reason`` is OTP's term (``'not_found'``,
    ``('already_started', pid)``, ``('invalid_shutdown', x)``...)."""

    def __init__(self, reason: object) -> None:
        super().__init__(reason)
        self.reason = reason


class ChildInfo(NamedTuple):
    """An entry of ``which_children``: pid is None when not running and
    ``'restarting'`` while a failed restart is being retried."""

    id: Any
    pid: Pid | Literal["restarting"] | None
    type: ChildType


@dataclass(frozen=True)
class ChildSpec:
    """How to start and supervise one child.  Build with :func:`child_spec`."""

    id: Any
    start: StartFn
    restart: Restart = "permanent"
    shutdown: Shutdown = WORKER_SHUTDOWN
    type: ChildType = "worker"
    significant: bool = False
    #: The node the child runs on (passed to the start function as
    #: ``node=``); None: the supervisor's node.
    node: str | None = None

    def with_node(self, node: str | None) -> ChildSpec:
        """The spec with its child on ``node`` (None: the supervisor's)."""
        return replace(self, node=check_node(node))

    def with_args(self, extra: tuple) -> ChildSpec:
        """The spec with ``extra`` appended to the start arguments
        (simple_one_for_one's ``start_child(sup, extra_args)``)."""
        fn, args = self.start
        return replace(self, start=(fn, tuple(args) + tuple(extra)))

    def with_leading_args(self, extra: tuple) -> ChildSpec:
        """The spec with ``extra`` put before the start arguments (a
        DynamicSupervisor's ``extra_arguments``)."""
        fn, args = self.start
        return replace(self, start=(fn, tuple(extra) + tuple(args)))


@dataclass(frozen=True)
class SupFlags:
    """Supervisor flags; the defaults are OTP's: one_for_one, at most 1
    restart in 5 seconds."""

    strategy: Strategy = "one_for_one"
    intensity: int = 1
    period: float = 5.0
    auto_shutdown: AutoShutdown = "never"


@dataclass(frozen=True)
class DynamicOptions:
    """What a DynamicSupervisor adds to one_for_one: at most
    ``max_children`` children (None: no bound), and ``extra_arguments`` put
    before every child's start arguments."""

    max_children: int | None = None
    extra_arguments: tuple = ()


#: A DynamicSupervisor's flags unless given (Elixir's: 3 restarts in 5 s).
DYNAMIC_FLAGS = SupFlags("one_for_one", 3, 5.0)


def _valid_start(start: Any) -> StartFn:
    if callable(start):
        return (start, ())
    if (
        isinstance(start, (tuple, list))
        and len(start) == 2
        and callable(start[0])
        and isinstance(start[1], (tuple, list))
    ):
        return (start[0], tuple(start[1]))
    raise SupervisorError(("invalid_mfa", start))


def _valid_shutdown(shutdown: Any, child_type: ChildType) -> Shutdown:
    if shutdown is _UNSET or shutdown is None:
        return WORKER_SHUTDOWN if child_type == "worker" else "infinity"
    if shutdown == "brutal_kill" and isinstance(shutdown, str):
        return "brutal_kill"
    if shutdown == "infinity" and isinstance(shutdown, str):
        return "infinity"
    if isinstance(shutdown, numbers.Real) and not isinstance(shutdown, bool):
        try:
            seconds = check_timeout(shutdown, "shutdown")
        except (TypeError, ValueError):
            raise SupervisorError(("invalid_shutdown", shutdown)) from None
        return "infinity" if seconds is None else seconds  # math.inf is OTP's infinity
    raise SupervisorError(("invalid_shutdown", shutdown))


def check_node(node: Any) -> str | None:
    """``node`` if it is None or a node name (a non-empty str); else
    ``SupervisorError(('invalid_node', node))``."""
    if node is not None and (not isinstance(node, str) or not node):
        raise SupervisorError(("invalid_node", node))
    return node


def child_spec(
    id: Any = _UNSET,  # noqa: A002 - OTP's key
    start: Any = _UNSET,
    restart: Restart = "permanent",
    shutdown: Shutdown | None = _UNSET,
    type: ChildType = "worker",  # noqa: A002 - OTP's key
    significant: bool = False,
    node: str | None = None,
) -> ChildSpec:
    """A validated :class:`ChildSpec`.  ``start`` is a callable or
    ``(callable, args)``; ``shutdown`` defaults by type (see the module
    doc).  Raises :class:`SupervisorError`: ``'missing_id'``,
    ``'missing_start'``, ``('invalid_child_id', id)`` (unhashable),
    ``('invalid_mfa', start)``, ``('invalid_restart_type', restart)``,
    ``('invalid_child_type', type)``, ``('invalid_shutdown', shutdown)``,
    ``('invalid_significant', significant)`` (not a bool, or True for a
    permanent child, which would end its supervisor at every restart),
    ``('invalid_node', node)`` (not None or a non-empty str).  ``node``
    runs the child on that node (see the module doc)."""
    if id is _UNSET:
        raise SupervisorError("missing_id")
    if start is _UNSET:
        raise SupervisorError("missing_start")
    try:
        hash(id)
    except TypeError:
        raise SupervisorError(("invalid_child_id", id)) from None
    start_fn = _valid_start(start)
    if restart not in RESTART_TYPES:
        raise SupervisorError(("invalid_restart_type", restart))
    if type not in CHILD_TYPES:
        raise SupervisorError(("invalid_child_type", type))
    if not isinstance(significant, bool):
        raise SupervisorError(("invalid_significant", significant))
    if significant and restart == "permanent":
        # A permanent child is restarted, never "ends": it cannot be significant.
        raise SupervisorError(("invalid_significant", significant))
    return ChildSpec(id, start_fn, restart, _valid_shutdown(shutdown, type), type, significant, check_node(node))


def normalize_spec(spec: Any) -> ChildSpec:
    """Accept a ChildSpec, a dict of child_spec's keywords, or a GenServer
    class (its ``child_spec()``).  Raises :class:`SupervisorError`: what
    :func:`child_spec` raises, or ``('invalid_child_spec', spec)``."""
    if isinstance(spec, ChildSpec):
        return child_spec(spec.id, spec.start, spec.restart, spec.shutdown, spec.type, spec.significant, spec.node)
    if isinstance(spec, dict):
        try:
            return child_spec(**spec)
        except TypeError as exc:
            raise SupervisorError(("invalid_child_spec", spec)) from exc
    factory: Callable[[], Any] | None = getattr(spec, "child_spec", None)
    if isinstance(spec, type) and factory is not None:
        return normalize_spec(factory())
    raise SupervisorError(("invalid_child_spec", spec))


def check_childspecs(specs: Any, auto_shutdown: AutoShutdown = "never") -> list[ChildSpec]:
    """Validate a list of specs (``supervisor:check_childspecs``): return the
    normalised list or raise SupervisorError with the first problem: what
    :func:`normalize_spec` raises, ``('invalid_child_spec', specs)`` for
    something else than a list, ``('duplicate_child_name', id)``, or
    ``('invalid_significant', True)`` under ``auto_shutdown='never'``."""
    if not isinstance(specs, (list, tuple)):
        raise SupervisorError(("invalid_child_spec", specs))
    out: list[ChildSpec] = []
    seen: set[Any] = set()
    for raw in specs:
        spec = normalize_spec(raw)
        if spec.id in seen:
            raise SupervisorError(("duplicate_child_name", spec.id))
        if spec.significant and auto_shutdown == "never":
            raise SupervisorError(("invalid_significant", spec.significant))
        seen.add(spec.id)
        out.append(spec)
    return out


def validate_flags(flags: Any) -> SupFlags:
    """A validated :class:`SupFlags` from a SupFlags or a dict.  Raises
    :class:`SupervisorError`: ``('invalid_flags', flags)``,
    ``('invalid_strategy', s)``, ``('invalid_intensity', i)`` (not an int
    >= 0), ``('invalid_period', p)`` (not a number > 0) or
    ``('invalid_auto_shutdown', a)``."""
    if isinstance(flags, dict):
        try:
            flags = SupFlags(**flags)
        except TypeError as exc:
            raise SupervisorError(("invalid_flags", flags)) from exc
    if not isinstance(flags, SupFlags):
        raise SupervisorError(("invalid_flags", flags))
    if flags.strategy not in STRATEGIES:
        raise SupervisorError(("invalid_strategy", flags.strategy))
    if not isinstance(flags.intensity, int) or isinstance(flags.intensity, bool) or flags.intensity < 0:
        raise SupervisorError(("invalid_intensity", flags.intensity))
    # `not > 0` rather than `<= 0`: nan compares false both ways.
    if not isinstance(flags.period, numbers.Real) or isinstance(flags.period, bool) or not flags.period > 0:
        raise SupervisorError(("invalid_period", flags.period))
    if flags.auto_shutdown not in AUTO_SHUTDOWN:
        raise SupervisorError(("invalid_auto_shutdown", flags.auto_shutdown))
    return flags


def check_max_children(max_children: Any) -> int | None:
    """``max_children`` if it is None or an int >= 0; else
    ``SupervisorError(('invalid_max_children', max_children))``."""
    if max_children is not None and (not isinstance(max_children, int) or max_children < 0):
        raise SupervisorError(("invalid_max_children", max_children))
    return max_children
