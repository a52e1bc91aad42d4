"""Many ``process_info`` questions at once, and cheap reads of ``/proc``.

``otp.process_info`` asks one process and waits for its answer: on a
loaded machine most of that wait is the target's signal thread being
scheduled, about 0.6 ms, so 10,000 processes would take six seconds.
:func:`gather_states` keeps a few questions in flight (the same
:class:`~otp._signal_records.InfoRequest` on the target's signal port, the
answers on this process's info socket), which overlaps those waits.  A
Unix datagram socket queues only ``net.unix.max_dgram_qlen`` datagrams
(10 by default) and a target's signal thread drops an answer it cannot
send at once, so at most :data:`WINDOW` questions are in flight.  It stops
asking at ``deadline``; the processes not asked stay for the next round.

This belongs beside ``otp.process_info`` (as a ``process_info_many``);
until it is there it lives here, on the same records.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Iterable

from .. import _oslib, _process
from .._codec import DecodeError
from .._pid import Pid, Ref, make_ref
from .._process_info import _info_socket
from .._signal_records import InfoReply, InfoRequest, ProcessState, decode_signal

__all__ = ["gather_states", "read_rss", "boot_time", "CLOCK_TICKS", "WINDOW", "STOPPED"]

#: Questions in flight at once (below the kernel's default datagram queue
#: of 10, which the answers share with late answers to given-up ones).
WINDOW = 8
#: Seconds one process may take to answer before it is given up (it is
#: asked again next round).
ANSWER_TIMEOUT = 1.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_BUFFER = bytearray(1 << 18)


class _Stopped:
    def __repr__(self) -> str:
        return "STOPPED"


#: The answer for a process stopped by SIGSTOP (it cannot answer).
STOPPED = _Stopped()


def gather_states(pids: Iterable[Pid], deadline: float) -> dict[Pid, ProcessState | _Stopped | None]:
    """Ask each of ``pids`` (of this node, not the caller) for its state,
    :data:`WINDOW` at a time, until they are all asked or ``deadline``
    (``time.monotonic()``) passes.  The answer per pid: its state,
    :data:`STOPPED`, or None if it is gone.  Pids not answered by then are
    left out."""
    proc = _process.current()
    sock = _info_socket(proc)
    sock.setblocking(False)
    _drain(sock)
    node = proc.node
    me = proc.pid
    out: dict[Pid, ProcessState | _Stopped | None] = {}
    pending: dict[Ref, tuple[Pid, float]] = {}
    todo = iter(pids)
    poller = select.poll()
    poller.register(sock, select.POLLIN)

    def ask_next() -> None:
        while time.monotonic() < deadline:
            pid = next(todo, None)
            if pid is None:
                return
            if pid.uid == proc.uid:
                out[pid] = proc.state()  # the asker itself
                continue
            ref = make_ref()
            with proc.kernel_code:
                sent = proc.sig.send(pid, InfoRequest(me, 0, ref), node.signal_address(pid.uid))
            if sent:
                pending[ref] = (pid, time.monotonic())
                return
            out[pid] = None  # its port is gone: exited

    for _ in range(WINDOW):
        ask_next()
    while pending:
        if not poller.poll(50):
            _give_up_slow(pending, out, ask_next)
            continue
        while True:
            try:
                size = sock.recv_into(_BUFFER)
            except (BlockingIOError, InterruptedError):
                break
            try:
                reply = decode_signal(bytes(_BUFFER[:size]))
            except DecodeError:
                continue
            if isinstance(reply, InfoReply):
                entry = pending.pop(reply.ref, None)
                if entry is not None:
                    out[entry[0]] = reply.state
                    ask_next()
        _give_up_slow(pending, out, ask_next)
    return out


def _give_up_slow(pending: dict, out: dict, ask_next: object) -> None:
    """Questions unanswered for :data:`ANSWER_TIMEOUT`: the process is dead,
    stopped, or busy beyond its signal thread; its slot goes to the next."""
    now = time.monotonic()
    for ref, (pid, asked) in list(pending.items()):
        if now - asked < ANSWER_TIMEOUT:
            continue
        del pending[ref]
        stat = _oslib.proc_state(pid.ospid)
        if stat is None or stat.start != pid.start or stat.dead:
            out[pid] = None
        elif stat.stopped:
            out[pid] = STOPPED
        ask_next()  # type: ignore[operator]


def _drain(sock: object) -> None:
    """Drop answers to questions given up on earlier."""
    while True:
        try:
            sock.recv_into(_BUFFER)  # type: ignore[attr-defined]
        except (BlockingIOError, InterruptedError):
            return


def read_rss(ospid: int) -> int | None:
    """Resident bytes of ``ospid`` from ``/proc/<ospid>/statm`` (about
    20 us; ``smaps_rollup``, which USS needs, costs about 1 ms)."""
    try:
        fd = os.open(f"/proc/{ospid}/statm", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 256)
    except OSError:
        return None
    finally:
        os.close(fd)
    fields = data.split()
    return int(fields[1]) * _PAGE if len(fields) > 1 else None


def boot_time() -> float:
    """The wall-clock time the host booted (``btime`` of ``/proc/stat``):
    a process's start, in clock ticks since boot, is then a time."""
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return time.time() - time.monotonic()
