"""Child specifications and supervisor flags: data, defaults in one place,
validated once, with OTP's error terms.

A child spec says how to start one child and what to do when it ends::

    otp.child_spec("cache", start=(Cache.start_link, ({},)))        # a worker
    otp.child_spec("db", start=(DbSup.start_link, ()), type="supervisor")

The start function runs in the supervisor and must start the child *linked
to the caller* and return its pid (``GenServer.start_link`` and
``otp.spawn_link`` do); returning ``None`` or ``otp.Ignore`` means *ignore*
(CS-3); raising :class:`StartError` means the start failed with its reason.

Defaults (CS-1, supervisor.erl's ``?default_child_spec``): restart
``'permanent'``, type ``'worker'``, shutdown 5 seconds for workers and
``'infinity'`` for supervisors, significant ``False``.  A shutdown of
``math.inf`` is stored as ``'infinity'``; nan, a negative number or
anything else is ``('invalid_shutdown', x)``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from ._errors import OTPError
from ._timeouts import check_timeout

__all__ = [
    "ChildSpec",
    "SupFlags",
    "ChildInfo",
    "SupervisorError",
    "child_spec",
    "check_childspecs",
    "normalize_spec",
    "validate_flags",
    "RESTART_TYPES",
    "STRATEGIES",
]

RESTART_TYPES = ("permanent", "transient", "temporary")
CHILD_TYPES = ("worker", "supervisor")
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one")
AUTO_SHUTDOWN = ("never", "any_significant", "all_significant")
WORKER_SHUTDOWN = 5.0  # seconds; OTP's 5000 ms
_UNSET = object()


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
    pid: Any
    type: str


@dataclass(frozen=True)
class ChildSpec:
    """How to start and supervise one child.  Build with :func:`child_spec`."""

    id: Any
    start: tuple  # (callable, args)
    restart: str = "permanent"
    shutdown: Any = WORKER_SHUTDOWN  # seconds, 'brutal_kill' or 'infinity'
    type: str = "worker"
    significant: bool = False

    def with_args(self, extra: tuple) -> ChildSpec:
        """The spec with ``extra`` appended to the start arguments
        (simple_one_for_one's ``start_child(sup, extra_args)``)."""
        fn, args = self.start
        return replace(self, start=(fn, tuple(args) + tuple(extra)))


@dataclass(frozen=True)
class SupFlags:
    """Supervisor flags (SUP-INT-1: OTP's defaults, intensity 1 in 5 s)."""

    strategy: str = "one_for_one"
    intensity: int = 1
    period: float = 5.0
    auto_shutdown: str = "never"
    extra: dict = field(default_factory=dict, compare=False)


def _valid_start(start: Any) -> tuple:
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


def _valid_shutdown(shutdown: Any, child_type: str) -> Any:
    if shutdown is _UNSET or shutdown is None:
        return WORKER_SHUTDOWN if child_type == "worker" else "infinity"
    if isinstance(shutdown, str) and shutdown in ("brutal_kill", "infinity"):
        return shutdown
    if isinstance(shutdown, numbers.Real) and not isinstance(shutdown, bool):
        try:
            seconds = check_timeout(shutdown, "shutdown")
        except (TypeError, ValueError):
            raise SupervisorError(("invalid_shutdown", shutdown)) from None
        return "infinity" if seconds is None else seconds  # math.inf is OTP's infinity
    raise SupervisorError(("invalid_shutdown", shutdown))


def child_spec(
    id: Any = _UNSET,  # noqa: A002 - OTP's key
    start: Any = _UNSET,
    restart: str = "permanent",
    shutdown: Any = _UNSET,
    type: str = "worker",  # noqa: A002 - OTP's key
    significant: bool = False,
) -> ChildSpec:
    """A validated :class:`ChildSpec`; raises :class:`SupervisorError`."""
    if id is _UNSET:
        raise SupervisorError("missing_id")
    if start is _UNSET:
        raise SupervisorError("missing_start")
    try:
        hash(id)
    except TypeError:
        raise SupervisorError(("invalid_child_id", id)) from None
    start = _valid_start(start)
    if restart not in RESTART_TYPES:
        raise SupervisorError(("invalid_restart_type", restart))
    if type not in CHILD_TYPES:
        raise SupervisorError(("invalid_child_type", type))
    if not isinstance(significant, bool):
        raise SupervisorError(("invalid_significant", significant))
    if significant and restart == "permanent":
        raise SupervisorError(("invalid_significant", significant))  # AS-1
    return ChildSpec(id, start, restart, _valid_shutdown(shutdown, type), type, significant)


def normalize_spec(spec: Any) -> ChildSpec:
    """Accept a ChildSpec, a dict of child_spec's keywords, or a GenServer
    class (its ``child_spec()``)."""
    if isinstance(spec, ChildSpec):
        return child_spec(spec.id, spec.start, spec.restart, spec.shutdown, spec.type, spec.significant)
    if isinstance(spec, dict):
        try:
            return child_spec(**spec)
        except TypeError as exc:
            raise SupervisorError(("invalid_child_spec", spec)) from exc
    factory: Callable | None = getattr(spec, "child_spec", None)
    if isinstance(spec, type) and factory is not None:
        return normalize_spec(factory())
    raise SupervisorError(("invalid_child_spec", spec))


def check_childspecs(specs: list, auto_shutdown: str = "never") -> list[ChildSpec]:
    """Validate a list of specs (``supervisor:check_childspecs``): return the
    normalised list or raise SupervisorError with the first problem."""
    if not isinstance(specs, (list, tuple)):
        raise SupervisorError(("invalid_child_spec", specs))
    out, seen = [], set()
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
    """A validated :class:`SupFlags` from a SupFlags or a dict."""
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
