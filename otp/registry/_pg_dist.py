"""pg across nodes: the process that makes a scope span every connected
node (the distributed half of OTP's pg scope process).

On a node that listens, each pg scope (the node's default scope, served by
the name registry, and each scope of :func:`otp.pg.start_link`) has one of
these beside its registry process: spawned and linked by it, registered
as ``("$pg",)`` (the default scope) or ``("$pg", scope)``.  A node that
does not listen starts none: pg is what it was, local.

Why a process of its own rather than the registry process.  The registry
answers every process of the node on its ROUTER and must never wait; this
process talks to other nodes (a spawn there, sends that may meet a
connection being set up) and to the gateway, which may be restarting.  It
is the registry's client like any other, with one operation of its own
(``pg_remote``: members of other nodes joined or left).  It lives and dies
with its registry process: linked, it dies with it, and the registry exits
when it does (a crash here is a bug, and the scope's supervisor restarts
both, which re-syncs from the peers), as OTP's pg has one process for both.

The protocol is OTP's pg (``pg.erl``), between the processes of one scope:

* on ``nodeup`` (``otp.net_kernel.monitor_nodes``), and for each node
  connected when it starts, it sends :class:`PgDiscover` to the same scope
  on that node: a courier process spawned there (OTP sends to ``{Scope,
  Node}``; here a name resolves on its own node only) finds it by name and
  hands it over; a node without the scope has nobody under the name, and
  the courier ends: that node is ignored;
* on :class:`PgDiscover` it answers with :class:`PgSync` (its local
  memberships) and, if the sender was not a peer yet, monitors it and
  discovers it back;
* on :class:`PgSync` it replaces what it knew of that peer's members
  (monitors see the difference as ``PgJoin``/``PgLeave``);
* each local join and leave (it monitors its own scope) goes to every
  peer as :class:`PgPeerJoin`/:class:`PgPeerLeave`; a member's exit is a
  leave, as the registry reports it;
* on ``nodedown``, or the DOWN of a peer (its scope stopped, or
  ``'noconnection'``), that peer's members leave; after a heal the next
  ``nodeup`` discovers and syncs again.

Messages between two processes keep their order, so a peer's sync comes
before its joins; a join from a process that is not (or no longer) a peer
is ignored, as in OTP: the sync that makes it a peer carries the state.
Eventually consistent: a node learns of a remote change one message after
it happened, and of a lost node at its ``nodedown`` (within
``net_ticktime``).

The gateway.  This process subscribes to node events through the gateway
and monitors it; a restarted gateway has lost the subscription and every
connection (the peers' monitors fire ``'noconnection'``), so when the
gateway's DOWN comes it drops every peer and subscribes again once a
gateway runs.  The node's name registry starts before its gateway, so at
node start the default scope's process meets no gateway either: it tries
again after 10 ms, doubling up to a second, handling its messages
meanwhile (nothing tells a process that a name got registered).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, NamedTuple

from .. import _process
from .._dist import monitor_nodes, nodes
from .._dist_wire import GATEWAY_NAME
from .._errors import OTPError, ProcessExit, Timeout
from .._pid import Pid, Ref
from .._reasons import DOWN, NodeDown, NodeUp
from ._backend import AlreadyRegistered, RegistryDown
from ._events import PgJoin, PgLeave

log = logging.getLogger("otp.pg")

__all__ = ["start_link", "dist_name", "PgDiscover", "PgSync", "PgPeerJoin", "PgPeerLeave"]

#: Seconds between attempts to reach a gateway that is not running, at
#: first and at most.
GATEWAY_RETRY_FIRST = 0.01
GATEWAY_RETRY_MAX = 1.0
#: Seconds to wait for a predecessor to give up the scope's name.
NAME_WAIT = 10.0

Groups = dict[Any, list[Pid]]


class PgDiscover(NamedTuple):
    """``peer``, the same scope's process on another node, wants a sync."""

    peer: Pid


class PgSync(NamedTuple):
    """Every local membership of ``peer``'s node in the scope."""

    peer: Pid
    groups: Groups


class PgPeerJoin(NamedTuple):
    peer: Pid
    group: Any
    pids: list[Pid]


class PgPeerLeave(NamedTuple):
    peer: Pid
    group: Any
    pids: list[Pid]


def dist_name(scope: Any) -> tuple:
    """The name of a scope's distribution process on each node."""
    return ("$pg",) if scope is None else ("$pg", scope)


