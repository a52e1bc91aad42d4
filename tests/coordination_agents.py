"""Agents and process bodies for the coordination tests (importable by
every start method).

``CoordAgent`` is configured by its ``args`` dict:

* ``vote``: what ``handle_vote`` answers (default ``'approve'``);
* ``die_on_vote``: SIGKILL itself when asked to vote (a crash in the middle
  of a session, with no chance to answer);
* ``hold``: on a vote, tell ``notify`` ``('holding', id)`` and block until
  it gets ``('release',)`` (at most 30 s): a session that cannot finish
  until the test says so;
* ``sleep``: seconds to work on a vote;
* ``estimate``: its answer to ``('estimate', question)``;
* ``priority``: its answer to ``('election', ...)`` (None declines);
  ``hold_election``: hold that answer as ``hold`` holds a vote;
* ``words``: its first proposal in iterative refinement; afterwards it
  proposes the words that at least half of the previous proposals had,
  unless ``stubborn``.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import mabeam
import otp
from mabeam import coordination
from mabeam.coordination._session import start_session


class CoordAgent(mabeam.Agent):
    capabilities = frozenset({"coordination"})

    def setup(self, args):
        self.args = dict(args or {})
        self.votes_seen = 0

    def handle_vote(self, proposal):
        a = self.args
        self.votes_seen += 1
        if a.get("die_on_vote"):
            os.kill(os.getpid(), signal.SIGKILL)
        if a.get("hold"):
            otp.send(a["notify"], ("holding", self.agent_id))
            otp.receive(30, lambda m: m == ("release",))
        if a.get("sleep"):
            time.sleep(a["sleep"])  # sleep-ok: a slow voter is the subject
        return a.get("vote", "approve")

    def handle_coordination(self, protocol, params):
        if protocol == "estimate":
            return self.args["estimate"]
        if protocol == "election":
            if self.args.get("hold_election"):
                otp.send(self.args["notify"], ("holding", self.agent_id))
                otp.receive(30, lambda m: m == ("release",))
            return self.args.get("priority")
        raise NotImplementedError(protocol)

    def handle_proposal(self, round_number, context):
        words = self.args.get("words", "")
        if round_number == 1 or self.args.get("stubborn"):
            return words
        previous = list(context["proposals"].values())
        counts = Counter(w for p in previous for w in set(p.split()))
        return " ".join(sorted(w for w, c in counts.items() if 2 * c >= len(previous)))


def start_agents(specs, restart="permanent"):
    """Register and start ``{agent_id: args}`` (args may hold ``metadata``)."""
    pids = {}
    for agent_id, args in specs.items():
        args = dict(args)
        metadata = args.pop("metadata", {})
        config = mabeam.AgentConfig(agent_id, CoordAgent, args=args, metadata=metadata, restart=restart)
        mabeam.register_agent(config)
        pids[agent_id] = mabeam.start_agent(agent_id)
    return pids


# ------------------------------------------------------------------ process bodies


def barrier_party(parent, name, timeout=10):
    otp.send(parent, ("released", otp.self(), coordination.arrive(name, timeout)))


def lock_holder(parent, name):
    """Take the lock, report, release when told (or die holding it)."""
    grant = coordination.acquire(name, 10)
    otp.send(parent, ("acquired", otp.self(), grant))
    otp.receive(30, lambda m: m == "release")
    coordination.release(name)
    otp.send(parent, ("released", otp.self()))


def lock_waiter(parent, name, tag):
    """Acquire, report the grant, release at once."""
    grant = coordination.acquire(name, 10)
    otp.send(parent, ("got", tag, grant))
    coordination.release(name)


def locked_increments(parent, lock_name, counter_name, n):
    """Read-modify-write of a counter ``n`` times, each under the lock."""
    for _ in range(n):
        with coordination.hold_lock(lock_name):
            value = coordination.get_counter_value(counter_name)
            coordination.reset_counter(counter_name, value + 1)
    otp.send(parent, ("done", otp.self()))


def counter_incrementer(parent, name, n):
    for _ in range(n):
        coordination.increment_counter(name)
    otp.send(parent, ("done", otp.self()))


# ------------------------------------------------------------------ session bodies


def crashing_body(ctx, message):
    """A session that crashes at once (a bug, not a typed error)."""
    raise RuntimeError(message)


def refusing_body(ctx, minimum, n):
    """A session that answers with a typed error whose __init__ has its own
    arguments."""
    raise coordination.InsufficientAgents(minimum, n)


def quick_body(ctx, value):
    return value


def watched_body(ctx, parent, agent_ids, timeout):
    """Asks the agents to vote; tells ``parent`` when its body stops, by
    returning or by being closed (its session dropped)."""
    try:
        outcomes = yield ctx.ask_all(agent_ids, "p", "vote", timeout)
        return [getattr(o, "value", None) for o in outcomes]
    finally:
        otp.send(parent, ("body_stopped", ctx.id))


def crash_after_ask_body(ctx, agent_ids, message):
    """A session that asks its agents, then crashes on their answers."""
    yield ctx.ask_all(agent_ids, "p", "vote", 5)
    raise RuntimeError(message)


def sync_client(parent, agent_ids, timeout):
    """``run_consensus`` (blocking) and report how it ended, and when."""
    started = time.monotonic()
    try:
        result = coordination.run_consensus(agent_ids, "p", timeout=timeout)
    except coordination.CoordinationError as exc:
        otp.send(parent, ("ended", type(exc).__name__, getattr(exc, "reason", None), time.monotonic() - started))
    else:
        otp.send(parent, ("ended", "ok", result.decision, time.monotonic() - started))


def body_client(parent, body, args):
    """Start a session of ``body``, tell ``parent`` its id and host, wait forever."""
    session = start_session("test", body, args)
    otp.send(parent, ("session", session.id, session.host))
    otp.receive()
