"""The kernel's one extension point for names: the node's name service.

The kernel knows pids; names (``send("logger", m)``, ``start_link(name=...)``)
belong to a layer above it, the registry.  Rather than let that layer fill
hook lists in kernel modules as a side effect of being imported, the kernel
declares what it needs from a name service (:class:`NameService`) and
holds one, installed by ``otp/__init__.py`` once every layer is imported
(:func:`install`).  Without one, a name resolves to nothing (``NoProc``)
and a server cannot be started with a name.

Names of other nodes (Erlang's ``{Name, Node}``) are :class:`RemoteName`
records, resolved on that node, never here (see its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import NoProc
from ._pid import Pid

if TYPE_CHECKING:
    from ._process_base import ProcessBase

__all__ = ["NameService", "RemoteName", "install", "service", "resolve"]


@dataclass(frozen=True, slots=True)
class RemoteName:
    """The process registered as ``name`` on node ``node`` (Erlang's
    ``{Name, Node}``): ``otp.send(otp.RemoteName("db", "beta@10.0.0.6"), m)``,
    and wherever a pid goes (``otp.call``, ``cast``, ``monitor``, ``link``,
    ``exit``...).  The name is looked up on that node, by that node.

    A record of its own, not Erlang's tuple: here a tuple is already a
    name of this node (``(partition_sup, 3)``, ``("sessions",
    "beta@10.0.0.6")`` are legal local names), so reading ``(name, node)``
    as a remote name would make a tuple's meaning depend on which nodes
    exist when it is used, and a local name could silently start to mean
    a process elsewhere when a node of that name joins.  A
    ``RemoteName`` is never a local name (it is not a tuple, and
    ``GenServer.start(name=...)`` refuses it), so nothing is ambiguous.
    A ``RemoteName`` of this node's own name is the local name.

    ``name`` is what that node's name service takes (a str, int, bytes,
    tuple of those or ``otp.via(...)``; ValueError for None, a pid or a
    RemoteName, which name nothing); ``node`` a node name (ValueError
    otherwise)."""

    name: Any
    node: str

    def __post_init__(self) -> None:
        if not isinstance(self.node, str) or not self.node:
            raise ValueError(f"a RemoteName's node is a node name, not {self.node!r}")
        if isinstance(self.name, (Pid, RemoteName)) or self.name is None:
            raise ValueError(f"a RemoteName's name is a registered name, not {self.name!r}")


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
    service is installed).  A :class:`RemoteName` is resolved by
    ``otp._api.resolve``, which can ask its node: here it is
    :class:`TypeError`."""
    if isinstance(dest, Pid):
        return dest
    if type(dest) is RemoteName:
        raise TypeError(f"{dest!r} names a process of another node: resolve it with otp._api.resolve")
    names = _service
    if names is None:
        if not isinstance(dest, (str, tuple)):
            raise TypeError(f"not a pid or a name: {dest!r}")
        raise NoProc(dest)
    pid = names.resolve(dest)
    if pid is None:
        raise NoProc(dest)
    return pid
