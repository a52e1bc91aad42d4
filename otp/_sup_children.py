"""The children of one supervisor: starting, restart strategies, restart
intensity and the shutdown protocol.  Runs inside the supervisor process.

Names follow supervisor.erl (``do_restart``, ``terminate_children``...).
A child's state is :data:`ChildState` (``Running(pid)``, ``RESTARTING``,
``STOPPED``) and a start function's outcome an
:data:`otp._start_result.StartResult` (``Started(pid)``, ``IGNORED``,
``StartFailed(reason)``).

Children on other nodes (a spec's ``node``, see :mod:`otp._child_spec`).
Nothing here is special about them: the start function spawns the child
there, linked to the supervisor across the gateways, and every rule is the
local one.  A child whose node is lost (SIGKILLed, cut off, counted down
after its tick time) exits, to its supervisor, with ``'noconnection'``:
an abnormal exit, so a permanent or transient child is restarted, and the
restart counts toward the intensity.  The restart goes to the spec's node:
if that node cannot be reached the start fails with ``'noconnection'``, at
once when nothing listens there (a node that is down), within the
connection set-up time (``otp.net_kernel.SETUP_TIMEOUT``, 7 s) when its
host does not answer, and it is retried through the supervisor's mailbox
as any failed restart is, each attempt counted: a supervisor whose child's
node stays down exceeds its intensity and shuts down (escalating to its
own supervisor), unless its period is shorter than the time an attempt
takes, in which case the child stays ``'restarting'`` until its node is
back.  The child itself, on the other side of a lost connection, gets the
``'noconnection'`` exit signal of the link too, and exits with it (a
behaviour also when it traps exits: the EXIT is its parent's), so a
restart elsewhere does not leave a second copy running after a heal.  Shutting a remote child down is the local protocol
(``'shutdown'``, then ``'kill'`` after its shutdown time, waiting on a
monitor, which fires ``'noconnection'`` at once if the node is gone).
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from . import _api, _logging
from ._child_spec import (
    ChildInfo,
    ChildSpec,
    DynamicOptions,
    Shutdown,
    SupervisorError,
    SupFlags,
    check_node,
    normalize_spec,
)
from ._errors import ProcessExit, StartError, Timeout
from ._gen_server import Ignore
from ._pid import Pid, Ref
from ._reasons import DOWN, EXIT, Crash, is_clean
from ._start_result import IGNORED, Ignored, Started, StartFailed, StartResult

log = logging.getLogger("otp.supervisor")

__all__ = [
    "Children",
    "Child",
    "Running",
    "Restarting",
    "Stopped",
    "RESTARTING",
    "STOPPED",
    "ChildState",
    "RetryRestart",
    "start_one",
    "shutdown_child",
]


# ------------------------------------------------------------ child state


@dataclass(frozen=True, slots=True)
class Running:
    """The child runs as ``pid``."""

    pid: Pid


@dataclass(frozen=True, slots=True)
class Restarting:
    """A restart of the child failed; another attempt is queued."""


@dataclass(frozen=True, slots=True)
class Stopped:
    """The child does not run (terminated, ignored, or not restarted)."""


RESTARTING = Restarting()
STOPPED = Stopped()
ChildState = Running | Restarting | Stopped


class Child:
    __slots__ = ("spec", "state", "key")

    def __init__(self, spec: ChildSpec, key: Any = None) -> None:
        self.spec = spec
        self.state: ChildState = STOPPED
        self.key = key if key is not None else spec.id  # dynamic children: a serial

    @property
    def pid(self) -> Pid | None:
        """The pid of a running child, else None."""
        state = self.state
        return state.pid if isinstance(state, Running) else None

    @property
    def running(self) -> bool:
        return isinstance(self.state, Running)

    def info_pid(self) -> Pid | Literal["restarting"] | None:
        """The child's pid as ``which_children`` shows it."""
        state = self.state
        if isinstance(state, Running):
            return state.pid
        return "restarting" if isinstance(state, Restarting) else None


# ------------------------------------------------------------ start


class RetryRestart(NamedTuple):
    """The message a supervisor sends itself to try a failed restart again
    (supervisor.erl's ``try_again_restart``): through the mailbox, so that
    the requests queued meanwhile (a shutdown) are served first."""

    key: Any


