"""The counter primitive: one writer, so increment and compare-and-set are atomic."""

from __future__ import annotations

from typing import Any

import otp

from ._errors import CoordinationError, InvalidParameter, UnknownPrimitive
from ._primitives import Primitive, ensure, reaching

__all__ = [
    "CounterServer",
    "create_counter",
    "increment_counter",
    "get_counter_value",
    "compare_and_set_counter",
    "reset_counter",
]

Number = int | float
RESTARTS = ("temporary", "transient", "permanent")


def _number(x: Any, what: str) -> None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise InvalidParameter(f"{what} must be a number, got {x!r}")


class CounterServer(otp.Service):
    errors = (CoordinationError,)

    def init(self, initial: Number) -> None:
        self.count = initial

    @otp.operation
    def increment(self, amount: Number) -> Number:
        self.count += amount
        return self.count

    @otp.operation
    def get(self) -> Number:
        return self.count

    @otp.operation
    def compare_and_set(self, expected: Any, new: Number) -> bool:
        if self.count != expected:
            return False
        self.count = new
        return True

    @otp.operation
    def reset(self, value: Number) -> Number:
        old, self.count = self.count, value
        return old


def create_counter(name: Any, initial: Number = 0, *, restart: str = "temporary") -> otp.Pid:
    """Get or create the counter ``name`` (``initial`` only applies when it
    is created); ``restart='transient'`` restarts a crashed counter at
    ``initial``."""
    _number(initial, "initial")
    if restart not in RESTARTS:
        raise InvalidParameter(f"invalid restart {restart!r}")
    return ensure(Primitive.COUNTER, name, CounterServer, initial, restart)


def increment_counter(name: Any, amount: Number = 1, timeout: float = 5.0) -> Number:
    """Add ``amount`` (creating the counter at 0 if needed); the new value."""
    _number(amount, "amount")
    create_counter(name)
    with reaching(Primitive.COUNTER, name) as pid:
        return otp.ask(pid, "increment", amount, timeout=timeout)


def get_counter_value(name: Any, timeout: float = 5.0) -> Number:
    """The counter's value; 0 if it does not exist."""
    try:
        with reaching(Primitive.COUNTER, name) as pid:
            return otp.ask(pid, "get", timeout=timeout)
    except UnknownPrimitive:
        return 0


def compare_and_set_counter(name: Any, expected: Any, new: Number, timeout: float = 5.0) -> bool:
    """Set the counter to ``new`` if it equals ``expected``; True if it did."""
    _number(new, "new")
    create_counter(name)
    with reaching(Primitive.COUNTER, name) as pid:
        return otp.ask(pid, "compare_and_set", expected, new, timeout=timeout)


def reset_counter(name: Any, value: Number = 0, timeout: float = 5.0) -> Number:
    """Set the counter to ``value``; returns the old value."""
    _number(value, "value")
    create_counter(name)
    with reaching(Primitive.COUNTER, name) as pid:
        return otp.ask(pid, "reset", value, timeout=timeout)
