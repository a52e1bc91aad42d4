"""The universal variables' client functions (run in the caller's process).

Reads look the variable up in the caller's replica of the tables registry;
each process remembers the version its own updates produced, and a replica
that has not caught up with it yet (or lacks the key) makes the read ask
the server instead (read-your-writes).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Any

import otp

from .._common import TABLES
from ._model import ConflictResolution, HistoryEntry, VariableInfo
from ._server import VARIABLES

__all__ = [
    "register_variable",
    "get_variable",
    "update_variable",
    "delete_variable",
    "list_variables",
    "get_variable_info",
    "get_variable_history",
    "subscribe_variable",
    "unsubscribe_variable",
]

#: (caller uid, name) -> the version the caller's own last update produced.
_written: OrderedDict[tuple[Any, Hashable], int] = OrderedDict()
_WRITTEN_MAX = 10_000


def _note_write(name: Hashable, version: int) -> None:
    key = (otp.self().uid, name)
    _written[key] = version
    _written.move_to_end(key)
    while len(_written) > _WRITTEN_MAX:
        _written.popitem(last=False)


def register_variable(
    name: Hashable,
    value: Any,
    conflict_resolution: str = "last_write_wins",
    voters: Iterable[Hashable] | None = None,
    *,
    modifier: Any = None,
    history_limit: int = 100,
    vote_timeout: float = 5.0,
) -> int:
    """Create a variable at version 1.  ``conflict_resolution`` is
    'last_write_wins' or 'consensus' (then ``voters``, agent ids, decide each
    update by strict majority).  Raises ``VariableExists``, or
    ``InvalidVariable`` (a ``ValueError``) for a consensus variable without
    voters; ``ValueError`` for an unknown mode."""
    mode = ConflictResolution(conflict_resolution)
    version: int = otp.ask(
        VARIABLES, "register_variable", name, value, mode, tuple(voters or ()), history_limit, vote_timeout, modifier
    )
    _note_write(name, version)
    return version


def get_variable(name: Hashable) -> tuple[Any, int]:
    """``(value, version)``, read from the caller's replica of the tables
    registry; raises ``VariableNotFound``."""
    rows = otp.Registry.lookup(TABLES, ("var", name))
    if rows:
        value, version = rows[0][1]
        if version >= _written.get((otp.self().uid, name), 0):
            return value, version
    return otp.ask(VARIABLES, "get_variable", name)


def update_variable(
    name: Hashable,
    value: Any,
    modifier: Any = None,
    expected_version: int | None = None,
    timeout: float | None = 30.0,
) -> int:
    """Set the variable; returns its new version.  With ``expected_version``
    the update applies only if the variable is still at that version.
    Raises ``VersionConflict``, ``UpdateRejected`` or ``VoteFailed``
    (consensus) or ``VariableNotFound``."""
    version: int = otp.ask(VARIABLES, "update_variable", name, value, modifier, expected_version, timeout=timeout)
    _note_write(name, version)
    return version


def delete_variable(name: Hashable) -> bool:
    """Delete the variable (subscribers are told); False if there was none."""
    return otp.ask(VARIABLES, "delete_variable", name)


def list_variables() -> list[Hashable]:
    """The names of the variables."""
    return otp.ask(VARIABLES, "list_variables")


def get_variable_info(name: Hashable) -> VariableInfo:
    """Version, last modifier, mode, voters, live subscribers, pending updates."""
    return otp.ask(VARIABLES, "get_variable_info", name)


def get_variable_history(name: Hashable) -> list[HistoryEntry]:
    """The last ``history_limit`` :class:`HistoryEntry` items, oldest first."""
    return otp.ask(VARIABLES, "get_variable_history", name)


def subscribe_variable(name: Hashable) -> tuple[Any, int]:
    """Receive ``('$variable', name, value, version)`` on every change (value
    and version None when deleted); the caller is monitored.  Returns the
    current ``(value, version)``."""
    return otp.ask(VARIABLES, "subscribe_variable", name, otp.self())


def unsubscribe_variable(name: Hashable) -> None:
    """Stop receiving the variable's changes."""
    otp.ask(VARIABLES, "unsubscribe_variable", name, otp.self())
