"""``otp.process_info`` and ``otp.processes``: what a process of this node
is doing, asked without its main thread's help (erlang:process_info/1,2 and
erlang:processes/0).

A process's state is known to the process: the requester sends it an
:class:`~otp._signal_records.InfoRequest` on its signal port, and its signal
thread answers on the requester's info socket (bound on the first question,
at ``NodeInfo.info_address``), even while its main thread is deep in a
callback; messages that arrived meanwhile and still wait in the mailbox
socket are counted (see ``Process.state``).  Memory and whether the OS
process is stopped come from ``/proc``.  A process stopped by SIGSTOP
cannot answer: its status says ``'suspended'`` and the fields only it knows
are None.

A process of another node.  Its node answers: ``process_info`` spawns a
helper there (``otp.spawn_opt(node=)``, monitored) that asks the process as
above and sends the answer back, as ``otp.rpc.call`` would (this module
sits below ``otp.rpc``).  A helper process rather than a question the
gateway answers: the local question waits on the process's signal thread
(up to ``timeout``), which must never hold the gateway and with it every
message between the two nodes.  The cost is a remote spawn (a few
milliseconds); ``timeout`` bounds the wait for the answer, and a node that
cannot be reached raises :class:`otp.NoConnection` at once if nothing
listens there, within the connection set-up time (7 s) if its host does
not answer.

``otp.processes()`` asks nobody but the zygote (one request): the processes
it forked whose mailbox exists, and the root.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
from collections.abc import Sequence
from typing import Literal

from . import _naming, _oslib, _process
from ._codec import DecodeError
from ._errors import CalleeExit, NoConnection, Timeout
from ._pid import Pid, make_ref
from ._reasons import DOWN
from ._signal_records import InfoReply, InfoRequest, ProcessState, decode_signal
from ._timeouts import check_timeout
from ._zygote_client import ZygoteClient
from ._zygote_protocol import ListRequest

__all__ = ["ProcessInfo", "process_info", "processes", "ITEMS", "Status"]

Status = Literal["running", "waiting", "suspended", "exiting"]

#: Seconds ``process_info`` waits for an answer by default: a running
#: process's signal thread answers in well under a millisecond; a loaded
#: node may take longer.
DEFAULT_TIMEOUT = 5.0
#: Slices of the wait, between which the requester looks whether the
#: process died or was stopped (neither would ever answer).
_SLICE_S = 0.05
#: Where answers are read (one buffer: a process asks one question at a
#: time).  A datagram larger than the default socket buffers cannot be sent.
_buffer = bytearray(1 << 18)
#: The node directory's record of its root process: ``"<ospid> <start>"``
#: (written by otp._node).
_OWNER_FILE = "owner"


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessInfo:
    """What ``otp.process_info(pid)`` says of a live process.

    The fields only the process knows (from ``message_queue_len`` to
    ``current_function``) are None when it is ``'suspended'`` (stopped by
    SIGSTOP: it cannot answer)."""

    pid: Pid
    #: ``'waiting'`` (for a message: in ``receive`` or a call), ``'running'``
    #: (anything else), ``'suspended'`` (SIGSTOP) or ``'exiting'``.
    status: Status
    #: Messages received and not yet taken by ``receive``.
    message_queue_len: int | None
    links: tuple[Pid, ...] | None
    #: The processes it monitors, one entry per monitor.
    monitors: tuple[Pid, ...] | None
    #: The processes monitoring it, one entry per monitor (a process that
    #: called it with ``otp.call`` keeps a monitor on it, see otp._links).
    monitored_by: tuple[Pid, ...] | None
    #: A name the node's name service holds for it (None: none).
    registered_name: object
    trap_exit: bool | None
    #: Mailbox frames (messages and call replies) it took in and sent.
    messages_received: int | None
    messages_sent: int | None
    #: ``module.function`` its main thread runs, outside the kernel's modules.
    current_function: str | None
    #: Bytes only its OS process holds (USS: what its exit frees).
    memory: int
    #: Bytes resident in its OS process, shared pages included (RSS).
    rss: int


#: The items ``process_info(pid, items)`` accepts: the fields of ProcessInfo.
ITEMS: frozenset[str] = frozenset(f.name for f in dataclasses.fields(ProcessInfo))


def process_info(pid: Pid, items: Sequence[str] | None = None, timeout: float | None = DEFAULT_TIMEOUT) -> object:
    """Information about the local process ``pid``, or None if it is not
    alive (erlang:process_info/1 returning ``undefined``).

    Without ``items``, a :class:`ProcessInfo`; with a list of field names
    of ProcessInfo, a dict of those (erlang:process_info/2), which skips
    the work of the others (reading its memory, asking for its name).  An
    unknown item raises ValueError (Erlang's badarg).  :class:`otp.Timeout`
    if a running process does not answer within ``timeout`` seconds (None:
    wait as long as it runs).

    A pid of another node is asked of its node (see the module doc): the
    same answers, and :class:`otp.NoConnection` if that node cannot be
    reached or is lost meanwhile."""
    if items is not None:
        if isinstance(items, str):
            raise TypeError("items must be a list of item names, not a str")
        unknown = [item for item in items if item not in ITEMS]
        if unknown:
            raise ValueError(f"unknown process_info items {unknown!r}; known: {sorted(ITEMS)}")
    timeout = check_timeout(timeout)
    proc = _process.current()
    if not isinstance(pid, Pid):
        raise TypeError(f"expected a Pid, got {type(pid).__name__}")
    if not proc.node.is_local(pid.node):
        return _remote_info(proc, pid, None if items is None else list(items), timeout)
    wanted = ITEMS if items is None else frozenset(items)
    info = _gather(proc, pid, wanted, timeout)
    if info is None:
        return None
    if items is None:
        return info
    return {item: getattr(info, item) for item in items}


def _gather(proc: _process.Process, pid: Pid, wanted: frozenset[str], timeout: float | None) -> ProcessInfo | None:
    state: ProcessState | None
    if pid.uid == proc.uid:
        stat = None
        state = proc.state()
    else:
        stat = _oslib.proc_state(pid.ospid)
        if stat is None or stat.start != pid.start or stat.dead:
            return None
        if stat.stopped:
            state = None
        else:
            with proc.kernel_code:
                asked = _ask(proc, pid, timeout)
            if asked is _DEAD:
                return None
            state = asked if isinstance(asked, ProcessState) else None
    if state is None:
        status: Status = "suspended"
    elif state.exiting:
        status = "exiting"
    elif state.waiting:
        status = "waiting"
    else:
        status = "running"
    memory = _oslib.proc_memory(pid.ospid) if ("memory" in wanted or "rss" in wanted) else None
    name = _registered_name(pid) if state is not None and state.named and "registered_name" in wanted else None
    return ProcessInfo(
        pid=pid,
        status=status,
        message_queue_len=None if state is None else state.message_queue_len,
        links=None if state is None else state.links,
        monitors=None if state is None else state.monitors,
        monitored_by=None if state is None else state.monitored_by,
        registered_name=name,
        trap_exit=None if state is None else state.trap_exit,
        messages_received=None if state is None else state.messages_received,
        messages_sent=None if state is None else state.messages_sent,
        current_function=None if state is None else state.current_function,
        memory=0 if memory is None else memory.uss,
        rss=0 if memory is None else memory.rss,
    )


_TAG = "$process_info"


def _remote_info(proc: _process.Process, pid: Pid, items: list[str] | None, timeout: float | None) -> object:
    """``process_info`` of ``pid``, asked of its node by a helper process
    spawned there (see the module doc)."""
    ref = make_ref()
    helper, mref = proc.spawn(
        _answer_info, (proc.pid, ref, pid, items, timeout), {}, monitor=True, node=pid.node, module=__name__
    )

    def answer(m: object) -> bool:
        return (type(m) is tuple and len(m) == 4 and m[0] == _TAG and m[1] == ref) or (
            isinstance(m, DOWN) and m.ref == mref
        )

    try:
        msg = proc.receive(timeout, answer)
    except Timeout:
        proc.exit_signal(helper, "kill")
        proc.demonitor(mref, flush=True)
        raise Timeout(f"{pid!r} did not answer process_info within {timeout}s") from None
    if isinstance(msg, DOWN):
        if msg.reason == "noconnection":
            raise NoConnection(pid, "process_info")
        raise CalleeExit(msg.reason, pid, "process_info")
    proc.demonitor(mref, flush=True)
    _, _, status, value = msg
    if status == "raise":
        raise value
    return value


def _answer_info(caller: Pid, ref: object, pid: Pid, items: list[str] | None, timeout: float | None) -> None:
    """The helper on ``pid``'s node: ask, send the answer (or the exception
    raised: a Timeout) back to ``caller``."""
    proc = _process.current()
    try:
        value = process_info(pid, items, timeout)
    except Timeout as exc:
        proc.send(caller, (_TAG, ref, "raise", exc))
        return
    proc.send(caller, (_TAG, ref, "ok", value))


class _Dead:
    """``_ask``'s answer for a process that is gone."""


