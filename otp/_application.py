"""Applications (OTP's ``application``): components started and stopped as
a unit, with dependencies, an environment and a restart type.

An application is declared by an :class:`AppSpec` (OTP's ``.app`` file)
whose ``mod`` names its callback class, a subclass of :class:`Application`
(OTP's application behaviour), and the start arguments::

    class ShopApp(otp.Application):
        def start(self, start_type, args):
            return otp.Supervisor.start_link([...], strategy="one_for_one")

    SHOP = otp.AppSpec("shop", "the shop", "1.0", applications=["db"],
                       env={"port": 8080}, mod=(ShopApp, None))
    otp.application.ensure_all_started(SHOP)     # starts db first

The application controller.  One :class:`ApplicationController` per node,
a child of the node's kernel supervisor registered as
``application_controller``, knows the loaded applications, their
environments and the running ones.  It lives under the kernel supervisor
rather than in the root so that it is found by name from every process,
and so that stopping the node stops it, and with it every running
application in reverse start order, before the registry it relies on.

Application masters.  Each running application with a ``mod`` has a
master process, linked to the controller, that runs the callbacks: it calls
``start`` (so a slow start never blocks the controller), is linked to the
top supervisor ``start`` returned, and when the application stops runs
``prep_stop``, stops the supervisor (exit signal ``'shutdown'``), runs
``stop`` and exits.  When the top supervisor exits on its own, the master
runs ``prep_stop`` and ``stop``, tells the controller, waits until the
controller took note (so that once the master is gone the controller's view
is up to date) and exits with the supervisor's reason.

Restart types (what happens when a running application's supervisor exits
on its own; :func:`stop` is never a failure):

* ``'temporary'``: the exit is logged, nothing else;
* ``'transient'``: an exit with reason ``'normal'`` is logged; any other
  reason stops the node, as ``'permanent'``;
* ``'permanent'``: the node stops.

The node stops like this: the controller stops every other running
application (reverse start order), then sends the root process (the thread
that entered :class:`otp.Node`) an exit signal with reason
:class:`ApplicationTerminated` ``(app, reason)``.  A root that does not
trap exits is killed by it: its ``with otp.Node()`` block raises
:class:`otp.ProcessExit` with that reason, and leaving the block stops every
process of the node.  A root that traps exits receives
``EXIT(controller, ApplicationTerminated(app, reason))`` and decides.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from . import _api
from ._errors import OTPError, ProcessExit
from ._gen_server import NoReply
from ._pid import Pid
from ._reasons import EXIT, is_normal
from ._service import DEFER, Service, ask, operation

log = logging.getLogger("otp")

__all__ = [
    "Application",
    "AppSpec",
    "AppInfo",
    "AppType",
    "ApplicationTerminated",
    "ApplicationController",
    "ApplicationError",
    "UnknownApplication",
    "NotStarted",
    "AlreadyStarted",
    "AlreadyLoaded",
    "StartFailed",
    "CONTROLLER",
    "load",
    "start",
    "ensure_started",
    "ensure_all_started",
    "stop",
    "which_applications",
    "loaded_applications",
    "get_env",
    "set_env",
    "unset_env",
    "get_all_env",
    "get_supervisor",
]

#: The registered name of the node's application controller.
CONTROLLER = "application_controller"

#: What happens when an application's supervisor exits (see the module doc).
AppType = Literal["temporary", "transient", "permanent"]
APP_TYPES: tuple[AppType, ...] = ("temporary", "transient", "permanent")

#: The start type ``Application.start`` receives: always ``'normal'`` here
#: (OTP's takeover and failover belong to distributed applications).
NORMAL_START = "normal"


# ------------------------------------------------------------------ errors


class ApplicationError(OTPError):
    """An application request refused; ``app`` is the application it is about."""

    def __init__(self, app: str) -> None:
        super().__init__(app)
        self.app = app


class UnknownApplication(ApplicationError, LookupError):
    """No application of that name is loaded."""

    def __str__(self) -> str:
        return f"unknown application {self.app!r} (not loaded)"


class NotStarted(ApplicationError):
    """``app`` is not running: a dependency of the application being started
    (OTP's ``{not_started, App}``), or the application to stop."""

    def __str__(self) -> str:
        return f"application {self.app!r} is not started"


class AlreadyStarted(ApplicationError):
    """The application runs already (OTP's ``{already_started, App}``)."""

    def __str__(self) -> str:
        return f"application {self.app!r} is already started"


class AlreadyLoaded(ApplicationError):
    """An application of that name is loaded already (with another spec,
    for :func:`start`)."""

    def __str__(self) -> str:
        return f"application {self.app!r} is already loaded"


class StartFailed(ApplicationError):
    """The application's ``start`` failed; ``reason`` is the exit reason of
    its master (an :class:`otp.Crash` if ``start`` raised, ``('bad_return',
    value)`` if it returned something else than a pid or ``(pid, state)``)."""

    def __init__(self, app: str, reason: object) -> None:
        super().__init__(app)
        self.args = (app, reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"application {self.app!r} failed to start: {self.reason!r}"


@dataclass(frozen=True)
class ApplicationTerminated:
    """The exit reason the root process gets when a permanent application,
    or a transient one with a reason other than ``'normal'``, terminated
    with ``reason``."""

    app: str
    reason: object


# --------------------------------------------------------------- behaviour


class Application:
    """The application behaviour: subclass it, name it in an
    :class:`AppSpec`'s ``mod``.  The callbacks run in the application's
    master process."""

    def start(self, start_type: str, args: Any) -> Pid | tuple[Pid, Any]:
        """Start the application's top supervisor, linked (``start_link``), and
        return its pid, or ``(pid, state)`` to give ``prep_stop`` and ``stop``
        a state (default None).  ``start_type`` is ``'normal'``; ``args`` is
        the second item of the spec's ``mod``.  Raising fails the start."""
        raise NotImplementedError(f"{type(self).__name__}.start must start the top supervisor")

    def prep_stop(self, state: Any) -> Any:
        """Called before the supervision tree stops; returns the state
        ``stop`` gets.  Default: ``state`` unchanged."""
        return state

    def stop(self, state: Any) -> None:
        """Called after the supervision tree stopped (whatever stopped it);
        its return value and exceptions are ignored.  Default: nothing."""


@dataclass(frozen=True)
class AppSpec:
    """An application's declaration (OTP's ``.app`` file).

    ``applications``: the applications that must run before this one, by
    name or as specs (a spec is loaded with this one); ``env``: the default
    environment, installed when the application is loaded; ``mod``:
    ``(Application subclass, start args)``, or None for a library
    application, which has no processes (starting it only marks it
    started)."""

    name: str
    description: str = ""
    vsn: str = ""
    applications: Sequence[str | AppSpec] = ()
    env: Mapping[str, Any] = field(default_factory=dict)
    mod: tuple[type[Application], Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"an application name is a non-empty str, not {self.name!r}")
        deps = tuple(self.applications)
        for dep in deps:
            if not (isinstance(dep, AppSpec) or (isinstance(dep, str) and dep)):
                raise TypeError(f"{self.name}: a dependency is a name or an AppSpec, not {dep!r}")
        object.__setattr__(self, "applications", deps)
        if not isinstance(self.env, Mapping) or not all(isinstance(k, str) for k in self.env):
            raise TypeError(f"{self.name}: env is a mapping with str keys, not {self.env!r}")
        object.__setattr__(self, "env", dict(self.env))
        mod = self.mod
        if mod is not None:
            if not (
                isinstance(mod, tuple)
                and len(mod) == 2
                and isinstance(mod[0], type)
                and issubclass(mod[0], Application)
            ):
                raise TypeError(f"{self.name}: mod is (Application subclass, args) or None, not {mod!r}")

    @property
    def dependencies(self) -> tuple[str, ...]:
        """The names of the applications that must run first."""
        return tuple(dep.name if isinstance(dep, AppSpec) else dep for dep in self.applications)


class AppInfo(NamedTuple):
    """What :func:`which_applications` lists (OTP's ``{App, Description, Vsn}``)."""

    name: str
    description: str
    vsn: str


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


# ------------------------------------------------------------------ client
#
# Every call raises what otp.ask raises (NoProc when the node has no
# controller), and the ApplicationError named.


def _name_of(app: AppSpec | str) -> str:
    return app.name if isinstance(app, AppSpec) else app


def load(spec: AppSpec) -> None:
    """Load an application (and the specs among its ``applications``):
    install its spec and default environment.  ``AlreadyLoaded`` if an
    application of that name is loaded."""
    ask(CONTROLLER, "load_application", spec, timeout=None)


def start(app: AppSpec | str, type: AppType = "temporary") -> None:  # noqa: A002 - OTP's name
    """Start an application (loading a spec first if needed); returns once
    its ``start`` returned.  Raises ``NotStarted(dep)`` if a dependency does
    not run, ``AlreadyStarted``, ``UnknownApplication`` for a name not
    loaded, ``AlreadyLoaded`` for a spec that differs from the loaded one
    of that name, ``StartFailed`` if ``start`` failed, ValueError for a bad
    ``type``."""
    ask(CONTROLLER, "start_application", app, type, timeout=None)


def ensure_started(app: AppSpec | str, type: AppType = "temporary") -> None:  # noqa: A002 - OTP's name
    """:func:`start`, where an application already running is no error."""
    try:
        start(app, type)
    except AlreadyStarted:
        pass


def ensure_all_started(app: AppSpec | str, type: AppType = "temporary") -> list[str]:  # noqa: A002 - OTP's name
    """Start the application's dependencies that do not run (recursively,
    dependencies first, with the same type), then the application; returns
    the names started, in start order.  If one fails, those it started are
    stopped again (in reverse order) and the error is raised."""
    started: list[str] = []
    try:
        _start_with_dependencies(app, type, started, set())
    except Exception:
        for name in reversed(started):
            try:
                stop(name)
            except NotStarted:
                pass
        raise
    return started


def _start_with_dependencies(app: AppSpec | str, app_type: AppType, started: list[str], seen: set[str]) -> None:
    spec: AppSpec = app if isinstance(app, AppSpec) else ask(CONTROLLER, "get_spec", app, timeout=None)
    if spec.name in seen:
        return
    seen.add(spec.name)
    for dep in spec.applications:
        _start_with_dependencies(dep, app_type, started, seen)
    try:
        start(spec, app_type)
    except AlreadyStarted:
        return
    started.append(spec.name)


def stop(app: AppSpec | str) -> None:
    """Stop a running application: ``prep_stop``, its supervision tree,
    ``stop``; returns once it is down.  Applications that depend on it keep
    running (as OTP's).  ``NotStarted`` if it does not run."""
    ask(CONTROLLER, "stop_application", _name_of(app), timeout=None)


def which_applications() -> list[AppInfo]:
    """The running applications, the most recently started first."""
    result: list[AppInfo] = ask(CONTROLLER, "which_applications")
    return result


def loaded_applications() -> list[AppInfo]:
    """The loaded applications (running or not), in load order."""
    result: list[AppInfo] = ask(CONTROLLER, "loaded_applications")
    return result


def get_supervisor(app: AppSpec | str) -> Pid | None:
    """The top supervisor of a running application, else None."""
    result: Pid | None = ask(CONTROLLER, "get_supervisor", _name_of(app))
    return result


def get_env(app: AppSpec | str, key: str, default: Any = None) -> Any:
    """The value of ``key`` in the application's environment, else ``default``."""
    return get_all_env(app).get(key, default)


def set_env(app: AppSpec | str, key: str, value: Any) -> None:
    """Set ``key`` in the application's environment (loaded or not; a later
    load installs the declared defaults over it)."""
    ask(CONTROLLER, "set_env", _name_of(app), key, value)


def unset_env(app: AppSpec | str, key: str) -> None:
    """Remove ``key`` from the application's environment."""
    ask(CONTROLLER, "unset_env", _name_of(app), key)


def get_all_env(app: AppSpec | str) -> dict[str, Any]:
    """The application's whole environment (empty for an unknown one)."""
    result: dict[str, Any] = ask(CONTROLLER, "get_all_env", _name_of(app))
    return result
