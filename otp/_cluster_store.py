"""The cluster store: what the nodes of a cluster agree on, kept in etcd.

Nodes find each other and hold global names through a store that runs
Raft, so that a name has one holder even while nodes die or the network
splits.  A node registers itself (name, endpoint, public key) under a
lease that it keeps alive; peers discover it by reading a prefix and then
watching it from the revision they read; a global name is taken by a
transaction on the key's absence, bound to the taker's lease, so a node
whose lease expires loses its names with it and must treat them as lost.

:class:`ClusterStore` is that interface, small enough to fake in the tests
of the layers above, with its records and errors;
:class:`otp._etcd_store.EtcdStore` implements it on etcd (3.4 or later).
Nothing here knows about processes or nodes: the store's modules use no
part of the kernel but its error root.

Every blocking call takes ``timeout`` in seconds, with the kernel's
meaning: ``None`` or ``math.inf`` waits forever, a finite value ``>= 0``
that long, anything else raises :class:`ValueError` or :class:`TypeError`
before anything is sent.  Within its timeout a call tries every endpoint
in turn, as often as it can, so a member that dies or an election in
progress costs time, not an error; when the timeout passes without an
answer the call raises :class:`StoreUnavailable`, never hangs.  A request
that may have reached a member is sent again only when sending it twice
leaves the store as sending it once would (reads, puts, deletes, lease
grants, keepalives and revocations, and a ``put_if_absent`` bound to a
lease, whose outcome can be read back: the key then holds our value under
our lease); a ``put_if_absent`` without a lease whose answer was lost
raises :class:`StoreUnavailable` with ``maybe_applied``.  A request that
surely did not reach one (a refused connection, a "no leader" answer) is
always sent on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from ._errors import OTPError

__all__ = [
    "ClusterStore",
    "KeyValue",
    "Snapshot",
    "Lease",
    "PutEvent",
    "DeleteEvent",
    "WatchEnded",
    "WatchEvent",
    "Watch",
    "ClusterStoreError",
    "StoreUnavailable",
    "LeaseExpired",
    "WatchCompacted",
    "StoreRejected",
    "DEFAULT_TIMEOUT",
]

#: The timeout of a call that names none, as for ``otp.call``.
DEFAULT_TIMEOUT = 5.0


# -- errors -----------------------------------------------------------------


class ClusterStoreError(OTPError):
    """Base class of every error of the cluster store."""


class StoreUnavailable(ClusterStoreError):
    """No member of the store answered within the timeout: refused,
    unreachable, without a leader, or silent.

    ``maybe_applied`` is true when a write that cannot be sent twice was
    sent and its answer never came: the store may or may not hold it.
    ``attempts`` lists ``(endpoint, why)`` for the tries made.
    """

    def __init__(self, why: str, *, maybe_applied: bool = False, attempts: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(why)
        self.why = why
        self.maybe_applied = maybe_applied
        self.attempts = tuple(attempts)

    def __str__(self) -> str:
        text = self.why
        if self.attempts:
            endpoint, last = self.attempts[-1]
            text += f" ({len(self.attempts)} attempts; last: {endpoint}: {last})"
        if self.maybe_applied:
            text += "; the write may have been applied"
        return text


class LeaseExpired(ClusterStoreError, LookupError):
    """The lease is unknown to the store: it expired (not kept alive within
    its TTL) or was revoked, and every key bound to it is gone."""

    def __init__(self, lease: int) -> None:
        super().__init__(lease)
        self.lease = lease

    def __str__(self) -> str:
        return f"lease {self.lease:#x} has expired or was revoked"


class WatchCompacted(ClusterStoreError):
    """A watch asked for events from a revision that the store has
    compacted away; ``compact_revision`` is the oldest it still has.
    Read the prefix again and watch from the revision of that read."""

    def __init__(self, revision: int, compact_revision: int) -> None:
        super().__init__(revision, compact_revision)
        self.revision = revision
        self.compact_revision = compact_revision

    def __str__(self) -> str:
        return f"revision {self.revision} is compacted (oldest kept: {self.compact_revision})"


class StoreRejected(ClusterStoreError):
    """The store answered and refused the request (a malformed or too
    large request, or one this client does not understand the answer to);
    sending it again would not help.  ``code`` is the gRPC status code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"store refused the request (gRPC code {self.code}): {self.message}"


# -- values -----------------------------------------------------------------


