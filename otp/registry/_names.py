"""Process names (Erlang's ``register``/``whereis``) and keyed registries
(Elixir's ``Registry``), over registry processes; :func:`registry_client`
and :func:`start_named` are also how :mod:`otp.pg` reaches and starts its
scopes.

Names work wherever a pid does (``send``, ``call``, ``cast``, ``link``,
``monitor``): the kernel's name resolution asks :func:`whereis`.  A name, a
keyed registry's key and a process group are each any str, int, bytes or
tuple of those (anything else: ``InvalidKey``).

Every call here is a request to a registry process (or a read of this
process's replica of it) and raises what :mod:`otp.registry._client`
documents: ``EncodeError`` before sending an argument that cannot be
pickled, ``RegistryDown`` if the registry died while the request was in
flight (it may or may not have been applied), ``Timeout``.  Calls that take
a ``timeout`` check it first (``None`` or ``math.inf``: forever; ``nan`` or
negative: ``ValueError``).
"""

from __future__ import annotations

import importlib
import os
import types
from collections.abc import Callable, Sequence
from threading import get_ident as _get_ident
from time import monotonic as _monotonic
from typing import Any, NamedTuple

from .. import _api, _process
from .._child_spec import ChildSpec, child_spec
from .._errors import NoProc, StartError, Timeout
from .._pid import Pid
from ._backend import AlreadyRegistered, InvalidKey, NotFound, RegistryDown, canonical_key
from ._client import DEFAULT_TIMEOUT, RegistryClient, Replica
from ._server import endpoints
from ._server import start_link as _start_server

__all__ = [
    "register",
    "unregister",
    "whereis",
    "registered",
    "registry_health",
    "Registry",
    "via",
    "registry_client",
    "start_named",
]

#: Seconds an exiting process waits for the registry to drop its name.
EXIT_UNREGISTER_TIMEOUT = 1.0


_clients_of: tuple = (None, {})  # (the process, its clients by registry uid; None: the node's)


def _clients(proc) -> dict:
    """This process's registry clients.  An OS process runs one OTP process,
    so one table per module (a forked child starts a table of its own)."""
    global _clients_of
    if _clients_of[0] is not proc:
        _clients_of = (proc, {})
    return _clients_of[1]


_last: tuple = (None, None)  # (process, its node client): the hot path's shortcut


def _node_client() -> RegistryClient:
    global _last
    proc = _process.current()
    if _last[0] is proc:
        return _last[1]
    clients = _clients(proc)
    client = clients.get(None)
    if client is None:
        client = clients[None] = RegistryClient(*endpoints(proc.node.dir, None))
    _last = (proc, client)
    return client


def _on_exit(proc, reason: Any) -> None:
    """Exit hook of every process: drop its names before anyone hears of its
    death, then close its registry connections."""
    _disarm()  # before the clients close: the hot path reads their stamp word
    sig = proc.sig
    with sig.lock:
        sig.drain()  # a 'named' notice may still be queued on our port
    clients = _clients(proc)
    node = clients.get(None)
    if proc.sig.named and node is None and not proc.root:
        node = clients[None] = RegistryClient(*endpoints(proc.node.dir, None))
    if proc.sig.named and node is not None and not node._registry_dead():
        try:
            node.request("unregister_pid", proc.pid, timeout=EXIT_UNREGISTER_TIMEOUT)
        except Exception:  # noqa: BLE001 - the registry drops it on our DOWN anyway
            pass
    for client in clients.values():
        client.close()
    clients.clear()
    global _last
    _last = (None, None)


# ----------------------------------------------------------------- names


def register(name: Any, pid: Pid | None = None) -> None:
    """Register ``pid`` (default: the caller) under ``name`` on this node.

    Raises :class:`AlreadyRegistered` if the name is taken or the process
    already has a name (Erlang allows one per process), ``PidNotAlive`` if
    the process is dead."""
    proc = _process.current()
    pid = proc.pid if pid is None else pid
    _node_client().request("register", name, pid)
    if pid == proc.pid:
        proc.sig.named = True


def unregister(name: Any) -> None:
    """Remove a name (idempotent)."""
    _node_client().request("unregister", name, None)


# The hot path of whereis (about 0.15 us, 0.2 us in the root): the first
# holders of the node registry's names as this process's replica holds them,
# answered while the registry's stamp word still equals the replica's stamp
# (the registry has changed nothing since: see otp.registry._protocol) and,
# in the root, only to the thread that is the process (another thread gets
# NotAProcess, as from every call).  A pid this process has seen die is
# never returned.  The word and the stamp are memoryviews of one native
# integer: comparing two of them compares memory (about 20 ns), where
# reading the word would build an int object.  Module globals: the cheapest
# reads Python has.  Armed after a refresh of the replica, disarmed at exit
# and in a forked child.
def _stamp_view(stamp: int = 0) -> memoryview:
    view = memoryview(bytearray(8)).cast("Q")
    view[0] = stamp
    return view


