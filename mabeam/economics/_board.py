"""The economics board: the read side of every economics process (CQRS).

``mabeam.economics.board`` is a keyed registry (unique keys).  Every
auction, market and service has its entries written by one process only,
its owner (the budget and reputation services; for an auction or a
market, the host process that holds it): after each change the owner
writes a plain snapshot (with a sequence number ``seq``) as the registry
value.  Readers look entries up from their own replica of the registry
(``otp.Registry.lookup``), so a read never queues behind the owner's work
(a host with auctions waiting for slow bidders still answers reads at
once, and reads never reach it).

A host of auctions and markets writes its items' entries in batches
(:mod:`._board_writer`), and its answers and the events of a change go
out once the board shows the change.

Read-your-writes: a write through this package's API remembers the ``seq``
its reply carried (:func:`note_seq`), and a read that finds an older
snapshot (the change is still on its way to the caller's replica) asks the
owner for its current one, through the owner's ``view`` operation.  (A
host answers a write only once the board shows it, so this is a
safeguard there.)
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import otp

from .._comms import publish
from ._errors import EconomicsError, NotStarted

log = logging.getLogger("mabeam.economics")

__all__ = ["BOARD", "post", "read", "note_seq", "announce", "absent_as", "metadata_of"]

BOARD = "mabeam.economics.board"

#: Sequence numbers of the writes this process made, per board key (bounded).
_SEEN: collections.OrderedDict[Any, int] = collections.OrderedDict()
_SEEN_MAX = 4096


def post(key: Any, value: Any) -> None:
    """Write the caller's board entry ``key`` (registered by the caller
    before).  A board that restarted (memory backend: empty) gets the entry
    again.  A board that is not there (restarting, or stopped before its
    writers at shutdown) costs the writer nothing: the write is dropped and
    the next one repairs the entry."""
    try:
        try:
            otp.Registry.set_value(BOARD, key, value)
        except LookupError:
            otp.Registry.register(BOARD, key, value, metadata_of(key))
    except (otp.NoProc, otp.Timeout) as exc:
        log.debug("economics: board write of %r dropped: %r", key, exc)


def metadata_of(key: Any) -> dict | None:
    """The metadata index entry of a board key (``('auction', id)`` ->
    ``{'type': 'auction'}``), so that a re-registered entry is listed again."""
    if isinstance(key, tuple) and key and isinstance(key[0], str):
        return {"type": key[0]}
    return None


def note_seq(key: Any, seq: int) -> None:
    """Remember that this process saw ``key`` at ``seq`` (read-your-writes)."""
    _SEEN[key] = max(seq, _SEEN.get(key, 0))
    _SEEN.move_to_end(key)
    while len(_SEEN) > _SEEN_MAX:
        _SEEN.popitem(last=False)


def read(key: Any) -> Any:
    """The board value under ``key`` from the caller's replica, or None.
    If this process wrote a newer version than the replica shows, the owner
    is asked for its current snapshot (once)."""
    try:
        rows = otp.Registry.lookup(BOARD, key)
    except otp.NoProc:
        raise NotStarted("mabeam is not started (no economics board)") from None
    if not rows:
        return None
    owner, value = rows[0]
    want = _SEEN.get(key)
    if want is None or _seq_of(value) >= want:
        return value
    try:
        fresh = otp.ask(owner, "view", key, timeout=5.0)
    except otp.OTPError:  # the owner is gone or busy: the replica's value is the best there is
        return value
    if fresh is None or _seq_of(fresh) < want:
        _SEEN.pop(key, None)  # the owner restarted and counts from 0 again
    return fresh


def _seq_of(value: Any) -> int:
    if isinstance(value, dict):
        return value.get("seq", 0)
    return getattr(value, "seq", 0)


def announce(topic: Any, payload: Any) -> None:
    """Publish on a pub/sub topic; never fails the publisher."""
    try:
        publish(topic, payload)
    except (otp.OTPError, LookupError) as exc:
        log.debug("economics: could not publish on %r: %r", topic, exc)


@contextmanager
def absent_as(error: EconomicsError) -> Iterator[None]:
    """Raise ``error`` instead of ``otp.NoProc``, or of the server's normal
    exit before it answered.  Any other exit of the server is a crash and
    stays ``otp.CalleeExit``, with its reason."""
    try:
        yield
    except otp.NoProc:
        raise error from None
    except otp.CalleeExit as exc:
        # 'noproc' is the exit reason OTP gives a server that was already gone.
        if otp.is_normal(exc.reason) or exc.reason == "noproc":
            raise error from None
        raise
