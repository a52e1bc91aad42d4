"""CURVE key pairs of nodes, and their files.

Every node that listens on tcp has a CURVE key pair (Curve25519, as ZeroMQ's
CURVE mechanism uses): its public key is what other nodes allow, its secret
key proves it is that node.  The keys are kept as Z85 text (40 characters),
ZeroMQ's own form.

Files.  ``python -m otp keys new PATH`` writes the secret file ``PATH`` with
mode 0600 (created exclusively, never through a symlink) and the public file
``PATH.pub`` beside it, both in ZeroMQ's certificate format (what
``zmq.auth.load_certificate`` and czmq's ``zcert`` read)::

    metadata
        name = "alpha@10.0.0.5"
    curve
        public-key = "..."
        secret-key = "..."

Loading a secret file refuses, with :class:`KeyFileExposed`, a file that
another user owns or that its group or others may read or write (what ssh
does with a private key): a key someone else can read is a key someone else
can use to join the cluster.  A file that is not a key file raises
:class:`KeyFileMalformed`.  Public files may be world-readable.

This module uses pyzmq and the standard library only; nothing here knows
about processes.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
from dataclasses import dataclass

import zmq

from ._errors import OTPError

__all__ = [
    "KeyPair",
    "KeyFileError",
    "KeyFileExposed",
    "KeyFileMalformed",
    "KeyFileExists",
    "generate_keypair",
    "write_key_files",
    "load_keypair",
    "load_public_key",
    "public_path",
    "check_key",
    "main",
]

#: Length of a key in Z85 text.
KEY_LENGTH = 40
_Z85 = re.compile(rb"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")
_FIELD = re.compile(r'^\s*(public-key|secret-key|name)\s*=\s*"([^"]*)"\s*$')
_MAX_FILE = 4096


class KeyFileError(OTPError):
    """A key file cannot be used; ``path`` names it."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(path, why)
        self.path = path
        self.why = why

    def __str__(self) -> str:
        return f"key file {self.path!r}: {self.why}"


class KeyFileExposed(KeyFileError, PermissionError):
    """A secret key file that another user owns, or that its group or others
    may read or write (``chmod 600`` it)."""


class KeyFileMalformed(KeyFileError, ValueError):
    """A file that does not hold the key it should."""


class KeyFileExists(KeyFileError, FileExistsError):
    """``keys new`` would overwrite an existing file."""


@dataclass(frozen=True)
class KeyPair:
    """A node's CURVE key pair, Z85 text.  The secret never shows in a repr."""

    public: bytes
    secret: bytes

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public.decode()!r}, secret=...)"


def check_key(key: str | bytes, what: str = "key") -> bytes:
    """``key`` as Z85 bytes; ValueError if it is not a 40-character Z85 key."""
    raw = key.encode("ascii", "replace") if isinstance(key, str) else key
    if not isinstance(raw, bytes) or not _Z85.match(raw):
        raise ValueError(f"{what} must be a 40-character Z85 CURVE key, not {key!r}")
    return raw


def generate_keypair() -> KeyPair:
    """A fresh key pair (libzmq's ``zmq_curve_keypair``)."""
    public, secret = zmq.curve_keypair()
    return KeyPair(public, secret)


def public_path(path: str | os.PathLike[str]) -> str:
    """Where ``keys new`` puts the public file of secret file ``path``."""
    return os.fspath(path) + ".pub"


def _certificate(pair: KeyPair, name: str | None, secret: bool) -> str:
    lines = [
        "#   ZeroMQ CURVE " + ("**Secret** " if secret else "Public ") + "Certificate",
        "#   Written by python -m otp keys new" + ("; keep it 0600, never share it" if secret else ""),
        "metadata",
    ]
    if name:
        lines.append(f'    name = "{name}"')
    lines += ["curve", f'    public-key = "{pair.public.decode()}"']
    if secret:
        lines.append(f'    secret-key = "{pair.secret.decode()}"')
    return "\n".join(lines) + "\n"


