"""Mailbox frames of the wrong shape, messages to oneself, long waits.

A frame that is not ``(int uid, int seq, msg)`` or ``(int uid, int seq,
Ref, value)`` is dropped and counted, logged at most once per sender per
second; a message to oneself is a copy, as if it had crossed a socket.
A signal datagram that is not a signal of this protocol version is dropped
and logged, and the process carries on.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import socket
import threading

import pytest
import zmq
from helpers import down_of, recv, recv_tagged

import otp
from otp import _codec, _process
from otp._codec import DecodeError
from otp._pid import Pid, Ref
from otp._signal_records import (
    VERSION,
    Dead,
    Demonitor,
    Exit,
    Link,
    Monitor,
    Named,
    Signal,
    SignalVersionError,
    Unlink,
    decode_signal,
    encode_signal,
)

#: Sender uids no process of the node has: one for the valid frames the
#: test pushes itself, one for malformed frames whose sender can be read.
RAW = 0x7E57_0000_0000_0001
SENDER = 0x7E57_0000_0000_0002

#: Frames whose sender cannot be read: one bucket for all of them.
UNREADABLE = [
    pickle.dumps("abc"),  # a str of length 3 used to be taken for a frame
    pickle.dumps({"a": 1}),
    pickle.dumps(b"xyz"),  # bytes index to ints
    pickle.dumps([RAW, 1, "m"]),
    pickle.dumps(("x", 1, "m")),
    pickle.dumps(([1], 1, "m")),  # sender uid a list
    pickle.dumps((1.5, 1, "m")),  # sender uid a float
    pickle.dumps((True, 1, "m")),
    pickle.dumps(None),
    pickle.dumps(()),
    b"\x00\xffgarbage",
    b"",
]

#: Frames whose sender uid can be read (SENDER) but whose shape is wrong.
WRONG_SHAPE = [
    pickle.dumps((SENDER,)),  # a 1-tuple
    pickle.dumps((SENDER, "x", "m")),  # sequence number not an int
    pickle.dumps((SENDER, 1.0, "m")),
    pickle.dumps((SENDER, None, "m")),
    pickle.dumps((SENDER, 1, "not a ref", "value")),
    pickle.dumps((SENDER, 1, Ref([1]), "value")),  # an unhashable ref
    pickle.dumps((SENDER, 1, 2, 3, 4)),
]


class _Lines(logging.Handler):
    def __init__(self, lines: list) -> None:
        super().__init__(logging.WARNING)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def garbage_sink(parent: otp.Pid) -> None:
    """Collect what it receives and its own log lines; answer ('report', to)
    with its dropped-frame counter, those lines and the messages.  The clock
    of the drop log's rate limit is frozen and moves only on 'tick', so the
    number of lines does not depend on how fast the frames arrive."""
    proc = _process.current()
    lines: list = []
    logging.getLogger("otp").addHandler(_Lines(lines))
    clock = [0.0]
    _process._drop_clock = lambda: clock[0]
    got = []
    otp.send(parent, ("ready", otp.self()))
    while True:
        msg = otp.receive()
        if msg == "tick":
            clock[0] += 1.0
        elif msg == "stop":
            return
        elif type(msg) is tuple and len(msg) == 2 and msg[0] == "report":
            otp.send(msg[1], ("report", getattr(proc, "frames_dropped", None), list(lines), list(got)))
        else:
            got.append(msg)


def _counts(lines: list, pattern: str) -> list[int]:
    return [int(re.search(r"dropped (\d+)", line).group(1)) for line in lines if pattern in line]


def test_frames_of_the_wrong_shape_are_dropped_and_logged_once_per_sender(node):
    me = otp.self()
    pid, ref = otp.spawn_monitor(garbage_sink, me)
    assert recv_tagged("ready") == ("ready", pid)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    try:
        sock.connect(node.info.mailbox_endpoint(pid.uid))
        for _ in range(2):
            for frame in UNREADABLE + WRONG_SHAPE:
                sock.send(frame)
        # One frame per process is in order: everything above is taken in
        # before the tick, and the second burst of lines comes after it.
        sock.send(pickle.dumps((RAW, 1, "tick")))
        sock.send(UNREADABLE[0])
        sock.send(WRONG_SHAPE[0])
        sock.send(pickle.dumps((RAW, 2, ("report", me))))
        _, dropped, lines, got = recv_tagged("report")
    finally:
        sock.close(linger=0)
        ctx.term()
    assert got == [], "garbage reached the mailbox"
    assert dropped == 2 * len(UNREADABLE + WRONG_SHAPE) + 2
    dropped_lines = [line for line in lines if "malformed" in line]
    assert len(dropped_lines) == 4, dropped_lines
    # The first line of a sender says 1; the next one counts every frame
    # dropped since, including the ones that were not logged.
    assert _counts(dropped_lines, f"{SENDER:#x}") == [1, 2 * len(WRONG_SHAPE)]
    assert _counts(dropped_lines, "cannot be read") == [1, 2 * len(UNREADABLE)]
    otp.send(pid, ("report", me))  # still answers, through the ordinary path
    assert recv_tagged("report")[3] == []
    otp.send(pid, "stop")
    assert down_of(ref).reason == "normal"


def test_made_up_sender_uids_cannot_grow_the_drop_log(node, caplog, monkeypatch):
    """This process is the target here, so its log is caplog's.  Each
    made-up uid gets a line until the table of senders is full; the rest
    share one line, and a line for every count not yet reported comes once
    their second has passed."""
    clock = [0.0]
    monkeypatch.setattr(_process, "_drop_clock", lambda: clock[0])
    proc = _process.current()
    full = _process._DROP_SENDERS_MAX
    before = proc.frames_dropped
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    caplog.set_level(logging.WARNING, logger="otp")
    try:
        sock.connect(node.info.mailbox_endpoint(proc.uid))
        for uid in range(RAW + 1, RAW + full + 44 + 1):
            sock.send(pickle.dumps((uid, "x", "m")))
        sock.send(pickle.dumps((RAW, 1, "first")))
        assert recv() == "first"  # every frame before it was taken in
        assert len(proc._drop_log) == full + 1  # the senders, and the bucket of the rest
        lines = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
        assert len(lines) == full + 1
        assert _counts(lines, "cannot be read") == [1]
        caplog.clear()
        clock[0] += 1.0
        sock.send(pickle.dumps((RAW - 1, "x", "m")))
        sock.send(pickle.dumps((RAW, 2, "second")))
        assert recv() == "second"
    finally:
        sock.close(linger=0)
        ctx.term()
    lines = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert _counts(lines, "cannot be read") == [43]  # the ones the first line did not count
    assert _counts(lines, f"{RAW - 1:#x}") == [1]
    assert len(lines) == 2
    assert list(proc._drop_log) == [RAW - 1]
    assert proc.frames_dropped - before == full + 45


def test_is_frame_accepts_exactly_the_documented_shapes():
    assert _codec.is_frame(pickle.loads(pickle.dumps((1, 2, "m"))))
    ref = otp.make_ref()
    assert _codec.is_frame(pickle.loads(pickle.dumps((1, 2, ref, "v"))))
    decodable = [frame for frame in UNREADABLE + WRONG_SHAPE if frame not in (b"", b"\x00\xffgarbage")]
    assert len(decodable) == len(UNREADABLE + WRONG_SHAPE) - 2
    for frame in decodable:
        assert not _codec.is_frame(pickle.loads(frame)), frame


# ------------------------------------------------------- messages to oneself


def test_unpicklable_message_to_self_raises_encode_error(node):
    with pytest.raises(otp.EncodeError):
        otp.send(otp.self(), ("lock", threading.Lock()))
    with pytest.raises(otp.Timeout):
        otp.receive(0)  # nothing was queued


def test_message_to_self_is_a_copy(node):
    msg = {"k": [1]}
    otp.send(otp.self(), msg)
    msg["k"].append(2)
    got = recv()
    assert got == {"k": [1]}
    assert got is not msg


def test_reply_to_self_is_a_copy_and_must_be_picklable(node):
    proc = _process.current()
    ref = otp.make_ref()
    proc.active_calls[ref] = None  # a call of this process waiting for ref
    try:
        with pytest.raises(otp.EncodeError):
            otp.reply((otp.self(), ref), threading.Lock())
        assert ref not in proc.replies
        value = [1]
        otp.reply((otp.self(), ref), value)
        value.append(2)
        assert proc.replies[ref] == [1]
    finally:
        del proc.active_calls[ref]
        proc.replies.pop(ref, None)


# ------------------------------------------------------------- long waits


def send_to(dest: otp.Pid, msg: object) -> None:
    otp.send(dest, msg)


def test_receive_with_a_thirty_day_timeout_waits_for_the_message(node):
    otp.spawn(send_to, otp.self(), "late")
    assert otp.receive(30 * 86400.0) == "late"


def test_poll_sockets_with_a_thirty_day_timeout(node):
    otp.spawn(send_to, otp.self(), "polled")
    proc = _process.current()
    while not proc.mailbox:
        assert proc.poll_sockets([], 30 * 86400.0) == []
    assert recv() == "polled"


# ------------------------------------------------------------ signal datagrams

_SOMEONE = Pid("elsewhere", 0x7E57_0000_0000_0003, 1, 2)


def _every_kind_of_signal() -> list[Signal]:
    ref = Ref(12345)
    return [
        Link(_SOMEONE, 1),
        Unlink(_SOMEONE, 2),
        Monitor(_SOMEONE, 3, ref),
        Demonitor(_SOMEONE, 0, ref),
        Exit(_SOMEONE, 4, ("shutdown", {"why": 1})),
        Dead(_SOMEONE, 5, "normal", True, [ref, Ref(6)], False),
        Named(_SOMEONE, 0),
    ]


def test_every_signal_survives_its_wire_form_with_its_type():
    for signal in _every_kind_of_signal():
        data = encode_signal(signal)
        assert data[0] == VERSION
        decoded = decode_signal(data)
        assert type(decoded) is type(signal) and decoded == signal


def test_a_signal_of_another_protocol_version_is_rejected_with_a_typed_error():
    for signal in _every_kind_of_signal():
        data = encode_signal(signal)
        for version in (0, VERSION + 1, 255):
            with pytest.raises(SignalVersionError) as info:
                decode_signal(bytes([version]) + data[1:])
            assert info.value.version == version
            assert isinstance(info.value, DecodeError)


def test_malformed_signal_datagrams_are_rejected():
    link = encode_signal(Link(_SOMEONE, 1))
    header = link[:1]
    bad = [
        b"",
        link[:2],
        header + bytes([200]) + link[2:],  # no such kind
        link[:2] + b"\x00garbage",
        link[:2] + pickle.dumps((_SOMEONE,), 5),  # a field short
        link[:2] + pickle.dumps((_SOMEONE, 1, 2), 5),  # a field too many
        link[:2] + pickle.dumps(["not", "a tuple"], 5),
        link[:2] + pickle.dumps(("not a pid", 1), 5),
        link[:2] + pickle.dumps((_SOMEONE, "not an int"), 5),
        encode_signal(Monitor(_SOMEONE, 1, Ref(1)))[:2] + pickle.dumps((_SOMEONE, 1, "not a ref"), 5),
        encode_signal(Dead(_SOMEONE, 1, "normal", True, [], False))[:2]
        + pickle.dumps((_SOMEONE, 1, "normal", True, ["not a ref"], False), 5),
        encode_signal(Dead(_SOMEONE, 1, "normal", True, [], False))[:2]
        + pickle.dumps((_SOMEONE, 1, "normal", 1, [], False), 5),
    ]
    for data in bad:
        with pytest.raises(DecodeError):
            decode_signal(data)


def test_a_process_drops_a_signal_of_another_version_logs_it_and_carries_on(node, caplog):
    """The test process is the target: an exit signal of another protocol
    version, then the same signal of this version; only the second has an
    effect (an EXIT, since the test traps exits)."""
    caplog.set_level(logging.WARNING, logger="otp")
    proc = _process.current()
    sender = Pid(node.info.name, 0x7E57_0000_0000_0004, os.getpid(), 0)
    stale = encode_signal(Exit(sender, 0, "from another version"))
    fresh = encode_signal(Exit(sender, 0, "from this version"))
    previous = otp.trap_exit(True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.sendto(bytes([VERSION + 1]) + stale[1:], proc.node.signal_address(proc.uid))
        sock.sendto(fresh, proc.node.signal_address(proc.uid))
        assert recv(lambda m: isinstance(m, otp.EXIT) and m.pid == sender).reason == "from this version"
        with pytest.raises(otp.Timeout):
            otp.receive(0, lambda m: isinstance(m, otp.EXIT) and m.pid == sender)
    finally:
        sock.close()
        otp.trap_exit(previous)
    lines = [r.getMessage() for r in caplog.records if "dropped malformed signal" in r.getMessage()]
    assert len(lines) == 1 and f"protocol version {VERSION + 1}" in lines[0]
