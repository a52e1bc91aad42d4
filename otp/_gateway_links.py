"""What a gateway knows of the links and monitors that cross it, and the
exit signals it makes up from them.

Erlang's distribution controller knows every link and monitor between a
local process and a remote one, so that when the connection goes it can
tell each local end ``noconnection``; the remote end's node does the same
for its side.  Here each gateway sees every such signal pass (a signal to
another node goes through it), so it keeps, per local process with any
relation across it (a :class:`LocalEnd`):

* ``links``: the remote processes it is linked to;
* ``watched_by``: the monitors remote processes hold on it;
* ``watching``: the monitors it holds on remote processes (its call
  watches too);
* ``sent_seq`` / ``recv_seq``: the number of the last frame the gateway
  passed on from it to each remote process, and from each remote process to
  it, read off the frames' routes (:mod:`otp._dist_wire`).

and a pidfd on the local process.  From these it makes up what no one else
can send:

* :meth:`Relations.local_gone`: the local process died; if it died without a
  word (SIGKILL), its links and the monitors on it still stand, and the
  remote ends get ``'killed'``, as a local watcher's pidfd would tell them;
  the monitors it held are dropped at the other end (``Demonitor``);
* :meth:`Relations.node_down`: the connection to a node is lost; every
  local end of a link or monitor to a process of that node gets
  ``'noconnection'``.

Each made-up notice is the ``Dead`` signal the remote process would have
sent, numbered with the last frame passed on between the two (and marked
flushed): the receiver holds it until it has taken in those frames, which
are already on their way, so it comes after them, as a process's own exit
signal comes after its last message.  A notice that does not match a table
entry at the receiver (the link was removed meanwhile) is ignored there, so
a notice too many does no harm.

No sockets here beside the pidfds; the gateway sends what these methods
return.
"""

from __future__ import annotations

import os
import select
from collections.abc import Iterator

from ._oslib import fd_readable, open_verified_pidfd
from ._pid import Pid, Ref
from ._signal_records import Dead, Demonitor, Link, Monitor, Signal, Unlink

__all__ = ["LocalEnd", "Relations"]


class LocalEnd:
    """The relations of one local process across the gateway."""

    __slots__ = ("pid", "links", "watched_by", "watching", "sent_seq", "recv_seq", "fd")

    def __init__(self, pid: Pid, fd: int | None) -> None:
        self.pid = pid
        self.links: dict[int, Pid] = {}
        self.watched_by: dict[Ref, Pid] = {}
        self.watching: dict[Ref, Pid] = {}
        self.sent_seq: dict[int, int] = {}
        self.recv_seq: dict[int, int] = {}
        self.fd = fd

    def empty(self) -> bool:
        return not (self.links or self.watched_by or self.watching)

    def remotes(self) -> Iterator[Pid]:
        yield from self.links.values()
        yield from self.watched_by.values()
        yield from self.watching.values()


