"""What starting a process came to: :data:`StartResult`, ``Started(pid)``,
``IGNORED`` or ``StartFailed(reason)``.

A starting server tells its starter with a :class:`StartAck`; a supervisor
gets one from every start function it runs.  Typed records, so that each
reader asks ``isinstance`` rather than indexing a tagged tuple.
"""

from __future__ import annotations

from typing import NamedTuple

from ._pid import Pid, Ref

__all__ = ["Started", "Ignored", "IGNORED", "StartFailed", "StartResult", "StartAck"]


class Started(NamedTuple):
    """The process runs as ``pid``."""

    pid: Pid


class Ignored:
    """The process chose not to run (``init`` or a start function returned
    ``otp.Ignore``).  One instance, :data:`IGNORED`, also after unpickling."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "IGNORED"

    def __reduce__(self) -> str:
        return "IGNORED"


IGNORED = Ignored()


class StartFailed(NamedTuple):
    """The start failed; ``reason`` is OTP's term for why."""

    reason: object


StartResult = Started | Ignored | StartFailed


class StartAck(NamedTuple):
    """A starting process's answer to its starter, tagged with the starter's
    reference."""

    ref: Ref
    result: StartResult
