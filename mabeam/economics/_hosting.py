"""What an auction or a market is inside its host process.

A host (:mod:`._host`) holds many auctions and markets, each a
:class:`Hosted` object keyed by its board key (``('auction', id)``,
``('market', id)``).  An item never owns a process; it asks its host
(:class:`HostSide`) for what a process would give it:

* ``routes``: the host's table of monitor and request references -> the
  item that made them, through which the host hands each ``otp.DOWN`` and
  ``otp.Response`` to its item;
* ``writer``: the host's :class:`~._board_writer.BoardWriter` (snapshots
  go out in batches; replies and events go after the snapshots are on the
  board);
* ``send_self`` and ``arm``: a message to the host now or after a delay
  (an ``otp`` timer), as the tuple ``(TIMER, key, serial, what, n)``; the
  host hands it to the item with that key and ``serial`` (the serial tells
  a new item of the same id from the one that armed the timer), in
  :meth:`Hosted.on_timer`;
* ``retire``: the item is closed; it leaves after its ``linger``.

Failure is per item.  The host runs every piece of an item's code under a
guard: an exception the item declares as an answer (:attr:`Hosted.errors`)
goes to the caller; any other is a bug in that item, which then fails
alone (:meth:`Hosted.crash`: logged with its traceback, its callers and
result waiters get the item's typed ``*Crashed`` error, its board entry
says ``failed``), while the host and every other item go on.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Protocol

import otp

from . import _board
from ._board_writer import BoardWriter
from ._errors import EconomicsError

log = logging.getLogger("mabeam.economics")

__all__ = ["TIMER", "DEFAULT_LINGER", "HostSide", "Hosted", "check_linger", "host_call", "log", "new_item_id"]

#: The first element of every message a host sends itself for an item.
TIMER = "$economics"
DEFAULT_LINGER = 30.0


@contextmanager
def host_call(
    item_id: Any, unknown: Callable[[Any], Exception], lost: Callable[[Any, Any], Exception]
) -> Iterator[None]:
    """A call to an item's host: a host that is not there (the item left,
    or was lost earlier) is ``unknown(item_id)``; a host that died during
    the call is ``lost(item_id, reason)``, at once."""
    try:
        yield
    except otp.NoProc:
        raise unknown(item_id) from None
    except otp.CalleeExit as exc:
        if exc.reason == "noproc":  # OTP's reason for a server that was already gone
            raise unknown(item_id) from None
        raise lost(item_id, exc.reason) from None


def host_of(item: Any, ref_type: type, key: Callable[[Any], Any], unknown: Callable[[Any], Exception]) -> otp.Pid:
    """The host of ``item`` (an auction or a market): its ref's (an
    instance of ``ref_type``, which carries its host as ``pid``), or the
    board's owner of ``key(item)`` for an id; ``unknown(item)`` if no host
    has it.  A pid is refused: it is its host's, shared by many items."""
    if isinstance(item, ref_type):
        pid: otp.Pid | None = getattr(item, "pid", None)
        assert pid is not None  # the refs the API returns have their host
        return pid
    if isinstance(item, otp.Pid):
        raise TypeError(f"an item is addressed by its {ref_type.__name__} or its id (a pid is its host's, shared)")
    host = otp.Registry.whereis_name(_board.BOARD, key(item))
    if host is None:
        raise unknown(item)
    return host


_ids = itertools.count(1)
_prefix = uuid.uuid4().hex[:8]


def new_item_id(kind: str) -> str:
    """A fresh id for an item of ``kind`` (``'auction'``, ``'market'``):
    unique across the processes that create items (their pid) and the
    nodes and runs that reuse a pid (a random prefix per process)."""
    return f"{kind}-{_prefix}-{os.getpid()}-{next(_ids)}"


def check_linger(linger: Any, error: type[Exception]) -> float:
    """``linger`` as seconds (a finite number >= 0), else ``error``."""
    if isinstance(linger, bool) or not isinstance(linger, (int, float)) or not math.isfinite(linger) or linger < 0:
        raise error(f"linger must be a finite number of seconds >= 0, got {linger!r}")
    return float(linger)


class HostSide(Protocol):
    """What a host gives its items (see the module doc)."""

    routes: dict[otp.Ref, Hosted]
    writer: BoardWriter

    def send_self(self, item: Hosted, what: str, n: int = 0) -> None: ...

    def arm(self, seconds: float, item: Hosted, what: str, n: int = 0) -> None: ...

    def retire(self, item: Hosted) -> None: ...


class Hosted:
    """An auction or a market inside a host (see the module doc)."""

    #: What an operation of this item raises as its answer; anything else
    #: is a bug that fails the item.
    errors: ClassVar[tuple[type[BaseException], ...]] = (EconomicsError,)
    #: 'auction' or 'market': the first element of the board key.
    kind_of_item: ClassVar[str] = ""

    def __init__(self, host: HostSide, item_id: Any, serial: int, linger: float) -> None:
        self.host = host
        self.item_id = item_id
        self.key = (self.kind_of_item, item_id)
        self.serial = serial
        self.linger = linger
        self.seq = 0
        self.status = "open"
        self.created = time.monotonic()

    # ------------------------------------------------------------ board

    def public(self) -> dict:
        """The public state, as the board shows it."""
        raise NotImplementedError

    def topic(self) -> Any:
        """The item's own pub/sub topic."""
        raise NotImplementedError

    def snapshot(self) -> dict:
        """:meth:`public`, or, if the item's code cannot even show its
        state, a minimal failed view (the failure is the item's: it crashes)."""
        try:
            return self.public()
        except Exception as exc:  # noqa: BLE001 - a bug of this item: it fails alone
            if self.status != "failed":
                self.crash(exc)
            return {**self.minimal_view(), "status": self.status, "seq": self.seq}

    def minimal_view(self) -> dict:
        return {f"{self.kind_of_item}_id": self.item_id}

    def changed(self, what: tuple | None) -> int:
        """A change: the next ``seq``, the snapshot with the next board
        batch, ``what`` on the item's topic after it."""
        self.seq += 1
        self.host.writer.post(self.key, self.snapshot)
        if what is not None:
            self.host.writer.announce(self.topic(), what)
        return self.seq

    # ------------------------------------------------------------ messages

    def take(self, msg: otp.Response | otp.DOWN) -> None:
        """A Response or DOWN whose reference this item entered in the routes."""

    def on_timer(self, what: str, n: int) -> None:
        """A message the item had its host send it (``send_self``, ``arm``)."""

    # ------------------------------------------------------------ failure and end

    def crashed_error(self, crash: otp.Crash) -> EconomicsError:
        raise NotImplementedError

    def crash(self, exc: BaseException) -> EconomicsError:
        """This item's code raised ``exc`` (a bug): log it, fail the item
        (:meth:`fail`), return the typed error for its caller."""
        error = self.crashed_error(otp.Crash.from_exception(exc))
        log.error("economics: %s %r failed; its host goes on", self.kind_of_item, self.item_id, exc_info=exc)
        try:
            self.fail(error)
        except Exception:  # noqa: BLE001 - the item is beyond repair: it leaves at once
            log.exception("economics: %s %r could not fail cleanly", self.kind_of_item, self.item_id)
            self.status = "failed"
            self.stop()
            self.host.retire(self)
        return error

    def fail(self, error: EconomicsError) -> None:
        """Fail with ``error``: answer whoever waits, show it, retire."""
        raise NotImplementedError

    def stop(self) -> None:
        """The item leaves its host: drop its monitors and requests (their
        routes with them).  Must not raise."""