def start_link(proc: _process.Process, config: dict[str, Any]) -> Pid | None:
    """Called by a registry process (``proc``) that serves a pg scope: its
    distribution process, linked to it, if the node listens; else None.
    ``config``: the registry's (``names``: the node's default scope;
    ``pg_scope``: a scope of :func:`otp.pg.start_link`, named ``name``)."""
    if not proc.node.gateway:
        return None
    if config.get("names"):
        scope = None
    elif config.get("pg_scope"):
        scope = config["name"]
    else:
        return None
    pid = proc.spawn(_main, (proc.pid, scope), {}, link=True)
    assert isinstance(pid, Pid)
    return pid


def _courier(name: tuple, msg: PgDiscover) -> None:
    """Runs on the other node: hand ``msg`` to the scope's process there."""
    from ._names import whereis

    pid = whereis(name)
    if pid is not None:
        _process.send(pid, msg)


def _main(registry: Pid, scope: Any) -> None:
    _ScopeDist(_process.current(), registry, scope).run()


class _Peer:
    __slots__ = ("mref", "groups")

    def __init__(self, mref: Ref) -> None:
        self.mref = mref
        self.groups: Groups = {}


def _diff(old: Groups, new: Groups) -> list[tuple[bool, Any, tuple[Pid, ...]]]:
    """The leaves and joins that turn ``old`` into ``new`` (multisets)."""
    changes: list[tuple[bool, Any, tuple[Pid, ...]]] = []
    for group in dict.fromkeys([*old, *new]):
        before, after = Counter(old.get(group, ())), Counter(new.get(group, ()))
        left = tuple((before - after).elements())
        joined = tuple((after - before).elements())
        if left:
            changes.append((False, group, left))
        if joined:
            changes.append((True, group, joined))
    return changes


