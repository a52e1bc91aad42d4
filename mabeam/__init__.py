"""MABEAM: multi-agent coordination on the ``otp`` kernel.

Agents are :class:`otp.Service` s, each in its own OS process, supervised;
everything MABEAM runs is in the application's supervision tree
(``mabeam.start()``).  Every exception MABEAM raises is a
:class:`MabeamError`, named by its cause.
"""

from ._agent import Agent, AgentConfig, RestartPolicy, agent_name
from ._agent_registry import (
    AgentRecord,
    AgentStatus,
    agent_status,
    await_status,
    find_agents,
    get_agent,
    list_agents,
    register_agent,
    start_agent,
    stop_agent,
    unregister_agent,
)
from ._app import start, stop
from ._comms import Outcome, agent_pid, broadcast, multi_request, multicast, publish, request, subscribe, unsubscribe
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

__all__ = [
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
    "agent_status",
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
    "agent_pid",
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
