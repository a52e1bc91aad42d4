"""What local processes ask of the gateway (``$gen_call`` requests in its
mailbox, see :mod:`otp._dist` for the public functions), node monitors,
spawns and liveness questions across nodes.

Requests (``from`` is the caller's ``(pid, ref)``):

* ``("nodes",)``: the names of the nodes that are up;
* ``("connect", name)``: True once ``name`` is up, False if it cannot be
  reached (answered when the set-up ends);
* ``("disconnect", name)``: count ``name`` down now (``'disconnect'``);
* ``("monitor_node", name, flag)``: ``otp.monitor_node``: one
  :class:`~otp.NodeDown` per call when ``name`` goes down, or at once if it
  cannot be reached; ``flag`` False removes them all;
* ``("monitor_nodes", flag)``: :class:`~otp.NodeUp` and
  :class:`~otp.NodeDown` of every node while subscribed;
* ``("spawn", node, link, ref, module, path, blob)``: spawn on ``node`` with
  the caller as parent (see ``LifecycleMixin._spawn_remote``);
* ``("alive", pid)``: is this process of another node alive?
* ``("whereis", node, name)``: ``("ok", pid or None)``, the process
  holding ``name`` on ``node`` as that node says, or ``("noconnection",
  None)`` if it cannot be reached;
* ``("info",)``: a dict about the gateway (its endpoint, key, counters);
* ``("add_peer", name, endpoint, public_key)``: a new member (what a cluster
  store will do on its own).

The gateway monitors every process subscribed to node events and drops its
subscriptions when it dies.
"""

from __future__ import annotations

import itertools
import logging
import pickle
from typing import TYPE_CHECKING, Any

from . import _process
from ._dist_wire import (
    AliveReply,
    AliveRequest,
    NodeAddress,
    SpawnReply,
    SpawnRequest,
    WhereisReply,
    WhereisRequest,
)
from ._errors import ProcessExit
from ._gateway_links import Relations
from ._pid import Pid, Ref
from ._reasons import DOWN, EXIT, NodeDown, NodeUp

if TYPE_CHECKING:
    from ._gateway_conns import Conn

log = logging.getLogger("otp.dist")

__all__ = ["RequestsMixin"]


