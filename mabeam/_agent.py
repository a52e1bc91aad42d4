"""The Agent behaviour: an :class:`otp.Service` in its own OS process.

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
the caller receives :class:`HookFailed` (an :class:`AgentError`) with the
crash (a bad request is the caller's problem, not a reason to restart a
trained model); an exit (``ProcessExit``) still ends the agent, and so does
a bug in the agent machinery itself.

Stopping.  ``teardown(reason)`` runs on every orderly stop: ``stop_agent``,
a quota's termination and the application's stop (its supervisor's exit
signal ``'shutdown'``), the end of its supervisor, ``otp.stop``, and the
exit of a linked process.  For that the agent traps exits, as an OTP
gen_server must for its ``terminate`` to run; an exit signal from a linked
process other than its supervisor still ends it as it would end a process
that does not trap exits (an abnormal reason stops it with that reason, a
normal one is ignored), after its current hook returns, unless the class
sets ``trap_exits = True`` and takes them in ``handle_message`` as
``otp.EXIT`` messages.  ``teardown`` does not run when the agent is killed
(SIGKILL, ``otp.exit(pid, 'kill')``, or its ``shutdown`` seconds ran out).

Restarts.  ``AgentConfig.restart`` says which exits the agent registry
restarts it after; ``max_restarts`` and ``restart_period`` are its own
restart budget (see :mod:`mabeam._agent_registry`).

Nodes.  ``AgentConfig.node`` places an agent on another node of the
cluster (see :class:`AgentConfig` for the rule): it is still a child of the
agent supervisor of the node MABEAM runs on (linked to it across the
gateway), and its name is registered on both nodes, so every lookup on
MABEAM's node (``whereis_agent``, requests, sessions, auctions) finds it as
it finds a local agent.

Operations (what :mod:`mabeam._comms` and the features ask, each with one
``payload``; the ``kind=`` of :func:`mabeam.request`): ``request``,
``vote``, ``bid``, ``offer`` (``(auction, price)``), ``proposal``
(``(round_number, context)``), ``coordinate`` (``(protocol, params)``),
``run`` (``(fn, args)``: the agent returns ``fn(agent, *args)``, for
protocols that need an agent to act, such as a cluster representative
gathering its members' votes) and ``info``.  Their names are reserved: a
subclass cannot define a method of the same name (it would hide the
operation).  Pub/sub events arrive as info messages
``("$mabeam_event", topic, event)``; messages ``(PROTOCOL, cls, payload)``
of a protocol run among the agents' processes go to the agent's
:meth:`Agent.component` ``cls`` (PBFT's replicas).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

import otp

from ._errors import AgentError, HookFailed

log = logging.getLogger("mabeam")

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentError",
    "RestartPolicy",
    "agent_name",
    "start_agent_process",
    "NAME_PREFIX",
    "PROTOCOL",
]

#: Agents register themselves in the node's name registry as
#: ``(NAME_PREFIX, agent_id)``: lookups by id are served from each caller's
#: replica, never through a hub process.
NAME_PREFIX = "mabeam.agent"

#: The tag of a protocol message ``(PROTOCOL, cls, payload)``: see
#: :meth:`Agent.component`.
PROTOCOL = "$mabeam_protocol"

#: What the agent supervisor does when the agent exits (OTP's restart types).
RestartPolicy = Literal["permanent", "transient", "temporary"]

T = TypeVar("T")

#: Seconds an agent's start on another node may take, its ``setup``
#: included: the first process spawned there imports the agent's module
#: (and what it imports) on that node.
REMOTE_START_TIMEOUT = 30.0


def agent_name(agent_id: Hashable) -> tuple[str, Hashable]:
    """The name a running agent is registered under (``otp.whereis`` it)."""
    return (NAME_PREFIX, agent_id)


@dataclass(frozen=True)
class AgentConfig:
    """What the agent registry keeps about an agent.  An agent can be
    registered without running; it then has no process at all.

    ``restart``: which exits are followed by a restart (permanent: any but
    a shutdown; transient: a crash; temporary: none).  ``max_restarts``
    restarts within ``restart_period`` seconds are this agent's budget
    (None: the application's ``agent_intensity`` and ``agent_period``); one
    more crash and it is ``'failed'``, not restarted.  ``shutdown``: the
    seconds its ``teardown`` has on a stop before it is killed.

    ``node``: where the agent runs.  None: on the node MABEAM runs on (its
    home node).  A node name, or a tuple of names in order of preference
    (kept as a tuple): at each start and each restart the agent goes to the
    first of them that is up now (the home node, or a node it is connected
    to); if none is, to the first a connection can be made to, in order.
    A node that cannot be reached costs the kernel's connection set-up time
    (7 s) before the next is tried, and the agent supervisor starts nothing
    else meanwhile; a node that just went down is no longer connected, so a
    restart passes over it at once.  If none can be reached the start fails
    with ``'noconnection'`` (for a restart: one more crash, within the
    budget).  An agent running never moves: an agent lost with its node
    (``'crashed'``, reason ``'noconnection'``) is restarted on the next node
    of its list that is up, and goes back to a preferred node only at a
    later restart.  Name the home node last (``otp.node()``) for an agent
    that must run somewhere whatever node is lost.

    Why a list, and not OTP's rule or "anywhere": an OTP supervisor restarts
    a child where it ran, which fails while that node is gone (a platform of
    agents wants them working elsewhere); "any node" would move an agent to
    a node its work may not suit (its data, its hardware), which only the
    operator knows.  A list in order of preference is what Erlang's
    distributed applications take (``{App, [NodeA, NodeB]}``), and needs no
    rule of ours beyond "the first that is up"."""

    agent_id: Hashable
    agent_class: type[Agent]
    args: Any = None
    capabilities: AbstractSet[str] = frozenset()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    restart: RestartPolicy = "permanent"
    shutdown: float = 5.0
    max_restarts: int | None = None
    restart_period: float | None = None
    node: str | tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.agent_class, type) and issubclass(self.agent_class, Agent)):
            raise TypeError(f"agent_class must be an Agent subclass, not {self.agent_class!r}")
        if self.restart not in ("permanent", "transient", "temporary"):
            raise ValueError(f"invalid restart policy {self.restart!r}")
        if self.max_restarts is not None and (
            isinstance(self.max_restarts, bool) or not isinstance(self.max_restarts, int) or self.max_restarts < 0
        ):
            raise ValueError(f"max_restarts must be an int >= 0, not {self.max_restarts!r}")
        if self.restart_period is not None and (
            isinstance(self.restart_period, bool)
            or not isinstance(self.restart_period, (int, float))
            or not self.restart_period > 0
        ):
            raise ValueError(f"restart_period must be a number of seconds > 0, not {self.restart_period!r}")
        try:
            hash(self.agent_id)
        except TypeError:
            raise TypeError(f"agent ids must be hashable, not {self.agent_id!r}") from None
        caps = frozenset(self.capabilities) | frozenset(self.agent_class.capabilities)
        object.__setattr__(self, "capabilities", caps)
        object.__setattr__(self, "metadata", dict(self.metadata))
        object.__setattr__(self, "node", _node_list(self.node))

    @property
    def nodes(self) -> tuple[str, ...]:
        """The nodes the agent may run on, in order of preference (empty:
        the home node)."""
        return () if self.node is None else tuple(self.node)

    def child_spec(self) -> otp.ChildSpec:
        """The agent supervisor's child spec of this agent: temporary,
        whatever its ``restart``, because the agent registry restarts
        agents, each within its own budget (the supervisor's intensity
        would be one budget shared by all).  It starts the agent with
        :func:`start_agent_process`."""
        return otp.child_spec(
            self.agent_id,
            start=(start_agent_process, (self,)),
            restart="temporary",
            shutdown=self.shutdown,
        )


def _node_list(node: object) -> tuple[str, ...] | None:
    """``AgentConfig.node`` as kept: None, or a tuple of node names (each
    once, in the order given)."""
    if node is None:
        return None
    names = [node] if isinstance(node, str) else list(node) if isinstance(node, Sequence) else []
    if not names:
        raise TypeError(f"node must be a node name or a non-empty sequence of them, not {node!r}")
    for name in names:
        if not isinstance(name, str) or not name:
            raise TypeError(f"node names must be non-empty strings, not {name!r}")
    return tuple(dict.fromkeys(str(name) for name in names))


def start_agent_process(config: AgentConfig) -> otp.Pid | None:
    """Start the agent's process, linked to the caller (the agent
    supervisor, whose child spec's start function this is): on this node,
    or on a node of ``config.node`` chosen by the rule
    :class:`AgentConfig` states.  An agent started on another node is also
    registered on this one under :func:`agent_name`, before the supervisor
    reports it started, so that lookups here find it.  Raises
    ``otp.StartError('noconnection')`` if no node of its list can be
    reached."""
    start = config.agent_class.start_link
    if config.node is None:
        return start(config)
    here = otp.node()
    for node in _in_order_of_reach(config.nodes, here):
        if node == here:
            return start(config)
        try:
            pid = start(config, node=node, timeout=REMOTE_START_TIMEOUT)
        except otp.StartError as exc:
            if exc.reason == "noconnection":
                continue
            raise
        if pid is not None:
            _register_here(config.agent_id, pid)
        return pid
    raise otp.StartError("noconnection")


def _in_order_of_reach(nodes: tuple[str, ...], here: str) -> list[str]:
    """``nodes``, those up now first (this node, connected nodes), each
    part in the order given."""
    try:
        connected = set(otp.nodes())
    except otp.NodeError:  # the gateway restarts: nothing is connected
        connected = set()
    up = [n for n in nodes if n == here or n in connected]
    return up + [n for n in nodes if n not in up]


def _register_here(agent_id: Hashable, pid: otp.Pid) -> None:
    """Register the agent ``pid`` of another node under its name on this
    node.  A holder of the name that is dead (of another node, its DOWN
    still on its way to the name registry) gives it up; a live one fails
    the start as the agent's own registration would have, and the new
    process is killed."""
    name = agent_name(agent_id)
    for attempt in (1, 2):
        try:
            otp.register(name, pid)
            return
        except otp.AlreadyRegistered as exc:
            holder = exc.existing_pid
            if attempt == 2 or holder is None or otp.is_alive(holder):
                otp.unlink(pid)
                otp.exit(pid, "kill")
                raise otp.StartError(("already_started", holder)) from None
            otp.unregister(name)


class Agent(otp.Service):
    """Base class of agents; every hook has a documented default."""

    #: Capabilities every agent of this class has (a config can add more).
    capabilities: AbstractSet[str] = frozenset()

    #: Only a hook's failure is an answer; anything else the agent raises
    #: is a bug in it and crashes it.
    errors: ClassVar[tuple[type[BaseException], ...]] = (AgentError,)

    #: True: exits of linked processes (other than the agent supervisor's)
    #: reach ``handle_message`` as ``otp.EXIT`` messages.  False: they end
    #: the agent as they would a process that does not trap exits.
    trap_exits: ClassVar[bool] = False

    agent_id: Hashable
    config: AgentConfig
    metadata: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        hidden = sorted(name for name in Agent._operations if name not in cls._operations)
        if hidden:
            raise TypeError(
                f"{cls.__name__} defines {', '.join(hidden)}: reserved for the Agent operations "
                "of that name (override the handle_* hooks instead)"
            )

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
        """Clean up when the agent stops: on every orderly stop (see the
        module documentation), with the exit reason (``'shutdown'`` for
        ``stop_agent``); not run when it is killed."""

    def describe(self) -> dict[str, Any]:
        """What the ``info`` operation answers about the running agent."""
        return {
            "agent_id": self.agent_id,
            "capabilities": sorted(map(str, self.capabilities)),
            "class": type(self).__name__,
        }

    # ------------------------------------------------------- operations

    @otp.operation
    def request(self, message: Any) -> Any:
        """``handle_request(message)``."""
        return self._call_hook("request", self.handle_request, (message,))

    @otp.operation
    def vote(self, proposal: Any) -> Any:
        """``handle_vote(proposal)``."""
        return self._call_hook("vote", self.handle_vote, (proposal,))

    @otp.operation
    def bid(self, auction: dict) -> Any:
        """``handle_bid(auction)``."""
        return self._call_hook("bid", self.handle_bid, (auction,))

    @otp.operation
    def offer(self, payload: tuple[dict, float]) -> bool:
        """``handle_offer(auction, price)``, as a bool."""
        return self._call_hook("offer", lambda auction, price: bool(self.handle_offer(auction, price)), payload)

    @otp.operation
    def proposal(self, payload: tuple[int, Any]) -> Any:
        """``handle_proposal(round_number, context)``."""
        return self._call_hook("proposal", self.handle_proposal, payload)

    @otp.operation
    def coordinate(self, payload: tuple[str, Any]) -> Any:
        """``handle_coordination(protocol, params)``."""
        return self._call_hook("coordinate", self.handle_coordination, payload)

    @otp.operation
    def run(self, payload: tuple[Callable[..., Any], tuple]) -> Any:
        """``fn(agent, *args)`` for ``payload == (fn, args)``: a protocol's
        step that runs in the agent (``fn`` is a module-level function, sent
        by reference)."""
        return self._call_hook("run", lambda fn, args: fn(self, *args), payload)

    @otp.operation
    def info(self, payload: object = None) -> dict[str, Any]:
        """``describe()`` (``payload`` is ignored)."""
        return self._call_hook("info", self.describe, ())

    def component(self, cls: type[T]) -> T:
        """The agent's own ``cls(self)``, made on first use: the state a
        protocol keeps inside the agent (``mabeam.coordination``'s PBFT
        replicas); its messages ``(PROTOCOL, cls, payload)`` run
        ``component(cls).handle(payload)`` here, in the agent's process."""
        part = self._components.get(cls)
        if part is None:
            part = self._components[cls] = cls(self)  # type: ignore[call-arg]
        return part

    def _call_hook(self, operation: str, hook: Callable[..., T], args: Iterable[Any]) -> T:
        """``hook(*args)``; what it raises reaches the caller as
        :class:`HookFailed` and the agent carries on (an exit still ends it:
        ``ProcessExit`` is not an ``Exception``)."""
        try:
            return hook(*args)
        except Exception as exc:
            log.warning("agent %r: %s hook raised %r", self.agent_id, operation, exc)
            raise HookFailed(self.agent_id, operation, otp.Crash.from_exception(exc)) from None

    # ------------------------------------------------------- the server

    def init(self, config: AgentConfig) -> otp.Stop | None:
        self.agent_id = config.agent_id
        self.config = config
        self.capabilities = config.capabilities
        self.metadata = dict(config.metadata)
        self._components: dict[type, Any] = {}
        otp.trap_exit(True)  # a stop by its supervisor is a message: teardown runs
        try:
            otp.register(agent_name(config.agent_id))
        except otp.AlreadyRegistered as exc:
            return otp.Stop(("already_started", exc.existing_pid))
        self.setup(config.args)
        return None

    def handle_other_call(self, request: Any, from_: tuple) -> otp.Failed:
        """A call that is not an operation request: the caller's mistake,
        answered as an unknown operation; the agent carries on."""
        log.warning("agent %r: unexpected call %r", self.agent_id, request)
        return otp.Failed(otp.UnknownOperation(type(self).__name__, request))

    def handle_info(self, msg: Any, state: Any) -> otp.NoReply | otp.Stop:
        if type(msg) is tuple and len(msg) == 3 and msg[0] == "$mabeam_event":
            try:
                self.handle_event(msg[1], msg[2])
            except Exception:
                log.exception("agent %r: handle_event raised", self.agent_id)
        elif type(msg) is tuple and len(msg) == 3 and msg[0] == PROTOCOL:
            try:
                self.component(msg[1]).handle(msg[2])
            except Exception:
                log.exception("agent %r: a %r message failed", self.agent_id, msg[1])
        elif isinstance(msg, otp.EXIT) and not self.trap_exits:
            # (its supervisor's exit signal never gets here: the server
            # loop stops on it, running terminate)
            if not otp.is_normal(msg.reason):
                return otp.Stop(msg.reason, state)
        else:
            self.handle_message(msg)
        return otp.NoReply(state)

    def terminate(self, reason: Any, state: Any) -> None:
        self.teardown(reason)
