"""The peer workloads on Ray (a local cluster started by ``ray.init``; each
actor is a worker process), driven from the driver process.

* call round trip: ``ray.get(echo.echo.remote(REQUEST))``;
* cast throughput: ``sink.add.remote(REQUEST)`` n times without ``get``,
  then one ``ray.get(sink.count.remote())`` (an actor runs one caller's
  calls in order; the count is checked);
* spawn + first reply: ``Echo.remote()`` + ``ray.get(echo.echo.remote(REQUEST))``
  (the actor is killed with ``ray.kill`` afterwards, outside the timing);
* SIGKILL -> notification: Ray has no monitors; what reports a dead actor
  is a call in flight, which fails with ``ActorDiedError``.  A call that
  blocks in the actor is started, the actor's worker is SIGKILLed, and the
  time until ``ray.wait`` returns that call (failed) is the figure.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from typing import Any

import ray  # type: ignore[import-not-found, unused-ignore]

from ._common import REQUEST, SPAWN_SETTLE_S, timed


@ray.remote
class Echo:
    def echo(self, x):
        return x

    def pid(self):
        return os.getpid()

    def block(self):
        threading.Event().wait()


@ray.remote
class Sink:
    def __init__(self):
        self.n = 0

    def add(self, x):
        self.n += 1

    def count(self):
        return self.n


class RayPeer:
    name = "ray"
    how = {
        "call_round_trip": "ray.get(actor.echo.remote(request))",
        "cast_throughput": "actor.add.remote(request) x n, then ray.get(actor.count.remote())",
        "spawn_first_reply": "Actor.remote() + ray.get(actor.echo.remote(request))",
        "sigkill_to_down": "SIGKILL -> a call in flight fails with ActorDiedError (ray.wait)",
    }

    @staticmethod
    def version() -> str:
        return ray.__version__

    def __init__(self) -> None:
        self.tmp: str | None = None

    def start(self) -> None:
        # A private session directory (logs, sockets), removed at the end.
        self.tmp = tempfile.mkdtemp(prefix="stress-ray-")
        ray.init(
            _temp_dir=self.tmp,
            num_cpus=os.cpu_count() or 2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=True,
            logging_level="ERROR",
        )

    def sessions(self) -> set[int]:
        return set()

    def stop(self) -> None:
        if ray.is_initialized():
            ray.shutdown()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    # ------------------------------------------------------------ workloads

    def call_round_trip(self, rounds: int, n: int, warmup: int, **_other: Any) -> dict:
        echo = Echo.remote()  # type: ignore[attr-defined, unused-ignore]

        def op(i: int) -> None:
            if ray.get(echo.echo.remote(REQUEST)) != REQUEST:
                raise AssertionError("ray echo answered wrong")

        timed(op, warmup)
        out = [timed(op, n) for _ in range(rounds)]
        ray.kill(echo)
        return {"rounds": out, "unit": "s"}

    def cast_throughput(self, rounds: int, n: int, warmup: int, **_other: Any) -> dict:
        sink = Sink.remote()  # type: ignore[attr-defined, unused-ignore]
        ray.get(sink.count.remote())
        sent = [0]

        def burst(count: int) -> float:
            t0 = time.perf_counter()
            for _ in range(count):
                sink.add.remote(REQUEST)
            got = ray.get(sink.count.remote(), timeout=300)
            dt = time.perf_counter() - t0
            sent[0] += count
            if got != sent[0]:
                raise AssertionError(f"ray sink counted {got}, {sent[0]} were sent")
            return count / dt

        burst(warmup)
        out = [[burst(n)] for _ in range(rounds)]
        ray.kill(sink)
        return {"rounds": out, "unit": "msg/s"}

    def spawn_first_reply(self, rounds: int, n: int, warmup: int, **_other: Any) -> dict:
        def once() -> float:
            time.sleep(SPAWN_SETTLE_S)  # the same settle pause as ours, outside the timed region
            t0 = time.perf_counter()
            actor = Echo.remote()  # type: ignore[attr-defined, unused-ignore]
            if ray.get(actor.echo.remote(REQUEST), timeout=120) != REQUEST:
                raise AssertionError("ray echo answered wrong")
            dt = time.perf_counter() - t0
            ray.kill(actor)
            return dt

        for _ in range(warmup):
            once()
        return {"rounds": [[once() for _ in range(n)] for _ in range(rounds)], "unit": "s"}

    def sigkill_to_down(self, rounds: int, n: int, warmup: int, detect_timeout: float = 10.0, **_other: Any) -> dict:
        undetected = 0

        def once() -> float | None:
            nonlocal undetected
            actor = Echo.remote()  # type: ignore[attr-defined, unused-ignore]
            victim = ray.get(actor.pid.remote(), timeout=120)
            pending = actor.block.remote()
            # Let the blocking call reach the actor (outside the timed region).
            ray.wait([pending], timeout=0.05)
            t0 = time.perf_counter()
            os.kill(victim, signal.SIGKILL)
            ready, _ = ray.wait([pending], timeout=detect_timeout)
            dt = time.perf_counter() - t0
            if not ready:
                undetected += 1
                ray.kill(actor)
                return None
            try:
                ray.get(pending)
            except ray.exceptions.RayActorError:
                return dt
            raise AssertionError("the blocking call returned although its actor was killed")

        for _ in range(warmup):
            once()
        undetected = 0
        out = [[once() for _ in range(n)] for _ in range(rounds)]
        return {"rounds": out, "unit": "s", "undetected": undetected, "detect_timeout": detect_timeout}
