"""Cluster membership: a node's presence in the cluster store, the other
nodes it sees there, and the lease its global names are bound to.

One :class:`ClusterMember` runs per node that belongs to a cluster
(registered as :data:`MEMBER`).  At start it takes a lease from the store
(:mod:`otp._cluster_store`, etcd), writes the node's record under it
(``<prefix>/<cluster>/nodes/<node>``: endpoint, public key, incarnation,
as JSON), reads every node record and watches them from the revision it
read, so it misses no change.  It keeps the lease alive from its own
timer, every third of the TTL: the lease lives exactly as long as the
member can act.  A node that dies, or is cut from the store's quorum,
stops renewing; when its lease expires the store deletes its record and
every name bound to it, and every other member sees the deletion.

What a member tells its subscribers (:func:`subscribe`), as messages:

* :class:`MemberUp` ``(node, info)``: a node record appeared (or changed:
  a restarted node comes back with another incarnation);
* :class:`MemberDown` ``(node, reason)``: it was deleted, reason
  ``'left'`` (the node left on purpose and deleted it) or
  ``'lease_expired'`` (its lease ran out);
* :class:`NamesLost` ``(names, reason)``: this node's lease is gone
  (expired, or not renewed for longer than its TTL while the store was
  unreachable): every global name it held is lost, cluster-wide, at that
  moment, and the member says so (also in the log, once) and forgets them.
  It then takes a new lease and writes its record again.

Global names (:mod:`otp.global_`) are registered through the member: a
transaction on the key's absence bound to the member's lease, so a name
has one holder cluster-wide, and a holder that dies has its name deleted
by the member (it monitors the holder), or by the store when the node's
lease ends.  On the minority side of a partition the store has no leader
and answers nothing: registration fails with :class:`ClusterUnavailable`
within its timeout, and no name is ever held twice, so a heal needs no
conflict resolution.

The watch runs in a small linked process of its own (a store watch
delivers from a thread, and only a process's main thread may use its
sockets), which forwards each event as a message; if the watch ends (the
store unreachable for longer than its timeout), the member starts a new
one from a fresh read and reports the difference.

Discovery (``ClusterConfig(discover=True)``, on a node started with
``listen=`` and named as ``config.node``): the node's record carries its
gateway's endpoint and public key, and every other node seen in the store
is made a peer of the gateway (``otp.net_kernel.add_peer``) before the
member reports it, so ``otp.connect_node``, sends and calls reach it as
if it had been in a static peer list.  The store is then trusted with the
cluster's membership: whoever may write to it may add a key that the
gateways accept (the store client speaks plain HTTP, without
authentication), so run etcd where only the cluster's hosts reach it, or
give the nodes a static peer list instead.

Python note: a global name is a ``str`` (Erlang's may be any term): it is
a key in the store, and a string keeps it readable there.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import queue
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import _api
from ._cluster_store import (
    ClusterStoreError,
    DeleteEvent,
    KeyValue,
    Lease,
    LeaseExpired,
    PutEvent,
    StoreUnavailable,
    WatchEnded,
    WatchEvent,
)
from ._dist import add_peer, net_kernel_info
from ._errors import NodeError, NoProc, OTPError, ProcessExit
from ._etcd_store import EtcdStore
from ._gen_server import NoReply
from ._pid import Pid, Ref
from ._reasons import DOWN, EXIT
from ._service import Service, ask, operation
from ._timers import TimerRef, cancel_timer, send_after
from .registry._names import whereis

log = logging.getLogger("otp.cluster")

__all__ = [
    "ClusterConfig",
    "ClusterMember",
    "ClusterError",
    "ClusterUnavailable",
    "NotLocalPid",
    "MemberUp",
    "MemberDown",
    "NamesLost",
    "MEMBER",
    "subscribe",
    "nodes",
    "member_config",
]

#: The registered name of the node's cluster member.
MEMBER = "otp.cluster"

#: Seconds a request to the store may take from inside the member.  Short:
#: the member answers its callers between two store requests, and a store
#: that does not answer within this is as good as gone for them.
STORE_TIMEOUT = 2.0


class ClusterError(OTPError):
    """Base class of the errors of cluster membership and global names."""


class ClusterUnavailable(ClusterError):
    """The cluster store cannot be reached, has no quorum (the minority
    side of a partition), or this node holds no lease right now."""


class NotLocalPid(ClusterError, ValueError):
    """A global name can only be given to a process of this node (its
    member monitors the holder, to delete the name when it dies)."""


@dataclass(frozen=True)
class ClusterConfig:
    """How a node joins a cluster.  ``info`` is the node record's content
    (endpoint, public key...; JSON-serialisable), ``lease_ttl`` the seconds
    the store keeps the node's record and names after its last renewal."""

    endpoints: tuple[str, ...]
    cluster: str
    node: str
    info: dict[str, Any] = field(default_factory=dict)
    lease_ttl: int = 10
    prefix: str = "/otp"
    #: Connect the nodes found in the store (see :class:`ClusterMember`).
    discover: bool = False

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("a cluster needs at least one store endpoint")
        for what, text in (("cluster", self.cluster), ("node", self.node)):
            if not isinstance(text, str) or not text or "/" in text:
                raise ValueError(f"{what} must be a non-empty str without '/', got {text!r}")
        if isinstance(self.lease_ttl, bool) or not isinstance(self.lease_ttl, int) or self.lease_ttl < 1:
            raise ValueError(f"lease_ttl must be an int >= 1, got {self.lease_ttl!r}")
        json.dumps(self.info)  # refuse what the record could not hold, here

    @property
    def nodes_prefix(self) -> str:
        return f"{self.prefix}/{self.cluster}/nodes/"

    @property
    def names_prefix(self) -> str:
        return f"{self.prefix}/{self.cluster}/names/"

    def node_key(self, node: str) -> str:
        return self.nodes_prefix + node

    def name_key(self, name: str) -> str:
        return self.names_prefix + name


