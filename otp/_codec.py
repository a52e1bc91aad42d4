"""Wire format of mailbox frames and signal datagrams.

A mailbox frame is one ZeroMQ frame::

    kind (1 byte) | sender uid (8) | sequence number (8) | pickled payload

The header is fixed-size and outside the pickle so that a router (a later
node gateway) can forward and order frames without unpickling them, and so
that a malformed frame is recognised before any unpickling.  The sequence
number counts frames from one sender to one receiver; signals that travel on
the datagram channel carry the sender's count at the time they were sent,
which lets the receiver keep OTP's per-pair order between messages and
signals (ORD-1).

Payloads are pickled with the standard pickle (protocol 5).  Only if that
fails (lambdas, closures, classes defined in ``__main__``) is cloudpickle
used; it is about 2.3x slower per message.  Its output is ordinary pickle
data, so decoding never needs to know which one produced it.

Unpickling executes code: frames are only accepted from peers inside the
node's trust domain (ipc sockets in a 0700 directory); a network transport
must authenticate peers (CURVE) before any frame reaches :func:`decode`.
"""

from __future__ import annotations

import pickle
import struct

import cloudpickle

from ._errors import EncodeError

__all__ = ["KIND_MSG", "KIND_REPLY", "WAKE_FRAME", "encode", "decode", "dumps", "DecodeError"]

KIND_MSG = 0x4D  # 'M'
KIND_REPLY = 0x52  # 'R'
_KINDS = frozenset((KIND_MSG, KIND_REPLY))

#: A frame of this single byte only wakes the receiver (from its own signal
#: thread); it carries nothing and is never decoded.
WAKE_FRAME = b"W"

HEADER = struct.Struct("<BQQ")
HEADER_SIZE = HEADER.size
PROTOCOL = 5


class DecodeError(ValueError):
    """A frame or datagram that is not ours, or is corrupt."""


def dumps(obj: object) -> bytes:
    """Pickle ``obj``, falling back to cloudpickle; raise :class:`EncodeError`."""
    try:
        return pickle.dumps(obj, PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        pass
    try:
        return cloudpickle.dumps(obj, PROTOCOL)
    except Exception as exc:  # cloudpickle raises many kinds
        raise EncodeError(f"cannot serialise {type(obj).__name__} object: {exc}") from exc


def encode(kind: int, sender_uid: int, seq: int, obj: object) -> bytes:
    return HEADER.pack(kind, sender_uid, seq) + dumps(obj)


def decode(frame: bytes | memoryview) -> tuple[int, int, int, object]:
    """``(kind, sender uid, seq, payload)``; raises :class:`DecodeError`."""
    if len(frame) < HEADER_SIZE:
        raise DecodeError(f"short frame ({len(frame)} bytes)")
    kind, uid, seq = HEADER.unpack_from(frame)
    if kind not in _KINDS:
        raise DecodeError(f"unknown frame kind {kind:#x}")
    try:
        payload = pickle.loads(memoryview(frame)[HEADER_SIZE:])
    except Exception as exc:
        raise DecodeError(f"undecodable payload: {exc!r}") from exc
    return kind, uid, seq, payload


def decode_signal(data: bytes) -> tuple:
    try:
        sig = pickle.loads(data)
    except Exception as exc:
        raise DecodeError(f"undecodable signal: {exc!r}") from exc
    if not isinstance(sig, tuple) or len(sig) < 3:
        raise DecodeError(f"malformed signal {sig!r}")
    return sig
