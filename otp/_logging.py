"""One logging configuration for a whole node: the root process's.

Where records go.  Every OTP process (and the zygote) sends its log records
to the node's root process, which emits them through its own ``logging``:
``logging.getLogger(record.name).handle(record)``, after checking that
logger's level.  So whatever the script configured (``basicConfig``,
handlers, levels, filters, ``logging.disable``) governs the whole node under
both start methods, and a node has exactly one writer per log file.  This is
the standard ``QueueHandler``/``QueueListener`` arrangement over the node's
own transport: a Unix datagram socket ``<node dir>/log`` read by a thread of
the root (:class:`LogListener`).

In the sender (:class:`Forwarder`) a record is formatted before it travels:
``record.msg % record.args`` and ``exc_info`` are rendered to text there, so
nothing unpicklable travels.  Texts beyond :data:`MAX_TEXT` characters keep
their head and tail.  If the root cannot keep up (the socket's queue is
full for :data:`SEND_TIMEOUT`), the record is dropped and counted, and so is
every later one that finds the queue full, without waiting, until one gets
through: it carries the count, and the root logs it.

Levels.  At node start the listener writes the root's effective logging
levels (the root logger's, every logger with a level of its own, and
``logging.disable``) to ``<node dir>/log-levels``; each process applies them
before its function runs, so processes do not format and send what the root
would drop.  The root checks the level again on arrival, so raising a level
later in the script silences processes already running; lowering it later
only takes effect for records those processes still send.

Handlers a process inherited (under the ``fork`` start method, the root's
own, a file handler for example) are removed from it: only the root writes.
If the node has no log socket (a node runtime that does not start a
listener), processes keep logging as before.

Structured reports.  Crash, supervisor and progress reports carry these
``extra`` fields (build them with :func:`report`), beside a readable
message:

``otp_report``
    ``'crash'`` (a process raised), ``'supervisor'`` (a supervisor's error
    report: a child failed to start, exited or was shut down badly) or
    ``'progress'`` (a child started).
``otp_pid``
    the :class:`otp.Pid` the report is about (the crashed process, the
    child).
``otp_name``
    its registered name, where known, else absent.
``otp_supervisor``
    the supervisor's name or pid (supervisor and progress reports).
``otp_child_id``
    the child spec's id (supervisor and progress reports).
``otp_reason``
    the exit reason (an :class:`otp.Crash` for an exception).

A field value that the root cannot unpickle arrives as its ``repr``.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import select
import socket
import threading
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

__all__ = [
    "LogListener",
    "Forwarder",
    "start_listener",
    "install_forwarder",
    "report",
    "serve_datagrams",
    "drain_datagrams",
    "REPORT",
    "PID",
    "NAME",
    "SUPERVISOR",
    "CHILD_ID",
    "REASON",
]

REPORT = "otp_report"
PID = "otp_pid"
NAME = "otp_name"
SUPERVISOR = "otp_supervisor"
CHILD_ID = "otp_child_id"
REASON = "otp_reason"
_DROPPED = "otp_dropped"
_EXTRAS = "otp_extras"

SOCKET_NAME = "log"
LEVELS_NAME = "log-levels"
#: Characters of one text field (message, traceback, stack) that travel.
MAX_TEXT = 16384
#: Seconds a process waits for room in the root's queue before dropping.
SEND_TIMEOUT = 0.2
_MAX_DATAGRAM = 1 << 18
_MAX_EXTRA_BLOB = 8192
_MAX_REPR = 1024
#: Attributes every LogRecord has; anything else on a record is an ``extra``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

log = logging.getLogger("otp")


class NodeDir(Protocol):
    """What logging needs of a node: its directory (an
    :class:`otp._transport.NodeInfo` has it)."""

    @property
    def dir(self) -> str: ...


def report(kind: str, **fields: object) -> dict[str, object]:
    """``extra=`` of a structured report: ``report('crash', pid=p, reason=r)``;
    keys ``pid``, ``name``, ``supervisor``, ``child_id``, ``reason`` (see the
    module docstring); ``None`` values are left out."""
    extra: dict[str, object] = {REPORT: kind}
    for key, value in fields.items():
        if value is not None:
            extra[f"otp_{key}"] = value
    return extra


def serve_datagrams(sock: socket.socket, wake_r: int, size: int, take: Callable[[bytes], object]) -> None:
    """The loop of a daemon thread that serves the non-blocking datagram
    socket ``sock``: ``take(datagram)`` for each datagram (at most ``size``
    bytes), until a byte arrives on the pipe ``wake_r`` or ``sock`` fails.
    The root's log listener runs it, and so does the observer's report tap."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        ready = {fd for fd, _ in poller.poll()}
        if wake_r in ready or not drain_datagrams(sock, size, take):
            return


