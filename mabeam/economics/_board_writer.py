"""How a host writes its items to the economics board: in batches, and
nobody hears of a change before the board shows it.

A board write is a round trip to the board's registry process (hundreds
of microseconds on a loaded machine).  One per change would cost a host
more than the changes themselves, so a host marks what changed
(:class:`BoardWriter`) and writes the batch in one pipelined request to
the board (about one round trip, whatever its size), then sends what the
batch held back: its replies to its callers, result messages, topic
publications, telemetry.

The rule: a reply or an event never overtakes a board write that precedes
it.  A host answers every call that may have changed something after the
batch that holds the change is on the board, so a caller that got its
answer, and anyone it tells, reads that change on the board, and a
subscriber that hears of a change finds it there (as when every item was
a process that wrote before it answered).  A batch that holds a reply or a
message is written as soon as the host has no message waiting (group
commit: the requests that arrived together share one write), or
:data:`URGENT_DELAY` after the first one under a steady load; a batch of
changes nobody waits for (a withdrawal after a DOWN, a round of a driven
auction) waits up to :data:`BATCH_DELAY` for company.

The snapshots are taken when the batch is written: the newest state of
each item, once per batch.  A registration can fail: another host holds
the id.  Its creator then gets the item's ``Duplicate*`` error and the host
drops the item (``on_clash``).  A board that is not there answers creators
with ``NotStarted``; the other writes are dropped (the next ones repair the
entries; one the board lost, after a restart, is registered again).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import otp

from ..telemetry import emit_event
from ._board import BOARD, announce, log, metadata_of
from ._errors import NotStarted

__all__ = ["BoardWriter", "BATCH_DELAY", "URGENT_DELAY"]

#: A batch nobody waits for is written once its oldest change is this old.
BATCH_DELAY = 0.010
#: A batch somebody waits for (a reply, a message) is written when the host
#: has no message waiting, or once the first wait is this old.
URGENT_DELAY = 0.001
#: ... or once it holds this many changes, or replies and messages.
BATCH_ITEMS = 64


class _Registration(NamedTuple):
    snapshot: Callable[[], Any]
    caller: tuple | None
    answer: Any
    clash: BaseException


class BoardWriter:
    """What changed since the last batch, and what waits on it (see the
    module doc).  ``on_clash(key)`` is called for a registration another
    host's entry refused."""

    def __init__(self, on_clash: Callable[[Any], None]) -> None:
        self._on_clash = on_clash
        self._new: dict[Any, _Registration] = {}
        self._views: dict[Any, Callable[[], Any]] = {}
        self._gone: dict[Any, None] = {}
        self._events: list[tuple] = []
        self._since: float | None = None
        self._waited_since: float | None = None

    @property
    def pending(self) -> bool:
        """True if something is not written yet."""
        return self._since is not None

    @property
    def waited_on(self) -> bool:
        """True if somebody waits on the batch (a reply, a message)."""
        return self._waited_since is not None

    def flush_in(self) -> float | None:
        """Seconds until the batch must be written even with messages
        waiting (0: now; None: nothing pending)."""
        since = self._since
        if since is None:
            return None
        if len(self._views) + len(self._events) >= BATCH_ITEMS:
            return 0.0
        waited = self._waited_since
        deadline = since + BATCH_DELAY if waited is None else min(since + BATCH_DELAY, waited + URGENT_DELAY)
        return max(0.0, deadline - time.monotonic())

    def _mark(self) -> None:
        if self._since is None:
            self._since = time.monotonic()

    def _waited(self) -> None:
        if self._waited_since is None:
            self._waited_since = time.monotonic()
        self._mark()

    def register(
        self, key: Any, snapshot: Callable[[], Any], caller: tuple | None, answer: Any, clash: BaseException
    ) -> None:
        """Register ``key`` for this process with the next batch, then
        answer ``caller`` (if any) ``Ok(answer)``, or ``clash`` if the key
        is taken."""
        self._gone.pop(key, None)
        self._views.pop(key, None)
        self._new[key] = _Registration(snapshot, caller, answer, clash)
        self._waited()

    def post(self, key: Any, snapshot: Callable[[], Any]) -> None:
        """Write ``snapshot()`` (which must not raise) under ``key`` with the next batch."""
        if key not in self._new:
            self._views[key] = snapshot
        self._mark()

    def remove(self, key: Any) -> None:
        """Unregister ``key`` with the next batch."""
        self._views.pop(key, None)
        self._gone[key] = None
        self._mark()

    def reply(self, caller: tuple, reply: Any) -> None:
        """``otp.reply(caller, reply)`` once the batch is written."""
        self._events.append(("reply", caller, reply))
        self._waited()

    def send(self, dest: Any, msg: Any) -> None:
        """``otp.send(dest, msg)`` once the batch is written."""
        self._events.append(("send", dest, msg))
        self._waited()

    def announce(self, topic: Any, event: Any) -> None:
        """Publish ``event`` on ``topic`` once the batch is written."""
        self._events.append(("publish", topic, event))
        self._mark()

    def emit(self, event: tuple, measurements: dict, metadata: dict) -> None:
        """A telemetry event (see ``emit_event``), once the batch is written."""
        self._events.append(("emit", event, (measurements, metadata)))
        self._mark()

    def flush(self) -> None:
        """Write the batch (the snapshots taken now), then send what waited on it."""
        while self._since is not None:  # a snapshot that failed its item changed more
            new, views, gone, events = self._new, self._views, self._gone, self._events
            self._new, self._views, self._gone, self._events = {}, {}, {}, []
            self._since = self._waited_since = None
            me = otp.self()
            requests: list[tuple[str, tuple]] = [
                ("register", (key, me, r.snapshot(), metadata_of(key))) for key, r in new.items()
            ]
            requests += [("update_value", (key, me, snapshot())) for key, snapshot in views.items()]
            requests += [("unregister", (key, me)) for key in gone]
            failed = _write(me, requests, list(new))
            for key, r in new.items():
                if key in failed:
                    error = failed[key]
                    if r.caller is not None:
                        otp.Service.answer_error(
                            r.caller, r.clash if isinstance(error, otp.AlreadyRegistered) else error
                        )
                    self._on_clash(key)
                elif r.caller is not None:
                    otp.Service.answer(r.caller, r.answer)
            for kind, dest, what in events:  # the waiting callers first
                if kind == "reply":
                    otp.reply(dest, what)
                elif kind == "send":
                    otp.send(dest, what)
            for kind, dest, what in events:
                if kind == "publish":
                    announce(dest, what)
                elif kind == "emit":
                    emit_event(dest, *what)


