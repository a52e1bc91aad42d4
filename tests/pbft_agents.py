"""Agents for the PBFT tests, honest and Byzantine (importable by every
start method).

``PbftAgent``'s replicas are :class:`ScriptedReplica`: honest unless a
fault names them, either for every instance (``args['fault']``) or for one
instance (the proposal is a dict whose ``'faults'`` maps agent ids to
faults).  The faults:

* ``'silent'``: sends nothing at all (no prepare, commit, view-change,
  pre-prepare as primary, nor reply);
* ``'equivocate'``: sends the peers of odd index a prepare, commit and
  view-change for another digest than the others (each validly signed);
* ``'equivocating_primary'``: as a primary, pre-prepares (or new-views)
  another value to the peers of odd index; otherwise honest;
* ``'split_primary'``: as the primary of view 0, pre-prepares another value
  to 2f backups only and sends its commit to the first of them alone, then
  falls silent: that backup decides alone in view 0, and the view change
  must keep its value (the others decide it in a later view);
* ``'liar'``: honest towards the peers, but replies a forged value to the
  client;
* ``'die_mid_pre_prepare'``: as a primary, SIGKILLs itself after sending its
  pre-prepare to one peer; otherwise honest;
* ``'die_on_prepare'``: SIGKILLs itself when the first prepare reaches it.

``args``: ``vote`` (``handle_vote``'s answer; default None: it abstains,
so it accepts any value, and as a primary proposes the proposal),
``accept`` (a collection: ``pbft_validate`` accepts exactly those values),
``observer`` (a pid: every replica without a fault tells it
``('decided', agent_id, ref, view, value)`` on each decision).
"""

from __future__ import annotations

import os
import pickle
import signal

import mabeam
import otp
from mabeam.coordination import _pbft
from mabeam.coordination._pbft import run_pbft, run_pbft_async
from mabeam.coordination._pbft_replica import Out, Replica
from mabeam.coordination._pbft_replicas import Replicas
from mabeam.coordination._pbft_wire import (
    COMMIT,
    NEW_VIEW,
    PRE_PREPARE,
    PREPARE,
    REPLY,
    SEQ,
    VIEW_CHANGE,
    certificate_summary,
    digest_of,
    encode_value,
    sign,
    statement,
)

FAULTS = (
    "silent",
    "equivocate",
    "equivocating_primary",
    "split_primary",
    "liar",
    "die_mid_pre_prepare",
    "die_on_prepare",
)


class ScriptedReplica(Replica):
    @property
    def fault(self):
        proposal = self.proposal
        if isinstance(proposal, dict) and self.agent_id in proposal.get("faults", {}):
            return proposal["faults"][self.agent_id]
        return self.agent.args.get("fault")

    def start(self):
        if self.fault == "split_primary" and self.primary(0) == self.me:
            value = encode_value(("split", self.proposal))
            digest = digest_of(value)
            backups = [j for j in range(self.n) if j != self.me][: 2 * self.f]
            for to in backups:
                self.send(to, Out(PRE_PREPARE, 0, digest, value))
            self.send(backups[0], Out(COMMIT, 0, digest, None))
            return
        super().start()

    def outgoing(self, to, out):
        fault = self.fault
        if fault in ("silent", "split_primary"):
            return None
        if fault == "equivocate" and to % 2 and out.kind in (PREPARE, COMMIT, VIEW_CHANGE):
            if out.kind == VIEW_CHANGE:
                return Out(VIEW_CHANGE, out.view, certificate_summary(None), None)
            return Out(out.kind, out.view, digest_of(b"forged" + out.digest), None)
        if fault == "equivocating_primary" and to % 2 and out.kind in (PRE_PREPARE, NEW_VIEW):
            other = encode_value(("equivocated", pickle.loads(out.extra if out.kind == PRE_PREPARE else out.extra[1])))
            extra = other if out.kind == PRE_PREPARE else (out.extra[0], other)
            return Out(out.kind, out.view, digest_of(other), extra)
        if fault == "die_mid_pre_prepare" and out.kind == PRE_PREPARE:
            self.sent_pre_prepares = getattr(self, "sent_pre_prepares", 0) + 1
            if self.sent_pre_prepares > 1:
                os.kill(os.getpid(), signal.SIGKILL)
        return out

    def receive(self, kind, view, digest, extra, sender, sig):
        if self.fault == "die_on_prepare" and kind == PREPARE:
            os.kill(os.getpid(), signal.SIGKILL)
        super().receive(kind, view, digest, extra, sender, sig)

    def reply_client(self, view, digest, value):
        fault = self.fault
        if fault in ("silent", "split_primary"):
            return
        if fault == "liar":
            value = encode_value(("forged", self.agent_id))
            digest = digest_of(value)
            sig = sign(self.signing_key, statement(REPLY, self.instance, view, SEQ, digest, self.me))
            otp.reply(self.caller, ("reply", self.me, view, SEQ, digest, value, sig, ()))
            return
        super().reply_client(view, digest, value)

    def on_decided(self, view, digest, value):
        observer = self.agent.args.get("observer")
        if observer is not None and self.fault is None:
            otp.send(observer, ("decided", self.agent_id, self.key[1], view, pickle.loads(value)))

    def on_dropped(self):
        observer = self.agent.args.get("observer")
        if observer is not None:
            otp.send(observer, ("dropped", self.agent_id, self.key[1]))


class PbftAgent(mabeam.Agent):
    pbft_replica_class = ScriptedReplica

    def setup(self, args):
        self.args = dict(args or {})

    def handle_vote(self, proposal):
        return self.args.get("vote")

    def pbft_validate(self, proposal, value):
        if "accept" in self.args:
            return value in self.args["accept"]
        vote = self.handle_vote(proposal)
        return vote is None or vote == value


def start_pbft_agents(specs):
    """Register and start ``{agent_id: args}``; their pids."""
    pids = {}
    for agent_id, args in specs.items():
        mabeam.register_agent(mabeam.AgentConfig(agent_id, PbftAgent, args=args))
        pids[agent_id] = mabeam.start_agent(agent_id)
    return pids


def pbft_state(agent):
    """The refs of the PBFT instances the agent holds (joining or configured)."""
    replicas = agent.component(Replicas)
    return {key[1] for key in [*replicas.instances, *replicas.joins, *replicas.nonces]}


# ------------------------------------------------------------------ process bodies


def pbft_client(parent, ids, proposal, timeout=30.0):
    """Run one PBFT instance, tell ``parent`` ``('remote', proposal, decision)``."""
    otp.send(parent, ("remote", proposal, run_pbft(ids, proposal, timeout=timeout).decision))


def dying_pbft_client(parent, ids):
    """Start an instance nobody can decide, tell ``parent`` its ref, wait to
    be killed.  Its replicas keep the instance its timeout (1 s) plus
    LINGER, made 0.5 s in this process."""
    _pbft.LINGER = 0.5
    call = run_pbft_async(ids, "undecidable", timeout=1.0, view_timeout=0.2)
    otp.send(parent, ("joined", call.ref))
    otp.receive()


def hold_until_told(agent, parent):
    """Block the agent's loop (a step run in it) until ``parent`` sends
    ``'go'``: requests to it wait, as to a slow agent."""
    otp.send(parent, ("holding", agent.agent_id))
    otp.receive(60, lambda m: m == "go")
    return "held"


def nothing(agent):
    return None
