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
    (``handle_info('timeout', state)`` runs if no message comes first,
    GS-TIMEOUT), ``Continue(term)`` (``handle_continue`` runs before any
    message, GS-CONT) or ``HIBERNATE`` (a garbage collection before the
    wait).  ``init`` returns the state, ``NoReply(state, action)``,
    ``Ignore`` or ``Stop(reason)``, or raises.

Semantics follow OTP: start is synchronous (returns after ``init``); an
``init`` failure raises :class:`StartError` in the starter, which is *not*
killed by the link (OTP 26's proc_lib: the server unlinks before it exits);
``terminate`` runs when a callback returns ``Stop``, raises or returns a bad
value, and when a server that traps exits gets an exit signal from its
parent; it does not run when the process is killed by an exit signal it
does not trap (GS-TERM).
"""

from __future__ import annotations

import gc
import logging
from typing import Any, NamedTuple

from . import _api, _process
from ._errors import NoProc, ProcessExit, StartError, Timeout
from ._pid import Pid
from ._reasons import DOWN, EXIT, Crash, is_clean

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
    "name_registrars",
]

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
HIBERNATE = _Sentinel("HIBERNATE")

#: Functions ``(name, pid) -> None`` that register a server name, raising
#: ``StartError(('already_started', pid))`` on a clash, and that remove it;
#: the registry installs itself here.  Empty means names are not available.
name_registrars: list = []
name_unregistrars: list = []


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
        """Clean up before the process exits (not guaranteed: see GS-TERM)."""

    # ------------------------------------------------------------- starting

    @classmethod
    def start(cls, args: Any = None, *, name: Any = None, timeout: float = DEFAULT_CALL_TIMEOUT) -> Pid | None:
        """Start a server (not linked); return its pid once ``init`` returned,
        None if ``init`` returned ``Ignore``."""
        return _start(cls, args, name, timeout, link=False)

    @classmethod
    def start_link(cls, args: Any = None, *, name: Any = None, timeout: float = DEFAULT_CALL_TIMEOUT) -> Pid | None:
        """Like :meth:`start`, linked to the caller."""
        return _start(cls, args, name, timeout, link=True)

    @classmethod
    def child_spec(cls, args: Any = None, id: Any = None, *, name: Any = None, **kw: Any):  # noqa: A002
        """A child spec running ``cls.start_link(args, name=name)`` (id
        defaults to the class name); ``kw`` are child_spec's keywords."""
        from functools import partial

        from ._child_spec import child_spec

        start = partial(cls.start_link, name=name) if name is not None else cls.start_link
        return child_spec(id if id is not None else cls.__name__, (start, (args,)), **kw)


# ------------------------------------------------------------------ client


def call(server: Any, request: Any, timeout: float | None = DEFAULT_CALL_TIMEOUT) -> Any:
    """Send ``request`` to ``server`` and wait for its reply (GS-CALL-1).

    Raises :class:`CallTimeout` (a reply arriving later is dropped),
    :class:`NoProc`, or :class:`CalleeExit` with the server's exit reason if
    it exits before replying.  ``timeout=None`` waits forever (but never
    past the server's death).
    """
    p = _process.current()
    pid = _api.resolve(server)
    me = p.pid
    return p.call(pid, lambda ref: ("$gen_call", (me, ref), request), timeout, server, request)


def multi_call(requests: list, timeout: float | None = DEFAULT_CALL_TIMEOUT) -> list:
    """Call several servers concurrently: ``requests`` is a list of
    ``(server, request)``; returns a list, in the same order, of
    ``('ok', reply)`` or ``('error', CallError)``.  Never raises for one
    server's failure; the whole waits at most ``timeout``."""
    p = _process.current()
    me = p.pid
    targets = []
    early: dict[int, tuple] = {}
    for i, (server, request) in enumerate(requests):
        try:
            targets.append((_api.resolve(server), request))
        except NoProc as exc:
            early[i] = ("error", exc)
            targets.append(None)
    live = [(i, t) for i, t in enumerate(targets) if t is not None]
    answers = p.multi_call([t for _, t in live], lambda ref, req: ("$gen_call", (me, ref), req), timeout)
    out: list = [early.get(i) for i in range(len(requests))]
    for (i, _), answer in zip(live, answers):
        out[i] = answer
    return out


def cast(server: Any, request: Any) -> None:
    """Send ``request`` without waiting; never fails (GS-CAST)."""
    try:
        pid = _api.resolve(server)
    except NoProc:
        return
    _api.send(pid, ("$gen_cast", request))


def reply(from_: tuple, value: Any) -> None:
    """Answer a call later (after ``handle_call`` returned ``NoReply``)."""
    p = _process.current()
    p.send_reply(from_[0], from_[1], value)


def stop(server: Any, reason: Any = "normal", timeout: float | None = None) -> None:
    """Stop ``server`` with ``reason``; return after it has exited (GS-STOP).

    Raises :class:`NoProc` if it does not exist, :class:`CallTimeout` if it
    did not exit in time, :class:`CalleeExit` if it exited with another
    reason.
    """
    from ._errors import CalleeExit, CallTimeout

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


def _start(cls: type, args: Any, name: Any, timeout: float, link: bool) -> Pid | None:
    if not (isinstance(cls, type) and issubclass(cls, GenServer)):
        raise TypeError(f"{cls!r} is not a GenServer subclass")
    p = _process.current()
    ack = _api.make_ref()
    pid, mref = p.spawn(
        _server_main, (cls, args, name, p.pid, ack, link), {}, link=link, monitor=True, module=cls.__module__
    )

    def answer(m: object) -> bool:
        return (type(m) is tuple and len(m) == 3 and m[0] == "$ack" and m[1] == ack) or (
            isinstance(m, DOWN) and m.ref == mref
        )

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
    status, value = msg[2]
    if status == "ok":
        return pid
    if status == "ignore":
        return None
    raise StartError(value)


# ------------------------------------------------------------------ server


def _server_main(cls: type, args: Any, name: Any, parent: Pid, ack, linked: bool) -> None:
    p = _process.current()
    server = cls()

    def answer(result: tuple) -> None:
        p.send(parent, ("$ack", ack, result))

    def fail(reason: Any, *, log_it: bool) -> None:
        # GS-START: the name goes before the starter hears of the failure,
        # so that an immediate restart does not find it taken.
        if name is not None and registered:
            for unregistrar in name_unregistrars:
                unregistrar(name, p.pid)
        if linked:  # OTP 26: a failed start does not take the starter down
            p.unlink(parent)
        answer(("error", reason))
        if log_it:
            log.error("%s %r failed to start: %r", cls.__name__, p.pid, reason)
        raise ProcessExit(reason)

    registered = False
    if name is not None:
        try:
            for registrar in name_registrars or [_no_names]:
                registrar(name, p.pid)
            registered = True
        except StartError as exc:
            fail(exc.reason, log_it=False)
    try:
        result = server.init(args)
    except ProcessExit:
        raise
    except Exception as exc:
        fail(Crash.from_exception(exc), log_it=True)
    if result is Ignore:
        if registered:
            for unregistrar in name_unregistrars:
                unregistrar(name, p.pid)
        if linked:
            p.unlink(parent)
        answer(("ignore", None))
        return
    if isinstance(result, Stop):
        fail(result.reason, log_it=False)
    if isinstance(result, NoReply):
        state, action = result.state, result.action
    else:
        state, action = result, None
    answer(("ok", p.pid))
    _Loop(server, p, parent).run(state, action)


def _no_names(name: Any, pid: Pid) -> None:
    raise StartError(("no_registry", name))


class _Loop:
    """The receive-dispatch loop of one server."""

    def __init__(self, server: GenServer, proc, parent: Pid) -> None:
        self.server = server
        self.proc = proc
        self.parent = parent
        self.last: Any = None

    def run(self, state: Any, action: Any) -> None:
        server, proc = self.server, self.proc
        while True:
            while isinstance(action, Continue):
                state, action = self.handle(lambda s, t=action.term: server.handle_continue(t, s), state, None)
            timeout = None
            if action is HIBERNATE:
                gc.collect()
            elif action is not None:
                timeout = action
            try:
                msg = proc.receive(timeout)
            except Timeout:
                msg = "timeout"
            self.last = msg
            if type(msg) is tuple and msg:
                tag = msg[0]
                if tag == "$gen_call" and len(msg) == 3:
                    from_, request = msg[1], msg[2]
                    state, action = self.handle(lambda s, r=request, f=from_: server.handle_call(r, f, s), state, from_)
                    continue
                if tag == "$gen_cast" and len(msg) == 2:
                    request = msg[1]
                    state, action = self.handle(lambda s, r=request: server.handle_cast(r, s), state, None)
                    continue
                if tag == "$gen_stop" and len(msg) == 2:
                    self.exit(msg[1], state)
            if isinstance(msg, EXIT) and msg.pid == self.parent and proc.sig.trap_exit:
                self.exit(msg.reason, state)
            state, action = self.handle(lambda s, m=msg: server.handle_info(m, s), state, None)

    def handle(self, callback, state: Any, from_: tuple | None) -> tuple[Any, Any]:
        try:
            result = callback(state)
        except ProcessExit as exc:
            if self.proc.sig.fatal is not None:
                raise  # killed by an exit signal: no terminate (GS-TERM)
            self.exit(exc.reason, state)
        except Exception as exc:
            self.exit(Crash.from_exception(exc), state)
        kind = type(result)
        if kind is Reply and from_ is not None:
            reply(from_, result.reply)
            return result.state, result.action
        if kind is NoReply:
            return result.state, result.action
        if kind is Stop:
            if result.reply is not _NO_REPLY and from_ is not None:
                reply(from_, result.reply)
            self.exit(result.reason, result.state)
        self.exit(("bad_return_value", result), state)

    def exit(self, reason: Any, state: Any) -> None:
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
            )
        raise ProcessExit(reason)
