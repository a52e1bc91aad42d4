"""Communication between agents: request/response, broadcast, multicast,
pub/sub.  All of it runs in the caller: an agent is found by its registered
name (the caller's replica answers), requests go straight to it with
``otp.ask``, broadcasts are concurrent (``otp.multi_call``).  No hub process
stands between callers and agents.

``kind`` is the agent operation a request runs (see :mod:`mabeam._agent`):
``'request'`` (the default), ``'vote'``, ``'bid'``, ``'offer'``,
``'proposal'``, ``'coordinate'``, ``'run'``, ``'info'``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any, Literal

import otp

from ._agent import agent_name
from ._agent_registry import find_agents
from ._errors import AgentExited, AgentNotRunning, AgentTimeout, CommsError

__all__ = [
    "request",
    "broadcast",
    "multi_request",
    "multicast",
    "subscribe",
    "unsubscribe",
    "publish",
    "whereis_agent",
    "Outcome",
    "TOPICS",
    "CommsError",
]

#: The keyed registry (duplicate keys) that holds topic subscriptions.
TOPICS = "mabeam.topics"
DEFAULT_TIMEOUT = 5.0

#: One agent's part of a broadcast: ``('ok', answer)`` or ``('error', exc)``
#: (a :class:`CommsError`, an :class:`AgentError`, or the kernel's
#: ``UnknownOperation`` / ``BadArguments`` for a ``kind`` the agent lacks).
Outcome = tuple[Literal["ok"], Any] | tuple[Literal["error"], Exception]


def whereis_agent(agent_id: Hashable) -> otp.Pid | None:
    """The pid of a running agent, or None.

    A name lookup alone may still find, for a moment, an agent that was
    killed (the name registry drops the name when it hears of the death,
    and this process's replica of the names hears of it later still),
    while its supervisor, the agent registry or a monitor already reported
    the death.  The kernel's view of the process settles it: once anyone
    can have seen the agent die, this says None."""
    pid = otp.whereis(agent_name(agent_id))
    if pid is None or not otp.is_alive(pid):
        return None
    return pid


def _unreachable(agent_id: Hashable, exc: otp.CallError) -> CommsError:
    """Why a call to the agent got no answer, as its cause: an agent gone
    before the call reached it is not running (``NoProc``, or a call
    monitor's ``'noproc'``); one that exited after is :class:`AgentExited`."""
    if isinstance(exc, otp.CallTimeout):
        return AgentTimeout(agent_id)
    if isinstance(exc, otp.NoProc) or exc.reason == "noproc":
        return AgentNotRunning(agent_id)
    return AgentExited(agent_id, exc.reason)


def request(agent_id: Hashable, message: Any, timeout: float | None = DEFAULT_TIMEOUT, kind: str = "request") -> Any:
    """Run the agent's ``kind`` operation on ``message`` and return its answer.

    Raises a :class:`CommsError` if the agent is not running
    (:class:`AgentNotRunning`: also an agent whose death anyone has seen,
    or that was gone before the request reached it), does not answer in
    time (:class:`AgentTimeout`) or exits after the request was sent
    (:class:`AgentExited`, with its exit reason), and :class:`HookFailed`
    if its hook raised."""
    # The name alone, not whereis_agent: an agent whose death anyone has
    # seen has exited, and a call to a process that has exited is refused
    # with NoProc (the kernel's monitor finds it gone), which is what
    # whereis_agent's look at the process would have told, at a third of the
    # cost of a request.
    pid = otp.whereis(agent_name(agent_id))
    if pid is None:
        raise AgentNotRunning(agent_id)
    try:
        return otp.ask(pid, kind, message, timeout=timeout)
    except otp.CallError as exc:
        raise _unreachable(agent_id, exc) from None


def broadcast(
    agent_ids: Iterable[Hashable], message: Any, timeout: float | None = DEFAULT_TIMEOUT, kind: str = "request"
) -> list[Outcome]:
    """Ask every agent at once; returns ``[('ok', answer) | ('error', exc)]``
    in the order of ``agent_ids``.  One slow or dead agent costs the others
    nothing: the calls run concurrently."""
    return multi_request([(agent_id, kind, message) for agent_id in agent_ids], timeout)


def multi_request(requests: list[tuple[Hashable, str, Any]], timeout: float | None = DEFAULT_TIMEOUT) -> list[Outcome]:
    """Concurrent calls with a payload per agent: ``requests`` is a list of
    ``(agent_id, kind, payload)``; returns ``[('ok', answer) | ('error',
    exc)]`` in order (:func:`broadcast` sends one payload to all)."""
    pids = {i: pid for i, (agent_id, _, _) in enumerate(requests) if (pid := whereis_agent(agent_id)) is not None}
    calls = otp.multi_call(
        [(pid, otp.Request(requests[i][1], (requests[i][2],), {})) for i, pid in pids.items()], timeout
    )
    replies = dict(zip(pids, calls))
    return [_outcome(agent_id, replies.get(i)) for i, (agent_id, _, _) in enumerate(requests)]


def _outcome(agent_id: Hashable, reply: tuple[str, Any] | None) -> Outcome:
    """One agent's part of :func:`multi_request` from its ``multi_call``
    result (None: it was not running)."""
    if reply is None:
        return ("error", AgentNotRunning(agent_id))
    status, answer = reply
    if status != "ok":
        return ("error", _unreachable(agent_id, answer))
    if type(answer) is otp.Ok:
        return ("ok", answer.value)
    if type(answer) is otp.Failed and isinstance(answer.error, Exception):
        return ("error", answer.error)
    raise TypeError(f"agent {agent_id!r} answered {answer!r}: not an otp.Service reply")


def multicast(
    capabilities: Iterable[str], message: Any, timeout: float | None = DEFAULT_TIMEOUT
) -> dict[Hashable, Outcome]:
    """Ask every running agent that has all ``capabilities``;
    ``{agent_id: ('ok', answer) | ('error', exc)}``."""
    ids = find_agents(capabilities=capabilities, status="running")
    return dict(zip(ids, broadcast(ids, message, timeout)))


def subscribe(topic: Hashable) -> None:
    """Subscribe the calling process (agent or not) to ``topic``.  Its
    subscription ends when it exits (the topics registry monitors it)."""
    otp.Registry.register(TOPICS, topic)


def unsubscribe(topic: Hashable) -> None:
    """End the calling process's subscription to ``topic``."""
    otp.Registry.unregister(TOPICS, topic)


def publish(topic: Hashable, event: Any) -> int:
    """Send ``event`` to every subscriber of ``topic`` (agents get it in
    ``handle_event``, other processes as ``('$mabeam_event', topic, event)``);
    returns how many were sent.  Delivery is asynchronous, in order per
    subscriber."""
    subscribers = otp.Registry.lookup(TOPICS, topic)
    for pid, _ in subscribers:
        otp.send(pid, ("$mabeam_event", topic, event))
    return len(subscribers)
