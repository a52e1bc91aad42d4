"""Agents and helpers the service tests use (importable by every start method)."""

from __future__ import annotations

import mabeam
import otp
from mabeam import variables


class Worker(mabeam.Agent):
    """A plain agent with capabilities from its config."""

    capabilities = frozenset({"work"})

    def handle_request(self, message):
        return (self.agent_id, message)


class Voter(mabeam.Agent):
    """Votes ``args['vote']``; with ``notify`` it tells that pid when a vote
    starts, with ``hold`` it waits for ``('release',)`` before answering."""

    def setup(self, args):
        args = args or {}
        self.vote = args.get("vote", "approve")
        self.notify = args.get("notify")
        self.hold = args.get("hold", False)

    def handle_vote(self, proposal):
        if self.notify is not None:
            otp.send(self.notify, ("voting", self.agent_id, proposal))
        if self.hold:
            otp.receive(30, lambda m: m == ("release",))
        if self.vote == "even":
            return "approve" if proposal["value"] % 2 == 0 else "reject"
        return self.vote


class MemoryHog(mabeam.Agent):
    """Allocates (and touches) memory on request: ``('alloc', nbytes)``,
    ``('free',)``; answers ``'ping'``."""

    def setup(self, args):
        self.hog = []

    def handle_request(self, message):
        if message == "ping":
            return "pong"
        if message[0] == "alloc":
            self.hog.append(b"x" * message[1])  # bytes of 'x': every page touched
            return sum(map(len, self.hog))
        if message[0] == "free":
            self.hog.clear()
            return 0
        raise ValueError(message)

    def handle_message(self, message):
        # the same without a reply: the sender must not wait on an agent
        # that its quota may stop in the middle of the allocation
        if isinstance(message, tuple) and message[0] in ("alloc", "free"):
            self.handle_request(message)


def forward_events(pid, tag="event"):
    """A telemetry handler sending ``(tag, event, measurements, metadata)`` to ``pid``."""

    def handler(event, measurements, metadata):
        otp.send(pid, (tag, event, dict(measurements), dict(metadata)))

    return handler


def failing_handler(event, measurements, metadata):
    raise RuntimeError(f"handler broke on {event}")


def call_and_report(parent, fn, *args):
    """Run ``fn(*args)`` in a process of its own and send ``('result',
    value)`` or ``('raised', exc)`` to ``parent``."""
    try:
        otp.send(parent, ("result", fn(*args)))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        otp.send(parent, ("raised", exc))


def subscribe_and_forward(parent, name):
    """Subscribe to variable ``name``, then forward every notification to
    ``parent`` until killed."""
    variables.subscribe_variable(name)
    otp.send(parent, ("subscribed", otp.self()))
    while True:
        otp.send(parent, ("forwarded", otp.receive()))
