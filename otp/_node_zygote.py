"""The root's side of its node's zygote: starting it (under either start
method), watching it, stopping it.  Mixed into :class:`otp._node.Node`,
apart from the node's own start and stop, which call it.

The root watches its zygote (a daemon thread waiting on the zygote's pidfd).
The zygote leads a session of its own, which every OTP process and every
subprocess they start inherits.  When the zygote exits, asked or not, the
root SIGKILLs whatever is left in that session, repeating until nothing is,
and only then reaps the zygote (its zombie keeps the session id from being
reused meanwhile).  A zygote that dies unasked (SIGKILL, a crash) takes
every process of the node with it: the root logs the cause, and spawning or
any other use of the zygote raises :class:`otp.NodeError` naming it.  A
subprocess that calls ``setsid`` itself leaves the session and is not found.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import shutil
import signal
import socket
import sys
import threading
import warnings
from typing import NoReturn

import multiprocess.util

from . import _oslib
from ._errors import NodeError
from ._transport import NodeInfo
from ._zygote import zygote_entry
from ._zygote_client import ZygoteClient, unwatch_node, watch_node
from ._zygote_protocol import LENGTH, StopRequest, ZygoteConfig, ZygoteReady

log = logging.getLogger("otp")

__all__ = ["ZygoteMixin"]

_ZYGOTE_START_TIMEOUT = 60.0
_ZYGOTE_STOP_TIMEOUT = 10.0
_ZYGOTE_KILL_TIMEOUT = 5.0
#: Seconds the root spends killing what is left in the zygote's session.
_SESSION_KILL_TIMEOUT = 5.0


class _ZygoteWatch:
    """The root's watch on its zygote, the only place that reaps it.

    A daemon thread waits on the zygote's pidfd (the wait has no timeout:
    it ends when the zygote exits, which every way of stopping a node
    brings about).  When it exits the thread reads its status without
    reaping it, kills what is left of its session, then reaps it.  An exit
    nobody asked for (:meth:`expect` not called, the zygote was started)
    is logged, and :meth:`cause` names it.
    """

    def __init__(self, ospid: int, address: str) -> None:
        self.ospid = ospid
        self.address = address
        self.fd = os.pidfd_open(ospid)
        self.asked = True  # until the zygote said it is ready
        self.exit_cause: str | None = None
        self.exited = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"otp-zygote-watch-{ospid}", daemon=True)
        self.thread.start()

    def arm(self) -> None:
        """The zygote is up: from now on an exit nobody asked for is a death,
        and clients of this process can ask its cause."""
        self.asked = False
        watch_node(self.address, self.cause)

    def expect(self) -> None:
        self.asked = True

    def cause(self, timeout: float) -> str | None:
        """Why the zygote died unasked, waiting up to ``timeout`` for it to be
        known; None if it lives or was asked to stop."""
        self.exited.wait(timeout)
        return self.exit_cause

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.poll()
        try:
            self._exited()
        except Exception:  # the zygote is reaped all the same: a zombie must not outlive the node
            log.exception("handling the exit of the node's zygote (ospid %d) failed", self.ospid)
        finally:
            self.exited.set()
            try:
                os.waitpid(self.ospid, 0)
            except ChildProcessError:
                pass

    def _exited(self) -> None:
        try:
            status = os.waitid(os.P_PID, self.ospid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:  # someone else reaped it
            status = None
        if not self.asked:
            self.exit_cause = _death_of(self.ospid, status)
            log.error("%s", self.exit_cause)
        self.exited.set()
        killed = _oslib.kill_session(self.ospid, _SESSION_KILL_TIMEOUT)
        if killed and not self.asked:
            log.warning("killed %d processes left in the session of the node's zygote", killed)

    def kill(self) -> None:
        try:
            signal.pidfd_send_signal(self.fd, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def finish(self, timeout: float) -> None:
        """Wait for the zygote to exit and be reaped; SIGKILL it after
        ``timeout`` seconds."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.kill()
            self.thread.join(_ZYGOTE_KILL_TIMEOUT + _SESSION_KILL_TIMEOUT)
        unwatch_node(self.address)
        if self.thread.is_alive():  # pragma: no cover - a zygote stuck in the kernel
            log.warning("the node's zygote (ospid %d) did not exit", self.ospid)
            return
        os.close(self.fd)


