"""Byzantine agreement among the agents themselves: PBFT.

:func:`run_pbft` makes ``n >= 3f + 1`` agents agree on one value although
up to ``f`` of them lie, equivocate, stay silent or die.  The agreement
runs between the agents' own processes: each agent is a PBFT replica
(:mod:`._pbft_replica`, inside the agent, fed by the Agent base class's
protocol messages through :mod:`._pbft_replicas`), the calling process is
the client.  Nobody counts votes on the agents' behalf: compare
:func:`run_byzantine_consensus`, which is a trusted vote count by one
session against a 3f+1 quorum, not Byzantine agreement (an agent that
tells different agents different things cannot matter there, because the
agents never talk to each other).

The protocol (Castro and Liskov's PBFT, one slot, ``seq`` 1):

1. *Join.*  The client asks each agent to join (one ``otp.send_request``
   of the agent's ``run`` operation carrying a fresh secret); each answers
   with a fresh Ed25519 public key and a fresh client key, MACed with the
   secret.  The client then sends every joined replica the configuration
   (agents in primary order, their pids and public keys, ``f``, the
   proposal, the view timeout), MACed with that replica's client key.
2. *Normal case.*  The primary of view ``v`` (``agent_ids[v % n]``)
   pre-prepares its value: ``(v, seq, digest)``, signed, with the value.
   A backup that accepts it (the value validated by its agent, below)
   signs a prepare to all; with the pre-prepare and 2f matching prepares a
   replica is *prepared* and signs a commit to all; with 2f+1 matching
   commits it *decides* and sends the client a signed reply.  The client
   accepts a value once f+1 replicas replied the same ``(value, seq)``:
   one of them is honest.  (Replicas may decide in different views, when
   a value is kept across a view change: the view is reported, not
   matched, as PBFT's client matches the result.)
3. *View change.*  A replica that has not decided when its timer runs out
   (``view_timeout``, doubling with each view) signs a view-change for
   ``v + 1`` carrying its latest prepared certificate (the signed
   pre-prepare and 2f signed prepares); f+1 view-changes for later views
   make a replica join the earliest of them.  The new primary, with 2f+1
   valid view-changes, sends a new-view: those view-changes and a
   pre-prepare of the value of the latest certificate among them (a value
   that may have been decided is kept), or a value of its own when none
   holds one.  Backups check every signature and the choice themselves.

What an honest agent agrees to.  A primary proposes ``pbft_propose(proposal)``
if the agent's class defines it, else its vote ``handle_vote(proposal)``,
or the proposal itself when it abstains (None).  A replica accepts a value
if ``pbft_validate(proposal, value)`` says so when its class defines it,
else if it abstains or the value equals its vote.  So agents that vote
agree on a vote that at least f+1 honest agents hold or accept, agents
that abstain agree on the client's proposal, and a value carried over by
a certificate is accepted without asking again (f+1 honest agents
validated it already, and it may have been decided).  A hook that raises refuses.  If the honest agents disagree
among themselves nothing may be decided: the call fails with
:class:`PbftTimeout`.

Threat model.  Up to ``f`` agents are Byzantine *at the protocol level*:
they send any PBFT message they like, different ones to different peers,
or none, and they may die.  Their messages are signed with Ed25519 keys
made for the instance in each replica's own process (the private key never
leaves it), so nobody can speak for another replica, certificates can be
passed on and checked by anyone, and two contradictory statements of one
replica are a proof against it (replicas send the proofs they hold with
their replies; the client checks them and reports ``faulty``).  The keys are
bound to processes by the join: the kernel does not tell a receiver who
sent a message (a message may name any pid), but a message sent *to* a pid
is read by that process alone.  So the client's secret reaches the agent
only, the agent's client key reaches the requesting process only, and a
configuration MACed with that key comes from the client.  The client
process and the node are trusted.  Out of scope: processes on the host
that read others' memory (same user, ``/proc/<pid>/mem``) or that execute
code in others (any message is a pickle, and an agent's ``run`` operation
runs what it is sent): against those no in-process key is secret.  Within
the node this protects the agreement against agents that lie in the
protocol, not against an attacker on the host.

Bounds.  Every wait has a timeout: the join waits at most ``timeout / 4``
(once n - f agents answered, the others get as long again as those took);
the call returns by ``timeout`` or raises :class:`PbftTimeout`; replicas
drop an instance once the client releases it (after its decision or
timeout) or at the latest ``timeout + LINGER`` seconds after they joined
(they buffer at most ``MAX_EARLY`` peer messages that come before their
configuration, and a faulty peer can make them keep at most one statement
of each kind per view, up to ``MAX_VIEWS_AHEAD`` views ahead).  Several
instances run at once without interfering: each has its own ref, keys and
timers.
"""

