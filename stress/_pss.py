"""Memory of a process as the kernel accounts it: ``/proc/<pid>/smaps_rollup``.

PSS (proportional set size) charges each resident page to the processes
sharing it in equal parts, so PSS summed over processes is their real
footprint; RSS would count a page shared by 1,000 processes 1,000 times.
"""

from __future__ import annotations

__all__ = ["rollup", "pss_kib", "uss_kib"]


def rollup(pid: int) -> dict[str, int]:
    """Every ``kB`` field of ``/proc/<pid>/smaps_rollup`` (Rss, Pss,
    Private_Dirty, ...), in KiB.  Raises OSError if the process is gone."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def pss_kib(pid: int) -> int:
    """PSS of ``pid`` in KiB."""
    return rollup(pid)["Pss"]


def uss_kib(fields: dict[str, int]) -> int:
    """Unique set size (private pages) from a :func:`rollup` result."""
    return fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
