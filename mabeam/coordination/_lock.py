"""The lock primitive: FIFO waiters, a monitored holder, fencing numbers.

``acquire(name, timeout)`` blocks the caller (the lock answers later) until
the lock is free and every earlier waiter had its turn; it returns the
grant number, which increases with every grant (a fencing token: a resource
can refuse writes that carry an older number).  The holder is monitored:
when it exits, the lock passes to the next waiter that is still alive.  A
waiter that exits leaves the queue.  Before a grant the lock takes the
``DOWN`` messages already in its mailbox, and it never grants to a waiter
whose death the kernel knows (:func:`otp.is_alive` counts a process
SIGKILLed a moment ago as dead from the kill on, though its ``DOWN``
comes milliseconds later), so no grant number goes to the dead.  A caller whose
``acquire`` times out withdraws from the queue; if the lock was granted to
it at that very moment it keeps it and ``acquire`` returns normally, so a
lock is never held by someone who does not know it.  Locks are not
reentrant: acquiring a lock one already holds raises :class:`AlreadyHeld`.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import otp

from ._errors import AlreadyHeld, CoordinationError, LockTimeout, NotHolder, PrimitiveFailed, UnknownPrimitive
from ._primitives import Primitive, ensure, reaching, registered_name

__all__ = ["LockServer", "create_lock", "acquire", "release", "hold_lock", "get_lock_info"]

#: How long a caller whose acquire timed out waits to withdraw.
CANCEL_TIMEOUT = 5.0


class Waiter(NamedTuple):
    caller: tuple  # the request's from_, answered on the grant
    pid: otp.Pid
    token: otp.Ref
    monitor: otp.Ref


class Holder(NamedTuple):
    pid: otp.Pid
    token: otp.Ref
    monitor: otp.Ref
    grant: int


class Watcher(NamedTuple):
    caller: tuple
    min_waiting: int


class LockServer(otp.Service):
    errors = (CoordinationError,)

    def init(self, reg: tuple) -> None:
        self.reg = reg
        self.holder: Holder | None = None
        self.queue: collections.deque[Waiter] = collections.deque()
        self.grants = 0
        self.watchers: list[Watcher] = []  # get_lock_info callers waiting for enough waiters

    def _info(self) -> dict:
        holder = self.holder.pid if self.holder else None
        return {"holder": holder, "waiting": len(self.queue), "grants": self.grants}

    def _watch(self) -> None:
        ready = [w for w in self.watchers if len(self.queue) >= w.min_waiting]
        if ready:
            self.watchers = [w for w in self.watchers if w not in ready]
            for w in ready:
                self.answer(w.caller, self._info())

    def _forget(self, monitor: otp.Ref) -> None:
        """The holder or waiter of ``monitor`` exited (the lock passes on
        when the caller grants next)."""
        if self.holder is not None and self.holder.monitor == monitor:
            self.holder = None
            return
        for waiter in self.queue:
            if waiter.monitor == monitor:
                self.queue.remove(waiter)
                return

    def _take_downs(self) -> None:
        """Handle the DOWNs of the holder and waiters that are already
        queued, before a grant that must not go to their senders."""
        monitors = {waiter.monitor for waiter in self.queue}
        if self.holder is not None:
            monitors.add(self.holder.monitor)
        while monitors:
            try:
                down = otp.receive(0, lambda m: isinstance(m, otp.DOWN) and m.ref in monitors)
            except otp.Timeout:
                return
            monitors.discard(down.ref)
            self._forget(down.ref)

    def _grant_next(self) -> None:
        if not self.queue:
            return
        self._take_downs()
        while self.queue and self.holder is None:
            waiter = self.queue.popleft()
            if not otp.is_alive(waiter.pid):  # its DOWN is still on its way
                otp.demonitor(waiter.monitor, flush=True)
                continue
            self.grants += 1
            self.holder = Holder(waiter.pid, waiter.token, waiter.monitor, self.grants)
            self.answer(waiter.caller, self.grants)

    def _from(self) -> tuple:
        from_ = self.caller
        assert from_ is not None  # set while an operation runs
        return from_

    @otp.operation
    def acquire(self, token: otp.Ref) -> int:
        """The grant number, once the caller holds the lock (deferred)."""
        from_ = self._from()
        pid = from_[0]
        if self.holder is not None and self.holder.pid == pid:
            raise AlreadyHeld(self.reg)
        self.queue.append(Waiter(from_, pid, token, otp.monitor(pid)))
        self._grant_next()
        self._watch()
        return otp.DEFER

    @otp.operation
    def release(self) -> None:
        if self.holder is None or self.holder.pid != self._from()[0]:
            raise NotHolder(self.reg)
        otp.demonitor(self.holder.monitor, flush=True)
        self.holder = None
        self._grant_next()

    @otp.operation
    def withdraw(self, token: otp.Ref) -> int | None:
        """Leave the queue; the grant number if the lock was granted meanwhile."""
        for waiter in self.queue:
            if waiter.token == token:
                self.queue.remove(waiter)
                otp.demonitor(waiter.monitor, flush=True)
                return None
        if self.holder is not None and self.holder.token == token:
            return self.holder.grant
        return None

    @otp.operation
    def info(self, min_waiting: int) -> dict:
        """:func:`get_lock_info`, once ``min_waiting`` callers are queued (deferred)."""
        if len(self.queue) >= min_waiting:
            return self._info()
        self.watchers.append(Watcher(self._from(), min_waiting))
        return otp.DEFER

    def handle_info(self, msg: Any, state: Any) -> Any:
        if isinstance(msg, otp.DOWN):
            self._forget(msg.ref)
            self._grant_next()
        return otp.NoReply(state)


def create_lock(name: Any) -> otp.Pid:
    """Get or create the lock ``name`` under the coordination supervisor."""
    return ensure(Primitive.LOCK, name, LockServer, registered_name(Primitive.LOCK, name))


def acquire(name: Any, timeout: float = 5.0) -> int:
    """Wait (at most ``timeout`` seconds) until the caller holds the lock
    (created if needed); returns the grant number.  Raises
    :class:`LockTimeout`, :class:`AlreadyHeld`, or :class:`PrimitiveFailed`
    if the lock exits meanwhile."""
    create_lock(name)
    token = otp.make_ref()
    try:
        with reaching(Primitive.LOCK, name) as pid:
            return otp.ask(pid, "acquire", token, timeout=timeout)
    except otp.CallTimeout:
        pass
    with reaching(Primitive.LOCK, name) as pid:
        grant = otp.ask(pid, "withdraw", token, timeout=CANCEL_TIMEOUT)
    if grant is not None:
        return grant
    raise LockTimeout(f"lock {name!r} not granted within {timeout} s")


def release(name: Any, timeout: float = 5.0) -> None:
    """Release the lock; raises :class:`NotHolder` if the caller does not hold it."""
    with reaching(Primitive.LOCK, name) as pid:
        otp.ask(pid, "release", timeout=timeout)


def get_lock_info(name: Any, min_waiting: int = 0, timeout: float = 5.0) -> dict:
    """``{'holder': pid | None, 'waiting': n, 'grants': n}``, once at least
    ``min_waiting`` callers are queued (raises ``otp.CallTimeout`` if that
    does not happen within ``timeout``)."""
    with reaching(Primitive.LOCK, name) as pid:
        return otp.ask(pid, "info", min_waiting, timeout=timeout)


@contextmanager
def hold_lock(name: Any, timeout: float = 5.0) -> Iterator[int]:
    """``with hold_lock(name) as grant:`` holds the lock inside the block."""
    grant = acquire(name, timeout)
    try:
        yield grant
    finally:
        try:
            release(name)
        except (UnknownPrimitive, PrimitiveFailed):  # the lock itself went away: nothing to release
            pass
