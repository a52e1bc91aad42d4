"""Process identifiers and references.

A :class:`Pid` names one process for its whole life and never another one.
Its identity is ``uid``, a random 64-bit number chosen by the spawner, so two
pids are equal exactly when their ``uid`` is; the other fields say where the
process lives (``node``, and ``creation``, the incarnation of that node: a
fresh number each time a node starts) and how the host's kernel knows it
(``ospid`` and ``start``, the kernel start time that disambiguates a reused
OS pid).  Nothing in a pid assumes that sender and receiver share a host:
routing is by ``node``, and only the local transport looks at ``ospid``.

``creation`` lets a node's gateway refuse a pid of an earlier incarnation of
a node at once (``'noproc'``), without asking the node; its uid could not
name a live process of the new incarnation anyway.  0 means "not recorded"
(a pid rebuilt from the fields a registry table keeps): such a pid is taken
to be of the node's current incarnation, and is still never confused with
another process, since its uid is unique.
"""

from __future__ import annotations

import itertools
import os

__all__ = ["Pid", "Ref", "make_ref", "new_uid", "new_creation"]


def new_uid() -> int:
    """A fresh random 64-bit process uid (never 0)."""
    while True:
        uid = int.from_bytes(os.urandom(8), "little")
        if uid:
            return uid


def new_creation() -> int:
    """A fresh random 32-bit node incarnation (never 0, which means "not
    recorded"; 32 bits, as Erlang's creation since OTP 23)."""
    while True:
        creation = int.from_bytes(os.urandom(4), "little")
        if creation:
            return creation


class Pid:
    """Identifier of one OTP process (an OS process with a mailbox).

    Hashable, picklable and comparable; ``repr`` reads
    ``<Pid 12345@node 1f2e3d4c5b6a7980>``.
    """

    __slots__ = ("node", "uid", "ospid", "start", "creation")

    def __init__(self, node: str, uid: int, ospid: int, start: int, creation: int = 0) -> None:
        self.node = node
        self.uid = uid
        self.ospid = ospid
        self.start = start
        self.creation = creation

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pid) and other.uid == self.uid

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self.uid)

    def __lt__(self, other: Pid) -> bool:
        # Erlang orders pids; a stable order is handy for sorting in tests.
        return (self.node, self.uid) < (other.node, other.uid)

    def __repr__(self) -> str:
        return f"<Pid {self.ospid}@{self.node} {self.uid:016x}>"

    def __reduce__(self):
        return (Pid, (self.node, self.uid, self.ospid, self.start, self.creation))


class Ref:
    """A unique reference (``make_ref()``), used for monitors and calls."""

    __slots__ = ("id",)

    def __init__(self, id: int) -> None:  # noqa: A002 - mirrors Erlang's naming
        self.id = id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"#Ref<{self.id >> 64:016x}.{self.id & 0xFFFFFFFFFFFFFFFF}>"

    def __reduce__(self):
        return (Ref, (self.id,))


_ref_prefix = 0
_ref_counter = itertools.count(1)
_ref_owner_pid = -1


def make_ref() -> Ref:
    """A reference unique across processes, nodes and hosts."""
    global _ref_prefix, _ref_counter, _ref_owner_pid
    ospid = os.getpid()
    if ospid != _ref_owner_pid:  # first use, or first use after a fork
        _ref_prefix = new_uid() << 64
        _ref_counter = itertools.count(1)
        _ref_owner_pid = ospid
    return Ref(_ref_prefix | next(_ref_counter))
