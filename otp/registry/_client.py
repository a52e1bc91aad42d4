"""Talking to a registry: requests through its ROUTER, reads from a replica.

Requests.  Each process keeps one DEALER per registry.  A request is
encoded before anything is sent (an unpicklable argument raises
``otp.EncodeError`` in the caller; under the forkserver start method what
names a class of the script's ``__main__`` travels by value, as in
messages), then waits for its reply *and* for the registry's death: the
registry's pid comes back with every reply and is watched.

The registry dies while requests are in flight: they fail at once with
``RegistryDown`` (its ``reason`` is the registry's exit reason), reads and
writes alike, and are never sent again.  This is OTP's ``gen_server:call``
to a server that dies: the caller cannot know whether its request was
applied (the server may have died after the write, before the reply).  A
resend would be worse twice over: a write applied by the dead registry
(and kept by the sqlite backend) would be applied again, or, after a
``Timeout``, applied late by the successor (a ghost registration its caller
was told had failed); and a request that *killed* the registry would kill
its successor too, until the supervisor gave up and the node lost name
service.  A request made once the death is known (its notice has reached
this process before the request is sent) is not in flight: it goes to the
successor, which the supervisor starts on the same endpoint (the node's
name registry); a keyed registry's endpoint dies with it, so a request to
a dead keyed registry raises ``NoProc``.  A process that has never had an answer does
not know the registry's pid yet: if the registry dies under its very first
request, it sees ``Timeout``.  A ``Timeout`` on a write means the same as
``RegistryDown``: the write may still be applied.

Timeouts: ``None`` or ``math.inf`` wait forever; ``nan`` or a negative
timeout raises ``ValueError`` before anything is sent (``otp._timeouts``).

Replica.  A process that reads often keeps a copy of the registry's table:
it subscribes to the registry's PUB socket, proves the subscription is live
(a ``sync`` token published by the registry comes back on it), then takes a
snapshot tagged with the version number of the last change and applies the
published changes that follow, in order.  A gap in version numbers (a
message dropped at a high-water mark) triggers a new snapshot, and so does
the registry's death: its successor numbers its changes from 0 again.  A read drains pending changes first (one ``zmq.EVENTS`` check
when there are none), so the replica is as fresh as the messages that have
reached this process.  A pid this process has itself seen die is never
returned, even before the registry's change arrives.

Stamp.  A replica knows the generation and version of the registry state
it holds (:meth:`Replica.stamp`); while the registry's stamp file
(:mod:`._protocol`) holds the same word, the registry has made no change
the replica lacks, and a reader may answer from the replica without
looking at its socket or the clock (:func:`otp.whereis` does, see
:mod:`._names`).
"""

from __future__ import annotations

import itertools
import pickle
import time
from typing import Any, NamedTuple

import zmq

from .. import _process
from .._errors import NoProc, Timeout
from .._oslib import fd_readable
from .._pid import Pid, new_uid
from .._timeouts import check_timeout
from ._backend import RegistryDown
from ._protocol import (
    VERSION_BITS,
    Change,
    EntryAdded,
    EntryRemoved,
    Joined,
    Left,
    LeftAll,
    MetadataUpdated,
    Snapshot,
    StampFile,
    SyncToken,
    ValueUpdated,
    decode_reply,
    encode_request,
    stamp_of,
    stamp_path,
)

__all__ = ["RegistryClient", "Replica", "Holder", "DEFAULT_TIMEOUT"]

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


#: Builds a record from a tuple of its fields without the generated ``__new__``.
_record = tuple.__new__
#: ``zmq.NOBLOCK`` as a plain int: an enum costs a microsecond per call.
_NOBLOCK = int(zmq.NOBLOCK)


class _Sent(NamedTuple):
    """One request of a batch, by request id."""

    position: int  # in the batch
    op: str
    frame: bytes


class Holder(NamedTuple):
    """A replica's row: one holder of a key."""

    pid: Pid
    value: Any
    metadata: dict[str, Any]


