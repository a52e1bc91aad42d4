"""An in-process event bus with ``:telemetry`` semantics: prefix handlers, failing handlers detached.

Why this shape:

* ``emit`` runs the handlers synchronously in the emitter, in attach order.  A handler
  that raises is detached and reported (a ``HandlerFailure`` kept in a bounded list, an
  optional ``on_failure`` callback, and a log record), exactly like Erlang's
  ``:telemetry``: one broken handler must never break the code that emits, and must not
  keep failing on every event.
* Handlers match by *prefix* of the event name (a tuple of strings), so a handler on
  ``("mabeam", "agent")`` sees ``("mabeam", "agent", "started")`` and every sibling.
* A handler attached to a misspelt event name never fires, and nothing says so.
  ``declare()`` + ``strict=True`` make both sides name events from one catalogue: in strict
  mode emitting an undeclared event, or attaching to a prefix no declared event has, raises
  at once.  In either mode ``unmatched_handlers()`` lists handlers no declared event reaches.

Thread safety: attach/detach replace the handler table under a lock (copy on write), so
``emit`` reads a consistent snapshot without holding the lock while handlers run; a
handler may therefore attach or detach (even itself) from inside ``emit``.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .._errors import MabeamError

__all__ = [
    "EventBusError",
    "InvalidEventName",
    "DuplicateHandler",
    "UndeclaredEvent",
    "UnknownEventPrefix",
    "EventName",
    "Handler",
    "HandlerInfo",
    "HandlerFailure",
    "EventBus",
]

EventName = tuple[str, ...]
Handler = Callable[[EventName, Mapping[str, Any], Mapping[str, Any]], None]

_log = logging.getLogger(__name__)
_EMPTY: Mapping[str, Any] = MappingProxyType({})


class EventBusError(MabeamError):
    """Base class of the event bus errors."""


class InvalidEventName(EventBusError, ValueError):
    """An event name or prefix is not a tuple of non-empty strings."""


class DuplicateHandler(EventBusError, ValueError):
    """A handler id is already attached; ids are unique so that ``detach`` is unambiguous."""


class UndeclaredEvent(EventBusError, LookupError):
    """Strict mode: an event was emitted that is not in the declared catalogue."""


class UnknownEventPrefix(EventBusError, LookupError):
    """Strict mode: a handler was attached to a prefix that no declared event starts with."""


@dataclass(frozen=True)
class HandlerInfo:
    handler_id: Hashable
    prefixes: tuple[EventName, ...]
    fn: Handler


@dataclass(frozen=True)
class HandlerFailure:
    """Why a handler was detached: the event it failed on and the exception it raised."""

    handler_id: Hashable
    event: EventName
    error: Exception
    traceback: str


def _event_name(name: object, *, allow_empty: bool) -> EventName:
    if not isinstance(name, tuple) or not all(isinstance(p, str) and p for p in name):
        raise InvalidEventName(f"event names are tuples of non-empty strings, got {name!r}")
    if not name and not allow_empty:
        raise InvalidEventName("an event name cannot be empty")
    return name


class EventBus:
    """Attach handlers to event-name prefixes and emit events to them (see module doc)."""

    def __init__(
        self,
        *,
        strict: bool = False,
        declared: Iterable[EventName] = (),
        failure_limit: int = 100,
        on_failure: Callable[[HandlerFailure], None] | None = None,
    ) -> None:
        if failure_limit < 1:
            raise ValueError(f"failure_limit must be >= 1, got {failure_limit}")
        self.strict = strict
        self._on_failure = on_failure
        self._lock = threading.Lock()
        self._declared: frozenset[EventName] = frozenset()
        self._declared_prefixes: frozenset[EventName] = frozenset()
        # (handler_id -> (sequence, info), prefix -> handler ids): replaced as one tuple, never
        # mutated, so a reader always sees both halves from the same moment.
        self._table: tuple[dict[Hashable, tuple[int, HandlerInfo]], dict[EventName, tuple[Hashable, ...]]] = ({}, {})
        self._seq = 0
        self._failures: deque[HandlerFailure] = deque(maxlen=failure_limit)
        self.declare(*declared)

    # -- catalogue ------------------------------------------------------------------------
    def declare(self, *events: EventName) -> None:
        """Add events to the catalogue that strict mode and ``unmatched_handlers`` check against."""
        names = [_event_name(e, allow_empty=False) for e in events]
        with self._lock:
            self._declared = self._declared | frozenset(names)
            self._declared_prefixes = self._declared_prefixes | frozenset(
                n[:i] for n in names for i in range(len(n) + 1)
            )

    @property
    def declared(self) -> frozenset[EventName]:
        return self._declared

    # -- handlers -------------------------------------------------------------------------
    def attach(self, handler_id: Hashable, event_prefix: EventName, fn: Handler) -> None:
        """Call ``fn(event, measurements, metadata)`` for every event starting with ``event_prefix``."""
        self.attach_many(handler_id, (event_prefix,), fn)

    def attach_many(self, handler_id: Hashable, event_prefixes: Iterable[EventName], fn: Handler) -> None:
        """One handler id for several prefixes; an event matching two of them is delivered once."""
        prefixes = tuple(dict.fromkeys(_event_name(p, allow_empty=True) for p in event_prefixes))
        if not prefixes:
            raise InvalidEventName("attach_many needs at least one prefix")
        if not callable(fn):
            raise TypeError(f"handler {handler_id!r} is not callable: {fn!r}")
        with self._lock:
            if handler_id in self._table[0]:
                raise DuplicateHandler(f"handler id {handler_id!r} is already attached")
            if self.strict:
                unknown = [p for p in prefixes if p not in self._declared_prefixes]
                if unknown:
                    raise UnknownEventPrefix(f"no declared event starts with {unknown[0]!r}")
            self._seq += 1
            handlers = dict(self._table[0])
            handlers[handler_id] = (self._seq, HandlerInfo(handler_id, prefixes, fn))
            by_prefix = dict(self._table[1])
            for p in prefixes:
                by_prefix[p] = by_prefix.get(p, ()) + (handler_id,)
            self._table = (handlers, by_prefix)

    def detach(self, handler_id: Hashable) -> bool:
        """Remove a handler; False if it was not attached (already detached is not an error)."""
        with self._lock:
            return self._detach_locked(handler_id, None)

    def _detach_locked(self, handler_id: Hashable, expected: HandlerInfo | None) -> bool:
        entry = self._table[0].get(handler_id)
        if entry is None or (expected is not None and entry[1] is not expected):
            return False
        handlers = dict(self._table[0])
        del handlers[handler_id]
        by_prefix = dict(self._table[1])
        for p in entry[1].prefixes:
            rest = tuple(h for h in by_prefix[p] if h != handler_id)
            if rest:
                by_prefix[p] = rest
            else:
                del by_prefix[p]
        self._table = (handlers, by_prefix)
        return True

    def handlers(self, prefix: EventName = ()) -> list[HandlerInfo]:
        """Handlers with a prefix that starts with ``prefix`` (like ``:telemetry.list_handlers``)."""
        prefix = _event_name(prefix, allow_empty=True)
        entries = sorted(self._table[0].values(), key=lambda e: e[0])
        return [info for _, info in entries if any(p[: len(prefix)] == prefix for p in info.prefixes)]

    def handlers_for(self, event: EventName) -> list[HandlerInfo]:
        """The handlers ``emit(event, ...)`` would call, in call order."""
        handlers, by_prefix = self._table
        ids = {h for i in range(len(event) + 1) for h in by_prefix.get(event[:i], ())}
        return [info for _, info in sorted((handlers[h] for h in ids), key=lambda e: e[0])]

    def unmatched_handlers(self) -> list[HandlerInfo]:
        """Handlers with a prefix no declared event starts with: the "never fires" diagnostic."""
        declared = self._declared_prefixes
        return [
            info
            for _, info in sorted(self._table[0].values(), key=lambda e: e[0])
            if any(p not in declared for p in info.prefixes)
        ]

    # -- emitting -------------------------------------------------------------------------
    def emit(
        self, event: EventName, measurements: Mapping[str, Any] | None = None, metadata: Mapping[str, Any] | None = None
    ) -> int:
        """Deliver the event to every matching handler; returns how many ran without raising.

        Handlers get read-only views, so one cannot change what the next one sees.
        """
        event = _event_name(event, allow_empty=False)
        if self.strict and event not in self._declared:
            raise UndeclaredEvent(f"event {event!r} is not declared")
        m = MappingProxyType(dict(measurements)) if measurements else _EMPTY
        md = MappingProxyType(dict(metadata)) if metadata else _EMPTY
        delivered = 0
        for info in self.handlers_for(event):
            current = self._table[0].get(info.handler_id)
            if current is None or current[1] is not info:  # detached by an earlier handler
                continue
            try:
                info.fn(event, m, md)
            except Exception as exc:  # noqa: BLE001 - isolating handlers is the point
                self._fail(info, event, exc)
            else:
                delivered += 1
        return delivered

    def _fail(self, info: HandlerInfo, event: EventName, exc: Exception) -> None:
        with self._lock:
            if not self._detach_locked(info.handler_id, info):
                return  # already detached (or re-attached anew) by someone else
        failure = HandlerFailure(
            info.handler_id, event, exc, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        )
        self._failures.append(failure)
        _log.error("telemetry handler %r failed on %r and was detached: %r", info.handler_id, event, exc)
        if self._on_failure is not None:
            try:
                self._on_failure(failure)
            except Exception:  # noqa: BLE001 - the reporter must not break the emitter either
                _log.exception("on_failure callback raised while reporting %r", info.handler_id)

    @property
    def failures(self) -> tuple[HandlerFailure, ...]:
        """The most recent handler failures, oldest first (bounded by ``failure_limit``)."""
        return tuple(self._failures)