class RequestsMixin:
    """Requests of :class:`otp._gateway.Gateway`."""

    proc: _process.Process
    name: str
    creation: int
    endpoint: str
    keys: Any
    ticktime: float
    peers: dict[str, NodeAddress]
    allowed: dict[bytes, str]
    conns: dict[str, Conn]
    relations: Relations
    refused: int
    unauthenticated_dropped: int
    max_silence: dict[str, float]

    def _init_requests(self) -> None:
        self.node_monitors: dict[str, dict[int, tuple[Pid, int]]] = {}  # node -> uid -> (pid, count)
        self.all_monitors: dict[int, Pid] = {}
        self.sub_refs: dict[int, Ref] = {}  # subscriber uid -> our monitor on it
        self.pending: dict[int, tuple[str, str, tuple[Pid, Any], Any]] = {}  # req -> (kind, node, from, extra)
        self._req_ids = itertools.count(1)
        self.names_unknown = 0  # frames for names of this node nobody held

    # ------------------------------------------------------------ mailbox

    def _mailbox(self, parent: Pid) -> None:
        mailbox = self.proc.mailbox
        while mailbox:
            msg = mailbox.popleft()
            if type(msg) is tuple and len(msg) == 3 and msg[0] == "$gen_call":
                from_, request = msg[1], msg[2]
                try:
                    self._request(from_, request)
                except Exception as exc:
                    log.exception("%s: request %r failed", self.name, request)
                    self.proc.send_reply(from_[0], from_[1], ("error", repr(exc)))
            elif isinstance(msg, DOWN):
                self._unsubscribe(msg.pid)
            elif isinstance(msg, EXIT) and msg.pid == parent:
                raise ProcessExit(msg.reason)

    def _reply(self, from_: tuple[Pid, Any], value: object) -> None:
        self.proc.send_reply(from_[0], from_[1], value)

    def _request(self, from_: tuple[Pid, Any], request: Any) -> None:
        kind = request[0] if type(request) is tuple and request else None
        caller = from_[0]
        if kind == "nodes":
            self._reply(from_, sorted(name for name, conn in self.conns.items() if conn.up))
        elif kind == "connect":
            conn = self._ensure_conn(request[1])
            if conn is None:
                self._reply(from_, False)
            elif conn.up:
                self._reply(from_, True)
            else:
                conn.waiters.append(from_)
        elif kind == "disconnect":
            up = request[1] in self.conns
            if up:
                self._node_down(request[1], "disconnect")
            self._reply(from_, up)
        elif kind == "monitor_node":
            self._monitor_node(caller, request[1], bool(request[2]))
            self._reply(from_, True)
        elif kind == "monitor_nodes":
            if request[1]:
                self._subscribe(caller)
                self.all_monitors[caller.uid] = caller
            else:
                self.all_monitors.pop(caller.uid, None)
                self._maybe_unsubscribe(caller)
            self._reply(from_, True)
        elif kind == "spawn":
            self._spawn_on(from_, *request[1:])
        elif kind == "alive":
            pid = request[1]
            req = next(self._req_ids)
            if self._control_to(pid.node, AliveRequest(req, pid)):
                self.pending[req] = ("alive", pid.node, from_, None)
            else:
                self._reply(from_, False)
        elif kind == "whereis":
            _, node, name = request
            req = next(self._req_ids)
            if self._control_to(node, WhereisRequest(req, name)):
                self.pending[req] = ("whereis", node, from_, None)
            else:
                self._reply(from_, ("noconnection", None))
        elif kind == "info":
            self._reply(from_, self._info())
        elif kind == "add_peer":
            _, name, endpoint, key = request
            addr = NodeAddress.of((endpoint, key))
            self.peers[name] = addr
            self.allowed[addr.public_key] = name
            self._reply(from_, True)
        else:
            self._reply(from_, ("error", f"unknown request {kind!r}"))

    def _info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "creation": self.creation,
            "endpoint": self.endpoint,
            "public_key": self.keys.public.decode(),
            "net_ticktime": self.ticktime,
            "nodes": sorted(n for n, c in self.conns.items() if c.up),
            "connecting": sorted(n for n, c in self.conns.items() if not c.up),
            "refused": self.refused,
            "unauthenticated_dropped": self.unauthenticated_dropped,
            "names_unknown": self.names_unknown,
            "relations": len(self.relations.ends),
            "max_silence": dict(self.max_silence),
        }

    # ------------------------------------------------------ node monitors

    def _subscribe(self, pid: Pid) -> None:
        if pid.uid not in self.sub_refs:
            self.sub_refs[pid.uid] = self.proc.monitor(pid)

    def _maybe_unsubscribe(self, pid: Pid) -> None:
        if pid.uid in self.all_monitors or any(pid.uid in m for m in self.node_monitors.values()):
            return
        ref = self.sub_refs.pop(pid.uid, None)
        if ref is not None:
            self.proc.demonitor(ref)

    def _unsubscribe(self, pid: Pid) -> None:
        self.sub_refs.pop(pid.uid, None)
        self.all_monitors.pop(pid.uid, None)
        for node in list(self.node_monitors):
            subs = self.node_monitors[node]
            subs.pop(pid.uid, None)
            if not subs:
                del self.node_monitors[node]

    def _monitor_node(self, pid: Pid, node: str, flag: bool) -> None:
        if not flag:
            subs = self.node_monitors.get(node)
            if subs is not None:
                subs.pop(pid.uid, None)
                if not subs:
                    del self.node_monitors[node]
            self._maybe_unsubscribe(pid)
            return
        conn = self._ensure_conn(node)
        if conn is None:
            self.proc.send(pid, NodeDown(node, "connect_failed"))
            return
        subs = self.node_monitors.setdefault(node, {})
        _, count = subs.get(pid.uid, (pid, 0))
        subs[pid.uid] = (pid, count + 1)
        self._subscribe(pid)

    def _node_subscribers(self, node: str, up: bool, reason: object) -> None:
        send = self.proc.send
        if up:
            for pid in list(self.all_monitors.values()):
                send(pid, NodeUp(node))
            return
        down = NodeDown(node, reason)
        if reason != "connect_failed":
            for pid in list(self.all_monitors.values()):
                send(pid, down)
        for pid, count in list(self.node_monitors.pop(node, {}).values()):
            for _ in range(count):
                send(pid, down)
            self._maybe_unsubscribe(pid)

    # ------------------------------------------------- spawns, liveness

    def _spawn_on(
        self,
        from_: tuple[Pid, Any],
        node: str,
        link: bool,
        ref: Ref | None,
        module: str | None,
        path: list[str],
        blob: bytes,
    ) -> None:
        req = next(self._req_ids)
        if not self._control_to(node, SpawnRequest(req, from_[0], link, ref, module, path, blob)):
            self._reply(from_, ("noconnection", None))
            return
        self.pending[req] = ("spawn", node, from_, (link, ref))

    def _spawn_reply(self, record: SpawnReply) -> None:
        pending = self.pending.pop(record.req, None)
        if pending is None or pending[0] != "spawn":
            return
        _, node, from_, (link, ref) = pending
        if record.pid is None or record.pid.node != node:
            self._reply(from_, ("error", record.error or "no pid"))
            return
        self.relations.spawned(from_[0], record.pid, link, ref, parent_is_local=True)
        self._reply(from_, ("ok", record.pid))

    def _spawn_for(self, node: str, record: SpawnRequest) -> None:
        """A spawn asked by a process of ``node``: the new process is ours."""

        def on_register(pid: Pid) -> None:
            self.relations.spawned(record.parent, pid, record.link, record.ref, parent_is_local=False)

        try:
            pid = self.proc.spawn_for(
                record.parent, record.blob, record.link, record.ref, record.module, record.path, on_register
            )
        except Exception as exc:
            self._control_to(node, SpawnReply(record.req, None, f"{type(exc).__name__}: {exc}"))
            return
        self._control_to(node, SpawnReply(record.req, pid, None))

    def _control(self, node: str, body: bytes) -> None:
        """A control record from ``node``: a request of its processes (a
        spawn, a liveness or name question), answered with a record back,
        or the answer to one of ours."""
        record = pickle.loads(body)
        if isinstance(record, SpawnRequest):
            if record.parent.node == node:
                self._spawn_for(node, record)
        elif isinstance(record, SpawnReply):
            self._spawn_reply(record)
        elif isinstance(record, AliveRequest):
            pid = record.pid
            alive = pid.node == self.name and self.proc.is_alive(pid)
            self._control_to(node, AliveReply(record.req, alive))
        elif isinstance(record, AliveReply):
            self._alive_reply(record)
        elif isinstance(record, WhereisRequest):
            self._control_to(node, WhereisReply(record.req, self._whereis(record.name)))
        elif isinstance(record, WhereisReply):
            self._whereis_reply(record)

    def _alive_reply(self, record: AliveReply) -> None:
        pending = self.pending.pop(record.req, None)
        if pending is not None and pending[0] == "alive":
            self._reply(pending[2], bool(record.alive))

    def _whereis_reply(self, record: WhereisReply) -> None:
        pending = self.pending.pop(record.req, None)
        if pending is not None and pending[0] == "whereis":
            pid = record.pid
            self._reply(pending[2], ("ok", pid if type(pid) is Pid and pid.node == pending[1] else None))

    def _node_down_requests(self, node: str) -> None:
        """Answer what waited on ``node``: spawns and name lookups get
        'noconnection', liveness False."""
        for req, (kind, where, from_, _) in list(self.pending.items()):
            if where == node:
                del self.pending[req]
                self._reply(from_, False if kind == "alive" else ("noconnection", None))

    # Provided by the other parts of the gateway.
    def _ensure_conn(self, name: str) -> Conn | None:
        raise NotImplementedError

    def _node_down(self, name: str, reason: object) -> None:
        raise NotImplementedError

    def _control_to(self, node: str, record: object) -> bool:
        raise NotImplementedError

    def _whereis(self, name: object) -> Pid | None:
        raise NotImplementedError
