"""PBFT's signed statements, certificates and handshake codes (no processes).

Every protocol message between replicas is a *statement* signed with the
sender's Ed25519 key of the instance: ``(kind, instance, view, seq, digest,
sender)`` packed into bytes, where ``instance`` is the SHA-256 of the
configuration the client handed out (so a statement of one instance means
nothing in another) and ``digest`` the SHA-256 of the value's bytes.
Signatures, unlike MACs, can be checked by a third party: a replica can
pass on a *prepared certificate* (the primary's signed pre-prepare and 2f
signed prepares) in a view change, and every other replica checks it
without trusting the one who passed it on; two signed statements of one
replica that contradict each other are a *proof* that it is faulty.

The client and a replica authenticate each other with HMAC-SHA256 over
secrets that only the two of them hold (see :mod:`._pbft`).

The Ed25519 implementation is the ``cryptography`` package's, imported on
first use so that importing :mod:`mabeam.coordination` costs nothing more.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import cloudpickle

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "PRE_PREPARE",
    "PREPARE",
    "COMMIT",
    "VIEW_CHANGE",
    "NEW_VIEW",
    "REPLY",
    "SEQ",
    "NO_CERTIFICATE",
    "Config",
    "Certificate",
    "Proof",
    "encode_value",
    "digest_of",
    "statement",
    "new_signing_key",
    "public_bytes",
    "load_public_keys",
    "sign",
    "verify",
    "mac",
    "mac_ok",
    "certificate_summary",
    "check_certificate",
    "carried_certificate",
    "check_proof",
]

# The kinds of statement (one byte each, so that no two encodings collide).
PRE_PREPARE = b"P"
PREPARE = b"p"
COMMIT = b"c"
VIEW_CHANGE = b"v"
NEW_VIEW = b"n"
REPLY = b"r"

#: One instance agrees on one value: the sequence number of its only slot.
#: Statements still carry it, as PBFT's do, and a replica refuses any other.
SEQ = 1

#: The summary a view-change signs when its sender prepared nothing.
NO_CERTIFICATE = bytes(32)


class Config(NamedTuple):
    """What the client hands every replica of an instance (the same bytes
    to all; its SHA-256 names the instance in every statement).

    ``ids`` are the agents in primary order (the primary of view ``v`` is
    ``ids[v % n]``); ``pids`` and ``keys`` (raw Ed25519 public keys) are
    None for an agent that did not join; ``proposal`` is the client's
    request, pickled; ``view_timeout`` the first view's timer (it doubles
    with each view)."""

    ids: tuple
    pids: tuple
    keys: tuple
    f: int
    proposal: bytes
    view_timeout: float

    @property
    def n(self) -> int:
        return len(self.ids)


class Certificate(NamedTuple):
    """A prepared certificate: value ``value`` (bytes, SHA-256 ``digest``)
    pre-prepared by the primary of ``view`` (``pre_prepare``: its signature)
    and prepared by 2f other replicas (``prepares``: ``(sender, signature)``)."""

    view: int
    seq: int
    digest: bytes
    value: bytes
    pre_prepare: bytes
    prepares: tuple


class Proof(NamedTuple):
    """Two statements of ``kind`` for one ``view`` signed by ``sender`` with
    different digests: an honest replica never signs both."""

    sender: int
    kind: bytes
    view: int
    first: tuple  # (digest, signature)
    second: tuple


def encode_value(value: Any) -> bytes:
    """The value's bytes (its digest names it in statements)."""
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def digest_of(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def statement(kind: bytes, instance: bytes, view: int, seq: int, digest: bytes, sender: int) -> bytes:
    """The bytes a replica signs."""
    return kind + instance + struct.pack(">QQI", view, seq, sender) + digest


# ------------------------------------------------------------------ keys


def _ed25519() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519


def new_signing_key() -> Ed25519PrivateKey:
    return _ed25519().Ed25519PrivateKey.generate()


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_public_keys(raw: Sequence[bytes | None]) -> list[Ed25519PublicKey | None]:
    """The keys of a :class:`Config` (None stays None; a key that cannot be
    loaded is None too: nobody can sign for that replica)."""
    ed = _ed25519()
    keys: list[Ed25519PublicKey | None] = []
    for k in raw:
        try:
            keys.append(None if k is None else ed.Ed25519PublicKey.from_public_bytes(k))
        except (ValueError, TypeError):
            keys.append(None)
    return keys


def sign(key: Ed25519PrivateKey, stmt: bytes) -> bytes:
    return key.sign(stmt)


def verify(keys: Sequence[Ed25519PublicKey | None], sender: Any, signature: Any, stmt: bytes) -> bool:
    """Whether ``sender`` (an index into ``keys``) signed ``stmt``."""
    from cryptography.exceptions import InvalidSignature

    if type(sender) is not int or not 0 <= sender < len(keys) or type(signature) is not bytes:
        return False
    key = keys[sender]
    if key is None:
        return False
    try:
        key.verify(signature, stmt)
    except InvalidSignature:
        return False
    return True


def mac(key: bytes, *parts: bytes) -> bytes:
    h = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        h.update(struct.pack(">I", len(part)))
        h.update(part)
    return h.digest()


def mac_ok(key: bytes, tag: Any, *parts: bytes) -> bool:
    return type(tag) is bytes and hmac.compare_digest(tag, mac(key, *parts))


# ------------------------------------------------------------------ certificates


def certificate_summary(cert: Certificate | None) -> bytes:
    """What a view-change signs about its certificate: its view and digest."""
    if cert is None:
        return NO_CERTIFICATE
    return digest_of(struct.pack(">Q", cert.view) + cert.digest)


def check_certificate(
    cert: Any, instance: bytes, keys: Sequence[Ed25519PublicKey | None], f: int, before_view: int
) -> bool:
    """Whether ``cert`` is a valid prepared certificate of a view before
    ``before_view``: the value hashes to its digest, the pre-prepare is
    signed by that view's primary and 2f distinct other replicas signed a
    matching prepare."""
    if type(cert) is not Certificate:
        return False
    view, seq, digest, value = cert.view, cert.seq, cert.digest, cert.value
    if type(view) is not int or not 0 <= view < before_view or seq != SEQ or type(value) is not bytes:
        return False
    if digest_of(value) != digest:
        return False
    n = len(keys)
    primary = view % n
    if not verify(keys, primary, cert.pre_prepare, statement(PRE_PREPARE, instance, view, seq, digest, primary)):
        return False
    if type(cert.prepares) is not tuple:
        return False
    signers = set()
    for entry in cert.prepares:
        if type(entry) is not tuple or len(entry) != 2:
            return False
        sender, sig = entry
        if sender == primary or sender in signers:
            return False
        if not verify(keys, sender, sig, statement(PREPARE, instance, view, seq, digest, sender)):
            return False
        signers.add(sender)
    return len(signers) >= 2 * f


def carried_certificate(certs: Sequence[Certificate]) -> Certificate | None:
    """The certificate a new view must keep: the one of the highest view
    (two valid ones of one view agree unless more than f replicas are
    faulty; the lowest digest then, so every replica picks the same)."""
    if not certs:
        return None
    return max(certs, key=lambda c: (c.view, [-b for b in c.digest]))


def check_proof(proof: Any, instance: bytes, keys: Sequence[Ed25519PublicKey | None]) -> bool:
    """Whether ``proof`` shows its sender signed two different digests of
    one kind for one view."""
    if type(proof) is not Proof or proof.kind not in (PRE_PREPARE, PREPARE, COMMIT, VIEW_CHANGE):
        return False
    if type(proof.view) is not int or proof.view < 0:
        return False
    try:
        (d1, s1), (d2, s2) = proof.first, proof.second
    except (TypeError, ValueError):
        return False
    if type(d1) is not bytes or type(d2) is not bytes or d1 == d2:
        return False
    return all(
        verify(keys, proof.sender, s, statement(proof.kind, instance, proof.view, SEQ, d, proof.sender))
        for d, s in ((d1, s1), (d2, s2))
    )
