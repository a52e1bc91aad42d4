"""The root of the economics errors (pure: no processes, no I/O).

Every error of this package derives from :class:`EconomicsError`; the
rules' error bases (``AuctionError``, ``BudgetError``, ``OrderBookError``,
``ReputationError``) also derive from ``ValueError``, since they refuse
input, and the errors of a missing auction or market from ``LookupError``.
"""

from __future__ import annotations

from .._errors import MabeamError
from .._errors import NotStarted as MabeamNotStarted

__all__ = ["EconomicsError", "NotStarted", "BiddersExited"]


class EconomicsError(MabeamError):
    """Base class of every error of MABEAM's economics."""


class NotStarted(EconomicsError, MabeamNotStarted):
    """MABEAM is not running on this node, or the economics service asked
    for is not (``except mabeam._errors.NotStarted`` catches it too)."""


class BiddersExited(EconomicsError):
    """The auction could not clear: every bid that could have won was
    withdrawn because the process behind it (the bidder's agent) exited
    before the auction cleared.  ``exited`` maps each withdrawn bidder to
    its exit reason ('killed', an ``otp.Crash``...).

    Not an ``AuctionError``: no input was refused, the bidders are gone."""

    def __init__(self, auction_id: object, exited: dict) -> None:
        super().__init__(auction_id, exited)
        self.auction_id = auction_id
        self.exited = dict(exited)

    def __str__(self) -> str:
        names = ", ".join(repr(b) for b in self.exited)
        return f"auction {self.auction_id!r} has no live winner: the bidders {names} exited with their bids standing"