@dataclass(frozen=True)
class KeyValue:
    """One key as the store holds it.  ``lease`` is the id of the lease the
    key is bound to, or None; revisions are the store's, which grow with
    every write to any key."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int | None


@dataclass(frozen=True)
class Snapshot:
    """The keys under a prefix, sorted, as of ``revision``: watch from
    ``revision + 1`` to miss nothing that happens after the read."""

    items: tuple[KeyValue, ...]
    revision: int


@dataclass(frozen=True)
class Lease:
    """A lease granted by the store.  ``ttl`` is in seconds and may be more
    than asked for: etcd raises it to its minimum (1.5 election timeouts)."""

    id: int
    ttl: int


@dataclass(frozen=True)
class PutEvent:
    """A key under the watched prefix was created or changed."""

    key: str
    value: bytes
    revision: int
    create_revision: int
    version: int
    lease: int | None


@dataclass(frozen=True)
class DeleteEvent:
    """A key under the watched prefix was deleted, or its lease expired."""

    key: str
    revision: int


@dataclass(frozen=True)
class WatchEnded:
    """The last event of a watch that stopped on its own: ``error`` says
    why (:class:`StoreUnavailable` when no member could resume it within
    its timeout, :class:`WatchCompacted`, :class:`StoreRejected`).  A watch
    that is cancelled delivers nothing more, not even this."""

    error: ClusterStoreError


WatchEvent: TypeAlias = PutEvent | DeleteEvent | WatchEnded


# -- the interface ----------------------------------------------------------


class Watch(Protocol):
    """A running watch; see :meth:`ClusterStore.watch_prefix`."""

    @property
    def revision(self) -> int:
        """The store's revision when the watch started: it delivers every
        change made after it (or from its ``start_revision``)."""
        ...

    def cancel(self, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Stop the watch.  When this returns the callback is not running
        and will not be called again (unless called from the callback
        itself, which stops it as soon as the callback returns)."""
        ...


class ClusterStore(Protocol):
    """What a cluster needs of its store.  Keys are str, values bytes;
    ``lease`` arguments take a :class:`Lease` or its id."""

    def get(self, key: str, *, timeout: float | None = DEFAULT_TIMEOUT) -> KeyValue | None:
        """The key, or None if the store does not hold it."""
        ...

    def get_prefix(self, prefix: str, *, timeout: float | None = DEFAULT_TIMEOUT) -> Snapshot:
        """Every key that starts with ``prefix``, sorted by key."""
        ...

    def put(
        self, key: str, value: bytes, *, lease: Lease | int | None = None, timeout: float | None = DEFAULT_TIMEOUT
    ) -> int:
        """Set the key (bound to ``lease`` if given); returns the store's
        revision of the write.  Raises :class:`LeaseExpired` if the lease
        is gone."""
        ...

    def put_if_absent(
        self, key: str, value: bytes, *, lease: Lease | int | None = None, timeout: float | None = DEFAULT_TIMEOUT
    ) -> bool:
        """Set the key only if the store does not hold it, atomically;
        True if this call set it.  Of any number of concurrent callers,
        on any nodes, exactly one gets True."""
        ...

    def delete(self, key: str, *, lease: Lease | int | None = None, timeout: float | None = DEFAULT_TIMEOUT) -> bool:
        """Delete the key; with ``lease``, only if it is bound to that
        lease (a name is released only by its holder).  True if this call
        deleted it."""
        ...

    def grant_lease(self, ttl: int, *, timeout: float | None = DEFAULT_TIMEOUT) -> Lease:
        """A new lease that expires ``ttl`` seconds after its last keepalive."""
        ...

    def keepalive(self, lease: Lease | int, *, timeout: float | None = DEFAULT_TIMEOUT) -> int:
        """Renew the lease for its full TTL; returns the TTL.  Raises
        :class:`LeaseExpired` if the lease is gone."""
        ...

    def revoke_lease(self, lease: Lease | int, *, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """End the lease now, deleting every key bound to it.  A lease
        that is already gone is not an error."""
        ...

    def watch_prefix(
        self,
        prefix: str,
        deliver: Callable[[WatchEvent], object],
        *,
        start_revision: int | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Watch:
        """Call ``deliver(event)`` for every change under ``prefix``, in
        the store's order, from a thread of the watch (pass a
        ``queue.Queue``'s ``put`` to receive them elsewhere)."""
        ...

    def close(self) -> None:
        """Cancel every watch and close every connection."""
        ...