from __future__ import annotations

import pickle
import secrets
import time
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import otp
from mabeam._agent import PROTOCOL
from mabeam._comms import whereis_agent

from . import voting
from ._errors import CoordinationError, InvalidParameter, ResultTaken
from ._pbft_replicas import Replicas, pbft_join, ref_bytes
from ._pbft_wire import (
    REPLY,
    SEQ,
    Config,
    check_proof,
    digest_of,
    encode_value,
    load_public_keys,
    mac,
    mac_ok,
    statement,
    verify,
)
from ._session import paired_functions

__all__ = [
    "PbftResult",
    "PbftCall",
    "PbftError",
    "PbftTimeout",
    "PbftQuorumUnavailable",
    "run_pbft",
    "run_pbft_async",
    "PBFT_TAGS",
    "LINGER",
]

PBFT_TAGS = ("byzantine", "pbft", "fault_tolerant")
DEFAULT_TIMEOUT = 10.0
#: The least a join waits for the last f agents once n - f have answered.
JOIN_GRACE = 0.2
#: Seconds a replica keeps an instance past the client's timeout when the
#: client never releases it (the client died).
LINGER = 5.0


class PbftError(CoordinationError):
    """Base class of the PBFT errors."""


class PbftTimeout(PbftError, TimeoutError):
    """No value was decided within the timeout.  ``replies`` holds the
    signed replies received (``{agent_id: (view, value)}``), ``faulty`` the
    agents proven faulty, ``excluded`` the agents that did not join (and
    why)."""

    def __init__(self, timeout: float, replies: Mapping, faulty: frozenset, excluded: Mapping) -> None:
        super().__init__(timeout, replies, faulty, excluded)
        self.timeout, self.replies, self.faulty, self.excluded = timeout, dict(replies), faulty, dict(excluded)

    def __str__(self) -> str:
        return f"no PBFT decision within {self.timeout} s ({len(self.replies)} replies, excluded: {self.excluded})"


class PbftQuorumUnavailable(PbftError):
    """Fewer than 2f+1 agents joined, so no value could be decided;
    ``excluded`` says why each of the others did not."""

    def __init__(self, joined: int, needed: int, excluded: Mapping) -> None:
        super().__init__(joined, needed, excluded)
        self.joined, self.needed, self.excluded = joined, needed, dict(excluded)

    def __str__(self) -> str:
        return f"{self.joined} agents joined, PBFT needs {self.needed}: {self.excluded}"


@dataclass(frozen=True)
class PbftResult:
    """A PBFT decision: ``decision`` is the value f+1 replicas replied,
    decided in slot ``seq`` (``view``: the latest view among those replies).  ``replies`` maps each agent whose reply matched to the view it
    decided in; ``faulty`` holds the agents proven faulty (two statements
    they signed contradict each other, or a reply for another value);
    ``excluded`` the agents that did not join, and why (``'not_running'``,
    ``'no_answer'``, an exit reason...)."""

    proposal: Any
    decision: Any
    view: int
    seq: int
    replies: Mapping[Hashable, int]
    faulty: frozenset
    excluded: Mapping[Hashable, Any]
    n: int
    f: int
    elapsed: float = 0.0
    tags: tuple = field(default=PBFT_TAGS)


