"""Thin wrappers over the Linux facilities the kernel relies on.

Everything here is a direct system call or a read of ``/proc``; nothing
blocks longer than the timeout it is given.  Process identity on a host is
``(ospid, start)`` where ``start`` is the kernel's start time of the process
in clock ticks (field 22 of ``/proc/<pid>/stat``): an OS pid can be reused
(``pid_max`` is 32768 on many machines), the pair cannot.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import select
import signal
import time

__all__ = [
    "proc_start_time",
    "proc_state",
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


def _stat_fields(ospid: int) -> list[str] | None:
    try:
        with open(f"/proc/{ospid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses; the
    # fields after the last ')' are well formed.
    tail = data[data.rindex(b")") + 2 :].split()
    return [field.decode() for field in tail]


def _all_stats():
    """``(ospid, fields)`` of every process whose stat could be read."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = _stat_fields(int(entry))
            except (OSError, ValueError):
                continue
            if fields is not None:
                yield int(entry), fields


def proc_start_time(ospid: int) -> int | None:
    """Start time of ``ospid`` in clock ticks, or None if it does not exist."""
    fields = _stat_fields(ospid)
    return None if fields is None else int(fields[19])


def proc_state(ospid: int) -> tuple[str, int] | None:
    """``(state letter, start time)`` of ``ospid``, or None."""
    fields = _stat_fields(ospid)
    return None if fields is None else (fields[0], int(fields[19]))


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
    """True if ``(ospid, start)`` is running (zombies count as dead)."""
    st = proc_state(ospid)
    return st is not None and st[1] == start and st[0] not in ("Z", "X")


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
    return [ospid for ospid, f in _all_stats() if int(f[3]) == sid and f[0] not in ("Z", "X")]


def related_processes(ospid: int) -> list[int]:
    """Children of ``ospid`` (zombies too: they need reaping) and the live
    members of the session it leads, itself left out; one pass over /proc."""
    return [
        pid
        for pid, f in _all_stats()
        if pid != ospid and (int(f[1]) == ospid or (int(f[3]) == ospid and f[0] not in ("Z", "X")))
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
        fields = _stat_fields(ospid)
    except (OSError, ValueError):
        fields = None
    if fields is None or int(fields[3]) != sid:
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


def is_errno(exc: OSError, *codes: int) -> bool:
    return exc.errno in codes


ENOENT_LIKE = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTCONN, errno.EPIPE)
