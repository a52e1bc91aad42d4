"""The Agent behaviour: a gen_server in its own OS process.

Subclass :class:`Agent` and override the hooks the agent takes part in::

    class Learner(mabeam.Agent):
        capabilities = frozenset({"training"})

        def setup(self, args):            # runs in the agent's process
            self.model = make_model(args)

        def handle_request(self, message):
            return self.model.predict(message)

        def handle_vote(self, proposal):
            return "approve" if proposal["score"] > 0.9 else "reject"

Every hook runs in the agent's own process and answers a real message: a
vote is what ``handle_vote`` returned, a bid what ``handle_bid`` returned.
Agent state lives on ``self``.  A hook that raises does not kill the agent:
the caller receives :class:`AgentError` with the exception (a bad request is
the caller's problem, not a reason to restart a trained model); an exit
(``ProcessExit``) still ends the agent.

Wire protocol (what coordination and economics send): calls of the form
``("$mabeam", kind, payload)`` with kind ``request``, ``vote``, ``bid``,
``offer``, ``proposal``, ``coordinate``, ``represent`` and ``info``, and
info messages ``("$mabeam_event", topic, event)`` for pub/sub.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import otp

log = logging.getLogger("mabeam")

__all__ = ["Agent", "AgentConfig", "AgentError", "agent_name", "NAME_PREFIX"]

#: Agents register themselves in the node's name registry as
#: ``(NAME_PREFIX, agent_id)``: lookups by id are served from each caller's
#: replica, never through a hub process.
NAME_PREFIX = "mabeam.agent"


def agent_name(agent_id: Any) -> tuple:
    return (NAME_PREFIX, agent_id)


class AgentError(otp.OTPError):
    """An agent's hook raised, or the agent does not take part in the
    operation; ``reason`` is the :class:`otp.Crash` or a term."""

    def __init__(self, agent_id: Any, reason: Any) -> None:
        super().__init__(agent_id, reason)
        self.agent_id = agent_id
        self.reason = reason

    def __str__(self) -> str:
        return f"agent {self.agent_id!r}: {self.reason!r}"


@dataclass(frozen=True)
class AgentConfig:
    """What the agent registry keeps about an agent (AC-11: an agent can be
    registered without running; it then has no process at all)."""

    agent_id: Any
    agent_class: type
    args: Any = None
    capabilities: frozenset = frozenset()
    metadata: dict = field(default_factory=dict)
    restart: str = "permanent"
    shutdown: float = 5.0

    def __post_init__(self) -> None:
        if not (isinstance(self.agent_class, type) and issubclass(self.agent_class, Agent)):
            raise TypeError(f"agent_class must be an Agent subclass, not {self.agent_class!r}")
        if self.restart not in ("permanent", "transient", "temporary"):
            raise ValueError(f"invalid restart policy {self.restart!r}")
        try:
            hash(self.agent_id)
        except TypeError:
            raise TypeError(f"agent ids must be hashable, not {self.agent_id!r}") from None
        caps = frozenset(self.capabilities) | frozenset(getattr(self.agent_class, "capabilities", ()))
        object.__setattr__(self, "capabilities", caps)
        object.__setattr__(self, "metadata", dict(self.metadata))

    def child_spec(self) -> otp.ChildSpec:
        return otp.child_spec(
            self.agent_id,
            start=(self.agent_class.start_link, (self,)),
            restart=self.restart,
            shutdown=self.shutdown,
        )


class Agent(otp.GenServer):
    """Base class of agents; every hook has a documented default."""

    #: Capabilities every agent of this class has (a config can add more).
    capabilities: frozenset = frozenset()

    # ------------------------------------------------------------ hooks

    def setup(self, args: Any) -> None:
        """Prepare the agent (runs in its process, before it serves)."""

    def handle_request(self, message: Any) -> Any:
        """Answer a request (``mabeam.request``)."""
        raise NotImplementedError(f"{type(self).__name__} takes no requests")

    def handle_vote(self, proposal: Any) -> Any:
        """Vote on ``proposal``; None abstains."""
        return None

    def handle_bid(self, auction: dict) -> Any:
        """Bid in a sealed or English auction round (an amount, a list of
        bundle bids for a combinatorial auction, or None not to bid)."""
        return None

    def handle_offer(self, auction: dict, price: float) -> bool:
        """Dutch auction: accept ``price``?"""
        return False

    def handle_proposal(self, round_number: int, context: Any) -> Any:
        """Iterative refinement: this agent's proposal for the round."""
        return None

    def handle_coordination(self, protocol: str, params: Any) -> Any:
        """Any other coordination protocol."""
        raise NotImplementedError(f"{type(self).__name__} does not take part in {protocol!r}")

    def handle_event(self, topic: Any, event: Any) -> None:
        """A pub/sub event on a topic this agent subscribed to."""

    def handle_message(self, message: Any) -> None:
        """Any other message sent to the agent."""

    def teardown(self, reason: Any) -> None:
        """Clean up when the agent stops (not run when it is killed)."""

    def info(self) -> dict:
        """What ``mabeam.agent_info`` reports from the running agent."""
        return {
            "agent_id": self.agent_id,
            "capabilities": sorted(map(str, self.capabilities)),
            "class": type(self).__name__,
        }

    # ------------------------------------------------------- the server

    def init(self, config: AgentConfig) -> Any:
        self.agent_id = config.agent_id
        self.config = config
        self.capabilities = config.capabilities
        self.metadata = dict(config.metadata)
        try:
            otp.register(agent_name(config.agent_id))
        except otp.AlreadyRegistered as exc:
            return otp.Stop(("already_started", exc.existing_pid))
        self.setup(config.args)
        return self

    def handle_call(self, request: Any, from_: tuple, state: Any) -> Any:
        if type(request) is not tuple or len(request) != 3 or request[0] != "$mabeam":
            return otp.Reply(("error", AgentError(self.agent_id, ("unknown_call", request))), state)
        _, kind, payload = request
        try:
            if kind == "request":
                value = self.handle_request(payload)
            elif kind == "vote":
                value = self.handle_vote(payload)
            elif kind == "bid":
                value = self.handle_bid(payload)
            elif kind == "offer":
                value = bool(self.handle_offer(*payload))
            elif kind == "proposal":
                value = self.handle_proposal(*payload)
            elif kind == "coordinate":
                value = self.handle_coordination(*payload)
            elif kind == "represent":
                value = self._represent(*payload)
            elif kind == "info":
                value = self.info()
            else:
                return otp.Reply(("error", AgentError(self.agent_id, ("unknown_kind", kind))), state)
        except otp.ProcessExit:
            raise
        except Exception as exc:
            log.warning("agent %r: %s hook raised %r", self.agent_id, kind, exc)
            return otp.Reply(("error", AgentError(self.agent_id, otp.Crash.from_exception(exc))), state)
        return otp.Reply(("ok", value), state)

    def _represent(self, members: list, proposal: Any, timeout: float) -> dict:
        """Hierarchical consensus: gather the votes of ``members`` (agent ids)
        for ``proposal`` with real calls, and return them with our own."""
        from ._comms import broadcast

        votes = {self.agent_id: self.handle_vote(proposal)}
        others = [m for m in members if m != self.agent_id]
        for member, outcome in zip(others, broadcast(others, proposal, timeout=timeout, kind="vote")):
            votes[member] = outcome[1] if outcome[0] == "ok" else None
        return votes

    def handle_info(self, msg: Any, state: Any) -> Any:
        if type(msg) is tuple and len(msg) == 3 and msg[0] == "$mabeam_event":
            try:
                self.handle_event(msg[1], msg[2])
            except otp.ProcessExit:
                raise
            except Exception:
                log.exception("agent %r: handle_event raised", self.agent_id)
        else:
            self.handle_message(msg)
        return otp.NoReply(state)

    def terminate(self, reason: Any, state: Any) -> None:
        self.teardown(reason)
