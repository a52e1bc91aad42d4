"""Talking to a registry: requests through its ROUTER, reads from a replica.

Requests.  Each process keeps one DEALER per registry.  A request waits for
its reply *and* for the registry's death (the registry's pid comes back with
every reply and is watched): if the registry dies the request is sent again
on a fresh connection, which the restarted registry (same endpoint) answers;
the caller sees an error only when ``timeout`` runs out.

Replica.  A process that reads often keeps a copy of the registry's table:
it subscribes to the registry's PUB socket, proves the subscription is live
(a ``sync`` token published by the registry comes back on it), then takes a
snapshot tagged with the version number of the last change and applies the
published changes that follow, in order.  A gap in version numbers (a
message dropped at a high-water mark, a restarted registry) triggers a new
snapshot.  A read drains pending changes first (one ``zmq.EVENTS`` check
when there are none), so the replica is as fresh as the messages that have
reached this process.  A pid this process has itself seen die is never
returned, even before the registry's change arrives.
"""

from __future__ import annotations

import itertools
import pickle
import time
from typing import Any

import zmq

from .. import _process
from .._errors import Timeout
from .._pid import Pid, new_uid

__all__ = ["RegistryClient", "Replica", "DEFAULT_TIMEOUT"]

#: Seconds a registry request may take (OTP's call default).
DEFAULT_TIMEOUT = 5.0
#: Lookups through the ROUTER before a process sets up a replica: a process
#: that looks up once pays one round trip (about 0.2 ms), not the replica's
#: setup (about 1 ms).
REPLICA_AFTER = 8
#: Seconds a replica answers without looking for changes: checking the
#: change feed costs about 3 us (a socket option read), the table read 0.2 us.
#: Changes by *other* processes show after at most this long plus their
#: delivery; this process's own changes show at once (read-your-writes: a
#: read waits until the replica has the version its write produced).
FRESHNESS = 0.001


