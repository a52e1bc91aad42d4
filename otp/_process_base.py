"""What the parts of a process share: :class:`ProcessBase`, the state and
methods that :class:`otp._process.Process` and its mixins
(:class:`~otp._receive.ReceiveMixin`, :class:`~otp._peers.PeersMixin`,
:class:`~otp._frame_order.FrameOrderMixin`,
:class:`~otp._remote_peers.RemotePeersMixin`, :class:`~otp._links.LinksMixin`,
:class:`~otp._lifecycle.LifecycleMixin`) use across their boundaries, and
:class:`KernelCode`, the counter that protects kernel code from interrupts.
"""

from __future__ import annotations

import abc
import collections
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._pid import Pid, Ref
from ._signal_records import Action, InboxItem
from ._signals import SignalPort
from ._transport import KernelContext, KernelSocket, NodeInfo

if TYPE_CHECKING:
    from ._peers import Peer
    from ._zygote_client import ZygoteClient

__all__ = ["ProcessBase", "KernelCode"]


class KernelCode:
    """``with proc.kernel_code:`` marks kernel code, which a fatal exit
    signal must not interrupt (the interrupt handler raises only while
    ``depth`` is 0; the signal thread ends a process that stays in kernel
    code too long).  Nests."""

    __slots__ = ("depth",)

    def __init__(self) -> None:
        self.depth = 0

    def __enter__(self) -> None:
        self.depth += 1

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1


class ProcessBase(abc.ABC):
    """The state of a process and the methods its parts call on each other
    (each implemented in one of them)."""

    node: NodeInfo
    uid: int
    root: bool
    pid: Pid
    thread_id: int
    ctx: KernelContext
    inbox: KernelSocket  # the mailbox's PULL socket
    _socket_lock: threading.Lock  # held by whoever reads ``inbox`` (see Process.state)
    sig: SignalPort
    kernel_code: KernelCode
    mailbox: collections.deque[object]
    peers: dict[int, Peer]
    recv_seq: dict[int, int]  # sender uid -> frames taken in from it
    held: dict[int, collections.deque[InboxItem]]  # sender uid -> signals held behind its frames
    replies: dict[Ref, object]
    active_calls: dict[Ref, Peer]
    dead_seen: dict[int, bool]
    exit_hooks: list[Callable[[object], None]]
    spawned: list[Pid]
    max_mailbox: int | None
    _zygote: ZygoteClient | None
    info_socket: socket.socket | None  # where answers to process_info questions arrive
    _exited: bool
    _drop_log: dict[int | None, list]
    remote_senders: dict[int, str]  # uid -> node of processes of other nodes that sent us frames

    @abc.abstractmethod
    def send(self, dest: Pid, msg: object) -> None: ...

    @abc.abstractmethod
    def pump(self, timeout: float | None) -> None: ...

    @abc.abstractmethod
    def integrate(self) -> None: ...

    @abc.abstractmethod
    def _apply(self, pid: Pid, action: Action, payload: object) -> None: ...

    @abc.abstractmethod
    def _release_held(self, uid: int, upto: int | None) -> None: ...

    @abc.abstractmethod
    def _accept(self, frame: bytes) -> None: ...

    @abc.abstractmethod
    def _drain_inbox(self) -> None: ...

    @abc.abstractmethod
    def _drop_frame(self, uid: int | None, why: str) -> None: ...

    @abc.abstractmethod
    def flush_dropped(self, now: float | None = None) -> None: ...

    @abc.abstractmethod
    def remember_dead(self, pid: Pid) -> None: ...

    @abc.abstractmethod
    def peer_died(self, pid: Pid, reason: object) -> None: ...

    @abc.abstractmethod
    def peer(self, pid: Pid) -> Peer: ...

    @abc.abstractmethod
    def seq_to(self, uid: int) -> int: ...

    @abc.abstractmethod
    def close_peers_at_exit(self) -> int | None: ...

    @abc.abstractmethod
    def _forced_exit(self, reason: object) -> None: ...

    @abc.abstractmethod
    def gateway_call(self, request: object, timeout: float | None) -> object: ...

    @abc.abstractmethod
    def node_up(self, node: str) -> bool: ...

    @abc.abstractmethod
    def on_idle(self, close: Callable[[float], bool]) -> None: ...

    @abc.abstractmethod
    def sender_may_live(self, uid: int) -> bool: ...
