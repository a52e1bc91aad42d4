"""The registry process: a ZeroMQ ROUTER server in front of one backend.

One per node serves process names and process groups (the node's
*name registry*, started under the node's kernel supervisor); every
``otp.Registry.start_link`` starts another one for keyed registrations.

Why a ROUTER.  Clients connect one DEALER each and the server answers
through the same socket by routing identity: no out-socket per client, so a
registry serves thousands of processes with two descriptors.

Reads do not all pass through this process: every change is published on a
PUB socket with a version number, and clients keep a replica (see
:mod:`otp.registry._client`); the stamp file (:mod:`._protocol`) tells a
replica without a system call whether it has every change.  Writes are
serialised here, the single owner.

Death.  The server monitors every process that holds a key or a group
membership and drops its entries when the DOWN arrives.  Before a lookup
answers with a pid, the pid's pidfd is checked: a process that has exited is
never returned, even if its DOWN is still on its way.  The server takes in
every request that has arrived before it answers any of them, and checks a
pid once for all of them (:meth:`_Server._alive`): whoever saw the process
die before sending a request of that batch saw it before the check.  A
process that exits deliberately drops its own names first (its exit hook
calls ``unregister_pid``), so no one who saw it die can still find it by
name.

Requests.  A ROUTER can be reached by any ZeroMQ client of the node's
user, so no request may kill the server: :func:`._protocol.decode_request`
checks the envelope, the request's shape and every argument's type in one
place and answers what is wrong with a typed error (``MalformedRequest``,
``UnknownOperation``, ``InvalidPid``, ``InvalidKey``...); what cannot be
answered (no request id) is dropped, logged at most once a second
(:class:`DropLog`).  Only that check and the handler lookup are guarded: a
handler that raises anything but a ``RegistryError`` is a bug, and crashes
the server, which its supervisor restarts (OTP's let-it-crash; answering
"bad request" would hide the bug from everyone).  Replies and published
changes are encoded like mailbox frames (under forkserver, whatever names a
class of the script's ``__main__`` travels by value).

Notifications.  A keyed registry started with ``listeners`` sends each of
them :class:`~otp.registry._events.Registered` and ``Unregistered`` (also
when a holder exits: the server remembers which keys each process holds,
so an entry the backend dropped at a lookup still gets its event when the
DOWN arrives); a listener named by a name nobody holds misses the event.
A process that monitors a pg scope or group (``pg_monitor_scope``,
``pg_monitor``) gets ``PgJoin``/``PgLeave``, one ``PgLeave`` per
membership when a member exits, as OTP's pg sends them; the server watches
it and forgets its monitors when it exits.  Both are sent before the reply
to the request that caused them.

Operations.  Those on keys are :class:`._name_ops.NameOps`'s.

Process groups.  The ``pg_*`` operations are :class:`._pg_ops.PgOps`'s.
On a node that listens, a registry that serves a pg scope (the node's
name registry, or one of ``otp.pg.start_link``) spawns and links the
scope's distribution process (:mod:`._pg_dist`), which makes the scope
span the connected nodes; an exit of that process ends this one too.

Restart.  With the sqlite backend (the node registry's default) the entries
and the pg memberships survive a crash of this process: the restarted
server reopens the file, drops entries and memberships of dead processes
(the backend's liveness check) and monitors the live ones again.  With the
memory backend a restart starts empty.  Listeners are configuration: the
successor has them too.  pg monitors are not kept: like OTP's, they die
with the scope process (a monitoring process learns of it by monitoring
the scope).  A request that was in flight when the server died is not
answered by its successor: its client raises ``RegistryDown`` (see
:mod:`otp.registry._client`).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import select
import time
from collections.abc import Callable
from typing import Any

import zmq

from .. import _process
from .._codec import encode_frame
from .._errors import NoProc, ProcessExit, Timeout
from .._oslib import raise_fd_limit
from .._pid import Pid, Ref
from .._reasons import DOWN, EXIT
from .._start_handshake import start_linked
from .._start_result import StartAck, Started, StartFailed
from ._backend import MembershipStore, RegistryError, RegistryFull
from ._backends import open_backend
from ._events import PgEvent, RegistryEvent
from ._name_ops import NameOps
from ._pg_ops import PgOps
from ._protocol import (
    OPS,
    READ_OPS,
    Change,
    EntryAdded,
    PgMonitorEnded,
    Refused,
    Snapshot,
    StampFile,
    SyncToken,
    Unanswerable,
    decode_request,
    encode_pid,
    encode_reply,
    next_generation,
    stamp_of,
    stamp_path,
)

log = logging.getLogger("otp.registry")

__all__ = ["start_link", "endpoints", "DropLog"]


def endpoints(node_dir: str, uid: int | None) -> tuple[str, str]:
    """(request endpoint, publish endpoint) of a registry.  The node's name
    registry (``uid`` None) has fixed ones, so that clients find it again
    after it restarts."""
    tag = "registry" if uid is None else f"reg-{uid:016x}"
    return f"ipc://{node_dir}/{tag}", f"ipc://{node_dir}/{tag}-pub"


def start_link(config: dict) -> Pid:
    """Start a registry server linked to the caller; returns once it serves."""
    return start_linked(_main, config, _START_TIMEOUT)


def _main(config: dict[str, Any], parent: Pid, ack: Ref) -> None:
    proc = _process.current()
    proc.trap_exit(True)
    try:
        server = _Server(proc, config)
    except Exception as exc:
        proc.unlink(parent)
        proc.send(parent, StartAck(ack, StartFailed(("registry_init", repr(exc)))))
        raise
    proc.send(parent, StartAck(ack, Started(proc.pid)))
    from ._pg_dist import start_link as start_pg_dist  # not at import: it needs _names, which imports this module

    server.pg_dist = start_pg_dist(proc, config)
    server.serve(parent)


#: Seconds a registry may take to start.
_START_TIMEOUT = 30.0
#: Requests taken in at most before the mailbox is looked at again.
_BATCH = 1000
#: ``zmq.SNDMORE`` and friends as plain ints: an enum costs a microsecond.
_SNDMORE = int(zmq.SNDMORE)
_NOBLOCK = int(zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)
#: Characters of a dropped request's description that reach the log.
_REASON_MAX = 200


def watch_cap(fd_limit: int) -> int:
    """Processes a registry may watch with ``fd_limit`` descriptors: a pidfd
    each, a quarter of the limit.  Another quarter is for its peer sockets
    (the cap of otp._transport: it tells each process it names), and half
    for what it cannot bound itself, the connections of the processes
    talking to it (libzmq aborts a process whose listener meets EMFILE).
    Measured under ``ulimit -n 1024``: 2,000 callers arriving over 50 s
    peaked at 315 descriptors in the registry; with half the limit for
    watches, waves of 100 registrations aborted it."""
    return max(16, fd_limit // 4)


class DropLog:
    """Reports dropped requests at most once per ``interval`` seconds: a
    client flooding the registry with garbage must not flood its log too.
    Each report counts the drops it held back since the previous one."""

    def __init__(self, emit: Callable[..., None], interval: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self._emit = emit
        self._interval = interval
        self._clock = clock
        self._next = -math.inf
        self._held = 0

    def dropped(self, reason: str) -> None:
        now = self._clock()
        if now < self._next:
            self._held += 1
            return
        self._next = now + self._interval
        held, self._held = self._held, 0
        reason = reason[:_REASON_MAX]
        if held:
            self._emit(
                "registry dropped a request it cannot answer: %s (and %d more since the last report)", reason, held
            )
        else:
            self._emit("registry dropped a request it cannot answer: %s", reason)


class _Server(NameOps, PgOps):
    def __init__(self, proc: _process.Process, config: dict[str, Any]) -> None:
        self.proc = proc
        # uid -> alive, while a batch of requests is answered (see _alive).
        self._verdicts: dict[int, bool] | None = None
        self._pidfd_poller = select.poll()
        # Like Process.send: under forkserver nobody else has this __main__.
        self.main_by_value = proc.node.start_method == "forkserver"
        self.drops = DropLog(log.warning)
        self.pid_frame = encode_pid(proc.pid)  # in every reply: encoded once
        self.mode = config.get("mode", "unique")
        self.one_name_per_pid = bool(config.get("names"))  # the node's name registry
        # What listeners' events call this registry: its name, else its pid.
        self.name: Any = config.get("name")
        self.listeners: list[Any] = list(config.get("listeners", ()))
        self.backend = open_backend(config.get("backend", "memory"), is_alive=self._alive, mode=self.mode)
        self.member_store = self.backend if isinstance(self.backend, MembershipStore) else None
        node_dir = proc.node.dir
        self.request_ep, self.publish_ep = endpoints(node_dir, None if config.get("names") else proc.uid)
        # Before the endpoints: whoever reaches this registry finds its generation.
        self.restarts_in_place = bool(config.get("names"))
        self.stamp = StampFile(stamp_path(self.publish_ep), writable=True)
        self.generation = next_generation(self.stamp.word[0])
        self.version = 0
        self.stamp.word[0] = stamp_of(self.generation, 0)
        self.router = proc.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.SNDHWM, 0)
        self.router.setsockopt(zmq.RCVHWM, 0)
        self.router.setsockopt(zmq.BACKLOG, 1024)
        self._bind(self.router, self.request_ep)
        self.pub = proc.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, 100_000)
        self._bind(self.pub, self.publish_ep)
        # Lookups answered from memory: key -> live entries.  The server is
        # its backend's only writer, so any write clears it (see _request);
        # every hit is checked for liveness again.  Bounded by _CACHE_MAX.
        self._cache: dict[Any, list] = {}
        self.monitors: dict[int, Any] = {}  # uid -> monitor ref
        # uid -> the keys the process holds (an ordered set): what its exit
        # unregisters, even where the backend already dropped the entries.
        self.held: dict[int, dict[Any, None]] = {}
        self._handlers = {op: getattr(self, "op_" + op) for op in OPS}
        self.watch_cap = watch_cap(raise_fd_limit())
        for entry in self.backend.list_all():  # after a restart: watch the survivors
            try:
                self._watch(entry.pid)
            except RegistryFull:
                log.error("registry: dropping %r, held by %r: no descriptor to watch it", entry.key, entry.pid)
                self.backend.unregister(entry.key, entry.pid)
                continue
            self.held.setdefault(entry.pid.uid, {})[entry.key] = None
        self._init_groups()
        proc.exit_hooks.append(lambda reason: self.close())

    @staticmethod
    def _bind(sock, endpoint: str) -> None:
        path = endpoint[len("ipc://") :]
        try:
            os.unlink(path)  # left by a predecessor that was killed
        except FileNotFoundError:
            pass
        sock.bind(endpoint)

    # ------------------------------------------------------------ liveness

    def _alive(self, pid: Pid) -> bool:
        """True if ``pid`` has not exited.  While a batch is answered, the
        first check of a pid holds for the rest of the batch: every request
        of the batch arrived before it, so a death that any of their senders
        could have seen had happened before it too."""
        verdicts = self._verdicts
        if verdicts is not None:
            alive = verdicts.get(pid.uid)
            if alive is not None:
                return alive
        try:
            alive = self._check_alive(pid)
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            raise RegistryFull(pid, len(self.monitors)) from None
        if verdicts is not None:
            verdicts[pid.uid] = alive
        return alive

    def _check_alive(self, pid: Pid) -> bool:
        if not self.proc.node.is_local(pid.node):
            # Asking its node goes through the gateway, which is found by
            # name, that is by asking this very process: taken as alive if
            # this node can reach other nodes at all.  The monitor _watch
            # sets next gives DOWN 'noproc' at once for a process that is
            # gone, and that drops its entries.
            return bool(self.proc.node.gateway)
        sig = self.proc.sig
        with sig.lock:  # the signal thread closes the pidfd of a process it finds dead
            w = sig.watches.get(pid.uid)
            if w is not None:
                return not self._exited(w.fd)
        return self.proc.is_alive(pid)

    def _exited(self, pidfd: int) -> bool:
        """``pidfd`` is readable: its process exited (otp._oslib.fd_readable,
        with one poll object kept: a third cheaper)."""
        poller = self._pidfd_poller
        poller.register(pidfd, select.POLLIN)
        try:
            return bool(poller.poll(0))
        except OSError:
            return True
        finally:
            poller.unregister(pidfd)

    def _watch(self, pid: Pid) -> None:
        """Monitor ``pid`` (once); RegistryFull if that would take a
        descriptor the server needs for its connections."""
        if pid.uid in self.monitors:
            return
        if len(self.monitors) >= self.watch_cap:
            raise RegistryFull(pid, len(self.monitors))
        try:
            self.monitors[pid.uid] = self.proc.monitor(pid)
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            raise RegistryFull(pid, len(self.monitors)) from None

    def _unwatch_if_unused(self, pid: Pid) -> None:
        if (
            self.held.get(pid.uid)
            or self.backend.keys_of(pid)
            or pid.uid in self.pg_monitors_of
            or any(pid in members for members in self.groups.values())
        ):
            return
        ref = self.monitors.pop(pid.uid, None)
        if ref is not None:
            self.proc.demonitor(ref, flush=True)

    # ------------------------------------------------------------ serve

    def serve(self, parent: Pid) -> None:
        router = self.router
        while True:
            ready = self.proc.poll_sockets([router], None)
            self._mailbox(parent)
            if ready:
                self._answer_batch(router)

    def _answer_batch(self, router: zmq.Socket[bytes]) -> None:
        """Take in the requests that have arrived (at most ``_BATCH``), then
        answer them in order, checking each pid's liveness once (see
        :meth:`_alive`)."""
        batch = []
        recv, more = router.recv, router.get
        for _ in range(_BATCH):  # recv_multipart, without its enum arithmetic (half its cost)
            try:
                parts = [recv(_NOBLOCK)]
            except zmq.Again:
                break
            parts.append(recv(_NOBLOCK))  # a ROUTER's message: the sender's identity, then a frame at least
            while more(_RCVMORE):
                parts.append(recv(_NOBLOCK))
            batch.append(parts)
        self._verdicts = {}
        try:
            for parts in batch:
                self._request(parts)
        finally:
            self._verdicts = None

    def _mailbox(self, parent: Pid) -> None:
        if not self.proc.mailbox:  # poll_sockets took in what arrived
            return
        while True:
            try:
                msg = self.proc.receive(0)
            except Timeout:
                return
            if isinstance(msg, DOWN):
                self._dead(msg.pid)
            elif isinstance(msg, EXIT) and (msg.pid == parent or msg.pid == self.pg_dist):
                raise ProcessExit(msg.reason)

    def _dead(self, pid: Pid) -> None:
        self._cache.clear()
        self.monitors.pop(pid.uid, None)
        held = self.held.pop(pid.uid, {})
        for key in dict.fromkeys([*held, *self.backend.unregister_pid(pid)]):
            self._removed(key, pid)
        self._pg_dead(pid)

    def _publish(self, change: Change) -> None:
        self.version += 1
        self.pub.send(encode_frame((self.version, change), self.main_by_value))
        self.stamp.word[0] = stamp_of(self.generation, self.version)

    def _request(self, parts: list) -> None:
        try:
            envelope, request = decode_request(parts)
        except Unanswerable as exc:
            self.drops.dropped(str(exc))
            return
        except Refused as exc:
            self._reply(exc.envelope, exc.req_id, "error", exc.error)
            return
        req_id, op, args = request
        if op not in READ_OPS:
            self._cache.clear()
        handler = self._handlers[op]  # cannot fail: decode_request knows the ops
        try:
            value = handler(*args)
        except RegistryError as exc:
            self._reply(envelope, req_id, "error", exc)
            return
        self._reply(envelope, req_id, "ok", value)

    def _reply(self, envelope: list, req_id: int, status: str, value: Any) -> None:
        if type(value) is Pid and status == "ok":  # whereis: see encode_reply
            status, value = "pid", (value.node, value.uid, value.ospid, value.start)
        frame = encode_reply(req_id, status, value, self.pid_frame, self.version, self.main_by_value)
        router = self.router
        for part in envelope:  # not send_multipart: a third of its cost (measured)
            router.send(part, _SNDMORE)
        router.send(frame)

    # ------------------------------------------------------------ notifications

    def _tell(self, dest: Any, msg: RegistryEvent | PgEvent | PgMonitorEnded) -> None:
        """Send ``msg`` to a pid or a name; a name nobody holds misses it,
        as a dead pid does."""
        try:
            if isinstance(dest, Pid):
                self.proc.send(dest, msg)
            else:
                _process.send(dest, msg)
        except NoProc:
            pass

    # ------------------------------------------------------------ operations

    def op_health(self) -> dict:
        health = dict(self.backend.health_check())
        health.update(
            version=self.version,
            monitored=len(self.monitors),
            groups=len(self.groups),
            pg_monitors=len(self.pg_monitors),
        )
        return health

    def op_sync(self, token: Any) -> None:
        self.pub.send(encode_frame((None, SyncToken(token)), self.main_by_value))

    def op_snapshot(self) -> Snapshot:
        entries = [EntryAdded(e.key, e.pid, e.value, e.metadata) for e in self.backend.list_all()]
        return Snapshot(self.version, entries, {g: list(m) for g, m in self.groups.items()}, self.mode, self.generation)

    def close(self) -> None:
        self.router.close(linger=0)
        self.pub.close(linger=0)
        if not self.restarts_in_place:  # the node registry's successor reads its generation
            try:
                os.unlink(self.stamp.path)
            except FileNotFoundError:
                pass
        self.stamp.close()
        try:
            self.backend.close()
        except Exception:  # noqa: BLE001 - closing on the way out
            log.exception("closing the registry backend failed")