_DISARMED = _stamp_view(1)  # equals no stamp view: disarmed, the word is this
_hot_word: memoryview = _DISARMED
_hot_stamp: memoryview = _stamp_view(2)
_hot_names: dict[Any, Pid] = {}
_hot_dead: dict[int, bool] = {}
_hot_thread: int | None = None


def _arm(client: RegistryClient, replica: Replica) -> None:
    """Answer from ``replica`` on the hot path while the registry's stamp
    stays what it is now, if the replica has every change up to it."""
    global _hot_word, _hot_stamp, _hot_names, _hot_dead, _hot_thread
    proc = client.proc
    if proc.sig.exiting:  # its exit hook has disarmed, for good
        return
    word = client.stamp_word()
    stamp = replica.stamp()
    if word is None or word[0] != stamp:
        return  # changes on their way: the next refresh tries again
    _hot_word = _DISARMED  # a reader in another thread sees all of it or none of it
    _hot_stamp = _stamp_view(stamp)
    _hot_names = replica.first
    _hot_dead = proc.dead_seen
    _hot_thread = proc.thread_id if proc.root else None
    _hot_word = word


def _disarm() -> None:
    global _hot_word, _hot_names
    _hot_word = _DISARMED
    _hot_names = {}


os.register_at_fork(after_in_child=_disarm)  # a child is another process


def whereis(name: Any, cached: bool = True) -> Pid | None:
    """The pid registered under ``name``, or None; never a process this
    process has seen die.  Served from this process's replica once it looks
    names up often: from memory alone (no socket, no clock) while the
    registry has made no change the replica lacks, else as fresh as the
    replica's last refresh (see :mod:`otp.registry._client`);
    ``cached=False`` always asks the registry process (one round trip
    through its ROUTER)."""
    if _hot_word == _hot_stamp and cached and (_hot_thread is None or _get_ident() == _hot_thread):
        try:
            pid = _hot_names[name]  # the hot path: no socket, no clock
        except KeyError:
            return None
        return None if pid.uid in _hot_dead else pid
    return _whereis(name, cached)


def _whereis(name: Any, cached: bool) -> Pid | None:
    client = _node_client()
    if not cached:
        return _unless_seen_dead(client.request("whereis", name))
    replica = client.replica
    if replica is not None and replica.version >= client.seen_version and _monotonic() < replica.fresh_until:
        rows = replica.table.get(name)  # as fresh as the last refresh: no socket touched
        if rows:
            pid = rows[0].pid
            return None if pid.uid in client.proc.dead_seen else pid
        return None
    found = client.lookup_cached(name)
    if found is None:
        return _unless_seen_dead(client.request("whereis", name))
    if client.replica is not None:  # just refreshed
        _arm(client, client.replica)
    return found[0][0] if found else None  # (pid, value)


def _unless_seen_dead(pid: Pid | None) -> Pid | None:
    """The registry answers with processes it believes alive; one that the
    caller has already seen die (its DOWN or EXIT is in, the registry's own
    notice may not be yet) is not returned: nobody finds by name a process
    whose death they have observed."""
    if pid is not None and _process.current().seen_dead(pid):
        return None
    return pid


def _live_rows(rows: list) -> list:
    seen_dead = _process.current().seen_dead
    return [row for row in rows if not seen_dead(row[0])]


def whereis_many(names: list, timeout: float | None = DEFAULT_TIMEOUT) -> list:
    """``[whereis(name) for name in names]`` asked of the registry process in
    one pipelined batch (about one round trip for the lot)."""
    client = _node_client()
    pids = client.request_many([("whereis", (name,)) for name in names], timeout=timeout)
    seen_dead = client.proc.seen_dead
    return [None if pid is None or seen_dead(pid) else pid for pid in pids]


def registered() -> list:
    """Every registered name on this node."""
    return _node_client().request("registered")


def registry_health() -> dict:
    """The node registry's health report (backend, counts, version)."""
    return _node_client().request("health")


def _resolve(dest: Any) -> Pid | None:
    if isinstance(dest, tuple) and len(dest) == 3 and dest[0] == "$via":
        if type(dest[1]) is ViaModule:
            pid = dest[1].get().whereis_name(dest[2])
            return pid if isinstance(pid, Pid) else None
        return Registry.whereis_name(dest[1], dest[2])
    if isinstance(dest, (str, int, bytes, tuple)) and not isinstance(dest, bool):
        try:
            return whereis(dest)
        except Exception:  # noqa: BLE001 - an invalid name names nothing
            return None
    return None


