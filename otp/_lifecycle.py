"""Birth and death of processes: ``spawn`` (through the zygote) and the
exit sequence (release names, flush sends, send the 'dead' notices).
Mixed into :class:`otp._process.Process`."""

from __future__ import annotations

import logging
import numbers
import os
import sys
import time
from collections.abc import Callable
from typing import Any, Literal, overload

from . import _naming
from ._codec import dumps, dumps_by_value
from ._errors import NoProc, SpawnError
from ._pid import Pid, Ref, make_ref, new_uid
from ._process_base import ProcessBase
from ._signal_records import Dead, Demonitor, Link, Monitor, Unlink
from ._signals import NOTICE_SEND_TIMEOUT, chunked_refs
from ._zygote_client import ZygoteClient
from ._zygote_protocol import Identity, SpawnSpec, absolute_path

log = logging.getLogger("otp")

__all__ = ["LifecycleMixin", "REMOTE_SPAWN_TIMEOUT"]

#: Seconds a spawn on another node may take, connection set-up included.
REMOTE_SPAWN_TIMEOUT = 30.0


class LifecycleMixin(ProcessBase):
    _spawned_sweep_at = 256
    # ----------------------------------------------------------------- spawn

    @overload
    def spawn(
        self,
        fn: Callable[..., object],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        link: bool = False,
        monitor: Literal[False] = False,
        module: str | None = None,
        max_mailbox: int | None = None,
        node: str | None = None,
    ) -> Pid: ...

    @overload
    def spawn(
        self,
        fn: Callable[..., object],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        link: bool = False,
        monitor: Literal[True],
        module: str | None = None,
        max_mailbox: int | None = None,
        node: str | None = None,
    ) -> tuple[Pid, Ref]: ...

    @overload
    def spawn(
        self,
        fn: Callable[..., object],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        link: bool = False,
        monitor: bool,
        module: str | None = None,
        max_mailbox: int | None = None,
        node: str | None = None,
    ) -> Pid | tuple[Pid, Ref]: ...

    def spawn(
        self,
        fn: Callable[..., object],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        link: bool = False,
        monitor: bool = False,
        module: str | None = None,
        max_mailbox: int | None = None,
        node: str | None = None,
    ) -> Pid | tuple[Pid, Ref]:
        """Start ``fn(*args, **kwargs)`` in a new process.  ``module`` names the
        module whose code the process will run (default ``fn``'s), which the
        zygote imports once so that later processes are forked with it.

        ``max_mailbox=N`` bounds the new process's queue of received, not
        yet taken messages: above N it exits with reason
        ``('max_mailbox', N)`` (see :class:`otp._process.Process`).  None,
        the default, leaves it unbounded, as in Erlang.  Anything but a
        positive int raises TypeError or ValueError before anything starts.

        ``node``: the name of another node to start it on (see
        :meth:`_spawn_remote`); None or this node's name: here.
        """
        module = module or getattr(fn, "__module__", None)
        if max_mailbox is not None:
            fn, args, kwargs = _run_bounded, (checked_max_mailbox(max_mailbox), fn, tuple(args), dict(kwargs)), {}
        if node is not None and not self.node.is_local(node):
            pid, ref = self._spawn_remote(node, fn, args, kwargs, link, monitor, module)
            return (pid, ref) if ref is not None else pid
        with self.kernel_code:
            blob = dumps_by_value((fn, tuple(args), dict(kwargs)))
            ref = make_ref() if monitor else None
            sig = self.sig

            def record(pid: Pid) -> None:
                with sig.lock:
                    if link:
                        sig.links[pid.uid] = pid
                        sig.hold(pid)
                    if ref is not None:
                        sig.monitors[ref] = pid
                        sig.hold(pid)

            pid = self.spawn_for(self.pid, blob, link, ref, module, sys.path, record)
            with sig.lock:
                if pid.uid in sig.refs and not sig.watch(pid):
                    sig.drain_and_settle(pid)  # it is gone already
            if self.root:
                self.spawned.append(pid)
                if len(self.spawned) >= self._spawned_sweep_at:
                    # Only live ones matter for the node's ordered stop.
                    self.spawned = [p for p in self.spawned if os.path.exists(self.node.mailbox_path(p.uid))]
                    self._spawned_sweep_at = max(256, 2 * len(self.spawned))
            return (pid, ref) if ref is not None else pid

    def spawn_for(
        self,
        parent: Pid,
        blob: bytes,
        link: bool,
        ref: Ref | None,
        module: str | None,
        path: list[str],
        on_register: Callable[[Pid], None],
    ) -> Pid:
        """Spawn ``blob`` (pickled ``(fn, args, kwargs)``) with ``parent``, a
        process of another node, as its parent: linked to it and monitored by
        it under ``ref`` as asked, before it runs (what a gateway does for a
        spawn asked from another node, see :meth:`_spawn_remote`).  Nothing
        is recorded in this process's own tables; ``on_register(pid)`` is
        called before the new process can run (:meth:`spawn` records its
        link and monitor there, with this process as ``parent``).  ``path``
        (the parent's ``sys.path``) is added to the new process's."""
        with self.kernel_code:
            zygote = self._zygote
            if zygote is None:
                zygote = self._zygote = ZygoteClient(self.node.zygote_address)
            registered: list[Pid] = []

            def register(identity: Identity) -> None:
                pid = Pid(self.node.name, identity.uid, identity.ospid, identity.start, self.node.creation)
                registered.append(pid)
                on_register(pid)

            zygote.spawn(dumps(SpawnSpec(parent, link, ref, absolute_path(path), blob)), register, module)
            return registered[0]

    def _spawn_remote(
        self,
        node: str,
        fn: Callable[..., object],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        link: bool,
        monitor: bool,
        module: str | None,
    ) -> tuple[Pid, Ref | None]:
        """Start ``fn`` on ``node``: the gateway asks that node's gateway,
        which spawns it with this process as its parent (linked and
        monitored as asked, before it runs), and answers its pid.

        The new process may die before its pid gets here; the 'dead' notices
        of processes of that node this process does not know yet are held
        aside meanwhile (``SignalPort.spawning``) and handled once the link
        or monitor is in the tables, so that it is as atomic as a local
        spawn.  A node that cannot be reached gives what Erlang gives: a pid
        of that node, dead at once with ``'noconnection'`` (an exit signal
        through the link, a DOWN through the monitor).  A spawn the other
        node refuses (no process could be forked) raises SpawnError."""
        with self.kernel_code:
            blob = dumps_by_value((fn, tuple(args), dict(kwargs)))
            ref = make_ref() if monitor else None
            sig = self.sig
            with sig.lock:
                sig.spawning = node
                sig.spawn_stash = []
            answer: object = ("noconnection", None)
            try:
                if self.node.gateway:
                    answer = self.gateway_call(
                        ("spawn", node, link, ref, module, absolute_path(sys.path), blob), REMOTE_SPAWN_TIMEOUT
                    )
            except NoProc:
                pass  # no gateway running (the node is stopping)
            finally:
                if not isinstance(answer, tuple) or answer[0] != "ok":
                    with sig.lock:
                        sig.spawning = None
                        stash, sig.spawn_stash = sig.spawn_stash, []
                    self._handle_stash(stash)
            if type(answer) is not tuple or len(answer) != 2:
                raise SpawnError(f"spawn on {node}: unexpected answer {answer!r}")
            status, value = answer
            if status == "error":
                raise SpawnError(f"spawn on {node}: {value}")
            pid = value if status == "ok" else Pid(node, new_uid(), 0, 0, 0)
            with sig.lock:
                sig.spawning = None
                stash, sig.spawn_stash = sig.spawn_stash, []
                if link:
                    sig.links[pid.uid] = pid
                    sig.hold(pid)
                if ref is not None:
                    sig.monitors[ref] = pid
                    sig.hold(pid)
                if link or ref is not None:
                    sig.watch(pid)  # a process of another node: watches its gateway
                if status != "ok":
                    sig.handle(Dead(pid, 0, "noconnection", link, [ref] if ref is not None else [], True))
            self._handle_stash(stash)
            return pid, ref

    def _handle_stash(self, stash: list[Dead]) -> None:
        """Handle the 'dead' notices held aside during a remote spawn."""
        if stash:
            sig = self.sig
            with sig.lock:
                for dead in stash:
                    sig.handle(dead)

    # ------------------------------------------------------------------ exit

    def terminate(self, reason: object) -> None:
        """Exit: release names, flush sends, notify links and monitors.

        For a child this ends the OS process; for the root it returns.
        """
        if self._exited:
            return
        self._exited = True
        # Kernel code until the process ends: nothing interrupts the exit.
        self.kernel_code.depth += 1
        if self._drop_log:
            self.flush_dropped()  # the malformed frames no line reported yet
        sig = self.sig
        with sig.lock:
            sig.exiting = True
        names = _naming.service()
        if names is not None:
            # Before its own exit_hooks, before anyone can hear of its death.
            try:
                names.on_exit(self, reason)
            except Exception:
                log.exception("exit hook of %r failed", self.pid)
        for hook in list(self.exit_hooks):
            try:
                hook(reason)
            except Exception:
                log.exception("exit hook of %r failed", self.pid)
        self.node.remove_endpoints(self.uid)  # new senders now see us dead
        # The thread's wake socket must close before the context can end;
        # signals arriving from here on are answered by _send_dead_notices.
        sig.stop()
        started = time.monotonic()
        flush_ms = self.close_peers_at_exit()
        self.inbox.close(linger=0)
        # Sockets the process made for itself (a server's ROUTER, a client's
        # DEALER) would keep the context from ending; nothing queued on them
        # is ours to deliver any more.
        for sock in list(getattr(self.ctx, "_sockets", ())):
            if not sock.closed:
                sock.close(linger=0)
        self.ctx.term()
        # Everything sent was delivered if the context ended before the
        # shortest linger still running could give up on a frame.
        elapsed_ms = (time.monotonic() - started) * 1000
        complete = flush_ms is None or elapsed_ms < flush_ms - 50
        self._send_dead_notices(reason, complete)
        sig.close()
        if self.info_socket is not None:
            self.info_socket.close()
        if self._zygote is not None:
            self._zygote.close()

    def _forced_exit(self, reason: object) -> None:
        """Called by the signal thread when the main thread did not unwind."""
        self.node.remove_endpoints(self.uid)
        self._send_dead_notices(reason, False)
        os._exit(0)

    def _send_dead_notices(self, reason: object, complete: bool) -> None:
        sig = self.sig
        # Requests still queued arrived while we were alive (the port was
        # open); they are honoured like the others.  A request sent after
        # the port was removed failed at its sender, which saw 'noproc'.
        late = sig.drain_unlocked()
        with sig.lock:
            links = dict(sig.links)
            monitored_by = dict(sig.monitored_by)
            sig.links.clear()
            sig.monitored_by.clear()
        for s in late:
            sender = s.sender
            if isinstance(s, Link):
                links[sender.uid] = sender
            elif isinstance(s, Unlink):
                links.pop(sender.uid, None)
            elif isinstance(s, Monitor):
                monitored_by[s.ref] = sender
            elif isinstance(s, Demonitor):
                monitored_by.pop(s.ref, None)
        # Per peer: its pid, whether it is linked, the monitors it holds.
        notices: dict[int, tuple[Pid, bool, list[Ref]]] = {}
        for uid, pid in links.items():
            notices[uid] = (pid, True, [])
        for ref, pid in monitored_by.items():
            notices.setdefault(pid.uid, (pid, False, []))[2].append(ref)
        for uid, (pid, linked, refs) in notices.items():
            seq = self.seq_to(uid)
            address = self.node.signal_address(uid)
            for i, chunk in enumerate(chunked_refs(refs)):
                notice = Dead(self.pid, seq, reason, linked and i == 0, chunk, complete)
                try:
                    sig.send(pid, notice, address, NOTICE_SEND_TIMEOUT)
                except Exception:
                    # An unpicklable reason must not stop the notices.
                    sig.send(pid, notice._replace(reason=repr(reason)), address, NOTICE_SEND_TIMEOUT)


def checked_max_mailbox(value: object) -> int:
    """``value`` as a bound of a mailbox: TypeError for anything but an
    int (any Integral, not a bool), ValueError below 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"max_mailbox must be a positive int or None, not {value!r}")
    if value < 1:
        raise ValueError(f"max_mailbox must be a positive int or None, not {value!r}")
    return int(value)


def _run_bounded(max_mailbox: int, fn: Callable[..., object], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """What a process spawned with ``max_mailbox`` runs: the bound goes with
    the function (the embryo knows nothing of it), set before the function
    takes its first message."""
    from . import _process  # breaks the cycle _process -> _lifecycle -> _process

    _process.current().max_mailbox = max_mailbox
    fn(*args, **kwargs)
