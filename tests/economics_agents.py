"""Agents and process bodies for the economics tests (importable by every
start method).

``Bidder`` is configured by its ``args`` dict:

* ``value``: its valuation of the item;
* ``strategy``: how it bids in sealed auctions (``handle_bid``):
  ``'truthful'`` (its value, the default), ``'shade'`` (value times
  ``shade``, default 0.5), ``'decline'`` (None), or ``'bad'`` (a negative
  amount the rules refuse); in an English auction it bids the current
  minimum while that is within its value, then drops out; in a Dutch
  auction it accepts a clock price at or below its (shaded) value;
* ``bundles``: its combinatorial bids, ``[(items, amount), ...]``;
* ``die_on_bid``: SIGKILL itself when asked to bid or offered a price
  (dead with no chance to answer);
* ``raise_on_bid``: its hook raises;
* ``hold``: when asked, tell ``notify`` ``('holding', id)`` and wait for
  ``('release',)`` (at most ``hold_for`` seconds, default 30) before
  answering: a slow bidder the test controls;
* ``notify``: a pid told ``('asked', id, kind, view)`` on every request.
"""

from __future__ import annotations

import os
import signal

import mabeam
import otp
from mabeam import economics


class Bidder(mabeam.Agent):
    capabilities = frozenset({"bidding"})

    def setup(self, args):
        self.args = dict(args or {})
        self.asked = 0

    def _before(self, kind, view):
        a = self.args
        self.asked += 1
        if a.get("notify") is not None:
            otp.send(a["notify"], ("asked", self.agent_id, kind, view))
        if a.get("die_on_bid"):
            os.kill(os.getpid(), signal.SIGKILL)
        if a.get("raise_on_bid"):
            raise RuntimeError(f"{self.agent_id} cannot bid")
        if a.get("hold"):
            otp.send(a["notify"], ("holding", self.agent_id))
            try:
                otp.receive(a.get("hold_for", 30), lambda m: m == ("release",))
            except otp.Timeout:
                pass

    def _limit(self):
        a = self.args
        value = a.get("value", 0)
        return value * a.get("shade", 0.5) if a.get("strategy") == "shade" else value

    def handle_bid(self, view):
        self._before("bid", view)
        a = self.args
        if view["kind"] == "combinatorial":
            return [(frozenset(items), amount) for items, amount in a.get("bundles", [])] or None
        strategy = a.get("strategy", "truthful")
        if strategy == "decline":
            return None
        if strategy == "bad":
            return -1.0
        if view["kind"] == "english":
            minimum = view["minimum_bid"]
            return minimum if minimum <= self._limit() else None
        return self._limit()

    def handle_offer(self, view, price):
        self._before("offer", view)
        if self.args.get("strategy") == "decline":
            return False
        return price <= self._limit()


def start_bidders(specs, restart="permanent"):
    """Register and start ``{agent_id: args}``; returns ``{agent_id: pid}``."""
    pids = {}
    for agent_id, args in specs.items():
        mabeam.register_agent(mabeam.AgentConfig(agent_id, Bidder, args=dict(args), restart=restart))
        pids[agent_id] = mabeam.start_agent(agent_id)
    return pids


# ------------------------------------------------------------------ process bodies


def auction_runner(parent, kind, item, participants, options):
    """Create and run an auction in a process of its own; report the outcome."""
    auction = economics.create_auction(kind, item=item, participants=participants, **options)
    otp.send(parent, ("created", otp.self(), auction))
    otp.send(parent, ("outcome", otp.self(), economics.run(auction, 30)))


def ask_and_report(parent, ids, payload, kind, timeout):
    """Ask ``ids`` as an auction does (``ask_agents``); report each answer
    as ``(error class name or None, value or the error's reason)``."""
    from mabeam.economics._asks import ask_agents
    from mabeam.economics._mechanisms import reason_of

    answers = ask_agents(ids, payload, kind, timeout)
    otp.send(
        parent,
        (
            "answers",
            [(None, a.value) if a.error is None else (type(a.error).__name__, reason_of(a.error)) for a in answers],
        ),
    )


def order_submitter(parent, market, trader, orders):
    """Submit ``[(side, price, quantity), ...]`` in order; report the results."""
    results = [economics.submit_order(market, trader, side, price, qty) for side, price, qty in orders]
    otp.send(parent, ("submitted", otp.self(), results))


def call_and_report(parent, fn_name, *args):
    """Call ``economics.<fn_name>(*args)`` in this process; report
    ``('result', value)`` or ``('raised', failed)``, the exception wrapped in
    ``otp.Failed`` (which carries its class, args and fields, so the rules'
    errors with their own constructors arrive as the same type)."""
    try:
        otp.send(parent, ("result", getattr(economics, fn_name)(*args)))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        otp.send(parent, ("raised", otp.Failed(exc)))


def break_auction(auction_id, method, host):
    """For ``otp.sys.replace_state`` on an economics host: make the
    mechanism ``method`` (``'clear'``, ``'step'``...) of the auction
    ``auction_id`` raise, as a custom mechanism with a bug would."""
    mech = host.items[("auction", auction_id)].mech

    def broken(*args, **kwargs):
        raise ZeroDivisionError(f"{method} of a broken mechanism")

    setattr(mech, method, broken)
    return host


def break_market(market_id, method, host):
    """For ``otp.sys.replace_state`` on an economics host: make the order
    book's ``method`` (``'submit'``...) of the market ``market_id`` raise."""
    book = host.items[("market", market_id)].book

    def broken(*args, **kwargs):
        raise ZeroDivisionError(f"{method} of a broken order book")

    setattr(book, method, broken)
    return host