class Relations:
    """Every :class:`LocalEnd` of a gateway, by local uid and by remote node."""

    def __init__(self) -> None:
        self.ends: dict[int, LocalEnd] = {}
        # Remote node -> local uids with a relation to a process of it.
        self.by_node: dict[str, set[int]] = {}
        self.epoll = select.epoll()
        self._fd_uid: dict[int, int] = {}
        # Local processes found gone when their end was made: settled once
        # the signals they sent before are read (see Gateway._settle_gone).
        self.gone: list[int] = []

    # ------------------------------------------------------------ ends

    def _end(self, pid: Pid) -> LocalEnd:
        end = self.ends.get(pid.uid)
        if end is None:
            fd = open_verified_pidfd(pid.ospid, pid.start) if pid.ospid else None
            if fd is not None and fd_readable(fd):
                os.close(fd)
                fd = None
            end = self.ends[pid.uid] = LocalEnd(pid, fd)
            if fd is None:
                self.gone.append(pid.uid)
            else:
                self._fd_uid[fd] = pid.uid
                self.epoll.register(fd, select.EPOLLIN)
        elif end.pid.ospid == 0 and pid.ospid:
            end.pid = pid
        return end

    def _index(self, end: LocalEnd, remote: Pid) -> None:
        self.by_node.setdefault(remote.node, set()).add(end.pid.uid)

    def _drop_if_empty(self, end: LocalEnd) -> None:
        if end.empty():
            self._close(end)

    def _close(self, end: LocalEnd) -> None:
        uid = end.pid.uid
        self.ends.pop(uid, None)
        if end.fd is not None:
            self._fd_uid.pop(end.fd, None)
            try:
                self.epoll.unregister(end.fd)
            except (OSError, ValueError):
                pass
            os.close(end.fd)
            end.fd = None
        for node in {p.node for p in end.remotes()}:
            uids = self.by_node.get(node)
            if uids is not None:
                uids.discard(uid)
                if not uids:
                    del self.by_node[node]

    def dead_uids(self) -> list[int]:
        """Local processes whose pidfd says they exited (without waiting)."""
        return [self._fd_uid[fd] for fd, _ in self.epoll.poll(0) if fd in self._fd_uid]

    # ----------------------------------------------------------- signals

    def outbound(self, sig: Signal, target: Pid) -> None:
        """Local ``sig.sender`` sent ``sig`` to remote ``target``."""
        self._record(sig, sig.sender, target, outbound=True)

    def inbound(self, sig: Signal, target: Pid) -> None:
        """Remote ``sig.sender`` sent ``sig`` to local ``target``, which got it."""
        self._record(sig, target, sig.sender, outbound=False)

    def _record(self, sig: Signal, local: Pid, remote: Pid, outbound: bool) -> None:
        """Enter ``sig`` between ``local`` and ``remote`` in ``local``'s end:
        a monitor the local process set goes in ``watching``, one set on it
        in ``watched_by``; a ``Dead`` notice's refs are the monitors on its
        sender, so they leave the other table."""
        if isinstance(sig, Link):
            end = self._end(local)
            end.links[remote.uid] = remote
            self._index(end, remote)
            return
        if isinstance(sig, Monitor):
            end = self._end(local)
            (end.watching if outbound else end.watched_by)[sig.ref] = remote
            self._index(end, remote)
            return
        end_or_none = self.ends.get(local.uid)
        if end_or_none is None:
            return
        if isinstance(sig, Unlink):
            end_or_none.links.pop(remote.uid, None)
        elif isinstance(sig, Demonitor):
            (end_or_none.watching if outbound else end_or_none.watched_by).pop(sig.ref, None)
        elif isinstance(sig, Dead):
            if sig.linked:
                end_or_none.links.pop(remote.uid, None)
            monitors_on_sender = end_or_none.watched_by if outbound else end_or_none.watching
            for ref in sig.refs:
                monitors_on_sender.pop(ref, None)
        else:
            return
        self._drop_if_empty(end_or_none)

    def spawned(self, parent: Pid, child: Pid, link: bool, ref: Ref | None, parent_is_local: bool) -> None:
        """A spawn across the gateway: ``child`` linked to ``parent`` and/or
        monitored by it under ``ref``.  ``parent_is_local``: this gateway
        asked for it (the parent is ours), else it spawned the child."""
        local, remote = (parent, child) if parent_is_local else (child, parent)
        if not link and ref is None:
            return
        end = self._end(local)
        if link:
            end.links[remote.uid] = remote
        if ref is not None:
            if parent_is_local:
                end.watching[ref] = remote
            else:
                end.watched_by[ref] = remote
        self._index(end, remote)

    # ------------------------------------------------------------ frames

    def frame_out(self, sender_uid: int, target_uid: int, seq: int) -> None:
        end = self.ends.get(sender_uid)
        if end is not None:
            end.sent_seq[target_uid] = seq

    def frame_in(self, sender_uid: int, target_uid: int, seq: int) -> None:
        end = self.ends.get(target_uid)
        if end is not None:
            end.recv_seq[sender_uid] = seq

    # ---------------------------------------------------------- made up

    def local_gone(self, uid: int) -> list[tuple[Pid, Signal]]:
        """Local process ``uid`` exited; what its remote relations must be
        told, as ``(remote process, signal)``: ``'killed'`` for the links and
        monitors on it still standing (its own notices, read before, removed
        the others), ``Demonitor`` for the monitors it held."""
        end = self.ends.get(uid)
        if end is None:
            return []
        me = end.pid
        out: list[tuple[Pid, Signal]] = []
        by_watcher: dict[int, tuple[Pid, list[Ref]]] = {}
        for ref, watcher in end.watched_by.items():
            by_watcher.setdefault(watcher.uid, (watcher, []))[1].append(ref)
        for ruid, remote in end.links.items():
            refs = by_watcher.pop(ruid, (remote, []))[1]
            out.append((remote, Dead(me, end.sent_seq.get(ruid, 0), "killed", True, refs, True)))
        for ruid, (watcher, refs) in by_watcher.items():
            out.append((watcher, Dead(me, end.sent_seq.get(ruid, 0), "killed", False, refs, True)))
        for ref, target in end.watching.items():
            out.append((target, Demonitor(me, 0, ref)))
        self._close(end)
        return out

    def node_down(self, node: str) -> list[tuple[Pid, Signal]]:
        """The connection to ``node`` is lost; what each local end must be
        told, as ``(local process, signal)``: ``'noconnection'`` for its
        links and monitors to processes of ``node``, ``Demonitor`` for the
        monitors processes of ``node`` held on it."""
        out: list[tuple[Pid, Signal]] = []
        for uid in self.by_node.pop(node, ()):
            end = self.ends.get(uid)
            if end is None:
                continue
            local = end.pid
            by_target: dict[int, tuple[Pid, bool, list[Ref]]] = {}
            for ruid, remote in list(end.links.items()):
                if remote.node == node:
                    del end.links[ruid]
                    by_target[ruid] = (remote, True, [])
            for ref, remote in list(end.watching.items()):
                if remote.node == node:
                    del end.watching[ref]
                    by_target.setdefault(remote.uid, (remote, False, []))[2].append(ref)
            for ruid, (remote, linked, refs) in by_target.items():
                seq = end.recv_seq.pop(ruid, 0)
                out.append((local, Dead(remote, seq, "noconnection", linked, refs, True)))
            for ref, remote in list(end.watched_by.items()):
                if remote.node == node:
                    del end.watched_by[ref]
                    out.append((local, Demonitor(remote, 0, ref)))
            for ruid in [r for r in end.sent_seq if r in by_target]:
                del end.sent_seq[ruid]
            if end.empty():
                self._close(end)
        return out

    def close(self) -> None:
        for end in list(self.ends.values()):
            self._close(end)
        self.epoll.close()
