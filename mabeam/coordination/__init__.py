"""MABEAM coordination: sessions and primitives that talk to real agents.

Every coordination session (consensus, Byzantine, collusion-resistant,
iterative refinement, hierarchical) is state held by one of a few
long-lived session hosts, the partitions of the
``mabeam.coordination.hosts`` partition supervisor (:func:`child_specs`),
not a process of its own; it asks the agents through the Agent wire
protocol (one asynchronous request per agent to its ``handle_vote``,
``handle_proposal`` or ``handle_coordination`` hook, or ``run`` for a
cluster representative, the answers taken as they arrive) and computes
results with the pure tallies of :mod:`.voting`.  A consensus decides
nothing unless more than half of the agents asked voted, unless the caller
asks for another quorum.  Many sessions run at once and none waits on
another; a session is dropped when its caller dies; every wait has a
timeout.  A session whose code raises fails alone
(:class:`SessionCrashed`); one whose host is killed fails at once
(:class:`SessionHostDown`), and new sessions go to the live hosts.
Nothing is simulated: every vote is what an agent's process answered.

Primitives (lock, barrier, counter, leader election) are named
:class:`otp.Service` processes under the ``mabeam.coordination`` dynamic
supervisor, created on demand without check-then-register races; their
waiters get deferred answers and are monitored, and a lock or barrier
never counts a party whose death is known when it decides (its ``DOWN``
already queued, or the kernel already killing it).  An election asks its
candidates itself, as a session host does: no process per election.

Every blocking call has an ``_async`` twin or a timeout; the ``*_async``
functions return a :class:`Session` whose ``result(timeout)`` collects the
answer, so one process can run several sessions at once.

Pure modules (no processes): :mod:`.voting` (tallies) and
:mod:`.vector_clock` (causal order).  Every error derives from
:class:`CoordinationError`, a :class:`mabeam._errors.MabeamError`.

Naming.  A function that talks to a MABEAM process is named verb_noun,
or a bare verb when its object is its first argument (``create_auction``,
``get_budget``, ``list_agents``, ``acquire(lock)``, ``publish(topic,
...)``); a pure function is named for what it computes (``jaccard``,
``tier``, ``agent_name``); a predicate is ``is_x`` or ``has_x``.
"""

from __future__ import annotations

from . import vector_clock, voting
from ._barrier import arrive, create_barrier, get_barrier_info
from ._consensus import (
    BYZANTINE_TAGS,
    METHODS,
    ConsensusResult,
    run_byzantine_consensus,
    run_byzantine_consensus_async,
    run_collusion_resistant_consensus,
    run_consensus,
    run_consensus_async,
)
from ._counter import compare_and_set_counter, create_counter, get_counter_value, increment_counter, reset_counter
from ._election import Leadership, await_new_term, election_topic, get_election_info, get_leader, start_election
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
    SessionCrashed,
    SessionFailed,
    SessionHostDown,
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
    represent,
    run_hierarchical_consensus,
    run_hierarchical_consensus_async,
)
from ._host import child_specs
from ._lock import acquire, create_lock, get_lock_info, hold_lock, release
from ._pbft import (
    PBFT_TAGS,
    PbftCall,
    PbftError,
    PbftQuorumUnavailable,
    PbftResult,
    PbftTimeout,
    run_pbft,
    run_pbft_async,
)
from ._primitives import stop_primitive
from ._refinement import (
    RefinementResult,
    RefinementRound,
    agreement,
    jaccard,
    run_iterative_refinement,
    run_iterative_refinement_async,
)
from ._session import Session, SessionInfo, list_sessions
from .vector_clock import InvalidClock, Ordering, VectorClockError, concurrent, happened_before, normalize
from .vector_clock import compare as compare_clocks
from .vector_clock import increment as increment_clock
from .vector_clock import merge as merge_clocks
from .vector_clock import new_clock as new_vector_clock
from .voting import InsufficientAgents, VotingError

__all__ = [
    # sessions
    "Session",
    "SessionInfo",
    "list_sessions",
    "child_specs",
    "run_consensus",
    "run_consensus_async",
    "run_byzantine_consensus",
    "run_byzantine_consensus_async",
    "run_collusion_resistant_consensus",
    "run_iterative_refinement",
    "run_iterative_refinement_async",
    "run_hierarchical_consensus",
    "run_hierarchical_consensus_async",
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
    "start_election",
    "get_leader",
    "await_new_term",
    "get_election_info",
    "election_topic",
    "Leadership",
    "create_barrier",
    "arrive",
    "get_barrier_info",
    "create_lock",
    "acquire",
    "release",
    "hold_lock",
    "get_lock_info",
    "create_counter",
    "increment_counter",
    "get_counter_value",
    "compare_and_set_counter",
    "reset_counter",
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
    "SessionCrashed",
    "SessionHostDown",
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
    # Byzantine agreement among the agents
    "run_pbft",
    "run_pbft_async",
    "PbftResult",
    "PbftCall",
    "PBFT_TAGS",
    "PbftError",
    "PbftTimeout",
    "PbftQuorumUnavailable",
]
