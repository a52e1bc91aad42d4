"""Fewer pages copied per forked process: fill the zygote's free slots.

A process forked from the zygote copies each page it writes that it still
shares with the zygote, so what it costs is about one page per object of
the zygote's it touches.  Some of those touches are not its own doing:
what it allocates goes first to the free slots it inherited, scattered
over the zygote's heaps (each allocation then copies a page of the
zygote's, and in glibc's bins the pages of the chunk's neighbours too,
whose links it rewrites), where the same objects in fresh memory would
share pages with each other.  So before it forks, the zygote empties
CPython's free lists and takes the free slots itself, with allocations it
keeps and nobody touches: the small-object allocator's free blocks, then
glibc's free chunks; and it empties the type attribute cache (see
clear_type_cache).  Measured in stress/README.md ("Memory per process"),
each of these four saves 95 to 370 KiB per process.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import re
import sys
from collections.abc import Callable

log = logging.getLogger("otp")

__all__ = ["fill_holes", "clear_type_cache", "fill_pymalloc_holes", "fill_malloc_holes"]

#: Objects filling pymalloc's free blocks, kept for good.
_FILLERS: list[tuple[object, ...]] = []
_PYMALLOC_CLASS = re.compile(r"^\s*\d+\s+(\d+)\s+\d+\s+\d+\s+(\d+)\s*$", re.MULTILINE)
#: Requests that map to glibc's tcache bins (chunks of 32 to 1040 bytes by
#: 16), and how many chunks a bin holds at most.
_TCACHE_REQUESTS = range(24, 1033, 16)
_TCACHE_COUNT = 7
#: Taking part of a free chunk leaves the rest free: a few rounds take those.
_MALLOC_ROUNDS = 4
_FREE_CHUNKS = re.compile(r'<(?:size|unsorted) from="(\d+)" to="\d+" total="\d+" count="(\d+)"/>')
_IONBF = 2


def fill_holes() -> None:
    """Before forking (first, and after each module the zygote learns): freeze
    the zygote's objects, so that a new process's cyclic GC never writes to
    them; empty CPython's free lists (a full collection does that, and with
    everything frozen it traverses nothing); fill the allocators' free slots
    (see above); and empty the type attribute cache (see below)."""
    gc.freeze()
    gc.collect()
    for fill in (fill_pymalloc_holes, fill_malloc_holes):
        try:
            fill()
        except OSError as exc:  # no memfd, no descriptor left: processes cost more, nothing else
            log.warning("zygote: %s failed (%s)", fill.__name__, exc)
    gc.freeze()
    clear_type_cache()


def clear_type_cache() -> None:
    """Empty CPython's type attribute cache.  A lookup that misses it stores
    its name in an entry and releases the name stored there before, whose
    reference count is on some page of the zygote's: the new process copies
    that page.  An empty entry holds ``None``, whose page every process
    writes anyway."""
    clear = getattr(sys, "_clear_type_cache", None)
    if clear is not None:
        clear()


def _read_written(write: Callable[[int], None]) -> str:
    """What ``write(fd)`` writes to a descriptor, through a memfd."""
    fd = os.memfd_create("otp-allocator-report", os.MFD_CLOEXEC)
    try:
        write(fd)
        return os.pread(fd, os.fstat(fd).st_size, 0).decode("ascii", "replace")
    finally:
        os.close(fd)


def _write_pymalloc_stats(fd: int) -> None:
    """``sys._debugmallocstats`` writes to the C stderr: lend it ``fd``."""
    saved = os.dup(2)
    try:
        os.dup2(fd, 2)
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _pymalloc_filler(size: int) -> Callable[[], object] | None:
    """A maker of new objects that take exactly one ``size``-byte block."""
    if size == 16:
        return object  # refcount and type
    if size == 32:
        return lambda: int.from_bytes(b"\xe8\x03", "little")  # one digit: 28 bytes
    if size >= 48:
        return lambda: bytes(size - 33)  # a 33-byte header, the terminator included
    return None


def fill_pymalloc_holes() -> int:
    """Allocate every free block of the pools CPython's allocator takes from
    next, into objects kept in :data:`_FILLERS`; returns how many (0 in a
    Python without ``sys._debugmallocstats``)."""
    if not hasattr(sys, "_debugmallocstats"):
        return 0
    taken = 0
    for size, free in _PYMALLOC_CLASS.findall(_read_written(_write_pymalloc_stats)):
        make = _pymalloc_filler(int(size))
        if make is not None and int(free):
            _FILLERS.append(tuple(make() for _ in range(int(free))))
            taken += int(free)
    return taken


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


class _Glibc:
    """What :func:`fill_malloc_holes` calls in glibc (2.33 or later);
    AttributeError in another C library."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.malloc = libc.malloc
        self.malloc.restype = ctypes.c_void_p
        self.malloc.argtypes = [ctypes.c_size_t]
        self.mallinfo2 = libc.mallinfo2
        self.mallinfo2.restype = _MallInfo2
        self.mallinfo2.argtypes = []
        self.malloc_info = libc.malloc_info
        self.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
        self.fdopen = libc.fdopen
        self.fdopen.restype = ctypes.c_void_p
        self.fdopen.argtypes = [ctypes.c_int, ctypes.c_char_p]
        self.setvbuf = libc.setvbuf
        self.setvbuf.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_size_t]
        self.fclose = libc.fclose
        self.fclose.argtypes = [ctypes.c_void_p]

    def top(self) -> int:
        """Size of the main arena's top chunk, from which nothing was carved
        yet; it shrinks when an allocation is carved from it."""
        return int(self.mallinfo2().keepcost)

    def free_chunks(self) -> list[tuple[int, int]]:
        """``(chunk size, count)`` of the free chunks in the main arena's
        bins (the tcache's are not listed), from ``malloc_info``."""
        main = _read_written(self._write_malloc_info).split('<heap nr="1">', 1)[0].split("</sizes>", 1)[0]
        return [(int(size) & ~15, int(count)) for size, count in _FREE_CHUNKS.findall(main)]

    def _write_malloc_info(self, fd: int) -> None:
        # Unbuffered, so that the stream frees no buffer once the report is read.
        dup = os.dup(fd)
        stream = self.fdopen(dup, b"w")
        if not stream:
            os.close(dup)
            raise OSError(ctypes.get_errno(), "fdopen failed")
        self.setvbuf(stream, None, _IONBF, 0)
        self.malloc_info(0, stream)
        self.fclose(stream)


def fill_malloc_holes() -> int:
    """Allocate every free chunk of glibc's main arena (the tcache's and the
    bins') and never free them, so that a new process allocates from the
    top of the heap; returns how many (0 with another C library).  Each call
    also carves at most one chunk per tcache bin from the top itself."""
    try:
        glibc = _Glibc()
    except (OSError, AttributeError):
        return 0
    taken = 0
    left = None
    for _ in range(_MALLOC_ROUNDS):
        chunks = glibc.free_chunks()
        free = sum(size * count for size, count in chunks)
        if not chunks or (left is not None and free >= left):
            break  # none left, or this thread allocates in another arena (a node started in a thread, under fork)
        left = free
        for size, count in sorted(chunks, reverse=True):
            for _ in range(count):
                glibc.malloc(max(16, size - 16))
                taken += 1
    for request in _TCACHE_REQUESTS:
        for _ in range(_TCACHE_COUNT + 1):
            top = glibc.top()
            glibc.malloc(request)
            taken += 1
            if glibc.top() != top:
                break  # carved from the top: this bin was empty
    return taken
