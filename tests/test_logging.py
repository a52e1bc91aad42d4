"""Log records of every process reach the root's logging configuration,
under both start methods (see otp/_logging.py).

The end-to-end tests run a script in a subprocess: logging must be
configured by a ``__main__`` the way users do it, before the node starts.
The node's stop emits everything still queued, so the log file is complete
once the script has exited.
"""

from __future__ import annotations

import logging
import pickle
import queue
import socket
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

import otp
from otp import _logging

METHODS = ["forkserver", "fork"]

SCRIPT = textwrap.dedent(
    """
    import logging, os, sys
    import otp

    log_file, method, otp_level = sys.argv[1], sys.argv[2], sys.argv[3]

    class Writer(logging.FileHandler):
        # Says which OS process wrote each line: only the root may.
        def emit(self, record):
            record.writer = os.getpid()
            super().emit(record)

    def boom():
        raise ValueError("kaboom")

    def chatty():
        logging.getLogger("app").debug("debug from a child")
        try:
            {}["missing"]
        except KeyError:
            logging.getLogger("app").exception("handled in a child")

    if __name__ == "__main__":
        handler = Writer(log_file)
        handler.setFormatter(logging.Formatter(
            "writer=%(writer)s process=%(process)d %(name)s %(levelname)s report=%(otp_report)s %(message)s",
            defaults={"otp_report": "-"},
        ))
        logging.basicConfig(level=logging.WARNING, handlers=[handler])
        logging.getLogger("app").setLevel(logging.DEBUG)
        if otp_level:
            logging.getLogger("otp").setLevel(getattr(logging, otp_level))
        with otp.Node(start_method=method):
            otp.trap_exit(True)
            crashed = otp.spawn_link(boom)
            assert otp.receive(10).pid == crashed
            otp.spawn_link(chatty)
            assert otp.receive(10).reason == "normal"
        print(os.getpid(), crashed.ospid, repr(crashed))
    """
)