_DEAD = _Dead()


def _ask(proc: _process.Process, pid: Pid, timeout: float | None) -> ProcessState | _Dead | None:
    """Ask ``pid``'s signal thread for its state: the state, :data:`_DEAD`,
    or None if it was stopped (SIGSTOP) while we waited."""
    sock = _info_socket(proc)
    buf = _buffer
    sock.setblocking(False)  # with a timeout set, Python would wait it out first
    while True:  # answers to questions given up on (timed out) are stale
        try:
            sock.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            break
    ref = make_ref()
    if not proc.sig.send(pid, InfoRequest(proc.pid, 0, ref), proc.node.signal_address(pid.uid)):
        return _DEAD  # its port is gone: it exited, or is exiting
    deadline = math.inf if timeout is None else time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Timeout(f"{pid!r} did not answer process_info within {timeout}s")
        sock.settimeout(min(_SLICE_S, remaining))
        try:
            size = sock.recv_into(buf)
        except TimeoutError:
            stat = _oslib.proc_state(pid.ospid)
            if stat is None or stat.start != pid.start or stat.dead:
                return _DEAD
            if stat.stopped:
                return None
            if not os.path.exists(proc.node.signal_address(pid.uid)):
                return _DEAD
            continue
        try:
            reply = decode_signal(bytes(buf[:size]))
        except DecodeError:
            continue
        if isinstance(reply, InfoReply) and reply.ref == ref:
            return reply.state


