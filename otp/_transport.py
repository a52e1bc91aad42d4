"""Where processes of a node are reached, and the socket defaults.

The local transport is ZeroMQ over ``ipc://`` for mailboxes and Unix datagram
sockets for signals, all in one directory per node created with mode 0700:
only the owning user can connect, which is the trust boundary that makes
unpickling frames acceptable (see :mod:`otp._codec`).  Every address is
derived from ``(node, uid)``; a transport for another host (tcp + CURVE
through a node gateway) plugs in behind :meth:`NodeInfo.is_local` without
changing pids or the codec.

Defaults (measured on the 2-core reference machine, see ``stress/``):

* ``SNDHWM = RCVHWM = 0`` (unbounded): Erlang sends never block and never
  fail; a bounded pipe either blocks the sender (deadlock-prone between two
  processes that call each other) or drops silently.  Memory is bounded by
  per-agent quotas instead (mabeam).
* ``EXIT_LINGER_MS = 2000``: how long an exiting process waits for its
  queued messages to reach live receivers before giving up; flushing to a
  local receiver takes microseconds, so the bound only matters for a
  receiver that is frozen.
* ``BACKLOG = 1024``: a supervisor starting a thousand children receives a
  thousand near-simultaneous connections; libzmq's default of 100 made
  connects fail and retry after ``RECONNECT_IVL``.
* ``RECONNECT_IVL_MS = 20``: a retry after a refused connect (backlog full)
  comes quickly; reconnects to dead peers stop when the sender sweeps them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["NodeInfo", "EXIT_LINGER_MS", "BACKLOG", "RECONNECT_IVL_MS"]

EXIT_LINGER_MS = 2000
BACKLOG = 1024
RECONNECT_IVL_MS = 20
IPC_PATH_MAX = 107


@dataclass(frozen=True)
class NodeInfo:
    """What every process of a node knows about its node."""

    name: str
    dir: str
    zygote_address: str
    start_method: str

    def is_local(self, node: str) -> bool:
        return node == self.name

    def mailbox_path(self, uid: int) -> str:
        return f"{self.dir}/{uid:016x}.m"

    def mailbox_endpoint(self, uid: int) -> str:
        return f"ipc://{self.dir}/{uid:016x}.m"

    def signal_address(self, uid: int) -> str:
        return f"{self.dir}/{uid:016x}.s"

    def remove_endpoints(self, uid: int) -> None:
        for path in (self.mailbox_path(uid), self.signal_address(uid)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