class MemberUp(NamedTuple):
    node: str
    info: dict


class MemberDown(NamedTuple):
    node: str
    reason: str


class NamesLost(NamedTuple):
    names: tuple[str, ...]
    reason: str


class _StoreEvent(NamedTuple):
    """Watcher -> member: one event of the node watch."""

    event: WatchEvent


class _Renew(NamedTuple):
    """The member's keepalive tick."""


# ------------------------------------------------------------------ watcher


def _watch_main(member: Pid, endpoints: tuple[str, ...], prefix: str, start_revision: int) -> None:
    """Forward every event of the watch on ``prefix`` to ``member``; exit
    (abnormally) when the watch ends on its own."""
    events: queue.SimpleQueue[WatchEvent] = queue.SimpleQueue()
    store = EtcdStore(endpoints)
    try:
        try:
            store.watch_prefix(prefix, events.put, start_revision=start_revision, timeout=STORE_TIMEOUT * 5)
        except ClusterStoreError as exc:  # the member tries again later: not a crash
            raise ProcessExit(("watch_failed", str(exc))) from None
        while True:
            # Blocks until an event comes; an exit signal interrupts it.
            event = events.get()
            _api.send(member, _StoreEvent(event))
            if isinstance(event, WatchEnded):
                raise ProcessExit(("watch_ended", str(event.error)))
    finally:
        store.close()


# ------------------------------------------------------------------ member


def _record(value: bytes) -> dict:
    try:
        info = json.loads(value)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


