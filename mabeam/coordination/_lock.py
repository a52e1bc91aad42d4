"""A lock process: FIFO waiters, a monitored holder, fencing numbers.

``acquire(name, timeout)`` blocks the caller (the lock replies later) until
the lock is free and every earlier waiter had its turn; it returns the
grant number, which increases with every grant (a fencing token: a resource
can refuse writes that carry an older number).  The holder is monitored:
when it exits, the lock passes to the next waiter that is still alive (the
seed's lock was released before ``acquire`` even returned).  A waiter that
exits leaves the queue.  A caller whose ``acquire`` times out withdraws
from the queue; if the lock was granted to it at that very moment it keeps
it and ``acquire`` returns normally, so a lock is never held by someone who
does not know it.  Locks are not reentrant: acquiring a lock one already
holds raises ``PrimitiveError(..., 'already_held')``.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import otp

from ._primitives import PrimitiveError, ask, ensure
from ._session import CoordinationError

__all__ = ["LockTimeout", "LockServer", "lock", "acquire", "release", "lock_held", "lock_info"]

#: How long a caller whose acquire timed out waits to withdraw.
CANCEL_TIMEOUT = 5.0


class LockTimeout(CoordinationError, TimeoutError):
    """The lock was not granted within the timeout."""


class LockServer(otp.GenServer):
    def init(self, name: Any) -> Any:
        self.name = name
        self.holder: tuple | None = None  # (pid, token, monitor ref, grant)
        self.queue: collections.deque = collections.deque()  # (from_, pid, token, monitor ref)
        self.grants = 0
        self.watchers: list = []  # (from_, n): info callers waiting for n queued
        return self

    def _info(self) -> tuple:
        holder = self.holder[0] if self.holder else None
        return ("ok", {"holder": holder, "waiting": len(self.queue), "grants": self.grants})

    def _watch(self) -> None:
        ready = [w for w in self.watchers if len(self.queue) >= w[1]]
        if ready:
            self.watchers = [w for w in self.watchers if w not in ready]
            for from_, _ in ready:
                otp.reply(from_, self._info())

    def _grant_next(self) -> None:
        while self.queue and self.holder is None:
            from_, pid, token, mon = self.queue.popleft()
            if not otp.is_alive(pid):  # its DOWN may still be on its way
                otp.demonitor(mon, flush=True)
                continue
            self.grants += 1
            self.holder = (pid, token, mon, self.grants)
            otp.reply(from_, ("ok", self.grants))

    def handle_call(self, request: tuple, from_: tuple, state: Any) -> Any:
        op, caller = request[0], from_[0]
        if op == "acquire":
            if self.holder is not None and self.holder[0] == caller:
                return otp.Reply(("error", "already_held"), self)
            self.queue.append((from_, caller, request[1], otp.monitor(caller)))
            self._grant_next()
            self._watch()
            return otp.NoReply(self)
        if op == "release":
            if self.holder is None or self.holder[0] != caller:
                return otp.Reply(("error", "not_holder"), self)
            otp.demonitor(self.holder[2], flush=True)
            self.holder = None
            self._grant_next()
            return otp.Reply(("ok", None), self)
        if op == "cancel":
            token = request[1]
            for entry in self.queue:
                if entry[2] == token:
                    self.queue.remove(entry)
                    otp.demonitor(entry[3], flush=True)
                    return otp.Reply(("ok", ("cancelled", None)), self)
            if self.holder is not None and self.holder[1] == token:
                return otp.Reply(("ok", ("held", self.holder[3])), self)
            return otp.Reply(("ok", ("unknown", None)), self)
        if op == "info":
            if len(self.queue) >= request[1]:
                return otp.Reply(self._info(), self)
            self.watchers.append((from_, request[1]))
            return otp.NoReply(self)
        return otp.Reply(("error", ("unknown_call", request)), self)

    def handle_info(self, msg: Any, state: Any) -> Any:
        if isinstance(msg, otp.DOWN):
            if self.holder is not None and self.holder[2] == msg.ref:
                self.holder = None
                self._grant_next()
            else:
                for entry in self.queue:
                    if entry[3] == msg.ref:
                        self.queue.remove(entry)
                        break
        return otp.NoReply(self)


def lock(name: Any) -> otp.Pid:
    """Get or create the lock ``name`` under the coordination supervisor."""
    return ensure("lock", name, LockServer, name)


def acquire(name: Any, timeout: float = 5.0) -> int:
    """Wait (at most ``timeout`` seconds) until the caller holds the lock
    (created if needed); returns the grant number.  Raises
    :class:`LockTimeout`, or :class:`PrimitiveError` (``'already_held'``,
    or the lock's exit reason)."""
    lock(name)
    token = otp.make_ref()
    try:
        return ask("lock", name, ("acquire", token), timeout)
    except otp.CallTimeout:
        pass
    outcome, grant = ask("lock", name, ("cancel", token), CANCEL_TIMEOUT)
    if outcome == "held":
        return grant
    raise LockTimeout(f"lock {name!r} not granted within {timeout} s")


def release(name: Any, timeout: float = 5.0) -> None:
    """Release the lock; raises ``PrimitiveError(..., 'not_holder')`` if the
    caller does not hold it."""
    ask("lock", name, ("release",), timeout)


def lock_info(name: Any, min_waiting: int = 0, timeout: float = 5.0) -> dict:
    """``{'holder': pid | None, 'waiting': n, 'grants': n}``, once at least
    ``min_waiting`` callers are queued (raises ``otp.CallTimeout`` if that
    does not happen within ``timeout``)."""
    return ask("lock", name, ("info", min_waiting), timeout)


@contextmanager
def lock_held(name: Any, timeout: float = 5.0) -> Iterator[int]:
    """``with lock_held(name) as grant:`` holds the lock inside the block."""
    grant = acquire(name, timeout)
    try:
        yield grant
    finally:
        try:
            release(name)
        except PrimitiveError as exc:  # the lock itself went away: nothing to release
            if exc.reason == "not_holder":
                raise
