"""MABEAM economics: auctions, a continuous double-auction market, budgets
and reputation, run by a few processes of the application's tree.

Design
------

* **Auctions and markets are state in a few host processes.**
  :func:`create_auction` and :func:`create_market` place the new item on
  one of a few long-lived *economics hosts* (``otp.Service`` processes,
  one per core and at least 2, the partitions of the partition supervisor
  ``mabeam.economics.hosts``), chosen by the item's id (the next live host
  while that one restarts).  An OS process costs megabytes and
  milliseconds to start; an item in a host costs kilobytes and a message.
  A host is the only owner of its items' bids and order books, and runs
  each item's code one message at a time, so items never wait on one
  another: a driven auction asks its participant agents (their
  ``handle_bid`` / ``handle_offer`` hooks, each answering from its own OS
  process) with asynchronous requests, one per agent, and an ``otp`` timer
  for ``bid_timeout``; the answers arrive as messages and the round goes
  on when all are in or the timer fired (an agent that dies or times out
  is recorded in ``not_bidding`` and never blocks the others).  One round
  per message the host sends itself, so explicit bids, ``close``, reads and
  the other items' work are served between rounds.  Every price and
  payment is computed by the pure rule modules of this package (below).

* **Faults stay with their item, or their host.**  An exception in one
  auction's or market's code (its mechanism, the rules it called) fails
  that item alone: its callers and result waiters get
  :class:`AuctionCrashed` / :class:`MarketCrashed`, with the ``otp.Crash``
  (logged with its traceback); the host and its other items go on.  A
  host that dies (SIGKILL) takes its own items with it: a ``run``,
  ``close`` or any call in flight raises :class:`AuctionLost` /
  :class:`MarketLost` at once, :func:`await_auction_result` too (it
  monitors the host); the partition supervisor restarts the host, empty,
  and new items go to the live hosts meanwhile.

* **A bid or order stands while its bidder lives.**  When the bidder (or
  trader) is an agent, the auction or market monitors the agent's process;
  if it exits, its bids are withdrawn (``AuctionOutcome.withdrawn``) and its
  resting orders leave the book (``MarketOutcome.withdrawn``, holds
  released).  An auction checks its winners once more when it clears: a
  dead winner's bids are withdrawn and the next standing bid wins, or the
  auction fails with :class:`BiddersExited`.  A bidder id that names no
  agent has no process to watch: its bids stand on their own.

* **CQRS reads.**  Writes (bids, orders, cancels, budget and reputation
  changes) go to the owning process (an item's host, the budget or
  reputation service).  Reads never do: every owner publishes a plain
  snapshot of its public state, with a sequence number, into the economics
  board ``mabeam.economics.board`` (a keyed registry, unique keys; a host
  writes its items' snapshots in batches), and :func:`get_auction_state`,
  :func:`get_market_state`, :func:`get_budget`, :func:`get_reputation` read
  it from the caller's own replica of the board, so a read answers at once
  even while an auction waits on slow bidders.  A read after one's own
  write sees that write.

* **What is in memory.**  Bids, order books, trades, budgets and
  reputations live in the memory of their owning process only (the board
  holds snapshots, dropped when their owner exits).  A closed auction or
  market stays readable ``linger`` seconds (a finite number; a host keeps
  at most ``MAX_LINGERING`` closed items, the oldest leave first), then
  leaves its host; the budget and reputation services
  (``mabeam.budgets``, ``mabeam.reputation``, permanent children of
  ``mabeam.sup``) and the hosts restart empty after a crash.

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
board first: every other economics process writes to it; the hosts last:
they read reputations and write budgets); the application lists them
(:mod:`mabeam._app`).
"""

from __future__ import annotations

import otp

from . import _budget_server, _host, _reputation_server, auctions, budgets, orderbook, reputation
from ._auction_api import (
    AuctionRef,
    await_auction_result,
    close,
    create_auction,
    create_auction_async,
    get_auction_result_async,
    get_auction_state,
    list_auctions,
    place_bid,
    run,
)
from ._auction_data import (
    AUCTIONS_TOPIC,
    AuctionOutcome,
    DuplicateAuction,
    IneligibleBidder,
    UnknownAuction,
    auction_topic,
)
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
from ._errors import AuctionCrashed, AuctionLost, BiddersExited, EconomicsError, MarketCrashed, MarketLost, NotStarted
from ._host import HOSTS, MAX_LINGERING
from ._market import (
    MARKETS_TOPIC,
    DuplicateMarket,
    InvalidMarketParameter,
    MarketClosed,
    MarketOutcome,
    NotOrderOwner,
    OrderResult,
    UnknownMarket,
    market_topic,
)
from ._market_api import (
    MarketRef,
    cancel_order,
    close_market,
    create_market,
    get_market_state,
    list_market_trades,
    list_markets,
    submit_order,
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
    "HOSTS",
    "MAX_LINGERING",
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
    "await_auction_result",
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
    "AuctionCrashed",
    "AuctionLost",
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
    "MarketCrashed",
    "MarketLost",
    "InvalidMarketParameter",
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
    """The economics processes' child specs, in start order: the board
    (every other economics process writes to it), reputation, budgets, and
    the hosts of auctions and markets (a partition supervisor,
    ``mabeam.economics.hosts``)."""
    return [
        otp.Registry.child_spec(keys="unique", name=BOARD, id=BOARD),
        _reputation_server.child_spec(),
        _budget_server.child_spec(),
        _host.child_spec(),
    ]
