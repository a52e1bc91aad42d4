"""The errors of the voting rules, and the range check they share.

Apart from :mod:`.voting` because the collusion-resistant rules
(:mod:`._collusion`) raise them too, and :mod:`.voting` re-exports those
rules: one module below both keeps the imports one way.  Pure: no
processes, no I/O.
"""

from __future__ import annotations

from ._errors import CoordinationError

__all__ = [
    "VotingError",
    "InvalidVotingParameter",
    "InvalidVote",
    "DuplicateVote",
    "UnknownVoter",
    "QuorumNotMet",
    "InsufficientAgents",
    "TooManyVotes",
    "check_fraction",
]


class VotingError(CoordinationError, ValueError):
    """Base class of every error raised by the voting rules."""


class InvalidVotingParameter(VotingError):
    """A threshold, fraction, weight or size is out of range."""


class InvalidVote(VotingError):
    """A vote value or confidence cannot be interpreted."""


class DuplicateVote(VotingError):
    """One voter appears twice in a weighted tally."""


class UnknownVoter(VotingError):
    """A vote came from someone outside the electorate (no weight)."""


class QuorumNotMet(VotingError):
    """Fewer voters took part than the quorum requires."""


class InsufficientAgents(VotingError):
    """Byzantine agreement needs n >= 3f + 1 participants."""

    def __init__(self, minimum: int, n: int) -> None:
        super().__init__(f"tolerating the given faults needs at least {minimum} agents, got {n}")
        self.minimum = minimum
        self.n = n


class TooManyVotes(VotingError):
    """More votes than participants: the tally's inputs are inconsistent."""


def check_fraction(x: float, what: str) -> None:
    """Raise :class:`InvalidVotingParameter` unless ``x`` is a number in [0, 1]."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0.0 <= x <= 1.0:
        raise InvalidVotingParameter(f"{what} must be in [0, 1], got {x!r}")
