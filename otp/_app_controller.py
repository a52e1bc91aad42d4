"""The application controller and the application masters (see
:mod:`otp._application` for what each does): a master runs one
application's callbacks and is linked to its top supervisor; the
controller, one per node, keeps the specs, environments and running
applications, and stops the node when a permanent application fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import _api
from ._app_records import (
    APP_TYPES,
    NORMAL_START,
    AlreadyLoaded,
    AlreadyStarted,
    AppInfo,
    Application,
    ApplicationError,
    ApplicationTerminated,
    AppSpec,
    AppType,
    NotStarted,
    StartFailed,
    UnknownApplication,
)
from ._errors import ProcessExit
from ._gen_server import NoReply
from ._pid import Pid
from ._reasons import EXIT, is_normal
from ._service import DEFER, Service, operation

log = logging.getLogger("otp")


# ------------------------------------------------- master <-> controller


class _MasterStarted(NamedTuple):
    """From a master: its application's ``start`` returned ``supervisor``."""

    app: str
    master: Pid
    supervisor: Pid


class _AppExited(NamedTuple):
    """From a master: the top supervisor exited with ``reason``; the master
    exits once the controller answers :class:`_Noted`."""

    app: str
    master: Pid
    reason: object


class _Noted(NamedTuple):
    """From the controller: it took note of the exit the master reported."""


class _StopApplication(NamedTuple):
    """From the controller: stop the application (``stop(app)``)."""


def _run_master(app: str, mod: tuple[type[Application], Any], controller: Pid) -> None:
    """The application master (see the module doc)."""
    _api.trap_exit(True)
    cls, args = mod
    callbacks = cls()
    result = callbacks.start(NORMAL_START, args)
    if isinstance(result, Pid):
        top, state = result, None
    elif isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], Pid):
        top, state = result
    else:
        raise ProcessExit(("bad_return", result))
    me = _api.self_()
    _api.link(top)  # start_link linked it already; a plain start did not
    _api.send(controller, _MasterStarted(app, me, top))
    while True:
        msg = _api.receive()
        if isinstance(msg, _StopApplication):
            _stop_tree(callbacks, top, state, "shutdown")
            return
        if isinstance(msg, EXIT) and msg.pid == controller:
            _stop_tree(callbacks, top, state, "shutdown" if is_normal(msg.reason) else msg.reason)
            raise ProcessExit(msg.reason)
        if isinstance(msg, EXIT) and msg.pid == top:
            _stop_callbacks(callbacks, _prep_stop(callbacks, state))
            _api.send(controller, _AppExited(app, me, msg.reason))
            # Until the controller noted the exit: it may be stopping us
            # meanwhile (an exit signal, trapped), which notes it as well.
            _api.receive(match=lambda m: isinstance(m, _Noted) or (isinstance(m, EXIT) and m.pid == controller))
            raise ProcessExit(msg.reason)


def _stop_tree(callbacks: Application, top: Pid, state: Any, reason: object) -> None:
    state = _prep_stop(callbacks, state)
    _api.exit(top, reason)
    _api.receive(match=_exit_from(top))
    _stop_callbacks(callbacks, state)


def _prep_stop(callbacks: Application, state: Any) -> Any:
    try:
        return callbacks.prep_stop(state)
    except Exception:  # OTP logs a failed prep_stop and stops with the old state
        log.exception("%s.prep_stop failed", type(callbacks).__name__)
        return state


def _stop_callbacks(callbacks: Application, state: Any) -> None:
    try:
        callbacks.stop(state)
    except Exception:  # OTP ignores what Mod:stop returns or raises, and so do we, after logging it
        log.exception("%s.stop failed", type(callbacks).__name__)


# -------------------------------------------------------------- controller


@dataclass(slots=True)
class _Running:
    spec: AppSpec
    type: AppType
    master: Pid | None  # None for a library application
    supervisor: Pid | None
    stoppers: list[tuple] = field(default_factory=list)  # callers of stop, answered when it is down


@dataclass(slots=True)
class _Starting:
    spec: AppSpec
    type: AppType
    master: Pid
    callers: list[tuple]


