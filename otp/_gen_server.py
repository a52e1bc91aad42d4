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
from typing import Any, NamedTuple, NoReturn

from . import _api, _logging, _naming, _process, _sys
from ._child_spec import ChildSpec, child_spec
from ._errors import CalleeExit, CallError, CallTimeout, NoProc, ProcessExit, StartError, Timeout
from ._pid import Pid, Ref
from ._reasons import DOWN, EXIT, Crash, format_reason, is_clean
from ._start_result import IGNORED, StartAck, Started, StartFailed, StartResult
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

#: A name a server can be started with: a str, int, bytes or tuple of those,
#: or ``otp.via(registry, key)`` (checked by :func:`check_name`).
ServerName = str | int | bytes | tuple
#: What calls and casts are addressed to: a pid or a name.
ServerRef = Pid | ServerName | _naming.RemoteName

#: OTP's default call timeout (5000 ms).
DEFAULT_CALL_TIMEOUT = 5.0
_NO_REPLY = object()


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name  # unpickles as the module's own instance: `is` works


class Continue(NamedTuple):
    """Action: run ``handle_continue(term, state)`` before any message."""

    term: Any


class Reply(NamedTuple):
    reply: Any
    state: Any
    action: Any = None


class NoReply(NamedTuple):
    state: Any
    action: Any = None


class Stop(NamedTuple):
    reason: Any
    state: Any = None
    reply: Any = _NO_REPLY


Ignore = _Sentinel("Ignore")
#: A timeout action meaning none, as OTP's atom (same as None or math.inf).
INFINITY = "infinity"
HIBERNATE = _Sentinel("HIBERNATE")


class GenServer:
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

    # ------------------------------------------------------------- starting

    @classmethod
    def start(
        cls,
        args: Any = None,
        *,
        name: ServerName | None = None,
        timeout: float | None = DEFAULT_CALL_TIMEOUT,
        max_mailbox: int | None = None,
        node: str | None = None,
    ) -> Pid | None:
        """Start a server (not linked); return its pid once ``init`` returned,
        None if ``init`` returned ``Ignore``.  ``node``: start it on that node
        of the cluster (its name is registered there), see
        :func:`otp.spawn_opt`; a node that cannot be reached fails the start
        with ``StartError('noconnection')``.

        ``timeout`` bounds the wait for ``init`` (None or ``math.inf``:
        forever); ``max_mailbox`` bounds the server's queue (see
        :func:`otp.spawn_opt`).  A bad timeout or bound raises ValueError or
        TypeError, and a name of the wrong shape raises
        ``StartError(('invalid_name', name, why))``, all in the caller before
        anything is spawned.  A name of the right shape that cannot be
        registered fails the start: ``StartError(('already_started', pid))``
        on a clash, ``StartError(('invalid_name', name, Crash))`` for any other
        error of the registry (a via registry that does not exist...).
        """
        return _start(cls, args, name, timeout, False, max_mailbox, node)

    @classmethod
    def start_link(
        cls,
        args: Any = None,
        *,
        name: ServerName | None = None,
        timeout: float | None = DEFAULT_CALL_TIMEOUT,
        max_mailbox: int | None = None,
        node: str | None = None,
    ) -> Pid | None:
        """Like :meth:`start`, linked to the caller.  A failed start (a bad
        name included) raises in the caller and never kills it through the
        link."""
        return _start(cls, args, name, timeout, True, max_mailbox, node)

    @classmethod
    def child_spec(
        cls,
        args: Any = None,
        id: Any = None,  # noqa: A002
        *,
        name: ServerName | None = None,
        max_mailbox: int | None = None,
        **kw: Any,
    ) -> ChildSpec:
        """A child spec running ``cls.start_link(args, name=name,
        max_mailbox=max_mailbox)`` (id defaults to the class name); ``kw``
        are child_spec's keywords.  A bad ``max_mailbox`` raises here, a
        bad keyword ``SupervisorError`` as :func:`otp.child_spec`."""
        return behaviour_child_spec(cls.start_link, cls.__name__, args, id, name, max_mailbox, kw)


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


def _start(
    cls: type,
    args: Any,
    name: ServerName | None,
    timeout: float | None,
    link: bool,
    max_mailbox: int | None,
    node: str | None = None,
) -> Pid | None:
    if not (isinstance(cls, type) and issubclass(cls, GenServer)):
        raise TypeError(f"{cls!r} is not a GenServer subclass")
    return start_behaviour(_server_main, cls, args, name, timeout, link, max_mailbox, node)


