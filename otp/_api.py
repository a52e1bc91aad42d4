"""The process primitives as module functions (``otp.spawn``, ``otp.send``...).

Each acts on the calling thread's process and raises :class:`NotAProcess`
from a thread that is not one.  Destinations may be pids or, where the
registry is running, registered names (see :func:`otp.whereis`).
"""

from __future__ import annotations

import numbers

from . import _naming, _process
from ._errors import NoProc
from ._pid import Pid, Ref, make_ref
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
    "check_max_mailbox",
]


def resolve(dest: object) -> Pid:
    """The pid ``dest`` names (through the node's name service,
    :mod:`otp._naming`); :class:`NoProc` if it names nothing."""
    if isinstance(dest, Pid):
        return dest
    names = _naming.service()
    if names is None:
        if not isinstance(dest, (str, tuple)):
            raise TypeError(f"not a pid or a name: {dest!r}")
        raise NoProc(dest)
    pid = names.resolve(dest)
    if pid is None:
        raise NoProc(dest)
    return pid


def spawn_opt(
    fn,
    args: tuple = (),
    kwargs: dict | None = None,
    *,
    link: bool = False,
    monitor: bool = False,
    max_mailbox: int | None = None,
):
    """Start ``fn(*args, **kwargs)`` in a new OS process.

    Returns its pid, or ``(pid, ref)`` with ``monitor=True``.  With
    ``link=True`` the link exists before ``fn`` runs (spawn_link is atomic).
    The call returns once the new process's mailbox is bound, so messages
    sent right away are delivered without a reconnect delay.

    ``max_mailbox=n`` bounds the process's queue: past ``n`` messages it
    exits with reason ``('max_mailbox', n)``; None (the default) leaves it
    unbounded, as in Erlang.  A bad bound raises before anything is spawned.
    """
    options = spawn_options(link, monitor, max_mailbox)
    return _process.current().spawn(fn, args, kwargs or {}, **options)


def spawn_options(link: bool, monitor: bool, max_mailbox: object) -> dict:
    """Keywords for ``Process.spawn``, ``max_mailbox`` checked; it is passed
    only when set, so that a ``Process.spawn`` without the keyword still
    serves everything else."""
    options: dict = {"link": link, "monitor": monitor}
    if max_mailbox is not None:
        options["max_mailbox"] = check_max_mailbox(max_mailbox)
    return options


def check_max_mailbox(max_mailbox: object) -> int | None:
    """``max_mailbox`` if None or a positive int (any Integral); TypeError
    for a non-int (a bool included), ValueError for an int below 1."""
    if max_mailbox is None:
        return None
    if isinstance(max_mailbox, bool) or not isinstance(max_mailbox, numbers.Integral):
        raise TypeError(f"max_mailbox must be a positive int or None, not {max_mailbox!r}")
    if max_mailbox < 1:
        raise ValueError(f"max_mailbox must be a positive int or None, not {max_mailbox!r}")
    return int(max_mailbox)


def spawn(fn, *args, **kwargs) -> Pid:
    """Start ``fn(*args, **kwargs)`` in a new OS process; return its pid."""
    return _process.current().spawn(fn, args, kwargs)


def spawn_link(fn, *args, **kwargs) -> Pid:
    """Like :func:`spawn`, linked to the caller atomically."""
    return _process.current().spawn(fn, args, kwargs, link=True)


def spawn_monitor(fn, *args, **kwargs) -> tuple[Pid, Ref]:
    """Like :func:`spawn`, monitored by the caller atomically; ``(pid, ref)``."""
    return _process.current().spawn(fn, args, kwargs, monitor=True)


def self_() -> Pid:
    """The pid of the calling process."""
    return _process.current().pid


def send(dest: object, msg: object) -> None:
    """Send ``msg`` to ``dest`` (a pid or a registered name).

    Never blocks and never fails for a dead pid (a no-op, as in Erlang);
    raises :class:`EncodeError` if ``msg`` cannot be serialised and
    :class:`NoProc` for a name nobody has registered.
    """
    _process.send(dest, msg)


send = _process.send  # noqa: F811 - same contract, one call less per message


def receive(timeout: float | None = None, match=None):
    """The first queued message for which ``match(msg)`` is true.

    Without ``match``, the oldest message.  Messages that do not match stay
    queued, in order.  Waits up to ``timeout`` seconds (None or
    ``math.inf``: forever; 0: only what has already arrived) and raises
    :class:`otp.Timeout`; a bad timeout (nan, negative, not a number)
    raises ValueError or TypeError and takes nothing.
    """
    if timeout is not None:
        timeout = check_timeout(timeout)
    return _process.current().receive(timeout, match)


def is_alive(pid: Pid) -> bool:
    """True if the process runs (a process that is exiting counts as dead)."""
    return _process.current().is_alive(resolve(pid))


def _guarded(method: str, *args):
    p = _process.current()
    p.rt += 1
    try:
        return getattr(p, method)(*args)
    finally:
        p.rt -= 1


def link(pid: object) -> None:
    """Link the caller and ``pid`` (LK-1).

    To a process that does not exist: :class:`NoProc` is raised, or, if the
    caller traps exits, ``EXIT(pid, 'noproc')`` is delivered.
    """
    _guarded("link", resolve(pid))


def unlink(pid: object) -> None:
    """Remove the link; no exit signal from it has an effect afterwards."""
    _guarded("unlink", resolve(pid))


def monitor(pid: object) -> Ref:
    """Monitor ``pid``: exactly one ``DOWN(ref, pid, reason)`` when it exits
    (``'noproc'`` at once if it is already dead).  Monitors stack."""
    try:
        target = resolve(pid)
    except NoProc:
        ref = make_ref()
        from ._reasons import DOWN

        _process.current().mailbox.append(DOWN(ref, pid, "noproc"))
        return ref
    return _guarded("monitor", target)


def demonitor(ref: Ref, flush: bool = False) -> bool:
    """Remove a monitor; with ``flush`` also drop its DOWN if already queued."""
    return _guarded("demonitor", ref, flush)


def exit(pid: object, reason: object) -> None:  # noqa: A001 - Erlang's name
    """Send an exit signal (EX-1).  ``'kill'`` cannot be trapped."""
    target = resolve(pid)
    _guarded("exit_signal", target, reason)


def trap_exit(flag: bool) -> bool:
    """Turn exit signals into ``EXIT`` messages; return the previous setting."""
    return _guarded("trap_exit", flag)
