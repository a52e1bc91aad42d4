"""The children of one supervisor: starting, restart strategies, restart
intensity and the shutdown protocol.  Runs inside the supervisor process.

Names follow supervisor.erl (``do_restart``, ``terminate_children``...);
the checklist IDs in comments refer to the conformance list in the project's
reference (SUP-*, RT-*, ST-*, SD-*, AS-*).
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

from . import _api, _logging
from ._child_spec import ChildInfo, ChildSpec, SupervisorError, SupFlags
from ._errors import ProcessExit, StartError, Timeout
from ._gen_server import Ignore
from ._pid import Pid
from ._reasons import DOWN, EXIT, Crash, is_clean

log = logging.getLogger("otp.supervisor")

__all__ = ["Children", "RESTARTING", "shutdown_child"]

RESTARTING = "restarting"


class Child:
    __slots__ = ("spec", "pid", "key")

    def __init__(self, spec: ChildSpec, pid: Any = None, key: Any = None) -> None:
        self.spec = spec
        self.pid = pid  # Pid, None (not running) or RESTARTING
        self.key = key if key is not None else spec.id  # dynamic children: a serial

    @property
    def running(self) -> bool:
        return isinstance(self.pid, Pid)


def start_one(spec: ChildSpec) -> tuple:
    """Run a start function (CS-2): ('ok', pid) | ('ignore',) | ('error', reason)."""
    fn, args = spec.start
    try:
        result = fn(*args)
    except StartError as exc:
        return ("error", exc.reason)
    except ProcessExit:
        raise
    except Exception as exc:
        return ("error", Crash.from_exception(exc))
    if result is None or result is Ignore:
        return ("ignore",)
    if isinstance(result, Pid):
        return ("ok", result)
    return ("error", ("bad_return_value", result))


def shutdown_child(pid: Pid, shutdown: Any) -> object:
    """Stop one child and return its exit reason (SD-2..SD-5).

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


def _await_down(ref, timeout: float | None) -> object:
    return _api.receive(timeout, lambda m: isinstance(m, DOWN) and m.ref == ref).reason


def _flush_exit(pid: Pid) -> EXIT | None:
    found = None
    while True:
        try:
            found = _api.receive(0, lambda m: isinstance(m, EXIT) and m.pid == pid)
        except Timeout:
            return found


