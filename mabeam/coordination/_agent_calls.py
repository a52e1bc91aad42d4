"""Asking agents, with each answer as a typed record.

Sessions and elections ask many agents at once through
:func:`mabeam.broadcast` / :func:`mabeam.multi_request` (concurrent calls
to the agents' hooks).  This module is the one place that reads their
answers: each becomes an :class:`Answer` (the hook's value) or a
:class:`NoAnswer` whose ``reason`` says why the agent gave none.  The
records travel between processes (a session's task sends them back).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, NamedTuple

from mabeam._comms import broadcast, multi_request
from mabeam._errors import AgentError, CommsError

__all__ = ["Answer", "NoAnswer", "Outcome", "AgentRequest", "ask_all", "ask_each", "failure_reason"]


class Answer(NamedTuple):
    """What the agent's hook returned."""

    value: Any


class NoAnswer(NamedTuple):
    """The agent gave no answer: ``reason`` is ``'not_running'``,
    ``'timeout'``, its exit reason (``'killed'``...), or ``('hook_raised',
    reason)`` when its hook raised."""

    reason: Any


Outcome = Answer | NoAnswer


class AgentRequest(NamedTuple):
    """One call of :func:`ask_each`: ``payload`` for the agent's ``kind`` hook."""

    agent_id: Hashable
    kind: str
    payload: Any


def failure_reason(exc: BaseException) -> Any:
    """Why an agent gave no answer (see :class:`NoAnswer`)."""
    if isinstance(exc, CommsError):
        return exc.reason
    if isinstance(exc, AgentError):
        return ("hook_raised", exc.reason)
    return ("error", exc)


def _outcomes(answers: list) -> list[Outcome]:
    return [Answer(value) if status == "ok" else NoAnswer(failure_reason(value)) for status, value in answers]


def ask_all(agent_ids: Sequence[Hashable], payload: Any, kind: str, timeout: float) -> list[Outcome]:
    """Ask every agent's ``kind`` hook about ``payload`` at once; the
    outcomes in the order of ``agent_ids``."""
    return _outcomes(broadcast(agent_ids, payload, timeout=timeout, kind=kind))


def ask_each(requests: Sequence[AgentRequest], timeout: float) -> list[Outcome]:
    """Like :func:`ask_all` with a payload per agent."""
    return _outcomes(multi_request([tuple(r) for r in requests], timeout))
