"""What a process is (from its child spec) and what it holds (drill-down).

:func:`behaviour_of` reads a child spec's start function: a behaviour's
``start_link`` bound to its class (``Counter.start_link``, maybe wrapped in
``functools.partial`` by ``child_spec(name=...)``).  Only processes known
this way get ``otp.sys`` requests from the observer: a plain process never
takes a system message out of its mailbox, so asking it would leave one
there for good.

A drill-down runs in a throwaway process (:func:`run_inspection`, spawned
by the collector): the state of a server arrives pickled, and unpickling
and rendering it there means a state that is huge, slow to load or full of
objects with hostile methods can cost the inspector its life, never the
collector or the inspected process.  The collector kills an inspector that
outlives its time.
"""

from __future__ import annotations

import functools
from typing import Any

from .. import _api, _sys
from .._child_spec import ChildSpec
from .._errors import EncodeError, OTPError
from .._gen_server import GenServer
from .._gen_statem import GenStatem
from .._pid import Pid
from .._process_info import ProcessInfo, process_info
from .._supervisor import Supervisor
from ._records import Behaviour
from ._saferepr import safe_repr

__all__ = ["behaviour_of", "run_inspection", "INSPECTED", "STATE_LIMIT"]

#: Characters of a rendered state.
STATE_LIMIT = 20000
#: The inspector's answer: ``(INSPECTED, token, info items, state text, state error)``.
INSPECTED = "$observer_inspected"


def behaviour_of(spec: ChildSpec) -> tuple[Behaviour | None, str | None]:
    """(behaviour, callback ``module.Class``) of the process ``spec``
    starts, or (None, None) when its start function says nothing."""
    fn: Any = spec.start[0]
    while isinstance(fn, functools.partial):
        fn = fn.func
    owner = getattr(fn, "__self__", None)
    if not isinstance(owner, type):
        return ("supervisor", None) if spec.type == "supervisor" else (None, None)
    callback = f"{owner.__module__}.{owner.__qualname__}"
    if issubclass(owner, Supervisor) or spec.type == "supervisor":
        return "supervisor", callback
    if issubclass(owner, GenStatem):
        return "gen_statem", callback
    if issubclass(owner, GenServer):
        return "gen_server", callback
    return None, callback


def _items(info: ProcessInfo) -> dict[str, object]:
    return {
        "status": info.status,
        "message_queue_len": info.message_queue_len,
        "registered_name": None if info.registered_name is None else safe_repr(info.registered_name, limit=200),
        "trap_exit": info.trap_exit,
        "messages_received": info.messages_received,
        "messages_sent": info.messages_sent,
        "current_function": info.current_function,
        "memory": info.memory,
        "rss": info.rss,
    }


def run_inspection(collector: Pid, token: object, pid: Pid, want_state: bool, timeout: float) -> None:
    """Body of an inspector: ``process_info`` of ``pid`` and, if asked,
    its ``sys.get_state`` rendered, sent to ``collector`` as one message."""
    state: str | None = None
    error: str | None = None
    info = process_info(pid, timeout=timeout)
    relations: tuple[tuple[Pid, ...], ...] = ((), (), ())
    items: dict[str, object] = {}
    if isinstance(info, ProcessInfo):
        items = _items(info)
        relations = (info.links or (), info.monitors or (), info.monitored_by or ())
        if want_state:
            try:
                state = safe_repr(_sys.get_state(pid, timeout=timeout), limit=STATE_LIMIT)
            except EncodeError as exc:
                error = f"its state cannot be sent: {exc}"
            except OTPError as exc:
                error = f"{type(exc).__name__}: {safe_repr(exc, limit=300)}"
    _api.send(collector, (INSPECTED, token, info is not None, items, relations, state, error))
