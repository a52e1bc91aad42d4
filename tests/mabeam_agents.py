"""Agent classes the MABEAM tests start (importable by every start method)."""

from __future__ import annotations

import os
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


class ReportingAgent(EchoAgent):
    """An EchoAgent that tells ``args['observer']`` ``('teardown', id,
    reason)`` when it stops; the message ``('alloc', nbytes)`` makes it
    allocate (and touch) that much memory."""

    def setup(self, args):
        super().setup(args)
        self.observer = args["observer"]

    def handle_message(self, message):
        if isinstance(message, tuple) and message[0] == "alloc":  # for a quota to see
            self.hog = b"x" * message[1]  # every page touched
        else:
            super().handle_message(message)

    def teardown(self, reason):
        otp.send(self.observer, ("teardown", self.agent_id, reason))


class TrappingAgent(ReportingAgent):
    """Takes its linked processes' exits as messages: tells the observer
    ``('exit', id, reason)``."""

    trap_exits = True

    def handle_message(self, message):
        if isinstance(message, otp.EXIT):
            otp.send(self.observer, ("exit", self.agent_id, message.reason))
        else:
            super().handle_message(message)


class CrashLoop(mabeam.Agent):
    """Crashes right after every start: it sends itself a message its
    ``handle_message`` does not survive."""

    def setup(self, args):
        otp.send(otp.self(), "crash")

    def handle_message(self, message):
        if message == "crash":
            raise RuntimeError("crash loop")


class FailsOnRestart(CrashLoop):
    """Starts once and crashes; its ``setup`` fails on every later start
    (``args`` is a marker file that says it started before)."""

    def setup(self, args):
        if os.path.exists(args):
            raise RuntimeError("cannot start again")
        with open(args, "w"):
            pass
        super().setup(args)


def crash_soon(why):
    """A process body that raises at once."""
    raise RuntimeError(why)


def link_to_crash(agent, why):
    """Run in an agent: link it to a process that crashes with ``why``."""
    otp.spawn_link(crash_soon, why)
    return "linked"


class Idle(otp.Service):
    """A process that only waits (a child the agent watch tests supervise)."""


def start_idle():
    return Idle.start_link(None)


def watch_and_report(parent, monitor_agents, app, supervisor, report_running=True):
    """A process that follows ``supervisor`` with an AgentWatch and sends
    ``('event', event)`` to ``parent`` for each of its events.  ``'pause'``
    holds every message until ``'go'``; ``'stop'`` ends it."""
    from mabeam._agent_watch import AgentWatch

    watch = AgentWatch(monitor_agents=monitor_agents, report_running=report_running, app=app, supervisor=supervisor)
    otp.send(parent, ("ready", otp.self()))
    while True:
        msg = otp.receive()
        if msg == "pause":
            otp.send(parent, "paused")
            otp.receive(None, lambda m: m == "go")
        elif msg == "stop":
            return
        else:
            for event in watch.handle(msg) or ():
                otp.send(parent, ("event", event))
