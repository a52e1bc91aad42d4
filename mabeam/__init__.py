"""MABEAM: multi-agent coordination on the ``otp`` kernel.

Agents are :class:`otp.Service` s, each in its own OS process, supervised;
everything MABEAM runs is in the supervision tree of the OTP application
``mabeam`` (``mabeam.start()``, ``mabeam.stop()``).  Every exception MABEAM raises is a
:class:`MabeamError`, named by its cause.

Naming.  A function that talks to a MABEAM process is named verb_noun,
or a bare verb when its object is its first argument (``create_auction``,
``get_budget``, ``list_agents``, ``acquire(lock)``, ``publish(topic,
...)``); a pure function is named for what it computes (``jaccard``,
``tier``, ``agent_name``); a predicate is ``is_x`` or ``has_x``.
"""

from ._agent import Agent, AgentConfig, RestartPolicy, agent_name
from ._agent_registry import (
    AgentRecord,
    AgentStatus,
    await_status,
    find_agents,
    get_agent,
    get_agent_status,
    list_agents,
    register_agent,
    start_agent,
    stop_agent,
    unregister_agent,
)
from ._app import start, stop
from ._comms import (
    Outcome,
    broadcast,
    multi_request,
    multicast,
    publish,
    request,
    subscribe,
    unsubscribe,
    whereis_agent,
)
from ._errors import (
    AgentAlreadyRegistered,
    AgentAlreadyRunning,
    AgentError,
    AgentExited,
    AgentNotRunning,
    AgentStartFailed,
    AgentStillRunning,
    AgentTimeout,
    CommsError,
    HookFailed,
    MabeamError,
    NotStarted,
    UnknownAgent,
)
from ._observe import add_observer_panel, observe

__all__ = [
    "observe",
    "add_observer_panel",
    "Agent",
    "AgentConfig",
    "AgentRecord",
    "AgentStatus",
    "RestartPolicy",
    "agent_name",
    "start",
    "stop",
    "register_agent",
    "unregister_agent",
    "start_agent",
    "stop_agent",
    "get_agent",
    "get_agent_status",
    "await_status",
    "find_agents",
    "list_agents",
    "request",
    "broadcast",
    "multi_request",
    "multicast",
    "publish",
    "subscribe",
    "unsubscribe",
    "whereis_agent",
    "Outcome",
    "MabeamError",
    "NotStarted",
    "UnknownAgent",
    "AgentError",
    "HookFailed",
    "AgentAlreadyRegistered",
    "AgentAlreadyRunning",
    "AgentStillRunning",
    "AgentStartFailed",
    "CommsError",
    "AgentTimeout",
    "AgentExited",
    "AgentNotRunning",
]