def _death_of(ospid: int, status: os.waitid_result | None) -> str:
    if status is None:
        how = "exited"
    elif status.si_code == os.CLD_EXITED:
        how = f"exited with status {status.si_status}"
    else:
        try:
            name = signal.Signals(status.si_status).name
        except ValueError:
            name = f"signal {status.si_status}"
        how = f"was killed by {name}"
    return f"the node's zygote (ospid {ospid}) {how}; every process of the node is gone"


class ZygoteMixin:
    """The zygote's start, stop and OS pid, for :class:`otp._node.Node`."""

    start_method: str
    preload: tuple[str, ...]
    embryos: int
    info: NodeInfo | None
    _zygote_pid: int | None
    _watch: _ZygoteWatch | None

    def _start_zygote(self, info: NodeInfo) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if self.start_method == "fork":
                with warnings.catch_warnings():
                    # 3.12+ warns about fork() in a multi-threaded process; the
                    # zygote starts no thread and touches no lock it inherited.
                    warnings.filterwarnings("ignore", category=DeprecationWarning)
                    pid = os.fork()
                if pid == 0:
                    _run_zygote_child(ours, theirs.fileno())
            else:
                # A fresh interpreter: multiprocess's fork_exec wrapper, the
                # one its own fork server is started with (safe to call from
                # a process with threads, keeps only the fds we pass).
                # ``-c`` puts the current directory ('') first on sys.path: it
                # goes before the first import, or a logging.py planted there
                # (in /tmp, say) would run in the zygote.
                top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
                code = (
                    "import sys; sys.path[:] = [p for p in sys.path if p]; "
                    f"sys.path.insert(0, {top!r}); from otp._zygote import zygote_entry; zygote_entry({theirs.fileno()})"
                )
                exe = os.fsencode(sys.executable)
                pid = multiprocess.util.spawnv_passfds(exe, [exe, b"-c", code.encode()], [theirs.fileno()])
            self._zygote_pid = pid
            try:
                self._watch = _ZygoteWatch(pid, info.zygote_address)  # the one reaper, whatever happens next
            except BaseException:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise
            theirs.close()
            me = os.getpid()
            config = pickle.dumps(ZygoteConfig(info, me, _oslib.proc_start_time(me) or 0, self.preload, self.embryos))
            ours.settimeout(_ZYGOTE_START_TIMEOUT)
            ours.sendall(LENGTH.pack(len(config)) + config)
            answer = ours.recv(1 << 16)
        except (OSError, EOFError) as exc:
            raise NodeError(f"the node's zygote did not start: {exc}") from exc
        finally:
            ours.close()
        try:
            started = pickle.loads(answer)
        except Exception:  # noqa: BLE001 - nothing, or half an answer
            raise NodeError("the node's zygote failed to start: it died during start") from None
        if not isinstance(started, ZygoteReady):
            raise NodeError(f"the node's zygote failed to start: {getattr(started, 'detail', started)}")
        self._watch.arm()

    def _stop_zygote(self) -> None:
        watch = self._watch
        if watch is None:
            return
        watch.expect()
        try:
            if self.info is None:
                raise NodeError("the node has no directory")
            client = ZygoteClient(self.info.zygote_address)
            try:
                client.request(StopRequest())
            finally:
                client.close()
        except Exception:
            pass  # it is gone already; the watch reaps it all the same
        self._finish_zygote(_ZYGOTE_STOP_TIMEOUT)
        if self.info is not None:
            shutil.rmtree(self.info.dir, ignore_errors=True)

    def _finish_zygote(self, timeout: float) -> None:
        """Wait until the zygote is gone and reaped, killing it after ``timeout``."""
        if self._watch is not None:
            self._watch.finish(timeout)
        self._watch = None
        self._zygote_pid = None

    def _kill_zygote(self) -> None:
        if self._watch is not None:
            self._watch.expect()
            self._watch.kill()
            self._finish_zygote(_ZYGOTE_KILL_TIMEOUT)

    @property
    def zygote_ospid(self) -> int | None:
        """The OS pid of the node's zygote, None while it is not running."""
        return self._zygote_pid


def _run_zygote_child(root_end: socket.socket, fd: int) -> NoReturn:
    """In the child of the ``fork`` start method: be the zygote, never return."""
    try:
        root_end.close()
        zygote_entry(fd)
    finally:
        os._exit(70)
