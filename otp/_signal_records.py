"""The signals processes exchange on their signal ports, as typed records,
and their wire form.

One record per kind of signal (:class:`Link`, :class:`Unlink`,
:class:`Monitor`, :class:`Demonitor`, :class:`Exit`, :class:`Dead`,
:class:`Named`, and the question :class:`InfoRequest` with its answer
:class:`InfoReply`); every one starts with the sender's pid and its count of
mailbox frames sent to the receiver so far (``seq``), which lets the
receiver keep the order between a process's messages and its signals.

A datagram is two header bytes, the protocol version (:data:`VERSION`) and
the kind, then the pickle of the record's fields as a plain tuple (no class
reference: small and fast to load).  :func:`decode_signal` checks the
version, the kind, the arity and the types of the fields every signal has;
whatever fails a check raises :class:`~otp._codec.DecodeError`
(:class:`SignalVersionError` for another version), and the port drops and
logs it.

The records that cross from the signal thread to the main thread (the
signal inbox) are here too: :class:`InboxItem`, with the enums
:class:`Complete` and :class:`Action`.
"""

from __future__ import annotations

import enum
import pickle
from typing import NamedTuple

from ._codec import DecodeError
from ._pid import Pid, Ref

__all__ = [
    "VERSION",
    "Link",
    "Unlink",
    "Monitor",
    "Demonitor",
    "Exit",
    "Dead",
    "Named",
    "InfoRequest",
    "InfoReply",
    "ProcessState",
    "Signal",
    "SignalVersionError",
    "encode_signal",
    "decode_signal",
    "Complete",
    "Action",
    "InboxItem",
]

#: The signal protocol's version, the first byte of every datagram.  Both
#: ends of a node run the same code; a datagram of another version comes
#: from something else and is dropped.
VERSION = 1

_PROTOCOL = 5
_dumps = pickle.dumps
_loads = pickle.loads


class Link(NamedTuple):
    """Link the sender and the receiver."""

    sender: Pid
    seq: int


class Unlink(NamedTuple):
    """Remove the link between the sender and the receiver."""

    sender: Pid
    seq: int


class Monitor(NamedTuple):
    """The sender monitors the receiver under ``ref`` (also the internal
    monitor of a caller on its server)."""

    sender: Pid
    seq: int
    ref: Ref


class Demonitor(NamedTuple):
    """The sender dropped its monitor ``ref`` on the receiver."""

    sender: Pid
    seq: int
    ref: Ref


class Exit(NamedTuple):
    """An exit signal with ``reason`` (``otp.exit``)."""

    sender: Pid
    seq: int
    reason: object


class Dead(NamedTuple):
    """The sender exited with ``reason``: the link to the receiver if
    ``linked``, and the monitors ``refs`` the receiver held on it, are gone.
    ``flushed``: every frame the sender counted in ``seq`` was delivered
    before it sent this (else some may never arrive)."""

    sender: Pid
    seq: int
    reason: object
    linked: bool
    refs: list[Ref]
    flushed: bool


class Named(NamedTuple):
    """A registry holds a name for the receiver (see :mod:`otp.registry`)."""

    sender: Pid
    seq: int


class InfoRequest(NamedTuple):
    """The sender asks for the receiver's state (``otp.process_info``); the
    receiver's signal thread answers with an :class:`InfoReply` on the
    sender's info socket (``NodeInfo.info_address``), whatever its main
    thread is doing."""

    sender: Pid
    seq: int
    ref: Ref


class ProcessState(NamedTuple):
    """What a process says of itself in an :class:`InfoReply`."""

    #: Messages received and not yet taken by ``receive``, those still in
    #: the mailbox socket included.
    message_queue_len: int
    links: tuple[Pid, ...]
    #: Processes this process monitors, one entry per monitor.
    monitors: tuple[Pid, ...]
    #: Processes monitoring this one, one entry per monitor.
    monitored_by: tuple[Pid, ...]
    trap_exit: bool
    #: The main thread waits for a message (in ``receive`` or a call).
    waiting: bool
    exiting: bool
    #: A registry holds a name for it.
    named: bool
    #: Mailbox frames (messages and replies) taken in and sent, over its life.
    messages_received: int
    messages_sent: int
    #: ``module.function`` its main thread runs, outside the kernel.
    current_function: str | None


