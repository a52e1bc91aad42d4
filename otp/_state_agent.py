"""Elixir's Agent: a process holding one value, read and changed by
functions that run inside it.

::

    counter = otp.Agent.start_link(lambda: 0)
    otp.Agent.update(counter, lambda n: n + 1)
    otp.Agent.get(counter, lambda n: n)                          # 1
    otp.Agent.get_and_update(counter, lambda n: (n, n + 10))     # 1; now 11
    otp.Agent.stop(counter)

The functions travel to the agent by value when they must (lambdas and
closures go with cloudpickle), run there one at a time, and only their
result comes back.  As in Elixir, an exception in a function crashes the
agent: the caller of ``get``/``update``/``get_and_update`` gets
:class:`otp.CalleeExit` with the agent's exit reason (an
:class:`otp.Crash`), and a linked caller that does not trap exits dies
with it.  An agent is a gen_server: ``child_spec`` puts it under a
supervisor, ``name=`` registers it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from . import _gen_server
from ._child_spec import ChildSpec
from ._gen_server import DEFAULT_CALL_TIMEOUT, ServerName, ServerRef
from ._pid import Pid
from ._service import Service, ask, operation, tell

__all__ = ["Agent", "BadUpdate"]

T = TypeVar("T")


class BadUpdate(TypeError):
    """The function of ``get_and_update`` did not return ``(value,
    new_state)``; it crashes the agent (Elixir's MatchError)."""


class _AgentServer(Service):
    """The agent process: its value and the operations on it."""

    # Nothing an agent's function raises is an answer: it crashes the agent,
    # as in Elixir.
    errors = ()

    def init(self, fn: Callable[[], Any]) -> None:
        self.value = fn()

    @operation
    def get(self, fn: Callable[[Any], Any]) -> Any:
        return fn(self.value)

    @operation
    def update(self, fn: Callable[[Any], Any]) -> None:
        self.value = fn(self.value)

    @operation
    def get_and_update(self, fn: Callable[[Any], tuple[Any, Any]]) -> Any:
        result = fn(self.value)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise BadUpdate(f"get_and_update's function must return (value, new_state), not {result!r}")
        reply, self.value = result
        return reply


class Agent:
    """Elixir's Agent: start one, then hand it functions of its value."""

    @staticmethod
    def start_link(
        fn: Callable[[], Any], *, name: ServerName | None = None, timeout: float | None = DEFAULT_CALL_TIMEOUT
    ) -> Pid:
        """Start an agent linked to the caller, its value ``fn()`` (run in
        the agent).  Raises :class:`otp.StartError` if ``fn`` raised (the
        reason an :class:`otp.Crash`), or did not return within
        ``timeout``, or ``name`` is taken (``('already_started', pid)``)."""
        pid = _AgentServer.start_link(fn, name=name, timeout=timeout)
        assert pid is not None  # an agent's init never ignores
        return pid

    @staticmethod
    def start(
        fn: Callable[[], Any], *, name: ServerName | None = None, timeout: float | None = DEFAULT_CALL_TIMEOUT
    ) -> Pid:
        """:meth:`start_link` without the link."""
        pid = _AgentServer.start(fn, name=name, timeout=timeout)
        assert pid is not None  # an agent's init never ignores
        return pid

    @staticmethod
    def child_spec(fn: Callable[[], Any], id: Any = "Agent", *, name: ServerName | None = None, **kw: Any) -> ChildSpec:  # noqa: A002
        """A child spec running ``Agent.start_link(fn, name=name)``; ``kw``
        are :func:`otp.child_spec`'s keywords."""
        return _AgentServer.child_spec(fn, id, name=name, **kw)

    @staticmethod
    def get(agent: ServerRef, fn: Callable[[Any], T], timeout: float | None = DEFAULT_CALL_TIMEOUT) -> T:
        """``fn(value)``, run in the agent; the value does not change."""
        result: T = ask(agent, "get", fn, timeout=timeout)
        return result

    @staticmethod
    def update(agent: ServerRef, fn: Callable[[Any], Any], timeout: float | None = DEFAULT_CALL_TIMEOUT) -> None:
        """Replace the value by ``fn(value)``; returns once it is done."""
        ask(agent, "update", fn, timeout=timeout)

    @staticmethod
    def get_and_update(
        agent: ServerRef, fn: Callable[[Any], tuple[T, Any]], timeout: float | None = DEFAULT_CALL_TIMEOUT
    ) -> T:
        """``fn(value)`` returns ``(reply, new_value)``: the value becomes
        ``new_value`` and ``reply`` is returned."""
        result: T = ask(agent, "get_and_update", fn, timeout=timeout)
        return result

    @staticmethod
    def cast(agent: ServerRef, fn: Callable[[Any], Any]) -> None:
        """Replace the value by ``fn(value)`` without waiting; never fails."""
        tell(agent, "update", fn)

    @staticmethod
    def stop(agent: ServerRef, reason: Any = "normal", timeout: float | None = None) -> None:
        """Stop the agent with ``reason`` and return once it exited; raises
        as :func:`otp.stop`."""
        _gen_server.stop(agent, reason, timeout)