def start_one(spec: ChildSpec) -> StartResult:
    """Run a start function (with ``node=spec.node`` for a child of another
    node).  A :class:`StartError` is a failure with its reason, any other
    exception one with its :class:`Crash`, a return value other than a pid
    or an ignore ``('bad_return_value', value)``."""
    fn, args = spec.start
    try:
        result = fn(*args) if spec.node is None else fn(*args, node=spec.node)
    except StartError as exc:
        return StartFailed(exc.reason)
    except ProcessExit:
        raise
    except Exception as exc:
        return StartFailed(Crash.from_exception(exc))
    if result is None or result is Ignore:
        return IGNORED
    if isinstance(result, Pid):
        return Started(result)
    return StartFailed(("bad_return_value", result))


def _state_after(result: Started | Ignored) -> ChildState:
    return Running(result.pid) if isinstance(result, Started) else STOPPED


# ------------------------------------------------------------ shutdown


def shutdown_child(pid: Pid, shutdown: Shutdown) -> object:
    """Stop one child and return its exit reason: ``'kill'`` at once for
    ``brutal_kill``, else ``'shutdown'`` and, after ``shutdown`` seconds
    (never for ``'infinity'``), ``'kill'``.

    Waits on a monitor, not the link: a child that unlinked itself must not
    hang the supervisor.  Its EXIT, already queued or not, is flushed.
    """
    ref = _api.monitor(pid)
    _api.unlink(pid)
    if shutdown == "brutal_kill":
        _api.exit(pid, "kill")
        reason = _await_down(ref, None)
    else:
        _api.exit(pid, "shutdown")
        timeout = None if shutdown == "infinity" else shutdown
        try:
            reason = _await_down(ref, timeout)
        except Timeout:
            _api.exit(pid, "kill")
            reason = _await_down(ref, None)
    flushed = _flush_exit(pid)
    if reason == "noproc" and flushed is not None:
        reason = flushed.reason  # it was already dead: its EXIT says why
    return reason


def _await_down(ref: Ref, timeout: float | None) -> object:
    return _api.receive(timeout, lambda m: isinstance(m, DOWN) and m.ref == ref).reason


def _flush_exit(pid: Pid) -> EXIT | None:
    found = None
    while True:
        try:
            found = _api.receive(0, lambda m: isinstance(m, EXIT) and m.pid == pid)
        except Timeout:
            return found


def _shutdown_seconds(shutdown: Shutdown) -> float | None:
    """Seconds before the kill, None for ``'infinity'``, 0 for ``brutal_kill``."""
    if shutdown == "infinity":
        return None
    if shutdown == "brutal_kill":
        return 0.0
    return shutdown


# ------------------------------------------------------------ the children


