"""gen_server: a process that serves calls and casts around a state.

Subclass :class:`GenServer`, override the callbacks you need, start it with
``MyServer.start_link(args)``.  Callbacks receive the state and return what
OTP's return tuples say::

    class Counter(otp.GenServer):
        def init(self, start):
            return start                       # the state
        def handle_call(self, request, from_, n):
            return otp.Reply(n, n)             # reply n, keep state n
        def handle_cast(self, request, n):
            return otp.NoReply(n + request)

Return values
    ``Reply(reply, state[, action])``, ``NoReply(state[, action])``,
    ``Stop(reason, state[, reply])``.  ``action`` is a timeout in seconds
    (``handle_info('timeout', state)`` runs if no message comes first),
    ``Continue(term)`` (``handle_continue`` runs before any message) or
    ``HIBERNATE`` (a garbage collection before the wait); a timeout of
    None, ``math.inf`` or ``"infinity"`` (OTP's atom) is no timeout.
    ``init`` returns the state, ``NoReply(state, action)``, ``Ignore`` or
    ``Stop(reason)``, or raises.

Semantics follow OTP: start is synchronous (returns after ``init``); an
``init`` failure, or a ``name=`` that cannot be registered, raises
:class:`StartError` in the starter, which is *not* killed by the link
(OTP 26's proc_lib: the server unlinks before it exits); a name of the
wrong shape is refused before anything is spawned (OTP's badarg);
``terminate`` runs when a callback returns ``Stop``, raises or returns a bad
value, and when a server that traps exits gets an exit signal from its
parent; it does not run when the process is killed by an exit signal it
does not trap (an untrapped exit signal ends the process at once).

System messages (:mod:`otp.sys`: get_state, replace_state, get_status,
suspend/resume, statistics, trace) are served by the loop itself, never by
a callback; a suspended server answers them and leaves every other message
queued, in order, until it is resumed.  What they show of the state is
:meth:`GenServer.system_get_state` (an :class:`otp.Service` shows its
instance).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from functools import partial
from typing import Any, NoReturn

from . import _api, _naming, _process, _sys
from ._behaviour import DEFAULT_CALL_TIMEOUT, Behaviour, ServerName, ServerRef, Starter, exit_after_terminate
from ._errors import CalleeExit, CallError, CallTimeout, NoProc, ProcessExit, Timeout
from ._pid import Pid, Ref
from ._reasons import DOWN, EXIT, Crash
from ._server_records import HIBERNATE, INFINITY, NO_REPLY, Continue, Ignore, NoReply, Reply, Stop
from ._timeouts import check_timeout

log = logging.getLogger("otp")

__all__ = [
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
    "DEFAULT_CALL_TIMEOUT",
    "ServerName",
    "ServerRef",
]


class GenServer(Behaviour):
    """Base class of generic servers.  Every callback has a documented default."""

    def init(self, args: Any) -> Any:
        """Set up; return the state (default: ``args``)."""
        return args

    def handle_call(self, request: Any, from_: tuple, state: Any) -> Any:
        """Serve ``call``; ``from_`` is ``(caller pid, ref)`` for ``reply``."""
        raise NotImplementedError(f"{type(self).__name__} does not handle calls ({request!r})")

    def handle_cast(self, request: Any, state: Any) -> Any:
        """Serve ``cast``."""
        raise NotImplementedError(f"{type(self).__name__} does not handle casts ({request!r})")

    def handle_info(self, msg: Any, state: Any) -> Any:
        """Any other message (EXIT, DOWN, 'timeout', ...).  Default: log, keep going."""
        log.warning("%s %r received an unexpected message: %r", type(self).__name__, _api.self_(), msg)
        return NoReply(state)

    def handle_continue(self, term: Any, state: Any) -> Any:
        """Run after a ``Continue(term)`` action."""
        raise NotImplementedError(f"{type(self).__name__} does not handle continue ({term!r})")

    def terminate(self, reason: Any, state: Any) -> None:
        """Clean up before the process exits.  Not guaranteed: an exit signal
        the server does not trap ends it without ``terminate``."""

    def system_get_state(self, state: Any) -> Any:
        """What :func:`otp.sys.get_state` shows of ``state`` (default: the
        state itself)."""
        return state

    def system_replace_state(self, fn: Callable[[Any], Any], state: Any) -> Any:
        """The state after :func:`otp.sys.replace_state` with ``fn``
        (default: ``fn(state)``); an exception leaves the state unchanged."""
        return fn(state)

    @classmethod
    def _process_main(cls, args: Any, name: ServerName | None, parent: Pid, ack: Ref, linked: bool) -> None:
        started = _start_server(Starter(cls, name, parent, ack, linked), args)
        if started is not None:
            _Loop(started[0], _process.current(), parent, name).run(started[1], started[2])


# ------------------------------------------------------------------ client


def call(server: ServerRef, request: Any, timeout: float | None = DEFAULT_CALL_TIMEOUT) -> Any:
    """Send ``request`` to ``server`` and wait for its reply.

    Raises :class:`CallTimeout` (a reply arriving later is dropped),
    :class:`NoProc`, or :class:`CalleeExit` with the server's exit reason if
    it exits before replying.  ``timeout=None`` waits forever (but never
    past the server's death), as does ``math.inf``; a bad timeout raises
    ValueError or TypeError before anything is sent.

    ``server`` may be an :class:`otp.RemoteName`: the name is looked up on
    its node, then called, both within ``timeout``; :class:`NoConnection`
    if that node cannot be reached.
    """
    timeout = check_timeout(timeout)
    p = _process.current()
    if type(server) is _naming.RemoteName:
        pid, timeout = _api.resolve_within(server, timeout)
    else:
        pid = _naming.resolve(server)
    me = p.pid
    return p.call(pid, lambda ref: ("$gen_call", (me, ref), request), timeout, server, request)


def multi_call(
    requests: list[tuple[ServerRef, Any]], timeout: float | None = DEFAULT_CALL_TIMEOUT
) -> list[tuple[str, Any]]:
    """Call several servers concurrently: ``requests`` is a list of
    ``(server, request)``; returns a list, in the same order, of
    ``('ok', reply)`` or ``('error', CallError)``.  Never raises for one
    server's failure; the whole waits at most ``timeout`` (checked as
    :func:`call`'s, before anything is sent)."""
    timeout = check_timeout(timeout)
    p = _process.current()
    me = p.pid
    targets: list[tuple[Pid, Any] | None] = []
    early: dict[int, tuple[str, CallError]] = {}
    for i, (server, request) in enumerate(requests):
        try:
            targets.append((_api.resolve(server), request))
        except CallError as exc:  # NoProc; for a RemoteName NoConnection, CallTimeout
            early[i] = ("error", exc)
            targets.append(None)
    live = [(i, t) for i, t in enumerate(targets) if t is not None]
    answers = p.multi_call([t for _, t in live], lambda ref, req: ("$gen_call", (me, ref), req), timeout)
    out: list[Any] = [early.get(i) for i in range(len(requests))]
    for (i, _), answer in zip(live, answers):
        out[i] = answer
    return out


def cast(server: ServerRef, request: Any) -> None:
    """Send ``request`` without waiting; never fails, not even for a server
    that does not exist.  To an :class:`otp.RemoteName`, resolved on its
    node (see :func:`otp.send`)."""
    if type(server) is _naming.RemoteName:
        _api.send(server, ("$gen_cast", request))
        return
    try:
        pid = _api.resolve(server)
    except NoProc:
        return
    _api.send(pid, ("$gen_cast", request))


def reply(from_: tuple, value: Any) -> None:
    """Answer a call later (after ``handle_call`` returned ``NoReply``)."""
    p = _process.current()
    p.send_reply(from_[0], from_[1], value)


def stop(server: ServerRef, reason: Any = "normal", timeout: float | None = None) -> None:
    """Stop ``server`` with ``reason``; return after it has exited.

    Raises :class:`NoProc` if it does not exist, :class:`CallTimeout` if it
    did not exit in time, :class:`CalleeExit` if it exited with another
    reason.  ``timeout`` None or ``math.inf`` waits forever; a bad one
    raises ValueError or TypeError before anything is sent.
    """
    timeout = check_timeout(timeout)
    pid = _api.resolve(server)
    ref = _api.monitor(pid)
    _api.send(pid, ("$gen_stop", reason))
    try:
        down = _api.receive(timeout, lambda m: isinstance(m, DOWN) and m.ref == ref)
    except Timeout:
        _api.demonitor(ref, flush=True)
        raise CallTimeout(server, ("stop", reason)) from None
    if down.reason == "noproc":
        raise NoProc(server)
    if down.reason != reason:
        raise CalleeExit(down.reason, server, ("stop", reason))


# ------------------------------------------------------------------ server


def _start_server(starter: Starter, args: Any) -> tuple[GenServer, Any, Any] | None:
    """``(server, state, action)`` once ``init`` returned and the starter was
    answered, or None after ``Ignore``; raises ProcessExit after a failure
    was answered."""
    ran = starter.run_init(args)
    if ran is None:
        return None
    server, result = ran
    state, action = (result.state, result.action) if isinstance(result, NoReply) else (result, None)
    try:
        action = _valid_action(action)
    except (TypeError, ValueError):
        starter.fail(("bad_return_value", result), log_it=True)
    starter.started()
    return server, state, action


def _valid_action(action: Any) -> Any:
    """A callback's action, its timeout checked (``math.inf`` or
    ``"infinity"``, OTP's atom: none, i.e. None); raises ValueError or
    TypeError for a bad one."""
    if action is None or action is HIBERNATE or isinstance(action, Continue):
        return action
    if type(action) is str and action == INFINITY:
        return None
    return check_timeout(action, "a callback's timeout action")


class _Loop:
    """The receive-dispatch loop of one server; the host of its system
    messages (see :mod:`otp._sys`)."""

    def __init__(self, server: GenServer, proc: _process.Process, parent: Pid, name: ServerName | None) -> None:
        self.server = server
        self.proc = proc
        self.parent = parent
        self.name = name
        self.last: Any = None
        self.state: Any = None
        self.sys_debug = _sys.SysDebug()
        self.sys_debug.name = name

    def run(self, state: Any, action: Any) -> None:
        server, proc, dbg = self.server, self.proc, self.sys_debug
        self.state = state
        while True:
            while isinstance(action, Continue):
                if dbg.active:
                    _sys.trace_event(self, "continue", action.term, self.sys_get_state())
                action = self.handle(partial(server.handle_continue, action.term), None)
            timeout = None
            if action is HIBERNATE:
                gc.collect()
            elif action is not None:
                timeout = action
            if dbg.suspended:
                msg = proc.receive(None, _sys.suspended_match(self.parent, proc.sig.trap_exit))
            else:
                try:
                    msg = proc.receive(timeout)
                except Timeout:
                    msg = "timeout"
            if type(msg) is tuple and msg:
                tag = msg[0]
                if tag == _sys.SYSTEM and len(msg) == 3:
                    # Served here, never by a callback; the action stands
                    # (a timeout starts over, as after any message).
                    _sys.handle_system_message(self, msg[1], msg[2])
                    continue
                self.last = msg
                if dbg.active:
                    dbg.count_in()
                    _sys.trace_event(self, "in", msg, self.sys_get_state())
                if tag == "$gen_call" and len(msg) == 3:
                    from_, request = msg[1], msg[2]
                    action = self.handle(partial(server.handle_call, request, from_), from_)
                    continue
                if tag == "$gen_cast" and len(msg) == 2:
                    request = msg[1]
                    action = self.handle(partial(server.handle_cast, request), None)
                    continue
                if tag == "$gen_stop" and len(msg) == 2:
                    self.exit(msg[1], self.state)
            else:
                self.last = msg
                if dbg.active:
                    dbg.count_in()
                    _sys.trace_event(self, "in", msg, self.sys_get_state())
            if isinstance(msg, EXIT) and msg.pid == self.parent and proc.sig.trap_exit:
                self.exit(msg.reason, self.state)
            action = self.handle(partial(server.handle_info, msg), None)

    def handle(self, callback: Callable[[Any], Any], from_: tuple | None) -> Any:
        """Run ``callback(state)``; keep the state it returns; return the
        next action."""
        state = self.state
        try:
            result = callback(state)
        except ProcessExit as exc:
            if self.proc.sig.fatal is not None:
                raise  # killed by an exit signal it does not trap: no terminate
            self.exit(exc.reason, state)
        except Exception as exc:
            self.exit(Crash.from_exception(exc), state)
        kind = type(result)
        if kind is Reply and from_ is not None:
            action = result.action if result.action is None else self.action(result, state)
            reply(from_, result.reply)
            self.state = result.state
            dbg = self.sys_debug
            if dbg.active:
                dbg.count_out()
                _sys.trace_event(self, "out", (result.reply, from_[0]), self.sys_get_state())
            return action
        if kind is NoReply:
            action = result.action if result.action is None else self.action(result, state)
            self.state = result.state
            if self.sys_debug.active:
                _sys.trace_event(self, "noreply", None, self.sys_get_state())
            return action
        if kind is Stop:
            if result.reply is not NO_REPLY and from_ is not None:
                reply(from_, result.reply)
            self.exit(result.reason, result.state)
        self.exit(("bad_return_value", result), state)

    def action(self, result: Reply | NoReply, state: Any) -> Any:
        """The result's action, checked: a bad timeout is a bad return value."""
        try:
            return _valid_action(result.action)
        except (TypeError, ValueError):
            self.exit(("bad_return_value", result), state)

    # ------------------------------------------------ system messages (sys)

    def sys_get_state(self) -> Any:
        return self.server.system_get_state(self.state)

    def sys_replace_state(self, fn: Callable[[Any], Any]) -> Any:
        self.state = self.server.system_replace_state(fn, self.state)
        return self.server.system_get_state(self.state)

    def sys_status(self) -> dict[str, Any]:
        return {
            "behaviour": "gen_server",
            "parent": self.parent,
            "module": f"{type(self.server).__module__}.{type(self.server).__qualname__}",
            "name": self.name,
            "state": self.server.system_get_state(self.state),
        }

    def exit(self, reason: Any, state: Any) -> NoReturn:
        server = self.server
        exit_after_terminate(server, lambda why: server.terminate(why, state), reason, (("last message", self.last),))