class Children:
    """The children of a static or dynamic supervisor, in start order."""

    def __init__(self, flags: SupFlags, name: Any, *, dynamic: bool, template: ChildSpec | None = None) -> None:
        self.flags = flags
        self.name = name
        self.dynamic = dynamic  # simple_one_for_one and DynamicSupervisor
        self.template = template
        self.order: dict[Any, Child] = {}  # key -> child, insertion = start order
        self.by_uid: dict[int, Child] = {}
        self.restarts: collections.deque = collections.deque()
        self.max_children: int | None = flags.extra.get("max_children")
        self.extra_arguments: tuple = tuple(flags.extra.get("extra_arguments", ()))
        self.subscribers: dict = {}  # monitor ref -> pid
        self._serial = 0

    # ------------------------------------------------------------ lookup

    def find(self, ref: Any) -> Child | None:
        if isinstance(ref, Pid):
            return self.by_uid.get(ref.uid)
        return None if self.dynamic else self.order.get(ref)

    def _set_pid(self, child: Child, pid: Any) -> None:
        if isinstance(child.pid, Pid):
            self.by_uid.pop(child.pid.uid, None)
        child.pid = pid
        if isinstance(pid, Pid):
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

    def _remove(self, child: Child) -> None:
        self._set_pid(child, None)
        self.order.pop(child.key, None)

    def _new_key(self) -> int:
        self._serial += 1
        return self._serial

    # ------------------------------------------------------------ events

    def notify(self, event: str, *details: Any) -> None:
        """Tell subscribers (``otp.supervisor.subscribe``) what happened."""
        if self.subscribers:
            msg = ("$supervisor", _api.self_(), event, *details)
            for pid in self.subscribers.values():
                _api.send(pid, msg)

    def report(self, context: str, child: Child | None, reason: Any) -> None:
        log.error(
            "supervisor %r: %s%s, reason: %r",
            self.name or _api.self_(),
            context,
            f" (child {child.spec.id!r}, pid {child.pid!r})" if child is not None else "",
            reason,
            extra=_logging.report(
                "supervisor",
                supervisor=self.name or _api.self_(),
                child_id=None if child is None else child.spec.id,
                pid=None if child is None else child.pid,
                reason=reason,
            ),
        )

    # ------------------------------------------------------------ start

    def start_initial(self, specs: list[ChildSpec]) -> tuple | None:
        """ST-1/ST-2: start in order; on failure stop what started and
        return ``('failed_to_start_child', id, reason)``."""
        for spec in specs:
            result = start_one(spec)
            if result[0] == "error":
                self.report("start_error", Child(spec), result[1])
                self.terminate_all()
                return ("failed_to_start_child", spec.id, result[1])
            if result[0] == "ok" or spec.restart != "temporary":  # CS-3
                child = Child(spec)
                self.order[child.key] = child
                self._set_pid(child, result[1] if result[0] == "ok" else None)
        return None

    def start_child(self, arg: Any) -> Any:
        """Management ``start_child``; returns the pid or None (ignore)."""
        if self.dynamic:
            if self.max_children is not None and len(self.order) >= self.max_children:
                raise SupervisorError("max_children")
            spec = self._dynamic_spec(arg)
            result = start_one(spec)
            if result[0] == "ok":
                child = Child(spec, key=self._new_key())
                self.order[child.key] = child
                self._set_pid(child, result[1])
                return result[1]
            if result[0] == "error":
                raise SupervisorError(result[1])
            return None
        from ._child_spec import normalize_spec

        spec = normalize_spec(arg)
        if spec.significant and self.flags.auto_shutdown == "never":
            raise SupervisorError(("invalid_significant", True))
        existing = self.order.get(spec.id)
        if existing is not None:
            raise SupervisorError(("already_started", existing.pid) if existing.running else "already_present")
        result = start_one(spec)
        if result[0] == "error":
            raise SupervisorError(result[1])  # ST-3: the spec is discarded
        if result[0] == "ok" or spec.restart != "temporary":
            child = Child(spec)
            self.order[child.key] = child
            self._set_pid(child, result[1] if result[0] == "ok" else None)
        return result[1] if result[0] == "ok" else None

    def _dynamic_spec(self, arg: Any) -> ChildSpec:
        if self.template is not None:  # simple_one_for_one: extra args
            return self.template.with_args(tuple(arg) if isinstance(arg, (list, tuple)) else (arg,))
        from ._child_spec import normalize_spec

        spec = normalize_spec(arg)
        if self.extra_arguments:
            fn, args = spec.start
            spec = ChildSpec(spec.id, (fn, self.extra_arguments + tuple(args)), spec.restart, spec.shutdown, spec.type)
        return spec

    # ------------------------------------------------------------ exits

    def child_exited(self, pid: Pid, reason: Any) -> Any:
        """An EXIT from a child: restart it or not (RT-1..3).  Returns a stop
        reason when the supervisor must shut down (intensity, auto_shutdown)."""
        child = self.by_uid.get(pid.uid)
        if child is None:
            return None  # not one of ours (an old child's late EXIT)
        self.notify("exited", child.spec.id, pid, reason)
        restart = child.spec.restart
        if restart == "permanent" or (restart == "transient" and not is_clean(reason)):
            if not is_clean(reason):
                self.report("child_terminated", child, reason)
            self._set_pid(child, None)
            return self.restart(child)
        if restart == "temporary" or self.dynamic:
            self._remove(child)  # RT-3
        else:
            self._set_pid(child, None)
        return self._auto_shutdown(child)

    def _auto_shutdown(self, child: Child) -> Any:
        """AS-2: the exit of a significant child may end the supervisor."""
        if not child.spec.significant or self.flags.auto_shutdown == "never":
            return None
        if self.flags.auto_shutdown == "any_significant":
            return "shutdown"
        if not any(c.spec.significant and c.running for c in self.order.values()):
            return "shutdown"
        return None

    def add_restart(self) -> bool:
        """SUP-INT-1: False when restarts in the last ``period`` seconds exceed
        ``intensity`` (a restart of a whole group counts once, SUP-INT-2)."""
        now = time.monotonic()
        self.restarts.append(now)
        while self.restarts and self.restarts[0] < now - self.flags.period:
            self.restarts.popleft()
        return len(self.restarts) <= self.flags.intensity

    def restart(self, child: Child) -> Any:
        if not self.add_restart():
            self.report("reached_max_restart_intensity", child, "shutdown")
            return "shutdown"  # SUP-INT-3: the caller stops everything
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
            group = [c for c in group if c.key in self.order]  # RT-3 removed temporaries
        for i, c in enumerate(group):
            result = start_one(c.spec)
            if result[0] == "ok":
                self._set_pid(c, result[1])
            elif result[0] == "ignore":
                self._set_pid(c, None)
            else:
                # SUP-INT-4: retry later through our own mailbox, so that
                # other requests (a shutdown) are served in between.
                self.report("start_error", c, result[1])
                self._set_pid(c, RESTARTING)
                for later in group[i + 1 :]:
                    self._set_pid(later, None)
                _api.send(_api.self_(), ("$gen_cast", ("$try_again_restart", c.key)))
                break
        return None

    def try_again(self, key: Any) -> Any:
        child = self.order.get(key)
        if child is None or child.pid != RESTARTING:
            return None
        return self.restart(child)

    # ------------------------------------------------------------ stop

    def _shutdown(self, child: Child) -> None:
        pid = child.pid
        reason = shutdown_child(pid, child.spec.shutdown)
        self.notify("exited", child.spec.id, pid, reason)
        expected = reason in ("shutdown", "killed") or (child.spec.restart != "permanent" and is_clean(reason))
        if not expected:  # SD-6
            self.report("shutdown_error", child, reason)
        if child.spec.restart == "temporary":
            self._remove(child)
        else:
            self._set_pid(child, None)

    def terminate_child(self, ref: Any) -> None:
        if self.dynamic and not isinstance(ref, Pid):
            raise SupervisorError("simple_one_for_one")
        child = self.find(ref)
        if child is None:
            raise SupervisorError("not_found")
        if child.running:
            self._shutdown(child)
        elif child.pid == RESTARTING:
            self._set_pid(child, None)
        if self.dynamic and child.key in self.order:
            self._remove(child)

    def terminate_all(self) -> None:
        """SD-1: static children one at a time in reverse start order;
        dynamic children all at once."""
        children = [c for c in reversed(list(self.order.values())) if c.running]
        if not self.dynamic:
            for child in children:
                self._shutdown(child)
            return
        self._shutdown_parallel(children)

    def _shutdown_parallel(self, children: list[Child]) -> None:
        refs = {}
        for child in children:
            ref = _api.monitor(child.pid)
            _api.unlink(child.pid)
            _api.exit(child.pid, "kill" if child.spec.shutdown == "brutal_kill" else "shutdown")
            refs[ref] = child
        timeouts = [c.spec.shutdown for c in children if c.spec.shutdown not in ("brutal_kill", "infinity")]
        deadline = None if any(c.spec.shutdown == "infinity" for c in children) else (max(timeouts, default=0))
        start = time.monotonic()
        while refs:
            remaining = None if deadline is None else max(0.0, start + deadline - time.monotonic())
            try:
                down = _api.receive(remaining, lambda m: isinstance(m, DOWN) and m.ref in refs)
            except Timeout:
                for child in refs.values():
                    _api.exit(child.pid, "kill")
                deadline = None
                continue
            child = refs.pop(down.ref)
            _flush_exit(child.pid)
            self.notify("exited", child.spec.id, child.pid, down.reason)
            self._remove(child)

    def _stopped_child(self, key: Any) -> Child:
        """The static child ``key``, which must not be running (API-1's errors)."""
        if self.dynamic:
            raise SupervisorError("simple_one_for_one")
        child = self.order.get(key)
        if child is None:
            raise SupervisorError("not_found")
        if child.running:
            raise SupervisorError("running")
        if child.pid == RESTARTING:
            raise SupervisorError("restarting")
        return child

    def restart_child(self, key: Any) -> Any:
        child = self._stopped_child(key)
        result = start_one(child.spec)
        if result[0] == "error":
            raise SupervisorError(result[1])
        self._set_pid(child, result[1] if result[0] == "ok" else None)
        return child.pid

    def delete_child(self, key: Any) -> None:
        self._remove(self._stopped_child(key))

    # ------------------------------------------------------------ queries

    def which_children(self) -> list[ChildInfo]:
        return [ChildInfo(None if self.dynamic else c.spec.id, c.pid, c.spec.type) for c in self.order.values()]

    def count_children(self) -> dict:
        children = list(self.order.values())
        return {
            "specs": len(children) if not self.dynamic or self.template is None else 1,
            "active": sum(c.running for c in children),
            "supervisors": sum(c.spec.type == "supervisor" for c in children),
            "workers": sum(c.spec.type == "worker" for c in children),
        }

    def get_childspec(self, ref: Any) -> ChildSpec:
        child = self.find(ref)
        if child is None:
            raise SupervisorError("not_found")
        return child.spec
