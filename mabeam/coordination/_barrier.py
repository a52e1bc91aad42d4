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

from ._errors import BarrierTimeout, InvalidParameter
from ._primitives import Primitive, ensure
from ._waiters import Turn, WaitingServer, ask_info, wait_turn

__all__ = ["BarrierServer", "create_barrier", "arrive", "get_barrier_info"]

_KEEP_GENERATIONS = 2  # released tokens remembered, for a withdrawal racing the release


class Arrival(NamedTuple):
    caller: tuple  # the request's from_, answered on the release
    pid: otp.Pid
    monitor: otp.Ref


class BarrierServer(WaitingServer):
    def init(self, parties: int) -> None:
        self.parties = parties
        self.waiting: dict[otp.Ref, Arrival] = {}  # by the arriver's token
        self.generation = 0
        self.released: dict[otp.Ref, int] = {}  # token -> generation, for the last generations
        self.init_waiting()

    def waiting_count(self) -> int:
        return len(self.waiting)

    def monitors(self) -> set[otp.Ref]:
        return {arrival.monitor for arrival in self.waiting.values()}

    def describe(self) -> dict:
        return {"parties": self.parties, "waiting": len(self.waiting), "generation": self.generation}

    def forget(self, monitor: otp.Ref) -> None:
        """The arriver of ``monitor`` exited: it no longer waits."""
        for token, arrival in self.waiting.items():
            if arrival.monitor == monitor:
                del self.waiting[token]
                return

    def _maybe_release(self) -> None:
        if len(self.waiting) < self.parties:
            return
        self.take_downs()
        for token, arrival in list(self.waiting.items()):
            if self.is_dead(arrival.pid, arrival.monitor):
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

    @otp.operation
    def arrive(self, token: otp.Ref) -> int:
        """The generation, once the barrier releases (deferred)."""
        from_ = self.from_()
        self.waiting[token] = Arrival(from_, from_[0], otp.monitor(from_[0]))
        self.answer_watchers()
        self._maybe_release()
        return otp.DEFER

    @otp.operation
    def withdraw(self, token: otp.Ref) -> Turn:
        """The generation that released ``token`` meanwhile (None if none),
        and how many were waiting with it."""
        arrival = self.waiting.pop(token, None)
        if arrival is not None:
            otp.demonitor(arrival.monitor, flush=True)
            return Turn(None, len(self.waiting) + 1)
        if token in self.released:
            return Turn(self.released.pop(token), 0)
        return Turn(None, 0)


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
    turn = wait_turn(Primitive.BARRIER, name, "arrive", timeout)
    if turn.value is not None:
        return turn.value
    raise BarrierTimeout(f"barrier {name!r} did not release within {timeout} s", turn.waiting)


def get_barrier_info(name: Any, min_waiting: int = 0, timeout: float = 5.0) -> dict:
    """``{'parties', 'waiting', 'generation'}``, once at least
    ``min_waiting`` processes wait (``otp.CallTimeout`` if that does not
    happen within ``timeout``): a coordinator can wait for the parties to
    gather without polling."""
    return ask_info(Primitive.BARRIER, name, min_waiting, timeout)