class Children:
    """The children of a static or dynamic supervisor, in start order.

    ``dynamic`` is true for simple_one_for_one (whose children are built
    from ``template``) and for DynamicSupervisor (``options``): their
    children have no ids, only pids, and are stopped all at once."""

    def __init__(
        self,
        flags: SupFlags,
        name: Any,
        *,
        template: ChildSpec | None = None,
        options: DynamicOptions | None = None,
    ) -> None:
        self.flags = flags
        self.name = name
        self.dynamic = template is not None or options is not None
        self.template = template
        self.options = options if options is not None else DynamicOptions()
        self.order: dict[Any, Child] = {}  # key -> child, insertion = start order
        self.by_uid: dict[int, Child] = {}
        self.restarts: collections.deque[float] = collections.deque()
        self.subscribers: dict[Ref, Pid] = {}  # monitor ref -> pid
        self._serial = 0

    # ------------------------------------------------------------ lookup

    def find(self, ref: Any) -> Child | None:
        if isinstance(ref, Pid):
            return self.by_uid.get(ref.uid)
        return None if self.dynamic else self.order.get(ref)

    def _set_state(self, child: Child, state: ChildState) -> None:
        old = child.pid
        if old is not None:
            self.by_uid.pop(old.uid, None)
        child.state = state
        if isinstance(state, Running):
            pid = state.pid
            self.by_uid[pid.uid] = child
            self.notify("started", child.spec.id, pid)
            sup = self.name or _api.self_()
            log.info(
                "supervisor %r: started child %r, pid %r",
                sup,
                child.spec.id,
                pid,
                extra=_logging.report("progress", supervisor=sup, child_id=child.spec.id, pid=pid),
            )

    def _add(self, child: Child, result: Started | Ignored) -> None:
        self.order[child.key] = child
        self._set_state(child, _state_after(result))

    def _remove(self, child: Child) -> None:
        self._set_state(child, STOPPED)
        self.order.pop(child.key, None)

    def _new_key(self) -> int:
        self._serial += 1
        return self._serial

    # ------------------------------------------------------------ events

    def subscribe(self, pid: Pid) -> None:
        """Send ``pid`` the supervisor's events until it exits."""
        self.subscribers[_api.monitor(pid)] = pid

    def unsubscribe(self, ref: Ref) -> bool:
        """Forget the subscriber watched by ``ref``; False if none was."""
        return self.subscribers.pop(ref, None) is not None

    def notify(self, event: str, *details: Any) -> None:
        """Tell subscribers (``otp.supervisor.subscribe``) what happened."""
        if self.subscribers:
            msg = ("$supervisor", _api.self_(), event, *details)
            for pid in self.subscribers.values():
                _api.send(pid, msg)

    def report(self, context: str, child: Child | None, reason: Any) -> None:
        sup = self.name or _api.self_()
        log.error(
            "supervisor %r: %s%s, reason: %r",
            sup,
            context,
            f" (child {child.spec.id!r}, pid {child.info_pid()!r})" if child is not None else "",
            reason,
            extra=_logging.report(
                "supervisor",
                supervisor=sup,
                child_id=None if child is None else child.spec.id,
                pid=None if child is None else child.info_pid(),
                reason=reason,
            ),
        )

    # ------------------------------------------------------------ start

    def start_initial(self, specs: list[ChildSpec]) -> tuple[str, Any, object] | None:
        """Start the children in order.  If one fails, stop those already
        started (in reverse order) and return OTP's
        ``('failed_to_start_child', id, reason)``."""
        for spec in specs:
            result = start_one(spec)
            if isinstance(result, StartFailed):
                self.report("start_error", Child(spec), result.reason)
                self.terminate_all()
                return ("failed_to_start_child", spec.id, result.reason)
            if isinstance(result, Started) or spec.restart != "temporary":  # an ignored temporary is forgotten
                self._add(Child(spec), result)
        return None

    def start_child(self, arg: Any, node: str | None = None) -> Pid | None:
        """Management ``start_child``; returns the pid or None (ignore).
        ``node`` (not None) replaces the spec's node (see
        :mod:`otp._child_spec`).

        Raises :class:`SupervisorError`: ``'max_children'`` (dynamic);
        what :func:`normalize_spec` raises; ``('invalid_node', node)``;
        ``('invalid_significant', True)`` without auto_shutdown;
        ``('already_started', pid)`` or ``'already_present'`` for an id in
        use; the start's failure reason (the spec is then discarded)."""
        check_node(node)
        if self.dynamic:
            limit = self.options.max_children
            if limit is not None and len(self.order) >= limit:
                raise SupervisorError("max_children")
            spec = self._dynamic_spec(arg)
            if node is not None:
                spec = spec.with_node(node)
            result = start_one(spec)
            if isinstance(result, StartFailed):
                raise SupervisorError(result.reason)
            if isinstance(result, Started):
                self._add(Child(spec, key=self._new_key()), result)
                return result.pid
            return None
        spec = normalize_spec(arg)
        if node is not None:
            spec = spec.with_node(node)
        if spec.significant and self.flags.auto_shutdown == "never":
            raise SupervisorError(("invalid_significant", True))
        existing = self.order.get(spec.id)
        if existing is not None:
            raise SupervisorError(("already_started", existing.pid) if existing.running else "already_present")
        result = start_one(spec)
        if isinstance(result, StartFailed):
            raise SupervisorError(result.reason)
        if isinstance(result, Started) or spec.restart != "temporary":
            self._add(Child(spec), result)
        return result.pid if isinstance(result, Started) else None

    def _dynamic_spec(self, arg: Any) -> ChildSpec:
        if self.template is not None:  # simple_one_for_one: extra args
            return self.template.with_args(tuple(arg) if isinstance(arg, (list, tuple)) else (arg,))
        spec = normalize_spec(arg)
        extra = self.options.extra_arguments
        return spec.with_leading_args(extra) if extra else spec

    # ------------------------------------------------------------ exits

    def child_exited(self, pid: Pid, reason: Any) -> bool:
        """An EXIT from a child: restart it if its restart type says so (a
        permanent child always, a transient one after an abnormal exit, a
        temporary one never, and then its spec is dropped).  True when the
        supervisor must shut down (restart intensity, auto_shutdown)."""
        child = self.by_uid.get(pid.uid)
        if child is None:
            return False  # not one of ours (an old child's late EXIT)
        self.notify("exited", child.spec.id, pid, reason)
        restart = child.spec.restart
        if restart == "permanent" or (restart == "transient" and not is_clean(reason)):
            if not is_clean(reason):
                self.report("child_terminated", child, reason)
            self._set_state(child, STOPPED)
            return self.restart(child)
        if restart == "temporary" or self.dynamic:
            self._remove(child)
        else:
            self._set_state(child, STOPPED)
        return self._auto_shutdown(child)

    def _auto_shutdown(self, child: Child) -> bool:
        """The end of a significant child ends the supervisor: under
        ``any_significant`` at once, under ``all_significant`` once no
        significant child runs."""
        if not child.spec.significant or self.flags.auto_shutdown == "never":
            return False
        if self.flags.auto_shutdown == "any_significant":
            return True
        return not any(c.spec.significant and c.running for c in self.order.values())

    def add_restart(self) -> bool:
        """Count a restart; False when restarts in the last ``period``
        seconds exceed ``intensity`` (a restart of a whole group counts once)."""
        now = time.monotonic()
        self.restarts.append(now)
        while self.restarts and self.restarts[0] < now - self.flags.period:
            self.restarts.popleft()
        return len(self.restarts) <= self.flags.intensity

    def restart(self, child: Child) -> bool:
        """Restart ``child`` and, under one_for_all or rest_for_one, its
        group; True when the restart intensity is exceeded (the supervisor
        must stop every child and exit with ``'shutdown'``)."""
        if not self.add_restart():
            self.report("reached_max_restart_intensity", child, "shutdown")
            return True
        strategy = self.flags.strategy
        if strategy in ("one_for_one", "simple_one_for_one") or self.dynamic:
            group = [child]
        else:
            children = list(self.order.values())
            start = 0 if strategy == "one_for_all" else children.index(child)
            group = children[start:]
            for other in reversed(group):
                if other is not child and other.running:
                    self._shutdown(other)
            group = [c for c in group if c.key in self.order]  # stopped temporaries are gone
        for i, c in enumerate(group):
            result = start_one(c.spec)
            if isinstance(result, StartFailed):
                # Retry later through our own mailbox, so that other requests
                # (a shutdown) are served in between.
                self.report("start_error", c, result.reason)
                self._set_state(c, RESTARTING)
                for later in group[i + 1 :]:
                    self._set_state(later, STOPPED)
                _api.send(_api.self_(), RetryRestart(c.key))
                break
            self._set_state(c, _state_after(result))
        return False

    def try_again(self, key: Any) -> bool:
        """A queued :class:`RetryRestart`; as :meth:`restart`."""
        child = self.order.get(key)
        if child is None or not isinstance(child.state, Restarting):
            return False
        return self.restart(child)

    # ------------------------------------------------------------ stop

    def _shutdown(self, child: Child) -> None:
        pid = child.pid
        assert pid is not None  # callers stop running children only
        reason = shutdown_child(pid, child.spec.shutdown)
        self.notify("exited", child.spec.id, pid, reason)
        expected = reason in ("shutdown", "killed") or (child.spec.restart != "permanent" and is_clean(reason))
        if not expected:  # the child did not stop as asked: worth an error report
            self.report("shutdown_error", child, reason)
        if child.spec.restart == "temporary":
            self._remove(child)
        else:
            self._set_state(child, STOPPED)

    def terminate_child(self, ref: Any) -> None:
        """Management ``terminate_child`` (by pid for a dynamic supervisor).
        Raises :class:`SupervisorError`: ``'simple_one_for_one'`` (an id
        given to a dynamic supervisor) or ``'not_found'``."""
        if self.dynamic and not isinstance(ref, Pid):
            raise SupervisorError("simple_one_for_one")
        child = self.find(ref)
        if child is None:
            raise SupervisorError("not_found")
        if child.running:
            self._shutdown(child)
        elif isinstance(child.state, Restarting):
            self._set_state(child, STOPPED)
        if self.dynamic and child.key in self.order:
            self._remove(child)

    def terminate_all(self) -> None:
        """Stop every child: static children one at a time in reverse start
        order, dynamic children all at once."""
        children = [c for c in reversed(list(self.order.values())) if c.running]
        if not self.dynamic:
            for child in children:
                self._shutdown(child)
            return
        self._shutdown_parallel(children)

    def _shutdown_parallel(self, children: list[Child]) -> None:
        refs: dict[Ref, tuple[Child, Pid]] = {}
        for child in children:
            pid = child.pid
            assert pid is not None  # callers stop running children only
            ref = _api.monitor(pid)
            _api.unlink(pid)
            _api.exit(pid, "kill" if child.spec.shutdown == "brutal_kill" else "shutdown")
            refs[ref] = (child, pid)
        waits = [_shutdown_seconds(c.spec.shutdown) for c in children]
        deadline: float | None = None if None in waits else max((w for w in waits if w is not None), default=0.0)
        start = time.monotonic()
        while refs:
            remaining = None if deadline is None else max(0.0, start + deadline - time.monotonic())
            try:
                down = _api.receive(remaining, lambda m: isinstance(m, DOWN) and m.ref in refs)
            except Timeout:
                for _, pid in refs.values():
                    _api.exit(pid, "kill")
                deadline = None
                continue
            child, pid = refs.pop(down.ref)
            _flush_exit(pid)
            self.notify("exited", child.spec.id, pid, down.reason)
            self._remove(child)

    def _stopped_child(self, key: Any) -> Child:
        """The static child ``key``, which must not be running.  Raises
        :class:`SupervisorError`: ``'simple_one_for_one'`` (dynamic),
        ``'not_found'``, ``'running'`` or ``'restarting'``."""
        if self.dynamic:
            raise SupervisorError("simple_one_for_one")
        child = self.order.get(key)
        if child is None:
            raise SupervisorError("not_found")
        if child.running:
            raise SupervisorError("running")
        if isinstance(child.state, Restarting):
            raise SupervisorError("restarting")
        return child

    def restart_child(self, key: Any) -> Pid | None:
        """Management ``restart_child``: start a stopped static child again;
        its pid, or None if it ignored.  Raises what :meth:`_stopped_child`
        raises, or :class:`SupervisorError` with the start's failure reason."""
        child = self._stopped_child(key)
        result = start_one(child.spec)
        if isinstance(result, StartFailed):
            raise SupervisorError(result.reason)
        self._set_state(child, _state_after(result))
        return child.pid

    def delete_child(self, key: Any) -> None:
        """Management ``delete_child``; raises what :meth:`_stopped_child` raises."""
        self._remove(self._stopped_child(key))

    # ------------------------------------------------------------ queries

    def which_children(self) -> list[ChildInfo]:
        return [ChildInfo(None if self.dynamic else c.spec.id, c.info_pid(), c.spec.type) for c in self.order.values()]

    def count_children(self) -> dict[str, int]:
        children = list(self.order.values())
        return {
            "specs": len(children) if not self.dynamic or self.template is None else 1,
            "active": sum(c.running for c in children),
            "supervisors": sum(c.spec.type == "supervisor" for c in children),
            "workers": sum(c.spec.type == "worker" for c in children),
        }

    def get_childspec(self, ref: Any) -> ChildSpec:
        """Raises ``SupervisorError('not_found')``."""
        child = self.find(ref)
        if child is None:
            raise SupervisorError("not_found")
        return child.spec
