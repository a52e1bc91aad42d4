"""The kernel's one extension point for names: the node's name service.

The kernel knows pids; names (``send("logger", m)``, ``start_link(name=...)``)
belong to a layer above it, the registry.  Rather than let that layer fill
hook lists in kernel modules as a side effect of being imported, the kernel
declares what it needs from a name service (:class:`NameService`) and
holds one, installed by ``otp/__init__.py`` once every layer is imported
(:func:`install`).  Without one, a name resolves to nothing (``NoProc``)
and a server cannot be started with a name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ._errors import NoProc
from ._pid import Pid

if TYPE_CHECKING:
    from ._process_base import ProcessBase

__all__ = ["NameService", "install", "service", "resolve"]


class NameService(Protocol):
    """What the kernel asks of the layer that owns names."""

    def resolve(self, name: Any) -> Pid | None:
        """The live process registered as ``name``, or None."""

    def register_server(self, name: Any, pid: Pid) -> None:
        """Register a starting server under ``name`` (a plain name or a
        ``via`` tuple); raise ``StartError(('already_started', holder))`` on a
        clash, any other exception for a name that cannot be used."""

    def unregister_server(self, name: Any, pid: Pid) -> None:
        """Give back a name :meth:`register_server` took (a failed start)."""

    def names_of(self, pid: Pid) -> list[Any]:
        """The names ``pid`` holds (empty if none, or if the service cannot
        tell right now); ``otp.process_info``'s ``registered_name``."""

    def on_exit(self, proc: ProcessBase, reason: Any) -> None:
        """Called in every exiting process before its death is announced:
        drop its names, so that no one who saw it die finds it by name."""


_service: NameService | None = None


def install(name_service: NameService | None) -> None:
    """Make ``name_service`` the node's name service (None: names off)."""
    global _service
    _service = name_service


def service() -> NameService | None:
    """The installed name service, if any."""
    return _service


def resolve(dest: Pid | Any) -> Pid:
    """The pid ``dest`` names: ``dest`` itself if it is a pid, else what
    the name service resolves it to; :class:`NoProc` if it names nothing
    (:class:`TypeError` for something that cannot be a name when no name
    service is installed)."""
    if isinstance(dest, Pid):
        return dest
    names = _service
    if names is None:
        if not isinstance(dest, (str, tuple)):
            raise TypeError(f"not a pid or a name: {dest!r}")
        raise NoProc(dest)
    pid = names.resolve(dest)
    if pid is None:
        raise NoProc(dest)
    return pid