def drain_datagrams(sock: socket.socket, size: int, take: Callable[[bytes], object]) -> bool:
    """``take(datagram)`` for each datagram queued on the non-blocking
    ``sock``; False if reading it failed (it is closed)."""
    while True:
        try:
            data = sock.recv(size)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        take(data)


# ------------------------------------------------------------------ root side


class LogListener:
    """Emits the records of the node's processes through this process's logging."""

    def __init__(self, node_dir: str) -> None:
        self.path = os.path.join(node_dir, SOCKET_NAME)
        self.undecodable = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            self.sock.bind(self.path)
            _write_levels(os.path.join(node_dir, LEVELS_NAME))
        except BaseException:
            self._close()
            raise
        self._thread: threading.Thread | None = threading.Thread(
            target=self._serve, name="otp-log-listener", daemon=True
        )
        self._thread.start()

    def _serve(self) -> None:
        serve_datagrams(self.sock, self._wake_r, _MAX_DATAGRAM, self._emit)

    def _drain(self) -> None:
        drain_datagrams(self.sock, _MAX_DATAGRAM, self._emit)

    def _emit(self, data: bytes) -> None:
        try:
            fields = pickle.loads(data)
            extras = fields.pop(_EXTRAS, {})
            fields.update({key: _restore(value) for key, value in extras.items()})
            record = logging.makeLogRecord(fields)
        except Exception:  # noqa: BLE001 - not ours or corrupt: counted, never fatal
            self.undecodable += 1
            return
        try:
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)
            dropped = fields.get(_DROPPED)
            if dropped:
                log.warning(
                    "%d log records of OS process %s were dropped (the node's log queue was full)",
                    dropped,
                    record.process,
                )
        except Exception:  # noqa: BLE001 - a failing filter must not end the listener
            self.undecodable += 1

    def stop(self) -> None:
        """Emit what is still queued and close (call after the zygote stopped,
        when no process can send any more)."""
        if self._thread is None:
            return
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        self._thread.join()
        self._thread = None
        self._drain()
        self._close()
        if self in _listeners:
            _listeners.remove(self)
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _close(self) -> None:
        self.sock.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1


_listeners: list[LogListener] = []


def start_listener(node_info: NodeDir) -> LogListener:
    """Bind ``<node dir>/log`` and serve it from a thread of this process
    (the root); call before the zygote starts, ``stop()`` after it stopped."""
    listener = LogListener(node_info.dir)
    _listeners.append(listener)
    return listener


