"""OTP's ``sys``: look into and steer a running behaviour process.

``otp.sys.get_state(server)``, ``replace_state``, ``get_status``,
``suspend``/``resume``, ``statistics`` and ``trace`` reach any
:class:`otp.GenServer` (an :class:`otp.Service` included) as system
messages, which its loop serves itself, never its callbacks; a suspended
server still answers them.  Each waits for the answer as a call does and
raises what a call raises (``NoProc``, ``CalleeExit``, ``CallTimeout``).
"""

from ._sys import (
    CallbackFailed,
    DebugFlags,
    Statistics,
    SysState,
    SysStatus,
    UnknownSystemRequest,
    get_state,
    get_status,
    replace_state,
    resume,
    statistics,
    suspend,
    trace,
)

__all__ = [
    "get_state",
    "replace_state",
    "get_status",
    "suspend",
    "resume",
    "statistics",
    "trace",
    "SysStatus",
    "SysState",
    "DebugFlags",
    "Statistics",
    "CallbackFailed",
    "UnknownSystemRequest",
]
