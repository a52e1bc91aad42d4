"""The collector's side of supervisors: subscribing, listing, reading specs.

Every question to a supervisor is an asynchronous request
(``otp.send_request``): a supervisor busy restarting a child answers when
it can, and the collector serves its viewers meanwhile.  Answers come back
as messages, which the collector hands to :meth:`Follower.handle`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .. import _api
from .._child_spec import ChildSpec
from .._errors import CallError
from .._pid import Pid, Ref
from .._reasons import DOWN, Response
from .._requests import NO_REPLY, RequestIdCollection, check_any_response, send_request
from .._service import Failed, Ok, Request
from ._inspect import behaviour_of
from ._records import TreeChanged
from ._tree import Change, Forest, reason_text

log = logging.getLogger("otp.observer")

__all__ = ["Follower", "SUPERVISOR_EVENT"]

SUPERVISOR_EVENT = "$supervisor"

Label = tuple[str, Pid, object]


class Follower:
    """The forest, and the requests in flight that feed it.  ``on_change``
    is called with each :class:`TreeChanged` worth telling watchers;
    ``on_counts`` with each change's exits and restarts."""

    def __init__(self, on_change: Callable[[TreeChanged], None], on_counts: Callable[[Change], None]) -> None:
        self.forest = Forest()
        self.requests: RequestIdCollection[Label] = RequestIdCollection()
        self.monitors: dict[Ref, Pid] = {}
        self.listing: set[Pid] = set()  # supervisors with a which_children in flight
        self.asking_spec: set[tuple[Pid, object]] = set()
        self.on_change = on_change
        self.on_counts = on_counts

    def _ask(self, sup: Pid, op: str, args: tuple, label: Label) -> None:
        self.requests.add(send_request(sup, Request(op, args, {})), label)

    def add_root(self, pid: Pid, origin: str, label: str) -> None:
        if self.forest.add_root(pid, origin, label):
            self._follow(pid)
            self._changed(pid, "followed", None, pid, None)

    def _follow(self, pid: Pid) -> None:
        self.monitors[_api.monitor(pid)] = pid
        self._ask(pid, "subscribe", (_api.self_(),), ("subscribe", pid, None))
        self._list(pid)

    def _list(self, pid: Pid) -> None:
        if pid not in self.listing:
            self.listing.add(pid)
            self._ask(pid, "which_children", (), ("list", pid, None))

    def _changed(self, sup: Pid, event: str, child_id: object, pid: Pid | None, reason: str | None) -> None:
        self.on_change(TreeChanged(self.forest.version, sup, event, child_id, pid, reason))

    def _apply(self, change: Change, sup: Pid) -> None:
        for pid in change.follow:
            self._follow(pid)
        if change.forget:
            gone = set(change.forget)
            for ref, pid in list(self.monitors.items()):
                if pid in gone:
                    del self.monitors[ref]
                    _api.demonitor(ref, flush=True)
            self.listing -= gone
        if change.relist:
            self._list(sup)
        if change.exits or change.restarts:
            self.on_counts(change)

    # ------------------------------------------------------------ messages

    def handle(self, msg: object) -> bool:
        """Take ``msg`` if it is a supervisor event, an answer of ours or
        the death of a followed supervisor; False if it is none of those."""
        if type(msg) is tuple and len(msg) >= 3 and msg[0] == SUPERVISOR_EVENT and isinstance(msg[1], Pid):
            self._event(msg[1], str(msg[2]), msg[3:])
            return True
        if isinstance(msg, DOWN) and msg.ref in self.monitors:
            pid = self.monitors.pop(msg.ref)
            change = self.forest.forget(pid)
            self._apply(change, pid)
            self._changed(pid, "dropped", None, pid, None)
            return True
        if isinstance(msg, (Response, DOWN)) and len(self.requests):
            return self._answer(msg)
        return False

    def _event(self, sup: Pid, event: str, details: tuple) -> None:
        change = self.forest.event(sup, event, details)
        self._apply(change, sup)
        if change.changed:
            child_id = details[0] if details else None
            pid = details[1] if len(details) > 1 and isinstance(details[1], Pid) else None
            reason = None
            if event == "exited" and len(details) > 2:
                reason = reason_text(details[2])
            self._changed(sup, event, child_id, pid, reason)

    def _answer(self, msg: Response | DOWN) -> bool:
        try:
            answer = check_any_response(msg, self.requests)
        except CallError as exc:
            self._failed(getattr(exc, "label", None))
            return True
        if answer is NO_REPLY:
            return False
        value, (kind, sup, extra), _ = answer
        if isinstance(value, Failed):
            self._failed((kind, sup, extra))
            return True
        value = value.value if isinstance(value, Ok) else value
        if kind == "list":
            self.listing.discard(sup)
            change = self.forest.listed(sup, value)
            self._apply(change, sup)
            self._changed(sup, "listed", None, None, None)
            self._ask_specs(sup)
        elif kind == "spec" and isinstance(value, ChildSpec):
            self.asking_spec.discard((sup, extra))
            behaviour, callback = behaviour_of(value)
            self.forest.set_spec(sup, None if isinstance(extra, Pid) else extra, behaviour, callback)
            self._changed(sup, "spec", extra, None, None)
        return True

    def _failed(self, label: Label | None) -> None:
        if label is None:
            return
        kind, sup, extra = label
        if kind == "spec":
            self.asking_spec.discard((sup, extra))
            self.forest.set_spec(sup, None if isinstance(extra, Pid) else extra, None, None)
        elif kind == "list":
            self.listing.discard(sup)

    def _ask_specs(self, sup: Pid) -> None:
        for child in self.forest.missing_specs(sup):
            if (sup, child) not in self.asking_spec:
                self.asking_spec.add((sup, child))
                self._ask(sup, "get_childspec", (child,), ("spec", sup, child))
