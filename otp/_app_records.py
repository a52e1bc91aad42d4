"""What applications are made of (see :mod:`otp._application`): the
behaviour (:class:`Application`), the spec (:class:`AppSpec`), what the
controller reports (:class:`AppInfo`), restart types, and the errors its
calls raise.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from ._errors import OTPError
from ._pid import Pid

log = logging.getLogger("otp")

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
