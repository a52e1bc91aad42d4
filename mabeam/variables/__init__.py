"""Universal variables: named values shared by every process, with
versions, optimistic concurrency, history, subscribers and consensus
updates voted by agents.

Naming.  A function that talks to a MABEAM process is named verb_noun,
or a bare verb when its object is its first argument (``create_auction``,
``get_budget``, ``list_agents``, ``acquire(lock)``, ``publish(topic,
...)``); a pure function is named for what it computes (``jaccard``,
``tier``, ``agent_name``); a predicate is ``is_x`` or ``has_x``.

Writes go through one owner, the ``mabeam.variables`` server; reads do not:
:func:`get_variable` is served from the caller's own replica of the tables
registry, so reads never queue behind writes or pending votes.  Reads by
others are eventually consistent (fresh within about a millisecond plus
delivery); a process always reads its own writes.

Optimistic concurrency.  ``update_variable(..., expected_version=v)`` is
applied only if the variable's version is still ``v``; otherwise it raises
:class:`VersionConflict` carrying the current version.  Without
``expected_version`` the update is last-write-wins.

Consensus.  A variable registered with ``conflict_resolution='consensus'``
and ``voters`` (agent ids) changes only if a strict majority of its voters
approve (a vote in :data:`APPROVALS`; an abstention, an error or a timeout
counts against).  The proposal an agent's ``handle_vote`` sees is a dict
with ``variable``, ``value``, ``current_value``, ``version`` and
``modifier``.

Subscribers are monitored.  History is bounded (``history_limit`` entries
per variable, 100 by default).  Variables live in the server: if it is
restarted they are gone, and their published entries with it.

``_model`` is pure (errors, records, the vote rule); ``_server`` is the
process; ``_client`` holds the functions other processes call.
:func:`child_spec` is the server's spec; the application lists it
(:mod:`mabeam._app`), after the tables registry it publishes into.
"""

from __future__ import annotations

from ._client import (
    delete_variable,
    get_variable,
    get_variable_history,
    get_variable_info,
    list_variables,
    register_variable,
    subscribe_variable,
    unsubscribe_variable,
    update_variable,
)
from ._model import (
    APPROVALS,
    ConflictResolution,
    HistoryEntry,
    InvalidVariable,
    UpdateRejected,
    VariableError,
    VariableExists,
    VariableInfo,
    VariableNotFound,
    VersionConflict,
    VoteFailed,
    approves,
)
from ._server import VARIABLES, Notice, VariableServer, child_spec

__all__ = [
    "VARIABLES",
    "VariableServer",
    "child_spec",
    "register_variable",
    "get_variable",
    "update_variable",
    "delete_variable",
    "list_variables",
    "get_variable_info",
    "get_variable_history",
    "subscribe_variable",
    "unsubscribe_variable",
    "ConflictResolution",
    "HistoryEntry",
    "VariableInfo",
    "Notice",
    "APPROVALS",
    "approves",
    "VariableError",
    "VariableNotFound",
    "VariableExists",
    "InvalidVariable",
    "VersionConflict",
    "UpdateRejected",
    "VoteFailed",
]
