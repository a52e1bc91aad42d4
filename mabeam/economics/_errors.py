"""The root of the economics errors (pure: no processes, no I/O).

Every error of this package derives from :class:`EconomicsError`; the
rules' error bases (``AuctionError``, ``BudgetError``, ``OrderBookError``,
``ReputationError``) also derive from ``ValueError``, since they refuse
input, and the errors of a missing auction or market from ``LookupError``.
"""

from __future__ import annotations

from .._errors import MabeamError
from .._errors import NotStarted as MabeamNotStarted

__all__ = ["EconomicsError", "NotStarted"]


class EconomicsError(MabeamError):
    """Base class of every error of MABEAM's economics."""


class NotStarted(EconomicsError, MabeamNotStarted):
    """MABEAM is not running on this node, or the economics service asked
    for is not (``except mabeam._errors.NotStarted`` catches it too)."""
