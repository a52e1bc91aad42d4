"""MABEAM: multi-agent coordination on the ``otp`` kernel.

Agents are gen_servers, each in its own OS process, supervised; everything
MABEAM runs is in the application's supervision tree (``mabeam.start()``).
"""

from ._agent import Agent, AgentConfig, AgentError, agent_name
from ._agent_registry import (
    AgentRecord,
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
from ._comms import CommsError, agent_pid, broadcast, multi_request, multicast, publish, request, subscribe, unsubscribe

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentError",
    "AgentRecord",
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
    "CommsError",
]
