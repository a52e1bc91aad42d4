"""Thin wrappers over the Linux facilities the kernel relies on.

Everything here is a direct system call or a read of ``/proc``; nothing
blocks longer than the timeout it is given.  Process identity on a host is
``(ospid, start)`` where ``start`` is the kernel's start time of the process
in clock ticks (field 22 of ``/proc/<pid>/stat``): an OS pid can be reused
(``pid_max`` is 32768 on many machines), the pair cannot.

``/proc/<pid>/stat`` is read here and nowhere else: :func:`proc_state` for
one process, :func:`proc_states` for all, :func:`descendants` for a tree.
"""

from __future__ import annotations

import ctypes
import os
import resource
import select
import signal
import time
from collections.abc import Iterator
from typing import NamedTuple

__all__ = [
    "ProcStat",
    "ProcMemory",
    "proc_memory",
    "proc_start_time",
    "proc_state",
    "proc_states",
    "descendants",
    "fd_readable",
    "open_verified_pidfd",
    "os_process_alive",
    "set_parent_death_signal",
    "set_child_subreaper",
    "raise_fd_limit",
    "pidfd_kill",
    "session_members",
    "related_processes",
    "kill_session",
]

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


class ProcStat(NamedTuple):
    """What ``/proc/<pid>/stat`` says of a process (the fields the kernel
    code uses).  Indexing as ``(state, start)`` also works."""

    state: str  #: one letter: R running, S/D sleeping, T/t stopped, Z zombie, X dead...
    start: int  #: start time in clock ticks since boot
    ppid: int
    session: int
    flags: int = 0  #: the main thread's task flags (PF_*)
    pending: int = 0  #: signals pending for the main thread (a bitmap, signal n at bit n-1)

    @property
    def dead(self) -> bool:
        """Exited: a zombie waiting to be reaped, or being reaped."""
        return self.state in ("Z", "X")

    @property
    def dying(self) -> bool:
        """Dead, or past the point of no return.  A process SIGKILLed a
        moment ago keeps its state letter (R, S) for milliseconds while
        the kernel tears it down, but from the moment ``kill`` returns
        SIGKILL is pending in its main thread (every fatal signal becomes
        one), and then the thread is flagged ``PF_EXITING``: both say it
        will never run user code again."""
        return self.dead or bool(self.flags & _PF_EXITING) or bool(self.pending & _SIGKILL_PENDING)

    @property
    def stopped(self) -> bool:
        """Stopped by a signal (SIGSTOP) or a tracer."""
        return self.state in ("T", "t")


#: ``PF_EXITING`` in the ``flags`` field of ``/proc/<pid>/stat`` (include/linux/sched.h).
_PF_EXITING = 0x4
#: SIGKILL in the pending-signal bitmap of ``/proc/<pid>/stat``.
_SIGKILL_PENDING = 1 << (signal.SIGKILL - 1)


def _parse_stat(data: bytes) -> ProcStat:
    # The command name (field 2) may contain spaces and parentheses; the
    # fields after the last ')' are well formed (state is field 3, so
    # field n is tail[n - 3]: ppid 4, session 6, flags 9, start 22,
    # pending 31).
    tail = data[data.rindex(b")") + 2 :].split()
    return ProcStat(tail[0].decode(), int(tail[19]), int(tail[1]), int(tail[3]), int(tail[6]), int(tail[28]))


