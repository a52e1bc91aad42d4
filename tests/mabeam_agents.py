"""Agent classes the MABEAM tests start (importable by every start method)."""

from __future__ import annotations

import time

import mabeam


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
            import otp

            otp.send(message[1], ("seen", self.agent_id, list(self.seen)))


class CrashingSetup(mabeam.Agent):
    def setup(self, args):
        raise RuntimeError("cannot start")
