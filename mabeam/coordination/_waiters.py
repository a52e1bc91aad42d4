"""What the lock and the barrier share: callers that wait inside the server.

Both primitives hold their callers' requests unanswered (:data:`otp.DEFER`)
until a decision (a grant, a release) answers them, monitor every waiting
caller, and must never decide for a caller that is already dead.  The rules
for that are one piece of logic, kept here once:

* before deciding, the ``DOWN`` messages already in the mailbox are taken
  (they would otherwise wait behind the request being served), and a waiter
  the kernel already counts as dead (:func:`otp.is_alive` is false from the
  SIGKILL on, though its ``DOWN`` comes milliseconds later) is dropped;
* ``info(min_waiting)`` answers at once or once enough callers wait, so a
  coordinator waits for the parties to gather without polling;
* a caller whose wait times out withdraws with the token it waited with;
  if the decision answered it at that very moment, the withdrawal returns
  that answer, so nobody is granted or released without knowing
  (:func:`wait_turn`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import otp

from ._errors import CoordinationError
from ._primitives import Primitive, reaching

__all__ = ["Turn", "WaitingServer", "wait_turn", "ask_info"]

#: How long a caller whose wait timed out waits to withdraw.
CANCEL_TIMEOUT = 5.0


class Turn(NamedTuple):
    """What a wait came to: ``value`` is the answer (a grant number, a
    generation), whether it came in time or was found on withdrawal, None
    if the caller withdrew unanswered; ``waiting`` is how many waited
    (the caller included) when it withdrew."""

    value: int | None
    waiting: int


class _Watcher(NamedTuple):
    caller: tuple
    min_waiting: int


class WaitingServer(otp.Service):
    """A primitive whose callers wait in it.  A subclass says how many wait
    (:meth:`waiting_count`), what it monitors (:meth:`monitors`), how a
    ``DOWN`` changes it (:meth:`forget`) and what it decides after one
    (:meth:`settle`), and answers :meth:`describe` for ``info``."""

    errors = (CoordinationError,)

    def init_waiting(self) -> None:
        self.watchers: list[_Watcher] = []  # info callers waiting for enough waiters

    def waiting_count(self) -> int:
        raise NotImplementedError

    def monitors(self) -> set[otp.Ref]:
        """The monitors of every process whose death changes a decision."""
        raise NotImplementedError

    def forget(self, monitor: otp.Ref) -> None:
        """The process of ``monitor`` exited."""
        raise NotImplementedError

    def settle(self) -> None:
        """Decide what a death may have made possible."""

    def describe(self) -> dict:
        raise NotImplementedError

    def from_(self) -> tuple:
        """The ``from_`` of the request being served."""
        from_ = self.caller
        assert from_ is not None  # set while an operation runs
        return from_

    def answer_watchers(self) -> None:
        """Answer the ``info`` callers whose ``min_waiting`` is reached."""
        count = self.waiting_count()
        ready = [w for w in self.watchers if count >= w.min_waiting]
        if ready:
            self.watchers = [w for w in self.watchers if w not in ready]
            for w in ready:
                self.answer(w.caller, self.describe())

    def take_downs(self) -> None:
        """Handle the DOWNs already queued, before a decision that must not
        count their senders."""
        monitors = self.monitors()
        while monitors:
            try:
                down = otp.receive(0, lambda m: isinstance(m, otp.DOWN) and m.ref in monitors)
            except otp.Timeout:
                return
            monitors.discard(down.ref)
            self.forget(down.ref)

    @staticmethod
    def is_dead(pid: otp.Pid, monitor: otp.Ref) -> bool:
        """True, and the monitor dropped, if the kernel counts ``pid`` dead
        (its ``DOWN`` may still be on its way)."""
        if otp.is_alive(pid):
            return False
        otp.demonitor(monitor, flush=True)
        return True

    @otp.operation
    def info(self, min_waiting: int) -> dict:
        """The primitive's info, once ``min_waiting`` callers wait (deferred)."""
        if self.waiting_count() >= min_waiting:
            return self.describe()
        self.watchers.append(_Watcher(self.from_(), min_waiting))
        return otp.DEFER

    def handle_info(self, msg: Any, state: Any) -> Any:
        if isinstance(msg, otp.DOWN):
            self.forget(msg.ref)
            self.settle()
        return otp.NoReply(state)


def wait_turn(kind: Primitive, name: Any, op: str, timeout: float) -> Turn:
    """Ask the primitive's ``op`` with a fresh token and wait ``timeout``
    seconds for the answer; past that, withdraw the token (the server's
    ``withdraw`` operation answers a :class:`Turn`)."""
    token = otp.make_ref()
    try:
        with reaching(kind, name) as pid:
            return Turn(otp.ask(pid, op, token, timeout=timeout), 0)
    except otp.CallTimeout:
        pass
    with reaching(kind, name) as pid:
        return otp.ask(pid, "withdraw", token, timeout=CANCEL_TIMEOUT)


def ask_info(kind: Primitive, name: Any, min_waiting: int, timeout: float) -> dict:
    """The primitive's ``info``, once ``min_waiting`` callers wait."""
    with reaching(kind, name) as pid:
        return otp.ask(pid, "info", min_waiting, timeout=timeout)
