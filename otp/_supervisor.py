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

Python note: ``period`` is in seconds with sub-second resolution (OTP keeps
whole seconds).
"""

from __future__ import annotations

from typing import Any

from . import _api
from ._child_spec import ChildSpec, SupervisorError, SupFlags, check_childspecs, validate_flags
from ._gen_server import GenServer, Ignore, NoReply, Reply, Stop, call
from ._pid import Pid
from ._reasons import DOWN, EXIT
from ._sup_children import Children

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


class Supervisor:
    """The supervisor behaviour.  Subclass it and define :meth:`init`, or use
    ``Supervisor.start_link(children, ...)`` directly."""

    def init(self, args: Any) -> Any:
        """Return ``(SupFlags, [child specs])``, or ``otp.Ignore``."""
        raise NotImplementedError(f"{type(self).__name__}.init must return (SupFlags, children)")

    @classmethod
    def start_link(cls, *args: Any, name: Any = None, timeout: float | None = None, **flags: Any) -> Pid | None:
        """Start a supervisor linked to the caller; returns once every child
        started.  ``Supervisor.start_link(children, strategy=..., intensity=...,
        period=..., auto_shutdown=...)`` or ``MySup.start_link(args)``."""
        return _SupervisorServer.start_link(cls._payload(args, flags), name=name, timeout=timeout)

    @classmethod
    def start(cls, *args: Any, name: Any = None, timeout: float | None = None, **flags: Any) -> Pid | None:
        """Like :meth:`start_link`, not linked."""
        return _SupervisorServer.start(cls._payload(args, flags), name=name, timeout=timeout)

    @classmethod
    def child_spec(cls, args: Any = None, id: Any = None, **kw: Any) -> ChildSpec:  # noqa: A002
        """A spec to run this supervisor under another one."""
        from ._child_spec import child_spec

        return child_spec(id if id is not None else cls.__name__, (cls.start_link, (args,)), type="supervisor", **kw)

    @classmethod
    def _payload(cls, args: tuple, flags: dict) -> tuple:
        if cls is Supervisor:
            if len(args) != 1:
                raise TypeError("Supervisor.start_link(children, **flags) takes the list of child specs")
            return (None, (SupFlags(**flags), list(args[0])))
        if flags:
            raise TypeError(f"{cls.__name__}.init returns the flags; do not pass them to start_link")
        if len(args) > 1:
            raise TypeError(f"{cls.__name__}.start_link takes one argument for init")
        return (cls, args[0] if args else None)


class DynamicSupervisor(Supervisor):
    """A supervisor of children started on demand (Elixir's
    DynamicSupervisor): one_for_one, ``max_children``, ``extra_arguments``
    prepended to every child's start arguments, children stopped in
    parallel.  Defaults as in Elixir: 3 restarts in 5 seconds."""

    @classmethod
    def start_link(  # type: ignore[override]
        cls,
        *,
        max_children: int | None = None,
        extra_arguments: tuple = (),
        intensity: int = 3,
        period: float = 5.0,
        name: Any = None,
        timeout: float | None = None,
    ) -> Pid:
        payload = cls._dyn(max_children, extra_arguments, intensity, period)
        return _SupervisorServer.start_link(payload, name=name, timeout=timeout)

    @classmethod
    def start(cls, **options: Any) -> Pid:  # type: ignore[override]
        """Like :meth:`start_link` (same keywords), not linked."""
        name, timeout = options.pop("name", None), options.pop("timeout", None)
        return _SupervisorServer.start(cls._dyn(**options), name=name, timeout=timeout)

    @staticmethod
    def _dyn(max_children=None, extra_arguments=(), intensity=3, period=5.0) -> tuple:
        if max_children is not None and (not isinstance(max_children, int) or max_children < 0):
            raise SupervisorError(("invalid_max_children", max_children))
        extra = {"dynamic": True, "max_children": max_children, "extra_arguments": tuple(extra_arguments)}
        return (None, (SupFlags("one_for_one", intensity, period, extra=extra), []))


class _SupervisorServer(GenServer):
    """The process behind every supervisor."""

    def init(self, payload: tuple) -> Any:
        user_cls, data = payload
        _api.trap_exit(True)  # SUP-TRAP
        name = None
        if user_cls is None:
            flags, specs = data
        else:
            name = user_cls.__name__
            result = user_cls().init(data)
            if result is Ignore:
                return Ignore
            if not (isinstance(result, tuple) and len(result) == 2):
                return Stop(("bad_return", (user_cls.__name__, "init", result)))
            flags, specs = result
        try:
            flags = validate_flags(flags)
            specs = check_childspecs(specs, flags.auto_shutdown)
        except SupervisorError as exc:
            return Stop(("start_spec", exc.reason))
        dynamic = flags.strategy == "simple_one_for_one" or bool(flags.extra.get("dynamic"))
        template = None
        if flags.strategy == "simple_one_for_one":
            if len(specs) != 1:
                return Stop(("bad_start_spec", specs))
            template, specs = specs[0], []
        children = Children(flags, name, dynamic=dynamic, template=template)
        failure = children.start_initial(specs)
        if failure is not None:
            return Stop(("shutdown", failure))
        return children

    def handle_call(self, request: tuple, from_: tuple, children: Children) -> Any:
        op = request[0]
        try:
            if op == "start_child":
                return Reply(("ok", children.start_child(request[1])), children)
            if op == "terminate_child":
                children.terminate_child(request[1])
                return Reply(("ok", None), children)
            if op == "restart_child":
                return Reply(("ok", children.restart_child(request[1])), children)
            if op == "delete_child":
                children.delete_child(request[1])
                return Reply(("ok", None), children)
            if op == "which_children":
                return Reply(("ok", children.which_children()), children)
            if op == "count_children":
                return Reply(("ok", children.count_children()), children)
            if op == "get_childspec":
                return Reply(("ok", children.get_childspec(request[1])), children)
            if op == "subscribe":
                ref = _api.monitor(request[1])
                children.subscribers[ref] = request[1]
                return Reply(("ok", None), children)
        except SupervisorError as exc:
            return Reply(("error", exc.reason), children)
        return Reply(("error", ("unknown_call", request)), children)

    def handle_cast(self, request: Any, children: Children) -> Any:
        if isinstance(request, tuple) and request[0] == "$try_again_restart":
            return self._after(children.try_again(request[1]), children)
        return NoReply(children)

    def handle_info(self, msg: Any, children: Children) -> Any:
        if isinstance(msg, EXIT):
            return self._after(children.child_exited(msg.pid, msg.reason), children)
        if isinstance(msg, DOWN) and msg.ref in children.subscribers:
            del children.subscribers[msg.ref]
        return NoReply(children)

    @staticmethod
    def _after(stop_reason: Any, children: Children) -> Any:
        if stop_reason is None:
            return NoReply(children)
        return Stop(stop_reason, children)

    def terminate(self, reason: Any, children: Any) -> None:
        if isinstance(children, Children):
            children.terminate_all()
            children.notify("shutdown", reason)


# ----------------------------------------------------------------- client


def _ask(sup: Any, request: tuple, timeout: float | None) -> Any:
    # timeout=None is OTP's infinity for supervisor calls.  It is bounded all
    # the same: a supervisor that dies fails the call at once (the call
    # monitors it), a child's start has its own timeout (gen_server's 5 s
    # by default) and a child's shutdown its 'shutdown' time before the kill.
    # Only a start function that never returns (a gen_server started with
    # timeout=None, or a user function that blocks) or a child with
    # shutdown='infinity' that never exits can hold such a call forever,
    # exactly as in OTP.
    status, value = call(sup, request, timeout)
    if status == "error":
        raise SupervisorError(value)
    return value


def start_child(sup: Any, spec_or_args: Any, timeout: float | None = None) -> Pid | None:
    """Start a child: a child spec, or for simple_one_for_one the extra start
    arguments.  Returns its pid, or None if it returned ignore."""
    return _ask(sup, ("start_child", spec_or_args), timeout)


def terminate_child(sup: Any, id_or_pid: Any, timeout: float | None = None) -> None:
    """Stop a child (its spec is kept, unless temporary or dynamic)."""
    _ask(sup, ("terminate_child", id_or_pid), timeout)


def restart_child(sup: Any, child_id: Any, timeout: float | None = None) -> Pid | None:
    """Start again a stopped child whose spec is kept."""
    return _ask(sup, ("restart_child", child_id), timeout)


def delete_child(sup: Any, child_id: Any, timeout: float | None = None) -> None:
    """Remove the spec of a stopped child."""
    _ask(sup, ("delete_child", child_id), timeout)


def which_children(sup: Any, timeout: float | None = None) -> list:
    """``[ChildInfo(id, pid, type)]`` in start order."""
    return _ask(sup, ("which_children",), timeout)


def count_children(sup: Any, timeout: float | None = None) -> dict:
    """``{'specs', 'active', 'supervisors', 'workers'}``."""
    return _ask(sup, ("count_children",), timeout)


def get_childspec(sup: Any, id_or_pid: Any, timeout: float | None = None) -> ChildSpec:
    return _ask(sup, ("get_childspec", id_or_pid), timeout)


def subscribe(sup: Any, timeout: float | None = None) -> None:
    """Receive the supervisor's events as messages
    ``('$supervisor', sup_pid, event, *details)`` with event ``'started'``
    (id, pid), ``'exited'`` (id, pid, reason) or ``'shutdown'`` (reason).
    The supervisor monitors subscribers and forgets dead ones."""
    _ask(sup, ("subscribe", _api.self_()), timeout)