class RegistryClient:
    """One process's connection to one registry.

    Given ``registry_pid``, the client talks to that process only (a keyed
    registry, whose endpoint is named after it); without, to whichever
    process serves the endpoint (the node's name registry, restarted in
    place by its supervisor)."""

    def __init__(self, request_ep: str, publish_ep: str, registry_pid: Pid | None = None) -> None:
        self.proc = _process.current()
        self.request_ep = request_ep
        self.publish_ep = publish_ep
        self.restarts_in_place = registry_pid is None
        self._follow(registry_pid)
        # Like Process.send: under forkserver nobody else has this __main__.
        self.main_by_value = self.proc.node.start_method == "forkserver"
        self.dealer: zmq.Socket[bytes] | None = None
        self.used = False  # a request went out since the last idle look
        self.in_flight = False  # a request waits for its answer
        self._idle_watched = False
        self.ids = itertools.count(1)
        self.lookups = 0
        self.replica: Replica | None = None
        self.seen_version = 0  # version after this process's last request
        self._stamp: StampFile | None = None

    def _connect(self) -> zmq.Socket[bytes]:
        if self.dealer is not None:
            self.dealer.close(linger=0)
        dealer = self.dealer = self.proc.ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.RECONNECT_IVL, 10)
        dealer.connect(self.request_ep)
        if not self._idle_watched:
            self._idle_watched = True
            self.proc.on_idle(self._close_if_idle)
        return dealer

    def _close_if_idle(self, now: float) -> bool:
        """Idle closer (``Process.on_idle``): the DEALER holds a descriptor in
        the registry, which thousands of processes that once looked a name up
        would exhaust; close it when no request used it since the last look
        (the next request connects again, about 0.2 ms).  Never under a
        request: the closer runs inside the request's own wait."""
        if self.dealer is None:
            self._idle_watched = False
            return False
        if self.in_flight or self.used:
            self.used = False
            return True
        self.dealer.close(linger=0)
        self.dealer = None
        self._idle_watched = False
        return False

    def _follow(self, pid: Pid | None) -> None:
        """Talk to ``pid`` (None: whoever serves the endpoint) and watch it."""
        self.registry_pid = pid
        self._peer = None if pid is None else self.proc.call_peer(pid, pin=True)

    def _registry_dead(self) -> bool:
        """True if the registry this client last heard from has exited."""
        return self.registry_pid is not None and self.is_dead(self.registry_pid)

    def is_dead(self, pid: Pid) -> bool:
        """True if ``pid`` (a registry this client has heard from) has
        exited: a notice of its death is in (the client's own, or a DOWN or
        EXIT this process took), or is waiting to be taken in and its pidfd
        says so.  With nothing waiting, a death is so recent that it
        is concurrent with whatever the caller does next, and the pidfd
        check (a poll under the signal lock) is skipped: every request pays
        for this check."""
        peer = self._peer if self._peer is not None and pid == self.registry_pid else self.proc.call_peer(pid)
        if peer.dead is not None or pid.uid in self.proc.dead_seen:  # a DOWN or EXIT of it came first
            return True
        sig = self.proc.sig
        if not sig.inbox:
            return False
        with sig.lock:
            w = sig.watches.get(pid.uid)
            return w is None or fd_readable(w.fd)

    def request(self, op: str, *args: Any, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        """Send one request; return its value or raise its error."""
        return self.request_many([(op, args)], timeout=timeout)[0]

    def request_many(self, requests: list, timeout: float | None = DEFAULT_TIMEOUT) -> list:
        """Send ``[(op, args), ...]`` at once (pipelined on the one
        connection) and return their values in order; raises the first
        request's error once every answer is in.  A batch costs about one
        round trip plus the server's work, not one round trip each.

        Raises ``EncodeError`` (nothing sent), ``NoProc`` (a keyed registry
        known dead), ``RegistryDown`` (the registry died with requests in
        flight: see the module doc) or ``Timeout``."""
        timeout = check_timeout(timeout)
        batch = self._encode(requests)
        dealer = self._ready()
        deadline = None if timeout is None else time.monotonic() + timeout
        for sent in batch.values():
            dealer.send(sent.frame)
        results: list = [None] * len(requests)
        self.used = self.in_flight = True
        try:
            errors = self._collect(dealer, batch, results, deadline, timeout)
        finally:
            self.in_flight = False
        if errors:
            raise min(errors, key=lambda e: e[0])[1]
        return results

    def _encode(self, requests: list) -> dict[int, _Sent]:
        batch = {}
        ids, main_by_value = self.ids, self.main_by_value
        for i, (op, args) in enumerate(requests):
            req_id = next(ids)
            batch[req_id] = _record(_Sent, (i, op, encode_request(req_id, op, tuple(args), main_by_value)))
        return batch

    def _ready(self) -> zmq.Socket[bytes]:
        """The connection; if the registry we knew is dead, a new one to its
        successor (a request sent now cannot be in flight to the dead one)."""
        if self._registry_dead():
            if not self.restarts_in_place:
                raise NoProc(self.registry_pid)
            self._follow(None)
            return self._connect()
        return self._connect() if self.dealer is None else self.dealer

    def _collect(
        self,
        dealer: zmq.Socket[bytes],
        batch: dict[int, _Sent],
        results: list,
        deadline: float | None,
        timeout: float | None,
    ) -> list:
        """Fill ``results`` with the batch's answers; return its errors as
        ``[(position, error)]``."""
        errors: list[tuple[int, BaseException]] = []
        pending = set(batch)
        while pending:
            peer = self._peer
            if peer is not None and peer.dead is not None:
                error = RegistryDown(peer.dead, self.registry_pid)
                self._take_replies(dealer, batch, pending, results, errors)  # answered before it died
                if pending:
                    raise self._down(error, batch, pending)
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise Timeout(f"no answer from the registry within {timeout}s ({_ops(batch, pending)})")
            if self.proc.poll_sockets([dealer], remaining):  # a long wait comes back in slices: loop
                self._take_replies(dealer, batch, pending, results, errors)
        return errors

    def _take_replies(
        self,
        dealer: zmq.Socket[bytes],
        batch: dict[int, _Sent],
        pending: set[int],
        results: list,
        errors: list[tuple[int, BaseException]],
    ) -> None:
        """Take in the replies that have arrived, without waiting."""
        recv = dealer.recv
        while pending:
            try:
                req_id, status, value, registry, version = decode_reply(recv(_NOBLOCK))
            except zmq.Again:
                return
            if registry is not self.registry_pid and registry != self.registry_pid:
                self._follow(registry)
                self.seen_version = 0  # a successor numbers its changes from 0 again
            if req_id not in pending:
                continue  # the late answer to a request that timed out
            pending.discard(req_id)
            if version > self.seen_version:
                self.seen_version = version
            if status == "ok":
                results[batch[req_id].position] = value
            else:
                errors.append((batch[req_id].position, value))

    def _down(self, error: RegistryDown, batch: dict[int, _Sent], pending: set) -> RegistryDown:
        """``error`` for the requests in flight to a registry that died; the
        next request goes to its successor on a fresh connection."""
        error.request = _ops(batch, pending)
        if self.restarts_in_place:
            self._follow(None)
            self._connect()
        return error

    # ------------------------------------------------------------ reads

    def counted_replica(self) -> Replica | None:
        """Count a read; the replica, set up once this process has read
        more than ``REPLICA_AFTER`` times, or None before."""
        if self.replica is None:
            self.lookups += 1
            if self.lookups <= REPLICA_AFTER:
                return None
            self.replica = Replica(self)
        return self.replica

    def lookup_cached(self, key: Any) -> list[tuple[Pid, Any]] | None:
        """``[(pid, value)]`` from the replica, setting it up after a few
        lookups; None when there is no replica (yet)."""
        replica = self.counted_replica()
        return None if replica is None else replica.lookup(key)

    def stamp_word(self) -> memoryview | None:
        """The registry's stamp word (see :mod:`._protocol`), mapped on first
        use; None if its file cannot be mapped.  Valid until :meth:`close`:
        whoever holds it must drop it first."""
        if self._stamp is None:
            try:
                self._stamp = StampFile(stamp_path(self.publish_ep))
            except (OSError, ValueError):
                return None
        return self._stamp.word

    def close(self) -> None:
        if self.replica is not None:
            self.replica.close()
            self.replica = None
        if self._stamp is not None:
            self._stamp.close()
            self._stamp = None
        if self.dealer is not None:
            self.dealer.close(linger=0)
            self.dealer = None


def _ops(batch: dict[int, _Sent], pending: set) -> str:
    return ", ".join(sorted({batch[r].op for r in pending}))


def _has_message(sock: zmq.Socket[bytes]) -> bool:
    """A message waits on ``sock`` (a socket option read, no system call)."""
    events = sock.getsockopt(zmq.EVENTS)
    return isinstance(events, int) and bool(events & zmq.POLLIN)


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
        self.registry_pid: Pid | None = None
        self.duplicate = False
        self.generation = 0
        self.version = 0
        self.table: dict[Any, list[Holder]] = {}
        self.first: dict[Any, Pid] = {}  # key -> its first holder: whereis's answer
        self.groups: dict[Any, list[Pid]] = {}
        self.fresh_until = 0.0
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
                    while _has_message(self.sub):
                        version, change = pickle.loads(self.sub.recv())
                        if version is None and change == SyncToken(token):
                            synced = True
        snapshot: Snapshot = client.request("snapshot")
        self.duplicate = snapshot.mode == "duplicate"
        self.registry_pid = client.registry_pid
        self.generation = snapshot.generation
        self.version = snapshot.version
        self.table = {}
        for entry in snapshot.entries:
            self.table.setdefault(entry.key, []).append(Holder(entry.pid, entry.value, entry.metadata))
        self.first = {key: rows[0].pid for key, rows in self.table.items()}
        self.groups = {g: list(m) for g, m in snapshot.groups.items()}
        self.fresh_until = 0.0
        self._drain()

    def _drain(self) -> None:
        sub = self.sub
        while _has_message(sub):
            version, change = pickle.loads(sub.recv())
            if version is None or version <= self.version:
                continue  # a sync token, or already in the snapshot
            if version != self.version + 1:
                self._resync()  # a gap: changes were lost
                return
            self.version = version
            self._apply(change)

    def _apply(self, change: Change) -> None:
        table, groups = self.table, self.groups
        match change:
            case EntryAdded(key, pid, value, metadata):
                rows = table.get(key, [])
                if not self.duplicate:
                    rows = [r for r in rows if r.pid != pid]
                rows.append(Holder(pid, value, metadata))
                table[key] = rows
                self.first[key] = rows[0].pid
            case EntryRemoved(key, pid):
                rows = [r for r in table.get(key, []) if r.pid != pid]
                if rows:
                    table[key] = rows
                    self.first[key] = rows[0].pid
                else:
                    table.pop(key, None)
                    self.first.pop(key, None)
            case ValueUpdated(key, pid, value):
                table[key] = [r._replace(value=value) if r.pid == pid else r for r in table.get(key, [])]
            case MetadataUpdated(key, pid, metadata):
                table[key] = [r._replace(metadata=metadata) if r.pid == pid else r for r in table.get(key, [])]
            case Joined(group, pid):
                groups.setdefault(group, []).append(pid)
            case Left(group, pid):
                members = groups.get(group, [])
                if pid in members:
                    members.remove(pid)
                if not members:
                    groups.pop(group, None)
            case LeftAll(group, pid):
                members = [m for m in groups.get(group, []) if m != pid]
                if members:
                    groups[group] = members
                else:
                    groups.pop(group, None)

    def refresh(self) -> None:
        """Apply the changes that have arrived; wait for the ones this
        process's own writes produced."""
        client = self.client
        if self._succeeded():
            self._resync()
        else:
            self._drain()
        deadline = time.monotonic() + DEFAULT_TIMEOUT
        while self.version < client.seen_version:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._resync()
                break
            if self.proc.poll_sockets([self.sub], remaining):  # may come back early: loop
                self._drain()
        self.fresh_until = time.monotonic() + FRESHNESS

    def stamp(self) -> int:
        """The stamp of the registry state this replica holds."""
        return stamp_of(self.generation, self.version)

    def _succeeded(self) -> bool:
        """True if the registry this replica copies has died or been
        replaced: its successor numbers its changes from 0 again, which must
        not be taken for changes this replica already has."""
        now = self.client.registry_pid
        if now is not None and now != self.registry_pid:
            return True
        return self.registry_pid is not None and self.client.is_dead(self.registry_pid)

    def _wait_for_notified(self) -> None:
        """A pg monitor's PgJoin or PgLeave leaves the registry after it
        stamped the change: a process that took one finds the change in
        ``get_members``, as OTP's pg readers find it in the scope's table,
        written before the notification goes.  The stamp word says which
        change the registry has made last (a memory read): the next read
        waits for it when the replica lacks it."""
        word = self.client.stamp_word()
        if word is None:
            return
        stamp = word[0]
        if stamp >> VERSION_BITS != self.stamp() >> VERSION_BITS:
            return  # another generation: a successor, which refresh finds by itself
        version = stamp & ((1 << VERSION_BITS) - 1)
        if version > self.client.seen_version:
            self.client.seen_version = version

    def lookup(self, key: Any) -> list[tuple[Pid, Any]]:
        if self.version < self.client.seen_version or time.monotonic() >= self.fresh_until:
            self.refresh()
        seen_dead = self.proc.seen_dead
        return [(r.pid, r.value) for r in self.table.get(key, ()) if not seen_dead(r.pid)]

    def members(self, group: Any) -> list[Pid]:
        self._wait_for_notified()
        if self.version < self.client.seen_version or time.monotonic() >= self.fresh_until:
            self.refresh()
        seen_dead = self.proc.seen_dead
        return [p for p in self.groups.get(group, ()) if not seen_dead(p)]

    def close(self) -> None:
        self.sub.close(linger=0)