class RegistryClient:
    """One process's connection to one registry."""

    def __init__(self, request_ep: str, publish_ep: str, registry_pid: Pid | None = None) -> None:
        self.proc = _process.current()
        self.request_ep = request_ep
        self.publish_ep = publish_ep
        self.registry_pid = registry_pid
        self.dealer = None
        self.ids = itertools.count(1)
        self.lookups = 0
        self.replica: Replica | None = None
        self.seen_version = 0  # version after this process's last request

    def _connect(self) -> None:
        if self.dealer is not None:
            self.dealer.close(linger=0)
        self.dealer = self.proc.ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.setsockopt(zmq.RECONNECT_IVL, 10)
        self.dealer.connect(self.request_ep)

    def _registry_dead(self) -> bool:
        pid = self.registry_pid
        if pid is None:
            return False
        peer = self.proc.call_peer(pid)
        return peer.dead is not None

    def request(self, op: str, *args: Any, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        """Send one request; return its value or raise its error."""
        return self.request_many([(op, args)], timeout=timeout)[0]

    def request_many(self, requests: list, timeout: float | None = DEFAULT_TIMEOUT) -> list:
        """Send ``[(op, args), ...]`` at once (pipelined on the one
        connection) and return their values in order; raises the first
        request's error once every answer is in.  A batch costs about one
        round trip plus the server's work, not one round trip each."""
        proc = self.proc
        if self.dealer is None:
            self._connect()
        frames = {}
        for i, (op, args) in enumerate(requests):
            req_id = next(self.ids)
            frames[req_id] = (i, pickle.dumps((req_id, op, tuple(args)), 5))
        deadline = None if timeout is None else time.monotonic() + timeout
        for _, frame in frames.values():
            self.dealer.send(frame)
        results: list = [None] * len(requests)
        errors: list = []
        pending = set(frames)
        while pending:
            if self._registry_dead():
                # Our connection went with it; the supervisor restarts it on
                # the same endpoint.  Ask again on a fresh connection.
                self.registry_pid = None
                self._connect()
                for req_id in sorted(pending):
                    self.dealer.send(frames[req_id][1])
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                ops = sorted({requests[frames[r][0]][0] for r in pending})
                raise Timeout(f"no answer from the registry within {timeout}s ({', '.join(ops)})")
            if not proc.poll_sockets([self.dealer], remaining):
                continue
            while pending:
                try:
                    reply = pickle.loads(self.dealer.recv(zmq.NOBLOCK))
                except zmq.Again:
                    break
                if reply[3] != self.registry_pid:
                    self.registry_pid = reply[3]
                    proc.call_peer(reply[3])  # watched from now on
                if reply[0] not in pending:
                    continue  # the answer to a request that was resent
                pending.discard(reply[0])
                if reply[4] > self.seen_version:
                    self.seen_version = reply[4]
                i = frames[reply[0]][0]
                if reply[1] == "ok":
                    results[i] = reply[2]
                else:
                    errors.append((i, reply[2]))
        if errors:
            raise min(errors, key=lambda e: e[0])[1]
        return results

    # ------------------------------------------------------------ reads

    def lookup_cached(self, key: Any) -> list | None:
        """``[(pid, value)]`` from the replica, setting it up after a few
        lookups; None when there is no replica (yet)."""
        if self.replica is None:
            self.lookups += 1
            if self.lookups <= REPLICA_AFTER:
                return None
            self.replica = Replica(self)
        return self.replica.lookup(key)

    def close(self) -> None:
        if self.replica is not None:
            self.replica.close()
            self.replica = None
        if self.dealer is not None:
            self.dealer.close(linger=0)
            self.dealer = None


class Replica:
    """A copy of a registry's keys and groups, kept fresh by its changes."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self.proc = client.proc
        self.sub = self.proc.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, 100_000)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(client.publish_ep)
        self.registry_pid = None
        self._resync()

    def _resync(self) -> None:
        """Subscription proven live, then a snapshot, then the changes after it."""
        client = self.client
        token = new_uid()
        deadline = time.monotonic() + DEFAULT_TIMEOUT
        synced = False
        while not synced:
            if time.monotonic() > deadline:
                raise Timeout("the registry's change feed did not connect")
            client.request("sync", token)
            wait_until = time.monotonic() + 0.05  # a slow-joining subscription misses the token: ask again
            while not synced and time.monotonic() < wait_until:
                if self.proc.poll_sockets([self.sub], max(0.0, wait_until - time.monotonic())):
                    while self.sub.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                        msg = pickle.loads(self.sub.recv())
                        if msg[0] is None and msg[2] == token:
                            synced = True
        version, entries, groups, mode = client.request("snapshot")
        self.duplicate = mode == "duplicate"
        self.registry_pid = client.registry_pid
        self.version = version
        self.table: dict[Any, list] = {}
        for key, pid, value, meta in entries:
            self.table.setdefault(key, []).append((pid, value, meta))
        self.groups: dict[Any, list] = {g: list(m) for g, m in groups.items()}
        self.fresh_until = 0.0
        self._drain()

    def _drain(self) -> None:
        sub = self.sub
        while sub.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            msg = pickle.loads(sub.recv())
            version = msg[0]
            if version is None or version <= self.version:
                continue  # a sync token, or already in the snapshot
            if version != self.version + 1:
                self._resync()  # a gap: changes were lost
                return
            self.version = version
            self._apply(msg[1:])

    def _apply(self, change: tuple) -> None:
        op = change[0]
        if op == "reg":
            _, key, pid, value, meta = change
            rows = self.table.get(key, []) if self.duplicate else [r for r in self.table.get(key, []) if r[0] != pid]
            rows.append((pid, value, meta))
            self.table[key] = rows
        elif op == "unreg":
            _, key, pid = change
            rows = [r for r in self.table.get(key, []) if r[0] != pid]
            if rows:
                self.table[key] = rows
            else:
                self.table.pop(key, None)
        elif op == "value":
            _, key, pid, value = change
            self.table[key] = [(p, value if p == pid else v, m) for p, v, m in self.table.get(key, [])]
        elif op == "meta":
            _, key, pid, meta = change
            self.table[key] = [(p, v, meta if p == pid else m) for p, v, m in self.table.get(key, [])]
        elif op == "join":
            self.groups.setdefault(change[1], []).append(change[2])
        elif op in ("leave", "leave_all"):
            _, group, pid = change
            members = self.groups.get(group, [])
            if op == "leave":
                if pid in members:
                    members.remove(pid)
            else:
                members[:] = [m for m in members if m != pid]
            if not members:
                self.groups.pop(group, None)

    def refresh(self) -> None:
        """Apply the changes that have arrived; wait for the ones this
        process's own writes produced."""
        self._drain()
        client = self.client
        if client.registry_pid != self.registry_pid and client.registry_pid is not None:
            self._resync()  # the registry restarted
        deadline = time.monotonic() + DEFAULT_TIMEOUT
        while self.version < client.seen_version:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.proc.poll_sockets([self.sub], remaining):
                self._resync()
                break
            self._drain()
        self.fresh_until = time.monotonic() + FRESHNESS

    def lookup(self, key: Any) -> list:
        if self.version < self.client.seen_version or time.monotonic() >= self.fresh_until:
            self.refresh()
        seen_dead = self.proc.seen_dead
        return [(p, v) for p, v, _ in self.table.get(key, ()) if not seen_dead(p)]

    def members(self, group: Any) -> list:
        if self.version < self.client.seen_version or time.monotonic() >= self.fresh_until:
            self.refresh()
        seen_dead = self.proc.seen_dead
        return [p for p in self.groups.get(group, ()) if not seen_dead(p)]

    def close(self) -> None:
        self.sub.close(linger=0)
