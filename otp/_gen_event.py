"""gen_event: an event manager process and the event handlers it runs.

An event manager (``GenEvent.start_link(name=...)``) holds any number of
event handlers, each an :class:`EventHandler` subclass with a state of its
own, added and deleted while it runs.  Every event sent with
:meth:`GenEvent.notify` (asynchronous) or :meth:`GenEvent.sync_notify`
(returns once every handler handled it) goes to each handler's
``handle_event``, most recently added first, as in OTP::

    class Collect(otp.EventHandler):
        def init(self, args):
            return []                            # the handler's state
        def handle_event(self, event, seen):
            return seen + [event]                # the new state
        def handle_call(self, request, seen):
            return otp.Reply(seen, seen)         # reply, keep the state

    mgr = otp.GenEvent.start_link()
    otp.GenEvent.add_handler(mgr, Collect, None)
    otp.GenEvent.sync_notify(mgr, "hello")
    otp.GenEvent.call(mgr, Collect, "seen")      # ['hello']

A handler is named by its class, or by ``(class, id)`` to install one class
several times (OTP's ``{Module, Id}``).  Callbacks return typed records:
``handle_event`` and ``handle_info`` the new state, :class:`RemoveHandler`
or :class:`SwapHandler`; ``handle_call`` ``otp.Reply(reply, state)``,
``RemoveHandler(reply)`` or ``SwapHandler(..., reply=)``.  A gen_server
return record (``NoReply``, ``Stop``, a ``Reply`` from ``handle_event``) or
anything else from ``handle_call`` is a bad return value.

Faults stay with the handler, as in OTP: a callback that raises or returns
a bad value removes its handler (``terminate`` runs with
:class:`HandlerFailed`, an error is logged with ``otp._logging.report``),
the manager and the other handlers carry on.  A handler added with
:meth:`GenEvent.add_sup_handler` is supervised by the caller: the manager
links to it, removes the handler when the caller exits (``terminate`` gets
:class:`OwnerExited`), and sends the caller :class:`HandlerRemoved` with
the reason whenever the handler is removed.  The manager traps exits;
``terminate`` of every handler runs with ``HandlerExit.STOP`` when it stops.

Where OTP returns error tuples the caller gets typed exceptions:
:class:`HandlerNotFound` (``{error, module_not_found}``, ``bad_module``)
and :class:`HandlerError` (a callback raised or returned a bad value).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

from . import _api, _gen_event_records, _gen_server, _logging, _process
from ._child_spec import ChildSpec, child_spec
from ._errors import ProcessExit
from ._gen_event_records import (
    EventHandler,
    HandlerError,
    HandlerExit,
    HandlerFailed,
    HandlerNotFound,
    HandlerRef,
    HandlerRemoved,
    OwnerExited,
    RemoveHandler,
    SwapArgs,
    SwapHandler,
    Swapped,
)
from ._gen_server import DEFAULT_CALL_TIMEOUT, Ignore, NoReply, Reply, ServerName, ServerRef, Stop
from ._pid import Pid
from ._reasons import EXIT, Crash, format_reason
from ._service import Service, ask, operation, tell
from ._timeouts import check_timeout

log = logging.getLogger("otp")

__all__ = ["GenEvent"]
__all__ += _gen_event_records.__all__


# ------------------------------------------------------------------ identity


def _is_handler(handler: object) -> bool:
    cls = handler[0] if type(handler) is tuple and len(handler) == 2 else handler
    return isinstance(cls, type) and issubclass(cls, EventHandler)


def _check_handler(handler: object) -> None:
    """TypeError, in the caller, for something that cannot name a handler."""
    if not _is_handler(handler):
        raise TypeError(f"a handler is an otp.EventHandler subclass or (subclass, id), not {handler!r}")


def _key(handler: HandlerRef) -> tuple[str, str, bool, Any]:
    # Classes compare by name: one defined in __main__ travels by value, and
    # each copy is a different class object.
    if type(handler) is tuple:
        cls, ident = handler
        return (cls.__module__, cls.__qualname__, True, ident)
    assert isinstance(handler, type)
    return (handler.__module__, handler.__qualname__, False, None)


def _class_of(handler: HandlerRef) -> type[EventHandler]:
    return handler[0] if type(handler) is tuple else handler  # type: ignore[return-value] # a checked HandlerRef


@dataclass(slots=True)
class _Installed:
    """One handler in the manager."""

    handler: HandlerRef
    key: tuple[str, str, bool, Any]
    instance: EventHandler
    state: Any
    owner: Pid | None


class _Outcome(NamedTuple):
    """What became of a handler after one callback: still installed as
    ``installed`` (None: removed), and the reply for a call."""

    installed: _Installed | None
    reply: Any = None


#: Results of another behaviour: a bad return value from any callback here.
_FOREIGN = (NoReply, Stop)


# ------------------------------------------------------------------- manager


class _EventManager(Service):
    """The manager: a service whose operations are gen_event's requests."""

    errors = (HandlerNotFound, HandlerError)

    def init(self, args: tuple[ServerName | None, Pid | None]) -> None:
        self.name, self.parent = args
        self.handlers: list[_Installed] = []  # most recently added first, as OTP's
        self.last_in: Any = None
        _api.trap_exit(True)  # a gen_event manager always traps exits

    # ------------------------------------------------------------ operations

    @operation
    def add_handler(self, handler: HandlerRef, args: Any) -> None:
        self._add(handler, args, None)

    @operation
    def add_sup_handler(self, handler: HandlerRef, args: Any) -> None:
        assert self.caller is not None
        owner = self.caller[0]
        _api.link(owner)  # as OTP: before init, and kept after the handler goes
        self._add(handler, args, owner)

    @operation
    def delete_handler(self, handler: HandlerRef, args: Any) -> Any:
        found = self._take(handler)
        if found is None:
            raise HandlerNotFound(handler)
        result = self._terminate(found, args, "normal")
        if isinstance(result, HandlerFailed):
            raise HandlerError(handler, result.reason)
        return result

    @operation
    def swap_handler(self, old: HandlerRef, args1: Any, new: HandlerRef, args2: Any) -> None:
        self._swap_request(old, args1, new, args2, None)

    @operation
    def swap_sup_handler(self, old: HandlerRef, args1: Any, new: HandlerRef, args2: Any) -> None:
        assert self.caller is not None
        owner = self.caller[0]
        _api.link(owner)
        self._swap_request(old, args1, new, args2, owner)

    @operation
    def which_handlers(self) -> list[HandlerRef]:
        return [h.handler for h in self.handlers]

    @operation
    def notify(self, event: Any) -> None:
        self._notify("handle_event", event)

    @operation
    def sync_notify(self, event: Any) -> None:
        self._notify("handle_event", event)

    @operation
    def call(self, handler: HandlerRef, request: Any) -> Any:
        i = self._index(handler)
        if i is None:
            raise HandlerNotFound(handler)
        self.last_in = request
        outcome = self._dispatch(self.handlers[i], "handle_call", request)
        if outcome.installed is None:
            del self.handlers[i]
        else:
            self.handlers[i] = outcome.installed
        if isinstance(outcome.reply, HandlerFailed):
            raise HandlerError(handler, outcome.reply.reason)
        return outcome.reply

    # ----------------------------------------------------- the gen_server side

    def handle_info(self, msg: Any, state: Any) -> NoReply:
        if isinstance(msg, EXIT):
            # The supervised handlers of a process that exited go first; then
            # every remaining handler sees the EXIT, as in OTP.
            for installed in [h for h in self.handlers if h.owner == msg.pid]:
                self.handlers.remove(installed)
                self._terminate(installed, OwnerExited(msg.reason), "shutdown")
        self._notify("handle_info", msg)
        return NoReply(state)

    def terminate(self, reason: Any, state: Any) -> None:
        handlers, self.handlers = self.handlers, []
        for installed in handlers:
            self._terminate(installed, HandlerExit.STOP, "shutdown")
        # A supervising process must not die of the manager's exit signal;
        # the parent must see it.
        for owner in {h.owner for h in handlers if h.owner is not None and h.owner != self.parent}:
            _api.unlink(owner)

    # --------------------------------------------------------------- helpers

    def _add(self, handler: HandlerRef, args: Any, owner: Pid | None) -> None:
        installed = self._init(handler, args, owner)
        if isinstance(installed, HandlerFailed):
            raise HandlerError(handler, installed.reason)
        self.handlers.insert(0, installed)

    def _init(self, handler: HandlerRef, args: Any, owner: Pid | None) -> _Installed | HandlerFailed:
        try:
            instance = _class_of(handler)()
            state = instance.init(args)
        except ProcessExit as exc:
            if _process.current().sig.fatal is not None:
                raise
            return HandlerFailed(exc.reason)
        except Exception as exc:
            return HandlerFailed(Crash.from_exception(exc))
        return _Installed(handler, _key(handler), instance, state, owner)

    def _index(self, handler: HandlerRef) -> int | None:
        """Where the most recently added handler named ``handler`` is."""
        key = _key(handler)
        return next((i for i, installed in enumerate(self.handlers) if installed.key == key), None)

    def _take(self, handler: HandlerRef) -> _Installed | None:
        i = self._index(handler)
        return None if i is None else self.handlers.pop(i)

    def _swap_request(self, old: HandlerRef, args1: Any, new: HandlerRef, args2: Any, owner: Pid | None) -> None:
        found = self._take(old)
        if found is None:
            term: Any = HandlerNotFound(old)
        else:
            owner = owner if owner is not None else found.owner
            term = self._terminate(found, args1, Swapped(new, owner))
        installed = self._init(new, SwapArgs(args2, term), owner)
        if isinstance(installed, HandlerFailed):
            raise HandlerError(new, installed.reason)
        self.handlers.insert(0, installed)

    def _notify(self, callback: str, msg: Any) -> None:
        self.last_in = msg
        kept = []
        for installed in self.handlers:
            outcome = self._dispatch(installed, callback, msg)
            if outcome.installed is not None:
                kept.append(outcome.installed)
        self.handlers = kept

    def _dispatch(self, installed: _Installed, callback: str, msg: Any) -> _Outcome:
        """Run one callback of one handler and act on its result."""
        is_call = callback == "handle_call"
        try:
            result = getattr(installed.instance, callback)(msg, installed.state)
        except ProcessExit as exc:
            if _process.current().sig.fatal is not None:
                raise  # the manager itself is being killed
            return self._failed(installed, exc.reason)
        except Exception as exc:
            return self._failed(installed, Crash.from_exception(exc))
        kind = type(result)
        if kind is RemoveHandler:
            self._terminate(installed, HandlerExit.REMOVE_HANDLER, "normal")
            return _Outcome(None, result.reply)
        if kind is SwapHandler:
            return _Outcome(self._swap_out(installed, result), result.reply)
        if is_call:
            if kind is Reply and result.action is None:
                installed.state = result.state
                return _Outcome(installed, result.reply)
            return self._failed(installed, ("bad_return_value", result))
        if kind is Reply or isinstance(result, _FOREIGN) or result is Ignore:
            return self._failed(installed, ("bad_return_value", result))
        installed.state = result
        return _Outcome(installed)

    def _failed(self, installed: _Installed, reason: Any) -> _Outcome:
        failure = HandlerFailed(reason)
        self._terminate(installed, failure, reason)
        return _Outcome(None, failure)

    def _swap_out(self, installed: _Installed, swap: SwapHandler) -> _Installed | None:
        if not _is_handler(swap.handler):
            self._failed(installed, ("bad_return_value", swap))
            return None
        installed.state = swap.state
        term = self._terminate(installed, swap.args1, Swapped(swap.handler, installed.owner))
        new = self._init(swap.handler, SwapArgs(swap.args2, term), installed.owner)
        if isinstance(new, HandlerFailed):
            self._report(swap.handler, installed.owner, None, new.reason)
            return None
        return new

    def _terminate(self, installed: _Installed, arg: Any, reason: Any) -> Any:
        """Run ``terminate(arg, state)``, report the removal with ``reason``,
        and return what terminate returned (:class:`HandlerFailed` if it
        raised)."""
        try:
            result = installed.instance.terminate(arg, installed.state)
        except ProcessExit as exc:
            if _process.current().sig.fatal is not None:
                raise
            result = HandlerFailed(exc.reason)
        except Exception as exc:
            result = HandlerFailed(Crash.from_exception(exc))
        self._report(installed.handler, installed.owner, installed.state, reason)
        return result

    def _report(self, handler: HandlerRef, owner: Pid | None, state: Any, reason: Any) -> None:
        """Log a removal that is a failure; tell the supervising process of
        every removal."""
        if not (reason in ("normal", "shutdown") or isinstance(reason, Swapped)):
            log.error(
                "** gen_event handler %r crashed.\n** Was installed in %r\n** Last event was: %r\n"
                "** When handler state == %r\n** Reason == %s",
                handler,
                self.name if self.name is not None else _api.self_(),
                self.last_in,
                state,
                format_reason(reason),
                extra=_logging.report("crash", pid=_api.self_(), name=self.name, reason=reason),
            )
        if owner is not None:
            _api.send(owner, HandlerRemoved(_api.self_(), handler, reason))


