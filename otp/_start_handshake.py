"""The starter's half of the start handshake of the kernel's plain-process
servers (the gateway, the registry), which are no gen_server: spawn the
server linked and monitored, and wait for its :class:`StartAck`.  Apart
from both, which share it, and below them in the layers.

The server's half: ``main(config, parent, ack)`` sends its parent
``StartAck(ack, Started(pid))`` once it serves, or unlinks it and sends
``StartAck(ack, StartFailed(reason))`` before it raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from . import _process
from ._errors import StartError, Timeout
from ._pid import Pid, Ref, make_ref
from ._reasons import DOWN
from ._start_result import StartAck, StartFailed

__all__ = ["start_linked"]

_Config = TypeVar("_Config")


def start_linked(main: Callable[[_Config, Pid, Ref], None], config: _Config, timeout: float) -> Pid:
    """Spawn ``main(config, parent, ack)`` linked to the caller and return
    its pid once it acknowledged; :class:`StartError` with its reason if it
    failed or died first, ``'timeout'`` if it did not answer within
    ``timeout`` seconds: it is then unlinked and killed, so the caller is
    never killed through the link by a failed start (as ``gen_server``'s
    start)."""
    proc = _process.current()
    ack = make_ref()
    pid, ref = proc.spawn(main, (config, proc.pid, ack), {}, link=True, monitor=True)
    try:
        msg = proc.receive(
            timeout,
            lambda m: (type(m) is StartAck and m.ref == ack) or (isinstance(m, DOWN) and m.ref == ref),
        )
    except Timeout:
        proc.unlink(pid)  # the caller must not receive the 'killed'
        proc.exit_signal(pid, "kill")
        raise StartError("timeout") from None
    finally:
        proc.demonitor(ref, flush=True)
    if isinstance(msg, DOWN):
        raise StartError(msg.reason)
    if isinstance(msg.result, StartFailed):
        raise StartError(msg.result.reason)
    return pid
