"""The peer workloads on Thespian (``ActorSystem('multiprocTCPBase')``: one
OS process per actor, TCP between them), driven from outside the actor system
as our benchmarks are driven from the node's root process.

* call round trip: ``asys.ask(echo, REQUEST)``;
* cast throughput: ``asys.tell(sink, REQUEST)`` n times, then one
  ``asys.ask(sink, 'count')`` (the sink counts; the count is checked);
* spawn + first reply: ``asys.createActor(Echo)`` + ``asys.ask(echo, REQUEST)``;
* SIGKILL -> notification: a watcher actor creates the victim as its child
  (Thespian tells a parent ``ChildActorExited``; it has no monitors) and
  relays the notification to the harness, which waits in ``asys.listen``.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Any

from thespian.actors import (  # type: ignore[import-not-found, unused-ignore]
    Actor,
    ActorExitRequest,
    ActorSystem,
    ChildActorExited,
)

from ._common import REQUEST, SPAWN_SETTLE_S, timed


class Echo(Actor):
    def receiveMessage(self, msg, sender):
        if isinstance(msg, (ActorExitRequest, ChildActorExited)):
            return
        if msg == "$pid":
            self.send(sender, ("$pid", os.getpid(), os.getppid()))
            return
        self.send(sender, msg)


class Sink(Actor):
    count = 0

    def receiveMessage(self, msg, sender):
        if isinstance(msg, (ActorExitRequest, ChildActorExited)):
            return
        if msg == "count":
            self.send(sender, self.count)
            return
        self.count += 1


class Watcher(Actor):
    notify = None
    child_pid = None

    def receiveMessage(self, msg, sender):
        if isinstance(msg, ActorExitRequest):
            return
        if msg == "spawn":
            self.notify = sender
            child = self.createActor(Echo)
            self.send(child, "$pid")
        elif isinstance(msg, tuple) and msg and msg[0] == "$pid":
            self.child_pid = msg[1]
            self.send(self.notify, msg[1])
        elif isinstance(msg, ChildActorExited):
            self.send(self.notify, ("exited", self.child_pid))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThespianPeer:
    name = "thespian"
    how = {
        "call_round_trip": "ActorSystem.ask(echo, request)",
        "cast_throughput": "ActorSystem.tell x n, then ask(sink, 'count')",
        "spawn_first_reply": "createActor(Echo) + ask",
        "sigkill_to_down": "SIGKILL -> parent actor's ChildActorExited relayed to the asker",
    }

    def __init__(self) -> None:
        self.asys: Any = None
        self.admin_pid = None

    @staticmethod
    def version() -> str:
        from importlib.metadata import version

        return version("thespian")

    def start(self) -> None:
        # A private admin port: never join somebody else's actor system on 1900.
        self.asys = ActorSystem("multiprocTCPBase", {"Admin Port": _free_port()})
        probe = self.asys.createActor(Echo)
        _, _, self.admin_pid = self.asys.ask(probe, "$pid", 30)
        self.asys.tell(probe, ActorExitRequest())

    def sessions(self) -> set[int]:
        """Session ids of the actor system's processes (the admin does setsid)."""
        try:
            return {os.getsid(self.admin_pid)} if self.admin_pid else set()
        except OSError:
            return set()

    def stop(self) -> None:
        if self.asys is not None:
            self.asys.shutdown()
            self.asys = None

    # ------------------------------------------------------------ workloads

    def call_round_trip(self, rounds: int, n: int, warmup: int, **_other: Any) -> dict:
        asys = self.asys
        echo = asys.createActor(Echo)

        def op(i: int) -> None:
            if asys.ask(echo, REQUEST, 30) != REQUEST:
                raise AssertionError("thespian echo answered wrong")

        timed(op, warmup)
        out = [timed(op, n) for _ in range(rounds)]
        asys.tell(echo, ActorExitRequest())
        return {"rounds": out, "unit": "s"}

    def cast_throughput(self, rounds: int, n: int, warmup: int, **_other: Any) -> dict:
        asys = self.asys
        sink = asys.createActor(Sink)
        sent = [0]

        def burst(count: int) -> float:
            t0 = time.perf_counter()
            for _ in range(count):
                asys.tell(sink, REQUEST)
            got = asys.ask(sink, "count", 120)
            dt = time.perf_counter() - t0
            sent[0] += count
            if got != sent[0]:
                raise AssertionError(f"thespian sink counted {got}, {sent[0]} were sent")
            return count / dt

        burst(warmup)
        out = [[burst(n)] for _ in range(rounds)]
        asys.tell(sink, ActorExitRequest())
        return {"rounds": out, "unit": "msg/s"}

    def spawn_first_reply(self, rounds: int, n: int, warmup: int, **_other: Any) -> dict:
        asys = self.asys

        def once() -> float:
            time.sleep(SPAWN_SETTLE_S)  # the same settle pause as ours, outside the timed region
            t0 = time.perf_counter()
            actor = asys.createActor(Echo)
            if asys.ask(actor, REQUEST, 30) != REQUEST:
                raise AssertionError("thespian echo answered wrong")
            dt = time.perf_counter() - t0
            asys.tell(actor, ActorExitRequest())
            return dt

        for _ in range(warmup):
            once()
        return {"rounds": [[once() for _ in range(n)] for _ in range(rounds)], "unit": "s"}

    def sigkill_to_down(self, rounds: int, n: int, warmup: int, detect_timeout: float = 10.0, **_other: Any) -> dict:
        asys = self.asys
        undetected = 0

        def once() -> float | None:
            nonlocal undetected
            watcher = asys.createActor(Watcher)
            victim = asys.ask(watcher, "spawn", 30)
            if not isinstance(victim, int):
                raise AssertionError(f"thespian watcher answered {victim!r}")
            t0 = time.perf_counter()
            os.kill(victim, signal.SIGKILL)
            deadline = t0 + detect_timeout
            dt = None
            while dt is None and time.perf_counter() < deadline:
                got = asys.listen(max(0.0, deadline - time.perf_counter()))
                if got == ("exited", victim):
                    dt = time.perf_counter() - t0
            asys.tell(watcher, ActorExitRequest())
            if dt is None:
                undetected += 1
            return dt

        for _ in range(warmup):
            once()
        undetected = 0
        out = [[once() for _ in range(n)] for _ in range(rounds)]
        return {"rounds": out, "unit": "s", "undetected": undetected, "detect_timeout": detect_timeout}
