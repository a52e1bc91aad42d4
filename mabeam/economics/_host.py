"""Economics hosts: a few long-lived processes that hold every auction and
market of the node.

Why.  An OS process costs megabytes and milliseconds to start (about
3.3 MB and 90 ms), so one process per auction, the Erlang idiom, made
1,000 open auctions cost gigabytes.  Auctions and markets are state
machines instead (:mod:`._auction`, :mod:`._market`), held by
``otp.partition_supervisor.default_partitions()`` hosts under the
partition supervisor :data:`HOSTS` (``'mabeam.economics.hosts'``); an
item lives on the host of its id's partition, or, while that host
restarts, on the next live one (:func:`placed_call`).  Its board entry
(owner: the host) is how callers find it afterwards.

A host is an :class:`otp.Service`: each operation names its item by id
(``bid(auction_id, ...)``), and the host runs the item's code for it.  The
items do not block each other:

* the host never waits on an agent: a driven auction asks its agents with
  asynchronous requests and takes the answers as messages (routed to the
  item by reference), with an ``otp`` timer for its bid timeout;
* an exception in an item's code fails that item alone (see
  :mod:`._hosting`): its caller gets ``AuctionCrashed``/``MarketCrashed``,
  the host and the other items go on;
* a ``run`` caller waits on a deferred reply; the host monitors it and
  forgets it if it dies.

A host writes its items' board entries in batches (:mod:`._board_writer`)
and answers a call that changed something once the board shows the
change, so the board is as current for everyone as a call's answer.

A host that dies (SIGKILL) takes its items with it: a caller in a call to
it gets ``otp.CalleeExit`` at once, which the API raises as
``AuctionLost``/``MarketLost``; a process awaiting an auction's result
monitors the host (:func:`~._auction_api.await_auction_result`); the
registry drops the host's board entries; the partition supervisor starts
the host again, empty; new items go to live hosts meanwhile.

Memory is bounded: a closed item stays ``linger`` seconds (a finite
number), and a host keeps at most :data:`MAX_LINGERING` closed items: past
that, the oldest leave first.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import otp

from ._auction import Auction
from ._auction_data import AuctionSpec, Cleared, DuplicateAuction, UnknownAuction
from ._board_writer import BoardWriter
from ._errors import EconomicsError, NotStarted
from ._hosting import TIMER, Hosted, log
from ._market import Cancelled, DuplicateMarket, Market, MarketOutcome, MarketSpec, OrderResult, UnknownMarket
from .orderbook import Side, Trade

__all__ = ["HOSTS", "EconomicsHost", "MAX_LINGERING", "child_spec", "placed_call"]

#: The partition supervisor of the hosts; host ``i`` is the node name ``(HOSTS, i)``.
HOSTS = "mabeam.economics.hosts"
#: Closed items one host keeps readable at most (the oldest leave first).
MAX_LINGERING = 10_000

T = TypeVar("T")

#: Operations that only read: answered at once, not after the board writes.
_READS = frozenset({"view", "count_items", "trades"})


class EconomicsHost(otp.Service):
    """One host (see the module doc)."""

    # The items' answers (EconomicsError; the market's ValueError and a
    # budget service that did not answer) go to the caller.
    errors: ClassVar[tuple[type[BaseException], ...]] = (EconomicsError, ValueError, otp.OTPError)

    def init(self, partition: int) -> None:
        self.partition = partition
        self.me = otp.self()
        self.items: dict[tuple, Hosted] = {}
        self.routes: dict[otp.Ref, Hosted] = {}
        self.writer = BoardWriter(self._clashed)
        self.lingering: OrderedDict[tuple, None] = OrderedDict()
        self.max_lingering = MAX_LINGERING
        self.serials = itertools.count(1)

    # ------------------------------------------------------------ what items get

    def send_self(self, item: Hosted, what: str, n: int = 0) -> None:
        otp.send(self.me, (TIMER, item.key, item.serial, what, n))

    def arm(self, seconds: float, item: Hosted, what: str, n: int = 0) -> None:
        otp.send_after(seconds, self.me, (TIMER, item.key, item.serial, what, n))

    def retire(self, item: Hosted) -> None:
        """``item`` is closed: it leaves after its linger (at once for 0)."""
        if item.key in self.lingering or self.items.get(item.key) is not item:
            return
        if item.linger <= 0:
            self._remove(item)
            return
        self.lingering[item.key] = None
        self.arm(item.linger, item, "expire")
        while len(self.lingering) > self.max_lingering:
            self._remove(self.items[next(iter(self.lingering))])

    def _clashed(self, key: tuple) -> None:
        """The board refused ``key``: another host holds an item with this id."""
        item = self.items.pop(key, None)
        self.lingering.pop(key, None)
        if item is not None:
            item.stop()

    def _remove(self, item: Hosted) -> None:
        del self.items[item.key]
        self.lingering.pop(item.key, None)
        self.writer.remove(item.key)
        try:
            item.removed()  # type: ignore[attr-defined]  # every Hosted subclass has it
        except Exception:  # noqa: BLE001 - it is gone either way
            log.exception("economics: %r did not leave cleanly", item.key)

    # ------------------------------------------------------------ running item code

    def _item(self, kind: str, item_id: Any) -> Any:
        item = self.items.get((kind, item_id))
        if item is None:
            raise (UnknownAuction if kind == "auction" else UnknownMarket)(item_id)
        return item

    def _guarded(self, item: Hosted, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` of ``item`` for a caller: the item's declared errors
        are the caller's answer; anything else fails the item alone."""
        try:
            return fn(*args)
        except item.errors:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug of this item: it fails alone
            raise item.crash(exc) from None

    def _guarded_info(self, item: Hosted, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn`` of ``item`` for a message: any exception fails the item."""
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - a bug of this item: it fails alone
            item.crash(exc)

    def _open(self, item: Hosted) -> Any:
        """Start a new item; its creator is answered once the item is on
        the board (its id must be free on every host: see ``_board_writer``)."""
        duplicate = (DuplicateAuction if isinstance(item, Auction) else DuplicateMarket)(item.item_id)
        if item.key in self.items:
            raise duplicate
        assert self.caller is not None  # set while an operation runs
        self.items[item.key] = item
        try:
            self._guarded(item, item.opened)  # type: ignore[attr-defined]  # every Hosted subclass has it
        except EconomicsError:  # it failed at once: on the board all the same, its creator gets the error
            self.writer.register(item.key, item.snapshot, None, None, duplicate)
            raise
        self.writer.register(item.key, item.snapshot, self.caller, None, duplicate)
        return otp.DEFER

    # ------------------------------------------------------------ auctions

    @otp.operation
    def create_auction(self, spec: AuctionSpec) -> None:
        """Answered once the auction is on the board (see :meth:`_open`)."""
        return self._open(Auction(self, spec, next(self.serials)))

    @otp.operation
    def bid(self, auction_id: Any, bidder: Any, payload: Any) -> int:
        auction = self._item("auction", auction_id)
        return self._guarded(auction, auction.bid, bidder, payload)

    @otp.operation
    def run(self, auction_id: Any) -> Cleared:
        auction = self._item("auction", auction_id)
        assert self.caller is not None  # set while an operation runs
        cleared = self._guarded(auction, auction.run, self.caller)
        return otp.DEFER if cleared is None else cleared

    @otp.operation
    def close(self, auction_id: Any) -> Cleared:
        auction = self._item("auction", auction_id)
        return self._guarded(auction, auction.close)

    @otp.operation
    def notify_result(self, auction_id: Any, pid: otp.Pid, tag: Any) -> None:
        auction = self._item("auction", auction_id)
        self._guarded(auction, auction.notify_result, pid, tag)

    # ------------------------------------------------------------ markets

    @otp.operation
    def create_market(self, spec: MarketSpec) -> None:
        """Answered once the market is on the board (see :meth:`_open`)."""
        return self._open(Market(self, spec, next(self.serials)))

    @otp.operation
    def order(
        self, market_id: Any, trader: Any, side: Side, price: float | None, quantity: int, order_id: Any
    ) -> OrderResult:
        market = self._item("market", market_id)
        return self._guarded(market, market.order, trader, side, price, quantity, order_id)

    @otp.operation
    def cancel(self, market_id: Any, order_id: Any, trader: Any) -> Cancelled:
        market = self._item("market", market_id)
        return self._guarded(market, market.cancel, order_id, trader)

    @otp.operation
    def close_market(self, market_id: Any) -> MarketOutcome:
        market = self._item("market", market_id)
        return self._guarded(market, market.close)

    @otp.operation
    def trades(self, market_id: Any) -> list[Trade]:
        market = self._item("market", market_id)
        return self._guarded(market, market.trades)

    # ------------------------------------------------------------ reads

    @otp.operation
    def view(self, key: tuple) -> dict | None:
        """An item's current public state (the board's read-your-writes
        fallback), or None."""
        item = self.items.get(key)
        return None if item is None else item.snapshot()

    @otp.operation
    def count_items(self) -> dict:
        """How many auctions and markets this host holds, and how many of
        them are closed and lingering."""
        auctions = sum(1 for key in self.items if key[0] == "auction")
        return {"auctions": auctions, "markets": len(self.items) - auctions, "lingering": len(self.lingering)}

    # ------------------------------------------------------------ messages

    def handle_info(self, msg: Any, state: Any) -> Any:
        if type(msg) is otp.Response or type(msg) is otp.DOWN:
            item = self.routes.get(msg.ref)
            if item is not None:
                if self.items.get(item.key) is item:
                    self._guarded_info(item, item.take, msg)
                else:
                    del self.routes[msg.ref]  # an item that left
        elif type(msg) is tuple and len(msg) == 5 and msg[0] == TIMER:
            _, key, serial, what, n = msg
            item = self.items.get(key)
            if item is not None and item.serial == serial:
                if what == "expire":
                    self._remove(item)
                else:
                    self._guarded_info(item, item.on_timer, what, n)
        elif msg == "timeout":  # the batch is due
            self.writer.flush()
        else:
            log.debug("economics host %d: unexpected message %r", self.partition, msg)
        return otp.NoReply(state, self.next_action())

    def handle_call(self, request: Any, from_: tuple, state: Any) -> Any:
        """An answer waits for the board batch that holds the changes
        before it, if any (see ``_board_writer``; a read does not wait)."""
        result = super().handle_call(request, from_, state)
        if (
            type(result) is otp.Reply
            and self.writer.pending
            and not (type(request) is otp.Request and request.op in _READS)
        ):
            self.writer.reply(from_, result.reply)
            return otp.NoReply(state, self.next_action())
        return result

    def next_action(self) -> float | None:
        """The board batch is written when it is due: when no message
        waits (a timeout of 0) if somebody waits on it, else after a delay;
        at once after a message that finds it overdue (under load the
        mailbox may never be empty)."""
        writer = self.writer
        wait = writer.flush_in()
        if wait is None:
            return None
        if wait <= 0.0:
            writer.flush()
            return None
        return 0 if writer.waited_on else wait


def child_spec() -> otp.ChildSpec:
    """The hosts under their partition supervisor (one partition per core,
    at least 2), each started with its partition number."""
    host = EconomicsHost.child_spec(0, id="host")
    return otp.PartitionSupervisor.child_spec(
        host, name=HOSTS, with_arguments=_partition_args, intensity=10, period=10.0
    )


def _partition_args(args: tuple, partition: int) -> tuple:
    return (partition, *args[1:])


def placed_call(key: tuple, op: str, *args: Any, timeout: float | None = 5.0) -> tuple[otp.Pid, Any]:
    """Run ``op(*args)`` on the host of ``key``'s partition, or, if that
    host is not there (restarting) or dies before it answers, on the next
    live one; returns the host that answered and its answer.  Raises
    ``NotStarted`` without hosts, the operation's own error, or the last
    host's exit."""
    try:
        count = otp.partition_supervisor.partitions(HOSTS)
        first = otp.partition_supervisor.partition_of(HOSTS, key)
    except otp.NoProc:
        raise NotStarted("mabeam is not started (no economics hosts)") from None
    last: otp.CallError | None = None
    for i in range(count):
        host = otp.whereis((HOSTS, (first + i) % count))
        if host is None:
            continue
        try:
            answer = otp.ask(host, op, *args, timeout=timeout)
        except (otp.NoProc, otp.CalleeExit) as exc:  # it died: its items are gone, this one goes elsewhere
            last = exc
            continue
        return host, answer
    if last is not None:
        raise last
    raise NotStarted("no economics host is running (all are restarting)")
