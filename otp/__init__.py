"""otp: Erlang/OTP's process model for Python, one OS process per process.

Layers, bottom up (each imports only the ones below it):

* ``_oslib``, ``_pid``, ``_codec``, ``_transport``: OS facilities, identities,
  wire format, addresses;
* ``_signals``, ``_process``, ``_zygote``, ``_node``, ``_api``: processes,
  links, monitors, exit signals, the node runtime;
* behaviours: ``_gen_server``;
* supervision, registry and applications on top.
"""

from . import (
    _naming,  # noqa: E402
    pg,  # noqa: E402
    supervisor,  # noqa: E402 - the management calls, as otp.supervisor.*
)
from ._api import (
    demonitor,
    exit,
    is_alive,
    link,
    make_ref,
    monitor,
    receive,
    send,
    spawn,
    spawn_link,
    spawn_monitor,
    spawn_opt,
    trap_exit,
    unlink,
)
from ._api import self_ as self
from ._child_spec import ChildInfo, ChildSpec, SupervisorError, SupFlags, child_spec
from ._errors import (
    BadArguments,
    CalleeExit,
    CallError,
    CallTimeout,
    EncodeError,
    NodeError,
    NoProc,
    NotAProcess,
    OTPError,
    ProcessExit,
    SpawnError,
    StartError,
    Timeout,
    UnknownOperation,
)
from ._gen_server import (
    HIBERNATE,
    Continue,
    GenServer,
    Ignore,
    NoReply,
    Reply,
    Stop,
    call,
    cast,
    multi_call,
    reply,
    stop,
)
from ._node import Node
from ._pid import Pid, Ref
from ._reasons import DOWN, EXIT, Crash, is_clean, is_normal, is_shutdown
from ._service import DEFER, Failed, Ok, Request, Service, ask, operation, tell
from ._supervisor import DynamicSupervisor, Supervisor
from ._task import Task, TaskExit, TaskSupervisor
from .registry import AlreadyRegistered, RegistryDown, RegistryFull  # noqa: E402
from .registry._names import (  # noqa: E402 - on top of every other layer
    Registry,
    RegistryNames,  # noqa: E402
    register,
    registered,
    registry_health,
    unregister,
    via,
    whereis,
    whereis_many,
)

# The registry is the node's name service: installed here, once every layer
# is imported, rather than by the registry's import (see otp._naming).
_naming.install(RegistryNames())

__all__ = [
    "Node",
    "Pid",
    "Ref",
    "EXIT",
    "DOWN",
    "Crash",
    "is_clean",
    "is_normal",
    "is_shutdown",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "spawn_opt",
    "self",
    "send",
    "receive",
    "is_alive",
    "link",
    "unlink",
    "monitor",
    "demonitor",
    "exit",
    "trap_exit",
    "make_ref",
    "GenServer",
    "Reply",
    "NoReply",
    "Stop",
    "Continue",
    "Ignore",
    "HIBERNATE",
    "call",
    "multi_call",
    "cast",
    "reply",
    "stop",
    "Service",
    "operation",
    "ask",
    "tell",
    "Request",
    "Ok",
    "Failed",
    "DEFER",
    "UnknownOperation",
    "BadArguments",
    "Supervisor",
    "DynamicSupervisor",
    "TaskSupervisor",
    "Task",
    "TaskExit",
    "SupFlags",
    "ChildSpec",
    "ChildInfo",
    "child_spec",
    "SupervisorError",
    "supervisor",
    "register",
    "unregister",
    "whereis",
    "whereis_many",
    "registered",
    "registry_health",
    "Registry",
    "via",
    "pg",
    "AlreadyRegistered",
    "OTPError",
    "Timeout",
    "CallError",
    "CallTimeout",
    "NoProc",
    "CalleeExit",
    "StartError",
    "EncodeError",
    "NotAProcess",
    "SpawnError",
    "NodeError",
    "ProcessExit",
    "RegistryDown",
    "RegistryFull",
]