def _write_new(path: str, text: str, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except FileExistsError:
        raise KeyFileExists(path, "exists already (remove it first, or choose another path)") from None
    try:
        os.fchmod(fd, mode)  # whatever the umask said
        os.write(fd, text.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def write_key_files(path: str | os.PathLike[str], name: str | None = None) -> KeyPair:
    """Generate a key pair and write it: the secret file ``path`` (0600) and
    the public file ``path.pub`` (0644).  :class:`KeyFileExists` if either
    exists; nothing is written then."""
    secret_path = os.fspath(path)
    pub_path = public_path(secret_path)
    for p in (secret_path, pub_path):
        if os.path.lexists(p):
            raise KeyFileExists(p, "exists already (remove it first, or choose another path)")
    pair = generate_keypair()
    _write_new(secret_path, _certificate(pair, name, True), 0o600)
    try:
        _write_new(pub_path, _certificate(pair, name, False), 0o644)
    except BaseException:
        os.unlink(secret_path)
        raise
    return pair


def _read(path: str, secret: bool) -> dict[str, str]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise KeyFileError(path, exc.strerror or str(exc)) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileMalformed(path, "not a regular file")
        if secret:
            if st.st_uid != os.getuid():
                raise KeyFileExposed(path, f"owned by uid {st.st_uid}, not by this user ({os.getuid()})")
            if st.st_mode & 0o077:
                raise KeyFileExposed(
                    path, f"mode {stat.S_IMODE(st.st_mode):04o}: its group or others may read it (chmod 600 it)"
                )
        data = os.read(fd, _MAX_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_FILE:
        raise KeyFileMalformed(path, f"longer than {_MAX_FILE} bytes")
    fields: dict[str, str] = {}
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileMalformed(path, "not ASCII text") from None
    for line in text.splitlines():
        m = _FIELD.match(line)
        if m:
            fields[m.group(1)] = m.group(2)
    return fields


def load_keypair(path: str | os.PathLike[str]) -> KeyPair:
    """The key pair in secret file ``path``: :class:`KeyFileExposed` if its
    permissions let anyone else read it, :class:`KeyFileMalformed` if it does
    not hold a pair, or holds a secret key that does not match its public
    key."""
    p = os.fspath(path)
    fields = _read(p, secret=True)
    try:
        public = check_key(fields.get("public-key", ""), "public-key")
        secret = check_key(fields.get("secret-key", ""), "secret-key")
    except ValueError as exc:
        raise KeyFileMalformed(p, str(exc)) from None
    if zmq.curve_public(secret) != public:
        raise KeyFileMalformed(p, "its secret key does not match its public key")
    return KeyPair(public, secret)


def load_public_key(path: str | os.PathLike[str]) -> bytes:
    """The public key in a public (or secret) key file."""
    p = os.fspath(path)
    fields = _read(p, secret=False)
    try:
        return check_key(fields.get("public-key", ""), "public-key")
    except ValueError as exc:
        raise KeyFileMalformed(p, str(exc)) from None


def main(argv: list[str]) -> int:
    """``python -m otp keys ...`` (``argv`` after ``keys``): ``new PATH
    [--name NAME]`` writes a key pair, ``public PATH`` prints the public key
    of a key file, ``check PATH`` checks a secret file.  Returns the exit
    status: 0, 1 for a key file that cannot be used, 2 for bad usage."""
    parser = argparse.ArgumentParser(prog="python -m otp keys", description="CURVE key pairs of otp nodes.")
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="write a new key pair: PATH (secret, 0600) and PATH.pub (public)")
    new.add_argument("path")
    new.add_argument("--name", help="the node's name, written into the files as a note (default: none)")
    pub = sub.add_parser("public", help="print the public key of a key file (secret or public)")
    pub.add_argument("path")
    chk = sub.add_parser("check", help="check that a secret key file is usable (permissions, format)")
    chk.add_argument("path")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        if args.command == "new":
            pair = write_key_files(args.path, args.name)
            print(f"wrote {args.path} (secret, 0600) and {public_path(args.path)}")
            print(pair.public.decode())
        elif args.command == "public":
            print(load_public_key(args.path).decode())
        else:
            pair = load_keypair(args.path)
            print(f"{args.path}: usable; public key {pair.public.decode()}")
    except KeyFileError as exc:
        print(f"python -m otp keys: {exc}", file=sys.stderr)
        return 1
    return 0