def _check(agent_ids: Iterable[Hashable], f: int | None, timeout: float, view_timeout: float | None) -> tuple:
    ids = list(agent_ids)
    if len(set(ids)) != len(ids):
        raise InvalidParameter("agent ids must be distinct")
    for name, value in (("timeout", timeout), ("view_timeout", view_timeout)):
        if value is None and name == "view_timeout":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            raise InvalidParameter(f"{name} must be a number > 0, got {value!r}")
    if f is None:
        f = max(0, (len(ids) - 1) // 3)
    elif isinstance(f, bool) or not isinstance(f, int) or f < 0:
        raise InvalidParameter(f"f must be an int >= 0, got {f!r}")
    if not ids or len(ids) < voting.min_agents(f):
        raise voting.InsufficientAgents(voting.min_agents(f), len(ids))
    return ids, f, float(timeout), float(view_timeout if view_timeout is not None else timeout / 10)


class _Member:
    """What the client holds about one agent it asked to join."""

    __slots__ = ("index", "pid", "request", "secret", "public", "client_key", "exit")

    def __init__(self, index: int, pid: otp.Pid, request: otp.RequestId, secret: bytes) -> None:
        self.index, self.pid, self.request, self.secret = index, pid, request, secret
        self.public: bytes | None = None
        self.client_key: bytes | None = None
        self.exit: Any = None


class PbftCall:
    """A PBFT instance in flight, started by :func:`run_pbft_async` in this
    process; :meth:`result` waits for the decision (once).  ``ref`` names
    the instance (with this process's pid) in every replica."""

    def __init__(self, ids: list, f: int, proposal: Any, timeout: float, view_timeout: float, started: float) -> None:
        self.ids, self.f, self.n, self.proposal = ids, f, len(ids), proposal
        self.timeout, self.started = timeout, started
        self.deadline = started + timeout
        self.ref = otp.make_ref()
        self.owner = otp.self()
        self.excluded: dict[Hashable, Any] = {}
        self.members: dict[otp.Ref, _Member] = {}  # by request ref: replies come to it
        # Asked, but no answer within the join's window: such an agent may
        # still join (its answer on its way), and would then hold the
        # instance until its lifetime ends unless released too.
        self.late: list[_Member] = []
        self.faulty: set[int] = set()
        self.replies: dict[int, tuple[int, bytes, bytes]] = {}  # sender -> (view, digest, value)
        self.done = False
        self._join(ids, timeout, view_timeout)

    # ------------------------------------------------------------ join

    def _join(self, ids: list, timeout: float, view_timeout: float) -> None:
        try:
            proposal = encode_value(self.proposal)
        except Exception as exc:
            raise InvalidParameter(f"the proposal cannot be sent: {exc!r}") from None
        ttl = timeout + LINGER
        for i, agent_id in enumerate(ids):
            pid = whereis_agent(agent_id)
            if pid is None or pid == self.owner:
                self.excluded[agent_id] = "not_running" if pid is None else "calling_self"
                continue
            secret = secrets.token_bytes(32)
            req = otp.send_request(pid, otp.Request("run", ((pbft_join, (self.ref, secret, ttl)),), {}))
            self.members[req.ref] = _Member(i, pid, req, secret)
        # All answers, within a quarter of the timeout; once n - f are in
        # (all the honest ones may be), the others get as long again as
        # those took, at least JOIN_GRACE: a silent agent costs little, a
        # slow honest one is not excluded at once.
        start = time.monotonic()
        until = min(self.deadline, start + timeout / 4)
        waiting = set(self.members)
        graced = False
        while waiting:
            try:
                msg = otp.receive(max(0.0, until - time.monotonic()), lambda m: self._is_ours(m, waiting))
            except otp.Timeout:
                break
            waiting.discard(msg.ref)
            self._hello(self.members[msg.ref], msg)
            if not graced and self.n - len(waiting) >= self.n - self.f:
                graced, now = True, time.monotonic()
                until = min(until, now + max(now - start, JOIN_GRACE))
        for ref in list(self.members):
            m = self.members[ref]
            if m.public is None:
                self.excluded[ids[m.index]] = m.exit if m.exit is not None else "no_answer"
                if m.exit is None:
                    self.late.append(m)
                else:
                    self._abandon(m)
                del self.members[ref]
        needed = 2 * self.f + 1
        if len(self.members) < needed:
            self._finish()
            raise PbftQuorumUnavailable(len(self.members), needed, self.excluded)
        joined = {m.index: m for m in self.members.values()}
        self.config = Config(
            tuple(ids),
            tuple(joined[i].pid if i in joined else None for i in range(self.n)),
            tuple(joined[i].public if i in joined else None for i in range(self.n)),
            self.f,
            proposal,
            view_timeout,
        )
        data = encode_value(self.config)
        self.instance = digest_of(data)
        self.keys = load_public_keys(self.config.keys)
        key = (self.owner, self.ref)
        for m in self.members.values():
            assert m.client_key is not None
            otp.send(m.pid, (PROTOCOL, Replicas, ("cfg", key, data, mac(m.client_key, b"config", data))))

    def _is_ours(self, msg: object, refs: Iterable[otp.Ref]) -> bool:
        return isinstance(msg, (otp.Response, otp.DOWN)) and msg.ref in refs

    def _hello(self, m: _Member, msg: otp.Response | otp.DOWN) -> None:
        if isinstance(msg, otp.DOWN):
            m.exit = msg.reason
            return
        answer = msg.value
        if type(answer) is otp.Failed:
            m.exit = ("hook_raised", answer.error)
            return
        hello = answer.value if type(answer) is otp.Ok else None
        if type(hello) is tuple and len(hello) == 3:
            public, client_key, tag = hello
            if type(public) is bytes and type(client_key) is bytes:
                if mac_ok(m.secret, tag, b"hello", ref_bytes(self.ref), public, client_key):
                    m.public, m.client_key = public, client_key
                    return
        m.exit = ("bad_hello", repr(answer)[:200])

    # ------------------------------------------------------------ replies

    def result(self) -> PbftResult:
        """Wait for f+1 matching replies until the call's deadline.  Raises
        :class:`PbftTimeout` if none came; the replicas are released either
        way.  Only the process that started the call can wait for it."""
        if otp.self() != self.owner:
            raise InvalidParameter("a PBFT call's result is taken by the process that started it")
        if self.done:
            raise ResultTaken("the PBFT call's result was taken already")
        try:
            while True:
                decided = self._decided()
                if decided is not None:
                    return decided
                remaining = self.deadline - time.monotonic()
                try:
                    msg = otp.receive(max(0.0, remaining), lambda m: self._is_ours(m, self.members))
                except otp.Timeout:
                    replies = {self.ids[s]: (v, _load(value, value)) for s, (v, _, value) in self.replies.items()}
                    raise PbftTimeout(self.timeout, replies, self._faulty_ids(), self.excluded) from None
                if isinstance(msg, otp.DOWN):
                    self.members[msg.ref].exit = msg.reason
                else:
                    self._reply(msg.value)
        finally:
            self._finish()

    def cancel(self) -> None:
        """Release the replicas without waiting for a decision."""
        if not self.done:
            self._finish()

    def _reply(self, reply: Any) -> None:
        if type(reply) is not tuple or len(reply) != 8 or reply[0] != "reply":
            return  # a late join answer
        _, sender, view, seq, digest, value, sig, proofs = reply
        if type(view) is not int or seq != SEQ or type(value) is not bytes or type(digest) is not bytes:
            return
        if digest_of(value) != digest:
            return
        if not verify(self.keys, sender, sig, statement(REPLY, self.instance, view, seq, digest, sender)):
            return
        if type(proofs) is tuple:
            self.faulty.update(p.sender for p in proofs if check_proof(p, self.instance, self.keys))
        previous = self.replies.get(sender)
        if previous is not None and previous[1] != digest:
            self.faulty.add(sender)  # it decided two values
        self.replies[sender] = (view, digest, value)

    def _decided(self) -> PbftResult | None:
        by_digest: dict[bytes, list[int]] = {}
        for sender, (_, digest, _) in self.replies.items():
            by_digest.setdefault(digest, []).append(sender)
        for senders in by_digest.values():
            if len(senders) >= self.f + 1:
                faulty = self._faulty_ids() | {self.ids[s] for s in self.replies if s not in senders}
                view = max(self.replies[s][0] for s in senders)
                return PbftResult(
                    self.proposal,
                    _load(self.replies[senders[0]][2]),
                    view,
                    SEQ,
                    {self.ids[s]: self.replies[s][0] for s in senders},
                    frozenset(faulty),
                    dict(self.excluded),
                    self.n,
                    self.f,
                    time.monotonic() - self.started,
                )
        return None

    def _faulty_ids(self) -> frozenset:
        return frozenset(self.ids[i] for i in self.faulty)

    # ------------------------------------------------------------ cleanup

    def _finish(self) -> None:
        """Release every replica and drop the requests' aliases: a reply
        that comes later is dropped where it arrives."""
        self.done = True
        tag = ref_bytes(self.ref)
        for m in self.late:  # a join answer that came after the window: release that one too
            self._take_late_hello(m)
        for m in [*self.members.values(), *self.late]:
            if m.client_key is not None:
                otp.send(
                    m.pid, (PROTOCOL, Replicas, ("release", (self.owner, self.ref), mac(m.client_key, b"release", tag)))
                )
            self._abandon(m)

    def _take_late_hello(self, m: _Member) -> None:
        """The join answer of ``m`` if it is in by now (not waited for)."""
        refs = (m.request.ref,)
        try:
            answer = otp.receive(0, lambda msg: self._is_ours(msg, refs))
        except otp.Timeout:
            return
        self._hello(m, answer)

    def _abandon(self, m: _Member) -> None:
        try:
            otp.receive_response(m.request, 0)
        except otp.CallError:
            pass
        refs = {m.request.ref}
        while True:
            try:
                otp.receive(0, lambda msg: self._is_ours(msg, refs))
            except otp.Timeout:
                return


def _load(value: bytes, otherwise: Any = None) -> Any:
    """The value a replica replied (``otherwise`` if it cannot be loaded: a
    faulty replica may sign any bytes)."""
    try:
        return pickle.loads(value)
    except Exception:
        if otherwise is None:
            raise
        return otherwise


def _pbft_call(
    agent_ids: Iterable[Hashable],
    proposal: Any,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    f: int | None = None,
    view_timeout: float | None = None,
) -> PbftCall:
    """Byzantine agreement among ``agent_ids`` (in primary order) on a
    value for ``proposal``, tolerating ``f`` faulty agents (default: the
    most ``n`` allows, ``(n - 1) // 3``).  See the module documentation
    for the protocol and what an honest agent agrees to.

    Raises :class:`.voting.InsufficientAgents` for ``n < 3f + 1`` and
    :class:`InvalidParameter` for bad arguments (or a proposal that cannot
    be pickled), in the caller before anything is sent; :class:`PbftQuorumUnavailable` when fewer than 2f+1
    agents join; :class:`PbftTimeout` when nothing is decided within
    ``timeout`` seconds.  ``view_timeout`` (default ``timeout / 10``) is
    how long replicas wait in view 0 before replacing the primary (it
    doubles with each view)."""
    ids, f, timeout, view_timeout = _check(agent_ids, f, timeout, view_timeout)
    return PbftCall(ids, f, proposal, timeout, view_timeout, time.monotonic())


def _started(call: PbftCall) -> PbftCall:
    return call


def _decided(call: PbftCall) -> PbftResult:
    return call.result()


run_pbft_async, run_pbft = paired_functions(
    "run_pbft",
    _pbft_call,
    _started,
    _decided,
    PbftCall,
    PbftResult,
    "Start a PBFT instance (the join happens here, within ``timeout / 4``); "
    "``call.result()`` waits for the decision.  See :func:`run_pbft`.",
)
