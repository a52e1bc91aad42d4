"""Processes a session host monitors once each, and keeps monitoring a while.

A session host watches two kinds of processes: its callers (whose death
drops their sessions, :mod:`._host`) and the agents it asks (whose death
settles the requests open to them, :mod:`._host_asks`).  Both are asked
round after round, and a monitor costs two signals and a pidfd, so both
follow one rule, kept here: one monitor per process however many things
(sessions, requests) wait on it, and a process with nothing left waiting
stays monitored, idle, until more than ``keep_idle`` others went idle after
it.
"""

from __future__ import annotations

from collections import OrderedDict

import otp

__all__ = ["KeptMonitors"]


class KeptMonitors:
    """Monitored processes and, for each, the references waiting on it."""

    __slots__ = ("keep_idle", "waiting", "monitor_of", "pid_of", "idle")

    def __init__(self, keep_idle: int) -> None:
        self.keep_idle = keep_idle
        self.waiting: dict[otp.Pid, set[otp.Ref]] = {}
        self.monitor_of: dict[otp.Pid, otp.Ref] = {}
        self.pid_of: dict[otp.Ref, otp.Pid] = {}  # monitor -> process
        self.idle: OrderedDict[otp.Pid, None] = OrderedDict()  # monitored, nothing waiting; oldest first

    def __contains__(self, pid: object) -> bool:
        return pid in self.waiting

    def add(self, pid: otp.Pid, ref: otp.Ref) -> None:
        """``ref`` waits on ``pid`` (monitored from now on, if it was not)."""
        waiting = self.waiting.get(pid)
        if waiting is None:
            waiting = self.waiting[pid] = set()
            monitor = self.monitor_of[pid] = otp.monitor(pid)
            self.pid_of[monitor] = pid
        else:
            self.idle.pop(pid, None)
        waiting.add(ref)

    def discard(self, pid: otp.Pid, ref: otp.Ref) -> None:
        """``ref`` waits on ``pid`` no more; a process with nothing left
        waiting goes idle, and the oldest idle ones beyond ``keep_idle`` are
        let go (demonitored)."""
        waiting = self.waiting.get(pid)
        if waiting is None:
            return
        waiting.discard(ref)
        if waiting:
            return
        self.idle[pid] = None
        while len(self.idle) > self.keep_idle:
            oldest, _ = self.idle.popitem(last=False)
            del self.waiting[oldest]
            monitor = self.monitor_of.pop(oldest)
            del self.pid_of[monitor]
            otp.demonitor(monitor, flush=True)

    def down(self, monitor: otp.Ref) -> tuple[otp.Pid, set[otp.Ref]] | None:
        """The process of ``monitor`` died: it is forgotten; it and the
        references that waited on it, or None if ``monitor`` is not one of
        these."""
        pid = self.pid_of.pop(monitor, None)
        if pid is None:
            return None
        self.idle.pop(pid, None)
        del self.monitor_of[pid]
        return pid, self.waiting.pop(pid)
