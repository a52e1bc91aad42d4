"""A cyclic barrier process.

``arrive(name, timeout)`` blocks the caller (the barrier replies later)
until ``parties`` processes are waiting at once; they are all released
together and get the barrier's *generation* number, and the barrier starts
its next generation empty.

The rule for arrivers that die: a barrier releases only when ``parties``
*live* processes are waiting.  Every arriver is monitored; one that exits
before the release is removed (its ``DOWN``), and at the moment the count
is reached every waiter is checked to be alive, so a death whose ``DOWN``
is still on its way cannot release the others wrongly.  They keep waiting
for a replacement (or their timeout).  A caller whose ``arrive`` times out
withdraws; if the barrier released at that very moment, ``arrive`` returns
the generation instead of raising, so no party is released without
knowing.  (The seed's barrier was linked to its first caller, created with
a check-then-register race, and unsupervised.)
"""

from __future__ import annotations

from typing import Any

import otp

from ._primitives import ask, ensure
from ._session import CoordinationError, InvalidParameter

__all__ = ["BarrierTimeout", "BarrierServer", "barrier", "arrive", "barrier_info"]

CANCEL_TIMEOUT = 5.0
_KEEP_GENERATIONS = 2  # released tokens remembered, for a withdrawal racing the release


class BarrierTimeout(CoordinationError, TimeoutError):
    """The barrier did not release within the timeout; ``waiting`` is how
    many (including the caller) were waiting when it withdrew."""

    def __init__(self, message: str, waiting: int) -> None:
        super().__init__(message, waiting)
        self.waiting = waiting


class BarrierServer(otp.GenServer):
    def init(self, parties: int) -> Any:
        self.parties = parties
        self.waiting: dict = {}  # token -> (from_, pid, monitor ref)
        self.generation = 0
        self.released: dict = {}  # token -> generation, for the last generations
        self.watchers: list = []  # (from_, n): info callers waiting for n arrivals
        return self

    def _info(self) -> tuple:
        return ("ok", {"parties": self.parties, "waiting": len(self.waiting), "generation": self.generation})

    def _watch(self) -> None:
        ready = [w for w in self.watchers if len(self.waiting) >= w[1]]
        if ready:
            self.watchers = [w for w in self.watchers if w not in ready]
            for from_, _ in ready:
                otp.reply(from_, self._info())

    def _maybe_release(self) -> None:
        if len(self.waiting) < self.parties:
            return
        for token, (_, pid, mon) in list(self.waiting.items()):
            if not otp.is_alive(pid):
                otp.demonitor(mon, flush=True)
                del self.waiting[token]
        if len(self.waiting) < self.parties:
            return
        gen = self.generation
        for token, (from_, _, mon) in self.waiting.items():
            otp.demonitor(mon, flush=True)
            otp.reply(from_, ("ok", gen))
            self.released[token] = gen
        self.waiting = {}
        self.generation += 1
        self.released = {t: g for t, g in self.released.items() if g > gen - _KEEP_GENERATIONS}

    def handle_call(self, request: tuple, from_: tuple, state: Any) -> Any:
        op = request[0]
        if op == "arrive":
            self.waiting[request[1]] = (from_, from_[0], otp.monitor(from_[0]))
            self._watch()
            self._maybe_release()
            return otp.NoReply(self)
        if op == "cancel":
            token = request[1]
            entry = self.waiting.pop(token, None)
            if entry is not None:
                otp.demonitor(entry[2], flush=True)
                return otp.Reply(("ok", ("cancelled", len(self.waiting) + 1)), self)
            if token in self.released:
                return otp.Reply(("ok", ("released", self.released.pop(token))), self)
            return otp.Reply(("ok", ("unknown", 0)), self)
        if op == "info":
            if len(self.waiting) >= request[1]:
                return otp.Reply(self._info(), self)
            self.watchers.append((from_, request[1]))
            return otp.NoReply(self)
        return otp.Reply(("error", ("unknown_call", request)), self)

    def handle_info(self, msg: Any, state: Any) -> Any:
        if isinstance(msg, otp.DOWN):
            for token, entry in self.waiting.items():
                if entry[2] == msg.ref:
                    del self.waiting[token]
                    break
        return otp.NoReply(self)


def barrier(name: Any, parties: int) -> otp.Pid:
    """Get or create the barrier ``name`` for ``parties`` processes (an
    existing barrier keeps its own count)."""
    if isinstance(parties, bool) or not isinstance(parties, int) or parties < 1:
        raise InvalidParameter(f"parties must be an int >= 1, got {parties!r}")
    return ensure("barrier", name, BarrierServer, parties)


def arrive(name: Any, timeout: float = 10.0) -> int:
    """Wait at the barrier until it releases; returns the generation.
    Raises :class:`BarrierTimeout` after ``timeout`` seconds,
    :class:`UnknownPrimitive` if there is no such barrier."""
    token = otp.make_ref()
    try:
        return ask("barrier", name, ("arrive", token), timeout)
    except otp.CallTimeout:
        pass
    outcome, value = ask("barrier", name, ("cancel", token), CANCEL_TIMEOUT)
    if outcome == "released":
        return value
    raise BarrierTimeout(f"barrier {name!r} did not release within {timeout} s", value)


def barrier_info(name: Any, min_waiting: int = 0, timeout: float = 5.0) -> dict:
    """``{'parties', 'waiting', 'generation'}``, once at least
    ``min_waiting`` processes wait (``otp.CallTimeout`` if that does not
    happen within ``timeout``): a coordinator can wait for the parties to
    gather without polling."""
    return ask("barrier", name, ("info", min_waiting), timeout)
