"""The process-group half of a registry process (OTP's pg scope): a mixin of
:class:`otp.registry._server._Server`, which answers the ``pg_*``
operations with these methods.

Local and remote members.  Only processes of this node join or leave
through a client's request (OTP's pg refuses to join a pid of another node:
``PidNotLocal``); the registry watches them and drops them when they exit.
Members of other nodes arrive through ``pg_remote``, sent only by the
scope's distribution process (:mod:`otp.registry._pg_dist`), which learns
them from the same scope on the other nodes: they are not watched (a watch
of a remote pid is a round trip through the gateway), not persisted (a
restarted registry learns them again from its peers), and counted alive
until that process says they left, as OTP's pg counts a remote member
until its node's scope process says so or goes down.  Monitors get
``PgJoin``/``PgLeave`` for both.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import _api, _process
from .._pid import Pid, Ref
from ._backend import InvalidPid, MembershipStore, PidNotAlive, PidNotLocal, RegistryError, RegistryFull
from ._events import PgEvent, PgJoin, PgLeave
from ._protocol import Change, Joined, Left, LeftAll, PgMonitorEnded

log = logging.getLogger("otp.registry")

__all__ = ["PgOps"]


class _PgMonitor(NamedTuple):
    """A process watching a pg scope (``group`` None) or one group."""

    pid: Pid
    group: Any


class PgOps:
    """Process groups: ``groups`` (group -> members, with repeats), the
    monitors, and the ``op_pg_*`` handlers."""

    proc: _process.Process
    monitors: dict[int, Any]
    member_store: MembershipStore | None

    if TYPE_CHECKING:  # the server's, used here

        def _alive(self, pid: Pid) -> bool: ...

        def _watch(self, pid: Pid) -> None: ...

        def _unwatch_if_unused(self, pid: Pid) -> None: ...

        def _publish(self, change: Change) -> None: ...

        def _tell(self, dest: Any, msg: PgEvent | PgMonitorEnded) -> None: ...

    def _init_groups(self) -> None:
        self.node_name = self.proc.node.name
        self.pg_dist: Pid | None = None  # the scope's distribution process (see _pg_dist), if the node listens
        self.groups: dict[Any, list[Pid]] = {}
        self.pg_monitors: dict[Ref, _PgMonitor] = {}
        self.pg_monitors_of: dict[int, set[Ref]] = {}  # uid of a monitoring process -> its refs
        self._restore_groups()

    def _restore_groups(self) -> None:
        """The memberships a predecessor stored, of processes still alive."""
        store = self.member_store
        if store is None:
            return
        verdicts: dict[Pid, bool] = {}
        for group, pid in store.memberships():
            alive = verdicts.get(pid)
            if alive is None:
                try:
                    alive = self._alive(pid)
                    if alive:
                        self._watch(pid)
                except RegistryFull:
                    log.error("registry: dropping the memberships of %r: no descriptor to watch it", pid)
                    alive = False
                if not alive:
                    store.remove_member_pid(pid)
                verdicts[pid] = alive
            if alive:
                self.groups.setdefault(group, []).append(pid)

    def _member_alive(self, pid: Pid) -> bool:
        """A remote member is alive until its scope process says otherwise."""
        return pid.node != self.node_name or self._alive(pid)

    def _check_local(self, pids: Iterable[Pid]) -> None:
        for pid in pids:
            if pid.node != self.node_name:
                raise PidNotLocal(pid)

    def _pg_dead(self, pid: Pid) -> None:
        """``pid`` exited: one ``PgLeave`` per membership, as OTP's pg sends
        them, and its monitors go."""
        if self.member_store is not None and any(pid in members for members in self.groups.values()):
            self.member_store.remove_member_pid(pid)
        for group, members in list(self.groups.items()):
            if pid in members:
                times = members.count(pid)
                self.groups[group] = [m for m in members if m != pid]
                if not self.groups[group]:
                    del self.groups[group]
                self._publish(LeftAll(group, pid))
                for _ in range(times):
                    self._notify_pg(PgLeave, group, [pid])
        for ref in self.pg_monitors_of.pop(pid.uid, ()):
            self.pg_monitors.pop(ref, None)

    def _notify_pg(self, kind: type[PgJoin] | type[PgLeave], group: Any, pids: list[Pid]) -> None:
        for ref, monitor in list(self.pg_monitors.items()):
            if monitor.group is None or monitor.group == group:
                self._tell(monitor.pid, kind(ref, group, pids))

    def _add_members(self, group: Any, pids: tuple[Pid, ...]) -> None:
        self.groups.setdefault(group, []).extend(pids)
        for pid in pids:
            self._publish(Joined(group, pid))
        if pids:
            self._notify_pg(PgJoin, group, list(pids))

    def _remove_members(self, group: Any, pids: tuple[Pid, ...]) -> list[Pid]:
        """One membership less for each of ``pids`` that has one; those."""
        members = self.groups.get(group, [])
        left = []
        for pid in pids:
            if pid in members:
                members.remove(pid)
                left.append(pid)
        if not left:
            return left
        if not members:
            del self.groups[group]
        for pid in left:
            self._publish(Left(group, pid))
        self._notify_pg(PgLeave, group, left)
        return left

    # ------------------------------------------------------------ operations

    def op_pg_join(self, group: Any, pids: tuple[Pid, ...]) -> None:
        self._check_local(pids)
        for pid in pids:
            if not self._alive(pid):
                raise PidNotAlive(pid)
        watched = []
        try:
            for pid in dict.fromkeys(pids):
                if pid.uid not in self.monitors:
                    self._watch(pid)
                    watched.append(pid)
            if self.member_store is not None:
                self.member_store.add_members(group, pids)
        except RegistryError:
            for pid in watched:
                self._unwatch_if_unused(pid)
            raise
        self._add_members(group, pids)

    def op_pg_leave(self, group: Any, pids: tuple[Pid, ...]) -> bool:
        """One membership less for each of ``pids`` that has one; False if
        none had (OTP's ``not_joined``)."""
        self._check_local(pids)
        left = self._remove_members(group, pids)
        if not left:
            return False
        if self.member_store is not None:
            self.member_store.remove_members(group, left)
        for pid in dict.fromkeys(left):
            self._unwatch_if_unused(pid)
        return True

    def op_pg_remote(self, changes: tuple[tuple[bool, Any, tuple[Pid, ...]], ...]) -> None:
        """Members of other nodes joined (``True``) or left ``group``, as
        the scope's distribution process learnt it from their scopes."""
        if any(pid.node == self.node_name for _, _, pids in changes for pid in pids):
            raise InvalidPid("pg_remote takes members of other nodes only")
        for joined, group, pids in changes:
            if joined:
                self._add_members(group, pids)
            else:
                self._remove_members(group, pids)

    def op_pg_members(self, group: Any) -> list:
        return [p for p in self.groups.get(group, []) if self._member_alive(p)]

    def op_pg_groups(self) -> list:
        return [g for g, members in self.groups.items() if any(self._member_alive(p) for p in members)]

    def op_pg_local_groups(self) -> list:
        node = self.node_name
        return [g for g, members in self.groups.items() if any(p.node == node and self._alive(p) for p in members)]

    def _pg_monitor(self, pid: Pid, group: Any) -> Ref:
        if not self._alive(pid):
            raise PidNotAlive(pid)
        self._watch(pid)  # its monitors go when it exits
        ref = _api.make_ref()
        self.pg_monitors[ref] = _PgMonitor(pid, group)
        self.pg_monitors_of.setdefault(pid.uid, set()).add(ref)
        return ref

    def op_pg_monitor_scope(self, pid: Pid) -> tuple[Ref, dict[Any, list[Pid]]]:
        ref = self._pg_monitor(pid, None)
        return ref, {g: [p for p in members if self._member_alive(p)] for g, members in self.groups.items()}

    def op_pg_monitor(self, pid: Pid, group: Any) -> tuple[Ref, list[Pid]]:
        return self._pg_monitor(pid, group), self.op_pg_members(group)

    def op_pg_demonitor(self, ref: Ref) -> Pid | None:
        """End the monitor ``ref``; its owner, or None if there is none.
        The owner then gets :class:`PgMonitorEnded`, after every
        notification of ``ref``."""
        monitor = self.pg_monitors.pop(ref, None)
        if monitor is None:
            return None
        refs = self.pg_monitors_of.get(monitor.pid.uid, set())
        refs.discard(ref)
        if not refs:
            self.pg_monitors_of.pop(monitor.pid.uid, None)
        self._tell(monitor.pid, PgMonitorEnded(ref))
        self._unwatch_if_unused(monitor.pid)
        return monitor.pid
