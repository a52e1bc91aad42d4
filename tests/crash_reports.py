"""Crash reports (``otp._logging.report('crash', ...)`` records) as the
root process receives them from every process of the node, for tests that
check what a behaviour logs when something fails."""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from otp import _logging


class CrashReports(logging.Handler):
    """Crash reports the root process emits, as they arrive."""

    def __init__(self) -> None:
        super().__init__()
        self.records: queue.Queue[logging.LogRecord] = queue.Queue()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, _logging.REPORT, None) == "crash":
            self.records.put(record)

    def wait_for(self, match: Callable[[logging.LogRecord], bool], timeout: float = 10.0) -> logging.LogRecord:
        """The first report ``match`` accepts (queue.Empty after ``timeout``
        without one)."""
        while True:
            record = self.records.get(timeout=timeout)
            if match(record):
                return record


@contextmanager
def crash_reports() -> Iterator[CrashReports]:
    """Collect the crash reports of the ``otp`` logger while in the block."""
    handler = CrashReports()
    logging.getLogger("otp").addHandler(handler)
    try:
        yield handler
    finally:
        logging.getLogger("otp").removeHandler(handler)
