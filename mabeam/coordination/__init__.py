"""MABEAM coordination: sessions and primitives that talk to real agents.

Every coordination session (consensus, Byzantine, collusion-resistant,
iterative refinement, hierarchical) is its own OS process under the
``mabeam.coordination`` dynamic supervisor (``restart='temporary'``); it
asks the agents through the Agent wire protocol (concurrent calls to their
``handle_vote``, ``handle_proposal`` and ``handle_coordination`` hooks, and
``run`` for a cluster representative) and computes results with the pure
tallies of :mod:`.voting`.  Many sessions run at once and none waits on
another; a session stops when its caller dies; every wait has a timeout.
Nothing is simulated: every vote is what an agent's process answered.

Primitives (lock, barrier, counter, leader election) are named
:class:`otp.Service` processes under the same supervisor, created on demand
without check-then-register races; their waiters get deferred answers and
are monitored.

Every blocking call has an ``_async`` twin or a timeout; the ``*_async``
functions return a :class:`Session` whose ``result(timeout)`` collects the
answer, so one process can run several sessions at once.

Pure modules (no processes): :mod:`.voting` (tallies) and
:mod:`.vector_clock` (causal order).  Every error derives from
:class:`CoordinationError`, a :class:`mabeam._errors.MabeamError`.
"""

from __future__ import annotations

from . import vector_clock, voting
from ._barrier import arrive, barrier, barrier_info
from ._consensus import (
    BYZANTINE_TAGS,
    METHODS,
    ConsensusResult,
    byzantine_consensus,
    byzantine_consensus_async,
    collusion_resistant_consensus,
    consensus,
    consensus_async,
)
from ._counter import counter, counter_compare_and_set, counter_increment, counter_reset, counter_value
from ._election import Leadership, await_new_term, election, election_info, election_topic, leader
from ._errors import (
    AlreadyHeld,
    BarrierTimeout,
    CoordinationError,
    InsufficientAgentsForHierarchy,
    InvalidParameter,
    LockTimeout,
    NoLeader,
    NotHolder,
    PrimitiveError,
    PrimitiveFailed,
    ResultTaken,
    SessionFailed,
    SessionTimeout,
    UnknownPrimitive,
    UnsendableResult,
)
from ._hierarchy import (
    MIN_HIERARCHY_AGENTS,
    ClusterResult,
    Failover,
    HierarchicalResult,
    build_hierarchy,
    count_representatives,
    hierarchical_consensus,
    hierarchical_consensus_async,
    represent,
)
from ._lock import acquire, lock, lock_held, lock_info, release
from ._primitives import stop_primitive
from ._refinement import (
    RefinementResult,
    RefinementRound,
    agreement,
    iterative_refinement,
    iterative_refinement_async,
    jaccard,
)
from ._session import Session, active_sessions
from .vector_clock import InvalidClock, Ordering, VectorClockError, concurrent, happened_before, normalize
from .vector_clock import compare as compare_clocks
from .vector_clock import increment as increment_clock
from .vector_clock import merge as merge_clocks
from .vector_clock import new_clock as new_vector_clock
from .voting import InsufficientAgents, VotingError

__all__ = [
    # sessions
    "Session",
    "active_sessions",
    "consensus",
    "consensus_async",
    "byzantine_consensus",
    "byzantine_consensus_async",
    "collusion_resistant_consensus",
    "iterative_refinement",
    "iterative_refinement_async",
    "hierarchical_consensus",
    "hierarchical_consensus_async",
    "build_hierarchy",
    "count_representatives",
    "agreement",
    "jaccard",
    "ConsensusResult",
    "RefinementResult",
    "RefinementRound",
    "HierarchicalResult",
    "ClusterResult",
    "Failover",
    "METHODS",
    "BYZANTINE_TAGS",
    "MIN_HIERARCHY_AGENTS",
    "represent",
    # primitives
    "election",
    "leader",
    "await_new_term",
    "election_info",
    "election_topic",
    "Leadership",
    "barrier",
    "arrive",
    "barrier_info",
    "lock",
    "acquire",
    "release",
    "lock_held",
    "lock_info",
    "counter",
    "counter_increment",
    "counter_value",
    "counter_compare_and_set",
    "counter_reset",
    "stop_primitive",
    # the pure modules
    "voting",
    "vector_clock",
    # vector clocks (from .vector_clock)
    "new_vector_clock",
    "increment_clock",
    "merge_clocks",
    "compare_clocks",
    "happened_before",
    "concurrent",
    "normalize",
    "Ordering",
    # errors
    "CoordinationError",
    "InvalidParameter",
    "SessionFailed",
    "SessionTimeout",
    "ResultTaken",
    "UnsendableResult",
    "InsufficientAgents",
    "InsufficientAgentsForHierarchy",
    "PrimitiveError",
    "UnknownPrimitive",
    "PrimitiveFailed",
    "AlreadyHeld",
    "NotHolder",
    "LockTimeout",
    "BarrierTimeout",
    "NoLeader",
    "VotingError",
    "VectorClockError",
    "InvalidClock",
]
