"""Agent classes the MABEAM tests start (importable by every start method)."""

from __future__ import annotations

import time

import mabeam
import otp


class EchoAgent(mabeam.Agent):
    capabilities = frozenset({"echo"})

    def setup(self, args):
        self.seen = []
        self.vote = (args or {}).get("vote", "approve") if isinstance(args, dict) else "approve"

    def handle_request(self, message):
        if message == "boom":
            raise ValueError("bad request")
        if isinstance(message, tuple) and message[0] == "sleep":
            time.sleep(message[1])  # sleep-ok: a slow agent is the subject
        self.seen.append(message)
        return (self.agent_id, message)

    def handle_vote(self, proposal):
        return self.vote

    def handle_event(self, topic, event):
        self.seen.append((topic, event))

    def handle_message(self, message):
        if isinstance(message, tuple) and message[0] == "tell_seen":
            otp.send(message[1], ("seen", self.agent_id, list(self.seen)))


class CrashingSetup(mabeam.Agent):
    def setup(self, args):
        raise RuntimeError("cannot start")


def seen_by(agent, extra):
    """Run in an agent (``kind='run'``): what it has seen, and ``extra``."""
    return (agent.agent_id, list(agent.seen), extra)


def fail_in(agent, why):
    """Run in an agent: raises, as a protocol step with a bug would."""
    raise RuntimeError(why)


def exit_with(agent, reason):
    """Run in an agent: it exits with ``reason`` (``'kill'``: killed)."""
    otp.exit(otp.self(), reason)
