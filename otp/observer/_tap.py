"""Log reports for the observer: a tap in the root, a relay beside the collector.

Every process's log records end in the node's root process (see
:mod:`otp._logging`), emitted by its log listener thread.  The tap is a
``logging.Handler`` on the root's root logger that keeps the reports (the
records carrying ``otp_report``, and any record at WARNING or above) as
small plain dicts: the last :data:`BACKLOG` in memory, and each one sent,
without waiting, to every subscribed relay.  A relay is a process the
collector links to: it binds ``<node dir>/observer-relay-<uid>``, subscribes
by sending its path to the tap's socket ``<node dir>/observer-tap`` (the
tap answers with its backlog), and forwards each report to the collector
as a message.  A tap installed after the relay started finds the relay's
socket and subscribes it itself.

Only the root can install the tap (:func:`install_report_tap`, which
``otp.observer.serve`` calls when it runs in the root).  An observer
attached from another OS process sees reports only if the program
installed it.  Nothing here runs a user's ``repr``: reasons and names are
rendered by :func:`safe_repr` (or arrive as text already).
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import socket
import threading
from collections import deque
from typing import Any

from .. import _api, _logging, _process
from .._pid import Pid
from ._saferepr import safe_repr
from ._tree import reason_text

__all__ = ["install_report_tap", "run_relay", "Report", "BACKLOG", "TAP_NAME", "relay_path"]

TAP_NAME = "observer-tap"
_RELAY_PREFIX = "observer-relay-"
#: Reports the tap keeps for relays that subscribe later.
BACKLOG = 1000
_MESSAGE_CHARS = 4000
_FIELD_CHARS = 400
_DATAGRAM = 1 << 16

#: What a relay forwards to the collector: ``("$observer_report", fields)``
#: and ``("$observer_tapped",)`` when a tap answered.
REPORT = "$observer_report"
TAPPED = "$observer_tapped"
Report = dict[str, Any]


def relay_path(node_dir: str, uid: int) -> str:
    return os.path.join(node_dir, f"{_RELAY_PREFIX}{uid:016x}")


def _fields(record: logging.LogRecord) -> Report:
    def text(key: str) -> str | None:
        value = getattr(record, key, None)
        if value is None:
            return None
        return value if isinstance(value, str) else safe_repr(value, limit=_FIELD_CHARS, depth=3, items=8)

    pid = getattr(record, _logging.PID, None)
    reason = getattr(record, _logging.REASON, None)
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string still reports
        message = str(record.msg)
    if record.exc_text:
        message = f"{message}\n{record.exc_text}"
    return {
        "at": record.created,
        "level": record.levelname,
        "logger": record.name,
        "kind": getattr(record, _logging.REPORT, None),
        "pid": pid if isinstance(pid, Pid) else None,
        "name": text(_logging.NAME),
        "supervisor": text(_logging.SUPERVISOR),
        "child_id": text(_logging.CHILD_ID),
        "reason": None if reason is None else reason if isinstance(reason, str) else reason_text(reason),
        "message": message[:_MESSAGE_CHARS],
    }


class _Tap(logging.Handler):
    """The root's handler and the thread that takes subscriptions."""

    def __init__(self, node_dir: str) -> None:
        super().__init__(logging.NOTSET)
        self.node_dir = node_dir
        self.backlog: deque[bytes] = deque(maxlen=BACKLOG)
        self.relays: set[str] = set()
        self.dropped = 0
        self.lock_ = threading.Lock()
        self.out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        path = os.path.join(node_dir, TAP_NAME)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.sock.bind(path)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.thread = threading.Thread(target=self._serve, name="otp-observer-tap", daemon=True)
        self.thread.start()
        for name in os.listdir(node_dir):  # relays that started before us
            if name.startswith(_RELAY_PREFIX):
                self._subscribe(os.path.join(node_dir, name))

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, _logging.REPORT, None) is None and record.levelno < logging.WARNING:
            return
        if record.name.startswith("otp.observer"):
            return  # the observer's own troubles must not feed themselves
        try:
            blob = pickle.dumps(_fields(record), pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - logging never raises into the caller
            return
        with self.lock_:
            self.backlog.append(blob)
            for path in list(self.relays):
                self._send(path, blob)

    def _send(self, path: str, blob: bytes) -> bool:
        try:
            self.out.sendto(blob, path)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR):
                self.relays.discard(path)  # that relay is gone
                return False
            self.dropped += 1  # its queue is full: the report is lost to it
        return True

    def _subscribe(self, path: str) -> None:
        base = os.path.basename(path)
        if os.path.dirname(path) != self.node_dir or not base.startswith(_RELAY_PREFIX):
            return
        with self.lock_:
            if not self._send(path, pickle.dumps(TAPPED)):
                return
            self.relays.add(path)
            for blob in list(self.backlog):
                self._send(path, blob)

    def _serve(self) -> None:
        _logging.serve_datagrams(self.sock, self._wake_r, 4096, self._take)

    def _take(self, data: bytes) -> None:
        if data.startswith(b"sub "):
            self._subscribe(os.fsdecode(data[4:]))

    def stop(self) -> None:
        logging.root.removeHandler(self)
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        self.thread.join(5.0)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self.sock.close()
        self.out.close()
        _taps.pop(self.node_dir, None)


_taps: dict[str, _Tap] = {}


def install_report_tap() -> bool:
    """Let the node's observer see its crash, supervisor and progress
    reports (and records at WARNING and above).  Call it in the root
    process (the thread that entered ``with otp.Node()``), best early: the
    tap keeps the last 1,000 reports for an observer that starts later.
    Returns False, changing nothing, in any other process; installing twice
    is harmless.  Progress reports are INFO records of the
    ``otp.supervisor`` logger: only seen if that level is enabled."""
    proc = _process.current()
    if not proc.root:
        return False
    node_dir = proc.node.dir
    if node_dir in _taps:
        return True
    tap = _taps[node_dir] = _Tap(node_dir)
    logging.root.addHandler(tap)
    proc.exit_hooks.append(lambda reason: tap.stop())
    return True


# ------------------------------------------------------------------ relay


def run_relay(collector: Pid) -> None:
    """Body of the relay process (spawned linked by the collector)."""
    proc = _process.current()
    path = relay_path(proc.node.dir, proc.uid)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind(path)
    proc.exit_hooks.append(lambda reason: _unlink(path))
    try:
        sock.sendto(b"sub " + os.fsencode(path), os.path.join(proc.node.dir, TAP_NAME))
    except OSError:
        pass  # no tap yet: one installed later subscribes us
    while True:
        proc.poll_sockets([sock], None)  # type: ignore[list-item]  # any object with fileno() polls
        while True:
            try:
                data = sock.recv(_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            try:
                fields = pickle.loads(data)
            except Exception:  # noqa: BLE001 - not the tap's: dropped
                continue
            if fields == TAPPED:
                _api.send(collector, (TAPPED,))
            elif isinstance(fields, dict):
                _api.send(collector, (REPORT, fields))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
