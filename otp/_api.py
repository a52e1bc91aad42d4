"""The process primitives as module functions (``otp.spawn``, ``otp.send``...).

Each acts on the calling thread's process and raises :class:`NotAProcess`
from a thread that is not one.  Destinations may be pids or, where the
registry is running, registered names (see :func:`otp.whereis`), and
names of other nodes (:class:`otp.RemoteName`): ``send`` hands a message
for one to the gateways, which resolve it on that node (see
:mod:`otp._dist_wire`); the others ask that node which process holds the
name (one round trip, :func:`resolve`) and then act on the pid, as they
do for a local name.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal, TypedDict, overload

from . import _naming, _process
from ._errors import CallTimeout, NoConnection, NoProc
from ._lifecycle import checked_max_mailbox
from ._naming import RemoteName
from ._pid import Pid, Ref, make_ref
from ._reasons import DOWN
from ._timeouts import check_timeout

__all__ = [
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "spawn_opt",
    "self_",
    "send",
    "receive",
    "is_alive",
    "link",
    "unlink",
    "monitor",
    "demonitor",
    "exit",
    "trap_exit",
    "make_ref",
    "resolve",
    "RESOLVE_TIMEOUT",
    "check_max_mailbox",
]

#: Seconds a lookup of a name on another node waits by default: the
#: connection set-up (7 s at most: a node that cannot be reached answers
#: ``'noconnection'`` by then) and a margin.
RESOLVE_TIMEOUT = 10.0


def resolve(dest: Pid | object, timeout: float | None = RESOLVE_TIMEOUT) -> Pid:
    """The pid ``dest`` names: ``dest`` itself if it is a pid, the process
    holding a name of this node (see :func:`otp._naming.resolve`), or the
    process holding a :class:`RemoteName` on its node, as that node says
    (Erlang's ``{Name, Node}``).  Raises :class:`NoProc` for a name nobody
    holds; for a RemoteName :class:`otp.NoConnection` if its node cannot
    be reached (this node included, if it does not listen) and
    :class:`otp.CallTimeout` if it does not answer within ``timeout``."""
    if type(dest) is Pid:
        return dest
    if type(dest) is not RemoteName:
        return _naming.resolve(dest)
    proc = _process.current()
    if proc.node.is_local(dest.node):
        return _naming.resolve(dest.name)
    if not proc.node.gateway:
        raise NoConnection(dest, "whereis")
    try:
        answer = proc.gateway_call(("whereis", dest.node, dest.name), timeout)
    except NoProc:  # no gateway running: the node is stopping
        raise NoConnection(dest, "whereis") from None
    except CallTimeout:
        raise CallTimeout(dest, "whereis") from None
    if type(answer) is not tuple or len(answer) != 2 or answer[0] != "ok":
        raise NoConnection(dest, "whereis")
    if answer[1] is None:
        raise NoProc(dest)
    pid: Pid = answer[1]
    return pid


def resolve_within(dest: Pid | object, timeout: float | None) -> tuple[Pid, float | None]:
    """:func:`resolve` ``dest`` within ``timeout`` seconds; the pid and what
    is left of the timeout (for a call to a RemoteName: its lookup and the
    call share the caller's timeout)."""
    if type(dest) is not RemoteName or timeout is None:
        return resolve(dest, timeout if timeout is not None else RESOLVE_TIMEOUT), timeout
    start = time.monotonic()
    pid = resolve(dest, timeout)
    return pid, max(0.0, timeout - (time.monotonic() - start))


class SpawnOptions(TypedDict, total=False):
    """Keywords of ``Process.spawn``."""

    link: bool
    monitor: bool
    max_mailbox: int
    node: str


@overload
def spawn_opt(
    fn: Callable[..., object],
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    link: bool = False,
    monitor: Literal[False] = False,
    max_mailbox: int | None = None,
    node: str | None = None,
) -> Pid: ...


@overload
def spawn_opt(
    fn: Callable[..., object],
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    link: bool = False,
    monitor: Literal[True],
    max_mailbox: int | None = None,
    node: str | None = None,
) -> tuple[Pid, Ref]: ...


def spawn_opt(
    fn: Callable[..., object],
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    link: bool = False,
    monitor: bool = False,
    max_mailbox: int | None = None,
    node: str | None = None,
) -> Pid | tuple[Pid, Ref]:
    """Start ``fn(*args, **kwargs)`` in a new OS process.

    Returns its pid, or ``(pid, ref)`` with ``monitor=True``.  With
    ``link=True`` the link exists before ``fn`` runs (spawn_link is atomic).
    The call returns once the new process's mailbox is bound, so messages
    sent right away are delivered without a reconnect delay.

    ``max_mailbox=n`` bounds the process's queue: past ``n`` messages it
    exits with reason ``('max_mailbox', n)``; None (the default) leaves it
    unbounded, as in Erlang.  A bad bound raises before anything is spawned.

    ``node=name`` starts it on another node of the cluster (Erlang's
    ``spawn_opt(Node, ...)``): the call returns once it exists there, with
    the link or monitor in place before it runs.  If that node cannot be
    reached the pid returned is of that node and dead at once: the link
    brings an exit signal ``'noconnection'``, the monitor a DOWN with it.
    """
    options = spawn_options(link, monitor, max_mailbox, node)
    return _process.current().spawn(fn, args, kwargs or {}, **options)


def spawn_options(link: bool, monitor: bool, max_mailbox: object, node: object = None) -> SpawnOptions:
    """Keywords for ``Process.spawn``, ``max_mailbox`` and ``node`` checked;
    each is passed only when set, so that a ``Process.spawn`` without the
    keyword still serves everything else."""
    options: SpawnOptions = {"link": link, "monitor": monitor}
    if max_mailbox is not None:
        options["max_mailbox"] = checked_max_mailbox(max_mailbox)
    if node is not None:
        if not isinstance(node, str) or not node:
            raise TypeError(f"node must be a node name, not {node!r}")
        options["node"] = node
    return options


def check_max_mailbox(max_mailbox: object) -> int | None:
    """``max_mailbox`` if None or a positive int (any Integral); TypeError
    for a non-int (a bool included), ValueError for an int below 1."""
    return None if max_mailbox is None else checked_max_mailbox(max_mailbox)


def spawn(fn: Callable[..., object], *args: Any, **kwargs: Any) -> Pid:
    """Start ``fn(*args, **kwargs)`` in a new OS process; return its pid.

    The function and its arguments are serialised (by value when plain
    pickle cannot: lambdas, closures, ``__main__``); a process that raises
    exits with an :class:`otp.Crash` reason, one that returns with
    ``'normal'``.  See :func:`spawn_opt` for links, monitors and bounds."""
    return _process.current().spawn(fn, args, kwargs)


def spawn_link(fn: Callable[..., object], *args: Any, **kwargs: Any) -> Pid:
    """Like :func:`spawn`, linked to the caller atomically: the link exists
    before ``fn`` runs."""
    return _process.current().spawn(fn, args, kwargs, link=True)


def spawn_monitor(fn: Callable[..., object], *args: Any, **kwargs: Any) -> tuple[Pid, Ref]:
    """Like :func:`spawn`, monitored by the caller atomically; returns
    ``(pid, ref)``, and ``DOWN(ref, pid, reason)`` arrives when it exits."""
    return _process.current().spawn(fn, args, kwargs, monitor=True)


def self_() -> Pid:
    """The pid of the calling process."""
    return _process.current().pid


#: ``otp.send(dest, msg)``: the function of :mod:`otp._process`, whose
#: docstring is the contract; re-exported as is, since every message goes
#: through it.
send = _process.send


def receive(timeout: float | None = None, match: Callable[[Any], bool] | None = None) -> Any:
    """The first queued message for which ``match(msg)`` is true.

    Without ``match``, the oldest message.  Messages that do not match stay
    queued, in order.  Waits up to ``timeout`` seconds (None or
    ``math.inf``: forever; 0: only what has already arrived) and raises
    :class:`otp.Timeout`; a bad timeout (nan, negative, not a number)
    raises ValueError or TypeError and takes nothing.  A fatal exit signal
    arriving meanwhile ends the process (:class:`otp.ProcessExit`).
    """
    if timeout is not None:
        timeout = check_timeout(timeout)
    return _process.current().receive(timeout, match)


def is_alive(pid: Pid | object) -> bool:
    """True if the process runs (a process that is exiting counts as dead);
    :class:`otp.NoProc` for a name nobody holds."""
    return _process.current().is_alive(resolve(pid))


def link(pid: Pid | object) -> None:
    """Link the caller and ``pid``: when either exits, the other gets an
    exit signal with its reason (which kills it unless the reason is
    ``'normal'`` or it traps exits).  Linking twice is one link.

    To a process that does not exist: :class:`otp.NoProc` is raised, or, if
    the caller traps exits, ``EXIT(pid, 'noproc')`` is delivered.
    """
    p = _process.current()
    target = resolve(pid)
    with p.kernel_code:
        p.link(target)


def unlink(pid: Pid | object) -> None:
    """Remove the link; no exit signal from it has an effect afterwards."""
    p = _process.current()
    target = resolve(pid)
    with p.kernel_code:
        p.unlink(target)


def monitor(pid: Pid | object) -> Ref:
    """Monitor ``pid``: exactly one ``DOWN(ref, pid, reason)`` when it exits
    (``'noproc'`` at once if it is already dead, or if ``pid`` is a name
    nobody holds).  Monitors stack; returns the monitor's ``ref``.

    A :class:`otp.RemoteName` is looked up on its node first (Erlang's
    monitor of ``{Name, Node}``): ``'noproc'`` at once if nobody holds it
    there, ``'noconnection'`` if that node cannot be reached."""
    p = _process.current()
    try:
        target = resolve(pid)
    except (NoProc, NoConnection, CallTimeout) as exc:
        ref = make_ref()
        # The name stands where the pid would, as in Erlang's DOWN for a
        # monitor by name.
        reason = "noproc" if isinstance(exc, NoProc) else "noconnection"
        p.mailbox.append(DOWN(ref, pid, reason))  # type: ignore[arg-type]
        return ref
    with p.kernel_code:
        return p.monitor(target)


def demonitor(ref: Ref, flush: bool = False, info: bool = False) -> bool:
    """Remove the monitor ``ref``: no ``DOWN`` of it arrives afterwards; with
    ``flush``, one already queued is dropped too.  Returns True, unless
    ``info`` (erlang:demonitor/2's option): then True if the monitor was
    found and removed (no ``DOWN`` of it was or will be delivered), False if
    not (its ``DOWN`` is already queued, or it never existed); with ``flush``
    too, False if a ``DOWN`` had to be dropped, True otherwise."""
    p = _process.current()
    with p.kernel_code:
        return p.demonitor(ref, flush, info)


def exit(pid: Pid | object, reason: object) -> None:  # noqa: A001 - Erlang's name
    """Send ``pid`` an exit signal with ``reason``.  It exits with that
    reason unless it traps exits (then it receives ``EXIT(self, reason)``)
    or the reason is ``'normal'`` (then nothing happens); ``'kill'`` cannot
    be trapped and kills it with reason ``'killed'``.  To oneself, the
    caller exits (or, trapping, receives the ``EXIT``).  An unpicklable
    reason raises :class:`otp.CallError` with ``('badarg', reason)``."""
    p = _process.current()
    target = resolve(pid)
    with p.kernel_code:
        p.exit_signal(target, reason)


def trap_exit(flag: bool) -> bool:
    """Turn exit signals into ``EXIT`` messages (``flag`` true) or back into
    deaths; return the previous setting."""
    p = _process.current()
    with p.kernel_code:
        return p.trap_exit(flag)
