"""Global names: one holder per name across the cluster (OTP's ``global``).

::

    otp.global_.register_name("leader", otp.self())   # True, or False if taken
    otp.global_.whereis_name("leader")                # the pid, from any node
    otp.call(otp.via(otp.global_, "leader"), request)  # anywhere a pid goes
    otp.global_.unregister_name("leader")

A name lives in the cluster store (etcd) as a key bound to the lease of
the node whose process holds it (see :mod:`otp._cluster`): registration
is a transaction on the key's absence, so two nodes racing for a name
cannot both win, and a partition's minority side, whose store has no
quorum, cannot register at all (:class:`ClusterUnavailable` within the
timeout).  A name goes away when its holder dies (the holder's node
deletes it), when it is unregistered, and when the node's lease ends
(the store deletes every key bound to it; the node's subscribers get
``NamesLost``).  ``whereis_name`` reads the store itself, so it sees the
store's latest state, never a replica's.

The node must belong to a cluster (its member runs as ``otp.cluster``);
otherwise every call raises ``otp.NoProc('otp.cluster')``.

Differences from OTP: names are strings; ``register_name`` takes a pid of
this node only (:class:`NotLocalPid`), because the holder's node is the
one that watches it; there is no name-clash resolution function, because
a name is never held twice.
"""

from __future__ import annotations

import os
from typing import Any

from . import _api
from ._cluster import MEMBER, STORE_TIMEOUT, ClusterError, ClusterUnavailable, NotLocalPid, decode_holder, member_config
from ._cluster_store import ClusterStoreError
from ._errors import CallTimeout, NoProc
from ._etcd_store import EtcdStore
from ._pid import Pid
from ._service import ask

__all__ = [
    "register_name",
    "unregister_name",
    "whereis_name",
    "registered_names",
    "send",
    "ClusterError",
    "ClusterUnavailable",
    "NotLocalPid",
]

#: Seconds a registration may take by default (a store election included).
DEFAULT_TIMEOUT = 5.0

# One store client per OS process (a client does not cross a fork) and
# set of endpoints.
_stores: dict[tuple[int, tuple[str, ...]], EtcdStore] = {}


def _store() -> EtcdStore:
    key = (os.getpid(), member_config().endpoints)
    store = _stores.get(key)
    if store is None:
        for old in _stores.values():
            old.close()
        _stores.clear()
        store = _stores[key] = EtcdStore(key[1])
    return store


def register_name(name: str, pid: Pid, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Give ``name`` to ``pid`` (a process of this node) cluster-wide: True,
    or False if another process holds it (or ``pid`` is dead).  Raises
    :class:`ClusterUnavailable` if the store cannot be reached or has no
    quorum, :class:`NotLocalPid`, TypeError for a name that is not a
    non-empty str."""
    # The store gets most of the caller's time, the rest is the call's.
    store_timeout = STORE_TIMEOUT if timeout is None else max(0.05, min(timeout * 0.8, timeout - 0.2))
    try:
        taken: bool = ask(MEMBER, "register_name", name, pid, store_timeout, timeout=timeout)
    except CallTimeout:
        # The member is busy with a store that does not answer.
        raise ClusterUnavailable(f"global name {name!r}: no answer within {timeout} s") from None
    return taken


def unregister_name(name: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Take the name back, if a process of this node holds it."""
    ask(MEMBER, "unregister_name", name, timeout=timeout)


def whereis_name(name: str, timeout: float = DEFAULT_TIMEOUT) -> Pid | None:
    """The holder of ``name`` as the store says now, or None.  Raises
    :class:`ClusterUnavailable` if the store cannot answer."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"a global name is a non-empty str, not {name!r}")
    try:
        kv = _store().get(member_config().name_key(name), timeout=timeout)
    except ClusterStoreError as exc:
        raise ClusterUnavailable(f"global name {name!r}: {exc}") from None
    return decode_holder(kv)


def registered_names(timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """Every global name held now, sorted."""
    config = member_config()
    try:
        snapshot = _store().get_prefix(config.names_prefix, timeout=timeout)
    except ClusterStoreError as exc:
        raise ClusterUnavailable(f"global names: {exc}") from None
    return [kv.key[len(config.names_prefix) :] for kv in snapshot.items]


def send(name: str, msg: Any) -> Pid:
    """Send ``msg`` to the holder of ``name``; returns its pid.  Raises
    ``otp.NoProc(name)`` if nobody holds it (``global:send/2`` exits with
    ``{badarg, {Name, Msg}}``)."""
    pid = whereis_name(name)
    if pid is None:
        raise NoProc(name)
    _api.send(pid, msg)
    return pid