class _ScopeDist:
    def __init__(self, proc: _process.Process, registry: Pid, scope: Any) -> None:
        from ._names import registry_client  # not at import: _names imports the registry server, which imports this

        self.proc = proc
        self.me = proc.pid
        self.node = proc.node.name
        self.scope = scope
        self.registry_ref = proc.monitor(registry)
        self.client = registry_client(None if scope is None else registry)
        self._register(dist_name(scope))
        self.scope_ref, groups = self.client.request("pg_monitor_scope", self.me)
        self.local: Groups = {}
        for group, members in groups.items():
            mine = self._local(members)
            if mine:
                self.local[group] = mine
        self.peers: dict[Pid, _Peer] = {}
        self.gateway_ref: Ref | None = None
        self.retry = GATEWAY_RETRY_FIRST
        self.retry_at = 0.0

    def _register(self, name: tuple) -> None:
        """Take the scope's name; a predecessor that still holds it (the
        scope restarted, its old process is on its way out) is waited for."""
        from ._names import register

        while True:
            try:
                register(name)
                return
            except AlreadyRegistered as exc:
                holder = exc.existing_pid
            ref = self.proc.monitor(holder)

            def gone(m: object, ref: Ref = ref) -> bool:
                return isinstance(m, DOWN) and m.ref == ref

            try:
                self.proc.receive(NAME_WAIT, gone)
            except Timeout:
                raise ProcessExit(("pg_name_taken", name, holder)) from None

    def _local(self, pids: Iterable[Pid]) -> list[Pid]:
        node = self.node
        return [p for p in pids if p.node == node]

    # ------------------------------------------------------------ loop

    def run(self) -> None:
        proc = self.proc
        self._arm()
        while True:
            timeout = None if self.gateway_ref is not None else max(0.0, self.retry_at - time.monotonic())
            try:
                msg = proc.receive(timeout)
            except Timeout:
                self._arm()
                continue
            try:
                if self._handle(msg):
                    return
            except RegistryDown:
                return  # the registry died under a request: this process ends with it

    def _arm(self) -> None:
        """Watch the gateway and subscribe to node events; discover the
        scope on every node connected now."""
        proc = self.proc
        from ._names import whereis

        gateway = whereis(GATEWAY_NAME)
        if gateway is None:
            self._later()
            return
        ref = proc.monitor(gateway)
        try:
            monitor_nodes(True)
            connected = nodes()
        except OTPError:  # the gateway is stopping or restarting: its DOWN follows
            proc.demonitor(ref, flush=True)
            self._later()
            return
        self.gateway_ref = ref
        self.retry = GATEWAY_RETRY_FIRST
        for node in connected:
            self._discover(node)

    def _later(self) -> None:
        self.retry_at = time.monotonic() + self.retry
        self.retry = min(self.retry * 2, GATEWAY_RETRY_MAX)

    def _handle(self, msg: object) -> bool:
        """Act on ``msg``; True when this process is done."""
        kind = type(msg)
        if kind is PgJoin or kind is PgLeave:
            if msg.ref == self.scope_ref:  # type: ignore[attr-defined]
                self._local_change(msg)  # type: ignore[arg-type]
        elif kind is PgPeerJoin:
            self._peer_join(msg)  # type: ignore[arg-type]
        elif kind is PgPeerLeave:
            self._peer_leave(msg)  # type: ignore[arg-type]
        elif kind is PgSync:
            self._sync(msg)  # type: ignore[arg-type]
        elif kind is PgDiscover:
            self._discovered(msg.peer)  # type: ignore[attr-defined]
        elif kind is NodeUp:
            self._discover(msg.node)  # type: ignore[attr-defined]
        elif kind is NodeDown:
            for peer in [p for p in self.peers if p.node == msg.node]:  # type: ignore[attr-defined]
                self._drop(peer)
        elif isinstance(msg, DOWN):
            return self._down(msg)
        return False

    def _down(self, msg: DOWN) -> bool:
        if msg.ref == self.registry_ref:
            return True
        if msg.ref == self.gateway_ref:
            self.gateway_ref = None
            for peer in list(self.peers):
                self._drop(peer)
            self.retry = GATEWAY_RETRY_FIRST
            self._later()
            return False
        state = self.peers.get(msg.pid)
        if state is not None and state.mref == msg.ref:
            self._drop(msg.pid)
        return False

    # ------------------------------------------------------------ local changes

    def _local_change(self, msg: PgJoin | PgLeave) -> None:
        pids = self._local(msg.pids)
        if not pids:
            return  # members of other nodes, which this process reported itself
        group = msg.group
        if type(msg) is PgJoin:
            self.local.setdefault(group, []).extend(pids)
            out: PgPeerJoin | PgPeerLeave = PgPeerJoin(self.me, group, pids)
        else:
            members = self.local.get(group, [])
            for pid in pids:
                if pid in members:
                    members.remove(pid)
            if not members:
                self.local.pop(group, None)
            out = PgPeerLeave(self.me, group, pids)
        send = self.proc.send
        for peer in self.peers:
            send(peer, out)

    # ------------------------------------------------------------ peers

    def _discover(self, node: str) -> None:
        try:
            self.proc.spawn(_courier, (dist_name(self.scope), PgDiscover(self.me)), {}, node=node)
        except OTPError as exc:  # that node refused the spawn: its nodeup will come again after a heal
            log.warning("pg scope %r: cannot discover node %s: %s", self.scope, node, exc)

    def _add_peer(self, peer: Pid) -> _Peer:
        for other in [p for p in self.peers if p.node == peer.node]:  # its predecessor there
            self._drop(other)
        state = self.peers[peer] = _Peer(self.proc.monitor(peer))
        return state

    def _discovered(self, peer: Pid) -> None:
        if peer.node == self.node:
            return
        self.proc.send(peer, PgSync(self.me, {g: list(m) for g, m in self.local.items()}))
        if peer not in self.peers:
            self._add_peer(peer)
            self.proc.send(peer, PgDiscover(self.me))

    def _sync(self, msg: PgSync) -> None:
        peer = msg.peer
        if peer.node == self.node:
            return
        state = self.peers.get(peer) or self._add_peer(peer)
        node = peer.node
        new = {g: [p for p in m if p.node == node] for g, m in msg.groups.items()}
        new = {g: m for g, m in new.items() if m}
        changes = _diff(state.groups, new)
        state.groups = new
        self._apply(changes)

    def _peer_join(self, msg: PgPeerJoin) -> None:
        state = self.peers.get(msg.peer)
        if state is None:
            return
        pids = [p for p in msg.pids if p.node == msg.peer.node]
        if pids:
            state.groups.setdefault(msg.group, []).extend(pids)
            self._apply([(True, msg.group, tuple(pids))])

    def _peer_leave(self, msg: PgPeerLeave) -> None:
        state = self.peers.get(msg.peer)
        if state is None:
            return
        members = state.groups.get(msg.group, [])
        left = []
        for pid in msg.pids:
            if pid in members:
                members.remove(pid)
                left.append(pid)
        if not members:
            state.groups.pop(msg.group, None)
        if left:
            self._apply([(False, msg.group, tuple(left))])

    def _drop(self, peer: Pid) -> None:
        state = self.peers.pop(peer)
        self.proc.demonitor(state.mref, flush=True)
        self._apply([(False, g, tuple(m)) for g, m in state.groups.items()])

    def _apply(self, changes: list[tuple[bool, Any, tuple[Pid, ...]]]) -> None:
        if changes:
            self.client.request("pg_remote", changes)
