"""What universal variables are made of: their errors, history entries,
conflict-resolution modes and what counts as an approving vote.  Pure: no
processes."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .._errors import MabeamError

__all__ = [
    "VariableError",
    "VariableNotFound",
    "VariableExists",
    "InvalidVariable",
    "VersionConflict",
    "UpdateRejected",
    "VoteFailed",
    "ConflictResolution",
    "HistoryEntry",
    "VariableInfo",
    "APPROVALS",
    "approves",
]

#: The votes that approve an update; anything else (an abstention, an
#: error, no answer) counts against.
APPROVALS: tuple[Any, ...] = (True, "approve", "yes", "accept")


class VariableError(MabeamError):
    """Base class of the universal-variable errors; ``name`` is the variable's."""

    def __init__(self, name: Hashable, *details: Any) -> None:
        super().__init__(name, *details)
        self.name = name


class VariableNotFound(VariableError, LookupError):
    """No variable has that name."""

    def __str__(self) -> str:
        return f"no variable {self.name!r}"


class VariableExists(VariableError):
    """A variable with that name is registered already."""

    def __str__(self) -> str:
        return f"variable {self.name!r} is registered already"


class InvalidVariable(VariableError, ValueError):
    """The variable cannot be registered as asked: ``problem`` says why."""

    def __init__(self, name: Hashable, problem: str) -> None:
        super().__init__(name, problem)
        self.problem = problem

    def __str__(self) -> str:
        return f"variable {self.name!r}: {self.problem}"


class VersionConflict(VariableError):
    """``expected`` is stale: the variable is at version ``current``."""

    def __init__(self, name: Hashable, expected: int, current: int) -> None:
        super().__init__(name, expected, current)
        self.expected = expected
        self.current = current

    def __str__(self) -> str:
        return f"variable {self.name!r} is at version {self.current}, not {self.expected}"


class UpdateRejected(VariableError):
    """The voters did not approve; ``votes`` is ``{agent_id: vote}`` (None
    for an abstention, an error or no answer)."""

    def __init__(self, name: Hashable, votes: dict[Hashable, Any]) -> None:
        super().__init__(name, votes)
        self.votes = votes

    def __str__(self) -> str:
        return f"the voters of {self.name!r} rejected the update: {self.votes!r}"


class VoteFailed(VariableError):
    """The process collecting the votes died with ``exit_reason``."""

    def __init__(self, name: Hashable, exit_reason: Any) -> None:
        super().__init__(name, exit_reason)
        self.exit_reason = exit_reason

    def __str__(self) -> str:
        return f"the vote on {self.name!r} failed: {self.exit_reason!r}"


class ConflictResolution(str, Enum):
    """How concurrent updates of a variable are decided."""

    LAST_WRITE_WINS = "last_write_wins"
    CONSENSUS = "consensus"  # a strict majority of the variable's voters approves each update


@dataclass(frozen=True)
class HistoryEntry:
    """One version of a variable."""

    version: int
    value: Any
    modifier: Any
    at: float  # time.time()


@dataclass(frozen=True)
class VariableInfo:
    """A variable's metadata (``get_variable_info``)."""

    name: Hashable
    version: int
    modifier: Any
    conflict_resolution: ConflictResolution
    voters: tuple[Hashable, ...]
    subscribers: int  # live ones
    history: int  # entries kept
    pending: int  # consensus updates waiting for their vote


def approves(vote: Any) -> bool:
    """Whether ``vote`` is one of :data:`APPROVALS` (``True`` itself, not 1)."""
    return any(vote is a or (isinstance(a, str) and vote == a) for a in APPROVALS)