def behaviour_child_spec(
    start_link: Callable[..., Pid | None],
    default_id: str,
    args: Any,
    id: Any,  # noqa: A002
    name: ServerName | None,
    max_mailbox: int | None,
    kw: dict[str, Any],
) -> ChildSpec:
    """The child spec of a behaviour's ``child_spec`` classmethod:
    ``start_link(args, name=name, max_mailbox=max_mailbox)``, ``id``
    defaulting to ``default_id``; a bad ``max_mailbox`` raises here."""
    options: dict[str, Any] = {"name": name} if name is not None else {}
    if _api.check_max_mailbox(max_mailbox) is not None:
        options["max_mailbox"] = max_mailbox
    start: Callable[..., Pid | None] = partial(start_link, **options) if options else start_link
    return child_spec(id if id is not None else default_id, (start, (args,)), **kw)


def start_behaviour(
    main: Callable[[type, Any, ServerName | None, Pid, Ref, bool], None],
    cls: type,
    args: Any,
    name: ServerName | None,
    timeout: float | None,
    link: bool,
    max_mailbox: int | None,
    node: str | None = None,
) -> Pid | None:
    """Spawn ``main(cls, args, name, parent, ack, link)`` (a behaviour's
    loop, which registers ``name`` and acknowledges with a
    :class:`StartAck` carrying ``ack``) and wait for its answer: the pid,
    None if ``init`` ignored, :class:`StartError` if it failed, died or
    did not answer within ``timeout`` (then it is killed).  The caller is
    never killed through the link by a failed start (OTP 26's proc_lib)."""
    timeout = check_timeout(timeout)
    check_name(name)
    bound = _api.check_max_mailbox(max_mailbox)
    p = _process.current()
    ack = _api.make_ref()
    pid, mref = p.spawn(
        main,
        (cls, args, name, p.pid, ack, link),
        {},
        module=cls.__module__,
        link=link,
        monitor=True,
        max_mailbox=bound,
        node=node,
    )

    def answer(m: object) -> bool:
        return (type(m) is StartAck and m.ref == ack) or (isinstance(m, DOWN) and m.ref == mref)

    try:
        msg = p.receive(timeout, answer)
    except Timeout:
        if link:
            p.unlink(pid)
        p.exit_signal(pid, "kill")
        p.demonitor(mref, flush=True)
        raise StartError("timeout") from None
    p.demonitor(mref, flush=True)
    if isinstance(msg, DOWN):
        raise StartError(msg.reason)
    result = msg.result
    if isinstance(result, StartFailed):
        raise StartError(result.reason)
    return pid if isinstance(result, Started) else None


# ------------------------------------------------------------------- names


def check_name(name: Any) -> None:
    """Refuse, in the caller, a ``name=`` no registry could take (OTP's
    badarg before spawning): ``StartError(('invalid_name', name, why))``.

    A name is a str, int, bytes or tuple of those (no bool: ``True == 1``),
    or ``otp.via(registry, key)`` with a pid or such a name as registry and
    such a key.  What only the registry knows (does the registry exist, how
    deep may tuples nest) is found out by the new process."""
    if name is None:
        return
    why = _name_problem(name)
    if why is not None:
        raise StartError(("invalid_name", name, why))


def _name_problem(name: Any) -> str | None:
    try:
        hash(name)
    except (TypeError, RecursionError):
        return "a name must be hashable"
    if not (isinstance(name, tuple) and name and isinstance(name[0], str) and name[0] == "$via"):
        return _term_problem(name)
    if len(name) != 3:
        return "a via name is otp.via(registry, key)"
    _, registry, key = name
    if not isinstance(registry, Pid) and _term_problem(registry) is not None:
        return "the registry of a via name is a pid or a name"
    return _term_problem(key)


def _term_problem(term: Any, depth: int = 0) -> str | None:
    if isinstance(term, bool) or not isinstance(term, (str, int, bytes, tuple)):
        return f"a name is a str, int, bytes or tuple of those, not {type(term).__name__}"
    if isinstance(term, tuple) and depth < 64:  # deeper: the registry's own limit says
        for part in term:
            why = _term_problem(part, depth + 1)
            if why is not None:
                return why
    return None


