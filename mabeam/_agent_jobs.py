"""What the agent registry asks of the agent supervisor, and how it reads
the answers.

The registry starts and stops agents without waiting for the supervisor
(``otp.send_request``): each request is a job (:class:`StartJob`,
:class:`StopJob`) kept until its answer arrives as a message
(:class:`PendingJob`), which :func:`read_reply` turns into a Service reply
(the supervisor's death included).  Apart from the registry's server
because these are its records and readings, not its decisions.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import otp

__all__ = ["StartJob", "StopJob", "PendingJob", "read_reply", "failure_reason"]


def read_reply(msg: Any, req: otp.RequestId) -> otp.Ok | otp.Failed:
    """The supervisor's answer to ``req`` as a Service reply (its death as
    a Failed)."""
    try:
        reply = otp.check_response(msg, req)
    except otp.CallError as exc:
        return otp.Failed(exc)
    if type(reply) is otp.Ok or type(reply) is otp.Failed:
        return reply
    return otp.Failed(TypeError(f"not a Service reply: {reply!r}"))


def failure_reason(failed: otp.Failed) -> Any:
    """Why a start failed: the supervisor's reason (``('already_started',
    pid)``, an ``otp.Crash`` of ``setup``...), or the error itself."""
    error = failed.error
    return error.reason if isinstance(error, otp.SupervisorError) else error


@dataclass
class StartJob:
    """A start of an agent: asked of the agent supervisor (``req``), or
    waiting for one (``req`` None, between two agent supervisors)."""

    restart: bool  # a restart by the registry (else a start_agent)
    callers: list[tuple] = field(default_factory=list)  # start_agent callers
    stoppers: list[tuple] = field(default_factory=list)  # stop_agent callers who came meanwhile
    req: otp.RequestId | None = None


@dataclass
class StopJob:
    """A stop of the process ``pid`` of an agent, asked of its supervisor."""

    pid: otp.Pid
    callers: list[tuple] = field(default_factory=list)
    req: otp.RequestId | None = None


class PendingJob(NamedTuple):
    """What a request to the agent supervisor is for."""

    agent_id: Hashable
    req: otp.RequestId
    job: StartJob | StopJob
