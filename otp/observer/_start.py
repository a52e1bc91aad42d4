"""Where the observer's processes live, and starting them on demand.

The collector runs under the *observer supervisor*, itself a transient
child of the node's kernel supervisor added at run time
(``otp.supervisor.start_child``; the kernel is found as the parent of the
application controller).  The observer supervisor has a restart budget of
its own (:data:`INTENSITY` in :data:`PERIOD` seconds): a collector that
keeps crashing ends it with ``'shutdown'``, a clean exit for a transient
child, so an observer bug never spends the kernel's budget, whose
exhaustion would take the registry and the timer server down.  Web servers
started by :func:`otp.observer.serve` are its temporary children.  When
the node stops, the kernel stops its children in reverse start order: the
observer first.

A node without an application controller (none today) gets the observer
supervisor unlinked, on its own.
"""

from __future__ import annotations

import functools
from typing import Any

from .._application import CONTROLLER
from .._child_spec import ChildSpec, SupervisorError, child_spec
from .._errors import OTPError
from .._pid import Pid
from .._supervisor import Supervisor, restart_child, start_child
from .._sys import get_status
from ..registry._names import whereis
from ._collector import COLLECTOR_NAME, Collector
from ._rounds import Config

__all__ = ["ensure_collector", "observer_supervisor", "kernel_supervisor", "SUPERVISOR_NAME", "SUPERVISOR_ID"]

SUPERVISOR_NAME = "$otp_observer_sup"
SUPERVISOR_ID = "otp_observer"
INTENSITY = 5
PERIOD = 30.0


def kernel_supervisor() -> Pid | None:
    """The node's kernel supervisor (the application controller's parent)."""
    try:
        return get_status(CONTROLLER, timeout=5.0).parent
    except OTPError:
        return None


def collector_spec(config: Config | None) -> ChildSpec:
    return Collector.child_spec(config, id="collector", name=COLLECTOR_NAME, restart="transient", shutdown=5.0)


def _observer_spec(config: Config | None) -> ChildSpec:
    start = functools.partial(
        Supervisor.start_link, name=SUPERVISOR_NAME, strategy="one_for_one", intensity=INTENSITY, period=PERIOD
    )
    return child_spec(SUPERVISOR_ID, start=(start, ([collector_spec(config)],)), type="supervisor", restart="transient")


def observer_supervisor(config: Config | None = None) -> Pid:
    """The observer supervisor, started (with a collector) if it does not run."""
    pid = whereis(SUPERVISOR_NAME)
    if pid is not None:
        return pid
    kernel = kernel_supervisor()
    if kernel is None:
        started = Supervisor.start(
            [collector_spec(config)], name=SUPERVISOR_NAME, strategy="one_for_one", intensity=INTENSITY, period=PERIOD
        )
        if started is None:  # pragma: no cover - a static supervisor never ignores
            raise OTPError("the observer supervisor did not start")
        return started
    try:
        started = start_child(kernel, _observer_spec(config))
    except SupervisorError as exc:
        started = _after_refusal(exc, lambda: restart_child(kernel, SUPERVISOR_ID))
    return started if started is not None else _must(whereis(SUPERVISOR_NAME))


def ensure_collector(config: Config | None = None) -> Pid:
    """The node's collector, started if it does not run (``config`` is
    used only by the start)."""
    pid = whereis(COLLECTOR_NAME)
    if pid is not None:
        return pid
    sup = observer_supervisor(config)
    pid = whereis(COLLECTOR_NAME)
    if pid is not None:
        return pid
    try:
        started = restart_child(sup, "collector")
    except SupervisorError as exc:
        started = _after_refusal(exc, lambda: start_child(sup, collector_spec(config)))
    return started if started is not None else _must(whereis(COLLECTOR_NAME))


def _after_refusal(exc: SupervisorError, otherwise: Any) -> Pid | None:
    """A start refused because someone else started it meanwhile (the
    pid), because it is stopped or unknown (``otherwise()``)."""
    reason = exc.reason
    if isinstance(reason, tuple) and reason and reason[0] == "already_started":
        return reason[1] if isinstance(reason[1], Pid) else None
    if reason in ("running", "restarting"):
        return None
    if reason in ("already_present", "not_found"):
        try:
            return otherwise()
        except SupervisorError as again:
            if again.reason in ("running", "restarting") or (
                isinstance(again.reason, tuple) and again.reason[0] == "already_started"
            ):
                return None
            raise
    raise exc


def _must(pid: Pid | None) -> Pid:
    if pid is None:
        raise OTPError("the observer's process did not start")
    return pid
