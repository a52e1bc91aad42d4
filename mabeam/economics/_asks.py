"""Asking agents without waiting: one asynchronous request per agent.

An auction asks its participants a :class:`~._mechanisms.Question` (run
``handle_bid``/``handle_offer`` on a view).  Its host must never wait on an
agent: many auctions share the host, and a slow agent in one must not
delay the others.  :class:`AgentAsk` sends one ``otp.send_request`` per
agent at once (all of them in one :class:`otp.RequestIdCollection`) and
returns; each answer, or the death of an agent (its request's monitor),
arrives later as an ``otp.Response`` or ``otp.DOWN`` message in the host's
mailbox, which the host hands to :meth:`AgentAsk.take` (every request's
reference is entered in the host's ``routes``).  The wait ends when every
agent answered, or when the auction's ``otp`` timer fires
(:meth:`AgentAsk.expire`: the requests still out are abandoned, so their
late answers are dropped where they arrive, and those agents count as
timed out).

:func:`ask_agents` is the same fan-out for a process that may wait: it
sends, then receives until done or the timeout.
"""

from __future__ import annotations

import time
from typing import Any

import otp

from .._comms import whereis_agent
from .._errors import AgentExited, AgentNotRunning, AgentTimeout
from ._mechanisms import AgentAnswer, Question

__all__ = ["AgentAsk", "ask_agents"]

_Label = tuple[int, Any, otp.Pid]


class AgentAsk:
    """One question out to several agents; the answers are taken as the
    host receives them (see the module doc).  ``answered_by`` maps each
    agent that answered to the pid that did."""

    def __init__(self, question: Question, routes: dict[otp.Ref, Any], owner: Any) -> None:
        self.ids = list(question.ids)
        self.answers: list[AgentAnswer | None] = [None] * len(self.ids)
        self.answered_by: dict[Any, otp.Pid] = {}
        self.pending: otp.RequestIdCollection[_Label] = otp.RequestIdCollection()
        self._routes = routes
        request = otp.Request(question.kind, (question.payload,), {})
        for i, agent in enumerate(self.ids):
            pid = whereis_agent(agent)
            if pid is None:
                self.answers[i] = AgentAnswer(None, AgentNotRunning(agent))
                continue
            req = otp.send_request(pid, request)
            self.pending.add(req, (i, agent, pid))
            routes[req.ref] = owner

    @property
    def done(self) -> bool:
        """True once no answer is awaited."""
        return not len(self.pending)

    def take(self, msg: otp.Response | otp.DOWN) -> bool:
        """Take ``msg`` if it settles one of the requests (an answer, or
        the death of the agent asked); True if it did."""
        if not len(self.pending):
            return False
        try:
            settled = otp.check_any_response(msg, self.pending)
        except otp.CallError as exc:
            self._routes.pop(msg.ref, None)
            self._failed(exc)
            return True
        if settled is otp.NO_REPLY:
            return False
        self._routes.pop(msg.ref, None)
        reply, label, _ = settled
        self._answered(reply, label)
        return True

    def expire(self) -> None:
        """The wait is over: the answers already received are taken, the
        other requests are abandoned (their agents timed out)."""
        for req, _ in self.pending:
            self._routes.pop(req.ref, None)
        while len(self.pending):
            try:
                reply, label, _ = otp.receive_any_response(self.pending, 0)
            except otp.CallTimeout:
                break  # every request still out was abandoned: its answer is dropped
            except otp.CallError as exc:
                self._failed(exc)
            else:
                self._answered(reply, label)

    def result(self) -> list[AgentAnswer]:
        """One answer per id, in order; an agent that did not answer timed out."""
        return [AgentAnswer(None, AgentTimeout(self.ids[i])) if a is None else a for i, a in enumerate(self.answers)]

    def _answered(self, reply: Any, label: _Label) -> None:
        i, agent, pid = label
        self.answers[i] = _answer(agent, reply)
        self.answered_by[agent] = pid

    def _failed(self, exc: otp.CallError) -> None:
        i, agent, _ = exc.label  # type: ignore[attr-defined]  # set by the *_any_response functions
        # gone before the request reached it: not running; after: exited
        not_running = isinstance(exc, otp.NoProc) or exc.reason == "noproc"
        self.answers[i] = AgentAnswer(None, AgentNotRunning(agent) if not_running else AgentExited(agent, exc.reason))


def _answer(agent: Any, reply: Any) -> AgentAnswer:
    """An agent's answer from its ``otp.Service`` reply."""
    if type(reply) is otp.Ok:
        return AgentAnswer(reply.value)
    if type(reply) is otp.Failed and isinstance(reply.error, Exception):
        return AgentAnswer(None, reply.error)
    raise TypeError(f"agent {agent!r} answered {reply!r}: not an otp.Service reply")


def ask_agents(
    ids: list, payload: Any, kind: str, timeout: float | None, answered_by: dict | None = None
) -> list[AgentAnswer]:
    """Run the ``kind`` operation of every agent of ``ids`` on ``payload``
    and return their answers in the order of ``ids``: the value, or the
    cause that kept an agent from answering (``AgentNotRunning``,
    ``AgentTimeout``, ``AgentExited``, the hook's ``HookFailed``, or the
    kernel's ``UnknownOperation`` for a ``kind`` the agent lacks).

    The requests go out at once; the whole takes the slowest answer and at
    most ``timeout`` (None: no limit).  The pid that answered is recorded
    in ``answered_by``."""
    routes: dict[otp.Ref, Any] = {}
    ask = AgentAsk(Question(list(ids), payload, kind), routes, None)
    deadline = None if timeout is None else time.monotonic() + timeout
    while not ask.done:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            msg = otp.receive(wait, lambda m: isinstance(m, (otp.Response, otp.DOWN)) and m.ref in routes)
        except otp.Timeout:
            break
        ask.take(msg)
    ask.expire()
    if answered_by is not None:
        answered_by.update(ask.answered_by)
    return ask.result()
