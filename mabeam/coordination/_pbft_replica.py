"""One agent's part in one PBFT instance: the replica's state machine.

A :class:`Replica` lives inside its agent's process, in the agent's
:class:`._pbft_replicas.Replicas` component, which feeds it the messages of
its peers (each checked against the sender's signature before anything
else) and its own timers.  See :mod:`._pbft` for the protocol.

Subclasses are the seam through which tests make Byzantine replicas (an
agent class names one as ``pbft_replica_class``): :meth:`Replica.outgoing`
may change or drop each message per recipient before it is signed,
:meth:`Replica.send` sends one message of the subclass's choosing, and
:meth:`Replica.reply_client` may lie or stay silent.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, NamedTuple

import otp
from mabeam._agent import PROTOCOL

from ._pbft_wire import (
    COMMIT,
    NEW_VIEW,
    PRE_PREPARE,
    PREPARE,
    REPLY,
    SEQ,
    VIEW_CHANGE,
    Certificate,
    Config,
    Proof,
    carried_certificate,
    certificate_summary,
    check_certificate,
    digest_of,
    encode_value,
    load_public_keys,
    sign,
    statement,
    verify,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from mabeam._agent import Agent

    from ._pbft_replicas import Join, Replicas

__all__ = ["Replica", "Out", "propose_value", "validate_value", "MAX_VIEWS_AHEAD"]

log = logging.getLogger("mabeam.coordination.pbft")

#: Messages for views further ahead than this are dropped (a faulty
#: replica cannot make another store an unbounded number of views).
MAX_VIEWS_AHEAD = 32

_UNSET: Any = object()
#: The vote of an agent whose ``handle_vote`` raised: it agrees to nothing.
_REFUSES: Any = object()


def propose_value(agent: Agent, proposal: Any, vote: Any) -> Any:
    """What a primary pre-prepares: ``agent.pbft_propose(proposal)`` if its
    class has that hook, else its vote (``handle_vote``), or the proposal
    itself when it abstains."""
    hook = getattr(agent, "pbft_propose", None)
    if hook is not None:
        return hook(proposal)
    return proposal if vote is None else vote


def validate_value(agent: Agent, proposal: Any, value: Any, vote: Any) -> bool:
    """Whether the agent agrees to ``value``: ``agent.pbft_validate(proposal,
    value)`` if its class has that hook, else: it abstains (its vote is
    None) or the value equals its vote."""
    hook = getattr(agent, "pbft_validate", None)
    if hook is not None:
        return bool(hook(proposal, value))
    return vote is None or vote == value


class Out(NamedTuple):
    """A message a replica sends: ``kind`` (see :mod:`._pbft_wire`),
    ``view``, ``digest`` and ``extra`` (the value for a pre-prepare, the
    certificate for a view-change, ``(view-changes, value)`` for a new-view)."""

    kind: bytes
    view: int
    digest: bytes
    extra: Any


class Replica:
    """One agent's part in one PBFT instance (one slot, ``seq`` 1).

    ``view`` is the view it is in, or moving to while ``changing``.  It
    keeps the pre-prepare it accepted per view, every signed prepare and
    commit (the first of each sender per view: a second, different one is
    a proof against the sender), its latest prepared certificate and the
    view-changes it received."""

    def __init__(self, owner: Replicas, key: tuple, config: Config, instance: bytes, me: int, join: Join) -> None:
        self.owner = owner
        self.agent = owner.agent
        self.key = key
        self.config = config
        self.instance = instance
        self.me = me
        self.n, self.f = config.n, config.f
        self.keys = load_public_keys(config.keys)
        self.signing_key: Ed25519PrivateKey = join.signing_key
        self.client_key = join.client_key
        self.caller = join.caller
        self.proposal = pickle.loads(config.proposal)
        self.view = 0
        self.changing = False
        self.pre_prepares: dict[int, tuple[bytes, bytes, bytes]] = {}  # view -> (digest, value, signature)
        self.signed: dict[tuple[bytes, int, int], tuple[bytes, bytes]] = {}  # (kind, view, sender) -> (digest, sig)
        self.tally: dict[tuple[bytes, int, bytes], dict[int, bytes]] = {}  # (kind, view, digest) -> {sender: sig}
        self.certificate: Certificate | None = None
        self.view_changes: dict[int, dict[int, tuple[Certificate | None, bytes]]] = {}
        self.sent: set[tuple[bytes, int]] = set()
        self.replied: set[int] = set()
        self.decided: tuple[int, bytes] | None = None
        self.proofs: dict[int, Proof] = {}
        self._vote = _UNSET

    # ------------------------------------------------------------ hooks

    @property
    def agent_id(self) -> Hashable:
        return self.agent.agent_id

    def outgoing(self, to: int, out: Out) -> Out | None:
        """The message for replica ``to`` (None: send it nothing).  An honest
        replica sends every peer the same."""
        return out

    def reply_client(self, view: int, digest: bytes, value: bytes) -> None:
        """Tell the client the slot is decided (signed; with the proofs of
        faulty replicas this one holds)."""
        sig = sign(self.signing_key, statement(REPLY, self.instance, view, SEQ, digest, self.me))
        otp.reply(self.caller, ("reply", self.me, view, SEQ, digest, value, sig, tuple(self.proofs.values())))

    def on_decided(self, view: int, digest: bytes, value: bytes) -> None:
        """Called when this replica decides (again, in a later view)."""

    def on_dropped(self) -> None:
        """Called when the agent forgets the instance."""

    # ------------------------------------------------------------ the agent

    def vote(self) -> Any:
        """The agent's ``handle_vote(proposal)``, asked once."""
        if self._vote is _UNSET:
            try:
                self._vote = self.agent.handle_vote(self.proposal)
            except Exception:
                log.exception("agent %r: handle_vote raised in PBFT", self.agent_id)
                self._vote = _REFUSES
        return self._vote

    def propose(self) -> bytes | None:
        vote = self.vote()
        if vote is _REFUSES:
            return None
        try:
            return encode_value(propose_value(self.agent, self.proposal, vote))
        except Exception:
            log.exception("agent %r: no PBFT value to propose", self.agent_id)
            return None

    def validate(self, value: bytes) -> bool:
        vote = self.vote()
        if vote is _REFUSES:
            return False
        try:
            return validate_value(self.agent, self.proposal, pickle.loads(value), vote)
        except Exception:
            log.exception("agent %r: PBFT validation raised", self.agent_id)
            return False

    # ------------------------------------------------------------ sending

    def primary(self, view: int) -> int:
        return view % self.n

    def broadcast(self, out: Out) -> None:
        """Send ``out`` to every other replica (as :meth:`outgoing` has it)."""
        for to in range(self.n):
            if to != self.me:
                sent = self.outgoing(to, out)
                if sent is not None:
                    self.send(to, sent)

    def send(self, to: int, out: Out) -> None:
        """Sign ``out`` and send it to replica ``to`` (a new-view is signed
        as the pre-prepare of its view)."""
        pid = self.config.pids[to]
        if pid is None:
            return
        kind = PRE_PREPARE if out.kind == NEW_VIEW else out.kind
        sig = sign(self.signing_key, statement(kind, self.instance, out.view, SEQ, out.digest, self.me))
        payload = ("msg", self.key, out.kind, out.view, out.digest, out.extra, self.me, sig)
        otp.send(pid, (PROTOCOL, type(self.owner), payload))

    def _own(self, kind: bytes, view: int, digest: bytes) -> bytes:
        """Sign and record one of this replica's own votes."""
        sig = sign(self.signing_key, statement(kind, self.instance, view, SEQ, digest, self.me))
        self._record(kind, view, digest, self.me, sig)
        return sig

    def _arm(self, view: int) -> None:
        seconds = self.config.view_timeout * 2 ** min(view, 20)
        self.owner.arm(seconds, self.key, (view, self.changing))

    # ------------------------------------------------------------ receiving

    def start(self) -> None:
        if self.primary(0) == self.me:
            value = self.propose()
            if value is not None:
                digest = digest_of(value)
                sig = sign(self.signing_key, statement(PRE_PREPARE, self.instance, 0, SEQ, digest, self.me))
                self.pre_prepares[0] = (digest, value, sig)
                self.broadcast(Out(PRE_PREPARE, 0, digest, value))
        self._arm(0)

    def receive(self, kind: Any, view: Any, digest: Any, extra: Any, sender: Any, sig: Any) -> None:
        if type(view) is not int or type(digest) is not bytes or len(digest) != 32 or sender == self.me:
            return
        if not self.view <= view <= self.view + MAX_VIEWS_AHEAD:
            return
        signed_kind = PRE_PREPARE if kind == NEW_VIEW else kind
        if kind not in (PRE_PREPARE, PREPARE, COMMIT, VIEW_CHANGE, NEW_VIEW):
            return
        if not verify(self.keys, sender, sig, statement(signed_kind, self.instance, view, SEQ, digest, sender)):
            return
        if kind == PRE_PREPARE:
            if view == 0 and sender == self.primary(0) and not self._record(PRE_PREPARE, 0, digest, sender, sig):
                if not self.changing and self.view == 0:
                    self.accept(0, digest, extra, sig, carried=False)
        elif kind in (PREPARE, COMMIT):
            if kind == PREPARE and sender == self.primary(view):
                return
            if not self._record(kind, view, digest, sender, sig):
                self.progress(view)
        elif kind == VIEW_CHANGE:
            self.on_view_change(view, digest, extra, sender, sig)
        elif sender == self.primary(view):
            self.on_new_view(view, digest, extra, sig)

    def _record(self, kind: bytes, view: int, digest: bytes, sender: int, sig: bytes) -> bool:
        """Keep a signed statement; True if the sender had signed another
        digest for that view (kept as a proof, the statement is ignored)."""
        first = self.signed.setdefault((kind, view, sender), (digest, sig))
        if first[0] != digest:
            self.proofs.setdefault(sender, Proof(sender, kind, view, first, (digest, sig)))
            return True
        self.tally.setdefault((kind, view, digest), {})[sender] = first[1]
        return False

    def accept(self, view: int, digest: bytes, value: Any, sig: bytes, carried: bool) -> None:
        """Accept the pre-prepare of ``view`` (validated by the agent unless
        a certificate carried it over) and prepare it."""
        if view in self.pre_prepares or type(value) is not bytes or digest_of(value) != digest:
            return
        if self.decided is not None and self.decided[1] != digest:
            return
        if not carried and not self.validate(value):
            return
        self.pre_prepares[view] = (digest, value, sig)
        if self.me != self.primary(view):
            self._own(PREPARE, view, digest)
            self.broadcast(Out(PREPARE, view, digest, None))
        self.progress(view)

    def progress(self, view: int) -> None:
        """Prepared: commit; committed: decide (in the current view only)."""
        if view != self.view or self.changing or view not in self.pre_prepares:
            return
        digest, value, pp_sig = self.pre_prepares[view]
        prepares = self.tally.get((PREPARE, view, digest), {})
        if len(prepares) < 2 * self.f:
            return
        if (COMMIT, view) not in self.sent:
            self.sent.add((COMMIT, view))
            self.certificate = Certificate(view, SEQ, digest, value, pp_sig, tuple(prepares.items()))
            self._own(COMMIT, view, digest)
            self.broadcast(Out(COMMIT, view, digest, None))
        if len(self.tally.get((COMMIT, view, digest), {})) >= 2 * self.f + 1 and view not in self.replied:
            self.replied.add(view)
            if self.decided is None:
                self.decided = (view, digest)
            self.on_decided(view, digest, value)
            self.reply_client(view, digest, value)

    # ------------------------------------------------------------ view changes

    def on_timer(self, view: int, changing: bool) -> None:
        if (view, changing) != (self.view, self.changing):
            return
        if changing or self.decided is None:
            self.change_view(view + 1)

    def change_view(self, view: int) -> None:
        """Leave the current view for ``view``: send a view-change with the
        latest prepared certificate."""
        self.view, self.changing = view, True
        for k in [k for k in self.tally if k[1] < view]:
            del self.tally[k]
        summary = certificate_summary(self.certificate)
        sig = sign(self.signing_key, statement(VIEW_CHANGE, self.instance, view, SEQ, summary, self.me))
        self.view_changes.setdefault(view, {})[self.me] = (self.certificate, sig)
        self.broadcast(Out(VIEW_CHANGE, view, summary, self.certificate))
        self._arm(view)
        self.try_new_view(view)

    def on_view_change(self, view: int, summary: bytes, cert: Any, sender: int, sig: bytes) -> None:
        if cert is not None and not check_certificate(cert, self.instance, self.keys, self.f, view):
            return
        if summary != certificate_summary(cert) or self._record(VIEW_CHANGE, view, summary, sender, sig):
            return
        if cert is not None:
            self._note_certificate(cert)
        self.view_changes.setdefault(view, {}).setdefault(sender, (cert, sig))
        # f+1 replicas ask for views after this one's: at least one honest
        # replica timed out, so follow the earliest of them (PBFT's rule)
        later: dict[int, int] = {}
        for v, vcs in self.view_changes.items():
            if v > self.view:
                for s in vcs:
                    if s != self.me:
                        later[s] = min(later.get(s, v), v)
        if len(later) >= self.f + 1:
            self.change_view(min(later.values()))
        else:
            self.try_new_view(view)

    def _note_certificate(self, cert: Certificate) -> None:
        """Check a certificate's statements against those already seen (a
        primary that pre-prepared two values shows here)."""
        primary = self.primary(cert.view)
        first = self.signed.setdefault((PRE_PREPARE, cert.view, primary), (cert.digest, cert.pre_prepare))
        if first[0] != cert.digest:
            self.proofs.setdefault(
                primary, Proof(primary, PRE_PREPARE, cert.view, first, (cert.digest, cert.pre_prepare))
            )

    def try_new_view(self, view: int) -> None:
        """As the primary of ``view``, with 2f+1 view-changes: the new-view,
        keeping the value of the latest certificate among them."""
        if self.primary(view) != self.me or view != self.view or not self.changing:
            return
        vcs = self.view_changes.get(view, {})
        if len(vcs) < 2 * self.f + 1 or (NEW_VIEW, view) in self.sent:
            return
        carried = carried_certificate([c for c, _ in vcs.values() if c is not None])
        value = carried.value if carried is not None else self.propose()
        if value is None:
            return
        self.sent.add((NEW_VIEW, view))
        digest = digest_of(value)
        proof = tuple((s, cert, vc_sig) for s, (cert, vc_sig) in vcs.items())
        self.broadcast(Out(NEW_VIEW, view, digest, (proof, value)))
        sig = sign(self.signing_key, statement(PRE_PREPARE, self.instance, view, SEQ, digest, self.me))
        self.enter(view)
        self.accept(view, digest, value, sig, carried=True)

    def on_new_view(self, view: int, digest: bytes, extra: Any, sig: bytes) -> None:
        if view == 0 or (view == self.view and not self.changing):
            return
        try:
            proof, value = extra
            entries = list(proof)
        except (TypeError, ValueError):
            return
        certs, senders = [], set()
        for entry in entries:
            try:
                s, cert, vc_sig = entry
            except (TypeError, ValueError):
                return
            if s in senders or (
                cert is not None and not check_certificate(cert, self.instance, self.keys, self.f, view)
            ):
                return
            if cert is not None:
                self._note_certificate(cert)
            vc = statement(VIEW_CHANGE, self.instance, view, SEQ, certificate_summary(cert), s)
            if not verify(self.keys, s, vc_sig, vc):
                return
            senders.add(s)
            if cert is not None:
                certs.append(cert)
        if len(senders) < 2 * self.f + 1:
            return
        carried = carried_certificate(certs)
        if carried is not None and (carried.digest != digest or carried.value != value):
            return
        self.enter(view)
        self.accept(view, digest, value, sig, carried=carried is not None)

    def enter(self, view: int) -> None:
        self.view, self.changing = view, False
        for k in [k for k in self.tally if k[1] < view]:
            del self.tally[k]
        for v in [v for v in self.view_changes if v < view]:
            del self.view_changes[v]
        if self.decided is None:
            self._arm(view)
