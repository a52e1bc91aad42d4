"""Pure rules of MABEAM's economics and coordination: no processes, no I/O, no hidden randomness.

Each submodule is a small set of functions over frozen data, so the process
layer (auction, market, coordination actors) only moves messages and state
while every decision is computed here and tested in isolation:

* :mod:`~mabeam.rules.auctions`: English, Dutch, first-price, Vickrey, combinatorial (VCG), efficiency;
* :mod:`~mabeam.rules.orderbook`: continuous double auction with price-time priority;
* :mod:`~mabeam.rules.reputation`: recency-weighted reputation with anti-gaming checks;
* :mod:`~mabeam.rules.budgets`: reserve / commit / release without double spending;
* :mod:`~mabeam.rules.voting`: majority, unanimity, weighted, Byzantine and collusion-resistant tallies;
* :mod:`~mabeam.rules.vector_clock`: causal ordering of events.

Each module has its own error base class (``AuctionError``, ``OrderBookError``,
``ReputationError``, ``BudgetError``, ``VotingError``, ``VectorClockError``),
all subclasses of :class:`ValueError`; :data:`RULES_ERRORS` lists them for a
single ``except RULES_ERRORS:``.
"""

from __future__ import annotations

from mabeam.rules import auctions, budgets, orderbook, reputation, vector_clock, voting
from mabeam.rules.auctions import (
    DEFAULT_BID_INCREMENT,
    MAX_COMBINATORIAL_BIDS,
    AuctionClosed,
    AuctionError,
    AuctionResult,
    Bid,
    BidTooLow,
    BundleBid,
    CombinatorialResult,
    DuplicateBidder,
    EnglishState,
    InvalidAuctionParameter,
    InvalidBid,
    TooManyBids,
    clear_combinatorial,
    clear_dutch,
    clear_dutch_sealed,
    clear_english,
    clear_first_price,
    clear_vickrey,
    close_english,
    efficiency,
    optimal_allocation,
    place_bid,
    validate_bid,
)
from mabeam.rules.budgets import (
    Amount,
    Budget,
    BudgetError,
    CommitExceedsReservation,
    DuplicateReservation,
    ExceedsTaskLimit,
    InsufficientFunds,
    InvalidAmount,
    ReservationSettled,
    UnknownReservation,
    can_afford,
    commit,
    deposit,
    new_budget,
    release,
    reserve,
)
from mabeam.rules.orderbook import (
    BUY,
    SELL,
    DuplicateOrderId,
    InvalidOrder,
    Order,
    OrderBook,
    OrderBookError,
    Side,
    Trade,
    UnknownOrder,
)
from mabeam.rules.reputation import (
    DEFAULT_SCORE,
    HISTORY_LIMIT,
    RECENCY_WEIGHT,
    SUSPICIOUS_COMPLETION_MS,
    VIOLATION_PENALTIES,
    DuplicateRecord,
    ImplausibleRecord,
    InvalidRecord,
    PerformanceRecord,
    Reputation,
    ReputationError,
    apply_decay,
    apply_penalty,
    check_record,
    new_reputation,
    rankings,
    record_outcome,
    reputation_score,
    score_of,
    weighted_score,
)
from mabeam.rules.vector_clock import (
    InvalidClock,
    Ordering,
    VectorClockError,
    compare,
    concurrent,
    happened_before,
    increment,
    merge,
    new_clock,
    normalize,
)
from mabeam.rules.voting import (
    APPROVE,
    EXPERTISE_FACTORS,
    NEUTRAL,
    NO_DECISION,
    REJECT,
    STRONG_APPROVE,
    WEIGHT_CAP,
    ByzantineTally,
    CollusionResult,
    ConsensusReport,
    DuplicateVote,
    InsufficientAgents,
    InvalidVote,
    InvalidVotingParameter,
    PaymentStructure,
    QuorumNotMet,
    Tally,
    TooManyVotes,
    UnknownVoter,
    VotingError,
    WeightedTally,
    WeightedVote,
    byzantine_quorum,
    byzantine_tally,
    cap_weight_shares,
    entropy,
    expertise_weight,
    gini,
    majority_tally,
    max_faults,
    min_agents,
    quorum_met,
    require_quorum,
    resolve_collusion_resistant_consensus,
    suspected_colluders,
    unanimous_tally,
    vote_value,
    weighted_tally,
)

RULES_ERRORS: tuple[type[ValueError], ...] = (
    auctions.AuctionError,
    orderbook.OrderBookError,
    reputation.ReputationError,
    budgets.BudgetError,
    voting.VotingError,
    vector_clock.VectorClockError,
)
"""Every error base of the rules, for ``except RULES_ERRORS``."""

__all__ = [
    "auctions", "orderbook", "reputation", "budgets", "voting", "vector_clock", "RULES_ERRORS",
    "MAX_COMBINATORIAL_BIDS", "DEFAULT_BID_INCREMENT", "AuctionError", "InvalidBid", "InvalidAuctionParameter",
    "BidTooLow", "AuctionClosed", "DuplicateBidder", "TooManyBids", "Bid", "BundleBid", "AuctionResult",
    "CombinatorialResult", "EnglishState", "validate_bid", "place_bid", "close_english", "clear_english",
    "clear_dutch", "clear_dutch_sealed", "clear_first_price", "clear_vickrey", "optimal_allocation",
    "clear_combinatorial", "efficiency", "BUY", "SELL", "Side", "OrderBookError", "InvalidOrder",
    "DuplicateOrderId", "UnknownOrder", "Order", "Trade", "OrderBook", "DEFAULT_SCORE", "RECENCY_WEIGHT",
    "HISTORY_LIMIT", "SUSPICIOUS_COMPLETION_MS", "VIOLATION_PENALTIES", "ReputationError", "InvalidRecord",
    "DuplicateRecord", "ImplausibleRecord", "PerformanceRecord", "Reputation", "new_reputation", "check_record",
    "record_outcome", "weighted_score", "reputation_score", "score_of", "apply_decay", "apply_penalty",
    "rankings", "Amount", "BudgetError", "InvalidAmount", "InsufficientFunds", "ExceedsTaskLimit",
    "DuplicateReservation", "UnknownReservation", "ReservationSettled", "CommitExceedsReservation", "Budget",
    "new_budget", "can_afford", "deposit", "reserve", "commit", "release", "VotingError",
    "InvalidVotingParameter", "InvalidVote", "DuplicateVote", "UnknownVoter", "QuorumNotMet",
    "InsufficientAgents", "TooManyVotes", "quorum_met", "require_quorum", "Tally", "majority_tally",
    "unanimous_tally", "EXPERTISE_FACTORS", "WEIGHT_CAP", "STRONG_APPROVE", "APPROVE", "NEUTRAL", "REJECT",
    "NO_DECISION", "vote_value", "expertise_weight", "cap_weight_shares", "gini", "entropy", "WeightedVote",
    "WeightedTally", "weighted_tally", "min_agents", "max_faults", "byzantine_quorum", "ByzantineTally",
    "byzantine_tally", "ConsensusReport", "PaymentStructure", "CollusionResult", "suspected_colluders",
    "resolve_collusion_resistant_consensus", "VectorClockError", "InvalidClock", "Ordering", "new_clock",
    "increment", "merge", "compare", "happened_before", "concurrent", "normalize",
]
