"""The order of the frames a process receives, across the sockets of one
sender.

A sender closes and reopens its peer sockets (see :mod:`otp._peers`), so
its frames can reach a mailbox over two connections, out of order: the
receiving side here sets aside a frame that comes before its predecessors
and takes it in at its turn.  Apart from the sending side because it is
the other end of the same numbering: :mod:`otp._receive` calls
``_out_of_order`` for a frame whose number is not the next one expected
from its sender, ``_skip_frame`` (through ``_skip_undecodable`` and
``_skip_malformed``) for a frame it drops (its number still counts), and
``_take_early`` after it took a frame in from a sender in ``_early``; the
idle scan of :mod:`otp._peers` calls ``_settle_early``.

Mixed into :class:`otp._process.Process`; runs in the process's main thread.
"""

from __future__ import annotations

import pickletools
import time

from ._pid import Ref
from ._process_base import ProcessBase
from ._transport import EXIT_LINGER_MS, PEER_IDLE_S

__all__ = ["FrameOrderMixin", "frame_header"]

#: Set aside in place of a frame that was dropped: only its number counts.
_SKIPPED: tuple[object, ...] = ("skipped",)
_monotonic = time.monotonic


def frame_header(frame: bytes) -> tuple[int, int] | None:
    """(sender uid, sequence number) of a frame that cannot be unpickled (a
    message naming a class this process lacks), read from the pickle's
    opcodes without executing it: the header is the tuple's first two
    items, pushed before the message (see :mod:`otp._codec`)."""
    ints: list[int] = []
    try:
        for op, arg, _ in pickletools.genops(frame):
            if op.name in ("PROTO", "FRAME", "MARK"):
                continue
            if type(arg) is not int or op.name not in ("BININT", "BININT1", "BININT2", "LONG1", "LONG4"):
                return None
            ints.append(arg)
            if len(ints) == 2:
                return ints[0], ints[1]
    except Exception:
        return None
    return None


class FrameOrderMixin(ProcessBase):
    """Frames set aside until their predecessors are in (see the module
    docstring)."""

    _idle_scan_at: float | None  # when the idle scan next looks (see otp._peers)

    def _init_frame_order(self) -> None:
        # Sender uid -> {seq: frame tuple} that came before its turn.
        self._early: dict[int, dict[int, tuple[object, ...]]] = {}
        self._early_gone: dict[int, float] = {}  # senders of _early seen gone: since when

    def _out_of_order(self, uid: int, seq: int, t: tuple[object, ...]) -> None:
        """Take in, or set aside, a frame numbered ``seq`` from ``uid`` that
        is not the next one expected.

        Frames of one sender arrive in order on one socket, but a sender
        closes sockets and opens new ones, and the mailbox reads its
        connections in turn: a frame on the new connection can come while
        the old one still holds earlier frames.  It is set aside until they
        are in.  A frame numbered at or below what was taken in is late (it
        was set aside and settled, see _settle_early): taken in, the count
        unchanged.

        A sender never heard from starts at 0, even if it has exited: its
        first frames may still be on their way on another connection (a
        sender often exits before its receiver reads).  (A late frame of a
        sender whose count _sweep_recv_seq forgot waits for _settle_early.)"""
        if seq <= self.recv_seq.get(uid, 0):
            self._take_in(t)
        else:
            self._set_aside(uid, seq, t)

    def _skip_frame(self, uid: int, seq: int) -> None:
        """Frame ``seq`` of ``uid`` was dropped (undecodable, malformed): count
        it, so that its successors are not held for it."""
        last = self.recv_seq.get(uid, 0)
        if seq == last + 1:
            self.recv_seq[uid] = seq
            if uid in self.held:
                self._release_held(uid, seq)
            if self._early and uid in self._early:
                self._take_early(uid)
        elif seq > last:
            self._set_aside(uid, seq, _SKIPPED)

    def _skip_undecodable(self, frame: bytes) -> None:
        """A frame that does not unpickle: count it by its header, if any."""
        header = frame_header(frame)
        if header is not None:
            self._skip_frame(*header)

    def _skip_malformed(self, t: object) -> None:
        """A frame of the wrong shape: count it if it names a sender and a number."""
        if type(t) is tuple and len(t) >= 2 and type(t[0]) is int and type(t[1]) is int:
            self._skip_frame(t[0], t[1])

    def _set_aside(self, uid: int, seq: int, t: tuple[object, ...]) -> None:
        early = self._early
        pending = early.get(uid)
        if pending is None:
            pending = early[uid] = {}
            at = _monotonic() + PEER_IDLE_S
            if self._idle_scan_at is None or self._idle_scan_at > at:
                self._idle_scan_at = at
        pending[seq] = t

    def _take_early(self, uid: int) -> None:
        """Take in the frames set aside from ``uid`` that are now next."""
        pending = self._early[uid]
        recv_seq = self.recv_seq
        seq = recv_seq[uid]
        while pending:
            t = pending.pop(seq + 1, None)
            if t is None:
                break
            seq += 1
            if t is not _SKIPPED:
                self._take_in(t)
            recv_seq[uid] = seq
            if uid in self.held:
                self._release_held(uid, seq)
        if not pending:
            del self._early[uid]

    def _take_in(self, t: tuple) -> None:
        if len(t) == 3:
            self.mailbox.append(t[2])
        elif type(t[2]) is Ref and t[2] in self.active_calls:
            self.replies[t[2]] = t[3]

    def _settle_early(self, now: float) -> None:
        """Frames set aside for a sender that exited more than its exit flush
        ago (EXIT_LINGER_MS: everything it sent is in by then) are taken in
        without the predecessors still missing: those were lost in the sender
        (killed with frames in its queue, or it gave up on a frozen us)."""
        gone = self._early_gone
        still = {}
        for uid in list(self._early):
            if self.sender_may_live(uid):
                continue
            since = gone.get(uid, now)
            if now - since < EXIT_LINGER_MS / 1000 + 0.5:
                still[uid] = since
                continue
            pending = self._early.pop(uid)
            recv_seq = self.recv_seq
            for seq in sorted(pending):
                t = pending[seq]
                if t is not _SKIPPED:
                    self._take_in(t)
                if seq > recv_seq.get(uid, 0):
                    recv_seq[uid] = seq
                    if uid in self.held:
                        self._release_held(uid, seq)
        self._early_gone = still