def _run(tmp_path, method: str, otp_level: str = "") -> tuple[list[str], int, int, str]:
    script = tmp_path / "logs.py"
    script.write_text(SCRIPT)
    log_file = tmp_path / "node.log"
    done = subprocess.run(
        [sys.executable, str(script), str(log_file), method, otp_level], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    root, crashed, crashed_repr = done.stdout.split(maxsplit=2)
    return log_file.read_text().splitlines(), int(root), int(crashed), crashed_repr.strip()


@pytest.mark.parametrize("method", METHODS)
def test_a_crash_report_goes_to_the_scripts_log_file_with_the_pid(tmp_path, method):
    lines, root, crashed, crashed_repr = _run(tmp_path, method)
    text = "\n".join(lines)
    report = [line for line in lines if f"process={crashed} otp ERROR report=crash" in line]
    assert report and crashed_repr in report[0], text
    assert "ValueError: kaboom" in text
    assert "debug from a child" in text  # the root's level for 'app' reached the child
    assert "KeyError: 'missing'" in text  # exc_info rendered in the child
    writers = {line.split()[0] for line in lines if line.startswith("writer=")}
    assert writers == {f"writer={root}"}, text  # one writer: under fork, children dropped the inherited handler


@pytest.mark.parametrize("method", METHODS)
def test_the_otp_logger_at_critical_silences_crash_reports(tmp_path, method):
    lines, _, _, _ = _run(tmp_path, method, otp_level="CRITICAL")
    text = "\n".join(lines)
    assert "kaboom" not in text and "crashed" not in text
    assert "handled in a child" in text  # other loggers are not affected


class Crashes(otp.GenServer):
    def init(self, args):
        return None

    def handle_cast(self, request, state):
        raise RuntimeError(request)


class _Queue(logging.Handler):
    """Records as they arrive (from the listener's thread); ``wait_for``
    finds one in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.records: queue.Queue = queue.Queue()
        self.seen: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.put(record)

    def wait_for(self, match, timeout: float = 10.0) -> logging.LogRecord:
        while True:
            for record in self.seen:
                if match(record):
                    return record
            self.seen.append(self.records.get(timeout=timeout))


def _is(record: logging.LogRecord, kind: str) -> bool:
    return getattr(record, _logging.REPORT, None) == kind


def test_supervisor_progress_and_crash_reports_carry_their_fields():
    otp_logger, sup_logger = logging.getLogger("otp"), logging.getLogger("otp.supervisor")
    handler = _Queue()
    otp_logger.addHandler(handler)
    sup_logger.setLevel(logging.INFO)  # before the node starts: its processes take the levels then
    try:
        with otp.Node():
            otp.trap_exit(True)
            sup = otp.Supervisor.start_link([Crashes.child_spec(None, id="crashy")])
            (child,) = otp.supervisor.which_children(sup)
            otp.cast(child.pid, "on purpose")
            crash = handler.wait_for(lambda r: _is(r, "crash") and r.otp_pid == child.pid)
            exited = handler.wait_for(lambda r: _is(r, "supervisor") and r.otp_supervisor == sup)
            restarted = handler.wait_for(
                lambda r: _is(r, "progress") and r.otp_supervisor == sup and r.otp_pid != child.pid
            )
    finally:
        otp_logger.removeHandler(handler)
        sup_logger.setLevel(logging.NOTSET)
    assert crash.otp_reason.message == "on purpose"
    assert "RuntimeError: on purpose" in crash.getMessage()
    assert (exited.otp_child_id, exited.otp_pid) == ("crashy", child.pid)
    assert isinstance(exited.otp_reason, otp.Crash)
    assert restarted.otp_child_id == "crashy"


# ------------------------------------------------ listener and forwarder


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept():
    logger = logging.getLogger("otp.test_logging")
    handler = _Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


@pytest.fixture
def listener(tmp_path):
    ear = _logging.start_listener(SimpleNamespace(dir=str(tmp_path)))
    try:
        yield ear
    finally:
        ear.stop()


def _record(msg: str, *args, **extra) -> logging.LogRecord:
    record = logging.LogRecord("otp.test_logging", logging.ERROR, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_records_arrive_formatted_with_their_extras_and_unpicklable_ones_as_repr(listener, kept):
    sender = _logging.Forwarder(listener.path)
    try:
        sender.handle(_record("%s and %d", "text", 7, **_logging.report("crash", pid=123, reason=("x", 1))))
        sender.handle(_record("with a lock", thing=socket.socket()))  # a socket does not pickle
    finally:
        sender.close()
    listener.stop()  # emits everything queued
    first, second = kept.records
    assert first.getMessage() == "text and 7" and first.args is None
    assert (first.otp_report, first.otp_pid, first.otp_reason) == ("crash", 123, ("x", 1))
    assert second.thing.startswith("<socket.socket")


def test_an_exception_travels_as_text_and_a_huge_message_is_clipped(listener, kept):
    sender = _logging.Forwarder(listener.path)
    try:
        try:
            raise RuntimeError("inside")
        except RuntimeError:
            record = _record("big %s", "x" * (5 * _logging.MAX_TEXT))
            record.exc_info = sys.exc_info()
            sender.handle(record)
    finally:
        sender.close()
    listener.stop()
    (got,) = kept.records
    assert got.exc_info is None and "RuntimeError: inside" in got.exc_text
    assert len(got.getMessage()) < _logging.MAX_TEXT + 100 and "characters left out" in got.getMessage()


def test_garbage_on_the_log_socket_is_counted_and_the_listener_goes_on(listener, kept):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender = _logging.Forwarder(listener.path)
    try:
        sock.sendto(b"not a pickle", listener.path)
        sock.sendto(pickle.dumps(["not", "a", "record"]), listener.path)
        sender.handle(_record("after the garbage"))
    finally:
        sender.close()
        sock.close()
    listener.stop()
    assert listener.undecodable == 2
    assert [r.getMessage() for r in kept.records] == ["after the garbage"]


def test_a_full_queue_drops_records_and_the_next_one_says_how_many(tmp_path, kept, monkeypatch):
    monkeypatch.setattr(_logging, "SEND_TIMEOUT", 0.01)
    path = str(tmp_path / "log")
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deaf.bind(path)  # nobody reads it until the queue is full
    sender = _logging.Forwarder(path)
    try:
        while not sender.dropped:
            sender.handle(_record("filler"))
        sender.handle(_record("dropped at once"))  # the queue is still full: no second wait
        queued = []
        deaf.setblocking(False)
        try:
            while True:
                queued.append(deaf.recv(1 << 18))
        except BlockingIOError:
            pass
        sender.handle(_record("after the drop"))
        last = pickle.loads(deaf.recv(1 << 18))
    finally:
        sender.close()
        deaf.close()
    assert queued and last["msg"] == "after the drop" and last["otp_dropped"] == 2
    assert sender.dropped == 0


def test_a_process_keeps_its_logging_when_the_node_has_no_log_socket(tmp_path):
    assert _logging.install_forwarder(SimpleNamespace(dir=str(tmp_path))) is False
