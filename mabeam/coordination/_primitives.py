"""Named coordination primitives: naming, get-or-create, stopping.

Each primitive (lock, barrier, counter, election) is one :class:`otp.Service`
under the ``mabeam.coordination`` dynamic supervisor, registered in the
node's name registry as ``(prefix, name)``.  Creation is get-or-create and
has no check-then-act race: two processes creating the same primitive at
once both get the one that registered first (the registry decides).

Primitives are ``restart='temporary'`` by default: a lock, barrier or
election that crashed cannot rebuild its waiters, and restarting one empty
would hand out a lock that someone still believes they hold.  A crash is
reported to the callers waiting on it (:class:`PrimitiveFailed`).  Counters
accept ``restart='transient'``: a crashed counter then restarts at its
initial value.

A name is a str, int, bytes or tuple of those (the registry's names).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any

import otp
from mabeam._common import already_started_pid
from mabeam._names import COORDINATION

from ._errors import InvalidParameter, PrimitiveFailed, UnknownPrimitive

__all__ = ["Primitive", "registered_name", "ensure", "reaching", "stop_primitive"]


class Primitive(str, Enum):
    """The kinds of primitives; the value is the prefix of their registered names."""

    LOCK = "mabeam.lock"
    BARRIER = "mabeam.barrier"
    COUNTER = "mabeam.counter"
    ELECTION = "mabeam.election"


#: ``stop_primitive``'s kind names.
_KINDS = {
    "lock": Primitive.LOCK,
    "barrier": Primitive.BARRIER,
    "counter": Primitive.COUNTER,
    "election": Primitive.ELECTION,
}


def _check_name(name: Any) -> None:
    if isinstance(name, bool) or not isinstance(name, (str, int, bytes, tuple)):
        raise InvalidParameter(f"a primitive's name must be a str, int, bytes or tuple, not {name!r}")
    if isinstance(name, tuple):
        for part in name:
            _check_name(part)


def registered_name(kind: Primitive, name: Any) -> tuple:
    """The name the primitive ``name`` of ``kind`` is registered under."""
    _check_name(name)
    return (kind.value, name)


def ensure(kind: Primitive, name: Any, server: type[otp.Service], args: Any, restart: str = "temporary") -> otp.Pid:
    """The pid of the primitive, started under the coordination supervisor
    if it is not running."""
    reg = registered_name(kind, name)
    pid = otp.whereis(reg)
    if pid is not None:
        return pid
    spec = server.child_spec(args, id=reg, name=reg, restart=restart)
    try:
        started = otp.supervisor.start_child(COORDINATION, spec)
    except otp.SupervisorError as exc:
        winner = already_started_pid(exc.reason)  # another caller created it first
        if winner is None:
            raise PrimitiveFailed(reg, exc.reason) from None
        return winner
    if started is None:  # a Service's start_link returns a pid or raises
        raise PrimitiveFailed(reg, "ignore")
    return started


def _locate(reg: tuple) -> otp.Pid:
    # The caller's replica of the name registry may not have caught up with
    # a primitive another process just created: ask the registry itself
    # before concluding that there is none.
    pid = otp.whereis(reg) or otp.whereis(reg, cached=False)
    if pid is None:
        raise UnknownPrimitive(reg)
    return pid


@contextmanager
def reaching(kind: Primitive, name: Any) -> Iterator[otp.Pid]:
    """The pid of the primitive ``name`` of ``kind``, for an ``otp.ask``
    in the block: a primitive that is not running raises
    :class:`UnknownPrimitive`, one that exits meanwhile
    :class:`PrimitiveFailed`; ``otp.CallTimeout`` propagates."""
    reg = registered_name(kind, name)
    pid = _locate(reg)
    try:
        yield pid
    except otp.NoProc:
        raise UnknownPrimitive(reg) from None
    except otp.CallTimeout:
        raise
    except otp.CallError as exc:
        raise PrimitiveFailed(reg, exc.reason) from None


def stop_primitive(kind: str, name: Any) -> None:
    """Stop a primitive (``kind``: ``'lock'``, ``'barrier'``, ``'counter'``
    or ``'election'``); its waiters get :class:`PrimitiveFailed`."""
    if kind not in _KINDS:
        raise InvalidParameter(f"kind must be one of {sorted(_KINDS)}, not {kind!r}")
    pid = _locate(registered_name(_KINDS[kind], name))
    try:
        otp.supervisor.terminate_child(COORDINATION, pid)
    except otp.SupervisorError:
        if otp.is_alive(pid):
            raise
        # it exited on its own meanwhile: stopped either way