# -------------------------------------------------------------------- client


class GenEvent:
    """Start an event manager and talk to it; every function takes the
    manager (a pid or a registered name) first."""

    @staticmethod
    def start(*, name: ServerName | None = None, timeout: float | None = DEFAULT_CALL_TIMEOUT) -> Pid:
        """Start a manager, not linked; ``name=`` registers it (a clash
        raises ``StartError(('already_started', pid))``)."""
        pid = _EventManager.start((name, None), name=name, timeout=timeout)
        assert pid is not None  # the manager's init never ignores
        return pid

    @staticmethod
    def start_link(*, name: ServerName | None = None, timeout: float | None = DEFAULT_CALL_TIMEOUT) -> Pid:
        """Start a manager linked to the caller, its parent: an exit signal
        from the parent stops it (``terminate`` of every handler runs)."""
        pid = _EventManager.start_link((name, _api.self_()), name=name, timeout=timeout)
        assert pid is not None  # the manager's init never ignores
        return pid

    @staticmethod
    def child_spec(id: Any = "GenEvent", *, name: ServerName | None = None, **kw: Any) -> ChildSpec:  # noqa: A002
        """A child spec running ``GenEvent.start_link(name=name)``; ``kw``
        are :func:`otp.child_spec`'s keywords."""
        start: Callable[..., Pid] = partial(GenEvent.start_link, name=name) if name is not None else GenEvent.start_link
        return child_spec(id, (start, ()), **kw)

    @staticmethod
    def add_handler(manager: ServerRef, handler: HandlerRef, args: Any, timeout: float | None = None) -> None:
        """Install ``handler`` (its ``init(args)`` runs in the manager).
        Raises :class:`HandlerError` if ``init`` raised; a handler already
        installed is installed once more, as in OTP."""
        _check_handler(handler)
        ask(manager, "add_handler", handler, args, timeout=timeout)

    @staticmethod
    def add_sup_handler(manager: ServerRef, handler: HandlerRef, args: Any, timeout: float | None = None) -> None:
        """Install ``handler`` supervised by the caller: the manager links
        to the caller, removes the handler when the caller exits, and sends
        it :class:`HandlerRemoved` whenever the handler is removed."""
        _check_handler(handler)
        ask(manager, "add_sup_handler", handler, args, timeout=timeout)

    @staticmethod
    def delete_handler(manager: ServerRef, handler: HandlerRef, args: Any = None, timeout: float | None = None) -> Any:
        """Remove ``handler``; returns what its ``terminate(args, state)``
        returned.  :class:`HandlerNotFound` if it is not installed,
        :class:`HandlerError` if ``terminate`` raised (it is removed anyway)."""
        _check_handler(handler)
        return ask(manager, "delete_handler", handler, args, timeout=timeout)

    @staticmethod
    def swap_handler(
        manager: ServerRef, old: tuple[HandlerRef, Any], new: tuple[HandlerRef, Any], timeout: float | None = None
    ) -> None:
        """Replace ``old = (handler, args1)`` by ``new = (handler, args2)``:
        ``terminate(args1, state)`` of the old one, then
        ``init(SwapArgs(args2, what terminate returned))`` of the new one,
        which keeps the old one's supervisor.  The new handler is added even
        if the old one is not installed; :class:`HandlerError` if its init
        raised."""
        _check_handler(old[0])
        _check_handler(new[0])
        ask(manager, "swap_handler", old[0], old[1], new[0], new[1], timeout=timeout)

    @staticmethod
    def swap_sup_handler(
        manager: ServerRef, old: tuple[HandlerRef, Any], new: tuple[HandlerRef, Any], timeout: float | None = None
    ) -> None:
        """:meth:`swap_handler`, the new handler supervised by the caller."""
        _check_handler(old[0])
        _check_handler(new[0])
        ask(manager, "swap_sup_handler", old[0], old[1], new[0], new[1], timeout=timeout)

    @staticmethod
    def notify(manager: ServerRef, event: Any) -> None:
        """Send ``event`` to every handler, without waiting; never fails."""
        tell(manager, "notify", event)

    @staticmethod
    def sync_notify(manager: ServerRef, event: Any, timeout: float | None = None) -> None:
        """Send ``event`` to every handler; return once all handled it."""
        ask(manager, "sync_notify", event, timeout=timeout)

    @staticmethod
    def call(
        manager: ServerRef, handler: HandlerRef, request: Any, timeout: float | None = DEFAULT_CALL_TIMEOUT
    ) -> Any:
        """``handler``'s reply to ``request`` (its ``handle_call``).
        :class:`HandlerNotFound` if it is not installed, :class:`HandlerError`
        if it raised or returned a bad value (it is removed); what
        :func:`otp.call` raises (``CallTimeout``, ``NoProc``, ``CalleeExit``)."""
        _check_handler(handler)
        return ask(manager, "call", handler, request, timeout=check_timeout(timeout))

    @staticmethod
    def which_handlers(manager: ServerRef, timeout: float | None = None) -> list[HandlerRef]:
        """The installed handlers, most recently added first."""
        handlers: list[HandlerRef] = ask(manager, "which_handlers", timeout=timeout)
        return handlers

    @staticmethod
    def stop(manager: ServerRef, reason: Any = "normal", timeout: float | None = None) -> None:
        """Stop the manager (``terminate(HandlerExit.STOP, state)`` of every
        handler runs) and return once it exited; raises as :func:`otp.stop`."""
        _gen_server.stop(manager, reason, timeout)
