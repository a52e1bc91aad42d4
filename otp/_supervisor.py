"""Supervisors: static (four OTP strategies) and dynamic.

Function form::

    sup = otp.Supervisor.start_link([spec_a, spec_b], strategy="rest_for_one",
                                    intensity=3, period=5)

Class form (supervisor.erl's single callback, returning data)::

    class AppSup(otp.Supervisor):
        def init(self, args):
            return otp.SupFlags(strategy="one_for_all"), [spec_a, spec_b]

A supervisor is a gen_server that traps exits.  Children start in order,
synchronously; a child that fails to start makes ``start_link`` raise
``StartError(('shutdown', ('failed_to_start_child', id, reason)))``.  When
restarts exceed ``intensity`` within ``period`` seconds the supervisor stops
its children in reverse order and exits with ``'shutdown'`` (escalation to
its own supervisor).  Management calls (``otp.supervisor.start_child``...)
wait without a timeout by default, as OTP's do: they end when the supervisor
answers or dies.  Their ``timeout`` and the start's are checked as
``otp.call``'s (None or ``math.inf``: forever; nan or negative: ValueError
before anything is sent).  ``name=`` is checked as ``GenServer.start``'s:
a bad name raises ``StartError(('invalid_name', name, why))`` in the
caller, which the link never kills.

Requests.  The process behind every supervisor is an :class:`otp.Service`:
each management call is one of its operations, run with :func:`otp.ask`, and
a refusal is a :class:`SupervisorError` raised in the caller with OTP's
reason term.  A supervisor is a special process, but none of what makes it
special is in the way: it traps exits, and a child's EXIT (or the retry of a
failed restart) is a message, not a request, so it goes to ``handle_info``;
the operations only read or change the children, which live on the server
as ``self.children``.  The Service's typed replies replace the private
``('ok', v)`` / ``('error', reason)`` envelope a hand-written supervisor
would need, and its error declaration (``errors``) states which exceptions
are answers: a ``SupervisorError`` is one, anything else is a bug of the
supervisor and crashes it.  A call that is not an operation is answered
``SupervisorError(('unknown_call', request))`` rather than crashing the
supervisor (and with it every child); a cast that is not one is ignored.

Python note: ``period`` is in seconds with sub-second resolution (OTP keeps
whole seconds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict

from . import _api
from ._child_spec import (
    DYNAMIC_FLAGS,
    AutoShutdown,
    ChildInfo,
    ChildSpec,
    DynamicOptions,
    Strategy,
    SupervisorError,
    SupFlags,
    check_childspecs,
    check_max_children,
    child_spec,
    validate_flags,
)
from ._gen_server import Ignore, NoReply, ServerName, ServerRef, Stop
from ._pid import Pid
from ._reasons import DOWN, EXIT
from ._service import Failed, Service, ask, operation
from ._sup_children import Children, RetryRestart

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "Supervisor",
    "DynamicSupervisor",
    "start_child",
    "terminate_child",
    "restart_child",
    "delete_child",
    "which_children",
    "count_children",
    "get_childspec",
    "check_childspecs",
    "subscribe",
]

_NO_ARGS: Any = object()


class SupervisorStart(TypedDict, total=False):
    """The keywords of :meth:`Supervisor.start_link` and ``start``."""

    name: ServerName | None
    timeout: float | None
    strategy: Strategy | None
    intensity: int | None
    period: float | None
    auto_shutdown: AutoShutdown | None
    node: str | None


class DynamicSupervisorStart(TypedDict, total=False):
    """The keywords of :meth:`DynamicSupervisor.start_link` and ``start``."""

    max_children: int | None
    extra_arguments: tuple
    intensity: int
    period: float
    name: ServerName | None
    timeout: float | None
    node: str | None


class Supervisor:
    """The supervisor behaviour.  Subclass it and define :meth:`init`, or use
    ``Supervisor.start_link(children, ...)`` directly."""

    def init(self, args: Any) -> Any:
        """Return ``(SupFlags, [child specs])``, or ``otp.Ignore``."""
        raise NotImplementedError(f"{type(self).__name__}.init must return (SupFlags, children)")

    @classmethod
    def start_link(cls, args: Any = _NO_ARGS, **options: Unpack[SupervisorStart]) -> Pid | None:
        """Start a supervisor linked to the caller; returns once every child
        started, or None if ``init`` returned ``otp.Ignore`` (OTP's
        ``ignore``).  ``Supervisor.start_link(children, strategy=...,
        intensity=..., period=..., auto_shutdown=...)`` (the flags default
        to :class:`SupFlags`'s) or ``MySup.start_link(args)``.  Raises
        ``StartError``: ``('shutdown', ('failed_to_start_child', id,
        reason))``, ``('start_spec', error)`` for bad flags or specs
        (``error`` as :func:`check_childspecs` and :func:`validate_flags`
        raise it), ``('bad_start_spec', specs)`` for a simple_one_for_one
        without exactly one spec, ``('bad_return', (cls, 'init', value))``,
        and what ``GenServer.start_link`` raises.  ``node``: start it on
        that node of the cluster (as ``GenServer.start_link(node=)``), so
        that a supervisor's child spec with ``node=`` can be a supervisor."""
        return cls._start_as(True, args, **options)

    @classmethod
    def start(cls, args: Any = _NO_ARGS, **options: Unpack[SupervisorStart]) -> Pid | None:
        """Like :meth:`start_link`, not linked."""
        return cls._start_as(False, args, **options)

    @classmethod
    def _start_as(
        cls,
        link: bool,
        args: Any,
        *,
        strategy: Strategy | None = None,
        intensity: int | None = None,
        period: float | None = None,
        auto_shutdown: AutoShutdown | None = None,
        name: ServerName | None = None,
        timeout: float | None = None,
        node: str | None = None,
    ) -> Pid | None:
        flags = _flags(strategy=strategy, intensity=intensity, period=period, auto_shutdown=auto_shutdown)
        start = _SupervisorServer.start_link if link else _SupervisorServer.start
        return start(cls._config(args, flags), name=name, timeout=timeout, node=node)

    @classmethod
    def child_spec(cls, args: Any = None, id: Any = None, **kw: Any) -> ChildSpec:  # noqa: A002
        """A spec to run this supervisor under another one; ``kw`` are
        :func:`otp.child_spec`'s keywords."""
        return child_spec(id if id is not None else cls.__name__, (cls.start_link, (args,)), type="supervisor", **kw)

    @classmethod
    def _config(cls, args: Any, flags: dict[str, Any]) -> _Config:
        if cls is Supervisor:
            if args is _NO_ARGS:
                raise TypeError("Supervisor.start_link(children, **flags) takes the list of child specs")
            return _Static(SupFlags(**flags), list(args))
        if flags:
            raise TypeError(f"{cls.__name__}.init returns the flags; do not pass them to start_link")
        return _Callback(cls, None if args is _NO_ARGS else args)


def _flags(**given: Any) -> dict[str, Any]:
    """The flags given to ``start_link`` (the others keep SupFlags' defaults)."""
    return {k: v for k, v in given.items() if v is not None}


class DynamicSupervisor(Supervisor):
    """A supervisor of children started on demand (Elixir's
    DynamicSupervisor): one_for_one, ``max_children``, ``extra_arguments``
    prepended to every child's start arguments, children stopped in
    parallel.  Defaults as in Elixir: 3 restarts in 5 seconds."""

    # The keywords differ from Supervisor.start_link's (no children, no
    # strategy): a dynamic supervisor is a Supervisor for every management
    # call, not for its start.
    @classmethod
    def start_link(cls, **options: Unpack[DynamicSupervisorStart]) -> Pid:  # type: ignore[override]
        """Start a dynamic supervisor linked to the caller.  Raises
        ``SupervisorError(('invalid_max_children', n))`` before anything is
        spawned, ``StartError(('start_spec', error))`` for a bad intensity
        or period, and what ``GenServer.start_link`` raises.  ``node``: as
        :meth:`Supervisor.start_link`'s."""
        return cls._start_dynamic(True, **options)

    @classmethod
    def start(cls, **options: Unpack[DynamicSupervisorStart]) -> Pid:  # type: ignore[override]
        """Like :meth:`start_link`, not linked."""
        return cls._start_dynamic(False, **options)

    @classmethod
    def _start_dynamic(
        cls,
        link: bool,
        *,
        max_children: int | None = None,
        extra_arguments: tuple = (),
        intensity: int = DYNAMIC_FLAGS.intensity,
        period: float = DYNAMIC_FLAGS.period,
        name: ServerName | None = None,
        timeout: float | None = None,
        node: str | None = None,
    ) -> Pid:
        """A dynamic supervisor runs no user ``init``: it never ignores."""
        options = DynamicOptions(check_max_children(max_children), tuple(extra_arguments))
        config = _Dynamic(SupFlags("one_for_one", intensity, period), options)
        start = _SupervisorServer.start_link if link else _SupervisorServer.start
        pid = start(config, name=name, timeout=timeout, node=node)
        if pid is None:
            raise AssertionError("a dynamic supervisor returned ignore")
        return pid

    @staticmethod
    def start_child(sup: ServerRef, spec: Any, node: str | None = None, timeout: float | None = None) -> Pid | None:
        """Start a child from ``spec`` (Elixir's
        ``DynamicSupervisor.start_child``), on ``node`` if given (else on the
        spec's node, by default the supervisor's): see
        :func:`otp.supervisor.start_child`."""
        return start_child(sup, spec, timeout, node=node)

    @staticmethod
    def terminate_child(sup: ServerRef, pid: Pid, timeout: float | None = None) -> None:
        """Stop the child ``pid``: see :func:`otp.supervisor.terminate_child`."""
        terminate_child(sup, pid, timeout)

    @staticmethod
    def which_children(sup: ServerRef, timeout: float | None = None) -> list[ChildInfo]:
        """See :func:`otp.supervisor.which_children`."""
        return which_children(sup, timeout)

    @staticmethod
    def count_children(sup: ServerRef, timeout: float | None = None) -> dict[str, int]:
        """See :func:`otp.supervisor.count_children`."""
        return count_children(sup, timeout)


# ------------------------------------------------------------ the process


class _Static(NamedTuple):
    """``Supervisor.start_link(children, **flags)``: checked by the server."""

    flags: Any
    specs: Any


class _Callback(NamedTuple):
    """``MySup.start_link(args)``: the server runs ``MySup().init(args)``."""

    cls: type[Supervisor]
    args: Any


class _Dynamic(NamedTuple):
    """``DynamicSupervisor.start_link(...)``."""

    flags: SupFlags
    options: DynamicOptions


_Config = _Static | _Callback | _Dynamic


class _SupervisorServer(Service):
    """The process behind every supervisor (see the module doc)."""

    errors = (SupervisorError,)

    children: Children

    def init(self, config: _Config) -> Any:
        # A supervisor hears its children's exits as messages.
        _api.trap_exit(True)
        name = None
        options = None
        if isinstance(config, _Callback):
            name = config.cls.__name__
            result = config.cls().init(config.args)
            if result is Ignore:
                return Ignore
            if not (isinstance(result, tuple) and len(result) == 2):
                return Stop(("bad_return", (name, "init", result)))
            flags, specs = result
        elif isinstance(config, _Dynamic):
            flags, specs, options = config.flags, [], config.options
        else:
            flags, specs = config.flags, config.specs
        try:
            flags = validate_flags(flags)
            specs = check_childspecs(specs, flags.auto_shutdown)
        except SupervisorError as exc:
            return Stop(("start_spec", exc.reason))
        template = None
        if flags.strategy == "simple_one_for_one":
            if len(specs) != 1:
                return Stop(("bad_start_spec", specs))
            template, specs = specs[0], []
        self.children = Children(flags, name, template=template, options=options)
        failure = self.children.start_initial(specs)
        if failure is not None:
            return Stop(("shutdown", failure))
        return None

    # ------------------------------------------------------------ operations

    @operation
    def start_child(self, spec_or_args: Any, node: str | None = None) -> Pid | None:
        return self.children.start_child(spec_or_args, node)

    @operation
    def terminate_child(self, id_or_pid: Any) -> None:
        self.children.terminate_child(id_or_pid)

    @operation
    def restart_child(self, child_id: Any) -> Pid | None:
        return self.children.restart_child(child_id)

    @operation
    def delete_child(self, child_id: Any) -> None:
        self.children.delete_child(child_id)

    @operation
    def which_children(self) -> list[ChildInfo]:
        return self.children.which_children()

    @operation
    def count_children(self) -> dict[str, int]:
        return self.children.count_children()

    @operation
    def get_childspec(self, id_or_pid: Any) -> ChildSpec:
        return self.children.get_childspec(id_or_pid)

    @operation
    def subscribe(self, pid: Pid) -> None:
        self.children.subscribe(pid)

    # ------------------------------------------------------------ messages

    def handle_other_call(self, request: Any, from_: tuple) -> Failed:
        return Failed(SupervisorError(("unknown_call", request)))

    def handle_other_cast(self, request: Any) -> None:
        return None

    def handle_info(self, msg: Any, state: Any) -> NoReply | Stop:
        children = self.children
        if isinstance(msg, EXIT):
            return _after(children.child_exited(msg.pid, msg.reason), state)
        if isinstance(msg, RetryRestart):
            return _after(children.try_again(msg.key), state)
        if isinstance(msg, DOWN):
            children.unsubscribe(msg.ref)
        return NoReply(state)

    def terminate(self, reason: Any, state: Any) -> None:
        self.children.terminate_all()
        self.children.notify("shutdown", reason)


def _after(must_stop: bool, state: Any) -> NoReply | Stop:
    return Stop("shutdown", state) if must_stop else NoReply(state)


# ----------------------------------------------------------------- client
#
# timeout=None is OTP's infinity for supervisor calls.  It is bounded all
# the same: a supervisor that dies fails the call at once (the call monitors
# it), a child's start has its own timeout (gen_server's 5 s by default) and
# a child's shutdown its 'shutdown' time before the kill.  Only a start
# function that never returns (a gen_server started with timeout=None, or a
# user function that blocks) or a child with shutdown='infinity' that never
# exits can hold such a call forever, exactly as in OTP.
#
# Every call raises what otp.ask raises (NoProc, CalleeExit, CallTimeout),
# and SupervisorError with the reasons listed.


def start_child(
    sup: ServerRef, spec_or_args: Any, timeout: float | None = None, *, node: str | None = None
) -> Pid | None:
    """Start a child: a child spec, or for simple_one_for_one the extra start
    arguments.  Returns its pid, or None if it returned ignore.  ``node``
    (not None) starts it on that node of the cluster, in place of the
    spec's (see :func:`otp.child_spec`); the spec kept for its restarts
    says that node.  Raises ``SupervisorError``: ``'max_children'``, a spec
    error (as :func:`otp.child_spec`), ``('invalid_node', node)``,
    ``('already_started', pid)``, ``'already_present'``, or the start's
    failure reason (``'noconnection'`` if ``node`` cannot be reached)."""
    if node is None:
        result: Pid | None = ask(sup, "start_child", spec_or_args, timeout=timeout)
    else:
        result = ask(sup, "start_child", spec_or_args, node, timeout=timeout)
    return result


def terminate_child(sup: ServerRef, id_or_pid: Any, timeout: float | None = None) -> None:
    """Stop a child (its spec is kept, unless temporary or dynamic).  Raises
    ``SupervisorError``: ``'not_found'``, ``'simple_one_for_one'`` (an id
    given to a dynamic supervisor)."""
    ask(sup, "terminate_child", id_or_pid, timeout=timeout)


def restart_child(sup: ServerRef, child_id: Any, timeout: float | None = None) -> Pid | None:
    """Start again a stopped child whose spec is kept.  Raises
    ``SupervisorError``: ``'not_found'``, ``'running'``, ``'restarting'``,
    ``'simple_one_for_one'``, or the start's failure reason."""
    result: Pid | None = ask(sup, "restart_child", child_id, timeout=timeout)
    return result


def delete_child(sup: ServerRef, child_id: Any, timeout: float | None = None) -> None:
    """Remove the spec of a stopped child.  Raises ``SupervisorError``:
    ``'not_found'``, ``'running'``, ``'restarting'``, ``'simple_one_for_one'``."""
    ask(sup, "delete_child", child_id, timeout=timeout)


def which_children(sup: ServerRef, timeout: float | None = None) -> list[ChildInfo]:
    """``[ChildInfo(id, pid, type)]`` in start order."""
    result: list[ChildInfo] = ask(sup, "which_children", timeout=timeout)
    return result


def count_children(sup: ServerRef, timeout: float | None = None) -> dict[str, int]:
    """``{'specs', 'active', 'supervisors', 'workers'}``."""
    result: dict[str, int] = ask(sup, "count_children", timeout=timeout)
    return result


def get_childspec(sup: ServerRef, id_or_pid: Any, timeout: float | None = None) -> ChildSpec:
    """The spec of a child.  Raises ``SupervisorError('not_found')``."""
    result: ChildSpec = ask(sup, "get_childspec", id_or_pid, timeout=timeout)
    return result


def subscribe(sup: ServerRef, timeout: float | None = None) -> None:
    """Receive the supervisor's events as messages
    ``('$supervisor', sup_pid, event, *details)`` with event ``'started'``
    (id, pid), ``'exited'`` (id, pid, reason) or ``'shutdown'`` (reason).
    The supervisor monitors subscribers and forgets dead ones."""
    ask(sup, "subscribe", _api.self_(), timeout=timeout)
