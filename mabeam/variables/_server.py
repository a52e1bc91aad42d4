"""The variables server: the one writer of universal variables, an
:class:`otp.Service` registered as ``mabeam.variables``.

After every change the server publishes ``(value, version)`` under the key
``('var', name)`` in the tables registry, which readers look up in their
own replica (see the package documentation).

Consensus.  An update of a ``consensus`` variable is checked against
``expected_version``, then a task under ``mabeam.tasks`` asks every voter at
once (each agent's ``handle_vote``) and the operation answers later
(:data:`otp.DEFER`): the caller stays blocked in its request, the server
keeps serving everybody else.  When the task's votes arrive the server
applies the update (new version) or answers :class:`UpdateRejected` with
the votes.  One vote runs per variable at a time; later updates of that
variable wait in order and are checked against the version current when
their turn comes.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import otp

from .._common import TABLES, Subscribers
from .._comms import broadcast
from .._names import TASKS
from ._model import (
    ConflictResolution,
    HistoryEntry,
    InvalidVariable,
    UpdateRejected,
    VariableExists,
    VariableInfo,
    VariableNotFound,
    VersionConflict,
    VoteFailed,
    approves,
)

__all__ = ["VARIABLES", "VariableServer", "Notice", "child_spec"]

#: The variables server's registered name.
VARIABLES = "mabeam.variables"


class _Update(NamedTuple):
    """A consensus update waiting for (or in) its vote."""

    value: Any
    modifier: Any
    expected: int | None
    caller: tuple


@dataclass
class _Var:
    name: Hashable
    value: Any
    version: int
    mode: ConflictResolution
    voters: tuple[Hashable, ...]
    vote_timeout: float
    history: deque[HistoryEntry]
    modifier: Any = None
    subscribers: set[otp.Pid] = field(default_factory=set)
    queue: deque[_Update] = field(default_factory=deque)
    voting: otp.Ref | None = None  # the task ref of the vote under way


class Notice(NamedTuple):
    """What subscribers receive after each change: ``('$variable', name,
    value, version)``; value and version are None when it was deleted."""

    tag: str
    name: Hashable
    value: Any
    version: int | None


def _notice(name: Hashable, value: Any, version: int | None) -> Notice:
    return Notice("$variable", name, value, version)


def _collect_votes(voters: tuple[Hashable, ...], proposal: dict[str, Any], timeout: float) -> dict[Hashable, Any]:
    """Runs in a task: ask every voter concurrently, return their votes."""
    outcomes = broadcast(voters, proposal, timeout, kind="vote")
    return {voter: (outcome[1] if outcome[0] == "ok" else None) for voter, outcome in zip(voters, outcomes)}


class VariableServer(otp.Service):
    """The variables server (see the module documentation)."""

    def init(self, options: None) -> None:
        self.vars: dict[Hashable, _Var] = {}
        self.subs = Subscribers()
        self.sub_names: dict[otp.Pid, set[Hashable]] = {}
        self.votes: dict[otp.Ref, Hashable] = {}  # vote task ref -> variable name

    def _get(self, name: Hashable) -> _Var:
        var = self.vars.get(name)
        if var is None:
            raise VariableNotFound(name)
        return var

    def _apply(self, var: _Var, value: Any, modifier: Any) -> int:
        var.value, var.version, var.modifier = value, var.version + 1, modifier
        var.history.append(HistoryEntry(var.version, value, modifier, time.time()))
        version = var.version
        otp.Registry.update_value(TABLES, ("var", var.name), lambda _: (value, version))
        for pid in var.subscribers:
            otp.send(pid, _notice(var.name, value, version))
        return version

    @staticmethod
    def _check(var: _Var, expected: int | None) -> None:
        if expected is not None and expected != var.version:
            raise VersionConflict(var.name, expected, var.version)

    # ------------------------------------------------------------ operations

    @otp.operation
    def register_variable(
        self,
        name: Hashable,
        value: Any,
        mode: ConflictResolution,
        voters: tuple[Hashable, ...],
        history_limit: int,
        vote_timeout: float,
        modifier: Any,
    ) -> int:
        if name in self.vars:
            raise VariableExists(name)
        if mode is ConflictResolution.CONSENSUS and not voters:
            raise InvalidVariable(name, "a consensus variable needs voters")
        var = _Var(name, value, 1, mode, voters, vote_timeout, deque(maxlen=history_limit), modifier)
        var.history.append(HistoryEntry(1, value, modifier, time.time()))
        otp.Registry.register(TABLES, ("var", name), (value, 1))
        self.vars[name] = var
        return 1

    @otp.operation
    def get_variable(self, name: Hashable) -> tuple[Any, int]:
        var = self._get(name)
        return var.value, var.version

    @otp.operation
    def update_variable(self, name: Hashable, value: Any, modifier: Any, expected: int | None) -> int:
        var = self._get(name)
        self._check(var, expected)
        if var.mode is ConflictResolution.LAST_WRITE_WINS:
            return self._apply(var, value, modifier)
        assert self.caller is not None  # an operation always runs for a caller
        var.queue.append(_Update(value, modifier, expected, self.caller))
        self._next_vote(var)
        return otp.DEFER

    @otp.operation
    def delete_variable(self, name: Hashable) -> bool:
        var = self.vars.pop(name, None)
        if var is None:
            return False
        otp.Registry.unregister(TABLES, ("var", name))
        for pid in var.subscribers:
            otp.send(pid, _notice(name, None, None))
            self.sub_names.get(pid, set()).discard(name)
        for update in var.queue:
            self.answer_error(update.caller, VariableNotFound(name))
        return True

    @otp.operation
    def list_variables(self) -> list[Hashable]:
        return list(self.vars)

    @otp.operation
    def get_variable_info(self, name: Hashable) -> VariableInfo:
        var = self._get(name)
        for pid in self.subs.prune():
            self._drop_subscriber(pid)
        return VariableInfo(
            name,
            var.version,
            var.modifier,
            var.mode,
            var.voters,
            len(var.subscribers),
            len(var.history),
            len(var.queue),
        )

    @otp.operation
    def get_variable_history(self, name: Hashable) -> list[HistoryEntry]:
        return list(self._get(name).history)

    @otp.operation
    def subscribe_variable(self, name: Hashable, pid: otp.Pid) -> tuple[Any, int]:
        var = self._get(name)
        self.subs.add(pid)
        self.sub_names.setdefault(pid, set()).add(name)
        var.subscribers.add(pid)
        return var.value, var.version

    @otp.operation
    def unsubscribe_variable(self, name: Hashable, pid: otp.Pid) -> None:
        var = self.vars.get(name)
        if var is not None:
            var.subscribers.discard(pid)
        names = self.sub_names.get(pid, set())
        names.discard(name)
        if not names:
            self._drop_subscriber(pid)
            self.subs.remove(pid)

    def _drop_subscriber(self, pid: otp.Pid) -> None:
        for name in self.sub_names.pop(pid, ()):
            var = self.vars.get(name)
            if var is not None:
                var.subscribers.discard(pid)

    # ------------------------------------------------------------ votes

    def _next_vote(self, var: _Var) -> None:
        """Start the vote of the oldest waiting update (unless one runs)."""
        while var.voting is None and var.queue:
            update = var.queue[0]
            try:
                self._check(var, update.expected)
            except VersionConflict as exc:
                var.queue.popleft()
                self.answer_error(update.caller, exc)
                continue
            proposal = {
                "variable": var.name,
                "value": update.value,
                "current_value": var.value,
                "version": var.version,
                "modifier": update.modifier,
            }
            task = otp.TaskSupervisor.async_nolink(TASKS, _collect_votes, var.voters, proposal, var.vote_timeout)
            var.voting = task.ref
            self.votes[task.ref] = var.name

    def _vote_done(self, ref: otp.Ref, votes: dict[Hashable, Any] | None, exit_reason: Any) -> None:
        name = self.votes.pop(ref)
        var = self.vars.get(name)
        if var is None:
            return  # deleted meanwhile: its waiters were answered
        var.voting = None
        update = var.queue.popleft()
        if votes is None:
            self.answer_error(update.caller, VoteFailed(name, exit_reason))
        elif sum(1 for v in votes.values() if approves(v)) * 2 > len(var.voters):
            self.answer(update.caller, self._apply(var, update.value, update.modifier))
        else:
            self.answer_error(update.caller, UpdateRejected(name, votes))
        self._next_vote(var)

    def handle_info(self, msg: Any, state: Any) -> Any:
        if type(msg) is tuple and len(msg) == 3 and msg[0] == "$task" and msg[1] in self.votes:
            otp.demonitor(msg[1], flush=True)
            self._vote_done(msg[1], msg[2], None)
        elif isinstance(msg, otp.DOWN):
            if msg.ref in self.votes:
                self._vote_done(msg.ref, None, msg.reason)
            elif self.subs.down(msg):
                self._drop_subscriber(msg.pid)
        return otp.NoReply(state)


def child_spec() -> otp.ChildSpec:
    """The variables server's child spec (registered as ``mabeam.variables``)."""
    return VariableServer.child_spec(None, id=VARIABLES, name=VARIABLES)
