"""What every economics process shares: its errors, how errors cross process
boundaries, the call helper, the CQRS board, events and telemetry.

Errors.  The rules' errors carry fields (``BidTooLow.amount``,
``InsufficientFunds.available``) and custom ``__init__`` signatures, which
plain pickle cannot rebuild on the receiving side.  Servers therefore reply
``('ok', value)`` or ``('error', packed)`` where ``packed`` holds the class,
``args`` and ``__dict__``; :func:`ask` rebuilds the very same exception type
in the caller, so ``except BidTooLow as e: e.minimum`` works across processes.

The board (AC-22, CQRS).  ``mabeam.economics.board`` is a keyed registry
(unique keys).  Every auction, market and service *owns* its entries and is
their only writer: after each change it writes a plain snapshot (with a
sequence number ``seq``) as its registry value.  Readers look entries up
from their own replica of the registry (``otp.Registry.lookup``), so a read
never queues behind the owner's work (an auction waiting for slow bidders
still answers reads at once).  Read-your-writes: a write through this
package's API remembers the ``seq`` its reply carried, and a read that finds
an older snapshot (the change is still in flight to the caller's replica)
asks the owner once instead.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

import otp

from .._comms import publish

log = logging.getLogger("mabeam.economics")

__all__ = [
    "BOARD",
    "TELEMETRY",
    "EconomicsError",
    "NotStarted",
    "pack",
    "unpack",
    "ok",
    "err",
    "ask",
    "post",
    "read",
    "note_seq",
    "event",
    "emit",
]

BOARD = "mabeam.economics.board"
TELEMETRY = "mabeam.telemetry"

#: Sequence numbers of the writes this process made, per board key (bounded).
_SEEN: collections.OrderedDict = collections.OrderedDict()
_SEEN_MAX = 4096


class EconomicsError(otp.OTPError):
    """Base class of the errors of the economics processes (the rules'
    errors are raised as they are, with their own types)."""


class NotStarted(EconomicsError):
    """MABEAM (``mabeam.start()``) is not running on this node."""


# ------------------------------------------------------------------ errors


def pack(exc: BaseException) -> tuple:
    return ("$exc", type(exc), exc.args, dict(getattr(exc, "__dict__", {})))


def unpack(packed: Any) -> BaseException:
    if isinstance(packed, BaseException):
        return packed
    _, cls, args, attrs = packed
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(attrs)
    return exc


def ok(value: Any) -> tuple:
    return ("ok", value)


def err(exc: BaseException) -> tuple:
    return ("error", pack(exc))


def ask(server: Any, request: Any, timeout: float | None = 5.0, missing: Any = None) -> Any:
    """Call a server that replies ``ok``/``err``; re-raise its error here.
    ``missing`` (an exception) replaces :class:`otp.NoProc` and a normal
    exit of the server before it answered (a server that lingered and
    left); any other exit raises :class:`otp.CalleeExit` with its reason."""
    try:
        status, value = otp.call(server, request, timeout)
    except (otp.NoProc, otp.CalleeExit) as exc:
        if missing is None or not (isinstance(exc, otp.NoProc) or exc.reason in ("normal", "noproc")):
            raise  # a crash of the server is not "missing": its reason is kept
        raise missing from None
    if status == "error":
        raise unpack(value)
    return value


# ------------------------------------------------------------------- board


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
            otp.Registry.register(BOARD, key, value, _metadata(key))
    except (otp.NoProc, otp.Timeout) as exc:
        log.debug("economics: board write of %r dropped: %r", key, exc)


def _metadata(key: Any) -> dict | None:
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
    if want is not None and _seq_of(value) < want:
        try:
            status, fresh = otp.call(owner, ("$view", key), 5.0)
        except otp.CallError:
            return value
        if status != "ok":
            return value
        if fresh is None or _seq_of(fresh) < want:
            _SEEN.pop(key, None)  # the owner restarted and counts from 0 again
        return fresh
    return value


def _seq_of(value: Any) -> int:
    if isinstance(value, dict):
        return value.get("seq", 0)
    return getattr(value, "seq", 0)


# ------------------------------------------------------------------ events


def event(topic: Any, payload: Any) -> None:
    """Publish on a pub/sub topic; never fails the publisher."""
    try:
        publish(topic, payload)
    except (otp.OTPError, LookupError) as exc:
        log.debug("economics: could not publish on %r: %r", topic, exc)


def emit(name: tuple, measurements: dict | None = None, metadata: dict | None = None) -> None:
    """A telemetry event for ``mabeam.telemetry`` (a cast: never blocks, and
    a no-op when the telemetry service is not running)."""
    otp.cast(TELEMETRY, ("emit", ("mabeam", "economics", *name), dict(measurements or {}), dict(metadata or {})))