def _write(me: otp.Pid, requests: list[tuple[str, tuple]], registered: list) -> dict[Any, BaseException]:
    """Write the batch; returns the keys whose registration failed, with why."""
    if not requests:
        return {}
    try:
        otp.Registry._client(BOARD).request_many(requests)  # pipelined: about one round trip
    except (otp.NoProc, otp.Timeout, otp.CalleeExit) as exc:
        log.debug("economics: a board batch of %d writes was dropped: %r", len(requests), exc)
        missing = NotStarted("the economics board is not running")
        return dict.fromkeys(registered, missing)
    except (otp.OTPError, LookupError):  # one write failed: write each on its own, to know which
        return _write_each(me, requests)
    return {}


def _write_each(me: otp.Pid, requests: list[tuple[str, tuple]]) -> dict[Any, BaseException]:
    client = otp.Registry._client(BOARD)
    failed: dict[Any, BaseException] = {}
    for op, args in requests:
        key = args[0]
        if key in failed:
            continue
        try:
            client.request(op, *args)
        except otp.AlreadyRegistered as exc:
            failed[key] = exc
        except LookupError:
            if op == "update_value":  # an entry the board lost (it restarted): registered again
                try:
                    client.request("register", key, me, args[2], metadata_of(key))
                except otp.OTPError as exc:
                    log.debug("economics: board entry %r could not be written again: %r", key, exc)
        except otp.OTPError as exc:
            if op == "register":
                failed[key] = exc
            log.debug("economics: board write %s %r failed: %r", op, key, exc)
    return failed
