"""How a session host asks agents: one cast each, one message back, and
one monitor per agent however many sessions wait on it.

``otp.send_request`` sets up a monitor of the server for each request and
removes it with the answer: two signals to the agent, a pidfd opened and
closed, and the agent's signal thread woken twice, which costs about as
much as the request itself.  A host asks agents all day, so it asks them
this way instead:

* the request is a cast of the agent's ``run`` operation with
  :func:`answer_host`, which runs in the agent's process the hook the
  request names (``vote``, ``proposal``, ``coordinate``, ``run``,
  ``request``: the same operation ``mabeam.request`` and
  :class:`._agent_calls.AgentCalls` call, so the same hook with the same
  errors) and sends its :class:`Answer` or :class:`NoAnswer` back to the
  host as an :class:`AgentReply` tagged with the request's reference;
* the host monitors each agent it has requests open to, once (and keeps
  the monitors of the last :data:`IDLE_AGENTS` agents it asked, so that
  a round after round costs no monitor each).  The agent's ``DOWN``
  settles every request open to it, in every session, at once:
  ``'not_running'`` if it was gone when asked, else its exit reason
  (``'killed'``...).  The kernel delivers an agent's messages before its
  ``DOWN``, so an answer it sent before dying is never lost to its death;
* a request still open at its step's deadline is withdrawn (``'timeout'``);
  an answer that comes later matches no open request and is dropped.

An agent is found with :func:`mabeam.whereis_agent`, as everywhere: one
whose death anyone has seen is not asked (``'not_running'``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import otp
from mabeam._comms import whereis_agent

from ._agent_calls import AgentRequest, Answer, NoAnswer, Outcome, failure_reason
from ._kept_monitors import KeptMonitors

__all__ = ["AgentReply", "AGENT_KINDS", "IDLE_AGENTS", "Step", "Asker", "answer_host"]

#: The agent operations a session may ask.
AGENT_KINDS = frozenset({"request", "vote", "proposal", "coordinate", "run"})
#: Agents with no request open whose monitor a host keeps.
IDLE_AGENTS = 512


class AgentReply(NamedTuple):
    """Agent -> host: the outcome of the request ``ref``."""

    ref: otp.Ref
    outcome: Outcome


def answer_host(agent: Any, host: otp.Pid, ref: otp.Ref, kind: str, payload: Any) -> None:
    """Run in the agent (its ``run`` operation, cast by a host): its
    ``kind`` operation on ``payload``, the outcome sent to ``host``."""
    outcome: Outcome
    try:
        outcome = Answer(getattr(agent, kind)(payload))
    except Exception as exc:  # noqa: BLE001 - the hook's failure is the answer (HookFailed, as a request's)
        outcome = NoAnswer(failure_reason(exc))
    try:
        otp.send(host, AgentReply(ref, outcome))
    except otp.EncodeError as exc:
        otp.send(host, AgentReply(ref, NoAnswer(("unsendable_answer", str(exc)))))


class Step:
    """One step's requests (a session's :class:`._session.AskAgents`), in
    flight: ``outcomes`` in the order of the requests, ``left`` still open."""

    __slots__ = ("owner", "outcomes", "refs", "left", "deadline")

    def __init__(self, owner: Any, n: int, timeout: float) -> None:
        self.owner = owner
        self.outcomes: list[Outcome] = [NoAnswer("timeout")] * n
        self.refs: list[otp.Ref] = []
        self.left = 0
        self.deadline = time.monotonic() + timeout


class Asker:
    """A host's requests to agents, across all its sessions (see the module doc)."""

    def __init__(self) -> None:
        self.me = otp.self()
        self.open: dict[otp.Ref, tuple[Step, int, otp.Pid]] = {}  # request -> its step, index, agent
        self.agents = KeptMonitors(IDLE_AGENTS)  # each agent's open requests

    def ask(self, owner: Any, requests: Sequence[AgentRequest], timeout: float) -> Step:
        """Send every request at once; the step (``left == 0`` if none is
        open: no agent running, say).  A payload that cannot be sent raises
        ``otp.EncodeError``, with nothing left open.

        Every agent is looked up (and monitored) before the first request
        goes out, and then the requests go out back to back: the first
        agent to get one wakes and takes a core, and on a busy machine
        whatever the host still had to do before the last request would
        wait for it."""
        step = Step(owner, len(requests), timeout)
        sends = []
        for i, (agent_id, kind, payload) in enumerate(requests):
            if kind not in AGENT_KINDS:
                step.outcomes[i] = NoAnswer(("unknown_kind", kind))
                continue
            pid = whereis_agent(agent_id)
            if pid is None:
                step.outcomes[i] = NoAnswer("not_running")
                continue
            ref = otp.make_ref()
            self.agents.add(pid, ref)
            self.open[ref] = (step, i, pid)
            step.refs.append(ref)
            sends.append((pid, (answer_host, (self.me, ref, kind, payload))))
        step.left = len(sends)
        try:
            for pid, run in sends:
                otp.tell(pid, "run", run)
        except BaseException:
            self.withdraw(step)
            raise
        return step

    def take(self, msg: AgentReply | otp.DOWN) -> list[Step] | None:
        """Settle what ``msg`` answers; the steps it completed, or None if
        it is not the host's business here (a ``DOWN`` of another monitor)."""
        if isinstance(msg, AgentReply):
            entry = self.open.pop(msg.ref, None)
            if entry is None:  # after its deadline, or its session was dropped
                return []
            step, i, pid = entry
            step.outcomes[i] = msg.outcome
            step.left -= 1
            self.agents.discard(pid, msg.ref)
            return [step] if step.left == 0 else []
        down = self.agents.down(msg.ref)
        if down is None:
            return None
        reason = "not_running" if msg.reason == "noproc" else msg.reason
        done = []
        for ref in down[1]:
            step, i, _ = self.open.pop(ref)
            step.outcomes[i] = NoAnswer(reason)
            step.left -= 1
            if step.left == 0:
                done.append(step)
        return done

    def withdraw(self, step: Step) -> None:
        """Give up the step's open requests (they stay ``'timeout'``)."""
        for ref in step.refs:
            entry = self.open.pop(ref, None)
            if entry is not None:
                self.agents.discard(entry[2], ref)
        step.left = 0
