"""One request/reply convention for servers that answer named operations.

Most servers are a table of operations: ``register(name, value)``,
``get(name)``, each answering a value or a typed error.  Written by hand,
every server grows its own ``if op == ...`` chain, its own ``('ok', v)`` /
``('error', e)`` tuples and its own client helper unwrapping them.  This
module is the one way to write them::

    class Counters(otp.Service):
        def init(self, args):
            self.counts = {}

        @otp.operation
        def add(self, key: str, n: int = 1) -> int:
            if n < 0:
                raise ValueError(f"n must be >= 0, not {n}")
            self.counts[key] = self.counts.get(key, 0) + n
            return self.counts[key]

    pid = Counters.start_link(None)
    otp.ask(pid, "add", "x", 2)             # 2
    otp.ask(pid, "add", "x", -1)            # raises ValueError, in the caller
    otp.tell(pid, "add", "x")               # a cast: no answer

The server.  :class:`Service` is a :class:`otp.GenServer` whose calls and
casts carrying a :class:`Request` run the method of that name, which must
be marked :func:`operation` (no other method can be reached from another
process: ``terminate`` is not an operation).  Its state is the instance's
attributes: ``init`` sets them up and what it returns is ignored, unless it
is one of ``init``'s actions (``Ignore``, ``Stop``).  Messages that are not
requests go to ``handle_info``, and calls or casts that are not requests
to ``handle_other_call`` / ``handle_other_cast`` (default: the server
crashes, as a gen_server without the clause would).

Replies.  The caller gets ``Ok(value)`` or ``Failed(error)``; :func:`ask`
returns the value or raises the error with its own type and attributes
(``except VersionConflict as e: e.current`` works across processes, also
for exceptions whose ``__init__`` takes other arguments than ``args``: the
error travels as its class, ``args`` and ``__dict__``, not by its pickle
support).  Which exceptions are answers is the service's declaration,
:attr:`Service.errors` (by default ``OTPError``, ``ValueError``,
``TypeError`` and ``LookupError``: what Python code raises for input it
refuses).  Anything else is a bug in the server and crashes it, so its
supervisor restarts it and its callers see ``CalleeExit`` (OTP's let it
crash: answering would hide the bug from everyone).  An operation the
service does not have, or arguments that do not fit its signature, are the
caller's mistake: ``UnknownOperation`` or ``BadArguments`` in the caller, and
the server carries on.

Deferred replies.  An operation that cannot answer yet returns
:data:`DEFER`; it keeps ``self.caller`` (the ``from_`` of the request) and
answers later with :meth:`Service.answer` or :meth:`Service.answer_error`.

After each request the server's next gen_server action (a timeout, for
periodic work) is :meth:`Service.next_action`; the default is none.

:mod:`otp.sys` sees a Service's instance as its state:
``otp.sys.get_state(pid)`` returns a copy of it, and
``otp.sys.replace_state(pid, fn)`` runs ``fn(instance)`` in the server.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple, TypeVar

from . import _gen_server
from ._errors import BadArguments, OTPError, UnknownOperation
from ._gen_server import DEFAULT_CALL_TIMEOUT, GenServer, NoReply, Reply, ServerRef

log = logging.getLogger("otp")

__all__ = ["Service", "operation", "ask", "tell", "Request", "Ok", "Failed", "DEFER"]

F = TypeVar("F", bound=Callable[..., Any])

_OPERATION = "__otp_operation__"


def operation(fn: F) -> F:
    """Mark a method of a :class:`Service` as an operation other processes
    may run by name (:func:`ask`, :func:`tell`)."""
    setattr(fn, _OPERATION, True)
    return fn


class Request(NamedTuple):
    """What :func:`ask` and :func:`tell` send: run ``op(*args, **kwargs)``."""

    op: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class Ok(NamedTuple):
    """The reply of an operation that returned ``value``."""

    value: Any


class Failed:
    """The reply of an operation that raised ``error`` (one of the service's
    declared errors).  Pickles the error as its class, ``args`` and
    ``__dict__``, so that exceptions with their own ``__init__`` survive the
    trip; :meth:`raise_` raises it in the caller."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __reduce__(self) -> tuple:
        e = self.error
        return (_failed, (type(e), e.args, dict(getattr(e, "__dict__", {}))))

    def __repr__(self) -> str:
        return f"Failed({self.error!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is Failed and type(other.error) is type(self.error) and other.error.args == self.error.args

    __hash__ = None  # type: ignore[assignment]


