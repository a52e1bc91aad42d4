"""Looking into a running process: what ``otp.sys`` and ``otp.process_info`` cost.

Each beside ``otp.call`` to the same gen_server (it replies at once), in
the same rounds, so the ratio says what an operator's look costs compared
with the cheapest request the server could answer:

* ``sys_get_state_cost``: ``otp.sys.get_state`` per call, a system message
  the server's loop answers itself;
* ``process_info_cost``: ``otp.process_info(pid, [...])`` per call for the
  items a live view polls (queue length, status, links, monitors): the
  target's signal thread answers, the main thread is not disturbed;
* ``process_info_memory_cost``: the same with ``memory`` (the process's
  USS, read from ``/proc/<pid>/smaps_rollup`` by the caller).
"""

from __future__ import annotations

import otp
import otp.sys

from ._bench import Run, benchmark, measure_ops, started
from .kernel import EchoServer

#: Position of this module's benchmarks in the suite.
ORDER = 16

REQUIRES = ("otp.sys:get_state", "otp:process_info")
#: The items a live view asks for every process it shows.
VIEW_ITEMS = ["message_queue_len", "status", "links", "monitors"]


def _beside_call(run: Run, look) -> dict:
    """Rounds of ``otp.call`` to an echo server (the floor) alternating
    with rounds of ``look(server)``."""
    echo = started(EchoServer.start_link(None))

    def raw(i: int) -> None:
        otp.call(echo, i)

    def ours(i: int) -> None:
        look(echo)

    out = measure_ops(raw, ours, run)
    otp.stop(echo)
    return out


@benchmark(
    "sys_get_state_cost",
    unit="s",
    floor="otp.call to a gen_server replying at once",
    rounds=5,
    n=1000,
    warmup=100,
    quick=(3, 200, 20),
    requires=REQUIRES,
)
def bench_get_state(run: Run) -> dict:
    """otp.sys.get_state of a gen_server, per call."""
    return _beside_call(run, otp.sys.get_state)


@benchmark(
    "process_info_cost",
    unit="s",
    floor="otp.call to a gen_server replying at once",
    rounds=5,
    n=1000,
    warmup=100,
    quick=(3, 200, 20),
    requires=REQUIRES,
)
def bench_process_info(run: Run) -> dict:
    """otp.process_info(pid, VIEW_ITEMS) of a gen_server, per call."""
    return _beside_call(run, lambda pid: otp.process_info(pid, VIEW_ITEMS))


@benchmark(
    "process_info_memory_cost",
    unit="s",
    floor="otp.call to a gen_server replying at once",
    rounds=5,
    n=300,
    warmup=30,
    quick=(3, 60, 10),
    requires=REQUIRES,
)
def bench_process_info_memory(run: Run) -> dict:
    """otp.process_info(pid, ["memory"]) of a gen_server, per call."""
    return _beside_call(run, lambda pid: otp.process_info(pid, ["memory"]))
