"""PBFT inside an agent: the component that holds its replicas.

An agent's :class:`Replicas` (``agent.component(Replicas)``, made on the
first PBFT message the agent gets) holds every instance the agent takes
part in, by ``(client pid, ref)``: the joins waiting for their
configuration, then each instance's :class:`._pbft_replica.Replica`.  The
Agent base class routes the messages ``(PROTOCOL, Replicas, payload)``
here, in the agent's own process: replicas' messages, configurations and
releases from clients, and the component's own ``otp`` timers.  An
instance is dropped, its timers cancelled, when its client releases it or
its lifetime (the client's timeout plus a margin, at most
``MAX_LIFETIME``) is over.
See :mod:`._pbft` for the protocol and its threat model.
"""

from __future__ import annotations

import pickle
import secrets
import time
from typing import TYPE_CHECKING, Any, NamedTuple

import otp
from mabeam._agent import PROTOCOL

from ._pbft_replica import Replica
from ._pbft_wire import Config, digest_of, mac, mac_ok, new_signing_key, public_bytes

if TYPE_CHECKING:
    from mabeam._agent import Agent

__all__ = ["Replicas", "Join", "pbft_join", "ref_bytes", "MAX_LIFETIME", "MAX_JOINS", "MAX_EARLY"]

#: The longest an instance's state may stay in an agent (seconds), whatever
#: its client asked: a bound on what a flood of joins can hold.
MAX_LIFETIME = 3600.0
#: Joins kept per instance key before the configuration arrives.
MAX_JOINS = 4
#: Peers' messages kept per instance key before the configuration arrives
#: (a peer may be configured first: the client configures one at a time).
MAX_EARLY = 256


def ref_bytes(ref: otp.Ref) -> bytes:
    return repr(ref).encode()


def pbft_join(agent: Agent, ref: otp.Ref, secret: bytes, ttl: float) -> tuple:
    """The client's join request, run by the agent's ``run`` operation:
    ``(public key, client key, MAC)`` for the client (see :meth:`Replicas.join`)."""
    caller = agent.caller
    if caller is None:
        raise RuntimeError("pbft_join runs only as an agent's run operation")
    return agent.component(Replicas).join(caller, ref, secret, ttl)


class Join(NamedTuple):
    """A join of this agent to an instance, until its configuration comes."""

    secret: bytes  # the client's, for the MAC of the hello
    client_key: bytes  # this replica's, sent to the client only
    caller: tuple  # (client pid, alias) of the join request
    signing_key: Any


class Replicas:
    """Every PBFT instance one agent takes part in, by ``(client pid, ref)``."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.joins: dict[tuple, list[Join]] = {}
        self.instances: dict[tuple, Replica] = {}
        self.nonces: dict[tuple, bytes] = {}  # a key's timers carry it: nobody else can fire them
        self.early: dict[tuple, list[tuple]] = {}  # peers' messages that came before the configuration
        self.expires: dict[tuple, float] = {}  # monotonic end of each key's lifetime
        self.timers: dict[tuple, list[otp.TimerRef]] = {}

    def join(self, caller: tuple, ref: otp.Ref, secret: bytes, ttl: float) -> tuple:
        """A client asks this agent to be a replica of instance ``ref``.
        The instance is keyed by the pid the answer goes to, so the key this
        returns reaches that process alone: whoever sends a configuration
        MACed with it is that client."""
        key = (caller[0], ref)
        if key in self.instances or len(self.joins.get(key, ())) >= MAX_JOINS or type(secret) is not bytes:
            raise ValueError("refused")
        entries = self.joins.setdefault(key, [])
        if key not in self.nonces:
            self.nonces[key] = secrets.token_bytes(16)
            life = min(float(ttl), MAX_LIFETIME) if isinstance(ttl, (int, float)) and ttl > 0 else 0.0
            self.expires[key] = time.monotonic() + life
            self.arm(life, key, ("expire",))
        signing_key = new_signing_key()
        client_key = secrets.token_bytes(32)
        entries.append(Join(secret, client_key, caller, signing_key))
        public = public_bytes(signing_key)
        return (public, client_key, mac(secret, b"hello", ref_bytes(ref), public, client_key))

    def handle(self, payload: Any) -> None:
        if type(payload) is not tuple or len(payload) < 3:
            return
        what, key = payload[0], payload[1]
        if what == "msg":
            replica = self.instances.get(key)
            if len(payload) != 8:
                return
            if replica is not None:
                replica.receive(*payload[2:])
            elif key in self.joins:  # a peer configured before this one: keep it for then
                early = self.early.setdefault(key, [])
                if len(early) < MAX_EARLY:
                    early.append(payload[2:])
        elif what == "timer":
            if len(payload) == 4 and key in self.nonces and payload[2] == self.nonces[key]:
                if payload[3] == ("expire",):
                    self.drop(key)
                elif key in self.instances:
                    self.instances[key].on_timer(*payload[3])
        elif what == "cfg" and len(payload) == 4:
            self._configure(key, payload[2], payload[3])
        elif what == "release" and len(payload) == 3:
            client_keys = [j.client_key for j in self.joins.get(key, ())]
            if key in self.instances:
                client_keys.append(self.instances[key].client_key)
            if any(mac_ok(k, payload[2], b"release", ref_bytes(key[1])) for k in client_keys):
                self.drop(key)

    def drop(self, key: tuple) -> None:
        """Forget the instance (released, or its lifetime is over)."""
        self.joins.pop(key, None)
        self.nonces.pop(key, None)
        self.early.pop(key, None)
        self.expires.pop(key, None)
        for tref in self.timers.pop(key, ()):
            otp.cancel_timer(tref)
        replica = self.instances.pop(key, None)
        if replica is not None:
            replica.on_dropped()

    def _configure(self, key: tuple, data: Any, tag: Any) -> None:
        if type(data) is not bytes:
            return
        join = next((j for j in self.joins.get(key, ()) if mac_ok(j.client_key, tag, b"config", data)), None)
        if join is None:
            return
        config = pickle.loads(data)  # from the client: the MAC says so
        if type(config) is not Config or otp.self() not in config.pids:
            return
        me = config.pids.index(otp.self())
        if config.keys[me] != public_bytes(join.signing_key):
            return
        del self.joins[key]
        cls = getattr(self.agent, "pbft_replica_class", Replica)
        replica: Replica = cls(self, key, config, digest_of(data), me, join)
        self.instances[key] = replica
        replica.start()
        for message in self.early.pop(key, ()):
            replica.receive(*message)

    def arm(self, seconds: float, key: tuple, what: tuple) -> None:
        """A timer of instance ``key``: ``what`` comes back to :meth:`handle`
        in ``seconds``, with the nonce that proves this component armed it;
        cancelled when the instance is dropped.  A view timer that would
        fire after the instance's lifetime is not armed."""
        if what != ("expire",) and seconds >= self.expires[key] - time.monotonic():
            return
        message = (PROTOCOL, Replicas, ("timer", key, self.nonces[key], what))
        self.timers.setdefault(key, []).append(otp.send_after(seconds, otp.self(), message))
