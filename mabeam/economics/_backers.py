"""The processes that stand behind bids and orders.

An auction's bids and a market's resting orders stand only while the agent
process behind them lives.  :class:`Backers` monitors one process per
bidder or trader: backing it again with a new process (the agent was
restarted) moves the monitor to that process.  Auctions and markets take
a :class:`otp.DOWN` of a backer as the withdrawal of its bidder, and before
deciding anything they take the DOWNs already queued
(:meth:`Backers.take_queued_exits`), which would otherwise wait behind the
request being served.

Many auctions and markets share one host process, and so one mailbox:
each monitor is entered in the host's ``routes`` (monitor reference ->
the item that owns it), which is how the host hands a DOWN to its item.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

import otp

__all__ = ["Backers"]


class Backers:
    """Monitored processes by the id (bidder, trader) they stand behind."""

    def __init__(self, routes: dict[otp.Ref, Any] | None = None, owner: Any = None) -> None:
        self._by_id: dict[Hashable, tuple[otp.Pid, otp.Ref]] = {}
        self._by_ref: dict[otp.Ref, Hashable] = {}
        self._routes = {} if routes is None else routes
        self._owner = owner

    def __contains__(self, key: object) -> bool:
        return key in self._by_id

    def __bool__(self) -> bool:
        return bool(self._by_id)

    def back(self, key: Hashable, pid: otp.Pid) -> None:
        """Monitor ``pid`` as the process behind ``key`` (a new process
        replaces the one backed before)."""
        known = self._by_id.get(key)
        if known is not None:
            if known[0] == pid:
                return
            self.drop(key)
        ref = otp.monitor(pid)
        self._by_id[key] = (pid, ref)
        self._by_ref[ref] = key
        self._routes[ref] = self._owner

    def get(self, key: Hashable) -> tuple[otp.Pid, otp.Ref] | None:
        """``(pid, monitor ref)`` of the process behind ``key``, or None."""
        return self._by_id.get(key)

    def drop(self, key: Hashable) -> None:
        """Stop watching the process behind ``key`` (its DOWN, if queued, is flushed)."""
        _, ref = self._by_id.pop(key)
        del self._by_ref[ref]
        self._routes.pop(ref, None)
        otp.demonitor(ref, flush=True)

    def exit_of(self, msg: Any) -> tuple[Hashable, Any] | None:
        """``(key, reason)`` if ``msg`` is the DOWN of a backer, else None
        (the backer is still listed: :meth:`drop` it)."""
        if isinstance(msg, otp.DOWN):
            key = self._by_ref.get(msg.ref)
            if key is not None:
                return key, msg.reason
        return None

    def take_queued_exits(self) -> Iterator[tuple[Hashable, Any]]:
        """``(key, reason)`` of each backer whose DOWN is already in the
        mailbox; the caller drops each key before taking the next."""
        while self._by_ref:
            try:
                down = otp.receive(0, lambda m: isinstance(m, otp.DOWN) and m.ref in self._by_ref)
            except otp.Timeout:
                return
            yield self._by_ref[down.ref], down.reason

    def clear(self) -> None:
        """Stop watching every backer."""
        for ref in self._by_ref:
            self._routes.pop(ref, None)
            otp.demonitor(ref, flush=True)
        self._by_id.clear()
        self._by_ref.clear()