class InfoReply(NamedTuple):
    """The answer to the :class:`InfoRequest` ``ref``."""

    sender: Pid
    seq: int
    ref: Ref
    state: ProcessState


Signal = Link | Unlink | Monitor | Demonitor | Exit | Dead | Named | InfoRequest | InfoReply

_KINDS: tuple[type[Signal], ...] = (Link, Unlink, Monitor, Demonitor, Exit, Dead, Named, InfoRequest, InfoReply)
_CODE: dict[type, int] = {cls: code for code, cls in enumerate(_KINDS)}
_HEADER: dict[type, bytes] = {cls: bytes((VERSION, code)) for cls, code in _CODE.items()}
_ARITY: tuple[int, ...] = tuple(len(cls._fields) for cls in _KINDS)


class SignalVersionError(DecodeError):
    """A signal datagram of another protocol version than :data:`VERSION`."""

    def __init__(self, version: int) -> None:
        super().__init__(f"signal of protocol version {version}, expected {VERSION}")
        self.version = version


def encode_signal(signal: Signal | tuple) -> bytes:
    """The datagram of ``signal``; pickle's exceptions for a field that
    cannot be pickled (an exit reason).
    """
    header = _HEADER.get(type(signal))
    if header is None:
        raise TypeError(f"not a signal record: {signal!r}")
    return header + _dumps(tuple(signal), _PROTOCOL)


def decode_signal(data: bytes) -> Signal:
    """The record in datagram ``data``; :class:`DecodeError` for anything
    that is not a signal of this version."""
    if len(data) < 3:
        raise DecodeError(f"signal datagram of {len(data)} bytes")
    if data[0] != VERSION:
        raise SignalVersionError(data[0])
    code = data[1]
    if code >= len(_KINDS):
        raise DecodeError(f"unknown signal kind {code}")
    try:
        fields = _loads(memoryview(data)[2:])
    except Exception as exc:
        raise DecodeError(f"undecodable signal: {exc!r}") from exc
    if type(fields) is not tuple or len(fields) != _ARITY[code]:
        raise DecodeError(f"malformed {_KINDS[code].__name__} signal")
    signal = _KINDS[code]._make(fields)
    if type(signal.sender) is not Pid or type(signal.seq) is not int:
        raise DecodeError(f"{_KINDS[code].__name__} signal without sender pid and sequence number")
    if isinstance(signal, (Monitor, Demonitor, InfoRequest, InfoReply)):
        if type(signal.ref) is not Ref:
            raise DecodeError(f"{_KINDS[code].__name__} signal without a Ref")
    elif isinstance(signal, Dead):
        if type(signal.linked) is not bool or type(signal.flushed) is not bool or type(signal.refs) is not list:
            raise DecodeError("malformed Dead signal")
        if any(type(ref) is not Ref for ref in signal.refs):
            raise DecodeError("Dead signal with a ref that is not a Ref")
    if isinstance(signal, InfoReply) and type(signal.state) is not ProcessState:
        raise DecodeError("InfoReply signal without a ProcessState")
    return signal


class Complete(enum.Enum):
    """How an inbox item stands to the frames its sender sent before it."""

    #: They will all arrive: hold the item until they have.
    YES = "yes"
    #: Some may never arrive: deliver it now, with what is held behind them.
    NO = "no"
    #: The sender is alive: hold the item behind its frames, but watch the
    #: sender, since a violent death could lose frames it counted.
    LIVE = "live"


class Action(enum.Enum):
    """What the main thread does with an inbox item's payload."""

    #: Queue it in the mailbox (an exit signal turned into an ``EXIT``).
    MESSAGE = "message"
    #: Queue it in the mailbox and remember the sender is dead (an ``EXIT``
    #: or ``DOWN`` of a death).
    DEATH = "death"
    #: A process this one calls died with reason ``payload``: fail its calls.
    PEER_DEAD = "peer_dead"
    #: The sender died without a word: release what is held behind its
    #: frames (no payload).
    RELEASE = "release"


class InboxItem(NamedTuple):
    """What the signal thread hands the main thread (``SignalPort.inbox``)."""

    sender: Pid
    seq: int
    complete: Complete
    action: Action
    payload: object
