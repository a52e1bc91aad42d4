"""The root of every MABEAM exception, and the causes shared by features.

Each feature derives its own base from :class:`MabeamError`
(``EconomicsError``, ``CoordinationError``, ``VariableError``, ...) and names
causes as subclasses, so callers catch by type, never by comparing a
``reason`` string.  Errors of input a caller got wrong also derive from the
matching built-in (``ValueError``, ``LookupError``, ``TypeError``), so
``except LookupError`` keeps working.

Two families concern agents, and every cause names its agent in
``agent_id``:

* :class:`AgentError`: the agent refused or failed an operation
  (:class:`HookFailed`, :class:`AgentAlreadyRegistered`,
  :class:`AgentAlreadyRunning`, :class:`AgentStillRunning`,
  :class:`AgentStartFailed`);
* :class:`CommsError`: the agent could not be reached
  (:class:`AgentNotRunning`, :class:`AgentTimeout`, :class:`AgentExited`);
  an operation that needs a running agent (``stop_agent``) raises
  :class:`AgentNotRunning` too.

Each cause also has ``reason``, a plain term (``'not_running'``,
``'timeout'``, the exit reason, the hook's :class:`otp.Crash`) for results
that record why an agent gave no answer; the class is the cause.

This module imports only ``otp._errors`` (a leaf of the kernel: no
processes, no sockets), so the pure modules of each feature may derive
their errors from it and stay free of the kernel.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, ClassVar

from otp._errors import OTPError

if TYPE_CHECKING:
    from otp import Crash

__all__ = [
    "MabeamError",
    "NotStarted",
    "UnknownAgent",
    "AgentError",
    "HookFailed",
    "AgentAlreadyRegistered",
    "AgentAlreadyRunning",
    "AgentStillRunning",
    "AgentStartFailed",
    "CommsError",
    "AgentTimeout",
    "AgentExited",
    "AgentNotRunning",
]


class MabeamError(OTPError):
    """Base class of every exception MABEAM raises."""


class NotStarted(MabeamError):
    """MABEAM (``mabeam.start()``) is not running on this node."""


class UnknownAgent(MabeamError, LookupError):
    """No agent is registered under ``agent_id``."""

    def __init__(self, agent_id: Hashable) -> None:
        super().__init__(agent_id)
        self.agent_id = agent_id

    def __str__(self) -> str:
        return f"no agent {self.agent_id!r} is registered"


# ------------------------------------------------------------------ agents


class _AgentCause(MabeamError):
    """What both families share: the agent, and the cause as a plain term
    (``term``) and in words (``says``), declared by each simple cause as
    class attributes."""

    #: The cause as a plain term; None: the class's name.
    term: ClassVar[str | None] = None
    #: What ``str`` says after the agent's id; empty: the term.
    says: ClassVar[str] = ""

    def __init__(self, agent_id: Hashable, *details: object) -> None:
        super().__init__(agent_id, *details)
        self.agent_id = agent_id

    @property
    def reason(self) -> object:
        """The cause as a plain term, for results and logs."""
        return type(self).__name__ if self.term is None else self.term

    def __str__(self) -> str:
        if self.says:
            return f"agent {self.agent_id!r} {self.says}"
        return f"agent {self.agent_id!r}: {self.reason!r}"


class _ExitCause(_AgentCause):
    """A cause that carries an exit reason, which is its ``reason``."""

    def __init__(self, agent_id: Hashable, exit_reason: object) -> None:
        super().__init__(agent_id, exit_reason)
        self.exit_reason = exit_reason

    @property
    def reason(self) -> object:
        return self.exit_reason

    def __str__(self) -> str:
        return f"agent {self.agent_id!r} {self.says}: {self.exit_reason}"


class AgentError(_AgentCause):
    """An agent refused or failed an operation; the subclass says why."""


class HookFailed(AgentError):
    """The agent's hook for ``operation`` (``'request'``, ``'vote'``, ...)
    raised; ``crash`` is what it raised, with its traceback.  The agent
    carries on."""

    def __init__(self, agent_id: Hashable, operation: str, crash: Crash) -> None:
        super().__init__(agent_id, operation, crash)
        self.operation = operation
        self.crash = crash

    @property
    def reason(self) -> Crash:
        return self.crash

    def __str__(self) -> str:
        return f"agent {self.agent_id!r}: its {self.operation} hook raised {self.crash}"


class AgentAlreadyRegistered(AgentError):
    """``register_agent`` of an id that is already registered."""

    term = "already_registered"
    says = "is already registered"


class AgentAlreadyRunning(AgentError):
    """``start_agent`` of an agent that runs already."""

    term = "already_running"
    says = "is already running"


class AgentStillRunning(AgentError):
    """``unregister_agent`` of an agent that runs: stop it first."""

    term = "running"
    says = "is running: stop it before unregistering it"


class AgentStartFailed(_ExitCause, AgentError):
    """The agent's process did not start; ``exit_reason`` is why (an
    :class:`otp.Crash` when its ``setup`` raised)."""

    says = "did not start"


# ------------------------------------------------------------------ comms


class CommsError(_AgentCause):
    """An agent could not be reached; the subclass says why."""


class AgentTimeout(CommsError):
    """The agent did not answer in time (it may still act on the request)."""

    term = "timeout"
    says = "did not answer in time"


class AgentExited(_ExitCause, CommsError):
    """The agent exited while the caller waited; ``exit_reason`` is its
    exit reason (``'killed'``, an :class:`otp.Crash`, ...)."""

    says = "exited"


class AgentNotRunning(CommsError):
    """The agent ``agent_id`` has no running process (registered only,
    stopped, or gone)."""

    term = "not_running"
    says = "is not running"

    def __init__(self, agent_id: Hashable) -> None:
        super().__init__(agent_id)
