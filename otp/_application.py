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
from typing import Any

from ._app_controller import ApplicationController
from ._app_records import (
    CONTROLLER,
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
from ._pid import Pid
from ._service import ask

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