def _write_levels(path: str) -> None:
    manager = logging.root.manager
    levels = {"": logging.root.level}
    for name, logger in list(manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
    with open(path, "w") as f:
        json.dump({"disable": manager.disable, "levels": levels}, f)


class _Portable(NamedTuple):
    """An ``extra`` field as it travels: its pickle (None if it has none or a
    large one) and its repr, which the root uses if it cannot unpickle."""

    blob: bytes | None
    text: str


def _restore(value: _Portable) -> object:
    blob, text = value
    if blob is not None:
        try:
            return pickle.loads(blob)
        except Exception:  # noqa: BLE001 - a class the root does not have: its repr
            pass
    return text


# ----------------------------------------------------------- process side


class Forwarder(logging.Handler):
    """Sends every record it handles to the node's :class:`LogListener`."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.dropped = 0
        self.timeout = SEND_TIMEOUT
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(self.timeout)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = _flatten(record)
            if self.dropped:
                fields[_DROPPED] = self.dropped
            data = pickle.dumps(fields, pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - logging never raises into the caller
            self.handleError(record)
            return
        try:
            self.sock.send(data)
        except OSError:  # full (timeout, EAGAIN), or the root is gone: nobody would emit it
            if not self.dropped:
                # The root is behind: until it catches up, records that
                # find no room are dropped at once instead of each waiting.
                self.sock.settimeout(0.0)
            self.dropped += 1
            return
        if self.dropped:
            self.sock.settimeout(self.timeout)
            self.dropped = 0

    def close(self) -> None:
        self.sock.close()
        super().close()


def _flatten(record: logging.LogRecord) -> dict[str, Any]:
    """The record as picklable fields: message and traceback as text."""
    fields = {key: value for key, value in record.__dict__.items() if key in _STANDARD}
    try:
        message = record.getMessage()
    except Exception as exc:  # noqa: BLE001 - a bad format string still gets reported
        message = f"{record.msg!r} % {record.args!r} failed: {exc!r}"
    exc_text = record.exc_text
    if record.exc_info and not exc_text:
        exc_text = logging.Formatter().formatException(record.exc_info)
    fields.update(
        msg=_clip(message),
        args=None,
        exc_info=None,
        exc_text=_clip(exc_text) if exc_text else None,
        stack_info=_clip(record.stack_info) if record.stack_info else None,
    )
    fields.pop("message", None)
    extras = {key: _portable(value) for key, value in record.__dict__.items() if key not in _STANDARD}
    if extras:
        fields[_EXTRAS] = extras
    return fields


def _clip(text: object) -> str:
    text = str(text)
    if len(text) <= MAX_TEXT:
        return text
    head = MAX_TEXT // 4
    tail = MAX_TEXT - head
    return f"{text[:head]}\n[... {len(text) - MAX_TEXT} characters left out ...]\n{text[-tail:]}"


def _portable(value: object) -> _Portable:
    """``value`` as it travels (see :class:`_Portable`)."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001
        text = f"<{type(value).__name__}>"
    try:
        blob = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001
        blob = None
    if blob is not None and len(blob) > _MAX_EXTRA_BLOB:
        blob = None
    return _Portable(blob, text[:_MAX_REPR])


_installed: list[str] = []


def install_forwarder(node_info: NodeDir) -> bool:
    """Send this process's log records to the node's root (call at bootstrap,
    before user code).  Returns False, changing nothing, if the node has no
    log socket."""
    if node_info.dir in _installed:
        return True  # inherited from the zygote, which installed it already
    path = os.path.join(node_info.dir, SOCKET_NAME)
    try:
        forwarder = Forwarder(path)
    except OSError:
        return False
    for listener in _listeners:
        listener._close()  # the root's, inherited through fork: not ours to serve
    _listeners.clear()
    _detach_handlers(forwarder)
    _apply_levels(os.path.join(node_info.dir, LEVELS_NAME))
    _installed.append(node_info.dir)
    return True


def _detach_handlers(forwarder: Forwarder) -> None:
    """Only the forwarder: inherited handlers would write beside the root.
    A logger that does not propagate gets the forwarder too, so its records
    still reach the root (whose same logger handles them its own way)."""
    loggers = [logging.root] + [
        lg for lg in list(logging.root.manager.loggerDict.values()) if isinstance(lg, logging.Logger)
    ]
    for logger in loggers:
        had = bool(logger.handlers)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            if isinstance(handler, Forwarder):
                handler.close()  # the zygote's socket, inherited
        if logger is logging.root or (had and not logger.propagate):
            logger.addHandler(forwarder)


def _apply_levels(path: str) -> None:
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return
    logging.disable(config.get("disable", 0))
    for name, level in config.get("levels", {}).items():
        (logging.getLogger(name) if name else logging.root).setLevel(level)