def _names_of(pid: Pid) -> list[Any]:
    """The names ``pid`` holds in the node registry ([] while the registry
    is down or restarting: process_info must not fail for that)."""
    try:
        return list(_node_client().request("keys", pid))
    except (RegistryDown, NoProc):
        return []


def _register_server_name(name: Any, pid: Pid) -> None:
    """gen_server's ``name=``: a clash is ``('already_started', pid)``."""
    try:
        if isinstance(name, tuple) and len(name) == 3 and name[0] == "$via" and type(name[1]) is ViaModule:
            if not name[1].get().register_name(name[2], pid):
                raise StartError(("already_started", name[1].get().whereis_name(name[2])))
        elif isinstance(name, tuple) and len(name) == 3 and name[0] == "$via":
            Registry.register(name[1], name[2], None)
        else:
            register(name, pid)
    except AlreadyRegistered as exc:
        raise StartError(("already_started", exc.existing_pid)) from None


def _unregister_server_name(name: Any, pid: Pid) -> None:
    if isinstance(name, tuple) and len(name) == 3 and name[0] == "$via" and type(name[1]) is ViaModule:
        name[1].get().unregister_name(name[2])
    elif isinstance(name, tuple) and len(name) == 3 and name[0] == "$via":
        Registry.unregister(name[1], name[2])
    else:
        unregister(name)


class RegistryNames:
    """The registry as the node's name service (see :mod:`otp._naming`);
    ``otp/__init__.py`` installs it."""

    resolve = staticmethod(_resolve)
    register_server = staticmethod(_register_server_name)
    unregister_server = staticmethod(_unregister_server_name)
    on_exit = staticmethod(_on_exit)
    names_of = staticmethod(_names_of)


# ------------------------------------------------------- keyed registries


class ViaModule(NamedTuple):
    """A module that registers names itself (Elixir's ``{:via, module,
    name}``), by its import name so that the name pickles: it has
    ``register_name(name, pid)``, ``unregister_name(name)`` and
    ``whereis_name(name)``, as :mod:`otp.global_` does."""

    module: str

    def get(self) -> Any:
        return importlib.import_module(self.module)


def via(registry: Any, key: Any) -> tuple:
    """A name for gen_server ``name=``, ``call``, ``send``...: the process
    registered under ``key`` in the (unique) keyed registry ``registry``,
    or, when ``registry`` is a module with ``register_name``,
    ``unregister_name`` and ``whereis_name`` (``otp.global_``), under
    ``key`` in that module's names."""
    if isinstance(registry, types.ModuleType):
        if not all(hasattr(registry, f) for f in ("register_name", "unregister_name", "whereis_name")):
            raise TypeError(f"module {registry.__name__} has no register_name/unregister_name/whereis_name")
        return ("$via", ViaModule(registry.__name__), key)
    return ("$via", registry, key)


def start_named(config: dict[str, Any], name: Any) -> Pid:
    """Start a registry process linked to the caller and, unless ``name``
    is None, register it under ``name`` on the node; a taken name is
    ``StartError(('already_started', pid))``."""
    pid = _start_server({**config, "name": name})
    if name is not None:
        try:
            register(name, pid)
        except AlreadyRegistered as exc:
            # Unlink first: the caller must not receive the 'killed'.
            _api.unlink(pid)
            _api.exit(pid, "kill")
            raise StartError(("already_started", exc.existing_pid)) from None
    return pid


def registry_client(registry: Any) -> RegistryClient:
    """This process's client of the registry process ``registry`` (its pid
    or its name; None: the node's name registry); ``NoProc`` if no process
    has that name."""
    if registry is None:
        return _node_client()
    pid = registry if isinstance(registry, Pid) else whereis(registry)
    if pid is None:
        raise NoProc(registry)
    proc = _process.current()
    clients = _clients(proc)
    client = clients.get(pid.uid)
    if client is None or (client.registry_pid is not None and client._registry_dead()):
        if client is not None:
            client.close()
        client = clients[pid.uid] = RegistryClient(*endpoints(proc.node.dir, pid.uid), registry_pid=pid)
    return client


def _check_listeners(listeners: Sequence[Any]) -> list[Any]:
    """Listeners are pids or plain names (Elixir: named processes)."""
    if isinstance(listeners, (str, bytes)) or not isinstance(listeners, Sequence):
        raise TypeError(f"listeners is a list of pids or names, not {type(listeners).__name__}")
    checked = []
    for listener in listeners:
        if not isinstance(listener, Pid):
            try:
                listener = canonical_key(listener)
            except InvalidKey:
                raise TypeError(f"a listener is a pid or a name (str, int, bytes, tuple), not {listener!r}") from None
            if isinstance(listener, tuple) and listener[:1] == ("$via",):
                raise TypeError(f"a listener is a pid or a name of the node, not a via name: {listener!r}")
        checked.append(listener)
    return checked


