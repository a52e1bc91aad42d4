"""The root of every MABEAM exception, and the causes shared by features.

Each feature derives its own base from :class:`MabeamError`
(``EconomicsError``, ``CoordinationError``, ``VariableError``, ...) and names
causes as subclasses, so callers catch by type, never by comparing a
``reason`` string.  Errors of input a caller got wrong also derive from the
matching built-in (``ValueError``, ``LookupError``, ``TypeError``), so
``except LookupError`` keeps working.

This module imports only ``otp._errors`` (a leaf of the kernel: no
processes, no sockets), so the pure modules of each feature may derive
their errors from it and stay free of the kernel.
"""

from __future__ import annotations

from otp._errors import OTPError

__all__ = ["MabeamError", "NotStarted", "UnknownAgent", "AgentNotRunning"]


class MabeamError(OTPError):
    """Base class of every exception MABEAM raises."""


class NotStarted(MabeamError):
    """MABEAM (``mabeam.start()``) is not running on this node."""


class UnknownAgent(MabeamError, LookupError):
    """No agent is registered under ``agent_id``."""

    def __init__(self, agent_id: object) -> None:
        super().__init__(agent_id)
        self.agent_id = agent_id

    def __str__(self) -> str:
        return f"no agent {self.agent_id!r} is registered"


class AgentNotRunning(MabeamError):
    """The agent ``agent_id`` is registered but has no running process."""

    def __init__(self, agent_id: object) -> None:
        super().__init__(agent_id)
        self.agent_id = agent_id

    def __str__(self) -> str:
        return f"agent {self.agent_id!r} is not running"
