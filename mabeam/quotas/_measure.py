"""Measure one OS process's RSS and CPU use with psutil -- the only part of quotas that reads the OS.

CPU percent is a rate, so it needs two samples.  Rather than keep hidden per-pid state
(psutil's ``cpu_percent(interval=None)`` does, and returns a meaningless 0.0 on the
first call), ``measure`` returns a ``Usage`` that carries the cumulative CPU seconds and
the sample time; pass it back as ``previous`` and the percent is computed between the
two samples.  The owner of the loop (the quota manager) keeps the last ``Usage``.

A pid can be reused by an unrelated process after the original exits; the process's
creation time is part of ``Usage`` and a mismatch with ``previous`` raises
``ProcessReplaced`` instead of silently measuring a stranger.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

from ._policy import QuotaError

__all__ = ["Usage", "MeasureError", "ProcessGone", "ProcessReplaced", "MeasurementDenied", "measure"]


class MeasureError(QuotaError):
    """Base class of the measurement errors."""


class ProcessGone(MeasureError, LookupError):
    """The process does not exist any more (or is a zombie waiting to be reaped)."""

    def __init__(self, ospid: int) -> None:
        self.ospid = ospid
        super().__init__(f"process {ospid} is gone")


class ProcessReplaced(ProcessGone):
    """The pid now belongs to a different process than the ``previous`` sample measured."""


class MeasurementDenied(MeasureError, PermissionError):
    """The OS refused to show this process's figures (another user's process)."""


@dataclass(frozen=True)
class Usage:
    ospid: int
    at: float  # time.monotonic() of the sample
    created: float  # the process's creation time, to detect pid reuse
    rss: int  # resident set size, bytes
    cpu_seconds: float  # user + system CPU time since the process started
    cpu_percent: float  # since ``previous``; 0.0 without one.  100.0 = one core; may exceed 100


def measure(ospid: int, previous: Usage | None = None) -> Usage:
    """Sample ``ospid`` now; CPU percent is relative to ``previous`` (same pid) if given."""
    try:
        proc = psutil.Process(ospid)
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                raise ProcessGone(ospid)
            created = proc.create_time()
            rss = proc.memory_info().rss
            times = proc.cpu_times()
        at = time.monotonic()
    except psutil.NoSuchProcess:  # includes ZombieProcess
        raise ProcessGone(ospid) from None
    except psutil.AccessDenied:
        raise MeasurementDenied(f"not allowed to measure process {ospid}") from None
    cpu_seconds = times.user + times.system
    percent = 0.0
    if previous is not None:
        if previous.ospid != ospid:
            raise ValueError(f"previous sample is of process {previous.ospid}, not {ospid}")
        if previous.created != created:
            raise ProcessReplaced(ospid)
        elapsed = at - previous.at
        if elapsed > 0:
            percent = max(0.0, (cpu_seconds - previous.cpu_seconds) / elapsed * 100.0)
    return Usage(ospid, at, created, rss, cpu_seconds, percent)
