"""Links, monitors, exit signals and calls: the part of a process's API
that talks to the signal port (see :mod:`otp._signals`).  Mixed into
:class:`otp._process.Process`; runs in the process's main thread.

Call watches.  A call needs to know when its callee dies, so the first call
to a process sets an internal monitor on it (a call watch: a pidfd here, an
entry in the callee's table), which later calls reuse: a monitor per call
would cost a signal each way and a pidfd per call.  A watch is released
(the callee told, the pidfd closed) when its callee was not called between
two looks at idle sockets (see :meth:`otp._peers.PeersMixin.on_idle`), and
the least recently called ones beyond :data:`CALL_WATCHES_MAX`, so that a
process calling many distinct servers holds descriptors for those it calls
now, not for every one it ever called.  The next call to a released callee
sets a watch again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from . import _naming, _oslib
from ._dist_wire import GATEWAY_NAME
from ._errors import CalleeExit, CallError, CallTimeout, NoConnection, NoProc, ProcessExit
from ._peers import Peer
from ._pid import Pid, Ref, make_ref
from ._process_base import ProcessBase
from ._reasons import DOWN, EXIT
from ._signal_records import Demonitor, Exit, Link, Monitor, Signal, Unlink

__all__ = ["LinksMixin", "GATEWAY_CALL_TIMEOUT", "CALL_WATCHES_MAX"]

#: Seconds a question to the gateway that crosses to another node (is this
#: process alive?) may take: a connection set up included.
GATEWAY_CALL_TIMEOUT = 10.0
#: Call watches a process keeps at most, beyond those of calls in flight
#: (see the module docstring): each holds a pidfd.  As many as the open
#: peer sockets a process keeps (``PEER_SOCKETS_MAX``): a server called
#: that often is one whose socket stays open too.
CALL_WATCHES_MAX = 256


class LinksMixin(ProcessBase):
    def _init_links(self) -> None:
        # Callee uid -> its peer's frame count at the last look, for the
        # callees with a call watch, least recently seen called first.
        self._call_watched: dict[int, int] = {}
        # callees whose watch stays while this process lives: a user that
        # learns of a death through it outside of calls (the registry
        # client, the timer server's cache) sends by other means, so its
        # callee never looks called.
        self._call_watch_pinned: set[int] = set()
        self._call_watch_cap = CALL_WATCHES_MAX
        self._call_watch_at = CALL_WATCHES_MAX  # size at which the cap is next enforced
        self._call_watch_idle = False  # whether the idle scan looks at them

    # ------------------------------------------------------ links, monitors

    def _request(self, pid: Pid, add: Callable[[], bool], remove: Callable[[], bool], signal: Signal) -> bool | None:
        """Record a table entry about ``pid``, send it the request, watch it.

        ``add()`` (under the lock) records the entry and returns False if it
        already existed (then nothing is sent: None).  Returns False if
        ``pid`` was gone (its port refused the request; the entry is
        removed), True otherwise, including when the port already settled
        the entry with the real exit reason.
        """
        sig = self.sig
        with sig.lock:
            if not add():
                return None
            sig.hold(pid)
        if not sig.send(pid, signal, self.node.signal_address(pid.uid)):
            with sig.lock:
                if remove():
                    sig.release(pid.uid)
                    return False
            return True
        with sig.lock:
            if pid.uid in sig.refs and not sig.watch(pid):
                sig.drain_and_settle(pid)
        return True

    def link(self, pid: Pid) -> None:
        """See :func:`otp.link`."""
        if pid.uid == self.uid:
            return
        sig = self.sig
        links, uid = sig.links, pid.uid

        def add() -> bool:
            if uid in links:
                return False
            links[uid] = pid
            return True

        ok = self._request(pid, add, lambda: links.pop(uid, None) is not None, Link(self.pid, self.seq_to(uid)))
        if ok is False:
            self.remember_dead(pid)
            self.peer_died(pid, "noproc")
            if sig.trap_exit:
                self.mailbox.append(EXIT(pid, "noproc"))
            else:
                raise NoProc(pid)

    def unlink(self, pid: Pid) -> None:
        """See :func:`otp.unlink`."""
        sig = self.sig
        with sig.lock:
            was = sig.links.pop(pid.uid, None) is not None
            if was:
                sig.release(pid.uid)
        if was:
            sig.send(pid, Unlink(self.pid, self.seq_to(pid.uid)), self.node.signal_address(pid.uid))

    def monitor(self, pid: Pid) -> Ref:
        """See :func:`otp.monitor`."""
        ref = make_ref()
        if pid.uid == self.uid:
            return ref  # fires only when we are dead, i.e. never for us
        monitors = self.sig.monitors

        def add() -> bool:
            monitors[ref] = pid
            return True

        request = Monitor(self.pid, self.seq_to(pid.uid), ref)
        if self._request(pid, add, lambda: monitors.pop(ref, None) is not None, request) is False:
            # Take in what the dead process sent first, so its DOWN comes
            # after it (frames still in the kernel's buffer at this instant
            # can come later: we were not watching when it died, so no
            # sequence number says how many to wait for).
            self._drain_inbox()
            self.remember_dead(pid)
            self.peer_died(pid, "noproc")
            self.mailbox.append(DOWN(ref, pid, "noproc"))
        return ref

    def demonitor(self, ref: Ref, flush: bool = False, info: bool = False) -> bool:
        """See :func:`otp.demonitor`.  The monitor counts as found if it was
        active or its DOWN had not reached the mailbox yet (held behind the
        dead process's messages): either way no DOWN of it is delivered."""
        sig = self.sig
        with sig.lock:
            pid = sig.monitors.pop(ref, None)
            if pid is not None:
                sig.release(pid.uid)
        if pid is not None:
            sig.send(pid, Demonitor(self.pid, 0, ref), self.node.signal_address(pid.uid))
        self.integrate()
        found = pid is not None
        for h in self.held.values():
            for item in [i for i in h if isinstance(i.payload, DOWN) and i.payload.ref == ref]:
                h.remove(item)
                found = True
        flushed = False
        if flush:
            for m in [m for m in self.mailbox if isinstance(m, DOWN) and m.ref == ref]:
                self.mailbox.remove(m)
                flushed = True
        if not info:
            return True
        return not flushed if flush else found

    def trap_exit(self, flag: bool) -> bool:
        """See :func:`otp.trap_exit`."""
        with self.sig.lock:
            prev = self.sig.trap_exit
            self.sig.trap_exit = bool(flag)
        return prev

    def exit_signal(self, pid: Pid, reason: object) -> None:
        """See :func:`otp.exit`."""
        if pid.uid == self.uid:
            if reason == "kill":
                raise ProcessExit("killed")
            if self.sig.trap_exit:
                self.mailbox.append(EXIT(self.pid, reason))
                return
            raise ProcessExit(reason)
        if reason == "kill" and self.node.is_local(pid.node):
            _oslib.pidfd_kill(pid.ospid, pid.start)
            return
        # To another node, 'kill' travels as an exit signal: its gateway kills.
        signal = Exit(self.pid, self.seq_to(pid.uid), reason)
        try:
            self.sig.send(pid, signal, self.node.signal_address(pid.uid))
        except Exception as exc:  # unpicklable reason
            raise CallError(("badarg", reason), pid) from exc

    def is_alive(self, pid: Pid) -> bool:
        """See :func:`otp.is_alive`."""
        if pid.uid == self.uid:
            return not self.sig.exiting
        p = self.peers.get(pid.uid)
        if p is not None and p.dead is not None:
            return False
        if not self.node.is_local(pid.node):
            return self.remote_alive(pid)
        return _oslib.os_process_alive(pid.ospid, pid.start) and os.path.exists(self.node.signal_address(pid.uid))

    def remote_alive(self, pid: Pid) -> bool:
        """Whether ``pid``, of another node, is alive: asked of its node
        through the gateway; False if its node cannot be reached."""
        if not self.node.gateway:
            return False
        try:
            return bool(self.gateway_call(("alive", pid), GATEWAY_CALL_TIMEOUT))
        except CallError:
            return False

    def gateway_call(self, request: object, timeout: float | None) -> object:
        """Call the node's gateway (see :mod:`otp._gateway`, which answers
        ``$gen_call`` requests); :class:`NoProc` if the node has none."""
        gateway = _naming.resolve(GATEWAY_NAME)
        me = self.pid
        return self.call(gateway, lambda ref: ("$gen_call", (me, ref), request), timeout, GATEWAY_NAME, request)

    # ----------------------------------------------------------------- calls

    def call_peer(self, pid: Pid, pin: bool = False) -> Peer:
        """The peer, with an internal monitor that tells calls of its death;
        ``pin``: kept while this process lives (for a user that watches
        ``pid`` through it between calls, or without calling it at all)."""
        if pin:
            self._call_watch_pinned.add(pid.uid)
        p = self.peer(pid)
        if p.dead == "noconnection" and p.send is not None:
            p.dead = None  # a lost connection: its node may be back, ask again
        if p.dead is not None or p.call_ref is not None:
            return p
        ref = make_ref()
        watches = self.sig.call_watches

        def add() -> bool:
            watches[ref] = pid
            return True

        p.call_ref = ref
        if self._request(pid, add, lambda: watches.pop(ref, None) is not None, Monitor(self.pid, p.seq, ref)) is False:
            p.dead = "noproc"
            p.call_ref = None
            return p
        watched = self._call_watched
        watched[pid.uid] = p.seq
        if len(watched) > self._call_watch_at:
            self._cap_call_watches(pid.uid)
        if not self._call_watch_idle:
            self._call_watch_idle = True
            self.on_idle(self._release_idle_call_watches)
        return p

    def _cap_call_watches(self, keep: int) -> None:
        """Release call watches down to below the cap, least recently called
        first, approximately (CLOCK, as for peer sockets: a callee called
        since the last look goes to the back once); never the watch of a
        call in flight, nor ``keep``'s (the call about to be made).  If the
        calls in flight hold more, the cap is next enforced at twice as
        many, so that a multi_call to thousands does not look through all
        of them at each new callee."""
        watched = self._call_watched
        cap = self._call_watch_cap
        want = len(watched) - cap + cap // 8 + 1
        busy = {p.pid.uid for p in self.active_calls.values()}
        busy.add(keep)
        busy |= self._call_watch_pinned
        peers = self.peers
        for _ in range(2):
            for uid, seen in list(watched.items()):
                if want <= 0:
                    break
                if uid in busy:
                    continue
                p = peers.get(uid)
                if p is not None and p.call_ref is not None and p.seq != seen:
                    del watched[uid]
                    watched[uid] = p.seq
                    continue
                self._release_call_watch(uid)
                want -= 1
        self._call_watch_at = cap if len(watched) <= cap else 2 * len(watched)

    def _release_idle_call_watches(self, now: float) -> bool:
        """The idle scan's look at call watches (see ``on_idle``): release
        those whose callee was not called since the previous look.  False
        (no more looks) once none is left."""
        watched = self._call_watched
        busy = {p.pid.uid for p in self.active_calls.values()} if self.active_calls else set()
        busy |= self._call_watch_pinned
        peers = self.peers
        for uid, seen in list(watched.items()):
            p = peers.get(uid)
            if p is not None and p.call_ref is not None and (p.seq != seen or uid in busy):
                watched[uid] = p.seq
            else:
                self._release_call_watch(uid)
        self._call_watch_idle = bool(watched)
        return self._call_watch_idle

    def _release_call_watch(self, uid: int) -> None:
        """Remove the call watch on ``uid``: forget it here, close its pidfd
        (once nothing else refers to ``uid``), and tell the callee, whose
        table of monitors on it would otherwise keep it while we live."""
        self._call_watched.pop(uid, None)
        p = self.peers.get(uid)
        if p is None or p.call_ref is None:
            return  # its callee died (the watch went with its notice) or was swept
        ref, p.call_ref = p.call_ref, None
        sig = self.sig
        with sig.lock:
            pid = sig.call_watches.pop(ref, None)
            if pid is not None:
                sig.release(uid)
        if pid is not None:
            sig.send(pid, Demonitor(self.pid, 0, ref), self.node.signal_address(uid))

    def _exited_before_call(self, pid: Pid, p: Peer) -> bool:
        """Whether the callee, whose peer ``p`` is not known dead, has
        exited before this call: its pidfd is readable, or the signal thread
        has settled its death already (it closes the watch and posts the
        death under one lock, so a closed watch means the death is in the
        inbox, taken in here: then ``p.dead`` says it)."""
        if self.sig.exited(pid.uid):
            return True
        if self.sig.inbox:
            self.integrate()
            return p.dead is not None
        return False

    def call(
        self, pid: Pid, message_for: Callable[[Ref], object], timeout: float | None, server: object, request: object
    ) -> object:
        """Send ``message_for(ref)`` to ``pid`` and wait for the reply to ``ref``."""
        with self.kernel_code:
            if pid.uid == self.uid:
                raise CallError("calling_self", server, request)
            p = self.call_peer(pid)
            # The call reuses the monitor of an earlier one.  A callee that
            # has exited already is 'noproc', as for the fresh monitor an
            # OTP call sets up, not the exit reason this process has not
            # read yet: whoever saw the death first, the call agrees.
            if p.dead is not None or self._exited_before_call(pid, p):
                raise _call_error(_before_call(p.dead), server, request)
            ref = make_ref()
            self.active_calls[ref] = p
            try:
                self.send(pid, message_for(ref))
                deadline = None if timeout is None else time.monotonic() + timeout
                replies = self.replies
                late = False
                while ref not in replies:
                    if p.dead is not None:
                        raise _call_error(p.dead, server, request)
                    if deadline is None:
                        self.pump(None)
                    else:
                        remaining = deadline - time.monotonic()
                        if remaining > 0:
                            self.pump(remaining)
                        elif late:
                            raise CallTimeout(server, request)
                        else:
                            late = True
                            self._take_in_queued()
                return replies.pop(ref)
            finally:
                del self.active_calls[ref]
                self.replies.pop(ref, None)

    def multi_call(
        self,
        targets: list[tuple[Pid, object]],
        message_for: Callable[[Ref, object], object],
        timeout: float | None,
    ) -> list[tuple[str, object]]:
        """Call every pid in ``targets`` at once; wait for all answers.

        Returns, in order, ``('ok', reply)`` or ``('error', exc)`` per
        target, where ``exc`` is the CallError a single call would raise.
        The calls run concurrently (all requests go out before any answer is
        awaited), so the whole takes about the slowest one, not the sum.
        """
        with self.kernel_code:
            deadline = None if timeout is None else time.monotonic() + timeout
            pending: dict[Ref, tuple[int, Peer, Pid, object]] = {}
            results: list[tuple[str, object]] = [("error", None)] * len(targets)
            for i, (pid, request) in enumerate(targets):
                if pid.uid == self.uid:
                    results[i] = ("error", CallError("calling_self", pid, request))
                    continue
                p = self.call_peer(pid)
                if p.dead is not None or self._exited_before_call(pid, p):
                    results[i] = ("error", _call_error(_before_call(p.dead), pid, request))
                    continue
                ref = make_ref()
                self.active_calls[ref] = p
                pending[ref] = (i, p, pid, request)
                self.send(pid, message_for(ref, request))
            try:
                replies = self.replies
                late = False
                while pending:
                    for ref in [r for r in pending if r in replies]:
                        i, _, _, _ = pending.pop(ref)
                        results[i] = ("ok", replies.pop(ref))
                    for ref, (i, p, pid, request) in list(pending.items()):
                        if p.dead is not None and ref not in replies:
                            del pending[ref]
                            error = _call_error(p.dead, pid, request)
                            results[i] = ("error", error)
                    if not pending:
                        break
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is None or remaining > 0:
                        self.pump(remaining)
                    elif not late:
                        late = True
                        self._take_in_queued()
                    else:
                        for i, _, pid, request in pending.values():
                            results[i] = ("error", CallTimeout(pid, request))
                        break
            finally:
                for ref in pending:
                    self.active_calls.pop(ref, None)
                    self.replies.pop(ref, None)
            return results

    def _take_in_queued(self) -> None:
        """Take in, without waiting, the frames already in the mailbox socket
        and what the signal thread handed over: a call whose deadline has
        passed first looks at what came before it (an answer, its callee's
        death), which the waits had not taken in yet."""
        self._drain_inbox()
        if self.sig.inbox:
            self.integrate()


def _before_call(dead: object) -> object:
    """What a call to a callee that was dead (``dead``: its exit reason,
    None if only its pidfd said so) before the call was sent reports:
    'noconnection' for a lost node, else 'noproc'."""
    return "noconnection" if dead == "noconnection" else "noproc"


def _call_error(dead: object, server: object, request: object) -> CallError:
    """What a call to a process that died (or whose node went) with
    ``dead`` raises."""
    if dead == "noproc":
        return NoProc(server, request)
    if dead == "noconnection":
        return NoConnection(server, request)
    return CalleeExit(dead, server, request)
