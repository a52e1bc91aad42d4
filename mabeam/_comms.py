"""Communication between agents: request/response, broadcast, multicast,
pub/sub.  All of it runs in the caller: an agent is found by its registered
name (the caller's replica answers), requests go straight to it, broadcasts
are concurrent (``otp.multi_call``).  There is no hub process to funnel
through (the seed's Comms proxied every request inside one gen_server).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import otp

from ._agent import agent_name

__all__ = [
    "request",
    "broadcast",
    "multi_request",
    "multicast",
    "subscribe",
    "unsubscribe",
    "publish",
    "agent_pid",
    "TOPICS",
    "CommsError",
]

#: The keyed registry (duplicate keys) that holds topic subscriptions.
TOPICS = "mabeam.topics"
DEFAULT_TIMEOUT = 5.0


class CommsError(otp.OTPError):
    """An agent could not be reached (``reason``: 'not_running', 'timeout',
    or the agent's exit reason)."""

    def __init__(self, agent_id: Any, reason: Any) -> None:
        super().__init__(agent_id, reason)
        self.agent_id = agent_id
        self.reason = reason


def agent_pid(agent_id: Any) -> otp.Pid | None:
    """The pid of a running agent, or None."""
    return otp.whereis(agent_name(agent_id))


def _unwrap(agent_id: Any, answer: tuple) -> Any:
    status, value = answer
    if status == "ok":
        return value
    raise value


def request(agent_id: Any, message: Any, timeout: float | None = DEFAULT_TIMEOUT, kind: str = "request") -> Any:
    """Send ``message`` to the agent and return its answer.

    Raises :class:`CommsError` if the agent is not running, does not answer
    in time or exits meanwhile, and :class:`AgentError` if its hook raised."""
    pid = agent_pid(agent_id)
    if pid is None:
        raise CommsError(agent_id, "not_running")
    try:
        answer = otp.call(pid, ("$mabeam", kind, message), timeout)
    except otp.CallTimeout:
        raise CommsError(agent_id, "timeout") from None
    except otp.CallError as exc:
        raise CommsError(agent_id, exc.reason) from None
    return _unwrap(agent_id, answer)


def broadcast(
    agent_ids: Iterable[Any], message: Any, timeout: float | None = DEFAULT_TIMEOUT, kind: str = "request"
) -> list:
    """Ask every agent at once; returns ``[('ok', answer) | ('error', exc)]``
    in the order of ``agent_ids``.  One slow or dead agent costs the others
    nothing: the calls run concurrently."""
    return multi_request([(agent_id, kind, message) for agent_id in agent_ids], timeout)


def multi_request(requests: list, timeout: float | None = DEFAULT_TIMEOUT) -> list:
    """Concurrent calls with a payload per agent: ``requests`` is a list of
    ``(agent_id, kind, payload)``; returns ``[('ok', answer) | ('error',
    exc)]`` in order (:func:`broadcast` sends one payload to all)."""
    out: list = [None] * len(requests)
    targets, index = [], []
    for i, (agent_id, kind, payload) in enumerate(requests):
        pid = agent_pid(agent_id)
        if pid is None:
            out[i] = ("error", CommsError(agent_id, "not_running"))
        else:
            targets.append((pid, ("$mabeam", kind, payload)))
            index.append(i)
    for i, (status, value) in zip(index, otp.multi_call(targets, timeout)):
        agent_id = requests[i][0]
        if status == "ok":
            answer_status, answer = value
            out[i] = ("ok", answer) if answer_status == "ok" else ("error", answer)
        elif isinstance(value, otp.CallTimeout):
            out[i] = ("error", CommsError(agent_id, "timeout"))
        else:
            out[i] = ("error", CommsError(agent_id, value.reason))
    return out


def multicast(capabilities: Iterable[str], message: Any, timeout: float | None = DEFAULT_TIMEOUT) -> dict:
    """Ask every running agent that has all ``capabilities``;
    ``{agent_id: ('ok', answer) | ('error', exc)}``."""
    from ._agent_registry import find_agents

    ids = find_agents(capabilities=capabilities, status="running")
    return dict(zip(ids, broadcast(ids, message, timeout)))


def subscribe(topic: Any) -> None:
    """Subscribe the calling process (agent or not) to ``topic``.  Its
    subscription ends when it exits (the topics registry monitors it)."""
    otp.Registry.register(TOPICS, topic)


def unsubscribe(topic: Any) -> None:
    otp.Registry.unregister(TOPICS, topic)


def publish(topic: Any, event: Any) -> int:
    """Send ``event`` to every subscriber of ``topic`` (agents get it in
    ``handle_event``, other processes as ``('$mabeam_event', topic, event)``);
    returns how many were sent.  Delivery is asynchronous, in order per
    subscriber."""
    subscribers = otp.Registry.lookup(TOPICS, topic)
    for pid, _ in subscribers:
        otp.send(pid, ("$mabeam_event", topic, event))
    return len(subscribers)
