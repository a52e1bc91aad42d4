"""Calls of a function on another node, with erpc's three-way result
(``otp.rpc.call``, ``otp.rpc.multicall``).

``call(node, fn, *args, timeout=..., **kwargs)`` runs ``fn(*args,
**kwargs)`` in a new process on ``node`` (spawned with a monitor, as erpc
does) and gives one of:

* its value;
* the exception it raised, raised again here with its own type (its
  traceback from the other node added as a note); an exception that cannot
  travel is replaced by :class:`RemoteError` with its type's name, text and
  traceback;
* a typed error of the call itself: :class:`otp.NoConnection` if the node
  cannot be reached or is lost meanwhile, :class:`otp.CallTimeout` at the
  timeout (the process is then killed), :class:`otp.CalleeExit` if the
  process exited otherwise (an exit signal killed it).

The function and its arguments travel as a spawn's do (cloudpickle by value
for what ``__main__`` defines, by reference otherwise: the other node must
be able to import those modules).  ``node`` may be this node's own name.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from . import _api, _process
from ._codec import dumps
from ._errors import CalleeExit, CallTimeout, EncodeError, NoConnection, OTPError, Timeout
from ._pid import Pid, Ref
from ._reasons import DOWN
from ._timeouts import check_timeout

__all__ = ["call", "multicall", "RemoteError", "DEFAULT_TIMEOUT"]

#: erpc's default is infinity; a finite default here, as ``otp.call``'s.
DEFAULT_TIMEOUT = 5.0
_TAG = "$rpc"


class RemoteError(OTPError):
    """An exception raised on the other node that could not be sent back as
    itself (it does not pickle); ``type_name``, ``text`` and ``traceback``
    describe it."""

    def __init__(self, type_name: str, text: str, traceback_text: str) -> None:
        super().__init__(type_name, text, traceback_text)
        self.type_name = type_name
        self.text = text
        self.traceback = traceback_text

    def __str__(self) -> str:
        return f"{self.type_name}: {self.text}"


def _run(caller: Pid, ref: Ref, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """What runs on the other node: the call, its outcome sent back."""
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:
        tb = traceback.format_exc()
        try:
            dumps(exc)
            outcome: tuple[Any, ...] = (_TAG, ref, "raise", exc, tb)
        except Exception:
            outcome = (_TAG, ref, "raise", RemoteError(type(exc).__qualname__, str(exc), tb), tb)
        _api.send(caller, outcome)
        return
    try:
        _api.send(caller, (_TAG, ref, "ok", value))
    except EncodeError as exc:
        err = RemoteError("EncodeError", f"the result of {fn!r} cannot be sent back: {exc}", "")
        _api.send(caller, (_TAG, ref, "raise", err, ""))


def _start(node: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Pid, Ref, Ref]:
    proc = _process.current()
    ref = _api.make_ref()
    pid, mref = proc.spawn(_run, (proc.pid, ref, fn, args, kwargs), {}, monitor=True, node=node, module=__name__)
    return pid, mref, ref


def _outcome(node: str, fn: Callable[..., Any], msg: Any) -> tuple[str, Any]:
    """``('ok', value)`` or ``('error', exception)`` from the answer or DOWN."""
    if isinstance(msg, DOWN):
        if msg.reason == "noconnection":
            return "error", NoConnection(node, fn)
        return "error", CalleeExit(msg.reason, node, fn)
    _, _, status, value = msg[:4]
    if status == "ok":
        return "ok", value
    if len(msg) > 4 and msg[4] and isinstance(value, BaseException) and hasattr(value, "add_note"):
        value.add_note(f"raised on node {node}:\n{msg[4].rstrip()}")
    return "error", value


def call(node: str, fn: Callable[..., Any], *args: Any, timeout: float | None = DEFAULT_TIMEOUT, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` run on ``node``: its value, or its exception
    raised here, or NoConnection / CallTimeout / CalleeExit (see the module
    docstring).  ``timeout`` None waits as long as the node is connected."""
    timeout = check_timeout(timeout)
    proc = _process.current()
    pid, mref, ref = _start(node, fn, args, kwargs)

    def answer(m: object) -> bool:
        return (type(m) is tuple and len(m) >= 4 and m[0] == _TAG and m[1] == ref) or (
            isinstance(m, DOWN) and m.ref == mref
        )

    try:
        msg = proc.receive(timeout, answer)
    except Timeout:
        proc.exit_signal(pid, "kill")
        proc.demonitor(mref, flush=True)
        raise CallTimeout(node, fn) from None
    if not isinstance(msg, DOWN):
        proc.demonitor(mref, flush=True)
    status, value = _outcome(node, fn, msg)
    if status == "ok":
        return value
    raise value


def multicall(
    nodes: Sequence[str], fn: Callable[..., Any], *args: Any, timeout: float | None = DEFAULT_TIMEOUT, **kwargs: Any
) -> list[tuple[str, Any]]:
    """:func:`call` on every node of ``nodes`` at once; a list, in the same
    order, of ``('ok', value)`` or ``('error', exception)``.  The whole takes
    at most ``timeout`` (about the slowest node, not the sum)."""
    timeout = check_timeout(timeout)
    proc = _process.current()
    deadline = math.inf if timeout is None else time.monotonic() + timeout
    started = [_start(node, fn, args, kwargs) for node in nodes]
    results: list[tuple[str, Any] | None] = [None] * len(started)
    by_ref: dict[Ref, int] = {}
    for i, (_, mref, ref) in enumerate(started):
        by_ref[ref] = i
        by_ref[mref] = i

    def answer(m: object) -> bool:
        if type(m) is tuple and len(m) >= 4 and m[0] == _TAG:
            return m[1] in by_ref
        return isinstance(m, DOWN) and m.ref in by_ref

    left = len(started)
    while left:
        remaining = None if deadline == math.inf else max(0.0, deadline - time.monotonic())
        try:
            msg = proc.receive(remaining, answer)
        except Timeout:
            break
        i = by_ref[msg.ref if isinstance(msg, DOWN) else msg[1]]
        if results[i] is not None:
            continue
        pid, mref, ref = started[i]
        del by_ref[ref]
        del by_ref[mref]
        if not isinstance(msg, DOWN):
            proc.demonitor(mref, flush=True)
        results[i] = _outcome(nodes[i], fn, msg)
        left -= 1
    out: list[tuple[str, Any]] = []
    for i, result in enumerate(results):
        if result is None:
            pid, mref, _ = started[i]
            proc.exit_signal(pid, "kill")
            proc.demonitor(mref, flush=True)
            result = ("error", CallTimeout(nodes[i], fn))
        out.append(result)
    return out
