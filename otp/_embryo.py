"""The life of an OTP process before and after it gets its function.

The zygote keeps a few *embryos* ready: processes forked in advance that
have already bound their mailbox and signal port and started their signal
thread (about 2 ms of work, mostly libzmq starting its I/O thread and the
page faults of a fresh fork).  A spawn hands one of them the spawner's end
of a socketpair (and the spawner the embryo's identity); the embryo reads
the spawner's spec and prepares (:func:`_prepare`), then runs the function
on the spawner's go-ahead (see :mod:`otp._zygote_protocol`, "Spawning").

The spawner registers its link or monitor on the new pid *before* sending
the go-ahead, and the embryo installs its side before running the
function, so ``spawn_link`` and ``spawn_monitor`` are atomic.

A rehearsal while it waits.  A forked process shares its pages with the
zygote until it writes one, and then waits for the kernel to copy it; a
Python process writes a page whenever it touches an object there (the
reference count).  An idle embryo therefore unpickles a sample spawn spec
(:func:`rehearsal_sample`, made once in the zygote) so that the pages the
real one touches are its own before a spawner waits on it, and sends a
frame to itself (:meth:`~otp._peers.PeersMixin.warm_peer_sockets`) for the
same reason; it skips the rehearsal when a spawner is already waiting.

Logging is set up first of all (:func:`otp._logging.install_forwarder`):
every record the process logs, from its bootstrap on, goes to the node's
root process and through the root's logging configuration.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import sys
from typing import Any, NoReturn

from . import _logging, _oslib, _process
from ._codec import dumps, dumps_by_value
from ._errors import ProcessExit
from ._pid import Pid, make_ref
from ._reasons import Crash, is_clean
from ._transport import NodeInfo
from ._zygote_protocol import LENGTH, RUN, Identity, SpawnSpec, recv_exact

log = logging.getLogger("otp")

__all__ = ["embryo_main", "rehearsal_sample"]

_ASSIGNMENT_TIMEOUT = 30.0


def rehearsal_sample(node: NodeInfo) -> bytes:
    """A spawn spec as a spawner makes one (a function sent by value: a
    lambda has no name to be found by), for embryos to unpickle while idle."""
    parent = Pid(node.name, 1, os.getpid(), 0)
    blob = dumps_by_value((lambda *args, **kwargs: None, (parent,), {"ref": make_ref()}))
    return dumps(SpawnSpec(parent, False, make_ref(), list(sys.path), blob))


def _rehearse(sample: bytes) -> None:
    try:
        spec = SpawnSpec(*pickle.loads(sample))
        pickle.loads(spec.blob)
    except Exception:  # noqa: BLE001 - only a rehearsal: the real spec is what counts
        pass


def embryo_main(node: NodeInfo, uid: int, zygote_channel: socket.socket, zygote_pid: int, rehearsal: bytes) -> NoReturn:
    """Body of a process forked by the zygote; never returns.  ``rehearsal``:
    see :func:`rehearsal_sample`."""
    try:
        os.setpgid(0, 0)
        _oslib.set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != zygote_pid:
            os._exit(1)
        _logging.install_forwarder(node)
        proc = _process.Process(node, uid, root=False)
        proc.kernel_code.depth = 1  # kernel code until the function starts: no interrupts
        proc.activate()
        identity = Identity(uid, proc.pid.ospid, proc.pid.start).pack()
        zygote_channel.sendall(identity)
        if not _oslib.fd_readable(zygote_channel.fileno()):
            proc.warm_peer_sockets()
            _rehearse(rehearsal)
        _, fds, _, _ = socket.recv_fds(zygote_channel, 16, 1)
        zygote_channel.close()
        if not fds:
            os._exit(0)  # the node is closing
        spawner = socket.socket(fileno=fds[0])
        spawner.settimeout(_ASSIGNMENT_TIMEOUT)
        (size,) = LENGTH.unpack(recv_exact(spawner, LENGTH.size))
        parent, link, mon_ref, path, blob = SpawnSpec(*pickle.loads(recv_exact(spawner, size)))
        call = _prepare(proc, parent, path, blob)
        if recv_exact(spawner, len(RUN)) != RUN:
            raise EOFError("the spawner sent no go-ahead")
        spawner.close()
    except (EOFError, OSError):
        os._exit(0)  # the spawner died before handing us our function
    except BaseException:
        log.exception("process bootstrap failed")
        os._exit(70)
    sig = proc.sig
    with sig.lock:
        if link:
            sig.links[parent.uid] = parent
            sig.hold(parent)
            if not sig.watch(parent):
                sig.drain_and_settle(parent)  # the spawner died meanwhile
        if mon_ref is not None:
            sig.monitored_by[mon_ref] = parent
    reason: object = "normal"
    try:
        proc.kernel_code.depth = 0
        if proc.sig.fatal is not None:  # an exit signal came during the bootstrap
            proc.sig.raise_fatal()
        if isinstance(call, BaseException):
            raise call
        fn, args, kwargs = call
        fn(*args, **kwargs)
    except ProcessExit as exc:
        reason = exc.reason
    except SystemExit as exc:
        if exc.code not in (None, 0):
            reason = Crash.from_exception(exc)
    except BaseException as exc:
        reason = Crash.from_exception(exc)
        log.error(
            "process %r crashed:\n%s",
            proc.pid,
            reason.traceback.rstrip(),
            extra=_logging.report("crash", pid=proc.pid, reason=reason),
        )
    _flush_stdio()
    try:
        proc.terminate(reason)
    except BaseException:
        log.exception("exit of %r failed", proc.pid)
    finally:
        os._exit(0 if is_clean(reason) else 1)


def _prepare(proc: _process.Process, parent: Pid, path: list[str], blob: bytes) -> tuple[Any, ...] | BaseException:
    """What an embryo does with its spec while its spawner registers the new
    pid, before it may run: extend ``sys.path``, open its socket to the
    spawner (the connection and its handshake, run by libzmq's I/O threads
    on both sides, took most of the time from a new process's first send
    to its spawner's receive), and unpickle ``(fn, args, kwargs)``.  An
    exception unpickling is returned, to be raised once the process runs:
    its link and monitor then report it, as for any crash."""
    for entry in path:
        # Only absolute entries: '' or a relative one would mean this
        # process's current directory, which nobody chose to import from.
        if isinstance(entry, str) and os.path.isabs(entry) and "\0" not in entry and entry not in sys.path:
            sys.path.append(entry)
    proc.peer(parent)
    try:
        call = pickle.loads(blob)
    except BaseException as exc:  # noqa: BLE001 - raised in the process, once it runs
        return exc
    return call


def _flush_stdio() -> None:
    """What the process printed reaches its stdout and stderr before its
    death is announced (``os._exit`` flushes nothing, and a pipe or file is
    block-buffered): output of a process comes before what anyone who saw
    it die prints next."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # closed, or a reader that went away
            pass