class ApplicationController(Service):
    """The node's application controller (see the module doc)."""

    errors = (ApplicationError, ValueError, TypeError)

    root: Pid
    loaded: dict[str, AppSpec]
    env: dict[str, dict[str, Any]]
    running: dict[str, _Running]  # in start order
    starting: dict[str, _Starting]
    masters: dict[Pid, str]

    def init(self, root: Pid) -> None:
        _api.trap_exit(True)  # masters are linked; their exits are messages
        self.root = root
        self.loaded = {}
        self.env = {}
        self.running = {}
        self.starting = {}
        self.masters = {}

    # ------------------------------------------------------------ operations

    @operation
    def load_application(self, spec: AppSpec) -> None:
        if not isinstance(spec, AppSpec):
            raise TypeError(f"load takes an AppSpec, not {spec!r}")
        if spec.name in self.loaded:
            raise AlreadyLoaded(spec.name)
        self._load(spec)

    @operation
    def get_spec(self, name: str) -> AppSpec:
        spec = self.loaded.get(name)
        if spec is None:
            raise UnknownApplication(name)
        return spec

    @operation
    def start_application(self, app: AppSpec | str, type_: AppType) -> None:
        if type_ not in APP_TYPES:
            raise ValueError(f"an application type is one of {APP_TYPES}, not {type_!r}")
        spec = self._spec_to_start(app)
        name = spec.name
        if name in self.running:
            raise AlreadyStarted(name)
        starting = self.starting.get(name)
        if starting is not None:
            starting.callers.append(self._caller())
            return DEFER
        for dep in spec.dependencies:
            if dep not in self.running:
                raise NotStarted(dep)
        if spec.mod is None:
            self.running[name] = _Running(spec, type_, None, None)
            return None
        master = _api.spawn_link(_run_master, name, spec.mod, _api.self_())
        self.masters[master] = name
        self.starting[name] = _Starting(spec, type_, master, [self._caller()])
        return DEFER

    @operation
    def stop_application(self, name: str) -> None:
        app = self.running.get(name)
        if app is None:
            raise NotStarted(name)
        if app.master is None:
            del self.running[name]
            _report(name, "stopped", app.type)
            return None
        if not app.stoppers:
            _api.send(app.master, _StopApplication())
        app.stoppers.append(self._caller())
        return DEFER

    @operation
    def which_applications(self) -> list[AppInfo]:
        return [_info(app.spec) for app in reversed(self.running.values())]

    @operation
    def loaded_applications(self) -> list[AppInfo]:
        return [_info(spec) for spec in self.loaded.values()]

    @operation
    def get_supervisor(self, name: str) -> Pid | None:
        app = self.running.get(name)
        return None if app is None else app.supervisor

    @operation
    def get_all_env(self, name: str) -> dict[str, Any]:
        return dict(self.env.get(name, {}))

    @operation
    def set_env(self, name: str, key: str, value: Any) -> None:
        self.env.setdefault(name, {})[key] = value

    @operation
    def unset_env(self, name: str, key: str) -> None:
        self.env.get(name, {}).pop(key, None)

    # ------------------------------------------------------------ messages

    def handle_info(self, msg: Any, state: Any) -> NoReply:
        if isinstance(msg, _MasterStarted):
            self._started(msg)
        elif isinstance(msg, _AppExited):
            if self.masters.get(msg.master) == msg.app:
                self._gone(msg.master, msg.reason)
            _api.send(msg.master, _Noted())
        elif isinstance(msg, EXIT) and msg.pid in self.masters:
            self._gone(msg.pid, msg.reason)
        return NoReply(state)

    def terminate(self, reason: Any, state: Any) -> None:
        self._stop_all("shutdown")

    # ------------------------------------------------------------ internals

    def _caller(self) -> tuple:
        if self.caller is None:
            raise TypeError("this operation answers a call, not a cast")
        return self.caller

    def _load(self, spec: AppSpec) -> None:
        self.loaded[spec.name] = spec
        # Loading installs the declared defaults over what set_env put there
        # before (OTP's load); other keys stay.
        self.env.setdefault(spec.name, {}).update(spec.env)
        for dep in spec.applications:
            if isinstance(dep, AppSpec) and dep.name not in self.loaded:
                self._load(dep)

    def _spec_to_start(self, app: AppSpec | str) -> AppSpec:
        if isinstance(app, AppSpec):
            loaded = self.loaded.get(app.name)
            if loaded is None:
                self._load(app)
            elif loaded != app:
                raise AlreadyLoaded(app.name)
            return app
        spec = self.loaded.get(app) if isinstance(app, str) else None
        if spec is None:
            raise UnknownApplication(str(app))
        return spec

    def _started(self, msg: _MasterStarted) -> None:
        starting = self.starting.get(msg.app)
        if starting is None or starting.master != msg.master:
            return  # stopped while it started
        del self.starting[msg.app]
        self.running[msg.app] = _Running(starting.spec, starting.type, msg.master, msg.supervisor)
        first, *others = starting.callers
        Service.answer(first, None)
        for caller in others:
            Service.answer_error(caller, AlreadyStarted(msg.app))

    def _gone(self, master: Pid, reason: object, stopped: bool = False) -> None:
        """The master of an application exited (or reported its exit) with
        ``reason``: answer who waits, apply the restart type unless it was
        ``stopped``."""
        name = self.masters.pop(master)
        starting = self.starting.pop(name, None)
        if starting is not None:
            for caller in starting.callers:
                Service.answer_error(caller, StartFailed(name, reason))
            return
        app = self.running.pop(name)
        if stopped or app.stoppers:
            for caller in app.stoppers:
                Service.answer(caller, None)
            _report(name, "stopped", app.type)
            return
        _report(name, reason, app.type)
        if app.type == "temporary" or (app.type == "transient" and is_normal(reason)):
            return
        self._stop_all("shutdown")
        _api.exit(self.root, ApplicationTerminated(name, reason))

    def _stop_all(self, reason: object) -> None:
        """Stop every application, in reverse start order, those still
        starting first; wait for each master to exit."""
        masters = [s.master for s in reversed(self.starting.values())]
        masters += [a.master for a in reversed(self.running.values()) if a.master is not None]
        for master in masters:
            _api.exit(master, reason)
            down = _api.receive(match=_exit_from(master))
            if master in self.masters:
                self._gone(master, down.reason, stopped=True)
        for name, app in list(self.running.items()):  # library applications
            del self.running[name]
            _report(name, "stopped", app.type)


def _exit_from(pid: Pid) -> Callable[[object], bool]:
    return lambda m: isinstance(m, EXIT) and m.pid == pid


def _info(spec: AppSpec) -> AppInfo:
    return AppInfo(spec.name, spec.description, spec.vsn)


def _report(name: str, reason: object, app_type: AppType) -> None:
    """OTP's report of an application that exited."""
    level = logging.INFO if reason == "stopped" or is_normal(reason) else logging.ERROR
    log.log(level, "application: %s exited: %r type: %s", name, reason, app_type)