def proc_state(ospid: int) -> ProcStat | None:
    """What ``/proc/<ospid>/stat`` says, or None if there is no such process.
    Other OSErrors (EMFILE) are raised."""
    # os.open/os.read rather than open(): no buffered file object, a third
    # of the cost, and this is on the path of every liveness check.
    try:
        fd = os.open(f"/proc/{ospid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        data = os.read(fd, 4096)
    except ProcessLookupError:  # reaped between the open and the read
        return None
    finally:
        os.close(fd)
    if not data:
        return None
    return _parse_stat(data)


def proc_states() -> Iterator[tuple[int, ProcStat]]:
    """``(ospid, stat)`` of every process whose stat could be read."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                st = proc_state(int(entry))
            except (OSError, ValueError):
                continue
            if st is not None:
                yield int(entry), st


def descendants(ospid: int) -> set[int]:
    """OS pids of the children of ``ospid``, their children, and so on
    (zombies included); one pass over /proc."""
    children: dict[int, list[int]] = {}
    for pid, st in proc_states():
        children.setdefault(st.ppid, []).append(pid)
    out: set[int] = set()
    stack = [ospid]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in out:
                out.add(child)
                stack.append(child)
    return out


class ProcMemory(NamedTuple):
    """What ``/proc/<pid>/smaps_rollup`` says of a process's memory, in bytes."""

    rss: int  #: resident pages, those shared with other processes included
    pss: int  #: resident pages, each shared one divided among its sharers
    uss: int  #: resident pages no other process shares (what its exit frees)


_ROLLUP_FIELDS = {b"Rss:": 0, b"Pss:": 1, b"Private_Clean:": 2, b"Private_Dirty:": 3}


def proc_memory(ospid: int) -> ProcMemory | None:
    """The memory of ``ospid`` (one read of its ``smaps_rollup``, which the
    kernel computes by walking its page tables: tens of microseconds), or
    None if there is no such process."""
    try:
        with open(f"/proc/{ospid}/smaps_rollup", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    kib = [0, 0, 0, 0]
    for line in data.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            i = _ROLLUP_FIELDS.get(fields[0])
            if i is not None:
                kib[i] = int(fields[1])
    return ProcMemory(kib[0] * 1024, kib[1] * 1024, (kib[2] + kib[3]) * 1024)


def proc_start_time(ospid: int) -> int | None:
    """Start time of ``ospid`` in clock ticks, or None if it does not exist."""
    st = proc_state(ospid)
    return None if st is None else st.start


def open_verified_pidfd(ospid: int, start: int) -> int | None:
    """A pidfd for the process ``(ospid, start)``, or None if it is gone.

    The pidfd pins the process it was opened on; checking the start time
    *after* opening proves it is the process we mean and not a newcomer that
    reused the OS pid.  A pidfd of a zombie is returned (it is readable at
    once, which is exactly "dead" to a watcher).
    """
    try:
        fd = os.pidfd_open(ospid)
    except ProcessLookupError:
        return None
    if proc_start_time(ospid) != start:
        os.close(fd)
        return None
    return fd


def fd_readable(fd: int, timeout: float = 0.0) -> bool:
    """Wait up to ``timeout`` seconds for ``fd`` to be readable (a pidfd:
    its process exited).  poll, not select: a busy process holds more than
    1,024 descriptors, which select refuses.  A closed fd counts as readable."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    try:
        return bool(poller.poll(max(0, int(timeout * 1000))))
    except OSError:
        return True


def os_process_alive(ospid: int, start: int) -> bool:
    """True if ``(ospid, start)`` is running: a zombie, or a process
    already killed or exiting (:attr:`ProcStat.dying`), counts as dead.

    The shared pending set (:func:`_group_kill_pending`, a second and
    larger ``/proc`` read) is only consulted when the main thread runs: the
    moment in which the stat line shows no sign of a SIGKILL (the main
    thread took the signal out of its own set and is not yet flagged
    exiting) is spent running kernel code that ends in the exit, so a main
    thread seen sleeping, stopped or in the disk wait with no SIGKILL in
    its set was not killed before the read (``kill`` wakes every thread of
    its target, and a woken thread shows ``R``).  This halves the cost of
    the check for the common case, an idle process waiting on its mailbox."""
    st = proc_state(ospid)
    if st is None or st.start != start or st.dying:
        return False
    return st.state != "R" or not _group_kill_pending(ospid)


def _group_kill_pending(ospid: int) -> bool:
    """SIGKILL in the process's shared pending set (``ShdPnd`` of
    ``/proc/<pid>/status``), or no such process.  The stat line's pending
    set is the main thread's own: the main thread takes SIGKILL out of it
    when it starts to die, a moment before the kernel flags it exiting, and
    in that moment the stat line shows nothing; the shared set keeps the
    signal until the process is reaped."""
    try:
        fd = os.open(f"/proc/{ospid}/status", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return True
    try:
        data = os.read(fd, 8192)
    except ProcessLookupError:
        return True
    finally:
        os.close(fd)
    at = data.find(b"\nShdPnd:")
    if at < 0:
        return False
    mask = int(data[at + 8 : data.index(b"\n", at + 1)], 16)
    return bool(mask & _SIGKILL_PENDING)


def pidfd_kill(ospid: int, start: int, sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` to exactly ``(ospid, start)``; False if it is gone."""
    fd = open_verified_pidfd(ospid, start)
    if fd is None:
        return False
    try:
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def session_members(sid: int) -> list[int]:
    """OS pids of the live processes (zombies left out) of session ``sid``."""
    return [ospid for ospid, st in proc_states() if st.session == sid and not st.dead]


def related_processes(ospid: int) -> list[int]:
    """Children of ``ospid`` (zombies too: they need reaping) and the live
    members of the session it leads, itself left out; one pass over /proc."""
    return [
        pid for pid, st in proc_states() if pid != ospid and (st.ppid == ospid or (st.session == ospid and not st.dead))
    ]


def kill_session(sid: int, timeout: float) -> int:
    """SIGKILL every process of session ``sid`` (never the caller), again
    and again until none is left (a dying process may fork) or ``timeout``
    seconds have passed; return how many signals were sent.

    Call it while the session leader is an unreaped zombie, or while members
    are left: either pins the number ``sid``, so no unrelated process can
    start a session of that id meanwhile.  A process re-checks its session
    after its pidfd pins it, so a reused pid is never signalled.
    """
    deadline = time.monotonic() + timeout
    sent = 0
    me = os.getpid()
    while True:
        fds = []
        for ospid in session_members(sid):
            fd = None if ospid == me else _pin_in_session(ospid, sid)
            if fd is not None:
                fds.append(fd)
                try:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                    sent += 1
                except ProcessLookupError:
                    pass
        if not fds:
            return sent
        try:
            _wait_all_readable(fds, deadline)
        finally:
            for fd in fds:
                os.close(fd)
        if time.monotonic() >= deadline:
            return sent


def _pin_in_session(ospid: int, sid: int) -> int | None:
    try:
        fd = os.pidfd_open(ospid)
    except OSError:
        return None
    try:
        st = proc_state(ospid)
    except (OSError, ValueError):
        st = None
    if st is None or st.session != sid:
        os.close(fd)
        return None
    return fd


def _wait_all_readable(fds: list[int], deadline: float) -> None:
    pending = set(fds)
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        for fd, _ in poller.poll(max(1, int(remaining * 1000))):
            pending.discard(fd)
            poller.unregister(fd)


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies.

    Note (prctl(2)): it fires when the parent *thread* exits and is cleared
    in the child of a fork, so every new process sets it itself and then
    re-checks ``os.getppid()`` to close the race with a parent that died
    before the call.
    """
    _prctl(_PR_SET_PDEATHSIG, int(sig))


def set_child_subreaper() -> None:
    """Orphaned descendants of this process are re-parented to it."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the new limit.

    A supervisor of a thousand children holds a pidfd and an out-socket
    (two descriptors) per child.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # pragma: no cover - container limits
            pass
    return soft
