"""Universal variables (seed §1.B.2, without its mistakes).

Writes go through one owner, the ``mabeam.variables`` gen_server; reads do
not (AC-22).

Read path.  After every change the server publishes ``(value, version)``
under the key ``('var', name)`` in the keyed registry ``mabeam.tables``.
:func:`get_variable` looks that key up, which after a few lookups is served
from the *caller's own replica* of the registry: no message to the
variables server, so reads never queue behind writes or pending votes.
Read-your-writes: each process remembers the version its own updates
produced; a replica that has not caught up with it yet (or lacks the key)
makes the read fall back to a call to the server.  Reads by others are
eventually consistent (fresh within about a millisecond plus delivery).

Optimistic concurrency.  ``update_variable(..., expected_version=v)`` is
applied only if the variable's version is still ``v``; otherwise it raises
:class:`VersionConflict` carrying the current version.  Without
``expected_version`` the update is last-write-wins.

Consensus.  A variable registered with ``conflict_resolution='consensus'``
and ``voters`` (agent ids) changes only if a strict majority of its voters
approve.  Flow: the server checks ``expected_version``, then starts a task
under ``mabeam.tasks`` that asks every voter at once
(``mabeam.broadcast(voters, proposal, kind='vote')``, i.e. each agent's
``handle_vote``), and returns to its mailbox without replying; the caller
stays blocked in its call, the server keeps serving everybody else.  When
the task's votes arrive the server applies the update (new version) or
replies :class:`UpdateRejected` with the votes.  One vote runs per
variable at a time; later updates of that variable wait in order and are
checked against the version current when their turn comes.  A vote is an
approval if it is ``True``, ``'approve'``, ``'yes'`` or ``'accept'``; an
abstention (None), an error or a timeout counts against.  The proposal an
agent sees is a dict with ``variable``, ``value``, ``current_value``,
``version`` and ``modifier``.

Subscribers (``subscribe_variable``) are monitored; they receive
``('$variable', name, value, version)`` after each change and
``('$variable', name, None, None)`` when the variable is deleted.  History
is bounded (``history_limit`` entries per variable, 100 by default).
Variables live in the server: if it is restarted they are gone (as in the
seed); their published entries go with it.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import otp

from .._app import TASKS
from ._common import TABLES, VARIABLES, Subscribers, ask

__all__ = [
    "VariableServer",
    "VariableError",
    "VariableNotFound",
    "VariableExists",
    "VersionConflict",
    "UpdateRejected",
    "HistoryEntry",
    "APPROVALS",
    "register_variable",
    "get_variable",
    "update_variable",
    "delete_variable",
    "list_variables",
    "variable_info",
    "variable_history",
    "subscribe_variable",
    "unsubscribe_variable",
]

APPROVALS = (True, "approve", "yes", "accept")
MODES = ("last_write_wins", "consensus")


class VariableError(otp.OTPError):
    def __init__(self, name: Any, reason: Any) -> None:
        super().__init__(name, reason)
        self.name = name
        self.reason = reason


class VariableNotFound(VariableError):
    def __init__(self, name: Any) -> None:
        super().__init__(name, "not_found")
        self.args = (name,)


class VariableExists(VariableError):
    def __init__(self, name: Any) -> None:
        super().__init__(name, "already_registered")
        self.args = (name,)


class VersionConflict(VariableError):
    """``expected`` is stale: the variable is at version ``current``."""

    def __init__(self, name: Any, expected: int, current: int) -> None:
        super().__init__(name, ("version_conflict", expected, current))
        self.args = (name, expected, current)
        self.expected = expected
        self.current = current


class UpdateRejected(VariableError):
    """The voters did not approve; ``votes`` is ``{agent_id: vote}`` (None
    for an abstention, an error or no answer)."""

    def __init__(self, name: Any, votes: dict) -> None:
        super().__init__(name, ("rejected", votes))
        self.args = (name, votes)
        self.votes = votes


@dataclass(frozen=True)
class HistoryEntry:
    version: int
    value: Any
    modifier: Any
    at: float  # time.time()


@dataclass
class _Var:
    name: Any
    value: Any
    version: int
    mode: str
    voters: tuple
    vote_timeout: float
    history: deque
    modifier: Any = None
    subscribers: set = field(default_factory=set)
    queue: deque = field(default_factory=deque)  # consensus updates waiting for their vote
    voting: Any = None  # the task ref of the vote under way


def _collect_votes(voters: tuple, proposal: dict, timeout: float) -> dict:
    """Runs in a task: ask every voter concurrently, return their votes."""
    from .._comms import broadcast

    return {
        v: (r[1] if r[0] == "ok" else None) for v, r in zip(voters, broadcast(voters, proposal, timeout, kind="vote"))
    }


class VariableServer(otp.GenServer):
    def init(self, opts: Any) -> Any:
        self.vars: dict[Any, _Var] = {}
        self.subs = Subscribers()
        self.sub_names: dict[otp.Pid, set] = {}
        self.votes: dict[otp.Ref, tuple] = {}  # task ref -> (name, value, modifier, expected, from_)
        return self

    # ------------------------------------------------------------ helpers

    def _get(self, name: Any) -> _Var:
        var = self.vars.get(name)
        if var is None:
            raise VariableNotFound(name)
        return var

    def _apply(self, var: _Var, value: Any, modifier: Any) -> int:
        var.value, var.version, var.modifier = value, var.version + 1, modifier
        var.history.append(HistoryEntry(var.version, value, modifier, time.time()))
        otp.Registry.update_value(TABLES, ("var", var.name), lambda _: (value, var.version))
        for pid in var.subscribers:
            otp.send(pid, ("$variable", var.name, value, var.version))
        return var.version

    def _check(self, var: _Var, expected: int | None) -> None:
        if expected is not None and expected != var.version:
            raise VersionConflict(var.name, expected, var.version)

    # ------------------------------------------------------------ calls

    def handle_call(self, request: tuple, from_: tuple, state: Any) -> Any:
        try:
            value = self._call(request, from_)
        except Exception as exc:
            return otp.Reply(("error", exc), self)
        if value is _PENDING:
            return otp.NoReply(self)
        return otp.Reply(("ok", value), self)

    def _call(self, request: tuple, from_: tuple) -> Any:
        op, name = request[0], request[1]
        if op == "register":
            _, _, value, mode, voters, history_limit, vote_timeout, modifier = request
            if name in self.vars:
                raise VariableExists(name)
            if mode not in MODES:
                raise ValueError(f"conflict_resolution must be one of {MODES}, not {mode!r}")
            if mode == "consensus" and not voters:
                raise ValueError("a consensus variable needs voters")
            var = _Var(name, value, 1, mode, tuple(voters or ()), vote_timeout, deque(maxlen=history_limit), modifier)
            var.history.append(HistoryEntry(1, value, modifier, time.time()))
            otp.Registry.register(TABLES, ("var", name), (value, 1))
            self.vars[name] = var
            return 1
        if op == "get":
            var = self._get(name)
            return (var.value, var.version)
        if op == "update":
            _, _, value, modifier, expected = request
            var = self._get(name)
            self._check(var, expected)
            if var.mode == "last_write_wins":
                return self._apply(var, value, modifier)
            var.queue.append((value, modifier, expected, from_))
            self._next_vote(var)
            return _PENDING
        if op == "delete":
            var = self.vars.pop(name, None)
            if var is None:
                return False
            otp.Registry.unregister(TABLES, ("var", name))
            for pid in var.subscribers:
                otp.send(pid, ("$variable", name, None, None))
                self.sub_names.get(pid, set()).discard(name)
            for _, _, _, waiting in var.queue:
                otp.reply(waiting, ("error", VariableNotFound(name)))
            return True
        if op == "list":
            return list(self.vars)
        if op == "info":
            var = self._get(name)
            for pid in self.subs.prune():
                self._drop_subscriber(pid)
            return {
                "name": name,
                "version": var.version,
                "modifier": var.modifier,
                "conflict_resolution": var.mode,
                "voters": var.voters,
                "subscribers": len(var.subscribers),
                "history": len(var.history),
                "pending": len(var.queue),
            }
        if op == "history":
            return list(self._get(name).history)
        if op == "subscribe":
            var = self._get(name)
            pid = request[2]
            self.subs.add(pid)
            self.sub_names.setdefault(pid, set()).add(name)
            var.subscribers.add(pid)
            return (var.value, var.version)
        if op == "unsubscribe":
            pid = request[2]
            var = self.vars.get(name)
            if var is not None:
                var.subscribers.discard(pid)
            names = self.sub_names.get(pid, set())
            names.discard(name)
            if not names:
                self._drop_subscriber(pid)
                self.subs.remove(pid)
            return None
        raise ValueError(f"unknown variables request {op!r}")

    def _drop_subscriber(self, pid: otp.Pid) -> None:
        for name in self.sub_names.pop(pid, ()):
            var = self.vars.get(name)
            if var is not None:
                var.subscribers.discard(pid)

    # ------------------------------------------------------------ votes

    def _next_vote(self, var: _Var) -> None:
        """Start the vote of the oldest waiting update (unless one runs)."""
        while var.voting is None and var.queue:
            value, modifier, expected, from_ = var.queue[0]
            try:
                self._check(var, expected)
            except VersionConflict as exc:
                var.queue.popleft()
                otp.reply(from_, ("error", exc))
                continue
            proposal = {
                "variable": var.name,
                "value": value,
                "current_value": var.value,
                "version": var.version,
                "modifier": modifier,
            }
            task = otp.TaskSupervisor.async_nolink(TASKS, _collect_votes, var.voters, proposal, var.vote_timeout)
            var.voting = task.ref
            self.votes[task.ref] = var.name

    def _vote_done(self, ref: otp.Ref, votes: dict | None, reason: Any) -> None:
        name = self.votes.pop(ref)
        var = self.vars.get(name)
        if var is None:
            return  # deleted meanwhile: its waiters were answered
        var.voting = None
        value, modifier, _, from_ = var.queue.popleft()
        if votes is None:
            otp.reply(from_, ("error", VariableError(name, ("vote_failed", reason))))
        elif sum(1 for v in votes.values() if _approves(v)) * 2 > len(var.voters):
            otp.reply(from_, ("ok", self._apply(var, value, modifier)))
        else:
            otp.reply(from_, ("error", UpdateRejected(name, votes)))
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
        return otp.NoReply(self)


def _approves(vote: Any) -> bool:
    return any(vote is a or (isinstance(a, str) and vote == a) for a in APPROVALS)


_PENDING = object()


# ------------------------------------------------------------------ client

#: (caller uid, name) -> the version the caller's own last update produced.
_written: OrderedDict = OrderedDict()
_WRITTEN_MAX = 10_000


def _note_write(name: Any, version: int) -> None:
    key = (otp.self().uid, name)
    _written[key] = version
    _written.move_to_end(key)
    while len(_written) > _WRITTEN_MAX:
        _written.popitem(last=False)


def register_variable(
    name: Any,
    value: Any,
    conflict_resolution: str = "last_write_wins",
    voters: Any = None,
    *,
    modifier: Any = None,
    history_limit: int = 100,
    vote_timeout: float = 5.0,
) -> int:
    """Create a variable at version 1; raises :class:`VariableExists`."""
    version = ask(
        VARIABLES,
        ("register", name, value, conflict_resolution, tuple(voters or ()), history_limit, vote_timeout, modifier),
    )
    _note_write(name, version)
    return version


def get_variable(name: Any) -> tuple:
    """``(value, version)``, read from the caller's replica of the tables
    registry (see the module doc); raises :class:`VariableNotFound`."""
    rows = otp.Registry.lookup(TABLES, ("var", name))
    if rows:
        value, version = rows[0][1]
        if version >= _written.get((otp.self().uid, name), 0):
            return value, version
    return ask(VARIABLES, ("get", name))


def update_variable(
    name: Any, value: Any, modifier: Any = None, expected_version: int | None = None, timeout: float | None = 30.0
) -> int:
    """Set the variable; returns its new version.  Raises
    :class:`VersionConflict`, :class:`UpdateRejected` (consensus) or
    :class:`VariableNotFound`."""
    version = ask(VARIABLES, ("update", name, value, modifier, expected_version), timeout)
    _note_write(name, version)
    return version


def delete_variable(name: Any) -> bool:
    return ask(VARIABLES, ("delete", name))


def list_variables() -> list:
    return ask(VARIABLES, ("list", None))


def variable_info(name: Any) -> dict:
    """Version, last modifier, mode, voters, live subscribers, pending updates."""
    return ask(VARIABLES, ("info", name))


def variable_history(name: Any) -> list:
    """The last ``history_limit`` :class:`HistoryEntry` items, oldest first."""
    return ask(VARIABLES, ("history", name))


def subscribe_variable(name: Any) -> tuple:
    """Receive ``('$variable', name, value, version)`` on every change; the
    caller is monitored.  Returns the current ``(value, version)``."""
    return ask(VARIABLES, ("subscribe", name, otp.self()))


def unsubscribe_variable(name: Any) -> None:
    ask(VARIABLES, ("unsubscribe", name, otp.self()))
