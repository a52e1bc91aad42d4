"""The cyclic barrier primitive.

``arrive(name, timeout)`` blocks the caller (the barrier answers later)
until ``parties`` processes are waiting at once; they are all released
together and get the barrier's *generation* number, and the barrier starts
its next generation empty.

The rule for arrivers that die: a barrier releases only when ``parties``
*live* processes are waiting.  Every arriver is monitored; one that exits
before the release is removed (its ``DOWN``).  The release is decided when
an arrival makes the count: the ``DOWN`` messages already in the barrier's
mailbox are taken first (they would otherwise wait behind the arrival),
and every waiter is then checked against what the kernel knows
(:func:`otp.is_alive` counts a process SIGKILLed a moment ago as dead
from the kill on, though its ``DOWN`` comes milliseconds later), so a death cannot release the others wrongly.  They keep waiting
for a replacement (or their timeout).  A caller whose ``arrive`` times out
withdraws; if the barrier released at that very moment, ``arrive`` returns
the generation instead of raising, so no party is released without
knowing.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import otp

from ._errors import BarrierTimeout, CoordinationError, InvalidParameter
from ._primitives import Primitive, ensure, reaching

__all__ = ["BarrierServer", "Withdrawal", "create_barrier", "arrive", "get_barrier_info"]

CANCEL_TIMEOUT = 5.0
_KEEP_GENERATIONS = 2  # released tokens remembered, for a withdrawal racing the release


class Arrival(NamedTuple):
    caller: tuple  # the request's from_, answered on the release
    pid: otp.Pid
    monitor: otp.Ref


class Watcher(NamedTuple):
    caller: tuple
    min_waiting: int


class Withdrawal(NamedTuple):
    """What a withdrawing arriver learns: the generation that released it
    meanwhile (None if it did not), and how many were waiting with it."""

    generation: int | None
    waiting: int


class BarrierServer(otp.Service):
    errors = (CoordinationError,)

    def init(self, parties: int) -> None:
        self.parties = parties
        self.waiting: dict[otp.Ref, Arrival] = {}  # by the arriver's token
        self.generation = 0
        self.released: dict[otp.Ref, int] = {}  # token -> generation, for the last generations
        self.watchers: list[Watcher] = []  # get_barrier_info callers waiting for enough arrivals

    def _info(self) -> dict:
        return {"parties": self.parties, "waiting": len(self.waiting), "generation": self.generation}

    def _watch(self) -> None:
        ready = [w for w in self.watchers if len(self.waiting) >= w.min_waiting]
        if ready:
            self.watchers = [w for w in self.watchers if w not in ready]
            for w in ready:
                self.answer(w.caller, self._info())

    def _forget(self, monitor: otp.Ref) -> None:
        """The arriver of ``monitor`` exited: it no longer waits."""
        for token, arrival in self.waiting.items():
            if arrival.monitor == monitor:
                del self.waiting[token]
                return

    def _take_downs(self) -> None:
        """Handle the DOWNs of arrivers that are already queued, before a
        decision that must not count their senders."""
        monitors = {arrival.monitor for arrival in self.waiting.values()}
        while monitors:
            try:
                down = otp.receive(0, lambda m: isinstance(m, otp.DOWN) and m.ref in monitors)
            except otp.Timeout:
                return
            monitors.discard(down.ref)
            self._forget(down.ref)

    def _maybe_release(self) -> None:
        if len(self.waiting) < self.parties:
            return
        self._take_downs()
        for token, arrival in list(self.waiting.items()):
            if not otp.is_alive(arrival.pid):  # its DOWN is still on its way
                otp.demonitor(arrival.monitor, flush=True)
                del self.waiting[token]
        if len(self.waiting) < self.parties:
            return
        gen = self.generation
        for token, arrival in self.waiting.items():
            otp.demonitor(arrival.monitor, flush=True)
            self.answer(arrival.caller, gen)
            self.released[token] = gen
        self.waiting = {}
        self.generation += 1
        self.released = {t: g for t, g in self.released.items() if g > gen - _KEEP_GENERATIONS}

    def _from(self) -> tuple:
        from_ = self.caller
        assert from_ is not None  # set while an operation runs
        return from_

    @otp.operation
    def arrive(self, token: otp.Ref) -> int:
        """The generation, once the barrier releases (deferred)."""
        from_ = self._from()
        self.waiting[token] = Arrival(from_, from_[0], otp.monitor(from_[0]))
        self._watch()
        self._maybe_release()
        return otp.DEFER

    @otp.operation
    def withdraw(self, token: otp.Ref) -> Withdrawal:
        arrival = self.waiting.pop(token, None)
        if arrival is not None:
            otp.demonitor(arrival.monitor, flush=True)
            return Withdrawal(None, len(self.waiting) + 1)
        if token in self.released:
            return Withdrawal(self.released.pop(token), 0)
        return Withdrawal(None, 0)

    @otp.operation
    def info(self, min_waiting: int) -> dict:
        """:func:`get_barrier_info`, once ``min_waiting`` processes wait (deferred)."""
        if len(self.waiting) >= min_waiting:
            return self._info()
        self.watchers.append(Watcher(self._from(), min_waiting))
        return otp.DEFER

    def handle_info(self, msg: Any, state: Any) -> Any:
        if isinstance(msg, otp.DOWN):
            self._forget(msg.ref)
        return otp.NoReply(state)


def create_barrier(name: Any, parties: int) -> otp.Pid:
    """Get or create the barrier ``name`` for ``parties`` processes (an
    existing barrier keeps its own count)."""
    if isinstance(parties, bool) or not isinstance(parties, int) or parties < 1:
        raise InvalidParameter(f"parties must be an int >= 1, got {parties!r}")
    return ensure(Primitive.BARRIER, name, BarrierServer, parties)


def arrive(name: Any, timeout: float = 10.0) -> int:
    """Wait at the barrier until it releases; returns the generation.
    Raises :class:`BarrierTimeout` after ``timeout`` seconds,
    :class:`UnknownPrimitive` if there is no such barrier."""
    token = otp.make_ref()
    try:
        with reaching(Primitive.BARRIER, name) as pid:
            return otp.ask(pid, "arrive", token, timeout=timeout)
    except otp.CallTimeout:
        pass
    with reaching(Primitive.BARRIER, name) as pid:
        withdrawal = otp.ask(pid, "withdraw", token, timeout=CANCEL_TIMEOUT)
    if withdrawal.generation is not None:
        return withdrawal.generation
    raise BarrierTimeout(f"barrier {name!r} did not release within {timeout} s", withdrawal.waiting)


def get_barrier_info(name: Any, min_waiting: int = 0, timeout: float = 5.0) -> dict:
    """``{'parties', 'waiting', 'generation'}``, once at least
    ``min_waiting`` processes wait (``otp.CallTimeout`` if that does not
    happen within ``timeout``): a coordinator can wait for the parties to
    gather without polling."""
    with reaching(Primitive.BARRIER, name) as pid:
        return otp.ask(pid, "info", min_waiting, timeout=timeout)
