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
  concurrent calls to their ``handle_bid`` / ``handle_offer`` hooks
  (asynchronous requests, one per agent, answers taken as they arrive; each
  agent answers from its own OS process, with a timeout; an agent that dies
  or times out is recorded in ``not_bidding`` and never blocks the others),
  one round per message the auction sends itself, so explicit bids,
  ``close`` and reads are served between rounds.  Every price and payment is
  computed by the pure rule modules of this package (below).

* **A bid or order stands while its bidder lives.**  When the bidder (or
  trader) is an agent, the auction or market monitors the agent's process;
  if it exits, its bids are withdrawn (``AuctionOutcome.withdrawn``) and its
  resting orders leave the book (``MarketOutcome.withdrawn``, holds
  released).  An auction checks its winners once more when it clears: a
  dead winner's bids are withdrawn and the next standing bid wins, or the
  auction fails with :class:`BiddersExited`.  A bidder id that names no
  agent has no process to watch: its bids stand on their own.

* **CQRS reads.**  Writes (bids, orders, cancels, budget and reputation
  changes) go to the owning process.  Reads never do: every owner publishes
  a plain snapshot of its public state, with a sequence number, into the
  economics board ``mabeam.economics.board`` (a keyed registry, unique
  keys), and :func:`get_auction_state`, :func:`get_market_state`,
  :func:`get_budget`, :func:`get_reputation` read it from the caller's own
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
  process detected them.  Every one derives from :class:`EconomicsError`
  (a ``mabeam._errors.MabeamError``).

* **Pure rules.**  The public submodules :mod:`~mabeam.economics.auctions`
  (English, Dutch, first-price, Vickrey, combinatorial VCG, efficiency),
  :mod:`~mabeam.economics.orderbook` (continuous double auction with
  price-time priority), :mod:`~mabeam.economics.budgets` (reserve / commit
  / release without double spending) and
  :mod:`~mabeam.economics.reputation` (recency-weighted reputation with
  anti-gaming checks) are functions over frozen data: no processes, no I/O.

Naming.  A function that talks to a MABEAM process is named verb_noun,
or a bare verb when its object is its first argument (``create_auction``,
``get_budget``, ``list_agents``, ``acquire(lock)``, ``publish(topic,
...)``); a pure function is named for what it computes (``jaccard``,
``tier``, ``agent_name``); a predicate is ``is_x`` or ``has_x``.

:func:`child_specs` are its long-lived processes, in start order (the
board first: every other economics process writes to it); the application
lists them (:mod:`mabeam._app`).
"""

from __future__ import annotations

import otp

from . import _budget_server, _reputation_server, auctions, budgets, orderbook, reputation
from ._auction_api import (
    AuctionRef,
    UnknownAuction,
    close,
    create_auction,
    create_auction_async,
    get_auction_result_async,
    get_auction_state,
    list_auctions,
    place_bid,
    run,
)
from ._auction_server import AUCTIONS_TOPIC, AuctionOutcome, DuplicateAuction, IneligibleBidder, auction_topic
from ._board import BOARD
from ._budget_api import (
    InvalidBudgetStep,
    apply_budget_batch,
    commit_funds,
    deposit_funds,
    get_budget,
    open_budget,
    release_funds,
    reserve_funds,
    to_money,
)
from ._budget_server import BUDGETS, BudgetSnapshot, DuplicateBudget, UnknownBudget
from ._errors import BiddersExited, EconomicsError, NotStarted
from ._market_api import (
    MarketRef,
    UnknownMarket,
    cancel_order,
    close_market,
    create_market,
    get_market_state,
    list_market_trades,
    list_markets,
    submit_order,
)
from ._market_server import (
    MARKETS_TOPIC,
    DuplicateMarket,
    MarketClosed,
    MarketOutcome,
    NotOrderOwner,
    OrderResult,
    market_topic,
)
from ._mechanisms import KINDS
from ._reputation_api import (
    decay_reputation,
    get_reputation,
    get_reputation_info,
    init_reputation,
    list_reputation_rankings,
    penalize,
    record_performance,
)
from ._reputation_server import REPUTATION, ReputationSnapshot
from .auctions import (
    AuctionClosed,
    AuctionError,
    BidTooLow,
    DuplicateBidder,
    InvalidAuctionParameter,
    InvalidBid,
    TooManyBids,
)
from .budgets import (
    BudgetError,
    CommitExceedsReservation,
    DuplicateReservation,
    ExceedsTaskLimit,
    InsufficientFunds,
    InvalidAmount,
    ReservationSettled,
    UnknownReservation,
)
from .orderbook import BUY, SELL, DuplicateOrderId, InvalidOrder, OrderBookError, Trade, UnknownOrder
from .reputation import DuplicateRecord, ImplausibleRecord, InvalidRecord, ReputationError

__all__ = [
    "child_specs",
    # the pure rules
    "auctions",
    "budgets",
    "orderbook",
    "reputation",
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
    "get_auction_result_async",
    "get_auction_state",
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
    "get_market_state",
    "list_market_trades",
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
    "apply_budget_batch",
    "get_budget",
    # reputation
    "ReputationSnapshot",
    "init_reputation",
    "record_performance",
    "get_reputation",
    "get_reputation_info",
    "decay_reputation",
    "penalize",
    "list_reputation_rankings",
    # errors
    "EconomicsError",
    "NotStarted",
    "UnknownAuction",
    "DuplicateAuction",
    "BiddersExited",
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
    "InvalidBudgetStep",
    "UnknownBudget",
    "DuplicateBudget",
    "ReputationError",
    "InvalidRecord",
    "DuplicateRecord",
    "ImplausibleRecord",
]


def child_specs() -> list[otp.ChildSpec]:
    """The economics services' child specs, in start order: the board (every
    other economics process writes to it), reputation, budgets."""
    return [
        otp.Registry.child_spec(keys="unique", name=BOARD, id=BOARD),
        _reputation_server.child_spec(),
        _budget_server.child_spec(),
    ]
