"""MABEAM economics: auctions, a continuous double-auction market, budgets
and reputation, each run by its own processes in the application's tree.

Design
------

* **One process per auction and per market.**  :func:`create_auction` and
  :func:`create_market` start a gen_server (``restart='temporary'``: a
  crashed auction is reported, never rerun with lost bids) under the
  ``mabeam.economics`` dynamic supervisor.  That process is the only owner
  of its bids or order book; many auctions and markets run at once and none
  waits on another.  A driven auction asks its participant agents with real,
  concurrent calls to their ``handle_bid`` / ``handle_offer`` hooks (each
  agent answers from its own OS process, with a timeout; an agent that dies
  or times out is recorded in ``not_bidding`` and never blocks the others),
  one round per message the auction sends itself, so explicit bids,
  ``close`` and reads are served between rounds.  Every price and payment is
  computed by :mod:`mabeam.rules` (``auctions``, ``orderbook``).

* **CQRS reads.**  Writes (bids, orders, cancels, budget and reputation
  changes) go to the owning process.  Reads never do: every owner publishes
  a plain snapshot of its public state, with a sequence number, into the
  economics board ``mabeam.economics.board`` (a keyed registry, unique
  keys), and :func:`auction_state`, :func:`market_state`,
  :func:`get_budget`, :func:`reputation` read it from the caller's own
  replica of the board, so a read answers at once even while an auction
  waits on slow bidders.  A read after one's own write sees that write.

* **What is in memory.**  Bids, order books, trades, budgets and
  reputations live in the memory of their owning process only (the board
  holds snapshots, dropped when their owner exits).  A closed auction or
  market stays readable ``linger`` seconds, then exits; the budget and
  reputation services (``mabeam.budgets``, ``mabeam.reputation``, permanent
  children of ``mabeam.sup``) restart empty after a crash.

* **Errors are typed across processes.**  The rules' own exceptions
  (``BidTooLow`` with ``.minimum``, ``InsufficientFunds`` with
  ``.available``, ``UnknownOrder``...) are raised in the caller, whichever
  process detected them.

Importing this package registers its services in
:data:`mabeam._app.SERVICES` (the board first, then reputation and
budgets), so ``mabeam.start()`` starts them.
"""

from __future__ import annotations

import otp

from .._app import SERVICES
from ..rules.auctions import (
    AuctionClosed,
    AuctionError,
    BidTooLow,
    DuplicateBidder,
    InvalidAuctionParameter,
    InvalidBid,
    TooManyBids,
)
from ..rules.budgets import (
    BudgetError,
    CommitExceedsReservation,
    DuplicateReservation,
    ExceedsTaskLimit,
    InsufficientFunds,
    InvalidAmount,
    ReservationSettled,
    UnknownReservation,
)
from ..rules.orderbook import BUY, SELL, DuplicateOrderId, InvalidOrder, OrderBookError, Trade, UnknownOrder
from ..rules.reputation import DuplicateRecord, ImplausibleRecord, InvalidRecord, ReputationError
from . import _budgets, _reputation
from ._auction import AUCTIONS_TOPIC, AuctionOutcome, IneligibleBidder, auction_topic
from ._auction_api import (
    AuctionRef,
    DuplicateAuction,
    UnknownAuction,
    auction_result_async,
    auction_state,
    close,
    create_auction,
    create_auction_async,
    list_auctions,
    place_bid,
    run,
)
from ._budgets import (
    BUDGETS,
    BudgetSnapshot,
    DuplicateBudget,
    UnknownBudget,
    budget_batch,
    commit_funds,
    deposit_funds,
    get_budget,
    open_budget,
    release_funds,
    reserve_funds,
    to_money,
)
from ._market import MARKETS_TOPIC, MarketClosed, MarketOutcome, NotOrderOwner, OrderResult, market_topic
from ._market_api import (
    DuplicateMarket,
    MarketRef,
    UnknownMarket,
    cancel_order,
    close_market,
    create_market,
    list_markets,
    market_state,
    market_trades,
    submit_order,
)
from ._mechanisms import KINDS
from ._reputation import (
    REPUTATION,
    ReputationSnapshot,
    decay_reputation,
    init_reputation,
    penalize,
    record_performance,
    reputation,
    reputation_info,
    reputation_rankings,
)
from ._wire import BOARD, EconomicsError, NotStarted

__all__ = [
    "BOARD",
    "BUDGETS",
    "REPUTATION",
    # auctions
    "KINDS",
    "AUCTIONS_TOPIC",
    "AuctionRef",
    "AuctionOutcome",
    "create_auction",
    "create_auction_async",
    "place_bid",
    "run",
    "close",
    "auction_result_async",
    "auction_state",
    "list_auctions",
    "auction_topic",
    # market
    "BUY",
    "SELL",
    "MARKETS_TOPIC",
    "MarketRef",
    "OrderResult",
    "MarketOutcome",
    "Trade",
    "create_market",
    "submit_order",
    "cancel_order",
    "close_market",
    "market_state",
    "market_trades",
    "list_markets",
    "market_topic",
    # budgets
    "BudgetSnapshot",
    "to_money",
    "open_budget",
    "deposit_funds",
    "reserve_funds",
    "commit_funds",
    "release_funds",
    "budget_batch",
    "get_budget",
    # reputation
    "ReputationSnapshot",
    "init_reputation",
    "record_performance",
    "reputation",
    "reputation_info",
    "decay_reputation",
    "penalize",
    "reputation_rankings",
    # errors
    "EconomicsError",
    "NotStarted",
    "UnknownAuction",
    "DuplicateAuction",
    "IneligibleBidder",
    "AuctionError",
    "InvalidBid",
    "InvalidAuctionParameter",
    "BidTooLow",
    "AuctionClosed",
    "DuplicateBidder",
    "TooManyBids",
    "UnknownMarket",
    "DuplicateMarket",
    "MarketClosed",
    "NotOrderOwner",
    "OrderBookError",
    "InvalidOrder",
    "DuplicateOrderId",
    "UnknownOrder",
    "BudgetError",
    "InvalidAmount",
    "InsufficientFunds",
    "ExceedsTaskLimit",
    "DuplicateReservation",
    "UnknownReservation",
    "ReservationSettled",
    "CommitExceedsReservation",
    "UnknownBudget",
    "DuplicateBudget",
    "ReputationError",
    "InvalidRecord",
    "DuplicateRecord",
    "ImplausibleRecord",
]


def _board() -> otp.ChildSpec:
    return otp.Registry.child_spec(keys="unique", name=BOARD, id=BOARD)


# Start order: the board first (every other economics process writes to it).
SERVICES[BOARD] = _board
SERVICES[REPUTATION] = _reputation.child_spec
SERVICES[BUDGETS] = _budgets.child_spec
