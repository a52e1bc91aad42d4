"""What the zygote does before forking so that new processes copy few of its
pages (otp._fork_memory): functional checks only, never sizes."""

from __future__ import annotations

import ctypes
import gc
import os
import subprocess
import sys

import pytest
from helpers import down_of, recv_tagged

import otp
from otp import _fork_memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def node(start_method, node):
    return node


def report_inheritance(parent: otp.Pid) -> None:
    """Tell the parent what this process inherited from the zygote."""
    otp.send(parent, ("inherited", gc.get_freeze_count(), len(_fork_memory._FILLERS)))


def _glibc_or_skip() -> _fork_memory._Glibc:
    libc = ctypes.CDLL(None)
    if not (hasattr(libc, "mallinfo2") and hasattr(libc, "malloc_info")):
        pytest.skip("not glibc 2.33 or later")
    return _fork_memory._Glibc()


def test_a_new_process_starts_with_the_zygote_frozen_and_its_holes_filled(node):
    pid, ref = otp.spawn_monitor(report_inheritance, otp.self())
    _, frozen, fillers = recv_tagged("inherited")
    down_of(ref)
    assert frozen > 0  # the zygote's objects: its GC never writes to them
    assert fillers > 0  # the zygote took the free blocks of CPython's allocator before forking


def test_filling_malloc_holes_leaves_no_free_chunk():
    glibc = _glibc_or_skip()
    assert _fork_memory.fill_malloc_holes() > 0
    left = glibc.free_chunks()
    # Only what the report itself and these lines freed since.
    assert sum(count for _, count in left) <= 16, left


def test_filling_malloc_holes_again_takes_little_from_the_top():
    glibc = _glibc_or_skip()
    _fork_memory.fill_malloc_holes()
    before = glibc.mallinfo2().arena
    for _ in range(20):
        _fork_memory.fill_malloc_holes()
    # At most one chunk per tcache bin (32 to 1040 bytes) per call.
    assert glibc.mallinfo2().arena - before <= 20 * 64 * 1040


def test_filling_pymalloc_holes_gives_stderr_back():
    before = os.fstat(2)
    taken = _fork_memory.fill_pymalloc_holes()
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    assert taken > 0


def test_fill_holes_without_a_stderr():
    code = "import os; os.close(2); from otp import _fork_memory; _fork_memory.fill_holes(); print('filled', len(_fork_memory._FILLERS))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.startswith("filled ")
