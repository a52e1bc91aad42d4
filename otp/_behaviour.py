"""What gen_server and gen_statem share: how a callback class is started
(``start``, ``start_link``, ``child_spec``; the spawn, the name, ``init``
and the answer to the starter) and how its process ends (``terminate``,
the crash report, the exit).

Apart from both behaviours so that the start protocol, OTP 26's proc_lib
(the starter waits for ``init``; a failed start raises
:class:`StartError` in the starter and never kills it through the link),
exists once: :class:`Behaviour` is the base of :class:`otp.GenServer` and
:class:`otp.GenStatem`, each of which says what runs in its process
(``_process_main``), after :class:`Starter` took the name and ran
``init``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn, TypedDict

from . import _api, _logging, _naming, _process
from ._child_spec import ChildSpec, child_spec
from ._errors import ProcessExit, StartError, Timeout
from ._pid import Pid, Ref
from ._reasons import DOWN, Crash, format_reason, is_clean
from ._server_records import Ignore, Stop
from ._start_result import IGNORED, StartAck, Started, StartFailed, StartResult
from ._timeouts import check_timeout

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger("otp")

__all__ = [
    "Behaviour",
    "StartOptions",
    "Starter",
    "ServerName",
    "ServerRef",
    "DEFAULT_CALL_TIMEOUT",
    "check_name",
    "start_behaviour",
    "exit_after_terminate",
]

#: A name a server can be started with: a str, int, bytes or tuple of those,
#: or ``otp.via(registry, key)`` (checked by :func:`check_name`).
ServerName = str | int | bytes | tuple
#: What calls and casts are addressed to: a pid or a name.
ServerRef = Pid | ServerName | _naming.RemoteName

#: OTP's default call timeout (5000 ms).
DEFAULT_CALL_TIMEOUT = 5.0


class StartOptions(TypedDict, total=False):
    """The keywords of ``start`` and ``start_link`` (see
    :meth:`Behaviour.start`)."""

    name: ServerName | None
    timeout: float | None
    max_mailbox: int | None
    node: str | None


class Behaviour:
    """The start of a behaviour's process, for :class:`otp.GenServer` and
    :class:`otp.GenStatem`; a subclass says what its process runs in
    :meth:`_process_main`."""

    @classmethod
    def start(cls, args: Any = None, **options: Unpack[StartOptions]) -> Pid | None:
        """Start the process (not linked) with ``init(args)``; return its pid
        once ``init`` returned, None if ``init`` returned ``Ignore``.
        Keywords: ``name``, ``timeout`` (default 5 s), ``max_mailbox``,
        ``node``.  ``node``: start it on that node of the cluster (its
        name is registered there), see :func:`otp.spawn_opt`; a node that
        cannot be reached fails the start with ``StartError('noconnection')``.

        ``timeout`` bounds the wait for ``init`` (None or ``math.inf``:
        forever); ``max_mailbox`` bounds the process's queue (see
        :func:`otp.spawn_opt`).  A bad timeout or bound raises ValueError or
        TypeError, and a name of the wrong shape raises
        ``StartError(('invalid_name', name, why))``, all in the caller before
        anything is spawned.  A name of the right shape that cannot be
        registered fails the start: ``StartError(('already_started', pid))``
        on a clash, ``StartError(('invalid_name', name, Crash))`` for any other
        error of the registry (a via registry that does not exist...).  A
        failed ``init`` or one that took longer than ``timeout`` raises
        ``StartError`` with its reason (``'timeout'``).
        """
        return start_behaviour(cls, args, False, **options)

    @classmethod
    def start_link(cls, args: Any = None, **options: Unpack[StartOptions]) -> Pid | None:
        """Like :meth:`start`, linked to the caller.  A failed start (a bad
        name included) raises in the caller and never kills it through the
        link."""
        return start_behaviour(cls, args, True, **options)

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
        options: dict[str, Any] = {"name": name} if name is not None else {}
        if _api.check_max_mailbox(max_mailbox) is not None:
            options["max_mailbox"] = max_mailbox
        start: Callable[..., Pid | None] = partial(cls.start_link, **options) if options else cls.start_link
        return child_spec(id if id is not None else cls.__name__, (start, (args,)), **kw)

    @classmethod
    def _process_main(cls, args: Any, name: ServerName | None, parent: Pid, ack: Ref, linked: bool) -> None:
        """The life of the new process: take ``name``, run ``init(args)``,
        answer the starter (a :class:`Starter` does all three), then serve."""
        raise NotImplementedError(f"{cls.__name__} is not a behaviour")


def _behaviour_main(
    cls: type[Behaviour], args: Any, name: ServerName | None, parent: Pid, ack: Ref, link: bool
) -> None:
    cls._process_main(args, name, parent, ack, link)


def start_behaviour(
    cls: type[Behaviour],
    args: Any,
    link: bool,
    *,
    name: ServerName | None = None,
    timeout: float | None = DEFAULT_CALL_TIMEOUT,
    max_mailbox: int | None = None,
    node: str | None = None,
) -> Pid | None:
    """Spawn a process running ``cls._process_main(args, name, parent, ack,
    link)`` (which registers ``name`` and acknowledges with a
    :class:`StartAck` carrying ``ack``) and wait for its answer: the pid,
    None if ``init`` ignored, :class:`StartError` if it failed, died or
    did not answer within ``timeout`` (then it is killed).  The caller is
    never killed through the link by a failed start (OTP 26's proc_lib).
    TypeError, before anything is spawned, for a ``cls`` that is not a
    behaviour (``GenServer.start.__func__(int)``)."""
    if not (isinstance(cls, type) and issubclass(cls, Behaviour)):
        raise TypeError(f"{cls!r} is not a GenServer or GenStatem subclass")
    timeout = check_timeout(timeout)
    check_name(name)
    bound = _api.check_max_mailbox(max_mailbox)
    p = _process.current()
    ack = _api.make_ref()
    pid, mref = p.spawn(
        _behaviour_main,
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


# ---------------------------------------------------------------- starting


class Starter:
    """The start of one process, up to its answer to the starter
    (synchronous: the starter waits for it).

    Whatever fails (the name, the class, ``init``, its return value), the
    process unlinks from its starter before it answers, so that the starter
    gets :class:`StartError` and is not killed by the link (OTP 26)."""

    def __init__(self, cls: type, name: ServerName | None, parent: Pid, ack: Ref, linked: bool) -> None:
        self.cls, self.name, self.parent, self.ack, self.linked = cls, name, parent, ack, linked
        self.proc = _process.current()
        self.registered = False

    def run_init(self, args: Any) -> tuple[Any, Any] | None:
        """Take the name, make the callback object and run its ``init(args)``:
        ``(obj, result)`` for the behaviour to check and answer (with
        :meth:`started` or :meth:`fail`), or None after ``Ignore``
        (answered); a crash or ``Stop`` is answered as the failure (raises
        ProcessExit)."""
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

    def register(self) -> None:
        if self.name is None:
            return
        try:
            names = _naming.service()
            if names is None:
                raise StartError(("no_registry", self.name))
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

    def started(self) -> None:
        """Tell the starter ``init`` succeeded: the process runs."""
        self.answer(Started(self.proc.pid))

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


# ------------------------------------------------------------------ ending


def exit_after_terminate(
    callbacks: object, terminate: Callable[[Any], object], reason: Any, context: tuple[tuple[str, Any], ...]
) -> NoReturn:
    """End the process with ``reason`` after ``terminate(reason)`` of the
    ``callbacks`` object (a raise there makes its crash the reason).  An
    unclean reason is logged as a crash report: the class, the pid, each
    ``(label, value)`` of ``context`` (what the loop last saw), the reason."""
    try:
        terminate(reason)
    except ProcessExit:
        raise
    except Exception as exc:
        reason = Crash.from_exception(exc)
    if not is_clean(reason):
        pid = _process.current().pid
        lines = "".join(f"\n** {label}: %r" for label, _ in context)
        log.error(
            "%s %r terminating" + lines + "\n** reason: %s",
            type(callbacks).__name__,
            pid,
            *(value for _, value in context),
            reason.traceback.rstrip() if isinstance(reason, Crash) else repr(reason),
            extra=_logging.report("crash", pid=pid, reason=reason),
        )
    raise ProcessExit(reason)