class Registry:
    """Keyed registries (Elixir's Registry): ``Registry.start_link(
    keys='unique'|'duplicate', name=...)``; a process registers *itself*."""

    @staticmethod
    def start_link(
        keys: str = "unique", name: Any = None, backend: Any = "memory", listeners: Sequence[Any] = ()
    ) -> Pid:
        """Start a keyed registry linked to the caller.  Each of
        ``listeners`` (pids or names, Elixir's ``:listeners``) receives an
        :data:`~otp.registry.RegistryEvent` for every registration and
        unregistration, also when a holder exits; an event to a dead
        listener, or to a name nobody holds, is dropped."""
        if keys not in ("unique", "duplicate"):
            raise ValueError(f"keys must be 'unique' or 'duplicate', not {keys!r}")
        return start_named({"mode": keys, "backend": backend, "listeners": _check_listeners(listeners)}, name)

    @staticmethod
    def child_spec(
        keys: str = "unique",
        name: Any = None,
        backend: Any = "memory",
        id: Any = None,  # noqa: A002
        listeners: Sequence[Any] = (),
    ) -> ChildSpec:
        return child_spec(
            id if id is not None else ("Registry", name),
            (Registry.start_link, (keys, name, backend, list(listeners))),
        )

    @staticmethod
    def _client(registry: Any) -> RegistryClient:
        return registry_client(registry)

    @staticmethod
    def register(registry: Any, key: Any, value: Any = None, metadata: dict | None = None) -> None:
        """Register the caller under ``key`` with ``value``.  In a unique
        registry a clash raises :class:`AlreadyRegistered`."""
        Registry._client(registry).request("register", key, _api.self_(), value, metadata)

    @staticmethod
    def unregister(registry: Any, key: Any) -> None:
        """Remove the caller's registrations of ``key``."""
        Registry._client(registry).request("unregister", key, _api.self_())

    @staticmethod
    def lookup(registry: Any, key: Any) -> list:
        """``[(pid, value)]`` registered under ``key`` (replica once hot)."""
        client = Registry._client(registry)
        rows = client.lookup_cached(key)
        return _live_rows(client.request("lookup", key)) if rows is None else rows

    @staticmethod
    def whereis_name(registry: Any, key: Any) -> Pid | None:
        try:
            rows = Registry.lookup(registry, key)
        except (NoProc, Timeout, RegistryDown):
            return None
        return rows[0][0] if rows else None  # (pid, value)

    @staticmethod
    def set_value(registry: Any, key: Any, value: Any) -> None:
        """Replace the caller's value under ``key`` in one request (no read
        first, unlike :meth:`update_value`); raises ``NotFound`` if the
        caller has no entry under ``key``.  Not in Elixir's API: for owners
        that publish a snapshot after every change."""
        Registry._client(registry).request("update_value", key, _api.self_(), value)

    @staticmethod
    def update_value(registry: Any, key: Any, update: Callable[[Any], Any]) -> tuple:
        """Apply ``update`` to the caller's value under ``key`` (unique
        registries); returns ``(new, old)``.  Only the owner writes its
        entry, so read-modify-write here cannot race."""
        me = _api.self_()
        client = Registry._client(registry)
        rows = [v for p, v in client.request("lookup", key) if p == me]
        if not rows:
            raise NotFound(key, me)
        old = rows[0]
        new = update(old)
        client.request("update_value", key, me, new)
        return new, old

    @staticmethod
    def match(registry: Any, key: Any, predicate: Callable[[Any], bool]) -> list:
        """``[(pid, value)]`` under ``key`` whose value satisfies ``predicate``."""
        return [(p, v) for p, v in Registry.lookup(registry, key) if predicate(v)]

    @staticmethod
    def match_metadata(registry: Any, field: str, value: Any) -> list:
        """Entries whose metadata ``field`` equals ``value`` (indexed)."""
        seen_dead = _process.current().seen_dead
        return [e for e in Registry._client(registry).request("match_metadata", field, value) if not seen_dead(e.pid)]

    @staticmethod
    def count(registry: Any) -> int:
        return Registry._client(registry).request("count")

    @staticmethod
    def keys(registry: Any, pid: Pid) -> list:
        return Registry._client(registry).request("keys", pid)

    @staticmethod
    def dispatch(registry: Any, key: Any, fn: Callable[[list], Any]) -> Any:
        """Call ``fn([(pid, value)])`` in the caller, not in the registry
        process: a slow or failing ``fn`` cannot stall or crash the registry."""
        return fn(Registry.lookup(registry, key))

    @staticmethod
    def health(registry: Any) -> dict:
        return Registry._client(registry).request("health", timeout=DEFAULT_TIMEOUT)