def _failed(cls: type[BaseException], args: tuple, attrs: dict) -> Failed:
    error = cls.__new__(cls)
    error.args = args
    if attrs:
        error.__dict__.update(attrs)
    return Failed(error)


class _Defer:
    def __repr__(self) -> str:
        return "DEFER"

    def __reduce__(self) -> str:
        return "DEFER"


#: What an operation returns when it answers later (see :meth:`Service.answer`).
#: Typed Any so that an operation declared ``-> int`` may return it.
DEFER: Any = _Defer()


class _Operation(NamedTuple):
    """An operation and what checking its arguments needs.  Binding the
    signature (``inspect.Signature.bind``) costs about as much as the rest of
    serving a small request, so a request with positional arguments only,
    as many as the operation takes without keywords, skips it: it cannot
    fail to bind.  Anything else is bound, for the precise error."""

    fn: Callable[..., Any]
    signature: inspect.Signature
    min_args: int
    max_args: int | float

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> _Operation:
        signature = inspect.signature(fn)
        params = list(signature.parameters.values())[1:]  # after self
        kinds = inspect.Parameter
        positional = [p for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
        required = [p for p in positional if p.default is kinds.empty]
        if any(p.kind is kinds.KEYWORD_ONLY and p.default is kinds.empty for p in params):
            return cls(fn, signature, 1, 0)  # a required keyword: always bind
        most: int | float = float("inf") if any(p.kind is kinds.VAR_POSITIONAL for p in params) else len(positional)
        return cls(fn, signature, len(required), most)


class Service(GenServer):
    """A gen_server answering :class:`Request` s by running the
    :func:`operation` of that name; see the module documentation."""

    #: Exceptions an operation raises *as its answer*; anything else crashes
    #: the server (a bug).  Narrow it, or add the service's own error root.
    errors: ClassVar[tuple[type[BaseException], ...]] = (OTPError, ValueError, TypeError, LookupError)

    _operations: ClassVar[dict[str, _Operation]] = {}

    #: The ``from_`` of the request being served (for :data:`DEFER`).
    caller: tuple | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        ops: dict[str, _Operation] = {}
        for klass in reversed(cls.__mro__):
            for name, fn in vars(klass).items():
                if callable(fn) and getattr(fn, _OPERATION, False):
                    ops[name] = _Operation.of(fn)
                elif name in ops:
                    del ops[name]  # overridden by a method that is not an operation
        cls._operations = ops

    # ------------------------------------------------------------ hooks

    def init(self, args: Any) -> Any:
        """Set up the server's attributes from ``args`` (default: nothing).
        Return None, or ``Ignore``/``Stop(reason)``/an action as
        ``GenServer.init`` would."""
        return None

    def next_action(self) -> Any:
        """The gen_server action after each request (a timeout in seconds,
        ``HIBERNATE``, ``Continue(term)``); default None."""
        return None

    def handle_other_call(self, request: Any, from_: tuple) -> Any:
        """A call that is not a :class:`Request`: return the reply.  Default:
        the server crashes, as a gen_server without that clause."""
        raise NotImplementedError(f"{type(self).__name__} does not handle the call {request!r}")

    def handle_other_cast(self, request: Any) -> None:
        """A cast that is not a :class:`Request`.  Default: the server crashes."""
        raise NotImplementedError(f"{type(self).__name__} does not handle the cast {request!r}")

    # ------------------------------------------------------ otp.sys views

    def system_get_state(self, state: Any) -> Any:
        """A Service's state is its instance: :func:`otp.sys.get_state`
        returns it (a copy, with its attributes)."""
        return self

    def system_replace_state(self, fn: Callable[[Any], Any], state: Any) -> Any:
        """``fn`` gets the instance and returns it, changed, or another
        instance of the same class whose attributes are taken over.  If
        ``fn`` raises or returns anything else, the attributes are put back
        as they were (a shallow restore: an object ``fn`` changed in place
        stays changed)."""
        before = dict(vars(self))
        try:
            new = fn(self)
            if new is not self:
                if type(new) is not type(self):
                    raise TypeError(
                        f"replace_state on a {type(self).__name__} must return the instance, not {type(new).__name__}"
                    )
                attrs = dict(vars(new))
                vars(self).clear()
                vars(self).update(attrs)
        except BaseException:
            vars(self).clear()
            vars(self).update(before)
            raise
        return state

    # --------------------------------------------------- the gen_server side

    def handle_call(self, request: Any, from_: tuple, state: Any) -> Reply | NoReply:
        if type(request) is not Request:
            return Reply(self.handle_other_call(request, from_), state, self.next_action())
        self.caller = from_
        try:
            answer = self._run(request)
        finally:
            self.caller = None
        if answer is DEFER:
            return NoReply(state, self.next_action())
        return Reply(answer, state, self.next_action())

    def handle_cast(self, request: Any, state: Any) -> NoReply:
        if type(request) is not Request:
            self.handle_other_cast(request)
            return NoReply(state, self.next_action())
        answer = self._run(request)
        if type(answer) is Failed:
            log.warning("%s: the cast %s failed: %r", type(self).__name__, _describe(request), answer.error)
        return NoReply(state, self.next_action())

    def _run(self, request: Request) -> Ok | Failed | _Defer:
        """Ok(value), Failed(error) or DEFER."""
        entry = self._operations.get(request.op) if type(request.op) is str else None
        if entry is None:
            return Failed(UnknownOperation(type(self).__name__, request.op))
        args, kwargs = request.args, request.kwargs
        if type(args) is not tuple or type(kwargs) is not dict:
            return Failed(BadArguments(type(self).__name__, request.op, "args must be a tuple, kwargs a dict"))
        if kwargs or not entry.min_args <= len(args) <= entry.max_args:
            try:
                entry.signature.bind(self, *args, **kwargs)
            except TypeError as exc:
                return Failed(BadArguments(type(self).__name__, request.op, str(exc)))
        try:
            value = entry.fn(self, *args, **kwargs)
        except self.errors as exc:
            return Failed(exc)
        return value if value is DEFER else Ok(value)

    # ------------------------------------------------------ deferred replies

    @staticmethod
    def answer(caller: tuple, value: Any) -> None:
        """Answer a request deferred with :data:`DEFER` (``caller`` is the
        ``self.caller`` it had)."""
        _gen_server.reply(caller, Ok(value))

    @staticmethod
    def answer_error(caller: tuple, error: BaseException) -> None:
        """Answer a deferred request with ``error``, raised in its caller."""
        _gen_server.reply(caller, Failed(error))


def _describe(request: Request) -> str:
    return f"{request.op}({len(request.args)} args)"


def ask(server: ServerRef, op: str, *args: Any, timeout: float | None = DEFAULT_CALL_TIMEOUT, **kwargs: Any) -> Any:
    """Run ``op(*args, **kwargs)`` in ``server`` (a :class:`Service`: a pid,
    a registered name, ``via(...)``) and return its value, or raise the
    error it answered with, with its own type.  Raises what ``otp.call``
    raises (``NoProc``, ``CalleeExit``, ``CallTimeout``), and
    ``UnknownOperation`` / ``BadArguments`` for a request the server does
    not have."""
    reply = _gen_server.call(server, Request(op, args, kwargs), timeout)
    kind = type(reply)
    if kind is Ok:
        return reply.value
    if kind is Failed:
        raise reply.error
    raise TypeError(f"{server!r} answered {reply!r} to {op!r}: not an otp.Service reply (Ok or Failed)")


def tell(server: ServerRef, op: str, *args: Any, **kwargs: Any) -> None:
    """Run ``op(*args, **kwargs)`` in ``server`` without waiting (a cast:
    never blocks, never fails; an error it raises is logged by the server)."""
    _gen_server.cast(server, Request(op, args, kwargs))
