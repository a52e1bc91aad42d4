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

from ._errors import AlreadyHeld, LockTimeout, NotHolder, PrimitiveFailed, UnknownPrimitive
from ._primitives import Primitive, ensure, reaching, registered_name
from ._waiters import Turn, WaitingServer, ask_info, wait_turn

__all__ = ["LockServer", "create_lock", "acquire", "release", "hold_lock", "get_lock_info"]


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


class LockServer(WaitingServer):
    def init(self, reg: tuple) -> None:
        self.reg = reg
        self.holder: Holder | None = None
        self.queue: collections.deque[Waiter] = collections.deque()
        self.grants = 0
        self.init_waiting()

    def waiting_count(self) -> int:
        return len(self.queue)

    def monitors(self) -> set[otp.Ref]:
        monitors = {waiter.monitor for waiter in self.queue}
        if self.holder is not None:
            monitors.add(self.holder.monitor)
        return monitors

    def describe(self) -> dict:
        holder = self.holder.pid if self.holder else None
        return {"holder": holder, "waiting": len(self.queue), "grants": self.grants}

    def forget(self, monitor: otp.Ref) -> None:
        """The holder or waiter of ``monitor`` exited (the lock passes on
        when it settles)."""
        if self.holder is not None and self.holder.monitor == monitor:
            self.holder = None
            return
        for waiter in self.queue:
            if waiter.monitor == monitor:
                self.queue.remove(waiter)
                return

    def settle(self) -> None:
        """Grant the lock to the first live waiter, if it is free."""
        if not self.queue:
            return
        self.take_downs()
        while self.queue and self.holder is None:
            waiter = self.queue.popleft()
            if self.is_dead(waiter.pid, waiter.monitor):
                continue
            self.grants += 1
            self.holder = Holder(waiter.pid, waiter.token, waiter.monitor, self.grants)
            self.answer(waiter.caller, self.grants)

    @otp.operation
    def acquire(self, token: otp.Ref) -> int:
        """The grant number, once the caller holds the lock (deferred)."""
        from_ = self.from_()
        pid = from_[0]
        if self.holder is not None and self.holder.pid == pid:
            raise AlreadyHeld(self.reg)
        self.queue.append(Waiter(from_, pid, token, otp.monitor(pid)))
        self.settle()
        self.answer_watchers()
        return otp.DEFER

    @otp.operation
    def release(self) -> None:
        if self.holder is None or self.holder.pid != self.from_()[0]:
            raise NotHolder(self.reg)
        otp.demonitor(self.holder.monitor, flush=True)
        self.holder = None
        self.settle()

    @otp.operation
    def withdraw(self, token: otp.Ref) -> Turn:
        """Leave the queue; the grant number if the lock was granted meanwhile."""
        for waiter in self.queue:
            if waiter.token == token:
                self.queue.remove(waiter)
                otp.demonitor(waiter.monitor, flush=True)
                return Turn(None, len(self.queue) + 1)
        if self.holder is not None and self.holder.token == token:
            return Turn(self.holder.grant, 0)
        return Turn(None, 0)


def create_lock(name: Any) -> otp.Pid:
    """Get or create the lock ``name`` under the coordination supervisor."""
    return ensure(Primitive.LOCK, name, LockServer, registered_name(Primitive.LOCK, name))


def acquire(name: Any, timeout: float = 5.0) -> int:
    """Wait (at most ``timeout`` seconds) until the caller holds the lock
    (created if needed); returns the grant number.  Raises
    :class:`LockTimeout`, :class:`AlreadyHeld`, or :class:`PrimitiveFailed`
    if the lock exits meanwhile."""
    create_lock(name)
    turn = wait_turn(Primitive.LOCK, name, "acquire", timeout)
    if turn.value is not None:
        return turn.value
    raise LockTimeout(f"lock {name!r} not granted within {timeout} s")


def release(name: Any, timeout: float = 5.0) -> None:
    """Release the lock; raises :class:`NotHolder` if the caller does not hold it."""
    with reaching(Primitive.LOCK, name) as pid:
        otp.ask(pid, "release", timeout=timeout)


def get_lock_info(name: Any, min_waiting: int = 0, timeout: float = 5.0) -> dict:
    """``{'holder': pid | None, 'waiting': n, 'grants': n}``, once at least
    ``min_waiting`` callers are queued (raises ``otp.CallTimeout`` if that
    does not happen within ``timeout``)."""
    return ask_info(Primitive.LOCK, name, min_waiting, timeout)


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
