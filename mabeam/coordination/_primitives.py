"""Named coordination primitives, and the counter.

Each primitive (lock, barrier, counter, election) is one gen_server under
the ``mabeam.coordination`` dynamic supervisor, registered in the node's
name registry as ``(prefix, name)``.  Creation is get-or-create and has no
check-then-act race: two processes creating the same primitive at once both
get the one that registered first (the registry decides; the seed
registered globally after a separate lookup and ignored the result).

Primitives are ``restart='temporary'`` by default: a lock, barrier or
election that crashed cannot rebuild its waiters, and restarting one empty
would hand out a lock that someone still believes they hold.  A crash is
reported to the callers waiting on it (:class:`PrimitiveError`).  Counters
accept ``restart='transient'``: a crashed counter then restarts at its
initial value.

A name is a str, int, bytes or tuple of those (the registry's names).
"""

from __future__ import annotations

from typing import Any

import otp
from mabeam._app import COORDINATION

from ._session import CoordinationError, InvalidParameter

__all__ = [
    "PrimitiveError",
    "UnknownPrimitive",
    "PREFIXES",
    "registered_name",
    "ensure",
    "ask",
    "stop_primitive",
    "counter",
    "counter_increment",
    "counter_value",
    "counter_compare_and_set",
    "counter_reset",
]

PREFIXES = {
    "lock": "mabeam.lock",
    "barrier": "mabeam.barrier",
    "counter": "mabeam.counter",
    "election": "mabeam.election",
}


class PrimitiveError(CoordinationError):
    """A primitive refused a request or exited while serving it;
    ``reason`` says why (``'not_holder'``, ``'already_held'``, an exit
    reason...)."""

    def __init__(self, name: Any, reason: Any) -> None:
        super().__init__(name, reason)
        self.name, self.reason = name, reason

    def __str__(self) -> str:
        return f"{self.name!r}: {self.reason!r}"


class UnknownPrimitive(PrimitiveError, LookupError):
    """No such primitive is running."""

    def __init__(self, name: Any, reason: Any = "not_found") -> None:
        super().__init__(name, reason)


def _check_name(name: Any) -> None:
    if isinstance(name, bool) or not isinstance(name, (str, int, bytes, tuple)):
        raise InvalidParameter(f"a primitive's name must be a str, int, bytes or tuple, not {name!r}")
    if isinstance(name, tuple):
        for part in name:
            _check_name(part)


def registered_name(kind: str, name: Any) -> tuple:
    _check_name(name)
    return (PREFIXES[kind], name)


def ensure(kind: str, name: Any, server: type, args: Any, restart: str = "temporary") -> otp.Pid:
    """The pid of the primitive, started under the coordination supervisor
    if it is not running."""
    reg = registered_name(kind, name)
    pid = otp.whereis(reg)
    if pid is not None:
        return pid
    spec = server.child_spec(args, id=reg, name=reg, restart=restart)
    try:
        return otp.supervisor.start_child(COORDINATION, spec)
    except otp.SupervisorError as exc:
        reason = exc.reason
        if isinstance(reason, tuple) and len(reason) == 2 and reason[0] == "already_started":
            return reason[1]
        raise PrimitiveError(reg, reason) from None


def ask(kind: str, name: Any, request: Any, timeout: float | None) -> Any:
    """Call the primitive; its ``('error', reason)`` answers raise
    :class:`PrimitiveError`.  ``otp.CallTimeout`` propagates."""
    reg = registered_name(kind, name)
    try:
        status, value = otp.call(reg, request, timeout)
    except otp.NoProc:
        raise UnknownPrimitive(reg) from None
    except otp.CallTimeout:
        raise
    except otp.CallError as exc:
        raise PrimitiveError(reg, exc.reason) from None
    if status == "error":
        raise PrimitiveError(reg, value)
    return value


def stop_primitive(kind: str, name: Any) -> None:
    """Stop a primitive (its waiters get :class:`PrimitiveError`)."""
    reg = registered_name(kind, name)
    pid = otp.whereis(reg)
    if pid is None:
        raise UnknownPrimitive(reg)
    try:
        otp.supervisor.terminate_child(COORDINATION, pid)
    except otp.SupervisorError as exc:
        if exc.reason != "not_found":
            raise


# ------------------------------------------------------------------ counter


def _number(x: Any, what: str) -> None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise InvalidParameter(f"{what} must be a number, got {x!r}")


class CounterServer(otp.GenServer):
    """A counter: one writer, so increment and compare-and-set are atomic."""

    def init(self, initial: Any) -> Any:
        self.value = initial
        return self

    def handle_call(self, request: tuple, from_: tuple, state: Any) -> Any:
        op = request[0]
        if op == "increment":
            self.value += request[1]
            return otp.Reply(("ok", self.value), self)
        if op == "get":
            return otp.Reply(("ok", self.value), self)
        if op == "cas":
            _, expected, new = request
            if self.value == expected:
                self.value = new
                return otp.Reply(("ok", True), self)
            return otp.Reply(("ok", False), self)
        if op == "reset":
            old, self.value = self.value, request[1]
            return otp.Reply(("ok", old), self)
        return otp.Reply(("error", ("unknown_call", request)), self)


def counter(name: Any, initial: int | float = 0, *, restart: str = "temporary") -> otp.Pid:
    """Get or create the counter ``name`` (``initial`` only applies when it
    is created); ``restart='transient'`` restarts a crashed counter at
    ``initial``."""
    _number(initial, "initial")
    if restart not in ("temporary", "transient", "permanent"):
        raise InvalidParameter(f"invalid restart {restart!r}")
    return ensure("counter", name, CounterServer, initial, restart)


def counter_increment(name: Any, amount: int | float = 1, timeout: float = 5.0) -> int | float:
    """Add ``amount`` (creating the counter at 0 if needed); the new value."""
    _number(amount, "amount")
    counter(name)
    return ask("counter", name, ("increment", amount), timeout)


def counter_value(name: Any, timeout: float = 5.0) -> int | float:
    """The counter's value; 0 if it does not exist (as the seed's ``get_counter``)."""
    try:
        return ask("counter", name, ("get",), timeout)
    except UnknownPrimitive:
        return 0


def counter_compare_and_set(name: Any, expected: Any, new: int | float, timeout: float = 5.0) -> bool:
    """Set the counter to ``new`` if it equals ``expected``; True if it did."""
    _number(new, "new")
    counter(name)
    return ask("counter", name, ("cas", expected, new), timeout)


def counter_reset(name: Any, value: int | float = 0, timeout: float = 5.0) -> int | float:
    """Set the counter to ``value``; returns the old value."""
    _number(value, "value")
    counter(name)
    return ask("counter", name, ("reset", value), timeout)
