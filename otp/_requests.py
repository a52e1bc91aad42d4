"""Asynchronous requests: OTP 25's ``gen_server:send_request`` and friends.

``send_request(server, request)`` sends a call without waiting and returns
a :class:`RequestId`; the answer is taken later, by one of:

* :func:`receive_response`: wait for it; on timeout the request is
  abandoned (a later answer is dropped where it arrives, never reaching the
  mailbox: OTP's aliases);
* :func:`wait_response`: the same, but a timeout leaves the request
  active, to be waited for again;
* :func:`check_response`: for a process with its own receive loop (a
  gen_server's ``handle_info``): is this message the answer?

A :class:`RequestIdCollection` holds several requests with a label each;
:func:`receive_any_response` (and :func:`wait_any_response`,
:func:`check_any_response`) take the answers one at a time, in the order
they arrive.

How it works, as in OTP: the request monitors the server and makes the
monitor's reference an alias of the caller; the server's reply to it
arrives as a :class:`~otp._reasons.Response` message, the server's death as
the monitor's ``DOWN``.  Both are ordinary messages (which is what lets
``check_response`` see them), and removing the alias is what makes a late
answer vanish.  A request to a name nobody holds fails as a dead server
would (``NoProc`` when its answer is taken), not when it is sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from . import _api, _process
from ._errors import CalleeExit, CallError, CallTimeout, NoProc, OTPError, Timeout
from ._pid import Ref
from ._process import Process
from ._reasons import DOWN, Response
from ._timeouts import check_timeout

__all__ = [
    "RequestId",
    "RequestIdCollection",
    "NO_REPLY",
    "NoRequests",
    "send_request",
    "receive_response",
    "wait_response",
    "check_response",
    "receive_any_response",
    "wait_any_response",
    "check_any_response",
]

L = TypeVar("L")

#: OTP's request timeout default (5000 ms), as ``otp.call``'s.
DEFAULT_TIMEOUT = 5.0


class _NoReply:
    def __repr__(self) -> str:
        return "NO_REPLY"

    def __reduce__(self) -> str:
        return "NO_REPLY"


#: What :func:`check_response` returns for a message that is not the
#: answer it checks for (OTP's ``no_reply``).  Typed Any so that a caller
#: may compare a reply with it whatever the reply's type.
NO_REPLY: Any = _NoReply()


class NoRequests(OTPError, LookupError):
    """A ``*_any_response`` function was given an empty collection (OTP's
    ``no_request``): nothing could ever answer."""


@dataclass(frozen=True, slots=True)
class RequestId:
    """One request sent by :func:`send_request`: its reference (which alone
    makes it equal to another, or hashes it), and what it addressed
    (``server``, ``request``: the fields of the errors its answer may
    raise)."""

    ref: Ref
    server: object = field(compare=False)
    request: object = field(compare=False, repr=False)


def send_request(server: object, request: Any) -> RequestId:
    """Send ``request`` to ``server`` as :func:`otp.call` would, without
    waiting (gen_server:send_request); the server's ``handle_call`` serves
    it.  Never raises for the server: a dead server, or a name nobody holds,
    shows when the answer is taken."""
    p = _process.current()
    try:
        pid = _api.resolve(server)
    except NoProc:
        ref = _api.monitor(server)  # a name nobody holds: its DOWN is queued at once
        p.aliases.add(ref)
        return RequestId(ref, server, request)
    with p.kernel_code:
        ref = p.monitor(pid)
        p.aliases.add(ref)
        p.send(pid, ("$gen_call", (p.pid, ref), request))
    return RequestId(ref, server, request)


def _is_answer(msg: object, ref: Ref) -> bool:
    return isinstance(msg, (Response, DOWN)) and msg.ref == ref


def _settle(p: Process, req: RequestId, msg: Response | DOWN) -> Any:
    """The answer ``msg`` (a Response or the monitor's DOWN) of ``req``:
    its value, or the error a call would raise.  The request is done."""
    with p.kernel_code:
        p.aliases.discard(req.ref)
        if isinstance(msg, Response):
            p.demonitor(req.ref, flush=True)
            return msg.value
    if msg.reason == "noproc":
        raise NoProc(req.server, req.request)
    raise CalleeExit(msg.reason, req.server, req.request)


def _abandon(p: Process, ref: Ref) -> None:
    """Forget the request ``ref``: its answer, if it ever comes, is dropped
    where it arrives, and its monitor's DOWN never shows.  (Called after a
    receive that looked at the whole mailbox and timed out: no answer of
    ``ref`` is queued, and none can be once the alias is gone.)"""
    with p.kernel_code:
        p.aliases.discard(ref)
        p.demonitor(ref, flush=True)


def _active(p: Process, req: RequestId) -> None:
    if req.ref not in p.aliases:
        raise ValueError(f"{req!r} was answered or abandoned already, or was sent by another process")


def receive_response(req_id: RequestId, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
    """Wait for the answer to ``req_id`` and return it
    (gen_server:receive_response).  Raises what :func:`otp.call` raises:
    :class:`CalleeExit` if the server exited first, :class:`NoProc` if it
    did not exist, :class:`CallTimeout` after ``timeout`` (None or
    ``math.inf``: no limit), which abandons the request: a later answer is
    dropped, never delivered.  A bad timeout raises ValueError or TypeError,
    a request already answered or abandoned ValueError."""
    timeout = check_timeout(timeout)
    p = _process.current()
    _active(p, req_id)
    ref = req_id.ref
    try:
        msg = p.receive(timeout, lambda m: _is_answer(m, ref))
    except Timeout:
        _abandon(p, ref)
        raise CallTimeout(req_id.server, req_id.request) from None
    return _settle(p, req_id, msg)


def wait_response(req_id: RequestId, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
    """Like :func:`receive_response`, but a timeout raises :class:`otp.Timeout`
    and leaves the request active: its answer can still be waited for or
    checked (gen_server:wait_response)."""
    timeout = check_timeout(timeout)
    p = _process.current()
    _active(p, req_id)
    ref = req_id.ref
    msg = p.receive(timeout, lambda m: _is_answer(m, ref))
    return _settle(p, req_id, msg)


def check_response(msg: object, req_id: RequestId) -> Any:
    """If ``msg`` (a message the caller received itself) is the answer to
    ``req_id``, return it, or raise what :func:`receive_response` raises
    for a server that exited; otherwise return :data:`NO_REPLY` and leave
    the request active (gen_server:check_response)."""
    if not isinstance(msg, (Response, DOWN)) or msg.ref != req_id.ref:
        return NO_REPLY
    return _settle(_process.current(), req_id, msg)


# --------------------------------------------------------------- collections


class RequestIdCollection(Generic[L]):
    """Requests, each with a label (gen_server's ``reqids_*``): the
    ``*_any_response`` functions take their answers one at a time, as they
    arrive, and remove each answered request from the collection."""

    __slots__ = ("_members",)

    def __init__(self) -> None:
        self._members: dict[Ref, tuple[RequestId, L]] = {}

    def add(self, req_id: RequestId, label: L) -> None:
        """Add ``req_id`` under ``label`` (reqids_add); a request already
        in the collection raises ValueError."""
        if req_id.ref in self._members:
            raise ValueError(f"{req_id!r} is already in the collection")
        self._members[req_id.ref] = (req_id, label)

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, req_id: object) -> bool:
        return isinstance(req_id, RequestId) and req_id.ref in self._members

    def __iter__(self) -> Iterator[tuple[RequestId, L]]:
        """``(request, label)`` pairs, in the order they were added
        (reqids_to_list)."""
        return iter(list(self._members.values()))

    def __repr__(self) -> str:
        return f"RequestIdCollection({[label for _, label in self._members.values()]!r})"

    def _take(self, ref: Ref) -> tuple[RequestId, L]:
        return self._members.pop(ref)


def _settle_member(
    p: Process, collection: RequestIdCollection[L], msg: Response | DOWN
) -> tuple[Any, L, RequestIdCollection[L]]:
    req, label = collection._take(msg.ref)
    try:
        value = _settle(p, req, msg)
    except CallError as exc:
        exc.label = label  # type: ignore[attr-defined]  # which member failed: documented on receive_any_response
        raise
    return value, label, collection


def _nonempty(collection: RequestIdCollection[Any]) -> None:
    if not len(collection):
        raise NoRequests("the collection holds no request")


def receive_any_response(
    collection: RequestIdCollection[L], timeout: float | None = DEFAULT_TIMEOUT
) -> tuple[Any, L, RequestIdCollection[L]]:
    """Wait for the next answer to any request of ``collection``; return
    ``(reply, label, collection)`` with that request removed
    (gen_server:receive_response/3 with ``Delete`` true).  Answers come in
    the order they arrived.

    A member whose server exited raises :class:`CalleeExit` or
    :class:`NoProc` (with ``label`` set to its label, and removed).  After
    ``timeout`` every member is abandoned (their answers are dropped), the
    collection is emptied and :class:`CallTimeout` is raised.  An empty
    collection raises :class:`NoRequests`."""
    timeout = check_timeout(timeout)
    _nonempty(collection)
    p = _process.current()
    members = collection._members
    try:
        msg = p.receive(timeout, lambda m: isinstance(m, (Response, DOWN)) and m.ref in members)
    except Timeout:
        for ref in list(members):
            _abandon(p, ref)
        members.clear()
        raise CallTimeout(None, "receive_any_response") from None
    return _settle_member(p, collection, msg)


def wait_any_response(
    collection: RequestIdCollection[L], timeout: float | None = DEFAULT_TIMEOUT
) -> tuple[Any, L, RequestIdCollection[L]]:
    """Like :func:`receive_any_response`, but a timeout raises
    :class:`otp.Timeout` and leaves every request active
    (gen_server:wait_response/3)."""
    timeout = check_timeout(timeout)
    _nonempty(collection)
    p = _process.current()
    members = collection._members
    msg = p.receive(timeout, lambda m: isinstance(m, (Response, DOWN)) and m.ref in members)
    return _settle_member(p, collection, msg)


def check_any_response(msg: object, collection: RequestIdCollection[L]) -> Any:
    """If ``msg`` answers a request of ``collection``, what
    :func:`receive_any_response` would return for it (or raise); otherwise
    :data:`NO_REPLY` (gen_server:check_response/3).  An empty collection
    raises :class:`NoRequests`."""
    _nonempty(collection)
    if not isinstance(msg, (Response, DOWN)) or msg.ref not in collection._members:
        return NO_REPLY
    return _settle_member(_process.current(), collection, msg)
