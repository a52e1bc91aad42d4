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
from mabeam._app import COORDINATION
from mabeam.coordination._session import _session_main


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


def session_client(parent, agent_ids):
    """Start a consensus session, tell ``parent`` its pid, wait forever."""
    session = coordination.run_consensus_async(agent_ids, "p", timeout=20)
    otp.send(parent, ("session", session.pid))
    otp.receive()


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


def notify_body(ctx, parent):
    otp.send(parent, ("ran", otp.self()))


def silent_caller(parent):
    """Start a session under the coordination supervisor as
    ``start_session`` does, but never send it the go."""
    spec = otp.child_spec(
        ("session", "silent"),
        start=(otp.spawn_link, (_session_main, otp.self(), otp.make_ref(), "silent", notify_body, (parent,))),
        restart="temporary",
    )
    otp.send(parent, ("session", otp.supervisor.start_child(COORDINATION, spec)))
    otp.receive()