class ClusterMember(Service):
    """The node's member of the cluster (see the module doc)."""

    errors = (OTPError, ValueError, TypeError, LookupError)

    def init(self, config: ClusterConfig) -> None:
        _api.trap_exit(True)
        self.config = config
        self.record = {**config.info, "node": config.node}
        if config.discover:
            self.record.update(_gateway_address(config.node))
        self.store = EtcdStore(config.endpoints)
        self.lease: Lease | None = None
        self.renewed_at = 0.0
        self.names: dict[str, tuple[Pid, Ref]] = {}
        self.holders: dict[Ref, str] = {}
        self.nodes: dict[str, dict] = {}
        self.subscribers: dict[Pid, Ref] = {}
        self.watcher: Pid | None = None
        try:
            self._join()
            self._watch()
        except ClusterStoreError as exc:
            self.store.close()
            raise ClusterUnavailable(f"cannot join cluster {config.cluster!r}: {exc}") from None
        self.tick: TimerRef = self._arm()

    def _arm(self) -> TimerRef:
        """The next renewal, a third of the TTL after this one ended (a
        timer re-armed each time, not an interval: renewals that take long
        while the store is unreachable must not pile up in the mailbox)."""
        return send_after(max(0.2, self.lease_ttl / 3), _api.self_(), _Renew())

    @property
    def lease_ttl(self) -> int:
        return self.lease.ttl if self.lease is not None else self.config.lease_ttl

    # -- joining and the lease

    def _join(self) -> None:
        """Take a lease and write the node's record under it."""
        config = self.config
        lease = self.store.grant_lease(config.lease_ttl, timeout=STORE_TIMEOUT)
        record = json.dumps(self.record).encode()
        self.store.put(config.node_key(config.node), record, lease=lease, timeout=STORE_TIMEOUT)
        self.lease, self.renewed_at = lease, time.monotonic()

    def _renew(self) -> None:
        if self.lease is None:
            try:
                self._join()
            except ClusterStoreError:
                return  # still unreachable: the next tick tries again
            return
        try:
            self.store.keepalive(self.lease, timeout=STORE_TIMEOUT)
        except LeaseExpired:
            self._lose_names("lease_expired")
            self._renew()
            return
        except StoreUnavailable:
            if time.monotonic() - self.renewed_at >= self.lease.ttl:
                self._lose_names("store_unreachable")
            return
        self.renewed_at = time.monotonic()

    def _lose_names(self, reason: str) -> None:
        lost = tuple(sorted(self.names))
        if lost:
            log.error(
                "cluster %r: node %r lost its lease (%s): global names %r are lost",
                self.config.cluster,
                self.config.node,
                reason,
                list(lost),
            )
        for _holder, ref in self.names.values():
            _api.demonitor(ref, flush=True)
        self.names.clear()
        self.holders.clear()
        self.lease = None
        self._tell(NamesLost(lost, reason))

    # -- the node watch

    def _watch(self) -> None:
        snapshot = self.store.get_prefix(self.config.nodes_prefix, timeout=STORE_TIMEOUT)
        seen = {kv.key[len(self.config.nodes_prefix) :]: _record(kv.value) for kv in snapshot.items}
        for node in [n for n in self.nodes if n not in seen]:
            del self.nodes[node]
            self._tell(MemberDown(node, "lease_expired"))
        for node, info in seen.items():
            if self.nodes.get(node) != info:
                self.nodes[node] = info
                self._discovered(node, info)
                self._tell(MemberUp(node, info))
        args = (_api.self_(), self.config.endpoints, self.config.nodes_prefix, snapshot.revision + 1)
        self.watcher = _api.spawn_link(_watch_main, *args)

    def _rewatch(self) -> None:
        """Watch again after the watch ended (the store was unreachable for
        longer than the watch's timeout); while it stays unreachable, try
        again at every tick: a member outlives its store's outages."""
        try:
            self._watch()
        except ClusterStoreError as exc:
            log.warning("cluster %r: cannot watch the nodes now: %s", self.config.cluster, exc)

    def _node_event(self, event: WatchEvent) -> None:
        prefix = self.config.nodes_prefix
        if isinstance(event, PutEvent):
            node, record = event.key[len(prefix) :], _record(event.value)
            if self.nodes.get(node) != record:
                self.nodes[node] = record
                if not record.get("leaving"):  # a leaving node's last word: its deletion follows
                    self._discovered(node, record)
                    self._tell(MemberUp(node, record))
        elif isinstance(event, DeleteEvent):
            node = event.key[len(prefix) :]
            last = self.nodes.pop(node, None)
            if last is not None:
                self._tell(MemberDown(node, "left" if last.get("leaving") else "lease_expired"))

    def _discovered(self, node: str, record: dict) -> None:
        """With ``discover``: make a node seen in the store a peer of this
        node's gateway (its key may connect, its endpoint is where to
        connect), before anyone hears of it."""
        if not self.config.discover or node == self.config.node:
            return
        endpoint, key = record.get("endpoint"), record.get("public_key")
        if not isinstance(endpoint, str) or not isinstance(key, str):
            log.warning(
                "cluster %r: node %r has no endpoint and key in its record: not connected", self.config.cluster, node
            )
            return
        try:
            add_peer(node, endpoint, key)
        except (ValueError, OTPError) as exc:
            log.warning("cluster %r: cannot add node %r as a peer: %s", self.config.cluster, node, exc)

    def _tell(self, event: MemberUp | MemberDown | NamesLost) -> None:
        for pid in self.subscribers:
            _api.send(pid, event)

    # -- operations

    @operation
    def subscribe(self, pid: Pid) -> dict[str, dict]:
        if pid not in self.subscribers:
            self.subscribers[pid] = _api.monitor(pid)
        return dict(self.nodes)

    @operation
    def unsubscribe(self, pid: Pid) -> None:
        ref = self.subscribers.pop(pid, None)
        if ref is not None:
            _api.demonitor(ref, flush=True)

    @operation
    def nodes_seen(self) -> dict[str, dict]:
        return dict(self.nodes)

    @operation
    def config_of(self) -> ClusterConfig:
        return self.config

    @operation
    def register_name(self, name: str, pid: Pid, timeout: float = STORE_TIMEOUT) -> bool:
        _check_name(name)
        if not isinstance(pid, Pid):
            raise TypeError(f"a global name is given to a pid, not {type(pid).__name__}")
        if not _is_local(pid):
            raise NotLocalPid(f"{pid!r} is not a process of this node")
        if self.lease is None:
            raise ClusterUnavailable(f"node {self.config.node!r} holds no lease now")
        if not _api.is_alive(pid):
            return False
        key = self.config.name_key(name)
        try:
            taken = self.store.put_if_absent(key, pickle.dumps(pid, protocol=4), lease=self.lease, timeout=timeout)
        except LeaseExpired:
            self._lose_names("lease_expired")
            raise ClusterUnavailable(f"node {self.config.node!r} lost its lease") from None
        except ClusterStoreError as exc:
            # The put may have been applied with its answer lost: take the
            # name back (if our lease holds it), so that a caller told
            # "unavailable" is never left holding a name nobody watches.
            # Should the store not answer that either, the name goes with
            # the lease.
            self._delete_name(name, timeout=min(timeout, STORE_TIMEOUT))
            raise ClusterUnavailable(f"global name {name!r}: {exc}") from None
        if taken and name not in self.names:
            ref = _api.monitor(pid)
            self.names[name] = (pid, ref)
            self.holders[ref] = name
        return taken

    @operation
    def unregister_name(self, name: str) -> None:
        _check_name(name)
        held = self.names.pop(name, None)
        if held is None:
            return
        self.holders.pop(held[1], None)
        _api.demonitor(held[1], flush=True)
        self._delete_name(name)

    def _delete_name(self, name: str, timeout: float = STORE_TIMEOUT) -> None:
        if self.lease is None:
            return  # gone with the lease already
        try:
            self.store.delete(self.config.name_key(name), lease=self.lease, timeout=timeout)
        except ClusterStoreError as exc:
            # The name stays bound to the lease: it goes when the lease does.
            log.warning("cluster %r: could not delete global name %r now: %s", self.config.cluster, name, exc)

    # -- messages

    def handle_info(self, msg: Any, state: Any) -> NoReply:
        if isinstance(msg, _Renew):
            self._renew()
            if self.watcher is None and self.lease is not None:
                self._rewatch()
            self.tick = self._arm()
        elif isinstance(msg, _StoreEvent):
            self._node_event(msg.event)
        elif isinstance(msg, DOWN):
            name = self.holders.pop(msg.ref, None)
            if name is not None:
                self.names.pop(name, None)
                self._delete_name(name)
            elif self.subscribers.get(msg.pid) == msg.ref:
                del self.subscribers[msg.pid]
        elif isinstance(msg, EXIT) and msg.pid == self.watcher:
            self.watcher = None
            self._rewatch()
        elif isinstance(msg, EXIT):
            raise ProcessExit(msg.reason)  # the parent (or a linked process) ended
        return NoReply(state)

    def terminate(self, reason: Any, state: Any) -> None:
        cancel_timer(self.tick)
        if self.lease is not None:
            # Leave: delete the record first (peers see 'left'), then
            # revoke the lease, which deletes every name bound to it.
            key = self.config.node_key(self.config.node)
            try:
                leaving = json.dumps({**self.record, "leaving": True}).encode()
                self.store.put(key, leaving, lease=self.lease, timeout=STORE_TIMEOUT)
                self.store.revoke_lease(self.lease, timeout=STORE_TIMEOUT)
            except ClusterStoreError as exc:
                log.warning(
                    "cluster %r: node %r left without revoking its lease: %s",
                    self.config.cluster,
                    self.config.node,
                    exc,
                )
        self.store.close()


