"""The root of the economics errors (pure: no processes, no I/O).

Every error of this package derives from :class:`EconomicsError`; the
rules' error bases (``AuctionError``, ``BudgetError``, ``OrderBookError``,
``ReputationError``) also derive from ``ValueError``, since they refuse
input, and the errors of a missing auction or market from ``LookupError``.

Auctions and markets live in host processes (``_host``), many to a host,
so two causes belong to hosting: :class:`AuctionCrashed` /
:class:`MarketCrashed` (the item's own code raised: that item failed, its
host and the items beside it go on) and :class:`AuctionLost` /
:class:`MarketLost` (the host process died, and the items it held with it).
"""

from __future__ import annotations

from .._errors import MabeamError
from .._errors import NotStarted as MabeamNotStarted

__all__ = [
    "EconomicsError",
    "NotStarted",
    "BiddersExited",
    "AuctionCrashed",
    "AuctionLost",
    "MarketCrashed",
    "MarketLost",
]


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


class _ItemFailure(EconomicsError):
    """An auction or a market failed: ``args`` are its id and the cause,
    which :attr:`says` puts in words."""

    what = "item"
    says = "failed ({!r})"

    def __init__(self, item_id: object, cause: object) -> None:
        super().__init__(item_id, cause)

    @property
    def item_id(self) -> object:
        return self.args[0]

    def __str__(self) -> str:
        return f"{self.what} {self.item_id!r} " + self.says.format(self.args[1])


class _Crashed(_ItemFailure):
    """The item's own code raised ``crash`` (an ``otp.Crash``: type,
    message, traceback); it failed alone and stays failed until it leaves."""

    says = "failed: its code raised {!r}"

    @property
    def crash(self) -> object:
        return self.args[1]


class _Lost(_ItemFailure):
    """The host process that held the item exited with ``reason`` (SIGKILL:
    ``'killed'``); the item's state went with it."""

    says = "is lost: its host process exited ({!r})"

    @property
    def reason(self) -> object:
        return self.args[1]


class AuctionCrashed(_Crashed):
    """The auction's own code (its mechanism, the rules it called) raised
    an unexpected exception: this auction failed (``run``, ``close`` and the
    result waiters get this error), the others on its host go on."""

    what = "auction"

    @property
    def auction_id(self) -> object:
        return self.args[0]


class AuctionLost(_Lost):
    """The host process of the auction died (its state with it) while the
    caller waited on it, or before the result was sent."""

    what = "auction"

    @property
    def auction_id(self) -> object:
        return self.args[0]


class MarketCrashed(_Crashed):
    """The market's own code raised an unexpected exception: this market
    failed and takes no more orders; the others on its host go on."""

    what = "market"

    @property
    def market_id(self) -> object:
        return self.args[0]


class MarketLost(_Lost):
    """The host process of the market died (its book with it) while the
    caller waited on it."""

    what = "market"

    @property
    def market_id(self) -> object:
        return self.args[0]
