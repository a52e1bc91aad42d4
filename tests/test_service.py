"""otp.Service, otp.ask, otp.tell: one request/reply convention."""

from __future__ import annotations

import pickle

import pytest

import otp


class Conflict(otp.OTPError):
    """An error whose __init__ does not take its args (pickle alone cannot rebuild it)."""

    def __init__(self, name: str, current: int) -> None:
        super().__init__(f"{name} is at {current}")
        self.name = name
        self.current = current


class Counters(otp.Service):
    def init(self, start: dict) -> None:
        self.counts = dict(start)
        self.waiting: list = []

    @otp.operation
    def add(self, key: str, n: int = 1) -> int:
        if n < 0:
            raise ValueError(f"n must be >= 0, not {n}")
        self.counts[key] = self.counts.get(key, 0) + n
        for caller in self.waiting:
            self.answer(caller, self.counts[key])
        self.waiting.clear()
        return self.counts[key]

    @otp.operation
    def get(self, key: str) -> int:
        return self.counts[key]  # KeyError: a LookupError, an answer

    @otp.operation
    def expect(self, key: str, version: int) -> None:
        if self.counts.get(key, 0) != version:
            raise Conflict(key, self.counts.get(key, 0))

    @otp.operation
    def next_add(self) -> object:
        self.waiting.append(self.caller)
        return otp.DEFER

    @otp.operation
    def waiters(self) -> int:
        return len(self.waiting)

    @otp.operation
    def bug(self) -> None:
        raise AttributeError("a bug, not an answer")

    def internal(self) -> None:
        """Not an operation: no other process may run it."""


def test_operations_answer_values_and_typed_errors(node):
    pid = Counters.start_link({"a": 1})
    assert otp.ask(pid, "add", "a", 2) == 3
    assert otp.ask(pid, "add", key="b") == 1
    with pytest.raises(ValueError, match="n must be >= 0"):
        otp.ask(pid, "add", "a", -1)
    with pytest.raises(KeyError):
        otp.ask(pid, "get", "missing")
    with pytest.raises(Conflict) as info:
        otp.ask(pid, "expect", "a", 7)
    assert (info.value.name, info.value.current) == ("a", 3)
    assert otp.ask(pid, "get", "a") == 3  # the server carried on


def test_unknown_operations_and_bad_arguments_are_the_callers_mistake(node):
    pid = Counters.start_link({})
    with pytest.raises(otp.UnknownOperation, match="internal"):
        otp.ask(pid, "internal")
    with pytest.raises(otp.UnknownOperation):
        otp.ask(pid, "terminate", "normal", None)
    with pytest.raises(otp.BadArguments, match="add"):
        otp.ask(pid, "add")
    with pytest.raises(otp.BadArguments):
        otp.ask(pid, "get", "a", "b", "c")
    assert otp.ask(pid, "add", "a") == 1


def test_a_bug_crashes_the_server_and_the_caller_sees_its_exit(node):
    otp.trap_exit(True)
    pid = Counters.start_link({})
    with pytest.raises(otp.CalleeExit) as info:
        otp.ask(pid, "bug")
    assert isinstance(info.value.reason, otp.Crash)
    assert "AttributeError" in str(info.value.reason)
    assert otp.receive(5, lambda m: isinstance(m, otp.EXIT) and m.pid == pid)


def test_deferred_answers_and_casts(node):
    pid = Counters.start_link({})
    me = otp.self()

    otp.spawn(_wait_for_next_add, pid, me)
    while otp.ask(pid, "waiters") == 0:  # each ask waits on the server's answer
        pass
    otp.tell(pid, "add", "k", 5)
    assert otp.receive(5, lambda m: m[0] == "next") == ("next", 5)
    otp.tell(pid, "add", "k", -3)  # refused: logged by the server, nothing to answer
    otp.tell(pid, "no-such-operation")
    assert otp.ask(pid, "get", "k") == 5


def _wait_for_next_add(pid: otp.Pid, parent: otp.Pid) -> None:
    otp.send(parent, ("next", otp.ask(pid, "next_add")))


def test_failed_replies_pickle_the_error_by_its_fields():
    failed = pickle.loads(pickle.dumps(otp.Failed(Conflict("x", 4))))
    assert type(failed.error) is Conflict
    assert (failed.error.name, failed.error.current, str(failed.error)) == ("x", 4, "x is at 4")


def test_a_subclass_that_overrides_an_operation_without_marking_it_hides_it():
    class Narrow(Counters):
        def get(self, key: str) -> int:  # no longer reachable by name
            return 0

    assert "get" not in Narrow._operations
    assert "add" in Narrow._operations
