"""MABEAM coordination: sessions and primitives that talk to real agents.

Every coordination session (consensus, Byzantine, collusion-resistant,
iterative refinement, hierarchical) is its own OS process under the
``mabeam.coordination`` dynamic supervisor (``restart='temporary'``); it
asks the agents through the Agent wire protocol (concurrent calls to their
``handle_vote``, ``handle_proposal``, ``handle_coordination``,
``represent`` hooks) and computes results with :mod:`mabeam.rules`.  Many
sessions run at once and none waits on another; a session stops when its
caller dies; every wait has a timeout.  The seed simulated all of this with
``Enum.random`` and hard-coded outcomes (inventory §1.B.8); nothing here is
simulated.

Primitives (lock, barrier, counter, leader election) are named gen_servers
under the same supervisor, created on demand without check-then-register
races; their waiters get deferred replies and are monitored.

Every blocking call has an ``_async`` twin or a timeout; the ``*_async``
functions return a :class:`Session` whose ``result(timeout)`` collects the
answer, so one process can run several sessions at once.
"""

from __future__ import annotations

from mabeam.rules.vector_clock import (
    InvalidClock,
    Ordering,
    VectorClockError,
    concurrent,
    happened_before,
    normalize,
)
from mabeam.rules.vector_clock import compare as compare_clocks
from mabeam.rules.vector_clock import increment as increment_clock
from mabeam.rules.vector_clock import merge as merge_clocks
from mabeam.rules.vector_clock import new_clock as new_vector_clock
from mabeam.rules.voting import InsufficientAgents

from ._barrier import BarrierTimeout, arrive, barrier, barrier_info
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
from ._election import NoLeader, await_new_term, election, election_info, election_topic, leader
from ._hierarchy import (
    MIN_HIERARCHY_AGENTS,
    ClusterResult,
    Failover,
    HierarchicalResult,
    InsufficientAgentsForHierarchy,
    build_hierarchy,
    count_representatives,
    hierarchical_consensus,
    hierarchical_consensus_async,
)
from ._lock import LockTimeout, acquire, lock, lock_held, lock_info, release
from ._primitives import (
    PrimitiveError,
    UnknownPrimitive,
    counter,
    counter_compare_and_set,
    counter_increment,
    counter_reset,
    counter_value,
    stop_primitive,
)
from ._refinement import (
    RefinementResult,
    RefinementRound,
    agreement,
    iterative_refinement,
    iterative_refinement_async,
    jaccard,
)
from ._session import CoordinationError, InvalidParameter, Session, SessionFailed, SessionTimeout, active_sessions

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
    # primitives
    "election",
    "leader",
    "await_new_term",
    "election_info",
    "election_topic",
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
    # vector clocks (pure, from mabeam.rules.vector_clock)
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
    "InsufficientAgents",
    "InsufficientAgentsForHierarchy",
    "PrimitiveError",
    "UnknownPrimitive",
    "LockTimeout",
    "BarrierTimeout",
    "NoLeader",
    "VectorClockError",
    "InvalidClock",
]
