"""Memory of a process as the kernel accounts it: ``/proc/<pid>/smaps_rollup``.

PSS (proportional set size) charges each resident page to the processes
sharing it in equal parts, so PSS summed over processes is their real
footprint; RSS would count a page shared by 1,000 processes 1,000 times.
"""

from __future__ import annotations

import os

__all__ = ["rollup", "pss_kib", "uss_kib", "private_by_mapping", "MAPPING_KINDS"]

#: What :func:`private_by_mapping` tells apart.
MAPPING_KINDS = ("heap", "anon", "python_data", "other_data", "stack")


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


def _mapping_kind(name: str, perms: str) -> str | None:
    """The kind of a mapping of ``/proc/<pid>/smaps`` (None: read-only file
    pages, shared by every process that maps the file)."""
    if name == "[heap]":
        return "heap"  # glibc's main arena: objects over 512 bytes, libzmq's allocations
    if name == "[stack]":
        return "stack"  # the main thread's
    if not name:
        return "anon"  # pymalloc arenas, threads' stacks and malloc arenas
    if "w" not in perms:
        return None
    base = os.path.basename(name)
    if base.startswith(("libpython", "python")):
        return "python_data"  # the interpreter's static data: static types, small ints, caches
    return "other_data"


def private_by_mapping(pid: int) -> dict[str, int]:
    """Private KiB (Private_Clean + Private_Dirty) of ``pid`` by kind of
    mapping (:data:`MAPPING_KINDS`), from ``/proc/<pid>/smaps``: where a
    process's own pages are.  Raises OSError if the process is gone."""
    out = dict.fromkeys(MAPPING_KINDS, 0)
    kind: str | None = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if parts[0].endswith(":"):
                if kind is not None and parts[0] in ("Private_Clean:", "Private_Dirty:"):
                    out[kind] += int(parts[1])
            elif "-" in parts[0]:
                kind = _mapping_kind(parts[5] if len(parts) > 5 else "", parts[1])
    return out
