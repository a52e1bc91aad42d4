"""Process groups (OTP's ``pg``): ``join``, ``leave``, ``get_members``,
``get_local_members``, ``which_groups``, ``which_local_groups``,
``monitor_scope``, ``monitor``, ``demonitor``, in scopes, across nodes.

A group is a str, int, bytes or tuple of those, like a process name (OTP
allows any term; here a group holding another object raises
``otp.registry.InvalidKey``, because its ``__hash__`` and ``__eq__`` would
run inside the registry process).  A process may join a group several
times and leaves as many times; members leave automatically when they exit.
Reads come from the caller's replica once it reads often.

Scopes.  A scope is an independent group namespace served by its own
process.  Every function takes ``scope=``: None (the default) is the
node's default scope, served by the node's name registry, which the node
starts; :func:`start_link` starts another one (a registry process, the
machinery of ``otp.Registry``) and registers it under the scope's name,
as OTP's ``pg:start_link(Scope)`` does.  A function given the name of a
scope nobody started raises ``otp.NoProc``.

Monitors.  :func:`monitor_scope` and :func:`monitor` return the current
membership and a ref; the caller then receives :class:`PgJoin` and
:class:`PgLeave` messages (OTP's ``{Ref, join, Group, Pids}`` and ``{Ref,
leave, Group, Pids}``) until :func:`demonitor` or its own exit.  A member
that exits leaves each group once per membership, each a ``PgLeave``.  A
monitor lives as long as the scope's process: monitor the scope (its pid
is ``otp.whereis(scope)``) to learn that it restarted, then monitor again.

Across nodes.  On nodes that listen (``otp.Node(listen=...)``), a scope
spans every connected node that runs a scope of the same name, as OTP's pg:
:func:`get_members`, :func:`which_groups` and monitors see the members of
every node, :func:`get_local_members` and :func:`which_local_groups` this
node's.  Only processes of this node join or leave here
(``otp.registry.PidNotLocal`` otherwise); each scope's distribution process
(:mod:`otp.registry._pg_dist`) tells the other nodes, and a node's members
leave everywhere at its ``nodedown``.  Eventually consistent: another node
sees a join once its message arrives, and after a partition heals the
nodes sync again at ``nodeup``.  A node that does not listen has only its
own members, and no extra process.

Memberships across a restart of the scope's process.  The memberships of
the default scope are persisted by the node registry's backend, as names
are: with the sqlite backend (the node's default) each join and leave is
written through to the registry's file (a ``pg_members`` table, added by
a versioned migration of its schema), and a restarted registry reads them
back, drops those of processes that died meanwhile and watches the others
again.  We chose persistence over having each member join again when the
registry restarts: re-joining would need every member to watch the
registry and act on its death, which a process blocked in its own work
cannot do, and until each member had re-joined, ``get_members`` would
answer with part of the group; the store already survives the crash it is
for (the registry's, not the node's).  With the memory backend, and in a
scope started by :func:`start_link` with the default ``backend="memory"``,
a restart starts empty, as in OTP; ``start_link(scope, backend=("sqlite",
path))`` makes a scope keep its memberships too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import _process
from ._child_spec import ChildSpec
from ._child_spec import child_spec as make_child_spec
from ._pid import Pid, Ref
from .registry._client import DEFAULT_TIMEOUT
from .registry._events import PgEvent, PgJoin, PgLeave
from .registry._names import registry_client, start_named
from .registry._protocol import PgMonitorEnded

__all__ = [
    "start_link",
    "child_spec",
    "join",
    "leave",
    "get_members",
    "get_local_members",
    "which_groups",
    "which_local_groups",
    "monitor_scope",
    "monitor",
    "demonitor",
    "PgJoin",
    "PgLeave",
    "PgEvent",
]


def start_link(scope: Any, backend: Any = "memory") -> Pid:
    """Start the scope ``scope`` (OTP's ``pg:start_link(Scope)``): a
    process linked to the caller, registered under the name ``scope``.
    ``backend``: where it keeps memberships (see the module doc).  A taken
    name raises ``StartError(('already_started', pid))``."""
    if scope is None:
        raise ValueError("a pg scope needs a name (None is the node's default scope)")
    return start_named({"mode": "duplicate", "backend": backend, "pg_scope": True}, scope)


def child_spec(scope: Any, backend: Any = "memory", id: Any = None) -> ChildSpec:  # noqa: A002
    """A child spec that starts the scope ``scope`` under a supervisor."""
    return make_child_spec(id if id is not None else ("pg", scope), (start_link, (scope, backend)))


def _members_arg(pid: Pid | Sequence[Pid] | None) -> Pid | list[Pid]:
    if pid is None:
        return _process.current().pid
    return pid if isinstance(pid, Pid) else list(pid)


def join(group: Any, pid: Pid | Sequence[Pid] | None = None, scope: Any = None) -> None:
    """Add ``pid`` (default: the caller; or each of a list of pids, a pid
    listed twice joining twice) to ``group``; one ``PgJoin`` to monitors.
    ``PidNotAlive`` if one of them is dead, ``PidNotLocal`` if one of them
    runs on another node (then none joins)."""
    registry_client(scope).request("pg_join", group, _members_arg(pid))


def leave(group: Any, pid: Pid | Sequence[Pid] | None = None, scope: Any = None) -> bool:
    """Remove one membership of ``group`` of ``pid`` (default: the caller;
    or of each of a list of pids); False if none of them had one (OTP's
    ``not_joined``)."""
    return registry_client(scope).request("pg_leave", group, _members_arg(pid))


def get_members(group: Any, scope: Any = None) -> list[Pid]:
    """The members of ``group`` (with repeats) on every node, from the
    replica when this process reads often."""
    client = registry_client(scope)
    replica = client.counted_replica()
    if replica is None:
        return client.request("pg_members", group)
    return replica.members(group)


def get_local_members(group: Any, scope: Any = None) -> list[Pid]:
    """The members of ``group`` that run on this node."""
    node = _process.current().node.name
    return [p for p in get_members(group, scope) if p.node == node]


def which_groups(scope: Any = None) -> list[Any]:
    """Every group that has at least one member, on any node."""
    return registry_client(scope).request("pg_groups")


def which_local_groups(scope: Any = None) -> list[Any]:
    """Every group that has at least one member on this node."""
    return registry_client(scope).request("pg_local_groups")


def monitor_scope(scope: Any = None) -> tuple[Ref, dict[Any, list[Pid]]]:
    """``(ref, {group: members})``; from now on the caller receives a
    :class:`PgJoin` or :class:`PgLeave` tagged ``ref`` for every change of
    any group of the scope."""
    return registry_client(scope).request("pg_monitor_scope", _process.current().pid)


def monitor(group: Any, scope: Any = None) -> tuple[Ref, list[Pid]]:
    """``(ref, members)``; from now on the caller receives a
    :class:`PgJoin` or :class:`PgLeave` tagged ``ref`` for every change of
    ``group``."""
    return registry_client(scope).request("pg_monitor", _process.current().pid, group)


def demonitor(ref: Ref, scope: Any = None) -> bool:
    """End the monitor ``ref`` and take its notifications still queued out
    of the caller's mailbox; False if there was no such monitor."""
    proc = _process.current()
    owner = registry_client(scope).request("pg_demonitor", ref)
    if owner is None:
        return False
    if owner == proc.pid:
        # Notifications come by mailbox and the reply by another socket: the
        # scope sent PgMonitorEnded after the last of them, so flush up to it.

        def ours(msg: object) -> bool:
            return isinstance(msg, (PgJoin, PgLeave, PgMonitorEnded)) and msg.ref == ref

        while type(proc.receive(DEFAULT_TIMEOUT, ours)) is not PgMonitorEnded:
            pass
    return True
