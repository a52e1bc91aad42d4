"""How every MABEAM process reports an event to the telemetry service."""

from __future__ import annotations

from typing import Any

import otp

__all__ = ["TELEMETRY", "emit_event"]

#: The telemetry service's registered name.
TELEMETRY = "mabeam.telemetry"


def emit_event(
    event: tuple, measurements: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None
) -> None:
    """Report ``event`` (a tuple name such as ``('mabeam', 'economics',
    'bid')``) to the handlers attached in the telemetry service.  A cast:
    never blocks, never fails, and does nothing when the service is not
    running."""
    otp.tell(TELEMETRY, "emit_event", event, dict(measurements or {}), dict(metadata or {}))