# ------------------------------------------------------------------ server


def _server_main(cls: type, args: Any, name: ServerName | None, parent: Pid, ack: Ref, linked: bool) -> None:
    started = Starter(cls, name, parent, ack, linked).start(args)
    if started is not None:
        _Loop(started[0], _process.current(), parent, name).run(started[1], started[2])


class Starter:
    """The start of one server, up to its answer to the starter (synchronous:
    the starter waits for it).

    Whatever fails (the name, the class, ``init``, its return value), the
    server unlinks from its starter before it answers, so that the starter
    gets :class:`StartError` and is not killed by the link (OTP 26)."""

    def __init__(self, cls: type, name: ServerName | None, parent: Pid, ack: Ref, linked: bool) -> None:
        self.cls, self.name, self.parent, self.ack, self.linked = cls, name, parent, ack, linked
        self.proc = _process.current()
        self.registered = False

    def run_init(self, args: Any) -> tuple[Any, Any] | None:
        """Take the name, make the callback object and run its ``init(args)``:
        ``(obj, result)`` for the behaviour to check and answer, or None
        after ``Ignore`` (answered); a crash or ``Stop`` is answered as the
        failure (raises ProcessExit)."""
        self.register()
        try:
            obj = self.cls()
            result = obj.init(args)
        except ProcessExit:
            raise
        except Exception as exc:
            self.fail(Crash.from_exception(exc), log_it=True)
        if result is Ignore:
            self.release()
            self.answer(IGNORED)
            return None
        if isinstance(result, Stop):
            self.fail(result.reason, log_it=False)
        return obj, result

    def start(self, args: Any) -> tuple[GenServer, Any, Any] | None:
        """``(server, state, action)``, or None after ``Ignore``; raises
        ProcessExit after a failure was answered."""
        ran = self.run_init(args)
        if ran is None:
            return None
        server, result = ran
        state, action = (result.state, result.action) if isinstance(result, NoReply) else (result, None)
        try:
            action = _valid_action(action)
        except (TypeError, ValueError):
            self.fail(("bad_return_value", result), log_it=True)
        self.answer(Started(self.proc.pid))
        return server, state, action

    def register(self) -> None:
        if self.name is None:
            return
        try:
            names = _naming.service()
            if names is None:
                _no_names(self.name, self.proc.pid)
            else:
                names.register_server(self.name, self.proc.pid)
        except StartError as exc:
            self.fail(exc.reason, log_it=False)
        except Exception as exc:  # whatever a registry raises is a failed start, not a crash
            self.fail(("invalid_name", self.name, Crash.from_exception(exc)), log_it=False)
        self.registered = True

    def release(self) -> None:
        """Give the name back and unlink, before the starter hears of the
        outcome, so that an immediate restart does not find the name taken."""
        if self.registered:
            names = _naming.service()
            try:
                if names is not None:
                    names.unregister_server(self.name, self.proc.pid)
            except Exception:  # noqa: BLE001 - our exit drops the name anyway
                log.warning("%r could not unregister %r", self.proc.pid, self.name, exc_info=True)
        if self.linked:
            self.proc.unlink(self.parent)

    def answer(self, result: StartResult) -> None:
        self.proc.send(self.parent, StartAck(self.ack, result))

    def fail(self, reason: Any, *, log_it: bool) -> NoReturn:
        self.release()
        self.answer(StartFailed(reason))
        if log_it:
            log.error(
                "%s %r failed to start: %s",
                self.cls.__name__,
                self.proc.pid,
                format_reason(reason),
                extra=_logging.report("crash", pid=self.proc.pid, name=self.name, reason=reason),
            )
        raise ProcessExit(reason)


def _no_names(name: Any, pid: Pid) -> NoReturn:
    raise StartError(("no_registry", name))


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
            if result.reply is not _NO_REPLY and from_ is not None:
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
        try:
            self.server.terminate(reason, state)
        except ProcessExit:
            raise
        except Exception as exc:
            reason = Crash.from_exception(exc)
        if not is_clean(reason):
            log.error(
                "%s %r terminating\n** last message: %r\n** reason: %s",
                type(self.server).__name__,
                self.proc.pid,
                self.last,
                reason.traceback.rstrip() if isinstance(reason, Crash) else repr(reason),
                extra=_logging.report("crash", pid=self.proc.pid, reason=reason),
            )
        raise ProcessExit(reason)