def _info_socket(proc: _process.Process) -> socket.socket:
    sock = proc.info_socket
    if sock is None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        address = proc.node.info_address(proc.uid)
        try:
            os.unlink(address)  # a socket file left by a process of this uid is ours
        except FileNotFoundError:
            pass
        sock.bind(address)
        proc.info_socket = sock
    return sock


def _registered_name(pid: Pid) -> object:
    """A name the node's name service holds for ``pid`` (None: none, or a
    name service that cannot tell)."""
    service = _naming.service()
    names = service.names_of(pid) if service is not None else []
    return names[0] if names else None


def processes() -> list[Pid]:
    """The pids of the node's live processes (erlang:processes/0), the root
    included, in no particular order.

    One request to the node's zygote and a read of ``/proc`` per process;
    no process is asked anything.  A process spawned or exiting meanwhile
    may or may not be in the list."""
    proc = _process.current()
    node = proc.node
    # The directory first: a mailbox present now belongs to a process the
    # zygote's list below shows, unless it exited meanwhile (then the file
    # is gone when we look again), or to the root, which the zygote did not
    # fork.
    uids = set()
    for name in os.listdir(node.dir):
        if name.endswith(".m") and len(name) == 18:
            try:
                uids.add(int(name[:16], 16))
            except ValueError:
                continue
    zygote = proc._zygote
    if zygote is None:
        zygote = proc._zygote = ZygoteClient(node.zygote_address)
    out: list[Pid] = []
    forked = set()
    for row in zygote.request(ListRequest()):
        forked.add(row.uid)
        if row.spare or row.uid not in uids:
            continue
        stat = _oslib.proc_state(row.ospid)
        if stat is not None and not stat.dead:
            out.append(Pid(node.name, row.uid, row.ospid, stat.start, node.creation))
    for uid in uids - forked:
        if uid == proc.uid:
            out.append(proc.pid)
        elif os.path.exists(node.mailbox_path(uid)):
            root = _root_of(node.dir)
            if root is not None:
                out.append(Pid(node.name, uid, root[0], root[1], node.creation))
    return out


def _root_of(node_dir: str) -> tuple[int, int] | None:
    """(ospid, start) of the node's root OS process, if it is alive."""
    try:
        with open(os.path.join(node_dir, _OWNER_FILE)) as f:
            ospid, start = (int(field) for field in f.read().split())
    except (OSError, ValueError):
        return None
    return (ospid, start) if _oslib.os_process_alive(ospid, start) else None
