"""Prometheus metrics kept by the collector, and their text exposition.

Series are labelled by what survives a restart, never by pid: a process's
registered name, or the path of child ids from its supervision tree's root
(``kernel/timer_server``).  Counters of a labelled process add up across
its incarnations: each sample adds what its counts grew by since the
previous sample of the same pid, and a new pid under the same label starts
from its own counts (everything it took in since it started).  Processes
with neither a name nor a place in a followed tree are counted in the
node's totals only.

Families (``otp_`` prefix):

* ``otp_processes``: live processes (gauge);
* ``otp_process_messages_in_total``, ``otp_process_messages_out_total``:
  mailbox frames taken in and sent (a call is one in, its reply one out);
* ``otp_process_message_queue_len``, ``otp_process_rss_bytes``,
  ``otp_process_uss_bytes``: as of the last sample (gauges);
* ``otp_supervisor_child_restarts_total{supervisor, child}``,
  ``otp_supervisor_child_exits_total{supervisor, child, reason}``;
* ``otp_log_reports_total{kind}``;
* ``otp_observer_round_seconds``, ``otp_observer_rows`` (the collector's
  own cost).

The number of label sets is bounded (:data:`MAX_SERIES` per family; past
it new ones are counted in ``otp_observer_series_dropped_total``).
"""

from __future__ import annotations

from collections.abc import Iterable

from .._pid import Pid
from ._records import MetricFamily, MetricSample

__all__ = ["Metrics", "render_text", "MAX_SERIES"]

MAX_SERIES = 5000
#: Distinct exit reasons kept per supervisor child; the rest are ``other``.
MAX_REASONS = 16

Labels = tuple[tuple[str, str], ...]

_HELP = {
    "otp_processes": ("gauge", "Live processes of the node."),
    "otp_node_rss_bytes": ("gauge", "Resident bytes of the node's processes, summed (shared pages counted in each)."),
    "otp_process_messages_in_total": ("counter", "Mailbox frames taken in, across restarts of the labelled process."),
    "otp_process_messages_out_total": ("counter", "Mailbox frames sent, across restarts of the labelled process."),
    "otp_process_message_queue_len": ("gauge", "Messages waiting in the labelled process's mailbox."),
    "otp_process_rss_bytes": ("gauge", "Resident bytes of the labelled process."),
    "otp_process_uss_bytes": ("gauge", "Bytes only the labelled process holds (read every few rounds)."),
    "otp_process_restarts": ("gauge", "Restarts of the labelled process's supervisor child slot seen."),
    "otp_supervisor_child_restarts_total": ("counter", "Restarts of a supervisor's child."),
    "otp_supervisor_child_exits_total": ("counter", "Exits of a supervisor's children, by reason."),
    "otp_log_reports_total": ("counter", "Crash, supervisor and progress reports logged."),
    "otp_observer_round_seconds": ("gauge", "Seconds the collector's last round took."),
    "otp_observer_rows": ("gauge", "Processes in the collector's table."),
    "otp_observer_series_dropped_total": ("counter", "Label sets not kept (past the bound per family)."),
}


class Metrics:
    """Counters and gauges by family and label set."""

    def __init__(self) -> None:
        self.values: dict[str, dict[Labels, float]] = {name: {} for name in _HELP}
        #: label -> (pid, messages in, messages out) at its last sample.
        self._last: dict[str, tuple[Pid, int, int]] = {}
        self._reasons: dict[tuple[str, str], set[str]] = {}

    def _series(self, name: str, labels: Labels) -> bool:
        family = self.values[name]
        if labels in family:
            return True
        if len(family) >= MAX_SERIES:
            self.add("otp_observer_series_dropped_total", (), 1)
            return False
        family[labels] = 0.0
        return True

    def add(self, name: str, labels: Labels, amount: float) -> None:
        if self._series(name, labels):
            self.values[name][labels] += amount

    def gauge(self, name: str, labels: Labels, value: float) -> None:
        if self._series(name, labels):
            self.values[name][labels] = value

    # ------------------------------------------------------------ feeding

    def exited(self, supervisor: str, child: str, reason: str) -> None:
        seen = self._reasons.setdefault((supervisor, child), set())
        if reason not in seen:
            if len(seen) >= MAX_REASONS:
                reason = "other"
            seen.add(reason)
        self.add(
            "otp_supervisor_child_exits_total", (("supervisor", supervisor), ("child", child), ("reason", reason)), 1
        )

    def restarted(self, supervisor: str, child: str) -> None:
        self.add("otp_supervisor_child_restarts_total", (("supervisor", supervisor), ("child", child)), 1)

    def reported(self, kind: str) -> None:
        self.add("otp_log_reports_total", (("kind", kind),), 1)

    def sampled(
        self,
        label: str,
        pid: Pid,
        messages_in: int | None,
        messages_out: int | None,
        queue: int | None,
        rss: int | None,
        uss: int | None,
        restarts: int,
    ) -> None:
        """A fresh sample of the process known as ``label``."""
        labels = (("process", label),)
        if messages_in is not None and messages_out is not None:
            last = self._last.get(label)
            if last is not None and last[0] == pid:
                grew_in, grew_out = max(0, messages_in - last[1]), max(0, messages_out - last[2])
            else:
                grew_in, grew_out = messages_in, messages_out  # a new incarnation: all it counted
            self._last[label] = (pid, messages_in, messages_out)
            self.add("otp_process_messages_in_total", labels, grew_in)
            self.add("otp_process_messages_out_total", labels, grew_out)
        if queue is not None:
            self.gauge("otp_process_message_queue_len", labels, queue)
        if rss is not None:
            self.gauge("otp_process_rss_bytes", labels, rss)
        if uss is not None:
            self.gauge("otp_process_uss_bytes", labels, uss)
        self.gauge("otp_process_restarts", labels, restarts)

    def round_done(self, processes: int, node_rss: int, seconds: float, rows: int, live_labels: set[str]) -> None:
        self.gauge("otp_processes", (), processes)
        self.gauge("otp_node_rss_bytes", (), node_rss)
        self.gauge("otp_observer_round_seconds", (), seconds)
        self.gauge("otp_observer_rows", (), rows)
        # Gauges of a label no live process holds describe nothing now.
        for name in ("otp_process_message_queue_len", "otp_process_rss_bytes", "otp_process_uss_bytes"):
            family = self.values[name]
            for labels in [lb for lb in family if lb and lb[0][1] not in live_labels]:
                del family[labels]

    # ------------------------------------------------------------ reading

    def families(self) -> list[MetricFamily]:
        out = []
        for name, (kind, text) in _HELP.items():
            family = self.values[name]
            if not family and name not in ("otp_processes", "otp_observer_rows"):
                continue
            samples = tuple(MetricSample(labels, value) for labels, value in family.items())
            out.append(MetricFamily(name, kind, text, samples))  # type: ignore[arg-type]
        return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value != value:
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def render_text(families: Iterable[MetricFamily]) -> str:
    """Prometheus' text exposition format (version 0.0.4)."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for sample in family.samples:
            if sample.labels:
                labels = ",".join(f'{key}="{_escape(value)}"' for key, value in sample.labels)
                lines.append(f"{family.name}{{{labels}}} {_number(sample.value)}")
            else:
                lines.append(f"{family.name} {_number(sample.value)}")
    return "\n".join(lines) + "\n"
