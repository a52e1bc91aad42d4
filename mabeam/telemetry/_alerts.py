"""Performance alerts: per-metric thresholds and the alerts they raise.

An alert is raised once when a value crosses its metric's threshold and
cleared when a later value is back on the right side; the telemetry server
owns the active alerts and tells subscribers.  Default thresholds: cpu
above 0.9, memory above 2 GiB, error_rate above 0.1 (a throughput floor is
available with ``set_alert_threshold('throughput', 1.0, 'below')``).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

__all__ = ["AlertDirection", "AlertChange", "Threshold", "Alert", "DEFAULT_THRESHOLDS", "GIB"]

GIB = 1024**3


class AlertDirection(str, Enum):
    """The wrong side of a threshold's limit."""

    ABOVE = "above"
    BELOW = "below"


class AlertChange(str, Enum):
    """What happened to an alert, as told to subscribers and event handlers."""

    RAISED = "raised"
    CLEARED = "cleared"


class Threshold(NamedTuple):
    """A value strictly on the ``direction`` side of ``limit`` raises an alert."""

    direction: AlertDirection
    limit: float

    def violated_by(self, value: float) -> bool:
        """Whether ``value`` is on the wrong side of the limit."""
        return value > self.limit if self.direction is AlertDirection.ABOVE else value < self.limit


#: metric -> threshold, before any ``set_alert_threshold``.
DEFAULT_THRESHOLDS: dict[str, Threshold] = {
    "cpu": Threshold(AlertDirection.ABOVE, 0.9),
    "memory": Threshold(AlertDirection.ABOVE, 2 * GIB),
    "error_rate": Threshold(AlertDirection.ABOVE, 0.1),
}


@dataclass(frozen=True)
class Alert:
    """An agent's metric on the wrong side of its threshold since ``since``
    (``time.time()``); a cleared alert carries the value that cleared it."""

    agent_id: Hashable
    metric: str
    value: float
    limit: float
    direction: AlertDirection
    since: float
