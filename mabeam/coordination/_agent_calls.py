"""Asking agents, with each answer as a typed record.

Sessions, representatives and elections ask many agents at once.  Every
agent gets its own asynchronous request (:func:`otp.send_request`, the
agent's ``kind`` operation on the payload), all of them in one
:class:`otp.RequestIdCollection`; the answers are taken one at a time as
they arrive, each settling only its own agent.  So the agents answer
concurrently, an agent that dies costs nothing beyond its ``DOWN`` (which
settles its request at once), a slow one delays only its own answer up to
the common deadline, and the asker needs no helper process: it waits
with :func:`ask_all` / :func:`ask_each`, or takes the answers in a receive
loop of its own (:meth:`AgentCalls.take`).  (Session hosts ask agents
their own way, with no monitor per request: :mod:`._host_asks`.)

This module is the one place that reads the answers: each becomes an
:class:`Answer` (the hook's value) or a :class:`NoAnswer` whose ``reason``
says why the agent gave none, the same terms as :func:`mabeam.broadcast`'s
errors.  The records travel between processes (a representative sends
them back in its own answer).
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from typing import Any, NamedTuple

import otp
from mabeam._comms import whereis_agent
from mabeam._errors import AgentError, CommsError

__all__ = [
    "Answer",
    "NoAnswer",
    "Outcome",
    "AgentRequest",
    "AgentCalls",
    "ask_all",
    "ask_each",
    "failure_reason",
]


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


def _unreachable(exc: otp.CallError) -> Any:
    """The reason of a request that got no reply, as :func:`mabeam.request`
    names it (``AgentTimeout``, ``AgentNotRunning``, ``AgentExited``)."""
    if isinstance(exc, otp.CallTimeout):
        return "timeout"
    if isinstance(exc, otp.NoProc):  # it was gone between the lookup and the request
        return "not_running"
    return exc.reason


class AgentCalls:
    """Requests to several agents, in flight: the answers are settled as
    they arrive (:meth:`wait`, or :meth:`take` from a receive loop of one's
    own, a server's ``handle_info``); ``outcomes`` holds them in the order
    of the requests.

    Each request is sent at once; an agent that is not running is settled
    at once (``'not_running'``); when ``timeout`` seconds have passed the
    requests still open are abandoned (an answer that comes later never
    reaches the mailbox) and settled as ``'timeout'``."""

    def __init__(self, requests: Sequence[AgentRequest], timeout: float) -> None:
        self.requests = list(requests)
        self.deadline = time.monotonic() + timeout
        self.outcomes: list[Outcome] = [NoAnswer("timeout")] * len(self.requests)
        self.pending: otp.RequestIdCollection[int] = otp.RequestIdCollection()
        self._refs: set[otp.Ref] = set()
        me = otp.self()
        for i, (agent_id, kind, payload) in enumerate(self.requests):
            pid = whereis_agent(agent_id)
            if pid is None:
                self.outcomes[i] = NoAnswer("not_running")
            elif pid == me:  # it would wait on itself until the deadline
                self.outcomes[i] = NoAnswer("calling_self")
            else:
                req = otp.send_request(pid, otp.Request(kind, (payload,), {}))
                self.pending.add(req, i)
                self._refs.add(req.ref)

    @property
    def done(self) -> bool:
        return not len(self.pending)

    def remaining(self) -> float:
        """Seconds until the deadline (0 once it has passed)."""
        return max(0.0, self.deadline - time.monotonic())

    def is_answer(self, msg: object) -> bool:
        """Whether ``msg`` settles one of the open requests (an
        ``otp.Response``, or the ``DOWN`` of the agent's monitor)."""
        return isinstance(msg, (otp.Response, otp.DOWN)) and msg.ref in self._refs

    def take(self, msg: object) -> bool:
        """Settle the request ``msg`` answers (``check_any_response``);
        False if it answers none of them."""
        if self.done or not isinstance(msg, (otp.Response, otp.DOWN)) or msg.ref not in self._refs:
            return False
        self._refs.discard(msg.ref)
        try:
            value, i, _ = otp.check_any_response(msg, self.pending)
        except otp.CallError as exc:  # its agent exited, or was gone when asked
            self._settle_error(exc)
        else:
            self._settle(i, value)
        return True

    def expire(self) -> None:
        """The deadline has passed: take the answers that have arrived, and
        abandon the rest (``'timeout'``)."""
        self.deadline = time.monotonic()
        self.wait()

    def wait(self) -> list[Outcome]:
        """Take every answer as it arrives until all are in or the deadline
        has passed (``receive_any_response``); the outcomes."""
        while not self.done:
            try:
                value, i, _ = otp.receive_any_response(self.pending, self.remaining())
            except otp.CallTimeout:  # every request still open is abandoned: 'timeout'
                break
            except otp.CallError as exc:
                self._settle_error(exc)
            else:
                self._settle(i, value)
        self._refs.clear()
        return self.outcomes

    def _settle(self, i: int, reply: Any) -> None:
        """The agent's Service reply: the hook's value, or why it gave none."""
        if type(reply) is otp.Ok:
            self.outcomes[i] = Answer(reply.value)
        elif type(reply) is otp.Failed and isinstance(reply.error, Exception):
            self.outcomes[i] = NoAnswer(failure_reason(reply.error))
        else:
            raise TypeError(f"agent {self.requests[i].agent_id!r} answered {reply!r}: not an otp.Service reply")

    def _settle_error(self, exc: otp.CallError) -> None:
        """A request that got no reply (``exc.label`` is its index)."""
        self.outcomes[exc.label] = NoAnswer(_unreachable(exc))  # type: ignore[attr-defined]


def ask_each(requests: Sequence[AgentRequest], timeout: float) -> list[Outcome]:
    """Ask each agent its ``kind`` hook about its ``payload``, all at once;
    the outcomes in the order of ``requests``, within ``timeout`` seconds."""
    return AgentCalls(requests, timeout).wait()


def ask_all(agent_ids: Sequence[Hashable], payload: Any, kind: str, timeout: float) -> list[Outcome]:
    """Ask every agent's ``kind`` hook about ``payload`` at once; the
    outcomes in the order of ``agent_ids``."""
    return ask_each([AgentRequest(agent_id, kind, payload) for agent_id in agent_ids], timeout)