def _gateway_address(node: str) -> dict[str, str]:
    """What other nodes need to connect to this one: its gateway's endpoint
    and public key.  ValueError unless this node listens under the name
    ``node``."""
    try:
        info = net_kernel_info()
    except NodeError:
        raise ValueError("discover needs a listening node (otp.Node(listen=..., keys=...))") from None
    if info.get("name") != node:
        raise ValueError(f"discover: the cluster's node name {node!r} is not this node's, {info.get('name')!r}")
    return {"endpoint": str(info["endpoint"]), "public_key": str(info["public_key"])}


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"a global name is a non-empty str, not {name!r}")


def _is_local(pid: Pid) -> bool:
    from ._process import current

    return current().node.is_local(pid.node)


# ------------------------------------------------------------------ client


def subscribe(timeout: float = 5.0) -> dict[str, dict]:
    """Receive :class:`MemberUp`, :class:`MemberDown` and :class:`NamesLost`
    from the node's member; returns the nodes it sees now.  Raises
    ``otp.NoProc`` if the node is in no cluster."""
    nodes: dict[str, dict] = ask(MEMBER, "subscribe", _api.self_(), timeout=timeout)
    return nodes


def nodes(timeout: float = 5.0) -> dict[str, dict]:
    """The nodes the member sees in the store now, with their records."""
    seen: dict[str, dict] = ask(MEMBER, "nodes_seen", timeout=timeout)
    return seen


_configs: dict[tuple[int, Pid], ClusterConfig] = {}


def member_config(timeout: float = 5.0) -> ClusterConfig:
    """The member's configuration (asked once per OS process and member);
    ``otp.NoProc`` if the node is in no cluster."""
    member = whereis(MEMBER)
    if member is None:
        raise NoProc(MEMBER)
    key = (os.getpid(), member)
    config = _configs.get(key)
    if config is None:
        config = ask(member, "config_of", timeout=timeout)
        _configs.clear()  # an earlier member's configuration is of no use
        _configs[key] = config
    return config


def decode_holder(kv: KeyValue | None) -> Pid | None:
    """The pid a name key holds (None for no key or a value that is not one)."""
    if kv is None:
        return None
    try:
        pid = pickle.loads(kv.value)
    except Exception:  # noqa: BLE001 - a foreign value under our prefix is no holder
        return None
    return pid if isinstance(pid, Pid) else None
